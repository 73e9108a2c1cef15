/* ftq_model_generate: prompt prefill, then one token at a time over the KV
 * cache; greedy or sampled choice on the host (model/sampling.c); stops at
 * max_new_tokens, an EOS id, a stop sequence or the callback's request. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/options.h"
#include "core/rng.h"
#include "libftq/ftq_generate.h"
#include "model/graph.h"
#include "model/sampling.h"

static const ftq_option_def generate_option_defs[] = {
    {"max_new_tokens", "generate", FTQ_OPTION_INT, "20", 0, 1 << 24, NULL, 0,
     "most tokens to generate after the prompt"},
    {"do_sample", "generate", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "sample the next token (true) or take the most likely one (false, greedy)"},
    {"temperature", "generate", FTQ_OPTION_FLOAT, "1.0", 1e-6, FTQ_NO_MAX, NULL, 0,
     "divides the logits before sampling (sampling only)"},
    {"top_k", "generate", FTQ_OPTION_INT, "50", 0, FTQ_NO_MAX, NULL, 0,
     "sample among the k most likely tokens; 0 = all (sampling only)"},
    {"top_p", "generate", FTQ_OPTION_FLOAT, "1.0", 0, 1, NULL, 0,
     "sample from the smallest set of tokens whose probability reaches top_p (sampling only)"},
    {"repetition_penalty", "generate", FTQ_OPTION_FLOAT, "1.0", 1e-6, FTQ_NO_MAX, NULL, 0,
     "divides positive (multiplies negative) logits of tokens already in the sequence; 1 = off"},
};
FTQ_OPTION_TABLE(generate, generate_option_defs);

/* Does seq[0..n) end with one of the -1-terminated stop sequences? */
static int ends_with_stop(const int32_t *seq, size_t n, const int32_t *stops, size_t stop_len) {
  size_t i = 0;
  while (i < stop_len) {
    size_t j = i;
    while (j < stop_len && stops[j] != -1) j++;
    size_t len = j - i;
    if (len && len <= n && memcmp(seq + n - len, stops + i, len * sizeof(int32_t)) == 0) return 1;
    i = j + 1;
  }
  return 0;
}

static ftq_status read_options(const ftq_options *o, ftq_sampling *s, int64_t *max_new) {
  FTQ_TRY(ftq_options_get_int(o, "max_new_tokens", max_new));
  FTQ_TRY(ftq_options_get_bool(o, "do_sample", &s->do_sample));
  FTQ_TRY(ftq_options_get_float(o, "temperature", &s->temperature));
  FTQ_TRY(ftq_options_get_int(o, "top_k", &s->top_k));
  FTQ_TRY(ftq_options_get_float(o, "top_p", &s->top_p));
  FTQ_TRY(ftq_options_get_float(o, "repetition_penalty", &s->repetition_penalty));
  return FTQ_OK;
}

ftq_status ftq_model_generate(ftq_model *m, const int32_t *prompt, size_t n_prompt, const ftq_options *opts,
                              uint64_t seed, const int32_t *stops, size_t stop_len, ftq_token_callback cb,
                              void *user, int32_t *out, size_t out_capacity, size_t *n_out, int *finish_reason) {
  FTQ_CHECK_ARG(m && prompt && out && n_out, "ftq_model_generate: model, prompt, out and n_out must not be NULL");
  *n_out = 0;
  if (finish_reason) *finish_reason = FTQ_FINISH_LENGTH;
  FTQ_CHECK_ARG(n_prompt > 0, "ftq_model_generate: the prompt is empty");
  FTQ_CHECK_ARG(!stop_len || stops, "ftq_model_generate: stop_sequences is NULL but stop_len is %zu", stop_len);
  FTQ_CHECK_ARG(!stop_len || stops[stop_len - 1] == -1,
                "ftq_model_generate: the last stop sequence is not ended by -1");
  const int64_t V = m->cfg.vocab_size;
  for (size_t i = 0; i < n_prompt; i++)
    FTQ_CHECK_ARG(prompt[i] >= 0 && prompt[i] < V, "ftq_model_generate: prompt token %zu = %d is outside [0, %lld)",
                  i, (int)prompt[i], (long long)V);
  ftq_sampling s;
  int64_t max_new;
  FTQ_TRY(read_options(opts, &s, &max_new));
  FTQ_CHECK_ARG(out_capacity >= (size_t)max_new, "ftq_model_generate: out has room for %zu tokens, max_new_tokens is %lld",
                out_capacity, (long long)max_new);
  if (max_new == 0) return FTQ_OK;
  if (n_prompt + (size_t)max_new > (size_t)INT32_MAX)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "ftq_model_generate: prompt + max_new_tokens too long");

  const size_t total = n_prompt + (size_t)max_new;
  int32_t *seq = ftq_malloc(total * sizeof(int32_t), "generated sequence");
  float *logits = ftq_malloc((size_t)V * sizeof(float), "logits");
  int32_t *scratch = ftq_malloc((size_t)V * 2 * sizeof(int32_t), "sampling scratch");
  ftq_kv_cache *kv = NULL;
  ftq_status st = seq && logits && scratch ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) st = ftq_kv_cache_create(m, (int64_t)total, &kv);
  if (st == FTQ_OK) {
    memcpy(seq, prompt, n_prompt * sizeof(int32_t));
    st = ftq_graph_decode(m, kv, prompt, (int64_t)n_prompt, logits, NULL);
  }
  size_t n = n_prompt;
  for (int64_t step = 0; st == FTQ_OK && step < max_new; step++) {
    ftq_logits_process(logits, V, seq, n, &s, scratch);
    int32_t next = s.do_sample
                       ? ftq_logits_sample(logits, V, ftq_rng_uniform(seed, FTQ_RNG_NS_SAMPLING, (uint64_t)step))
                       : ftq_logits_argmax(logits, V);
    seq[n++] = next;
    out[step] = next;
    *n_out = (size_t)step + 1;
    int reason = -1;
    for (int e = 0; e < m->cfg.n_eos_token_ids; e++)
      if (next == m->cfg.eos_token_ids[e]) reason = FTQ_FINISH_EOS;
    if (reason < 0 && stop_len && ends_with_stop(seq, n, stops, stop_len)) reason = FTQ_FINISH_STOP_SEQUENCE;
    if (cb && cb(user, next, (size_t)step) != 0 && reason < 0) reason = FTQ_FINISH_CALLBACK;
    if (reason >= 0) {
      if (finish_reason) *finish_reason = reason;
      break;
    }
    if (step + 1 < max_new) st = ftq_graph_decode(m, kv, &next, 1, logits, NULL);
  }
  ftq_kv_cache_destroy(kv);
  free(scratch);
  free(logits);
  free(seq);
  return st == FTQ_OK ? st : ftq_error_context(st, "generating from a %zu-token prompt", n_prompt);
}
