/* Quantization-aware LoRA training (QAT). With an adapter's `qat` option on,
 * every adapted projection runs
 *     y = x fake_quant(dequant(W) + scaling B A)^T + bias,
 * fake_quant being quantize-then-dequantize with the base weight's own
 * quantization (or the adapter's qat_cfg when the base is not quantized),
 * so the forward pass is exactly that of the merged and re-quantized model.
 * Gradients to A and B are straight-through: fake_quant counts as the
 * identity, which makes them the ordinary LoRA gradients
 *     dB = scaling dy^T (x A^T),  dA = scaling (dy B)^T x
 * of the upstream gradient dy (the schemes used never clip, so the
 * straight-through mask is all ones), while dx = dy fake_quant(W').
 * LoRA dropout is not applied in QAT mode: the update lives inside the
 * quantized weight, where a per-input mask has no place.
 *
 * Built from backend operations every backend has (dequantize, GEMM,
 * quantize, the linear operation on an f32 weight); enabled on the CPU
 * backend only until the CUDA backend has been tested with it. */
#ifndef FTQ_MODEL_QAT_H
#define FTQ_MODEL_QAT_H

#include <stdint.h>

#include "backend.h"
#include "libftq/ftq_options.h"
#include "quant/qtensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ftq_lora;

/* Reads the `qat` option and, for unquantized bases, the quantization
 * settings (ftq_qconfig_from_options) into the adapter. */
ftq_status ftq_qat_read_options(struct ftq_lora *l, const ftq_options *opts);

/* FTQ_ERR_UNSUPPORTED (naming the device) unless ctx's backend runs QAT. */
ftq_status ftq_qat_check_device(const ftq_context *ctx);

/* The quantization QAT applies to projection weight `w`: w's own when it is
 * quantized, else the adapter's qat_cfg. */
void ftq_qat_config(const struct ftq_lora *l, const ftq_qtensor *w, ftq_qconfig *cfg);

/* wbuf (device, f32 [out, in]) = fake_quant(dequant(W) + scaling B A) of
 * layer `layer`'s projection `proj`. */
ftq_status ftq_qat_weight(const struct ftq_lora *l, int64_t layer, int proj, float *wbuf);

/* The QAT form of the linear operation `a` (set up by the graph as for
 * the plain operation: weight, bias, LoRA tensors, x, t, y or dy/dx/grads)
 * on layer `layer`'s projection `proj`; wbuf is device scratch of
 * out * in floats. Forward: y (when set) and t = x A^T for the backward.
 * Backward: dx through fake_quant(W') and the straight-through LoRA
 * gradients from t. */
ftq_status ftq_qat_linear_forward(const struct ftq_lora *l, int64_t layer, int proj, const ftq_linear_args *a,
                                  float *wbuf);
ftq_status ftq_qat_linear_backward(const struct ftq_lora *l, int64_t layer, int proj, const ftq_linear_args *a,
                                   float *wbuf);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_MODEL_QAT_H */
