/* The whole graph on a CUDA context against the CPU backend (the fp32
 * reference), on tiny random models: logits and loss of the forward, loss,
 * every LoRA gradient and the input-embedding gradient of forward +
 * backward (dropout on, right padding and packed sequences in the batch),
 * with and without gradient checkpointing; an NF4 + double-quant base; fp16
 * compute; KV-cache decoding and generation; and determinism (the same
 * call twice gives bit-identical losses and gradients, checkpointing
 * changes no bit). Every model runs with bf16 and with fp16 compute; the
 * tolerances (relative Frobenius error) are those of the dtype, and fp16's
 * 8x finer rounding must show as a smaller error (a wrong index would
 * not). KV-cache decoding runs in bf16 either way. FTQ_TEST_QUICK=1
 * (compute-sanitizer runs) keeps the first model in bf16 only. */
#include "libftq/ftq_generate.h"
#include "libftq/ftq_lora.h"
#include "lora/lora.h"
#include "random_model.h"

#define TOL_OUT 3e-2  /* logits, loss (bf16) */
#define TOL_GRAD 1e-1 /* gradients through several bf16 products, and the NF4 weights rounded to bf16 */

static double worst = 0;

static void cmp(const char *what, const float *got, const float *want, size_t n, double tol) {
  double e = test_rel_error_f32(got, want, n);
  if (e > worst) worst = e;
  printf("  %-64s %.2e%s\n", what, e, e <= tol ? "" : "  <-- FAIL");
  CHECK_MSG(e <= tol, "%s: relative error %.3g > %.1g", what, e, tol);
}

static ftq_lora *adapter(struct ftq_model *m) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "r", 4));
  REQUIRE_OK(ftq_options_set_float(o, "lora_alpha", 8));
  REQUIRE_OK(ftq_options_set_float(o, "lora_dropout", 0.1));
  REQUIRE_OK(ftq_options_set_string(o, "target_modules", "all-linear"));
  REQUIRE_OK(ftq_options_set_string(o, "init_lora_weights", "false")); /* B != 0: every gradient is non-trivial */
  ftq_lora *l;
  REQUIRE_OK(ftq_lora_create(m, NULL, o, 3, &l));
  REQUIRE_OK(ftq_lora_set_active(l, 1));
  ftq_options_destroy(o);
  return l;
}

/* Concatenated LoRA gradients (malloc'ed). */
static float *grads(ftq_lora *l, size_t *total) {
  size_t nt = ftq_lora_tensor_count(l), n = 0;
  for (size_t i = 0; i < nt; i++) {
    int64_t sh[2];
    REQUIRE_OK(ftq_lora_tensor_info(l, i, NULL, 0, sh));
    n += (size_t)(sh[0] * sh[1]);
  }
  float *g = malloc(sizeof(float) * n);
  size_t off = 0;
  for (size_t i = 0; i < nt; i++) {
    int64_t sh[2];
    REQUIRE_OK(ftq_lora_tensor_info(l, i, NULL, 0, sh));
    REQUIRE_OK(ftq_lora_get_grad(l, i, g + off, (size_t)(sh[0] * sh[1])));
    off += (size_t)(sh[0] * sh[1]);
  }
  *total = n;
  return g;
}

/* 2 rows x S tokens: row 0 right-padded (last 5 tokens), row 1 two packed sequences. */
typedef struct batch_data {
  int32_t ids[64], labels[64], mask[64], seq[64];
  ftq_graph_batch b;
} batch_data;

static void make_batch(batch_data *d, int64_t S, int64_t V) {
  uint64_t s = 99;
  for (int64_t i = 0; i < 2 * S; i++) {
    int64_t t = i % S, row = i / S;
    d->ids[i] = (int32_t)(test_rand_u64(&s) % (uint64_t)V);
    d->mask[i] = !(row == 0 && t >= S - 5);
    d->labels[i] = d->mask[i] ? d->ids[i] : -100;
    d->seq[i] = row == 1 && t >= S / 2 ? 1 : 0;
  }
  ftq_graph_batch b = {2, S, d->ids, d->labels, d->mask, NULL, d->seq};
  d->b = b;
}

/* Forward (logits, loss) and forward + backward (loss, gradients, d_embeddings)
 * of the same model on both contexts. */
