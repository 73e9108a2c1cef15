/* Quantization-aware LoRA (model/qat.h):
 * - QAT off changes nothing: logits and gradients bit-identical to an adapter
 *   made without the option, and PEFT's logits;
 * - the forward pass equals a model whose adapted weights are
 *   fake_quant(dequant(W) + scaling B A) made by the stand-alone quantizer;
 * - on an NF4 base it equals the merged and re-quantized model written by
 *   ftq_model_save_merged (and uses the base's quantization, not options);
 * - gradients are the straight-through ones: equal to the analytic gradients
 *   of the surrogate model W = fake_quant(W'0) - scaling B0 A0 + scaling B A
 *   (whose forward value is the QAT one at B0, A0 and whose derivative
 *   treats fake_quant as the identity), and to central finite differences
 *   of that surrogate's loss;
 * - recomputation and dropout leave QAT gradients unchanged. */
#include "lora/lora.h"
#include "model/model_build.h"
#include "peft_test.h"

#define QVOD REF_DIR "/adapter_qvod"

static const char *const PROJ[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
static const int ADAPTED[4] = {0, 2, 3, 6}; /* adapter_qvod: q, v, o, down */

static ftq_options *nf4_options(const char *type, int qat) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", type));
  REQUIRE_OK(ftq_options_set_bool(o, "bnb_4bit_use_double_quant", 1));
  REQUIRE_OK(ftq_options_set_bool(o, "qat", qat));
  return o;
}

static ftq_lora *load_active(ftq_model *m, const char *name, const ftq_options *o) {
  ftq_lora *l;
  REQUIRE_OK(ftq_lora_load(m, QVOD, name, o, &l));
  REQUIRE_OK(ftq_lora_set_active(l, 1));
  return l;
}

/* Loss and gradients (one array of every A/B gradient) on the batch. */
static double loss_grads(ftq_model *m, ftq_lora *l, const int32_t *ids, int training, int ckpt, float **grads,
                         size_t *n_grads) {
  ftq_graph_settings s;
  memset(&s, 0, sizeof s);
  s.training = training;
  s.gradient_checkpointing = ckpt;
  s.seed = 5;
  ftq_graph_batch b = {ROWS, SEQ, ids, ids, NULL, NULL, NULL};
  ftq_graph_result res;
  REQUIRE_OK(ftq_lora_zero_grad(l));
  REQUIRE_OK(ftq_graph_forward_backward(m, &b, &s, &res, NULL, NULL));
  if (grads) {
    int64_t total;
    REQUIRE_OK(ftq_lora_num_parameters(l, &total));
    *grads = malloc(sizeof(float) * (size_t)total);
    size_t off = 0;
    for (size_t i = 0; i < ftq_lora_tensor_count(l); i++) {
      int64_t shape[2];
      REQUIRE_OK(ftq_lora_tensor_info(l, i, NULL, 0, shape));
      REQUIRE_OK(ftq_lora_get_grad(l, i, *grads + off, (size_t)(shape[0] * shape[1])));
      off += (size_t)(shape[0] * shape[1]);
    }
    *n_grads = off;
  }
  return res.loss;
}

static double loss_only(ftq_model *m, const int32_t *ids) {
  ftq_graph_batch b = {ROWS, SEQ, ids, ids, NULL, NULL, NULL};
  ftq_graph_result res;
  REQUIRE_OK(ftq_graph_forward(m, &b, NULL, &res, NULL, NULL));
  return res.loss;
}

/* fake_quant(merged weight) of (layer, p) through the stand-alone quantizer. */
static float *fq_merged(ftq_model *m, const ftq_lora *l, ftq_quantizer *q, int layer, int p, int64_t *shape) {
  char name[128];
  snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, PROJ[p]);
  REQUIRE_OK(ftq_model_merged_weight(m, l, name, NULL, 0, shape));
  size_t n = (size_t)(shape[0] * shape[1]);
  float *w = malloc(n * sizeof(float));
  REQUIRE_OK(ftq_model_merged_weight(m, l, name, w, n, NULL));
  REQUIRE_OK(ftq_quantizer_fake_quantize(q, w, w, FTQ_FLOAT32, FTQ_HOST, 2, shape));
  return w;
}

