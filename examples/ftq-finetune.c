/* ftq-finetune: QLoRA fine-tuning from the command line — the seed job.
 *
 * Loads a model (HF folder or .gguf) with its base weights quantized as
 * asked (NF4 by default), attaches a LoRA adapter, trains it on a JSONL data
 * set with transformers' Trainer semantics, and saves the adapter as PEFT
 * does. With --eval_prompts it measures greedy exact-match on held-out
 * prompts before and after training and shows a few answers.
 *
 * Defaults are the seed notebook's (qlora-spec.md §0.2): r 64, lora_alpha 16,
 * lora_dropout 0.1, NF4, paged_adamw_32bit, learning_rate 2e-4, cosine,
 * warmup_ratio 0.03, weight_decay 0.001, max_grad_norm 0.3, batch 4,
 * 1 epoch, group_by_length, logging every 25 steps, max_seq_length 1024.
 * Every library option is a flag named as transformers/PEFT name it; see
 * --help. Ctrl-C stops after the current step and saves a checkpoint.
 *
 * Data parallel (docs/distributed.md): --nproc_per_node N starts N copies of
 * this program on this host, one per device (cuda:0..N-1, or N CPU
 * processes), joined by a communicator, and supervises them. Started by
 * another launcher (mpirun, srun, torchrun-like) with FTQ_RANK / RANK /
 * OMPI_COMM_WORLD_RANK / PMI_RANK set, it joins from the environment. Only
 * rank 0 prints and writes the adapter; the others print errors only. */
#include <libftq/ftq.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/abort_watch.h"
#include "common/cli.h"
#include "common/launch.h"
#include "common/report.h"
#include "common/setup.h"

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
  (void)sig;
  g_interrupted = 1;
}

/* This process's place in a data-parallel run (0 of 1 alone). */
static int g_rank = 0, g_world = 1;

/* Prints "[rank r] ftq-finetune: <message>" (the rank in data-parallel
 * runs) as one write, so the lines of several ranks do not interleave, and
 * exits with status 1. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  char msg[4096];
  int k = g_world > 1 ? snprintf(msg, sizeof msg, "[rank %d] ftq-finetune: ", g_rank)
                      : snprintf(msg, sizeof msg, "ftq-finetune: ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", msg);
  exit(1);
}
#define DIE(...) die(__VA_ARGS__)
#define TRY(call) \
  do { if ((call) != FTQ_OK) DIE("%s", ftq_last_error()); } while (0)

/* ---------------------------------------------------------------------- */
/* Held-out exact match: greedy answers to chat prompts                     */

typedef struct eval_set {
  char **prompt, **reference;
  int n;
} eval_set;

static void eval_load(const char *path, int limit, eval_set *e) {
  memset(e, 0, sizeof *e);
  FILE *f = fopen(path, "r");
  if (!f) DIE("cannot read --eval_prompts %s", path);
  char *line = NULL;
  size_t cap = 0;
  e->prompt = calloc((size_t)limit, sizeof(char *));
  e->reference = calloc((size_t)limit, sizeof(char *));
  while (e->n < limit && getline(&line, &cap, f) > 0) {
    /* {"prompt": ..., "reference": ...}: read with the library's JSON through options-free parsing */
    char *p = strstr(line, "\"prompt\"");
    char *r = strstr(line, "\"reference\"");
    if (!p || !r) continue;
    /* the file is JSON written by make_data.py; decode the two strings */
    char *fields[2] = {p, r};
    char *out[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
      char *q = strchr(fields[k] + (k ? 11 : 8), '"');
      if (!q) break;
      char *buf = malloc(strlen(q) + 1);
      size_t w = 0;
      for (q++; *q && *q != '"'; q++) {
        if (*q == '\\' && q[1]) {
          q++;
          buf[w++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
        } else {
          buf[w++] = *q;
        }
      }
      buf[w] = '\0';
      out[k] = buf;
    }
    if (out[0] && out[1]) {
      e->prompt[e->n] = out[0];
      e->reference[e->n] = out[1];
      e->n++;
    } else {
      free(out[0]);
      free(out[1]);
    }
  }
  free(line);
  fclose(f);
}

static void eval_free(eval_set *e) {
  for (int i = 0; i < e->n; i++) free(e->prompt[i]), free(e->reference[i]);
  free(e->prompt);
  free(e->reference);
}

/* JSON-escapes s into a new string. */
static char *json_string(const char *s) {
  size_t n = strlen(s);
  char *o = malloc(2 * n + 3), *w = o;
  *w++ = '"';
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') *w++ = '\\', *w++ = *s;
    else if (*s == '\n') *w++ = '\\', *w++ = 'n';
    else if (*s == '\t') *w++ = '\\', *w++ = 't';
    else *w++ = *s;
  }
  *w++ = '"';
  *w = '\0';
  return o;
}

