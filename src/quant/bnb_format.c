/* Conversion between ftq_qtensor and the tensors of a bitsandbytes 4-bit
 * checkpoint (bnb_format.h). The quant_state JSON is read with jansson and
 * written as Python's json.dumps writes it, so a round trip reproduces the
 * checkpoint byte for byte. */
#include "quant/bnb_format.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "quant/codebook.h"
#include "quant/quant_internal.h"

#define NAME_MAX_LEN 512

static const char *qs_suffix[2] = {"weight.quant_state.bitsandbytes__nf4", "weight.quant_state.bitsandbytes__fp4"};

static const ftq_named_tensor *find(ftq_named_lookup_fn lookup, void *user, const char *prefix, const char *suffix,
                                    char *name, size_t len) {
  snprintf(name, len, "%s%s", prefix, suffix);
  return lookup(user, name);
}

int ftq_bnb4_present(ftq_named_lookup_fn lookup, void *user, const char *prefix) {
  char name[NAME_MAX_LEN];
  return find(lookup, user, prefix, qs_suffix[0], name, sizeof name) ||
         find(lookup, user, prefix, qs_suffix[1], name, sizeof name);
}

static const char *dtype_py(ftq_dtype t) {
  return t == FTQ_DTYPE_F16 ? "float16" : t == FTQ_DTYPE_BF16 ? "bfloat16" : "float32";
}

static int dtype_from_py(const char *s, ftq_dtype *t) {
  if (strcmp(s, "float32") == 0) *t = FTQ_DTYPE_F32;
  else if (strcmp(s, "float16") == 0) *t = FTQ_DTYPE_F16;
  else if (strcmp(s, "bfloat16") == 0) *t = FTQ_DTYPE_BF16;
  else return 0;
  return 1;
}

static int64_t numel_of(const ftq_named_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

/* A tensor of `dtype` with exactly `count` elements (any shape). */
static ftq_status expect(const ftq_named_tensor *t, const char *name, ftq_dtype dtype, int64_t count) {
  if (!t) return ftq_error(FTQ_ERR_NOT_FOUND, "bitsandbytes checkpoint: tensor '%s' is missing", name);
  if (t->dtype != dtype)
    return ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: tensor '%s' is %s, %s expected", name,
                     ftq_dtype_name(t->dtype), ftq_dtype_name(dtype));
  if (numel_of(t) != count || t->bytes != (size_t)count * ftq_dtype_size(dtype) || (count && !t->data))
    return ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: tensor '%s' has %lld elements (%zu bytes), %lld expected",
                     name, (long long)numel_of(t), t->bytes, (long long)count);
  return FTQ_OK;
}

typedef struct qstate {
  int fp4;
  int64_t blocksize;
  ftq_dtype dtype;
  int ndim;
  int64_t shape[FTQ_MAX_DIMS];
  int nested;
  int64_t nested_blocksize;
  double nested_offset;
} qstate;