static void check_off(ftq_model *m, const pt_ref *r) {
  ftq_options *off = nf4_options("nf4", 0);
  ftq_lora *a = load_active(m, "off", off);
  float *la = pt_logits(m, r->ids), *ga;
  size_t n;
  loss_grads(m, a, r->ids, 1, 0, &ga, &n);
  ftq_lora *b = load_active(m, "plain", NULL);
  float *lb = pt_logits(m, r->ids), *gb;
  loss_grads(m, b, r->ids, 1, 0, &gb, &n);
  const size_t nl = (size_t)(ROWS * SEQ * r->vocab);
  CHECK_MSG(memcmp(la, lb, nl * sizeof(float)) == 0, "qat=false changes the logits");
  CHECK_MSG(memcmp(ga, gb, n * sizeof(float)) == 0, "qat=false changes the gradients");
  CHECK(pt_max_rel(la, pt_ref_logits(r, "logits_qvod"), nl) < 2e-5);
  free(la);
  free(lb);
  free(ga);
  free(gb);
  ftq_lora_destroy(a);
  ftq_lora_destroy(b);
  ftq_options_destroy(off);
}

/* The QAT forward pass is the model with fake-quantized merged weights. */
/* A QAT adapter (NF4 with double quantization for the unquantized base)
 * and the stand-alone quantizer with the same settings. */
typedef struct qat_setup {
  ftq_options *o;
  ftq_quantizer *q;
  ftq_lora *l;
} qat_setup;

static void qat_open(ftq_context *ctx, ftq_model *m, qat_setup *s) {
  s->o = nf4_options("nf4", 1);
  REQUIRE_OK(ftq_quantizer_create(ctx, s->o, &s->q));
  s->l = load_active(m, "qat", s->o);
}

static void qat_close(qat_setup *s) {
  ftq_lora_destroy(s->l);
  ftq_quantizer_destroy(s->q);
  ftq_options_destroy(s->o);
}

static void check_forward(ftq_context *ctx, ftq_model *m, const pt_ref *r) {
  qat_setup qs;
  qat_open(ctx, m, &qs);
  ftq_lora *l = qs.l;
  ftq_quantizer *q = qs.q;
  float *got = pt_logits(m, r->ids);
  ftq_model *ref;
  REQUIRE_OK(ftq_model_load(ctx, TINY, NULL, &ref));
  for (int layer = 0; layer < 2; layer++)
    for (int k = 0; k < 4; k++) {
      int64_t shape[2];
      float *w = fq_merged(m, l, q, layer, ADAPTED[k], shape);
      char name[128];
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, PROJ[ADAPTED[k]]);
      REQUIRE_OK(ftq_model_set_hf_tensor(ref, name, FTQ_DTYPE_F32, 2, shape, w));
      free(w);
    }
  float *want = pt_logits(ref, r->ids);
  const size_t nl = (size_t)(ROWS * SEQ * r->vocab);
  double e = pt_max_rel(got, want, nl), moved = pt_max_rel(got, pt_ref_logits(r, "logits_qvod"), nl);
  CHECK_MSG(e < 1e-6, "QAT logits vs fake-quantized merged weights: %.3g", e);
  CHECK_MSG(moved > 1e-4, "QAT logits equal the plain LoRA ones (%.3g)", moved);
  /* generation runs through the same path: the first greedy token is the arg-max */
  int32_t out[20];
  size_t n_out;
  REQUIRE_OK(ftq_model_generate(m, r->ids, SEQ, NULL, 0, NULL, 0, NULL, NULL, out, 20, &n_out, NULL));
  const float *last = want + (size_t)(SEQ - 1) * (size_t)r->vocab;
  int32_t best = 0;
  for (int32_t v = 1; v < r->vocab; v++)
    if (last[v] > last[best]) best = v;
  CHECK_MSG(n_out >= 1 && out[0] == best, "QAT generation's first token %d, arg-max %d", (int)out[0], (int)best);
  free(got);
  free(want);
  ftq_model_destroy(ref);
  qat_close(&qs);
}

