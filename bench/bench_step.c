/* The training-step benchmark for any Llama shape on any device: a model
 * random-initialised by ftq_model_init_random (so 7B- and 70B-shaped models
 * need no download), quantized at load as asked (NF4 + double quant by
 * default), a LoRA adapter, and steps of forward + backward + AdamW with
 * gradient clipping, as bench/peer/train_step_hf.py runs them through
 * transformers + peft + bitsandbytes. Prints one JSON line: tokens/s, the
 * median step time split by phase (forward, backward, optimizer), peak
 * device memory, and model FLOP utilisation.
 *
 *   bench_step [--device cuda:0] [--shape 7b|8b|70b|135m|tiny] [--batch 4] [--seq 512]
 *              [--r 64] [--alpha 16] [--dropout 0.1] [--targets q_proj,v_proj]
 *              [--quant nf4|fp4|int8|none] [--no-recompute] [--fp16] [--paged]
 *              [--steps 10] [--warmup 3] [--peak-tflops 989.4] [--layers N] [--nproc N]
 *
 * --nproc N runs data parallel over GPUs 0..N-1, one process each (started
 * by this program with FTQ_RANK / FTQ_WORLD_SIZE / FTQ_COMM_ID set), as the
 * trainer does it: each rank takes its own batch, every layer's adapter
 * gradients are all-reduced through NCCL as soon as the backward pass has
 * made them (overlapped with the rest of the backward; --no-overlap waits
 * for the whole backward first), then AdamW. Rank 0 prints the line, with
 * tokens/s over all ranks.
 *
 * --layers N keeps the shape's layer sizes but builds N layers (a quick
 * look at a big shape). With FTQ_CUDA_PROFILE=1 the CUDA module times
 * every operation (slower: it waits after each) and the totals are printed
 * to stderr at the end (the context's log).
 *
 * Phases: "forward" is the median of forward-only calls with the loss
 * (ftq_graph_forward); "backward" is the median forward + backward call
 * minus that (so it includes the recomputation with checkpointing);
 * "optimizer" is global-norm clipping + AdamW + zeroing the gradients.
 * Each phase ends with a device synchronisation.
 *
 * FLOPs per token (multiply-add = 2), as ../shared perf-anchors §8.2:
 * model = 4 N_m (forward and input gradients of every matrix product incl.
 * the LM head) + 7 S d L (causal attention, backward 2.5x forward) + 6 P
 * (LoRA); hardware adds the recomputed forward of every layer
 * (2 N_blk + 2 S d L + 2 P) when checkpointing. MFU = model FLOPs / s /
 * peak (989.4 TFLOP/s: H100/H200 SXM dense bf16). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "core/context.h"
#include "core/rng.h"
#include "dist/comm.h"
#include "libftq/ftq_lora.h"
#include "libftq/ftq_model.h"
#include "lora/lora.h"
#include "model/graph.h"
#include "optim/optimizer.h"

typedef struct shape {
  const char *name;
  int64_t hidden, inter, layers, heads, kv, vocab;
} shape;

static const shape shapes[] = {
    {"tiny", 256, 688, 2, 4, 4, 32000},         {"135m", 576, 1536, 30, 9, 3, 49152},
    {"7b", 4096, 11008, 32, 32, 32, 32000},     {"8b", 4096, 14336, 32, 32, 8, 128256},
    {"70b", 8192, 28672, 80, 64, 8, 32000},
};


static void log_to_stderr(void *user, ftq_log_level level, const char *msg) {
  (void)user, (void)level;
  fprintf(stderr, "%s\n", msg);
}

static void die(const char *what, ftq_status st) {
  fprintf(stderr, "bench_step: %s: %s: %s\n", what, ftq_status_string(st), ftq_last_error());
  exit(1);
}
#define TRY(what, x)                  \
  do {                                \
    ftq_status s_ = (x);              \
    if (s_ != FTQ_OK) die(what, s_);  \
  } while (0)

/* Data parallel: the gradient tensors of each layer, reduced from the
 * graph's hook as the trainer does (src/train/trainer_dist.c). The
 * optimizer's list is layer-major, so layer l's tensors are the run
 * [l * per_layer, (l + 1) * per_layer). */