/* Returns the relative error of the concatenated LoRA gradients. */
static double compare_models(const char *name, struct ftq_model *mc, struct ftq_model *mg, int fp16) {
  const int64_t V = mc->cfg.vocab_size, H = mc->cfg.hidden_size, S = 24;
  const double tol_out = fp16 ? TOL_OUT / 6 : TOL_OUT, tol_grad = fp16 ? TOL_GRAD / 6 : TOL_GRAD;
  ftq_lora *lc = adapter(mc), *lg = adapter(mg);
  batch_data bd;
  make_batch(&bd, S, V);
  const size_t T = (size_t)(2 * S);
  float *logc = malloc(sizeof(float) * T * (size_t)V), *logg = malloc(sizeof(float) * T * (size_t)V);
  ftq_graph_settings s = {.training = 1, .seed = 11, .step = 2, .fp16 = fp16};
  ftq_graph_result rc, rg;
  char what[128];
  CHECK_OK(ftq_graph_forward(mc, &bd.b, &s, &rc, NULL, logc));
  CHECK_OK(ftq_graph_forward(mg, &bd.b, &s, &rg, NULL, logg));
  snprintf(what, sizeof what, "%s: logits", name);
  cmp(what, logg, logc, T * (size_t)V, tol_out);
  float l1 = (float)rg.loss, l2 = (float)rc.loss;
  snprintf(what, sizeof what, "%s: loss (forward) %.5f vs %.5f", name, rg.loss, rc.loss);
  cmp(what, &l1, &l2, 1, tol_out);
  CHECK(rg.n_items == rc.n_items);

  float *ec = malloc(sizeof(float) * T * (size_t)H), *eg = malloc(sizeof(float) * T * (size_t)H);
  float *eg2 = malloc(sizeof(float) * T * (size_t)H);
  size_t n1, n2, n3;
  REQUIRE_OK(ftq_lora_zero_grad(lc));
  REQUIRE_OK(ftq_lora_zero_grad(lg));
  CHECK_OK(ftq_graph_forward_backward(mc, &bd.b, &s, &rc, NULL, ec));
  CHECK_OK(ftq_graph_forward_backward(mg, &bd.b, &s, &rg, NULL, eg));
  float *gc = grads(lc, &n1), *gg = grads(lg, &n2);
  l1 = (float)rg.loss, l2 = (float)rc.loss;
  snprintf(what, sizeof what, "%s: loss (training, dropout 0.1) %.5f vs %.5f", name, rg.loss, rc.loss);
  cmp(what, &l1, &l2, 1, tol_out);
  snprintf(what, sizeof what, "%s: every LoRA gradient (%zu values)", name, n1);
  cmp(what, gg, gc, n1, tol_grad);
  const double grad_err = test_rel_error_f32(gg, gc, n1);
  snprintf(what, sizeof what, "%s: gradient of the input embeddings", name);
  cmp(what, eg, ec, T * (size_t)H, tol_grad);
  /* per tensor, for the report */
  size_t nt = ftq_lora_tensor_count(lc), off = 0;
  double wt = 0;
  for (size_t i = 0; i < nt; i++) {
    int64_t sh[2];
    REQUIRE_OK(ftq_lora_tensor_info(lc, i, NULL, 0, sh));
    double e = test_rel_error_f32(gg + off, gc + off, (size_t)(sh[0] * sh[1]));
    if (e > wt) wt = e;
    off += (size_t)(sh[0] * sh[1]);
  }
  printf("  %-64s %.2e\n", "  worst single LoRA tensor", wt);
  CHECK(wt <= 2 * tol_grad);

  /* determinism, and checkpointing changes no bit */
  REQUIRE_OK(ftq_lora_zero_grad(lg));
  ftq_graph_result rg2;
  CHECK_OK(ftq_graph_forward_backward(mg, &bd.b, &s, &rg2, NULL, eg2));
  float *gg2 = grads(lg, &n3);
  int same = rg2.loss == rg.loss && memcmp(gg2, gg, sizeof(float) * n2) == 0 &&
             memcmp(eg2, eg, sizeof(float) * T * (size_t)H) == 0;
  printf("  %-64s %s\n", "  the same call again: bit-identical loss and gradients", same ? "yes" : "NO  <-- FAIL");
  CHECK_MSG(same, "%s: two identical GPU calls differ (loss %.9g vs %.9g)", name, rg2.loss, rg.loss);
  free(gg2);
  REQUIRE_OK(ftq_lora_zero_grad(lg));
  s.gradient_checkpointing = 1;
  CHECK_OK(ftq_graph_forward_backward(mg, &bd.b, &s, &rg2, NULL, eg2));
  gg2 = grads(lg, &n3);
  same = rg2.loss == rg.loss && memcmp(gg2, gg, sizeof(float) * n2) == 0 &&
         memcmp(eg2, eg, sizeof(float) * T * (size_t)H) == 0;
  printf("  %-64s %s\n", "  gradient checkpointing: bit-identical", same ? "yes" : "NO  <-- FAIL");
  CHECK_MSG(same, "%s: checkpointed GPU step differs", name);
  free(gg2);

  /* KV-cache decoding of row 0 (prefill 6, then one token at a time) = the CPU's full forward */
  ftq_kv_cache *kv;
  REQUIRE_OK(ftq_kv_cache_create(mg, S, &kv));
  float *dl = malloc(sizeof(float) * (size_t)S * (size_t)V);
  ftq_graph_batch b0 = {1, S, bd.ids, NULL, NULL, NULL, NULL};
  CHECK_OK(ftq_graph_forward(mc, &b0, NULL, NULL, NULL, logc));
  CHECK_OK(ftq_graph_decode(mg, kv, bd.ids, 6, NULL, dl));
  for (int64_t t = 6; t < S; t++) CHECK_OK(ftq_graph_decode(mg, kv, bd.ids + t, 1, dl + (size_t)t * (size_t)V, NULL));
  snprintf(what, sizeof what, "%s: KV-cache decoding (bf16) logits vs the CPU forward", name);
  cmp(what, dl, logc, (size_t)S * (size_t)V, TOL_OUT);
  ftq_kv_cache_destroy(kv);

  /* greedy generation runs on the GPU; tokens usually equal the CPU's (bf16 may flip a near tie) */
  ftq_options *go;
  REQUIRE_OK(ftq_options_create(&go));
  REQUIRE_OK(ftq_options_set_int(go, "max_new_tokens", 8));
  int32_t oc[16], og[16];
  size_t nc = 0, ng = 0;
  CHECK_OK(ftq_model_generate(mc, bd.ids, 5, go, 0, NULL, 0, NULL, NULL, oc, 16, &nc, NULL));
  CHECK_OK(ftq_model_generate(mg, bd.ids, 5, go, 0, NULL, 0, NULL, NULL, og, 16, &ng, NULL));
  CHECK(ng == nc);
  printf("  %-64s %s\n", "  greedy generation: same tokens as the CPU",
         ng == nc && memcmp(oc, og, 4 * nc) == 0 ? "yes" : "no (a near tie flipped in bf16)");
  ftq_options_destroy(go);

  free(gc), free(gg), free(ec), free(eg), free(eg2), free(logc), free(logg), free(dl);
  ftq_lora_destroy(lc);
  ftq_lora_destroy(lg);
  return grad_err;
}

