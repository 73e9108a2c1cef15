/* The CPU graph against PyTorch + transformers + PEFT (tests/ref/model,
 * written by gen_ref.py): logits, loss, every LoRA gradient and the gradient
 * of the input embeddings, with and without the adapter, with and without
 * gradient checkpointing (which must give bit-identical results), KV-cache
 * decoding against the full forward's logits, and greedy generation against
 * transformers' generate(). Built twice: unquantized base weights, and
 * (REF_NF4) bitsandbytes NF4 base weights, which skips while
 * ftq_qtensor_dequantize cannot decode NF4. Built twice more with REF_CUDA:
 * the same on a CUDA context, once with bf16 and once with fp16 compute;
 * greedy generation is reported there but not required to match (half
 * precision may flip a near tie), and decoding runs in bf16 either way.
 * Tolerances scale with how well-conditioned a tensor is: where PyTorch's
 * own f32 result is e from its f64 one, the CPU may be 3e off and the GPU
 * e times the ratio of its compute dtype's unit roundoff to f32's (2^16 for
 * bf16, 2^13 for fp16): these tiny models' LoRA gradients of the first
 * layer come through attention softmaxes whose terms cancel, and there
 * bf16 rounding is amplified as much as f32's is. Prints the worst
 * relative error of every tensor. */
#include "libftq/ftq_generate.h"
#include "ref_model.h"

#ifdef REF_CUDA
/* bf16 run (the NF4 models' logits are 3% off in bf16: weights and
 * activations both rounded); the fp16 run sets 5e-3, 3e-2 and 8192. Every
 * value seen on an H100 lies within these with a 12% margin or more. */
static double TOL = 4e-2, TOL_GRAD = 5e-2, COND = 65536.0;
#define TOL_CHUNK_LOSS 1e-5 /* chunking changes only the order of f32 sums ... */
#define TOL_CHUNK_GRAD 5e-2 /* ... and where exp(logit - running max) is rounded to the half type */
#define TOL_CHUNK_LOGITS 1e-5
#define GEN_EXACT 0
#else
#define GEN_EXACT 1
#define TOL 1e-5     /* relative Frobenius error per tensor */
#define TOL_GRAD 2e-5
#define COND 3.0
#define TOL_CHUNK_LOSS 1e-6
#define TOL_CHUNK_GRAD 5e-6
#define TOL_CHUNK_LOGITS 1e-7
#endif
static int run_fp16; /* REF_CUDA: this run computes in fp16 */

static double worst_seen = 0.0, worst_f32 = 0.0;
static const ref_file *cur_ref;

/* Relative error against PyTorch's float64 result, and against PyTorch's
 * float32 result (key "f32.<key>"). A tensor whose value is ill-conditioned
 * in f32 (PyTorch's own f32 result is far from its f64 one, e.g. key
 * gradients through a softmax, whose terms cancel) gets the tolerance
 * COND x PyTorch's own f32 error instead: on the CPU libftq must be as
 * accurate as PyTorch in f32 (COND 3), not more; see the top for CUDA. */
static void compare_key(const char *file, const char *what, const float *got, const float *ref, size_t n,
                        double tol, const char *key) {
  double e = test_rel_error_f32(got, ref, n), e32 = -1;
  char k32[256];
  ref_tensor t32;
  snprintf(k32, sizeof k32, "f32.%s", key ? key : "");
  if (key && ref_get(cur_ref, k32, &t32) && (size_t)t32.numel == n) {
    e32 = test_rel_error_f32(got, t32.data, n);
    if (e32 > worst_f32) worst_f32 = e32;
    double torch_err = test_rel_error_f32(t32.data, ref, n);
    if (COND * torch_err > tol) tol = COND * torch_err;
  }
  if (e > worst_seen) worst_seen = e;
  if (e32 >= 0)
    printf("  %-18s %-62s %.2e  (vs torch f32 %.2e)%s\n", file, what, e, e32, e <= tol ? "" : "  <-- FAIL");
  else
    printf("  %-18s %-62s %.2e%s\n", file, what, e, e <= tol ? "" : "  <-- FAIL");
  CHECK_MSG(e <= tol, "%s: %s: relative error %.3g > %.1g", file, what, e, tol);
  CHECK_MSG(e32 <= tol, "%s: %s: relative error to torch f32 %.3g > %.1g", file, what, e32, tol);
}
#define compare(file, what, got, ref, n, tol) compare_key(file, what, got, ref, n, tol, NULL)

/* Dequantizes a weight into host memory (through a device buffer when the
 * context is not the CPU). */