/* Greedy answer to one user prompt, through the model's chat template. */
static char *answer(ftq_model *m, const ftq_tokenizer *tok, const char *prompt, const ftq_options *gen) {
  char *q = json_string(prompt);
  size_t mlen = strlen(q) + 64;
  char *messages = malloc(mlen);
  snprintf(messages, mlen, "[{\"role\": \"user\", \"content\": %s}]", q);
  free(q);
  char *text = NULL;
  size_t tlen = 0;
  if (ftq_tokenizer_apply_chat_template(tok, messages, 1, &text, &tlen) != FTQ_OK) DIE("%s", ftq_last_error());
  free(messages);
  int32_t *ids = NULL, out[512];
  size_t n_ids = 0, n_out = 0;
  TRY(ftq_tokenizer_encode(tok, text, tlen, 0, &ids, &n_ids));
  ftq_free(text);
  TRY(ftq_model_generate(m, ids, n_ids, gen, 0, NULL, 0, NULL, NULL, out, 512, &n_out, NULL));
  ftq_free(ids);
  char *dec = NULL;
  size_t dlen = 0;
  TRY(ftq_tokenizer_decode(tok, out, n_out, FTQ_DECODE_SKIP_SPECIAL, &dec, &dlen));
  return dec;
}

/* Exact matches over the held-out prompts. In a data-parallel run each
 * rank answers every world-th prompt and the counts are summed, so the
 * ranks share the work instead of waiting for rank 0. */
static int exact_match(ftq_model *m, const ftq_tokenizer *tok, const eval_set *e, const ftq_options *gen,
                       int show, const char *label, ftq_comm *comm) {
  int hits = 0, shown = 0;
  for (int i = g_rank; i < e->n; i += g_world) {
    char *a = answer(m, tok, e->prompt[i], gen);
    int ok = ftq_dataset_exact_match(a, strlen(a), e->reference[i], strlen(e->reference[i]));
    hits += ok;
    if (shown++ < show)
      printf("  [%s] %s\n      -> %s   %s (expected: %s)\n", label, e->prompt[i], a, ok ? "OK" : "wrong", e->reference[i]);
    ftq_free(a);
  }
  if (comm) {
    double v = hits;
    TRY(ftq_comm_allreduce(comm, &v, 1, FTQ_COMM_SUM));
    hits = (int)v;
  }
  return hits;
}

/* ---------------------------------------------------------------------- */
/* Training callbacks                                                       */

typedef struct run_state {
  ftq_progress progress;
  FILE *metrics;
  ftq_curve train_curve, eval_curve;
  long step_delay_ms; /* FTQ_FINETUNE_TEST_STEP_DELAY_MS, see main() */
} run_state;

