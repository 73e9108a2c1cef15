/* NF4 / FP4 against real bitsandbytes: the vectors in tests/ref/quant
 * (made by bitsandbytes' CUDA kernels with make_ref.py) for every block
 * size, the three input dtypes, odd lengths, zero blocks, subnormals,
 * +-inf / NaN, double quantization, the 8-bit dynamic path, and the state
 * dicts of bitsandbytes Linear4bit layers (checkpoint layout). CPU backend:
 * codes, absmax and dequantized values must be identical bit for bit. */
#include <stdarg.h>

#include "core/context.h"
#include "quant/bnb_format.h"
#include "quant/codebook.h"
#include "quant/quant_cpu.h"
#include "quant/quant_internal.h"
#include "ref_file.h"
#include "test_util.h"

static ref_file RF;

static const ref_rec *rec(const char *fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  const ref_rec *r = ref_get(&RF, name);
  CHECK_MSG(r != NULL, "reference record %s is missing", name);
  return r;
}

static ftq_dtype dtype_named(const char *s) {
  return strcmp(s, "f16") == 0 ? FTQ_DTYPE_F16 : strcmp(s, "bf16") == 0 ? FTQ_DTYPE_BF16 : FTQ_DTYPE_F32;
}

static size_t count_diff(const void *a, const void *b, size_t n, size_t es) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += memcmp((const char *)a + i * es, (const char *)b + i * es, es) != 0;
  return d;
}

#define CHECK_SAME(what, got, ref_rec_, es)                                                                        \
  do {                                                                                                             \
    size_t nd_ = count_diff((got), (ref_rec_)->data, (size_t)(ref_rec_)->numel, (es));                            \
    CHECK_MSG(nd_ == 0, "%s: %zu of %lld elements differ from bitsandbytes", (what), nd_, (long long)(ref_rec_)->numel); \
  } while (0)