static ftq_status dequant_host(const ftq_qtensor *q, float *host) {
  if (q->ctx->type == FTQ_DEVICE_CPU) return ftq_qtensor_dequantize(q, FTQ_DTYPE_F32, host);
  const size_t bytes = sizeof(float) * (size_t)ftq_qtensor_numel(q);
  ftq_buffer b;
  FTQ_TRY(ftq_buffer_alloc(q->ctx, FTQ_MEM_OTHER, bytes, "dequantized weight", &b));
  ftq_status st = ftq_qtensor_dequantize(q, FTQ_DTYPE_F32, b.ptr);
  if (st == FTQ_OK) st = q->ctx->be->copy(q->ctx->be_ctx, host, b.ptr, bytes, FTQ_COPY_D2H);
  ftq_buffer_free(q->ctx, &b);
  return st;
}

/* A copy of tensor i's gradient (malloc'ed) and its element count. */
static float *grad_copy(ftq_lora *lora, size_t i, size_t *n) {
  int64_t shape[2];
  REQUIRE_OK(ftq_lora_tensor_info(lora, i, NULL, 0, shape));
  *n = (size_t)(shape[0] * shape[1]);
  float *g = malloc(sizeof(float) * *n);
  REQUIRE_OK(ftq_lora_get_grad(lora, i, g, *n));
  return g;
}