static ftq_status parse_qstate(const ftq_named_tensor *t, const char *name, int fp4, qstate *qs) {
  memset(qs, 0, sizeof *qs);
  qs->fp4 = fp4;
  if (t->dtype != FTQ_DTYPE_U8 || !t->data)
    return ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: tensor '%s' must hold uint8 JSON bytes", name);
  json_error_t err;
  json_t *root = json_loadb(t->data, t->bytes, JSON_REJECT_DUPLICATES, &err);
  if (!root)
    return ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: tensor '%s': JSON error at column %d: %s", name,
                     err.column, err.text);
  ftq_status st = FTQ_OK;
  const char *qt = json_string_value(json_object_get(root, "quant_type"));
  json_t *bs = json_object_get(root, "blocksize"), *dt = json_object_get(root, "dtype");
  json_t *shape = json_object_get(root, "shape"), *nbs = json_object_get(root, "nested_blocksize");
  json_t *ndt = json_object_get(root, "nested_dtype"), *off = json_object_get(root, "nested_offset");
  if (!qt || strcmp(qt, fp4 ? "fp4" : "nf4") != 0) {
    st = ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: '%s': quant_type %s%s%s does not match the tensor's name",
                   name, qt ? "\"" : "", qt ? qt : "(missing)", qt ? "\"" : "");
  } else if (!json_is_integer(bs) || json_integer_value(bs) < 32 || json_integer_value(bs) > 4096 ||
             (json_integer_value(bs) & (json_integer_value(bs) - 1))) {
    st = ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: '%s': blocksize must be a power of two in 32..4096", name);
  } else if (!json_is_string(dt) || !dtype_from_py(json_string_value(dt), &qs->dtype)) {
    st = ftq_error(FTQ_ERR_UNSUPPORTED, "bitsandbytes checkpoint: '%s': dtype %s (float32, float16 or bfloat16 expected)",
                   name, json_is_string(dt) ? json_string_value(dt) : "(missing)");
  } else if (!json_is_array(shape) || json_array_size(shape) < 1 || json_array_size(shape) > FTQ_MAX_DIMS) {
    st = ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: '%s': shape must be a list of 1..%d sizes", name,
                   FTQ_MAX_DIMS);
  } else {
    qs->blocksize = json_integer_value(bs);
    qs->ndim = (int)json_array_size(shape);
    int64_t total = 1;
    for (int i = 0; i < qs->ndim && st == FTQ_OK; i++) {
      json_t *d = json_array_get(shape, (size_t)i);
      if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > (INT64_C(1) << 40) / total)
        st = ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: '%s': shape entry %d is not a valid size", name, i);
      else total *= (qs->shape[i] = json_integer_value(d));
    }
  }
  if (st == FTQ_OK && (nbs || ndt || off)) {
    qs->nested = 1;
    if (!json_is_integer(nbs) || json_integer_value(nbs) != FTQ_NESTED_BLOCKSIZE)
      st = ftq_error(FTQ_ERR_UNSUPPORTED, "bitsandbytes checkpoint: '%s': nested_blocksize must be %d", name,
                     FTQ_NESTED_BLOCKSIZE);
    else if (!json_is_string(ndt) || strcmp(json_string_value(ndt), "float32") != 0)
      st = ftq_error(FTQ_ERR_UNSUPPORTED, "bitsandbytes checkpoint: '%s': nested_dtype must be \"float32\"", name);
    else if (!json_is_number(off))
      st = ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: '%s': nested_offset must be a number", name);
    qs->nested_blocksize = FTQ_NESTED_BLOCKSIZE;
    qs->nested_offset = json_number_value(off);
  }
  json_decref(root);
  return st;
}

ftq_status ftq_qtensor_from_bnb4(ftq_context *ctx, ftq_named_lookup_fn lookup, void *user, const char *prefix,
                                 ftq_memory_category cat, ftq_qtensor *out) {
  memset(out, 0, sizeof *out);
  char name[NAME_MAX_LEN];
  const ftq_named_tensor *js = find(lookup, user, prefix, qs_suffix[0], name, sizeof name);
  int fp4 = 0;
  if (!js) {
    js = find(lookup, user, prefix, qs_suffix[1], name, sizeof name);
    fp4 = 1;
  }
  if (!js)
    return ftq_error(FTQ_ERR_NOT_FOUND, "bitsandbytes checkpoint: no %s%s or ...__fp4 tensor", prefix, qs_suffix[0]);
  qstate qs;
  FTQ_TRY(parse_qstate(js, name, fp4, &qs));
  int64_t n = 1;
  for (int i = 0; i < qs.ndim; i++) n *= qs.shape[i];
  int64_t nb = ftq_ceil_div64(n, qs.blocksize), nb2 = ftq_ceil_div64(nb, FTQ_NESTED_BLOCKSIZE);

  /* check every tensor before allocating anything */
  const ftq_named_tensor *w = find(lookup, user, prefix, "weight", name, sizeof name);
  FTQ_TRY(expect(w, name, FTQ_DTYPE_U8, (n + 1) / 2));
  const ftq_named_tensor *am = find(lookup, user, prefix, "weight.absmax", name, sizeof name);
  FTQ_TRY(expect(am, name, qs.nested ? FTQ_DTYPE_U8 : FTQ_DTYPE_F32, nb));
  const ftq_named_tensor *qm = find(lookup, user, prefix, "weight.quant_map", name, sizeof name);
  FTQ_TRY(expect(qm, name, FTQ_DTYPE_F32, 16));
  const float *table = fp4 ? ftq_fp4_quant_map : ftq_nf4_lut;
  if (memcmp(qm->data, table, 16 * sizeof(float)) != 0)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "bitsandbytes checkpoint: '%s' is not bitsandbytes' %s table "
                                          "(custom 4-bit codes are not supported)", name, fp4 ? "fp4" : "nf4");
  const ftq_named_tensor *nam = NULL, *nqm = NULL;
  char nqm_name[NAME_MAX_LEN];
  if (qs.nested) {
    nam = find(lookup, user, prefix, "weight.nested_absmax", name, sizeof name);
    FTQ_TRY(expect(nam, name, FTQ_DTYPE_F32, nb2));
    nqm = find(lookup, user, prefix, "weight.nested_quant_map", nqm_name, sizeof nqm_name);
    FTQ_TRY(expect(nqm, nqm_name, FTQ_DTYPE_F32, 256));
    const float *c = nqm->data;
    for (int i = 1; i < 256; i++)
      if (!(c[i] >= c[i - 1]))
        return ftq_error(FTQ_ERR_FORMAT, "bitsandbytes checkpoint: '%s' is not sorted ascending (entry %d)", nqm_name,
                         i);
  }

  ftq_qconfig cfg = {fp4 ? FTQ_QSCHEME_FP4 : FTQ_QSCHEME_NF4, qs.blocksize, qs.nested, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
  FTQ_TRY(ftq_qtensor_alloc(ctx, &cfg, qs.ndim, qs.shape, qs.dtype, cat, prefix, out));
  const ftq_backend *be = ctx->be;
  ftq_status st = be->copy(ctx->be_ctx, out->packed.data, w->data, w->bytes, FTQ_COPY_H2D);
  if (st == FTQ_OK) st = be->copy(ctx->be_ctx, out->absmax.data, am->data, am->bytes, FTQ_COPY_H2D);
  if (st == FTQ_OK && qs.nested) {
    out->nested_offset = (float)qs.nested_offset;
    st = be->copy(ctx->be_ctx, out->nested_absmax.data, nam->data, nam->bytes, FTQ_COPY_H2D);
    if (st == FTQ_OK) st = be->copy(ctx->be_ctx, out->nested_code.data, nqm->data, nqm->bytes, FTQ_COPY_H2D);
  }
  if (st != FTQ_OK) ftq_qtensor_release(out);
  return st;
}

