/* LoRA training throughput of the CPU backend on a SmolLM2-135M-shaped
 * model (random weights), as JSON lines: forward + backward tokens/s for a
 * few LoRA settings, with and without gradient checkpointing, and greedy
 * decoding tokens/s.
 *
 *   bench_train_cpu [--seq N] [--rows N] [--steps N] [--threads N] [--quick]
 *
 * --quick: one step of one setting at 64 tokens (a smoke test). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/context.h"
#include "core/rng.h"
#include "libftq/ftq_generate.h"
#include "libftq/ftq_lora.h"
#include "lora/lora.h"
#include "model/graph.h"
#include "model/model_build.h"


static void die(const char *what) {
  fprintf(stderr, "bench_train_cpu: %s: %s\n", what, ftq_last_error());
  exit(1);
}

/* Uniform(-scale, scale) + offset from the Philox stream `stream`. */
static void fill(float *x, size_t n, float scale, float offset, uint64_t stream) {
  for (size_t i = 0; i < n; i++) x[i] = offset + scale * (2.0f * ftq_rng_uniform(2024, stream, i) - 1.0f);
}

static void set(struct ftq_model *m, const char *name, int ndim, int64_t d0, int64_t d1, float scale, float offset,
                uint64_t stream, float *buf) {
  int64_t shape[2] = {d0, d1};
  fill(buf, (size_t)(d0 * (ndim == 2 ? d1 : 1)), scale, offset, stream);
  if (ftq_model_set_hf_tensor(m, name, FTQ_DTYPE_F32, ndim, shape, buf) != FTQ_OK) die(name);
}

static struct ftq_model *smollm2_shape(ftq_context *ctx) {
  ftq_model_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 30;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = 64;
  c.vocab_size = 49152;
  c.max_position_embeddings = 8192;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 100000.0;
  c.tie_word_embeddings = 1;
  c.bos_token_id = 1;
  c.n_eos_token_ids = 0; /* random weights: let generation run to its length */
  c.torch_dtype = FTQ_DTYPE_F32;
  struct ftq_model *m;
  if (ftq_model_new(ctx, &c, &m) != FTQ_OK) die("model");
  float *buf = malloc(sizeof(float) * 49152 * 576);
  uint64_t stream = 0;
  set(m, "model.embed_tokens.weight", 2, 49152, 576, 0.05f, 0, stream++, buf);
  set(m, "model.norm.weight", 1, 576, 0, 0.1f, 1, stream++, buf);
  char name[128];
  for (int l = 0; l < 30; l++) {
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    set(m, name, 1, 576, 0, 0.1f, 1, stream++, buf);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    set(m, name, 1, 576, 0, 0.1f, 1, stream++, buf);
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      int64_t o, i;
      ftq_model_proj_shape(&c, (ftq_proj)p, &o, &i);
      snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, p <= FTQ_PROJ_O ? "self_attn" : "mlp",
               ftq_proj_name((ftq_proj)p));
      set(m, name, 2, o, i, 1.7f / sqrtf((float)i), 0, stream++, buf);
    }
  }
  free(buf);
  return m;
}