static int run_file(ftq_context *ctx, const char *path, int nf4) {
  ref_file r;
  if (!ref_open(&r, path)) {
    CHECK_MSG(0, "cannot read %s", path);
    return 0;
  }
  const char *file = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  char file_buf[96];
  if (run_fp16) {
    snprintf(file_buf, sizeof file_buf, "%s fp16", file);
    file = file_buf;
  }
  cur_ref = &r;
  struct ftq_model *m = NULL;
  REQUIRE_OK(ref_model_load(ctx, &r, nf4, &m));
  const ftq_model_config *c = &m->cfg;
  if (nf4) { /* NF4 decoding comes from the quantizer (issue 4) */
    float *probe = malloc(sizeof(float) * (size_t)ftq_qtensor_numel(&m->layers[0].proj[0]));
    ftq_status st = dequant_host(&m->layers[0].proj[0], probe);
    free(probe);
    if (st == FTQ_ERR_UNSUPPORTED) {
      printf("test_model_ref_nf4: SKIP: %s\n", ftq_last_error());
      ftq_model_free(m);
      ref_close(&r);
      return -1;
    }
    /* every NF4 weight dequantizes bit for bit as the bitsandbytes emulation did */
    int exact = 0, total = 0;
    for (size_t ti = 0; ti < ref_count(&r); ti++) {
      const char *key = ref_name(&r, ti);
      size_t kl = strlen(key);
      if (strncmp(key, "nf4.", 4) != 0 || kl < 12 || strcmp(key + kl - 12, ".dequantized") != 0) continue;
      long long layer;
      char proj[32];
      if (sscanf(key, "nf4.model.layers.%lld.%*[a-z_].%31[a-z_].weight", &layer, proj) != 2) continue;
      int p = 0;
      while (p < FTQ_PROJ_COUNT && strcmp(ftq_proj_name((ftq_proj)p), proj) != 0) p++;
      ref_tensor want = ref_need(&r, key);
      float *got = malloc(sizeof(float) * (size_t)want.numel);
      CHECK_OK(dequant_host(&m->layers[layer].proj[p], got));
      int same = memcmp(got, want.data, sizeof(float) * (size_t)want.numel) == 0;
      CHECK_MSG(same, "%s: NF4 dequantization differs from the bitsandbytes emulation", key);
      exact += same;
      total++;
      free(got);
    }
    printf("  %-18s %d of %d NF4 weights dequantize bit for bit as bitsandbytes\n", file, exact, total);
    CHECK(total > 0);
  }
  /* rotary frequencies */
  float inv[64];
  ftq_rope_inv_freq(c, inv);
  ref_tensor rinv = ref_need(&r, "rope.inv_freq");
  compare(file, "rope.inv_freq", inv, rinv.data, (size_t)rinv.numel, 1e-7);

  ftq_lora *lora = NULL;
  REQUIRE_OK(ref_lora_load(m, &r, &lora));
  REQUIRE_OK(ftq_lora_set_active(lora, 1));
  ftq_graph_batch b;
  ref_batch(&r, &b);
  const size_t T = (size_t)(b.n_rows * b.seq_len), V = (size_t)c->vocab_size, H = (size_t)c->hidden_size;
  float *logits = malloc(sizeof(float) * T * V);
  ftq_graph_settings s = {0};
  s.training = 1;
  s.fp16 = run_fp16;
  ftq_graph_result res;
  CHECK_OK(ftq_graph_forward(m, &b, &s, &res, NULL, logits));
  ref_tensor rl = ref_need(&r, "logits");
  compare_key(file, "logits (with adapter)", logits, rl.data, T * V, TOL, "logits");
  float loss_f = (float)res.loss, ref_loss = *(const float *)ref_need(&r, "loss").data;
  compare_key(file, "loss (forward only)", &loss_f, &ref_loss, 1, TOL, "loss");

  /* forward + backward, then the same with gradient checkpointing */
  float *demb = malloc(sizeof(float) * T * H), *demb2 = malloc(sizeof(float) * T * H);
  size_t nt = ftq_lora_tensor_count(lora);
  float **g1 = calloc(nt, sizeof *g1);
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  CHECK_OK(ftq_graph_forward_backward(m, &b, &s, &res, NULL, demb));
  loss_f = (float)res.loss;
  compare_key(file, "loss", &loss_f, &ref_loss, 1, TOL, "loss");
  compare_key(file, "grad inputs_embeds", demb, ref_need(&r, "grad.inputs_embeds").data, T * H, TOL_GRAD,
              "grad.inputs_embeds");
  json_t *names = json_object_get(r.config, "lora_tensors");
  for (size_t i = 0; i < nt; i++) {
    const char *nm = json_string_value(json_array_get(names, i));
    char key[256];
    snprintf(key, sizeof key, "grad.%s", nm);
    ref_tensor rg = ref_need(&r, key);
    g1[i] = malloc(sizeof(float) * (size_t)rg.numel);
    CHECK_OK(ftq_lora_get_grad(lora, i, g1[i], (size_t)rg.numel));
    compare_key(file, key + 5, g1[i], rg.data, (size_t)rg.numel, TOL_GRAD, key);
  }
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  s.gradient_checkpointing = 1;
  ftq_graph_result res2;
  CHECK_OK(ftq_graph_forward_backward(m, &b, &s, &res2, NULL, demb2));
  CHECK_MSG(res2.loss == res.loss, "%s: checkpointed loss %.9g != %.9g", file, res2.loss, res.loss);
  CHECK_MSG(memcmp(demb, demb2, sizeof(float) * T * H) == 0, "%s: checkpointed d_embeddings differ", file);
  for (size_t i = 0; i < nt; i++) {
    size_t n;
    float *g2 = grad_copy(lora, i, &n);
    CHECK_MSG(memcmp(g1[i], g2, sizeof(float) * n) == 0, "%s: checkpointed gradient of tensor %zu differs", file, i);
    free(g2);
  }
  s.gradient_checkpointing = 0;

  /* the LM head in vocabulary chunks of 13 (the last one partial): the same loss and gradients */
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  s.vocab_chunk = 13;
  CHECK_OK(ftq_graph_forward_backward(m, &b, &s, &res2, NULL, demb2));
  CHECK_MSG(fabs(res2.loss - res.loss) <= TOL_CHUNK_LOSS * fabs(res.loss), "%s: chunked loss %.9g != %.9g", file,
            res2.loss, res.loss);
  double worst_chunk = test_rel_error_f32(demb2, demb, T * H);
  for (size_t i = 0; i < nt; i++) {
    size_t n;
    float *g2 = grad_copy(lora, i, &n);
    double e = test_rel_error_f32(g2, g1[i], n);
    if (e > worst_chunk) worst_chunk = e;
    free(g2);
  }
  printf("  %-18s %-62s %.2e\n", file, "gradients with a chunked LM head vs one chunk", worst_chunk);
  CHECK_MSG(worst_chunk < TOL_CHUNK_GRAD, "%s: chunked LM head changes gradients by %.3g", file, worst_chunk);
  float *chunk_logits = malloc(sizeof(float) * T * V);
  CHECK_OK(ftq_graph_forward(m, &b, &s, NULL, NULL, chunk_logits));
  CHECK(memcmp(chunk_logits, logits, sizeof(float) * T * V) == 0 ||
        test_rel_error_f32(chunk_logits, logits, T * V) < TOL_CHUNK_LOGITS);
  free(chunk_logits);
  s.vocab_chunk = 0;

  /* KV-cache decoding of row 0 one token at a time = the full forward */
  ftq_kv_cache *kv;
  REQUIRE_OK(ftq_kv_cache_create(m, b.seq_len, &kv));
  float *step_logits = malloc(sizeof(float) * (size_t)b.seq_len * V);
  CHECK_OK(ftq_graph_decode(m, kv, b.input_ids, 5, NULL, step_logits)); /* a prefill of 5 */
  for (int64_t t = 5; t < b.seq_len; t++)
    CHECK_OK(ftq_graph_decode(m, kv, b.input_ids + t, 1, step_logits + (size_t)t * V, NULL));
#ifdef REF_CUDA
  const double dec_tol = 4e-2, run_cond = COND; /* decoding runs in bf16 in either run */
  COND = 65536.0;
#else
  const double dec_tol = TOL;
#endif
  compare_key(file, "logits row 0 by KV-cache decoding", step_logits, rl.data, (size_t)b.seq_len * V, dec_tol,
              "logits");
#ifdef REF_CUDA
  COND = run_cond;
#endif
  ftq_kv_cache_destroy(kv);

  /* greedy generation against transformers' generate() */
  ftq_options *go;
  REQUIRE_OK(ftq_options_create(&go));
  ref_tensor gl = ref_need(&r, "generate.lora"), gb = ref_need(&r, "generate.base");
  REQUIRE_OK(ftq_options_set_int(go, "max_new_tokens", gl.numel));
  int32_t out[64];
  size_t n_out = 0;
  int reason = -1;
  CHECK_OK(ftq_model_generate(m, b.input_ids, 6, go, 0, NULL, 0, NULL, NULL, out, 64, &n_out, &reason));
  CHECK_MSG(GEN_EXACT ? n_out == (size_t)gl.numel && memcmp(out, gl.data, n_out * 4) == 0 : n_out == (size_t)gl.numel,
            "%s: greedy generation with the adapter differs from transformers", file);
  printf("  %-16s %-64s %s\n", file, "greedy generation (adapter) = transformers", n_out == (size_t)gl.numel &&
         memcmp(out, gl.data, n_out * 4) == 0 ? "yes" : "NO");

  /* without the adapter */
  REQUIRE_OK(ftq_lora_set_active(lora, 0));
  CHECK_OK(ftq_graph_forward(m, &b, &s, NULL, NULL, logits));
  compare_key(file, "logits (base model, adapter inactive)", logits, ref_need(&r, "logits.base").data, T * V, TOL,
              "logits.base");
  CHECK_OK(ftq_model_generate(m, b.input_ids, 6, go, 0, NULL, 0, NULL, NULL, out, 64, &n_out, &reason));
  CHECK_MSG(GEN_EXACT ? n_out == (size_t)gb.numel && memcmp(out, gb.data, n_out * 4) == 0 : n_out == (size_t)gb.numel,
            "%s: greedy generation without the adapter differs from transformers", file);
  printf("  %-16s %-64s %s\n", file, "greedy generation (base) = transformers", n_out == (size_t)gb.numel &&
         memcmp(out, gb.data, n_out * 4) == 0 ? "yes" : "NO");
  ftq_options_destroy(go);

  for (size_t i = 0; i < nt; i++) free(g1[i]);
  free(g1);
  free(step_logits);
  free(demb);
  free(demb2);
  free(logits);
  ftq_lora_destroy(lora);
  ftq_model_free(m);
  ref_close(&r);
  return 1;
}