/* NF4 base: QAT uses the base's quantization (the options ask for fp4) and
 * computes what the merged, re-quantized model does. */
static void check_merged_model(ftq_context *ctx, const pt_ref *r) {
  ftq_options *load = nf4_options("nf4", 0), *fp4 = nf4_options("fp4", 1);
  REQUIRE_OK(ftq_options_set_bool(load, "load_in_4bit", 1));
  ftq_model *m;
  REQUIRE_OK(ftq_model_load(ctx, TINY, load, &m));
  ftq_lora *l = load_active(m, "qat", fp4);
  float *got = pt_logits(m, r->ids);
  char *tmp = pt_tmpdir();
  REQUIRE_OK(ftq_model_save_merged(m, l, tmp, load));
  /* the merged model: the checkpoint's other weights, every projection from the 4-bit file */
  ftq_model *merged;
  ftq_st_set *set;
  REQUIRE_OK(ftq_model_load(ctx, TINY, NULL, &merged));
  REQUIRE_OK(ftq_st_set_open(tmp, &set));
  for (int layer = 0; layer < 2; layer++)
    for (int p = 0; p < 7; p++) {
      char prefix[128];
      snprintf(prefix, sizeof prefix, "model.layers.%d.%s.", layer, PROJ[p]);
      ftq_qtensor qt;
      pt_bnb_qtensor(ctx, set, prefix, &qt);
      REQUIRE_OK(ftq_model_set_linear(merged, layer, (ftq_proj)p, &qt));
    }
  ftq_st_set_close(set);
  float *want = pt_logits(merged, r->ids);
  double e = pt_max_rel(got, want, (size_t)(ROWS * SEQ * r->vocab));
  CHECK_MSG(e < 1e-6, "QAT on an NF4 base vs the merged NF4 model: %.3g", e);
  free(got);
  free(want);
  pt_rmtree(tmp);
  ftq_model_destroy(merged);
  ftq_lora_destroy(l);
  ftq_model_destroy(m);
  ftq_options_destroy(load);
  ftq_options_destroy(fp4);
}