int main(int argc, char **argv) {
  int64_t seq = 256, rows = 1;
  int steps = 3, threads = 0, quick = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) quick = 1;
    else if (i + 1 < argc && strcmp(argv[i], "--seq") == 0) seq = atoll(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--rows") == 0) rows = atoll(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--steps") == 0) steps = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_train_cpu [--seq N] [--rows N] [--steps N] [--threads N] [--quick]\n");
      return 2;
    }
  }
  if (quick) seq = 64, steps = 1;
  /* OpenBLAS picks its kernels from the CPU model; on CPUs it does not know
   * it falls back to slow generic ones unless told (docs/model.md) */
  const char *coretype = getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "";
  ftq_options *o;
  ftq_options_create(&o);
  if (threads) ftq_options_set_int(o, "num_threads", threads);
  ftq_context *ctx;
  if (ftq_context_create("cpu", o, &ctx) != FTQ_OK) die("context");
  struct ftq_model *m = smollm2_shape(ctx);

  const int64_t T = rows * seq;
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
  for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)(ftq_rng_u32(7, 0, (uint64_t)i) % 49152u);
  ftq_graph_batch b = {rows, seq, ids, ids, NULL, NULL, NULL};

  struct {
    const char *targets;
    int r, ckpt;
  } cfgs[] = {{"q_proj,v_proj", 8, 0}, {"all-linear", 16, 0}, {"all-linear", 16, 1}};
  int ncfg = quick ? 1 : 3;
  for (int k = 0; k < ncfg; k++) {
    ftq_options_set_int(o, "r", cfgs[k].r);
    ftq_options_set_float(o, "lora_alpha", 2.0 * cfgs[k].r);
    ftq_options_set_float(o, "lora_dropout", 0.05);
    ftq_options_set_string(o, "target_modules", cfgs[k].targets);
    ftq_lora *l;
    if (ftq_lora_create(m, NULL, o, 1, &l) != FTQ_OK) die("adapter");
    ftq_lora_set_active(l, 1);
    ftq_graph_settings s = {.training = 1, .gradient_checkpointing = cfgs[k].ckpt, .seed = 3};
    size_t act = 0, ws = 0;
    ftq_graph_plan(m, rows, seq, &s, 1, &act, &ws);
    double *ms = malloc(sizeof(double) * (size_t)steps);
    ftq_graph_result res;
    for (int it = -1; it < steps; it++) { /* one warm-up step */
      s.step = (uint64_t)(it + 1);
      double t0 = now_ms();
      if (ftq_graph_forward_backward(m, &b, &s, &res, NULL, NULL) != FTQ_OK) die("step");
      if (it >= 0) ms[it] = now_ms() - t0;
    }
    qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
    double med = ms[steps / 2];
    int64_t np;
    ftq_lora_num_parameters(l, &np);
    printf("{\"bench\": \"train_cpu\", \"model\": \"SmolLM2-135M shape, random f32 weights\", \"device\": \"%s\", "
           "\"openblas_coretype\": \"%s\", "
           "\"rows\": %lld, \"seq_len\": %lld, \"lora_r\": %d, \"target_modules\": \"%s\", \"lora_params\": %lld, "
           "\"gradient_checkpointing\": %s, \"steps\": %d, \"step_ms_median\": %.1f, \"tokens_per_s\": %.1f, "
           "\"activation_mb\": %.1f, \"workspace_mb\": %.1f, \"loss\": %.4f}\n",
           ftq_context_device_name(ctx), coretype, (long long)rows, (long long)seq, cfgs[k].r, cfgs[k].targets, (long long)np,
           cfgs[k].ckpt ? "true" : "false", steps, med, (double)T / (med / 1e3), act / 1048576.0, ws / 1048576.0,
           res.loss);
    fflush(stdout);
    free(ms);
    ftq_lora_destroy(l);
  }

  /* greedy decoding with a KV cache */
  ftq_options_set_int(o, "max_new_tokens", quick ? 8 : 32);
  int32_t out[64];
  size_t n;
  double t0 = now_ms();
  if (ftq_model_generate(m, ids, 16, o, 0, NULL, 0, NULL, NULL, out, 64, &n, NULL) != FTQ_OK) die("generate");
  double gen_ms = now_ms() - t0;
  printf("{\"bench\": \"generate_cpu\", \"model\": \"SmolLM2-135M shape, random f32 weights\", \"device\": \"%s\", "
         "\"prompt_tokens\": 16, \"new_tokens\": %zu, \"total_ms\": %.1f, \"tokens_per_s\": %.1f}\n",
         ftq_context_device_name(ctx), n, gen_ms, (double)n / (gen_ms / 1e3));
  free(ids);
  ftq_model_free(m);
  ftq_options_destroy(o);
  ftq_context_destroy(ctx);
  return 0;
}