#ifdef REF_CUDA
#define NAME_SUFFIX "_cuda"
#else
#define NAME_SUFFIX ""
#endif

int main(void) {
#ifdef REF_NF4
  const char *files[] = {"tests/ref/model/gqa_nf4.safetensors", "tests/ref/model/llama3_nf4.safetensors"};
  const int nf4 = 1;
  const char *name = "test_model_ref_nf4" NAME_SUFFIX;
#else
  const char *files[] = {"tests/ref/model/gqa.safetensors", "tests/ref/model/tied.safetensors",
                         "tests/ref/model/llama3.safetensors"};
  const int nf4 = 0;
  const char *name = "test_model_ref" NAME_SUFFIX;
#endif
#ifdef REF_CUDA
  int ndev = 0;
  ftq_cuda_device_count(&ndev);
  if (ndev == 0) return test_gpu_unavailable(name, ftq_last_error());
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &ctx));
#else
  ftq_context *ctx = test_cpu_context();
#endif
  size_t n_files = sizeof files / sizeof files[0];
#ifdef REF_CUDA
  const char *qe = getenv("FTQ_TEST_QUICK"); /* compute-sanitizer runs: the first file in bf16 only */
  const int quick = qe && *qe && strcmp(qe, "0") != 0;
  if (quick) n_files = 1;
#endif
  int ran = 0;
  for (size_t i = 0; i < n_files; i++) {
    int r = run_file(ctx, files[i], nf4);
    if (r < 0) {
      ftq_context_destroy(ctx);
      return TEST_SKIP_CODE;
    }
    ran += r;
  }
  CHECK(ran == (int)n_files);
#ifdef REF_CUDA
  printf("%s: bf16 worst relative error %.2e; again with fp16 compute:\n", name, worst_seen);
  run_fp16 = 1;
  TOL = 5e-3, TOL_GRAD = 3e-2, COND = 8192.0;
  for (size_t i = 0; !quick && i < n_files; i++) run_file(ctx, files[i], nf4);
#endif
  printf("%s: worst relative error over every tensor: %.2e against PyTorch float64 (%.2e against PyTorch float32)\n",
         name, worst_seen, worst_f32);
  ftq_context_destroy(ctx);
  return test_finish(name);
}
