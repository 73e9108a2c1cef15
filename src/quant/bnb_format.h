/* bitsandbytes 4-bit checkpoints: the named tensors transformers saves for
 * a Linear4bit weight (qlora-spec §1.7) and their conversion to and from an
 * ftq_qtensor, on in-memory host tensors so any file glue (safetensors
 * reader / writer) can call it:
 *
 *   <prefix>weight                                 uint8 [(n+1)/2, 1] packed codes
 *   <prefix>weight.absmax                          f32 [n_blocks] (uint8 when nested)
 *   <prefix>weight.quant_map                       f32 [16] the 4-bit code table
 *   <prefix>weight.nested_absmax                   f32 [ceil(n_blocks/256)]   (nested)
 *   <prefix>weight.nested_quant_map                f32 [256] dynamic map       (nested)
 *   <prefix>weight.quant_state.bitsandbytes__nf4   uint8 JSON: quant_type, blocksize, dtype,
 *        (or __fp4)                                shape, nested_blocksize, nested_dtype, nested_offset
 *
 * `prefix` is the module's name with its dot, e.g. "model.layers.0.mlp.down_proj.". */
#ifndef FTQ_QUANT_BNB_FORMAT_H
#define FTQ_QUANT_BNB_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "quant/qtensor.h"

/* A named host tensor (row-major, little-endian). */
typedef struct ftq_named_tensor {
  const char *name;
  ftq_dtype dtype;
  int ndim;
  int64_t shape[FTQ_MAX_DIMS];
  const void *data;
  size_t bytes;
} ftq_named_tensor;

/* Finds a tensor by its full name; NULL when there is none. Every pointer
 * it returns must stay valid until the call that asked for it returns (a
 * call looks up several tensors before using them). */
typedef const ftq_named_tensor *(*ftq_named_lookup_fn)(void *user, const char *name);

/* Receives one tensor; its name and data are valid during the call only. */
typedef ftq_status (*ftq_named_emit_fn)(void *user, const ftq_named_tensor *t);

/* 1 if <prefix>weight.quant_state.bitsandbytes__nf4 or __fp4 exists. */
int ftq_bnb4_present(ftq_named_lookup_fn lookup, void *user, const char *prefix);

/* Builds a qtensor on ctx (buffers accounted under `cat`) from one layer's
 * bitsandbytes tensors, without re-quantizing: the codes, absmax, nested
 * absmax, offset and dynamic map are the checkpoint's. Every size, dtype
 * and JSON field is checked; errors name the tensor. */
ftq_status ftq_qtensor_from_bnb4(ftq_context *ctx, ftq_named_lookup_fn lookup, void *user, const char *prefix,
                                 ftq_memory_category cat, ftq_qtensor *out);

/* Emits the tensors above for an NF4 / FP4 qtensor, byte for byte as
 * transformers + bitsandbytes write them (the JSON text included). */
ftq_status ftq_qtensor_to_bnb4(const ftq_qtensor *q, const char *prefix, ftq_named_emit_fn emit, void *user);

/* Python's repr() of a double (the shortest text that reads back as it),
 * which json.dumps writes; `buf` needs 32 bytes. */
const char *ftq_py_float_repr(double v, char *buf, size_t len);

#endif /* FTQ_QUANT_BNB_FORMAT_H */