/* bf16, then fp16: fp16's error must be clearly smaller (rounding, not a bug). */
static void compare_both(const char *name, struct ftq_model *mc, struct ftq_model *mg) {
  char nm[128];
  double eb = compare_models(name, mc, mg, 0);
  snprintf(nm, sizeof nm, "%s, fp16", name);
  double eh = compare_models(nm, mc, mg, 1);
  printf("  %-64s %.1fx%s\n", "  LoRA gradient error bf16 / fp16", eb / eh, eb > 3 * eh ? "" : "  <-- FAIL");
  CHECK_MSG(eb > 3 * eh, "%s: fp16 error %.3g is not well below bf16's %.3g", name, eh, eb);
}

int main(void) {
  int n = 0;
  ftq_cuda_device_count(&n);
  if (n == 0) return test_gpu_unavailable("test_model_cuda", ftq_last_error());
  ftq_context *cpu, *gpu;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &gpu));
  printf("test_model_cuda on %s\n", ftq_context_device_name(gpu));

  /* head_dim 16, GQA 4/2 */
  ftq_model_config c = rand_config(64, 96, 2, 4, 2, 100);
  struct ftq_model *mc = rand_model(cpu, &c, 5, NULL), *mg = rand_model(gpu, &c, 5, NULL);
  const char *qe = getenv("FTQ_TEST_QUICK");
  const int quick = qe && *qe && strcmp(qe, "0") != 0;
  if (quick) compare_models("gqa f32 weights", mc, mg, 0);
  else compare_both("gqa f32 weights", mc, mg);
  ftq_model_free(mc);
  ftq_model_free(mg);
  if (quick) {
    ftq_context_destroy(gpu);
    ftq_context_destroy(cpu);
    return test_finish("test_model_cuda");
  }

  /* head_dim 64, MQA, tied embeddings, attention bias */
  c = rand_config(128, 200, 2, 2, 1, 300);
  c.tie_word_embeddings = 1;
  c.attention_bias = 1;
  mc = rand_model(cpu, &c, 6, NULL), mg = rand_model(gpu, &c, 6, NULL);
  compare_both("mqa tied bias", mc, mg);
  ftq_model_free(mc);
  ftq_model_free(mg);

  /* NF4 + double quantization, bf16 embeddings (quantized identically on both devices) */
  const char *json = "{\"hidden_size\": 128, \"intermediate_size\": 256, \"num_hidden_layers\": 2, "
                     "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 500, "
                     "\"initializer_range\": 0.2, \"torch_dtype\": \"bfloat16\"}";
  ftq_options *q;
  REQUIRE_OK(ftq_options_create(&q));
  REQUIRE_OK(ftq_options_set_bool(q, "load_in_4bit", 1));
  REQUIRE_OK(ftq_options_set_string(q, "bnb_4bit_quant_type", "nf4"));
  REQUIRE_OK(ftq_options_set_bool(q, "bnb_4bit_use_double_quant", 1));
  ftq_model *pc, *pg;
  REQUIRE_OK(ftq_model_init_random(cpu, json, 7, q, &pc));
  REQUIRE_OK(ftq_model_init_random(gpu, json, 7, q, &pg));
  compare_both("nf4+dq bf16 embeddings", (struct ftq_model *)pc, (struct ftq_model *)pg);
  ftq_model_destroy(pc);
  ftq_model_destroy(pg);
  ftq_options_destroy(q);

  printf("test_model_cuda: worst relative error %.2e\n", worst);
  ftq_context_destroy(gpu);
  ftq_context_destroy(cpu);
  return test_finish("test_model_cuda");
}