static int on_progress(void *user, int64_t step, int64_t total, double loss, double lr, double tps) {
  run_state *s = user;
  (void)total;
  ftq_curve_add(&s->train_curve, (double)step, loss);
  ftq_progress_update(&s->progress, step, loss, lr, tps);
  if (s->step_delay_ms > 0) {
    struct timespec ts = {s->step_delay_ms / 1000, (s->step_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  /* data parallel, the trainer stops every rank at the step where any asked */
  return g_interrupted ? 1 : 0;
}

/* Library log lines: ranks other than 0 pass errors only, marked with their rank. */
static void on_context_log(void *user, ftq_log_level level, const char *msg) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  if (g_rank == 0)
    ftq_example_log(user, level, msg);
  else
    fprintf(stderr, "[rank %d] [%s] %s\n", g_rank, (unsigned)level < 4 ? names[level] : "log", msg);
}

static int on_log(void *user, const char *record) {
  run_state *s = user;
  if (s->metrics) {
    fprintf(s->metrics, "%s\n", record);
    fflush(s->metrics);
  }
  const char *ev = strstr(record, "\"eval_loss\":");
  const char *st = strstr(record, "\"step\":");
  if (ev && st) ftq_curve_add(&s->eval_curve, atof(st + 7), atof(ev + 12));
  return 0;
}

/* ---------------------------------------------------------------------- */

/* --nproc_per_node N: make the communicator id here and start N copies of
 * this program (fork + exec: each child starts afresh, with nothing of a
 * CUDA or NCCL state this process may hold), then supervise them. */
static int launch_local(int argc, char **argv, const char *nproc_text, const char *device, const ftq_options *opts) {
  char *end;
  long nproc = strtol(nproc_text, &end, 10);
  if (*end || nproc < 1 || nproc > 4096) {
    fprintf(stderr, "ftq-finetune: --nproc_per_node must be a whole number >= 1, not '%s'\n", nproc_text);
    return 2;
  }
  ftq_device_type type;
  if (strcmp(device, "cpu") == 0) {
    type = FTQ_DEVICE_CPU;
  } else if (strcmp(device, "cuda") == 0) {
    type = FTQ_DEVICE_CUDA;
    int n = 0;
    if (ftq_cuda_device_count(&n) != FTQ_OK || n < nproc) {
      fprintf(stderr, "ftq-finetune: --nproc_per_node %ld needs %ld CUDA devices, %d visible%s%s\n", nproc, nproc, n,
              ftq_last_error_status() != FTQ_OK ? ": " : "", ftq_last_error_status() != FTQ_OK ? ftq_last_error() : "");
      return 2;
    }
  } else {
    fprintf(stderr, "ftq-finetune: with --nproc_per_node, --device is cpu or cuda (rank r then uses cuda:r; choose "
                    "the cards with CUDA_VISIBLE_DEVICES), not '%s'\n", device);
    return 2;
  }
  double timeout_s;
  unsigned char id[FTQ_COMM_ID_SIZE];
  char id_text[FTQ_COMM_ID_STRING_SIZE];
  if (ftq_options_get_float(opts, "comm_timeout_s", &timeout_s) != FTQ_OK ||
      ftq_comm_id_create(type, id) != FTQ_OK || ftq_comm_id_to_string(id, id_text, sizeof id_text) != FTQ_OK) {
    fprintf(stderr, "ftq-finetune: %s\n", ftq_last_error());
    return 1;
  }
  char **child_argv = ftq_argv_without(argc, argv, "nproc_per_node");
  char **with_threads = calloc((size_t)argc + 2, sizeof(char *));
  if (!child_argv || !with_threads) {
    fprintf(stderr, "ftq-finetune: out of memory\n");
    return 1;
  }
  int k = 0;
  for (; child_argv[k]; k++) with_threads[k] = child_argv[k];
  /* CPU processes share the cores rather than each taking all of them */
  char threads[64];
  int set = 0;
  if (type == FTQ_DEVICE_CPU && ftq_options_is_set(opts, "num_threads", &set) == FTQ_OK && !set) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(threads, sizeof threads, "--num_threads=%ld", cores / nproc > 1 ? cores / nproc : 1);
    with_threads[k++] = threads;
  }
  with_threads[k] = NULL;
  ftq_launch_config cfg = {
      .prog = "ftq-finetune",
      .argv = with_threads,
      .nproc = (int)nproc,
      .comm_id = id_text,
      .fail_grace_s = timeout_s + 30,
      .kill_grace_s = 10,
      .log = stderr,
      .peer_failed_signal = SIGUSR1, /* the ranks abort their communicator (common/abort_watch.h) */
  };
  fprintf(stderr, "ftq-finetune: starting %ld processes on %s (rank r on %s)\n", nproc, device,
          type == FTQ_DEVICE_CUDA ? "cuda:r" : "the CPU");
  int rc = ftq_launch(&cfg);
  free(with_threads);
  free(child_argv);
  return rc;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *data_path = NULL, *tokenizer_path = NULL, *device = "cpu";
  const char *eval_prompts = NULL, *eval_limit = "50", *show = "3", *resume = NULL, *adapter_seed = "0";
  const char *nproc = NULL;
  const ftq_cli_flag flags[] = {
      {"model", "PATH", "model to fine-tune: a Hugging Face folder or a .gguf file (required)", &model_path},
      {"data", "FILE.jsonl", "training data: JSONL or JSONL.gz rows in text / messages / prompt-completion / "
                             "Alpaca form (required)", &data_path},
      {"tokenizer", "PATH", "tokenizer.json, its folder, or a .gguf (default: the model's)", &tokenizer_path},
      {"device", "DEV", "cpu, cuda or cuda:N (in a data-parallel run, cuda means cuda:<local rank>)", &device},
      {"nproc_per_node", "N", "data parallel on this host: start N processes, one per device (cuda:0..N-1, or N "
                              "CPU processes), and supervise them; the global batch is per_device_train_batch_size "
                              "x N x gradient_accumulation_steps", &nproc},
      {"eval_prompts", "FILE.jsonl", "held-out {\"prompt\", \"reference\"} rows: greedy exact-match before and "
                                     "after training", &eval_prompts},
      {"eval_limit", "N", "how many held-out prompts to score", &eval_limit},
      {"show", "N", "how many held-out answers to print before and after", &show},
      {"resume_from_checkpoint", "DIR", "continue a run from one of its checkpoints (data parallel: with the same "
                                        "number of processes)", &resume},
      {"adapter_seed", "N", "seed of the adapter's initial values", &adapter_seed},
  };
  static const char *const groups[] = {"context", "model", "quant", "lora", "data", "tokenizer", "optim", "train",
                                       "dist", "generate", NULL};
  ftq_options *opts;
  TRY(ftq_options_create(&opts));
  /* the seed notebook's settings; the command line overrides them */
  TRY(ftq_options_load_json(opts,
      "{\"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"nf4\", \"bnb_4bit_compute_dtype\": \"float16\", "
      "\"r\": 64, \"lora_alpha\": 16, \"lora_dropout\": 0.1, \"optim\": \"paged_adamw_32bit\", "
      "\"learning_rate\": 2e-4, \"lr_scheduler_type\": \"cosine\", \"warmup_ratio\": 0.03, "
      "\"weight_decay\": 0.001, \"max_grad_norm\": 0.3, \"per_device_train_batch_size\": 4, "
      "\"num_train_epochs\": 1, \"group_by_length\": true, \"logging_steps\": 25, \"max_seq_length\": 1024, "
      "\"output_dir\": \"results\", \"max_new_tokens\": 48}"));
  ftq_options *defaults;
  TRY(ftq_options_copy(opts, &defaults));
  ftq_cli cli = {"ftq-finetune",
                 "QLoRA fine-tuning of a Llama-family model on a JSONL data set; saves a PEFT adapter to "
                 "<output_dir>/adapter. Defaults follow the seed notebook (NF4, r 64, alpha 16, paged AdamW, "
                 "cosine). Data parallel: --nproc_per_node N on one host, or started by mpirun / srun / a "
                 "torchrun-like launcher (FTQ_RANK or RANK, OMPI_COMM_WORLD_RANK, PMI_RANK set; docs/distributed.md).",
                 groups, flags, sizeof flags / sizeof flags[0], defaults};
  int rc = ftq_cli_parse(&cli, argc, argv, opts);
  if (rc) return rc == 1 ? 0 : 2;
  if (!model_path || !data_path) {
    fprintf(stderr, "ftq-finetune: --model and --data are required (see --help)\n");
    return 2;
  }
  if (nproc) {
    rc = launch_local(argc, argv, nproc, device, opts);
    ftq_options_destroy(defaults);
    ftq_options_destroy(opts);
    return rc;
  }

  /* a rank of a data-parallel run when a launcher says so */
  ftq_rank_env renv;
  char err[512];
  if (ftq_rank_env_read(&renv, err, sizeof err) != 0) {
    fprintf(stderr, "ftq-finetune: %s\n", err);
    return 2;
  }
  const int distributed = renv.active && renv.world_size > 1;
  char rank_device[64];
  if (distributed) {
    /* before any thread exists, so only the watcher takes the launcher's signal */
    if (ftq_abort_watch_start() != 0) DIE("cannot start the abort watcher thread");
    g_rank = renv.rank;
    g_world = renv.world_size;
    ftq_rank_device(device, renv.local_rank, rank_device, sizeof rank_device);
    device = rank_device;
    if (g_rank != 0) {
      /* quiet: what the others would print, rank 0 prints; errors still reach stderr */
      if (!freopen("/dev/null", "w", stdout)) DIE("cannot redirect stdout: %s", strerror(errno));
      TRY(ftq_options_set_string(opts, "log_level", "error"));
    }
  }
  signal(SIGINT, on_sigint);
  setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, also into a log file */

  ftq_context *ctx;
  TRY(ftq_context_create(device, opts, &ctx));
  TRY(ftq_context_set_log_callback(ctx, on_context_log, NULL));
  printf("device: %s\n", ftq_context_device_name(ctx));
  /* join the others first: the held-out evaluation below is shared too */
  ftq_comm *comm = NULL;
  if (distributed) {
    TRY(ftq_comm_create_from_env(ctx, opts, &comm));
    ftq_abort_watch_attach(comm);
    int64_t per_device, accum;
    TRY(ftq_options_get_int(opts, "per_device_train_batch_size", &per_device));
    TRY(ftq_options_get_int(opts, "gradient_accumulation_steps", &accum));
    printf("data parallel: %d ranks; global batch %lld x %d x %lld = %lld rows per step\n", g_world,
           (long long)per_device, g_world, (long long)accum, (long long)(per_device * g_world * accum));
  }
  ftq_model *model;
  TRY(ftq_model_load(ctx, model_path, opts, &model));
  ftq_tokenizer *tok;
  TRY(ftq_tokenizer_load(tokenizer_path ? tokenizer_path : model_path, opts, &tok));
  ftq_dataset *data;
  TRY(ftq_dataset_load(ctx, tok, data_path, opts, &data));
  printf("data: %lld training examples, %lld batches per epoch\n",
         (long long)ftq_dataset_num_examples(data, FTQ_SPLIT_TRAIN),
         (long long)ftq_dataset_num_batches(data, FTQ_SPLIT_TRAIN));

  eval_set ev = {0};
  ftq_options *gen;
  TRY(ftq_options_copy(opts, &gen));
  TRY(ftq_options_set_bool(gen, "do_sample", 0));
  int hits_before = -1;
  if (eval_prompts) {
    eval_load(eval_prompts, atoi(eval_limit), &ev);
    printf("held-out exact match before training (%d prompts):\n", ev.n);
    hits_before = exact_match(model, tok, &ev, gen, atoi(show), "before", comm);
    printf("  => %d / %d\n", hits_before, ev.n);
  }

  ftq_lora *lora;
  TRY(ftq_lora_create(model, NULL, opts, (uint64_t)strtoull(adapter_seed, NULL, 10), &lora));
  ftq_trainer *trainer;
  TRY(ftq_trainer_create(model, lora, data, opts, &trainer));
  /* before the plan, the step count and a resume: they depend on the world */
  if (comm) TRY(ftq_trainer_set_comm(trainer, comm));
  const char *out_dir;
  TRY(ftq_options_get_string(opts, "output_dir", &out_dir));
  mkdir(out_dir, 0755);
  char path[4096];
  run_state rs = {0};
  /* test hook: slows every step down, so a test can stop a rank mid-run */
  const char *delay = getenv("FTQ_FINETUNE_TEST_STEP_DELAY_MS");
  rs.step_delay_ms = delay ? atol(delay) : 0;
  snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
  if (g_rank == 0) rs.metrics = fopen(path, resume ? "a" : "w");
  ftq_progress_init(&rs.progress, stdout, ftq_trainer_total_steps(trainer));
  TRY(ftq_trainer_set_progress_callback(trainer, on_progress, &rs));
  TRY(ftq_trainer_set_log_callback(trainer, on_log, &rs));
  char *plan = NULL;
  TRY(ftq_trainer_plan(trainer, &plan));
  if (g_rank == 0) fprintf(stderr, "memory plan: %s\n", plan);
  ftq_free(plan);
  if (resume) TRY(ftq_trainer_load_checkpoint(trainer, resume));

  double t0 = ftq_now_s();
  ftq_status st = ftq_trainer_train(trainer);
  ftq_progress_finish(&rs.progress);
  double train_s = ftq_now_s() - t0;
  if (st == FTQ_ERR_CANCELLED) {
    /* every rank takes part: each writes its own share of the checkpoint */
    snprintf(path, sizeof path, "%s/checkpoint-%lld", out_dir, (long long)ftq_trainer_global_step(trainer));
    TRY(ftq_trainer_save_checkpoint(trainer, path));
    printf("stopped at step %lld; checkpoint saved: %s (continue with --resume_from_checkpoint %s)\n",
           (long long)ftq_trainer_global_step(trainer), path, path);
  } else if (st != FTQ_OK) {
    DIE("%s", ftq_last_error());
  }
  /* the ranks hold the same adapter: rank 0 writes the outputs */
  if (g_rank == 0) {
    snprintf(path, sizeof path, "%s/adapter", out_dir);
    TRY(ftq_lora_save(lora, path, opts));
    printf("adapter saved: %s (PEFT format)\n", path);
    snprintf(path, sizeof path, "%s/loss.svg", out_dir);
    if (ftq_write_loss_svg(path, "ftq-finetune loss", &rs.train_curve, &rs.eval_curve) == 0)
      printf("loss curve: %s\n", path);
  }
  printf("trained %lld steps in %.1f s\n", (long long)ftq_trainer_global_step(trainer), train_s);

  if (eval_prompts) {
    printf("held-out exact match after training (%d prompts):\n", ev.n);
    int hits_after = exact_match(model, tok, &ev, gen, atoi(show), "after", comm);
    printf("  => %d / %d (before: %d / %d)\n", hits_after, ev.n, hits_before, ev.n);
    if (rs.metrics)
      fprintf(rs.metrics, "{\"event\": \"exact_match\", \"before\": %d, \"after\": %d, \"n\": %d}\n", hits_before,
              hits_after, ev.n);
  }
  if (rs.metrics) fclose(rs.metrics);
  ftq_curve_free(&rs.train_curve);
  ftq_curve_free(&rs.eval_curve);
  eval_free(&ev);
  ftq_options_destroy(gen);
  ftq_trainer_destroy(trainer);
  ftq_abort_watch_attach(NULL);
  ftq_comm_destroy(comm);
  ftq_lora_destroy(lora);
  ftq_dataset_destroy(data);
  ftq_tokenizer_destroy(tok);
  ftq_model_destroy(model);
  ftq_context_destroy(ctx);
  ftq_options_destroy(defaults);
  ftq_options_destroy(opts);
  return st == FTQ_OK ? 0 : 3;
}
