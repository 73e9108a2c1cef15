/* Data-parallel training on the CPU: ranks are threads joined by a
 * shared-memory communicator, each with its own context, model, adapter,
 * data set and trainer. Checked against one-device runs with the same
 * global batch: the loss, gradient norm and learning rate of every step and
 * the final adapter (up to the order of the gradient sums), bit-identical
 * ranks, ZeRO-1 equal to plain data parallel to the bit, checkpoints that
 * resume exactly with the same world size and are refused with another,
 * sharded evaluation, settings that differ between ranks, and a rank that
 * disappears mid-run.
 *
 * Built with DP_CUDA it runs the same on GPUs (rank r on cuda:r, NCCL),
 * as test_trainer_dp_cuda: skipped below 2 GPUs, 4 ranks only with 4. The
 * GPU tolerances allow for bf16 base products whose rounding depends on
 * the micro-batch a rank holds. */
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "test_util.h"
#include "train/trainer.h"

#define TOK "tests/ref/tok/sp_meta"
#define DATA "examples/data/catalog_train_text.jsonl"
#define MAX_STEPS 6
#ifdef DP_CUDA
#define OUT_DIR "build-test-trainer-dp-cuda"
#define NAME "test_trainer_dp_cuda"
#define LOSS_TOL 2e-3
#define PARAM_TOL 2e-2
#define TIMEOUT_S "10"
#else
#define OUT_DIR "build-test-trainer-dp"
#define NAME "test_trainer_dp"
#define LOSS_TOL 1e-5
#define PARAM_TOL 1e-4
#define TIMEOUT_S "20"
#endif
static const char *MODEL_CFG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 48, \"intermediate_size\": 80, "
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 1481, "
    "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"max_position_embeddings\": 512, "
    "\"initializer_range\": 0.05, \"torch_dtype\": \"float32\", \"bos_token_id\": 1, \"eos_token_id\": 2}";

/* One rank's job and what it saw. */
typedef struct job {
  /* in */
  int rank, world;         /* world 0: no communicator */
  int grad_accum;
  const char *extra_json;  /* more options, or NULL */
  const unsigned char *id;
  int save_at;             /* write OUT_DIR/checkpoint-<step> at this step (0: never) */
  const char *resume;      /* load this checkpoint first */
  int quit_at;             /* leave (destroy everything) after this step, without telling anyone */
  /* out */
  ftq_status status, set_comm_status, load_status;
  char message[1024];
  double loss[MAX_STEPS + 1], norm[MAX_STEPS + 1], lr[MAX_STEPS + 1];
  int steps;               /* steps this job ran */
  double eval_loss;
  float *adapter;          /* final parameters */
  int64_t n_params;
  double fail_seconds;     /* time from the start of the failing step to its error */
} job;