/* Straight-through gradients against the surrogate model. */
static void check_gradients(ftq_context *ctx, ftq_model *m, const pt_ref *r) {
  qat_setup qs;
  qat_open(ctx, m, &qs);
  ftq_lora *l = qs.l;
  ftq_quantizer *q = qs.q;
  float *g_qat, *g_ckpt, *g_drop;
  size_t n;
  double loss_qat = loss_grads(m, l, r->ids, 0, 0, &g_qat, &n);
  loss_grads(m, l, r->ids, 0, 1, &g_ckpt, &n);
  loss_grads(m, l, r->ids, 1, 1, &g_drop, &n);
  CHECK_MSG(memcmp(g_qat, g_ckpt, n * sizeof(float)) == 0, "QAT gradients change with recomputation");
  CHECK_MSG(memcmp(g_qat, g_drop, n * sizeof(float)) == 0, "QAT gradients change with LoRA dropout");

  /* surrogate: base = fake_quant(W'0) - scaling B0 A0, plain adapter (A0, B0) */
  ftq_model *s;
  REQUIRE_OK(ftq_model_load(ctx, TINY, NULL, &s));
  double scaling;
  REQUIRE_OK(ftq_lora_scaling(l, &scaling));
  for (int layer = 0; layer < 2; layer++)
    for (int k = 0; k < 4; k++) {
      int p = ADAPTED[k];
      int64_t shape[2];
      float *w = fq_merged(m, l, q, layer, p, shape);
      char an[160], bn[160];
      size_t ia, ib;
      snprintf(an, sizeof an, "base_model.model.model.layers.%d.%s.lora_A.weight", layer, PROJ[p]);
      snprintf(bn, sizeof bn, "base_model.model.model.layers.%d.%s.lora_B.weight", layer, PROJ[p]);
      REQUIRE_OK(ftq_lora_find_tensor(l, an, &ia));
      REQUIRE_OK(ftq_lora_find_tensor(l, bn, &ib));
      const int64_t out = shape[0], in = shape[1], rank = 4;
      float *A = malloc(sizeof(float) * (size_t)(rank * in)), *B = malloc(sizeof(float) * (size_t)(out * rank));
      REQUIRE_OK(ftq_lora_get_tensor(l, ia, A, (size_t)(rank * in)));
      REQUIRE_OK(ftq_lora_get_tensor(l, ib, B, (size_t)(out * rank)));
      for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) {
          double d = 0;
          for (int64_t t = 0; t < rank; t++) d += (double)B[i * rank + t] * (double)A[t * in + j];
          w[i * in + j] = (float)((double)w[i * in + j] - scaling * d);
        }
      char name[128];
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, PROJ[p]);
      REQUIRE_OK(ftq_model_set_hf_tensor(s, name, FTQ_DTYPE_F32, 2, shape, w));
      free(w);
      free(A);
      free(B);
    }
  ftq_lora *ls = load_active(s, "surrogate", NULL);
  float *g_sur;
  double loss_sur = loss_grads(s, ls, r->ids, 0, 0, &g_sur, &n);
  CHECK_MSG(fabs(loss_sur - loss_qat) < 1e-5 * fabs(loss_qat), "surrogate loss %.9g vs QAT loss %.9g", loss_sur,
            loss_qat);
  double e = pt_max_rel(g_qat, g_sur, n);
  CHECK_MSG(e < 1e-4, "QAT gradients vs the surrogate's analytic gradients: %.3g", e);

  /* central differences of the surrogate's loss, a few elements of every tensor */
  size_t off = 0;
  int checked = 0, bad = 0;
  for (size_t t = 0; t < ftq_lora_tensor_count(ls); t++) {
    int64_t shape[2];
    REQUIRE_OK(ftq_lora_tensor_info(ls, t, NULL, 0, shape));
    const size_t cnt = (size_t)(shape[0] * shape[1]);
    float *v = malloc(cnt * sizeof(float));
    REQUIRE_OK(ftq_lora_get_tensor(ls, t, v, cnt));
    double gmax = 0;
    for (size_t i = 0; i < cnt; i++) gmax = fmax(gmax, fabs(g_qat[off + i]));
    for (int k = 0; k < 3; k++) {
      size_t i = (t * 131 + (size_t)k * 977) % cnt;
      const float keep = v[i], h = 1e-2f;
      v[i] = keep + h;
      REQUIRE_OK(ftq_lora_set_tensor(ls, t, v, cnt));
      double up = loss_only(s, r->ids);
      v[i] = keep - h;
      REQUIRE_OK(ftq_lora_set_tensor(ls, t, v, cnt));
      double down = loss_only(s, r->ids);
      v[i] = keep;
      REQUIRE_OK(ftq_lora_set_tensor(ls, t, v, cnt));
      const double fd = (up - down) / (2.0 * (double)h), an = g_qat[off + i];
      checked++;
      if (fabs(fd - an) > 5e-4 * gmax + 5e-3 * fabs(an)) {
        bad++;
        fprintf(stderr, "tensor %zu element %zu: finite difference %.6g, straight-through gradient %.6g\n", t, i, fd,
                an);
      }
    }
    off += cnt;
    free(v);
  }
  CHECK_MSG(bad == 0, "%d of %d finite differences disagree", bad, checked);
  free(g_qat);
  free(g_ckpt);
  free(g_drop);
  free(g_sur);
  ftq_lora_destroy(ls);
  ftq_model_destroy(s);
  qat_close(&qs);
}

int main(void) {
  pt_env e;
  pt_env_open(&e);
  check_off(e.m, &e.r);
  check_forward(e.ctx, e.m, &e.r);
  check_merged_model(e.ctx, &e.r);
  check_gradients(e.ctx, e.m, &e.r);
  return pt_env_close(&e, "test_qat");
}