static void four_bit_case(ftq_context *ctx, const char *name, ftq_qscheme scheme, ftq_dtype dt, int64_t bs) {
  const ref_rec *x = rec("%s/x", name), *packed = rec("%s/packed", name), *absmax = rec("%s/absmax", name),
                *deq = rec("%s/deq", name);
  if (!x || !packed || !absmax || !deq) return;
  int64_t n = x->numel;
  ftq_qconfig cfg = {scheme, bs, 0, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
  ftq_qtensor q;
  char what[300];
  snprintf(what, sizeof what, "%s codes", name);
  CHECK_OK(ftq_qtensor_quantize(ctx, &cfg, x->data, dt, 1, &n, FTQ_MEM_OTHER, name, &q));
  CHECK_SAME(what, q.packed.data, packed, 1);
  snprintf(what, sizeof what, "%s absmax", name);
  CHECK_SAME(what, q.absmax.data, absmax, 4);
  void *out = malloc((size_t)n * ftq_dtype_size(dt));
  CHECK_OK(ftq_qtensor_dequantize(&q, dt, out));
  snprintf(what, sizeof what, "%s dequantized", name);
  CHECK_SAME(what, out, deq, ftq_dtype_size(dt));
  free(out);
  ftq_qtensor_release(&q);
}

static int32_t f32_ordered(float f) {
  int32_t i;
  memcpy(&i, &f, 4);
  return i < 0 ? INT32_MIN - i : i;
}

static void dq_case(ftq_context *ctx, const char *name, ftq_qscheme scheme, ftq_dtype dt, int64_t bs) {
  const ref_rec *x = rec("%s/x", name), *packed = rec("%s/packed", name), *raw = rec("%s/absmax_raw", name),
                *qabs = rec("%s/qabsmax", name), *am2 = rec("%s/absmax2", name), *off = rec("%s/offset", name),
                *code = rec("%s/code", name), *deq = rec("%s/deq", name);
  if (!x || !packed || !raw || !qabs || !am2 || !off || !code || !deq) return;
  int64_t n = x->numel, nb = raw->numel;
  float ref_offset = *(const float *)off->data;
  char what[300];
  ftq_qconfig cfg = {scheme, bs, 1, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
  ftq_qtensor q;
  REQUIRE_OK(ftq_qtensor_quantize(ctx, &cfg, x->data, dt, 1, &n, FTQ_MEM_OTHER, name, &q));
  snprintf(what, sizeof what, "%s codes", name);
  CHECK_SAME(what, q.packed.data, packed, 1);
  /* the offset is torch's CUDA mean for bitsandbytes, libftq's deterministic mean here */
  int32_t ulps = f32_ordered(q.nested_offset) - f32_ordered(ref_offset);
  CHECK_MSG(ulps >= -1 && ulps <= 1, "%s: offset %.9g vs bitsandbytes %.9g (%d ulp)", name, q.nested_offset,
            ref_offset, ulps);
  CHECK(memcmp(q.nested_code.data, code->data, 1024) == 0);
  /* with bitsandbytes' offset the nested codes must be identical */
  uint8_t *q8 = malloc((size_t)nb);
  float *a2 = malloc((size_t)am2->numel * 4);
  float given = ref_offset;
  CHECK_OK(ctx->be->quantize_8bit(ctx->be_ctx, raw->data, (size_t)nb, 256, code->data, FTQ_CENTER_GIVEN, &given, q8, a2));
  snprintf(what, sizeof what, "%s nested codes", name);
  CHECK_SAME(what, q8, qabs, 1);
  snprintf(what, sizeof what, "%s nested absmax", name);
  CHECK_SAME(what, a2, am2, 4);
  if (ulps == 0) {
    snprintf(what, sizeof what, "%s nested codes (own offset)", name);
    CHECK_SAME(what, q.absmax.data, qabs, 1);
  }
  /* the raw fp32 absmax (before double quantization) */
  ftq_qconfig flat = cfg;
  flat.nested = 0;
  ftq_qtensor f;
  CHECK_OK(ftq_qtensor_quantize(ctx, &flat, x->data, dt, 1, &n, FTQ_MEM_OTHER, name, &f));
  snprintf(what, sizeof what, "%s fp32 absmax", name);
  CHECK_SAME(what, f.absmax.data, raw, 4);
  ftq_qtensor_release(&f);
  /* dequantize from bitsandbytes' own nested state */
  memcpy(q.absmax.data, qabs->data, (size_t)nb);
  memcpy(q.nested_absmax.data, am2->data, am2->bytes);
  q.nested_offset = ref_offset;
  void *out = malloc((size_t)n * ftq_dtype_size(dt));
  CHECK_OK(ftq_qtensor_dequantize(&q, dt, out));
  snprintf(what, sizeof what, "%s dequantized", name);
  CHECK_SAME(what, out, deq, ftq_dtype_size(dt));
  free(out);
  free(q8);
  free(a2);
  ftq_qtensor_release(&q);
}

static void q8_case(ftq_context *ctx) {
  const ref_rec *x = rec("q8/x"), *qr = rec("q8/q"), *am = rec("q8/absmax"), *deq = rec("q8/deq"),
                *code = rec("dynamic_map");
  if (!x || !qr || !am || !deq || !code) return;
  size_t n = (size_t)x->numel;
  uint8_t *q = malloc(n);
  float *a = malloc((size_t)am->numel * 4), *d = malloc(n * 4);
  CHECK_OK(ctx->be->quantize_8bit(ctx->be_ctx, x->data, n, 256, code->data, FTQ_CENTER_NONE, NULL, q, a));
  CHECK_SAME("8-bit dynamic codes", q, qr, 1);
  CHECK_SAME("8-bit dynamic absmax", a, am, 4);
  for (size_t i = 0; i < n; i++) d[i] = ftq_mul_ftz(((const float *)code->data)[q[i]], a[i / 256]);
  CHECK_SAME("8-bit dynamic dequantized", d, deq, 4);
  CHECK_MSG(memcmp(code->data, ftq_dynamic_map, 1024) == 0, "the shipped dynamic map differs from bitsandbytes'");
  free(q);
  free(a);
  free(d);
}

/* ---- checkpoints ---- */

typedef struct sd_view {
  const char *prefix; /* record prefix "ckpt/<tag>/sd/" */
  ftq_named_tensor t[16];
  int count;
} sd_view;

static const ftq_named_tensor *sd_lookup(void *user, const char *name) {
  sd_view *v = user;
  for (int i = 0; i < v->count; i++)
    if (strcmp(v->t[i].name, name) == 0) return &v->t[i];
  return NULL;
}

static void sd_load(sd_view *v, const char *tag) {
  char pre[128];
  snprintf(pre, sizeof pre, "ckpt/%s/sd/", tag);
  v->count = 0;
  for (size_t i = 0; i < RF.count && v->count < 16; i++) {
    const ref_rec *r = &RF.recs[i];
    if (strncmp(r->name, pre, strlen(pre)) != 0) continue;
    ftq_named_tensor *t = &v->t[v->count++];
    memset(t, 0, sizeof *t);
    t->name = r->name + strlen(pre);
    t->dtype = (ftq_dtype)r->dtype;
    t->ndim = r->ndim;
    for (int d = 0; d < r->ndim && d < FTQ_MAX_DIMS; d++) t->shape[d] = r->shape[d];
    t->data = r->data;
    t->bytes = r->bytes;
  }
}

typedef struct emit_check {
  sd_view *ref;
  int seen;
} emit_check;

static ftq_status emit_cmp(void *user, const ftq_named_tensor *t) {
  emit_check *e = user;
  const ftq_named_tensor *r = sd_lookup(e->ref, t->name);
  CHECK_MSG(r != NULL, "emitted tensor %s is not in bitsandbytes' state dict", t->name);
  if (!r) return FTQ_OK;
  e->seen++;
  CHECK_MSG(r->dtype == t->dtype && r->ndim == t->ndim, "%s: dtype / rank differ", t->name);
  for (int d = 0; d < r->ndim; d++) CHECK_MSG(r->shape[d] == t->shape[d], "%s: dimension %d differs", t->name, d);
  CHECK_MSG(r->bytes == t->bytes && memcmp(r->data, t->data, t->bytes) == 0, "%s: bytes differ (%.*s)", t->name,
            t->dtype == FTQ_DTYPE_U8 && t->ndim == 1 ? (int)t->bytes : 0, (const char *)t->data);
  return FTQ_OK;
}

static void ckpt_case(ftq_context *ctx, const char *tag, ftq_dtype dt) {
  sd_view v;
  sd_load(&v, tag);
  CHECK_MSG(v.count >= 4, "%s: state dict records missing", tag);
  const char *prefix = "model.layers.0.mlp.down_proj.";
  CHECK(ftq_bnb4_present(sd_lookup, &v, prefix));
  CHECK(!ftq_bnb4_present(sd_lookup, &v, "model.layers.1.mlp.down_proj."));
  ftq_qtensor q;
  REQUIRE_OK(ftq_qtensor_from_bnb4(ctx, sd_lookup, &v, prefix, FTQ_MEM_WEIGHTS, &q));
  CHECK(q.ndim == 2 && q.shape[0] == 64 && q.shape[1] == 576 && q.orig_dtype == dt && q.blocksize == 64);
  const ref_rec *deq = rec("ckpt/%s/deq", tag);
  void *out = malloc(64 * 576 * ftq_dtype_size(dt));
  CHECK_OK(ftq_qtensor_dequantize(&q, dt, out));
  char what[128];
  snprintf(what, sizeof what, "%s dequantized from the state dict", tag);
  if (deq) CHECK_SAME(what, out, deq, ftq_dtype_size(dt));
  /* written back: byte for byte the same tensors, JSON included */
  emit_check e = {&v, 0};
  CHECK_OK(ftq_qtensor_to_bnb4(&q, prefix, emit_cmp, &e));
  CHECK_MSG(e.seen == v.count, "%s: %d of %d tensors written back", tag, e.seen, v.count);
  /* quantizing the original weight gives bitsandbytes' codes */
  const ref_rec *orig = rec("ckpt/%s/weight_orig", tag);
  if (orig) {
    ftq_qconfig cfg = {q.scheme, 64, q.nested, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
    int64_t shape[2] = {64, 576};
    ftq_qtensor mine;
    CHECK_OK(ftq_qtensor_quantize(ctx, &cfg, orig->data, dt, 2, shape, FTQ_MEM_WEIGHTS, tag, &mine));
    CHECK_MSG(memcmp(mine.packed.data, q.packed.data, (size_t)ftq_tensor_bytes(&q.packed)) == 0,
              "%s: codes differ from the checkpoint's", tag);
    if (!q.nested || mine.nested_offset == q.nested_offset)
      CHECK_MSG(memcmp(mine.absmax.data, q.absmax.data, ftq_tensor_bytes(&q.absmax)) == 0,
                "%s: absmax differs from the checkpoint's", tag);
    ftq_qtensor_release(&mine);
  }
  free(out);
  ftq_qtensor_release(&q);
}

/* Malformed checkpoints are errors that name the tensor, never crashes. */
static void ckpt_errors(ftq_context *ctx) {
  sd_view v;
  sd_load(&v, "nf4_dq_bf16");
  const char *prefix = "model.layers.0.mlp.down_proj.";
  ftq_qtensor q;
  ftq_named_tensor *js = NULL, *qm = NULL, *am = NULL;
  for (int i = 0; i < v.count; i++) {
    if (strstr(v.t[i].name, "quant_state")) js = &v.t[i];
    if (strstr(v.t[i].name, "weight.quant_map")) qm = &v.t[i];
    if (strstr(v.t[i].name, "weight.absmax")) am = &v.t[i];
  }
  REQUIRE_OK(js && qm && am ? FTQ_OK : FTQ_ERR_NOT_FOUND);
  ftq_named_tensor save = *js;
  const char *bad_json[] = {"{\"quant_type\": \"nf4\"", "{\"quant_type\": \"fp4\", \"blocksize\": 64}",
                            "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"float16\", \"shape\": [64, 576]}",
                            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"int8\", \"shape\": [64, 576]}",
                            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [64, -1]}",
                            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [64, 577]}",
                            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [64, 576], "
                            "\"nested_blocksize\": 128, \"nested_dtype\": \"float32\", \"nested_offset\": 0.1}"};
  for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
    js->data = bad_json[i];
    js->bytes = strlen(bad_json[i]);
    ftq_status st = ftq_qtensor_from_bnb4(ctx, sd_lookup, &v, prefix, FTQ_MEM_WEIGHTS, &q);
    CHECK_MSG(st != FTQ_OK, "malformed quant_state %zu accepted", i);
    CHECK_MSG(strstr(ftq_last_error(), "quant_state") || strstr(ftq_last_error(), "down_proj"),
              "message lacks the tensor: %s", ftq_last_error());
    CHECK(q.ctx == NULL);
  }
  *js = save;
  float custom[16];
  memcpy(custom, qm->data, sizeof custom);
  custom[3] = 0.5f;
  const void *qm_data = qm->data;
  qm->data = custom;
  CHECK_STATUS(ftq_qtensor_from_bnb4(ctx, sd_lookup, &v, prefix, FTQ_MEM_WEIGHTS, &q), FTQ_ERR_UNSUPPORTED);
  qm->data = qm_data;
  am->bytes -= 1;
  CHECK_STATUS(ftq_qtensor_from_bnb4(ctx, sd_lookup, &v, prefix, FTQ_MEM_WEIGHTS, &q), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("weight.absmax");
  am->bytes += 1;
  CHECK_STATUS(ftq_qtensor_from_bnb4(ctx, sd_lookup, &v, "nope.", FTQ_MEM_WEIGHTS, &q), FTQ_ERR_NOT_FOUND);
}

static void py_repr(void) {
  struct {
    double v;
    const char *s;
  } cases[] = {{0.07782872766256332, "0.07782872766256332"}, {1e-05, "1e-05"}, {1.5e-05, "1.5e-05"},
               {1e16, "1e+16"}, {123.0, "123.0"}, {0.1, "0.1"}, {100.0, "100.0"},
               {1234567890123456.0, "1234567890123456.0"}, {1.2345678901234567e+16, "1.2345678901234568e+16"},
               {0.0001, "0.0001"}, {-2.5e-7, "-2.5e-07"}, {3.4028234663852886e+38, "3.4028234663852886e+38"},
               {1.401298464324817e-45, "1.401298464324817e-45"}, {0.5, "0.5"}, {0.0, "0.0"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[40];
    ftq_py_float_repr(cases[i].v, buf, sizeof buf);
    CHECK_MSG(strcmp(buf, cases[i].s) == 0, "repr(%.17g): %s, Python writes %s", cases[i].v, buf, cases[i].s);
  }
}

int main(void) {
  if (!ref_open("tests/ref/quant/quant_ref.bin", &RF)) {
    fprintf(stderr, "cannot read tests/ref/quant/quant_ref.bin (run from the source root)\n");
    return 1;
  }
  ftq_options *opts;
  REQUIRE_OK(ftq_options_create(&opts));
  REQUIRE_OK(ftq_options_set_int(opts, "num_threads", 2));
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", opts, &ctx));
  const char *qts[2] = {"nf4", "fp4"}, *dts[3] = {"f32", "f16", "bf16"};
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++) {
      ftq_qscheme s = a ? FTQ_QSCHEME_FP4 : FTQ_QSCHEME_NF4;
      char name[128];
      for (int64_t bs = 32; bs <= 4096; bs *= 2) {
        snprintf(name, sizeof name, "q4/%s/%s/bs%lld", qts[a], dts[b], (long long)bs);
        four_bit_case(ctx, name, s, dtype_named(dts[b]), bs);
      }
      snprintf(name, sizeof name, "special/%s/%s", qts[a], dts[b]);
      four_bit_case(ctx, name, s, dtype_named(dts[b]), 64);
    }
  dq_case(ctx, "dq/nf4/bf16/bs64/n38437", FTQ_QSCHEME_NF4, FTQ_DTYPE_BF16, 64);
  dq_case(ctx, "dq/fp4/f16/bs128/n66561", FTQ_QSCHEME_FP4, FTQ_DTYPE_F16, 128);
  dq_case(ctx, "dq/nf4/f32/bs32/n9600", FTQ_QSCHEME_NF4, FTQ_DTYPE_F32, 32);
  dq_case(ctx, "dq/nf4/bf16/bs64/n96000", FTQ_QSCHEME_NF4, FTQ_DTYPE_BF16, 64);
  q8_case(ctx);
  ckpt_case(ctx, "nf4_dq_bf16", FTQ_DTYPE_BF16);
  ckpt_case(ctx, "nf4_nodq_f16", FTQ_DTYPE_F16);
  ckpt_case(ctx, "fp4_dq_f32", FTQ_DTYPE_F32);
  ckpt_case(ctx, "fp4_nodq_bf16", FTQ_DTYPE_BF16);
  ckpt_errors(ctx);
  py_repr();
  ftq_context_destroy(ctx);
  ftq_options_destroy(opts);
  ref_close(&RF);
  return test_finish("test_quant_bnb");
}