typedef struct dp_state {
  ftq_comm *comm;
  float **grads;  /* [tensors] */
  size_t *counts;
  size_t per_layer;
} dp_state;

static ftq_status reduce_layer(void *user, int64_t layer) {
  dp_state *d = user;
  const size_t first = (size_t)layer * d->per_layer;
  return ftq_comm_allreduce_sum_f32(d->comm, d->grads + first, d->counts + first, d->per_layer, "bench all-reduce");
}

/* Starts N copies of this program, one per GPU, and waits for them. */
static int launch(int nproc, int cpu, int argc, char **argv) {
  unsigned char id[FTQ_COMM_ID_SIZE];
  char text[FTQ_COMM_ID_STRING_SIZE], num[16];
  TRY("communicator id", ftq_comm_id_create(cpu ? FTQ_DEVICE_CPU : FTQ_DEVICE_CUDA, id));
  TRY("communicator id", ftq_comm_id_to_string(id, text, sizeof text));
  setenv("FTQ_COMM_ID", text, 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1); /* NVLink multicast stays off */
  snprintf(num, sizeof num, "%d", nproc);
  setenv("FTQ_WORLD_SIZE", num, 1);
  pid_t pids[64];
  for (int r = 0; r < nproc; r++) {
    pids[r] = fork();
    if (pids[r] == 0) {
      snprintf(num, sizeof num, "%d", r);
      setenv("FTQ_RANK", num, 1);
      execv("/proc/self/exe", argv);
      _exit(127);
    }
  }
  int rc = 0;
  for (int r = 0; r < nproc; r++) {
    int status = 0;
    waitpid(pids[r], &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "bench_step: rank %d failed (status %d)\n", r, status);
      rc = 1;
    }
  }
  (void)argc;
  return rc;
}

