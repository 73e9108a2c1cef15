/* Generation: transformers' logits processors against their Python twins
 * (tests/ref/model/sampling.safetensors), and ftq_model_generate's
 * contract: greedy = arg-max of the full forward, top_k 1 = greedy,
 * sampling deterministic per seed and distributed as softmax(logits / T),
 * stops at EOS / stop sequences / the callback, argument errors. */
#include "libftq/ftq_generate.h"
#include "libftq/ftq_lora.h"
#include "model/sampling.h"
#include "random_model.h"
#include "ref_file.h"

static void test_processors(void) {
  ref_file r;
  if (!ref_open(&r, "tests/ref/model/sampling.safetensors")) {
    CHECK(0);
    return;
  }
  ref_tensor sc = ref_need(&r, "scores"), hist = ref_need(&r, "history");
  const int64_t V = sc.numel;
  int cases = (int)ref_cfg_num(&r, "cases");
  float *x = malloc(sizeof(float) * (size_t)V);
  int32_t *scratch = malloc(sizeof(int32_t) * 2 * (size_t)V);
  for (int i = 0; i < cases; i++) {
    char key[32];
    snprintf(key, sizeof key, "case%d.params", i);
    const double *p = ref_need(&r, key).data;
    ftq_sampling s = {.do_sample = 1, .temperature = p[0], .top_k = (int64_t)p[1], .top_p = p[2],
                      .repetition_penalty = p[3]};
    memcpy(x, sc.data, sizeof(float) * (size_t)V);
    ftq_logits_process(x, V, hist.data, (size_t)hist.numel, &s, scratch);
    snprintf(key, sizeof key, "case%d", i);
    const float *want = ref_need(&r, key).data;
    int same_mask = 1, kept = 0;
    double err = 0;
    for (int64_t v = 0; v < V; v++) {
      if (isinf(want[v]) != isinf(x[v])) same_mask = 0;
      if (!isinf(want[v])) {
        kept++;
        double d = fabs((double)x[v] - want[v]) / (fabs(want[v]) + 1e-30);
        if (d > err) err = d;
      }
    }
    printf("processors case %d (T=%g top_k=%g top_p=%g rep=%g): %d tokens kept, same as transformers: %s, "
           "max rel diff %.1e\n", i, p[0], p[1], p[2], p[3], kept, same_mask ? "yes" : "NO", err);
    CHECK_MSG(same_mask, "case %d: kept tokens differ from transformers", i);
    CHECK_MSG(err <= 1e-6, "case %d: processed scores differ by %.3g", i, err);
  }
  /* greedy applies only the repetition penalty */
  ftq_sampling g = {.do_sample = 0, .temperature = 0.5, .top_k = 3, .top_p = 0.5, .repetition_penalty = 1.0};
  memcpy(x, sc.data, sizeof(float) * (size_t)V);
  ftq_logits_process(x, V, hist.data, (size_t)hist.numel, &g, scratch);
  CHECK(memcmp(x, sc.data, sizeof(float) * (size_t)V) == 0);
  free(x);
  free(scratch);
  ref_close(&r);
}

typedef struct cb_state {
  int32_t seen[64];
  size_t n;
  size_t stop_at;
} cb_state;

static int on_token(void *user, int32_t token, size_t index) {
  cb_state *s = user;
  CHECK(index == s->n);
  s->seen[s->n++] = token;
  return s->n == s->stop_at;
}