/* ---- writing ---------------------------------------------------------------- */

const char *ftq_py_float_repr(double v, char *buf, size_t len) {
  if (isnan(v)) {
    snprintf(buf, len, "NaN");
    return buf;
  }
  if (isinf(v)) {
    snprintf(buf, len, v < 0 ? "-Infinity" : "Infinity");
    return buf;
  }
  if (v == 0.0) {
    snprintf(buf, len, signbit(v) ? "-0.0" : "0.0");
    return buf;
  }
  /* shortest digits that read back as v: "d.ddde+XX" */
  char e[40];
  for (int p = 0; p <= 16; p++) {
    snprintf(e, sizeof e, "%.*e", p, v);
    if (strtod(e, NULL) == v) break;
  }
  char digits[24];
  size_t nd = 0;
  const char *s = e;
  int neg = *s == '-';
  if (neg) s++;
  for (; *s && *s != 'e'; s++)
    if (*s >= '0' && *s <= '9') digits[nd++] = *s;
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  int exp10 = atoi(s + 1);
  char out[64];
  size_t w = 0;
  if (neg) out[w++] = '-';
  if (exp10 < -4 || exp10 >= 16) { /* repr switches to exponent notation here */
    out[w++] = digits[0];
    if (nd > 1) {
      out[w++] = '.';
      for (size_t i = 1; i < nd; i++) out[w++] = digits[i];
    }
    w += (size_t)snprintf(out + w, sizeof out - w, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  } else if (exp10 < 0) {
    out[w++] = '0';
    out[w++] = '.';
    for (int i = 0; i < -exp10 - 1; i++) out[w++] = '0';
    for (size_t i = 0; i < nd; i++) out[w++] = digits[i];
  } else {
    for (int i = 0; i <= exp10; i++) out[w++] = (size_t)i < nd ? digits[i] : '0';
    out[w++] = '.';
    if ((size_t)exp10 + 1 < nd)
      for (size_t i = (size_t)exp10 + 1; i < nd; i++) out[w++] = digits[i];
    else
      out[w++] = '0';
  }
  out[w] = 0;
  snprintf(buf, len, "%s", out);
  return buf;
}

static ftq_status emit_one(ftq_named_emit_fn emit, void *user, const char *prefix, const char *suffix, ftq_dtype dt,
                           int ndim, int64_t d0, int64_t d1, const void *data, size_t bytes) {
  char name[NAME_MAX_LEN];
  snprintf(name, sizeof name, "%s%s", prefix, suffix);
  ftq_named_tensor t;
  memset(&t, 0, sizeof t);
  t.name = name;
  t.dtype = dt;
  t.ndim = ndim;
  t.shape[0] = d0;
  t.shape[1] = d1;
  t.data = data;
  t.bytes = bytes;
  return emit(user, &t);
}

static ftq_status download(const ftq_qtensor *q, const ftq_tensor *t, void **host) {
  size_t bytes = ftq_tensor_bytes(t);
  *host = ftq_malloc(bytes ? bytes : 1, "bitsandbytes tensor");
  if (!*host) return FTQ_ERR_OUT_OF_MEMORY;
  return q->ctx->be->copy(q->ctx->be_ctx, *host, t->data, bytes, FTQ_COPY_D2H);
}

ftq_status ftq_qtensor_to_bnb4(const ftq_qtensor *q, const char *prefix, ftq_named_emit_fn emit, void *user) {
  if (q->scheme != FTQ_QSCHEME_NF4 && q->scheme != FTQ_QSCHEME_FP4)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s: only NF4 / FP4 tensors have a bitsandbytes 4-bit form", prefix);
  int fp4 = q->scheme == FTQ_QSCHEME_FP4;
  int64_t n = ftq_qtensor_numel(q), nb = ftq_ceil_div64(n, q->blocksize);
  /* the quant_state JSON, as json.dumps(dict) writes it (insertion order) */
  char json[512], shape[128], off[40];
  size_t w = (size_t)snprintf(shape, sizeof shape, "[");
  for (int i = 0; i < q->ndim; i++)
    w += (size_t)snprintf(shape + w, sizeof shape - w, "%s%lld", i ? ", " : "", (long long)q->shape[i]);
  snprintf(shape + w, sizeof shape - w, "]");
  w = (size_t)snprintf(json, sizeof json, "{\"quant_type\": \"%s\", \"blocksize\": %lld, \"dtype\": \"%s\", \"shape\": %s",
                       fp4 ? "fp4" : "nf4", (long long)q->blocksize, dtype_py(q->orig_dtype), shape);
  if (q->nested)
    w += (size_t)snprintf(json + w, sizeof json - w,
                          ", \"nested_blocksize\": %lld, \"nested_dtype\": \"float32\", \"nested_offset\": %s",
                          (long long)q->nested_blocksize, ftq_py_float_repr((double)q->nested_offset, off, sizeof off));
  snprintf(json + w, sizeof json - w, "}");

  void *packed = NULL, *absmax = NULL, *absmax2 = NULL, *code2 = NULL;
  ftq_status st = download(q, &q->packed, &packed);
  if (st == FTQ_OK) st = download(q, &q->absmax, &absmax);
  if (st == FTQ_OK && q->nested) st = download(q, &q->nested_absmax, &absmax2);
  if (st == FTQ_OK && q->nested) st = download(q, &q->nested_code, &code2);
  if (st == FTQ_OK)
    st = emit_one(emit, user, prefix, "weight", FTQ_DTYPE_U8, 2, (n + 1) / 2, 1, packed, (size_t)((n + 1) / 2));
  if (st == FTQ_OK)
    st = emit_one(emit, user, prefix, "weight.absmax", q->nested ? FTQ_DTYPE_U8 : FTQ_DTYPE_F32, 1, nb, 0, absmax,
                  ftq_tensor_bytes(&q->absmax));
  if (st == FTQ_OK)
    st = emit_one(emit, user, prefix, "weight.quant_map", FTQ_DTYPE_F32, 1, 16, 0, fp4 ? ftq_fp4_quant_map : ftq_nf4_lut,
                  16 * sizeof(float));
  if (st == FTQ_OK && q->nested)
    st = emit_one(emit, user, prefix, "weight.nested_absmax", FTQ_DTYPE_F32, 1, q->nested_absmax.shape[0], 0, absmax2,
                  ftq_tensor_bytes(&q->nested_absmax));
  if (st == FTQ_OK && q->nested)
    st = emit_one(emit, user, prefix, "weight.nested_quant_map", FTQ_DTYPE_F32, 1, 256, 0, code2, 256 * sizeof(float));
  if (st == FTQ_OK)
    st = emit_one(emit, user, prefix, qs_suffix[fp4], FTQ_DTYPE_U8, 1, (int64_t)strlen(json), 0, json, strlen(json));
  free(packed);
  free(absmax);
  free(absmax2);
  free(code2);
  return st;
}