static int on_progress(void *user, int64_t step, int64_t total, double loss, double lr, double tps) {
  job *j = user;
  if (step >= 1 && step <= MAX_STEPS) {
    j->loss[step] = loss;
    j->lr[step] = lr;
  }
  (void)total, (void)tps;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define TRY(expr)                                                         \
  do {                                                                    \
    ftq_status s_ = (expr);                                               \
    if (s_ != FTQ_OK) {                                                   \
      j->status = s_;                                                     \
      snprintf(j->message, sizeof j->message, "%s: %s", #expr, ftq_last_error()); \
      goto done;                                                          \
    }                                                                     \
  } while (0)

static void *run_job(void *arg) {
  job *j = arg;
  ftq_context *ctx = NULL;
  ftq_tokenizer *tok = NULL;
  ftq_dataset *ds = NULL;
  ftq_model *model = NULL;
  ftq_lora *lora = NULL;
  ftq_trainer *t = NULL;
  ftq_comm *comm = NULL;
  ftq_options *o = NULL, *co = NULL;
  char json[512];
  TRY(ftq_options_create(&co));
  TRY(ftq_options_set_int(co, "num_threads", 1));
#ifdef DP_CUDA
  char dev[32];
  snprintf(dev, sizeof dev, "cuda:%d", j->rank);
  TRY(ftq_context_create(dev, co, &ctx));
#else
  TRY(ftq_context_create("cpu", co, &ctx));
#endif
  TRY(ftq_tokenizer_load(TOK, NULL, &tok));
  TRY(ftq_options_create(&o));
  snprintf(json, sizeof json,
           "{\"max_seq_length\": 96, \"per_device_train_batch_size\": 2, \"test_size\": 0.05, \"seed\": 7, "
           "\"gradient_accumulation_steps\": %d, \"group_by_length\": true, \"r\": 8, \"lora_alpha\": 16, "
           "\"lora_dropout\": 0.1, \"target_modules\": \"all-linear\", \"learning_rate\": 0.01, "
           "\"lr_scheduler_type\": \"cosine\", \"warmup_ratio\": 0.1, \"max_grad_norm\": 0.3, "
           "\"weight_decay\": 0.001, \"logging_steps\": 1, \"max_steps\": %d, \"comm_timeout_s\": " TIMEOUT_S ", "
           "\"output_dir\": \"%s\"}", j->grad_accum, MAX_STEPS, OUT_DIR);
  TRY(ftq_options_load_json(o, json));
  if (j->extra_json) TRY(ftq_options_load_json(o, j->extra_json));
  TRY(ftq_dataset_load(ctx, tok, DATA, o, &ds));
  TRY(ftq_model_init_random(ctx, MODEL_CFG, 11, NULL, &model));
  /* ranks start from different adapters on purpose: set_comm broadcasts rank 0's */
  TRY(ftq_lora_create(model, NULL, o, 3 + (uint64_t)j->rank, &lora));
  TRY(ftq_trainer_create(model, lora, ds, o, &t));
  TRY(ftq_trainer_set_progress_callback(t, on_progress, j));
  if (j->world > 0) {
    TRY(ftq_comm_create(ctx, j->id, j->rank, j->world, o, &comm));
    j->set_comm_status = ftq_trainer_set_comm(t, comm);
    TRY(j->set_comm_status);
  }
  if (j->resume) {
    j->load_status = ftq_trainer_load_checkpoint(t, j->resume);
    TRY(j->load_status);
  }
  while (ftq_trainer_global_step(t) < ftq_trainer_total_steps(t)) {
    double t0 = now_s(), loss;
    ftq_status st = ftq_trainer_step(t, &loss);
    if (st != FTQ_OK) {
      j->fail_seconds = now_s() - t0;
      TRY(st);
    }
    int64_t s = ftq_trainer_global_step(t);
    j->steps++;
    j->norm[s] = t->last_grad_norm; /* internal view: the norm of every step */
    if (j->save_at == s) {
      char dir[256];
      snprintf(dir, sizeof dir, "%s/checkpoint-%d", OUT_DIR, (int)s);
      TRY(ftq_trainer_save_checkpoint(t, dir));
    }
    if (j->quit_at == s) goto done;
  }
  TRY(ftq_trainer_evaluate(t, &j->eval_loss));
  TRY(ftq_lora_num_parameters(lora, &j->n_params));
  j->adapter = malloc((size_t)j->n_params * sizeof(float));
  {
    size_t off = 0, n = ftq_lora_tensor_count(lora);
    for (size_t i = 0; i < n; i++) {
      int64_t shape[2];
      TRY(ftq_lora_tensor_info(lora, i, NULL, 0, shape));
      TRY(ftq_lora_get_tensor(lora, i, j->adapter + off, (size_t)(shape[0] * shape[1])));
      off += (size_t)(shape[0] * shape[1]);
    }
  }
done:
  ftq_trainer_destroy(t);
  ftq_comm_destroy(comm);
  ftq_lora_destroy(lora);
  ftq_model_destroy(model);
  ftq_dataset_destroy(ds);
  ftq_tokenizer_destroy(tok);
  ftq_context_destroy(ctx);
  ftq_options_destroy(o);
  ftq_options_destroy(co);
  return NULL;
}

/* Runs `world` ranks (0: one job without a communicator) in threads;
 * rank 1 may get other options and leave early. */
static void run_world_ex(job *jobs, int world, int grad_accum, const char *extra, int save_at, const char *resume,
                         const char *rank1_extra, int rank1_quit_at) {
  static unsigned char id[FTQ_COMM_ID_SIZE]; /* the threads read it while they run */
#ifdef DP_CUDA
  REQUIRE_OK(ftq_comm_id_create(FTQ_DEVICE_CUDA, id));
#else
  REQUIRE_OK(ftq_comm_id_create(FTQ_DEVICE_CPU, id));
#endif
  int n = world > 0 ? world : 1;
  pthread_t th[8];
  for (int r = 0; r < n; r++) {
    job *j = &jobs[r];
    memset(j, 0, sizeof *j);
    j->rank = r;
    j->world = world;
    j->grad_accum = grad_accum;
    j->extra_json = r == 1 && rank1_extra ? rank1_extra : extra;
    j->id = id;
    j->save_at = save_at;
    j->resume = resume;
    j->quit_at = r == 1 ? rank1_quit_at : 0;
    pthread_create(&th[r], NULL, run_job, j);
  }
  for (int r = 0; r < n; r++) pthread_join(th[r], NULL);
}

static void run_world(job *jobs, int world, int grad_accum, const char *extra, int save_at, const char *resume) {
  run_world_ex(jobs, world, grad_accum, extra, save_at, resume, NULL, 0);
}

static void free_jobs(job *jobs, int n) {
  for (int r = 0; r < n; r++) {
    free(jobs[r].adapter);
    jobs[r].adapter = NULL;
  }
}

static int job_ok(const job *j, const char *what) {
  CHECK_MSG(j->status == FTQ_OK, "%s, rank %d: %s", what, j->rank, j->message);
  return j->status == FTQ_OK;
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-12 ? fabs(b) : 1e-12); }

/* Step values and final parameters of a data-parallel run against the
 * one-device reference. */
static void compare_to_reference(const job *ref, const job *dp, const char *what) {
  double worst_loss = 0, worst_norm = 0, worst_param = 0, scale = 0;
  for (int s = 1; s <= MAX_STEPS; s++) {
    if (rel(dp->loss[s], ref->loss[s]) > worst_loss) worst_loss = rel(dp->loss[s], ref->loss[s]);
    if (rel(dp->norm[s], ref->norm[s]) > worst_norm) worst_norm = rel(dp->norm[s], ref->norm[s]);
    CHECK_MSG(dp->lr[s] == ref->lr[s], "%s: step %d learning rate %.9g, reference %.9g", what, s, dp->lr[s],
              ref->lr[s]);
  }
  CHECK(dp->n_params == ref->n_params);
  for (int64_t i = 0; i < ref->n_params && dp->adapter && ref->adapter; i++) {
    double d = fabs((double)dp->adapter[i] - (double)ref->adapter[i]);
    if (d > worst_param) worst_param = d;
    if (fabs(ref->adapter[i]) > scale) scale = fabs(ref->adapter[i]);
  }
  printf("%s: worst relative loss difference %.2e, grad norm %.2e; parameters %.2e of max |p| %.3f; eval %.6f vs %.6f\n",
         what, worst_loss, worst_norm, worst_param, scale, dp->eval_loss, ref->eval_loss);
  /* only the order of fp32 gradient sums differs (ranks, then accumulation) */
  CHECK_MSG(worst_loss < LOSS_TOL, "%s: losses differ by %.2e", what, worst_loss);
  CHECK_MSG(worst_norm < 10 * LOSS_TOL, "%s: gradient norms differ by %.2e", what, worst_norm);
  CHECK_MSG(worst_param < PARAM_TOL * (scale > 1 ? scale : 1), "%s: parameters differ by %.2e", what, worst_param);
  CHECK_MSG(rel(dp->eval_loss, ref->eval_loss) < LOSS_TOL, "%s: eval loss %.8f vs %.8f", what, dp->eval_loss,
            ref->eval_loss);
}

static void check_ranks_identical(const job *jobs, int world, const char *what) {
  for (int r = 1; r < world; r++) {
    CHECK_MSG(jobs[r].n_params == jobs[0].n_params && jobs[r].adapter && jobs[0].adapter &&
                  !memcmp(jobs[r].adapter, jobs[0].adapter, (size_t)jobs[0].n_params * sizeof(float)),
              "%s: rank %d's adapter differs from rank 0's", what, r);
    for (int s = 1; s <= MAX_STEPS; s++)
      CHECK_MSG(jobs[r].loss[s] == jobs[0].loss[s] && jobs[r].norm[s] == jobs[0].norm[s],
                "%s: rank %d logged another loss or norm at step %d", what, r, s);
  }
}

int main(void) {
  job ref[1], dp[4], z[4], tmp[4];
  memset(ref, 0, sizeof ref);
  memset(dp, 0, sizeof dp);
  memset(z, 0, sizeof z);
  memset(tmp, 0, sizeof tmp);
  int max_world = 4;
#ifdef DP_CUDA
  int ndev;
  int gpu_rc = test_need_two_gpus(NAME, &ndev);
  if (gpu_rc) return gpu_rc;
  max_world = ndev >= 4 ? 4 : 2;
#endif
  if (system("rm -rf " OUT_DIR) != 0) fprintf(stderr, "could not clean " OUT_DIR "\n");
  mkdir(OUT_DIR, 0755);

  /* the reference: one device, accumulation 4 */
  run_world(ref, 0, 4, NULL, 0, NULL);
  if (!job_ok(&ref[0], "reference")) return test_finish(NAME);
  CHECK(ref[0].steps == MAX_STEPS);

  /* 2 ranks x accumulation 2 and 4 ranks x 1: the same global batch */
  run_world(dp, 2, 2, NULL, 0, NULL);
  if (job_ok(&dp[0], "2 ranks") && job_ok(&dp[1], "2 ranks")) {
    compare_to_reference(&ref[0], &dp[0], "2 ranks x 2");
    check_ranks_identical(dp, 2, "2 ranks");
  }
  free_jobs(dp, 2);
  if (max_world >= 4) {
    run_world(dp, 4, 1, "{\"ddp_overlap\": false}", 0, NULL);
    if (job_ok(&dp[0], "4 ranks") && job_ok(&dp[3], "4 ranks")) {
      compare_to_reference(&ref[0], &dp[0], "4 ranks x 1 (no overlap)");
      check_ranks_identical(dp, 4, "4 ranks");
    }
  }
  job plain2[2];
  memset(plain2, 0, sizeof plain2);
  run_world(plain2, 2, 2, NULL, 0, NULL);

  /* ZeRO-1: the same bits as plain data parallel; a checkpoint at step 3 */
  run_world(z, 2, 2, "{\"zero_stage\": 1}", 3, NULL);
  if (job_ok(&z[0], "ZeRO-1") && job_ok(&z[1], "ZeRO-1") && plain2[0].adapter) {
    CHECK_MSG(!memcmp(z[0].adapter, plain2[0].adapter, (size_t)z[0].n_params * sizeof(float)),
              "ZeRO-1 parameters differ from plain data parallel");
    for (int s = 1; s <= MAX_STEPS; s++) CHECK(z[0].loss[s] == plain2[0].loss[s]);
    check_ranks_identical(z, 2, "ZeRO-1");
  }
  struct stat sb;
  CHECK(stat(OUT_DIR "/checkpoint-3/optimizer-rank-00000.ftqckpt", &sb) == 0);
  CHECK(stat(OUT_DIR "/checkpoint-3/optimizer-rank-00001.ftqckpt", &sb) == 0);
  CHECK(stat(OUT_DIR "/checkpoint-3/trainer_state.ftqckpt", &sb) == 0);
  CHECK(stat(OUT_DIR "/checkpoint-3.tmp-dist", &sb) != 0);

  /* resume at step 3 with the same world size: steps 4..6 to the bit */
  run_world(tmp, 2, 2, "{\"zero_stage\": 1}", 0, OUT_DIR "/checkpoint-3");
  if (job_ok(&tmp[0], "resume") && job_ok(&tmp[1], "resume")) {
    CHECK(tmp[0].steps == MAX_STEPS - 3);
    for (int s = 4; s <= MAX_STEPS; s++)
      CHECK_MSG(tmp[0].loss[s] == z[0].loss[s] && tmp[1].norm[s] == z[1].norm[s], "resumed step %d differs", s);
    CHECK(!memcmp(tmp[0].adapter, z[0].adapter, (size_t)z[0].n_params * sizeof(float)));
  }
  free_jobs(tmp, 2);
  /* another world size, or no communicator: refused on every rank */
  run_world(tmp, 0, 4, "{\"zero_stage\": 1}", 0, OUT_DIR "/checkpoint-3");
  CHECK(tmp[0].load_status == FTQ_ERR_STATE);
  CHECK_MSG(strstr(tmp[0].message, "same world size") != NULL, "message: %s", tmp[0].message);
  free_jobs(tmp, 1);
  run_world(tmp, 2, 2, NULL, 0, OUT_DIR "/checkpoint-3"); /* zero_stage 0 now */
  CHECK(tmp[0].load_status == FTQ_ERR_STATE && tmp[1].load_status == FTQ_ERR_STATE);
  free_jobs(tmp, 2);

  /* ranks that disagree: both fail setting up, naming the difference */
  run_world_ex(tmp, 2, 2, NULL, 0, NULL, "{\"max_steps\": 5}", 0);
  CHECK(tmp[0].set_comm_status == FTQ_ERR_STATE && tmp[1].set_comm_status == FTQ_ERR_STATE);
  CHECK_MSG(strstr(tmp[0].message, "total steps") != NULL, "message: %s", tmp[0].message);
  free_jobs(tmp, 2);
  memset(tmp, 0, sizeof tmp);

  /* a rank that leaves after step 2: the other fails its next step with
   * FTQ_ERR_COMM long before comm_timeout_s (20 s) */
  run_world_ex(tmp, 2, 2, NULL, 0, NULL, NULL, 2);
  CHECK(tmp[1].status == FTQ_OK && tmp[1].steps == 2);
#ifdef DP_CUDA
  /* NCCL cannot tell a peer that left from a slow one: the timeout ends it */
  CHECK_MSG(tmp[0].status == FTQ_ERR_COMM || tmp[0].status == FTQ_ERR_TIMEOUT || tmp[0].status == FTQ_ERR_NCCL,
            "rank 0 ended with %d: %s", (int)tmp[0].status, tmp[0].message);
  CHECK_MSG(tmp[0].fail_seconds < 10 + 10, "rank 0 took %.1f s to notice", tmp[0].fail_seconds);
#else
  CHECK_MSG(tmp[0].status == FTQ_ERR_COMM, "rank 0 ended with %d: %s", (int)tmp[0].status, tmp[0].message);
  CHECK_MSG(tmp[0].fail_seconds < 5, "rank 0 took %.1f s to notice", tmp[0].fail_seconds);
#endif
  CHECK(tmp[0].steps == 2);
  printf("lost rank: rank 0 stopped after %.3f s: %s\n", tmp[0].fail_seconds, tmp[0].message);
  free_jobs(tmp, 2);

  free_jobs(ref, 1);
  free_jobs(dp, 4);
  free_jobs(z, 2);
  free_jobs(plain2, 2);
  if (system("rm -rf " OUT_DIR) != 0) fprintf(stderr, "could not clean " OUT_DIR "\n");
  return test_finish(NAME);
}