int main(void) {
  test_processors();

  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  ftq_context *ctx = test_cpu_context();
  ftq_model_config c = rand_config(32, 48, 2, 4, 2, 40);
  c.n_eos_token_ids = 0; /* no end-of-sequence id until the EOS check below */
  struct ftq_model *m = rand_model(ctx, &c, 21, NULL);
  const int32_t prompt[5] = {5, 17, 9, 22, 3};
  const int64_t V = c.vocab_size;

  /* greedy: each token is the arg-max of a full forward over the sequence so far */
  REQUIRE_OK(ftq_options_set_int(o, "max_new_tokens", 10));
  int32_t out[64], seq[64];
  size_t n = 0;
  int reason = -1;
  cb_state cs = {{0}, 0, 0};
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 0, NULL, 0, on_token, &cs, out, 64, &n, &reason));
  CHECK(cs.n == n && memcmp(cs.seen, out, n * 4) == 0);
  memcpy(seq, prompt, sizeof prompt);
  float *logits = malloc(sizeof(float) * 64 * (size_t)V);
  for (size_t i = 0; i < n; i++) {
    ftq_graph_batch b = {1, (int64_t)(5 + i), seq, NULL, NULL, NULL, NULL};
    REQUIRE_OK(ftq_graph_forward(m, &b, NULL, NULL, NULL, logits));
    int32_t want = ftq_logits_argmax(logits + (5 + i - 1) * (size_t)V, V);
    CHECK_MSG(out[i] == want, "greedy token %zu: %d, full forward's arg-max %d", i, (int)out[i], (int)want);
    seq[5 + i] = out[i];
  }
  CHECK(n == 10 && reason == FTQ_FINISH_LENGTH);
  printf("greedy: %zu tokens, finish reason %d:", n, reason);
  for (size_t i = 0; i < n; i++) printf(" %d", (int)out[i]);
  printf("\n");

  /* the callback stops generation after its token */
  cs.n = 0;
  cs.stop_at = 3;
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 0, NULL, 0, on_token, &cs, out, 64, &n, &reason));
  CHECK(n == 3 && reason == FTQ_FINISH_CALLBACK && memcmp(out, seq + 5, 12) == 0);

  /* stop sequences: the 3rd and 4th greedy tokens (or a sequence reaching into the prompt) */
  int32_t stops[] = {1000, -1, seq[7], seq[8], -1};
  size_t first = 4; /* the first length of output at which prompt + output ends with the pair */
  for (size_t k = 1; k < 4; k++)
    if (seq[5 + k - 2] == seq[7] && seq[5 + k - 1] == seq[8]) {
      first = k;
      break;
    }
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 0, stops, 5, NULL, NULL, out, 64, &n, &reason));
  CHECK(n == first && reason == FTQ_FINISH_STOP_SEQUENCE);
  int32_t stops2[] = {prompt[4], seq[5], -1};
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 0, stops2, 3, NULL, NULL, out, 64, &n, &reason));
  CHECK(n == 1 && reason == FTQ_FINISH_STOP_SEQUENCE);

  /* EOS: make the model's configuration call the 2nd greedy token end-of-sequence */
  m->cfg.eos_token_ids[0] = seq[6];
  m->cfg.n_eos_token_ids = 1;
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 0, NULL, 0, NULL, NULL, out, 64, &n, &reason));
  CHECK(n == (seq[5] == seq[6] ? 1u : 2u) && reason == FTQ_FINISH_EOS);
  m->cfg.n_eos_token_ids = 0;

  /* sampling with top_k = 1 is greedy; the same seed gives the same tokens */
  REQUIRE_OK(ftq_options_set_bool(o, "do_sample", 1));
  REQUIRE_OK(ftq_options_set_int(o, "top_k", 1));
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 42, NULL, 0, NULL, NULL, out, 64, &n, &reason));
  CHECK(n == 10);
  CHECK(memcmp(out, seq + 5, n * 4) == 0);
  REQUIRE_OK(ftq_options_set_int(o, "top_k", 0));
  REQUIRE_OK(ftq_options_set_float(o, "temperature", 1.7));
  int32_t a[64], b2[64];
  size_t na, nb;
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 42, NULL, 0, NULL, NULL, a, 64, &na, NULL));
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 42, NULL, 0, NULL, NULL, b2, 64, &nb, NULL));
  CHECK(na == nb && memcmp(a, b2, na * 4) == 0);

  /* the first sampled token is distributed as softmax(logits / T) */
  ftq_graph_batch bp = {1, 5, prompt, NULL, NULL, NULL, NULL};
  REQUIRE_OK(ftq_graph_forward(m, &bp, NULL, NULL, NULL, logits));
  const float *last = logits + 4 * (size_t)V;
  double p[64], mx = -INFINITY, z = 0;
  for (int64_t v = 0; v < V; v++) mx = fmax(mx, last[v] / 1.7);
  for (int64_t v = 0; v < V; v++) z += p[v] = exp(last[v] / 1.7 - mx);
  int counts[64] = {0};
  const int draws = 2000;
  REQUIRE_OK(ftq_options_set_int(o, "max_new_tokens", 1));
  for (int d = 0; d < draws; d++) {
    REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, (uint64_t)d, NULL, 0, NULL, NULL, out, 64, &n, NULL));
    counts[out[0]]++;
  }
  double chi2 = 0;
  int df = -1;
  for (int64_t v = 0; v < V; v++) {
    double expect = draws * p[v] / z;
    if (expect < 5) continue; /* pooled out of the statistic */
    chi2 += (counts[v] - expect) * (counts[v] - expect) / expect;
    df++;
  }
  printf("sampling at T=1.7: chi-square %.1f with %d degrees of freedom over %d draws\n", chi2, df, draws);
  CHECK_MSG(chi2 < df + 5 * sqrt(2.0 * df), "sampled distribution far from softmax(logits/T): chi2 %.1f, df %d", chi2,
            df);
  /* top_p 0 keeps only the most likely token */
  REQUIRE_OK(ftq_options_set_float(o, "top_p", 0.0));
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 9, NULL, 0, NULL, NULL, out, 64, &n, NULL));
  CHECK(out[0] == ftq_logits_argmax(last, V));
  REQUIRE_OK(ftq_options_unset(o, "top_p"));

  /* with an adapter: greedy follows the adapted model */
  ftq_lora *lora;
  REQUIRE_OK(ftq_options_set_string(o, "init_lora_weights", "false"));
  REQUIRE_OK(ftq_lora_create(m, NULL, o, 1, &lora));
  REQUIRE_OK(ftq_lora_set_active(lora, 1));
  REQUIRE_OK(ftq_options_set_bool(o, "do_sample", 0));
  REQUIRE_OK(ftq_graph_forward(m, &bp, NULL, NULL, NULL, logits));
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 0, NULL, 0, NULL, NULL, out, 64, &n, NULL));
  CHECK(n == 1 && out[0] == ftq_logits_argmax(logits + 4 * (size_t)V, V));
  ftq_lora_destroy(lora);

  /* argument errors */
  CHECK_STATUS(ftq_model_generate(m, prompt, 0, o, 0, NULL, 0, NULL, NULL, out, 64, &n, NULL),
               FTQ_ERR_INVALID_ARGUMENT);
  int32_t bad[2] = {3, 40};
  CHECK_STATUS(ftq_model_generate(m, bad, 2, o, 0, NULL, 0, NULL, NULL, out, 64, &n, NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("prompt token 1");
  REQUIRE_OK(ftq_options_set_int(o, "max_new_tokens", 10));
  CHECK_STATUS(ftq_model_generate(m, prompt, 5, o, 0, NULL, 0, NULL, NULL, out, 4, &n, NULL), FTQ_ERR_INVALID_ARGUMENT);
  int32_t unterminated[] = {4, 5};
  CHECK_STATUS(ftq_model_generate(m, prompt, 5, o, 0, unterminated, 2, NULL, NULL, out, 64, &n, NULL),
               FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_options_set_float(o, "top_p", 1.5), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_float(o, "temperature", 0.0), FTQ_ERR_OPTION_RANGE);
  REQUIRE_OK(ftq_options_set_int(o, "max_new_tokens", 0));
  REQUIRE_OK(ftq_model_generate(m, prompt, 5, o, 0, NULL, 0, NULL, NULL, out, 0, &n, &reason));
  CHECK(n == 0 && reason == FTQ_FINISH_LENGTH);

  free(logits);
  ftq_model_free(m);
  ftq_options_destroy(o);
  ftq_context_destroy(ctx);
  return test_finish("test_generate");
}