int main(int argc, char **argv) {
  const char *device = "cuda:0", *shape_name = "7b", *targets = "q_proj,v_proj", *quant = "nf4";
  int64_t batch = 4, seq = 512, r = 64;
  double alpha = 16, dropout = 0.1, peak_tflops = 989.4;
  int recompute = 1, fp16 = 0, paged = 0, steps = 10, warmup = 3;
  int64_t layers = 0;
  int nproc = 1, overlap = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--no-recompute")) recompute = 0;
    else if (!strcmp(a, "--fp16")) fp16 = 1;
    else if (!strcmp(a, "--paged")) paged = 1;
    else if (!strcmp(a, "--no-overlap")) overlap = 0;
    else if (v && !strcmp(a, "--nproc")) nproc = atoi(v), i++;
    else if (v && !strcmp(a, "--device")) device = v, i++;
    else if (v && !strcmp(a, "--shape")) shape_name = v, i++;
    else if (v && !strcmp(a, "--targets")) targets = v, i++;
    else if (v && !strcmp(a, "--quant")) quant = v, i++;
    else if (v && !strcmp(a, "--batch")) batch = atoll(v), i++;
    else if (v && !strcmp(a, "--seq")) seq = atoll(v), i++;
    else if (v && !strcmp(a, "--r")) r = atoll(v), i++;
    else if (v && !strcmp(a, "--alpha")) alpha = atof(v), i++;
    else if (v && !strcmp(a, "--dropout")) dropout = atof(v), i++;
    else if (v && !strcmp(a, "--steps")) steps = atoi(v), i++;
    else if (v && !strcmp(a, "--warmup")) warmup = atoi(v), i++;
    else if (v && !strcmp(a, "--peak-tflops")) peak_tflops = atof(v), i++;
    else if (v && !strcmp(a, "--layers")) layers = atoll(v), i++;
    else {
      fprintf(stderr, "usage: bench_step [--device D] [--shape 7b|8b|70b|135m|tiny] [--batch N] [--seq N] [--r N] "
                      "[--alpha X] [--dropout X] [--targets LIST] [--quant nf4|fp4|int8|none] [--no-recompute] "
                      "[--fp16] [--paged] [--steps N] [--warmup N] [--peak-tflops X] [--layers N] [--nproc N] "
                      "[--no-overlap]\n");
      return 2;
    }
  }
  const shape *sh = NULL;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (!strcmp(shapes[i].name, shape_name)) sh = &shapes[i];
  if (!sh || steps < 1 || batch < 1 || seq < 2) {
    fprintf(stderr, "bench_step: unknown shape '%s' or bad sizes\n", shape_name);
    return 2;
  }

  if (nproc < 1 || nproc > 64) {
    fprintf(stderr, "bench_step: --nproc must be in [1, 64]\n");
    return 2;
  }
  const char *rank_env = getenv("FTQ_RANK");
  const int cpu = strncmp(device, "cpu", 3) == 0; /* CPU ranks: shared memory (a smoke test of this path) */
  if (nproc > 1 && !rank_env) return launch(nproc, cpu, argc, argv);
  int rank = rank_env ? atoi(rank_env) : 0;
  char dev_name[32];
  if (nproc > 1 && !cpu) {
    snprintf(dev_name, sizeof dev_name, "cuda:%d", rank);
    device = dev_name;
  }

  ftq_options *o;
  TRY("options", ftq_options_create(&o));
  if (strcmp(quant, "none") != 0) {
    if (!strcmp(quant, "int8")) {
      TRY("options", ftq_options_set_bool(o, "load_in_8bit", 1));
    } else {
      TRY("options", ftq_options_set_bool(o, "load_in_4bit", 1));
      TRY("options", ftq_options_set_string(o, "bnb_4bit_quant_type", quant));
      TRY("options", ftq_options_set_bool(o, "bnb_4bit_use_double_quant", 1));
    }
  }
  TRY("options", ftq_options_set_int(o, "r", r));
  TRY("options", ftq_options_set_float(o, "lora_alpha", alpha));
  TRY("options", ftq_options_set_float(o, "lora_dropout", dropout));
  TRY("options", ftq_options_set_string(o, "target_modules", targets));
  TRY("options", ftq_options_set_string(o, "optim", paged ? "paged_adamw_32bit" : "adamw_32bit"));
  TRY("options", ftq_options_set_float(o, "learning_rate", 2e-4));
  TRY("options", ftq_options_set_float(o, "weight_decay", 0.001));
  TRY("options", ftq_options_set_float(o, "max_grad_norm", 0.3));
  TRY("options", ftq_options_set_string(o, "lr_scheduler_type", "constant"));

  ftq_context *ctx;
  TRY("context", ftq_context_create(device, NULL, &ctx));
  dp_state dp = {0};
  if (nproc > 1) TRY("communicator", ftq_comm_create_from_env(ctx, o, &dp.comm));
  if (getenv("FTQ_CUDA_PROFILE")) {
    TRY("log", ftq_context_set_log_callback(ctx, log_to_stderr, NULL));
    TRY("log", ftq_context_set_log_level(ctx, FTQ_LOG_INFO));
  }
  char json[512];
  snprintf(json, sizeof json,
           "{\"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_hidden_layers\": %lld, "
           "\"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"vocab_size\": %lld, "
           "\"max_position_embeddings\": 4096, \"torch_dtype\": \"bfloat16\"}",
           (long long)sh->hidden, (long long)sh->inter, (long long)(layers > 0 ? layers : sh->layers), (long long)sh->heads,
           (long long)sh->kv, (long long)sh->vocab);
  double t0 = now_ms();
  ftq_model *pm;
  TRY("model", ftq_model_init_random(ctx, json, 1, o, &pm));
  struct ftq_model *m = (struct ftq_model *)pm;
  const double init_s = (now_ms() - t0) / 1e3;
  ftq_lora *lora;
  TRY("adapter", ftq_lora_create(pm, NULL, o, 1, &lora));
  TRY("adapter", ftq_lora_set_active(lora, 1));

  /* the optimizer over every adapted A and B */
  const ftq_model_config *c = &m->cfg;
  ftq_optim_param *params = calloc((size_t)(c->num_hidden_layers * FTQ_PROJ_COUNT * 2), sizeof *params);
  size_t np = 0;
  int64_t lora_params = 0;
  for (int64_t l = 0; l < c->num_hidden_layers; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      const ftq_lora_module *lm = ftq_lora_module_at(lora, l, p);
      if (!lm) continue;
      params[np++] = (ftq_optim_param){"lora_A", lm->a.data, lm->grad_a.data, (size_t)ftq_tensor_numel(&lm->a), 1};
      params[np++] = (ftq_optim_param){"lora_B", lm->b.data, lm->grad_b.data, (size_t)ftq_tensor_numel(&lm->b), 1};
      lora_params += ftq_tensor_numel(&lm->a) + ftq_tensor_numel(&lm->b);
    }
  if (dp.comm) {
    dp.per_layer = np / (size_t)c->num_hidden_layers; /* every layer adapts the same projections */
    dp.grads = calloc(np ? np : 1, sizeof *dp.grads);
    dp.counts = calloc(np ? np : 1, sizeof *dp.counts);
    if (!dp.grads || !dp.counts) die("gradient lists", FTQ_ERR_OUT_OF_MEMORY);
    for (size_t i = 0; i < np; i++) dp.grads[i] = params[i].grad, dp.counts[i] = params[i].n;
  }
  ftq_optim_settings os;
  TRY("optimizer", ftq_optim_settings_from_options(o, 1000000, &os));
  ftq_optim *opt;
  TRY("optimizer", ftq_optim_create(ctx, &os, params, np, &opt));

  const int64_t T = batch * seq;
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
  for (int64_t i = 0; i < T; i++) /* each rank its own tokens */
    ids[i] = (int32_t)(ftq_rng_u32(7, (uint64_t)rank, (uint64_t)i) % (uint32_t)c->vocab_size);
  ftq_graph_batch b = {batch, seq, ids, ids, NULL, NULL, NULL};
  ftq_graph_settings s;
  memset(&s, 0, sizeof s);
  s.training = 1, s.gradient_checkpointing = recompute, s.seed = 3, s.fp16 = fp16;

  double *fb = malloc(sizeof(double) * (size_t)steps), *fw = malloc(sizeof(double) * (size_t)steps);
  double *op = malloc(sizeof(double) * (size_t)steps), *tot = malloc(sizeof(double) * (size_t)steps);
  ftq_graph_result res;
  ftq_optim_step_info info;
  double loss_first = NAN;
  for (int it = -warmup; it < steps; it++) {
    s.step = (uint64_t)(it + warmup);
    double a0 = now_ms();
    if (dp.comm && overlap) {
      s.layer_grads_done = reduce_layer;
      s.hook_user = &dp;
    }
    TRY("forward+backward", ftq_graph_forward_backward(pm, &b, &s, &res, NULL, NULL));
    if (dp.comm && !overlap)
      for (int64_t l = c->num_hidden_layers - 1; l >= 0; l--) TRY("all-reduce", reduce_layer(&dp, l));
    if (dp.comm) TRY("all-reduce", ftq_comm_wait(dp.comm, "bench gradients"));
    s.layer_grads_done = NULL;
    TRY("synchronize", ftq_context_synchronize(ctx));
    double a1 = now_ms();
    TRY("optimizer step", ftq_optim_step(opt, &info));
    TRY("zero grad", ftq_lora_zero_grad(lora));
    TRY("synchronize", ftq_context_synchronize(ctx));
    double a2 = now_ms();
    if (it == -warmup) loss_first = res.loss;
    if (it >= 0) fb[it] = a1 - a0, op[it] = a2 - a1, tot[it] = a2 - a0;
  }
  for (int it = 0; it < steps; it++) { /* forward-only calls for the phase split */
    double a0 = now_ms();
    TRY("forward", ftq_graph_forward(pm, &b, &s, &res, NULL, NULL));
    TRY("synchronize", ftq_context_synchronize(ctx));
    fw[it] = now_ms() - a0;
  }
  const double step_ms = median(tot, steps), fb_ms = median(fb, steps), fw_ms = median(fw, steps);
  const double opt_ms = median(op, steps);

  /* FLOPs per token */
  const double Hd = (double)c->hidden_size, Q = (double)(c->num_attention_heads * c->head_dim);
  const double KVd = (double)(c->num_key_value_heads * c->head_dim), I = (double)c->intermediate_size;
  const double L = (double)c->num_hidden_layers, V = (double)c->vocab_size, S = (double)seq;
  const double n_blk = L * (Hd * Q + 2 * Hd * KVd + Q * Hd + 3 * Hd * I), n_m = n_blk + V * Hd;
  const double P = (double)lora_params;
  const double model_fpt = 4 * n_m + 7 * S * Q * L + 6 * P;
  const double hw_fpt = model_fpt + (recompute ? 2 * n_blk + 2 * S * Q * L + 2 * P : 0);
  const double tps = (double)T * nproc / (step_ms / 1e3);

  size_t peak = 0, cur = 0, act = 0, ws = 0, wts = 0, dev_free = 0, dev_total = 0;
  ftq_context_memory(ctx, FTQ_MEM_ALL, &cur, &peak);
  ftq_context_memory(ctx, FTQ_MEM_WEIGHTS, &wts, NULL);
  ftq_graph_plan(m, batch, seq, &s, 1, &act, &ws);
  ftq_context_device_memory(ctx, &dev_free, &dev_total);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  if (rank != 0) goto quiet;
  printf("{\"bench\": \"train_step\", \"impl\": \"libftq\", \"world\": %d, \"overlap\": %s, "
         "\"device\": \"%s\", \"shape\": \"%s\", \"layers\": %lld, "
         "\"batch\": %lld, \"seq\": %lld, \"quant\": \"%s\", \"double_quant\": %s, \"compute\": \"%s\", "
         "\"lora_r\": %lld, \"lora_alpha\": %g, \"lora_dropout\": %g, \"targets\": \"%s\", \"lora_params\": %lld, "
         "\"recompute\": %s, \"optim\": \"%s\", \"steps\": %d, \"warmup\": %d, "
         "\"step_ms\": %.2f, \"tokens_per_s\": %.1f, "
         "\"phase_ms\": {\"forward\": %.2f, \"backward\": %.2f, \"optimizer\": %.2f}, "
         "\"peak_mem_gib\": %.3f, \"weights_gib\": %.3f, \"activations_gib\": %.3f, \"workspace_gib\": %.3f, "
         "\"device_used_gib\": %.3f, "
         "\"model_gflop_per_token\": %.2f, \"hw_gflop_per_token\": %.2f, \"peak_tflops\": %.1f, "
         "\"mfu\": %.4f, \"hfu\": %.4f, \"loss_first\": %.4f, \"loss\": %.4f, \"grad_norm\": %.4f, "
         "\"init_s\": %.1f}\n",
         nproc, nproc > 1 && overlap ? "true" : "false", ftq_context_device_name(ctx), sh->name, (long long)c->num_hidden_layers, (long long)batch, (long long)seq, quant,
         strcmp(quant, "nf4") == 0 || strcmp(quant, "fp4") == 0 ? "true" : "false",
         ftq_context_device_type(ctx) == FTQ_DEVICE_CPU ? "f32" : fp16 ? "fp16" : "bf16",
         (long long)r, alpha, dropout, targets, (long long)lora_params, recompute ? "true" : "false",
         paged ? "paged_adamw_32bit" : "adamw_32bit", steps, warmup, step_ms, tps, fw_ms, fb_ms - fw_ms, opt_ms,
         peak / gib, wts / gib, act / gib, ws / gib, (dev_total - dev_free) / gib, model_fpt / 1e9, hw_fpt / 1e9,
         peak_tflops, model_fpt * tps / nproc / (peak_tflops * 1e12), hw_fpt * tps / nproc / (peak_tflops * 1e12), loss_first,
         res.loss, info.grad_norm, init_s);
  fflush(stdout);
quiet:
  ftq_comm_destroy(dp.comm);
  free(dp.grads), free(dp.counts);
  free(fb), free(fw), free(op), free(tot), free(ids), free(params);
  ftq_optim_destroy(opt);
  ftq_lora_destroy(lora);
  ftq_model_destroy(pm);
  ftq_options_destroy(o);
  ftq_context_destroy(ctx);
  return 0;
}
