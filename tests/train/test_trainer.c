/* The trainer: run length as transformers computes it, learning on the
 * example data, logging records, callbacks that stop, evaluation,
 * checkpoints (resume gives the same losses bit for bit, rotation, damaged
 * or mismatched checkpoints refused), the NaN guard and the memory plan. */
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

#define TOK "tests/ref/tok/sp_meta"
#define DATA "examples/data/catalog_train_text.jsonl"
static const char *MODEL_CFG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 48, \"intermediate_size\": 80, "
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 1481, "
    "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"max_position_embeddings\": 512, "
    "\"initializer_range\": 0.05, \"torch_dtype\": \"float32\", \"bos_token_id\": 1, \"eos_token_id\": 2}";

static ftq_context *ctx;
static ftq_tokenizer *tok;

static ftq_dataset *load_data(const char *extra_json) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_load_json(o, "{\"max_seq_length\": 96, \"per_device_train_batch_size\": 4, "
                                      "\"test_size\": 0.05, \"seed\": 7, \"gradient_accumulation_steps\": 2}"));
  if (extra_json) REQUIRE_OK(ftq_options_load_json(o, extra_json));
  ftq_dataset *ds;
  REQUIRE_OK(ftq_dataset_load(ctx, tok, DATA, o, &ds));
  ftq_options_destroy(o);
  return ds;
}

typedef struct run {
  ftq_model *model;
  ftq_lora *lora;
  ftq_trainer *t;
  ftq_options *o;
} run;

static void run_start(run *r, ftq_dataset *ds, const char *train_json, uint64_t lora_seed) {
  REQUIRE_OK(ftq_model_init_random(ctx, MODEL_CFG, 11, NULL, &r->model));
  REQUIRE_OK(ftq_options_create(&r->o));
  REQUIRE_OK(ftq_options_load_json(r->o, "{\"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": 0.1, "
                                         "\"target_modules\": \"all-linear\", \"gradient_accumulation_steps\": 2, "
                                         "\"learning_rate\": 0.01, \"lr_scheduler_type\": \"cosine\", "
                                         "\"warmup_ratio\": 0.1, \"max_grad_norm\": 1.0, \"weight_decay\": 0.001, "
                                         "\"seed\": 5, \"logging_steps\": 5}"));
  if (train_json) REQUIRE_OK(ftq_options_load_json(r->o, train_json));
  REQUIRE_OK(ftq_lora_create(r->model, NULL, r->o, lora_seed, &r->lora));
  REQUIRE_OK(ftq_trainer_create(r->model, r->lora, ds, r->o, &r->t));
}

static void run_end(run *r) {
  ftq_trainer_destroy(r->t);
  ftq_lora_destroy(r->lora);
  ftq_model_destroy(r->model);
  ftq_options_destroy(r->o);
}

/* ---- callbacks ---- */
typedef struct capture {
  double losses[256];
  int n;
  int stop_at;
  json_t *records;
} capture;

static int on_progress(void *user, int64_t step, int64_t total, double loss, double lr, double tps) {
  capture *c = user;
  if (c->n < 256) c->losses[c->n++] = loss;
  (void)total, (void)lr, (void)tps;
  return c->stop_at && step == c->stop_at;
}

static int on_log(void *user, const char *text) {
  capture *c = user;
  json_error_t err;
  json_t *rec = json_loads(text, 0, &err);
  CHECK_MSG(rec != NULL, "log record is not JSON: %s", text);
  if (rec) json_array_append_new(c->records, rec);
  return 0;
}

static int rm_rf(const char *path) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  return system(cmd);
}

static void test_length_and_learning(ftq_dataset *ds) {
  int64_t bpe = ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN);
  run r;
  run_start(&r, ds, "{\"num_train_epochs\": 1}", 3);
  CHECK(ftq_trainer_total_steps(r.t) == bpe / 2); /* transformers: len(dataloader) // GA per epoch */
  run_end(&r);
  run_start(&r, ds, "{\"num_train_epochs\": 0.25}", 3);
  CHECK(ftq_trainer_total_steps(r.t) == (int64_t)ceil(0.25 * (double)(bpe / 2)));
  run_end(&r);

  /* learning: the loss falls over 60 steps on the catalog task (a random tiny
   * base with rank-8 adapters learns slowly: 7.3 -> ~6.2) */
  capture c = {0};
  c.records = json_array();
  run_start(&r, ds, "{\"max_steps\": 60}", 3);
  CHECK(ftq_trainer_total_steps(r.t) == 60);
  REQUIRE_OK(ftq_trainer_set_progress_callback(r.t, on_progress, &c));
  REQUIRE_OK(ftq_trainer_set_log_callback(r.t, on_log, &c));
  char *plan = NULL;
  CHECK_OK(ftq_trainer_plan(r.t, &plan));
  CHECK(plan && strstr(plan, "\"activations\"") && strstr(plan, "\"fits\": true") && strstr(plan, "\"weights\""));
  /* planned for the longest training example (max_seq_length 96 cuts the longest rows) */
  CHECK_MSG(plan && strstr(plan, "\"longest_sequence\": 96"), "plan: %s", plan ? plan : "(none)");
  ftq_free(plan);
  CHECK_OK(ftq_trainer_train(r.t));
  CHECK(c.n == 60 && ftq_trainer_global_step(r.t) == 60 && ftq_trainer_nonfinite_steps(r.t) == 0);
  double first = 0, last = 0;
  for (int i = 0; i < 5; i++) first += c.losses[i] / 5, last += c.losses[55 + i] / 5;
  printf("loss: first 5 steps %.4f, last 5 steps %.4f\n", first, last);
  CHECK_MSG(last < 0.9 * first, "the loss did not fall: %.4f -> %.4f", first, last);
  /* a record every logging_steps (5) with the mean of those steps' losses, then the summary */
  CHECK(json_array_size(c.records) == 13);
  for (size_t i = 0; i < 12 && i < json_array_size(c.records); i++) {
    json_t *rec = json_array_get(c.records, i);
    CHECK(json_integer_value(json_object_get(rec, "step")) == (json_int_t)(5 * (i + 1)));
    double mean = 0;
    for (int k = 0; k < 5; k++) mean += c.losses[5 * i + (size_t)k] / 5;
    CHECK_MSG(fabs(json_number_value(json_object_get(rec, "loss")) - mean) < 1e-9 * fmax(1, mean),
              "record %zu: loss %.9g, mean of its steps %.9g", i, json_number_value(json_object_get(rec, "loss")), mean);
    const char *keys[] = {"epoch", "learning_rate", "grad_norm", "tokens_per_second", "memory_peak_bytes",
                          "nonfinite_steps"};
    for (size_t k = 0; k < 6; k++) CHECK_MSG(json_object_get(rec, keys[k]), "record lacks %s", keys[k]);
  }
  json_t *summary = json_array_get(c.records, json_array_size(c.records) - 1);
  CHECK(json_is_true(json_object_get(summary, "completed")) && json_object_get(summary, "train_loss"));
  /* the run is over */
  CHECK_STATUS(ftq_trainer_step(r.t, NULL), FTQ_ERR_STATE);
  json_decref(c.records);
  run_end(&r);
}

static void test_stop_resume(ftq_dataset *ds, const char *dir) {
  /* uninterrupted */
  capture a = {0};
  run r;
  run_start(&r, ds, "{\"max_steps\": 10}", 3);
  REQUIRE_OK(ftq_trainer_set_progress_callback(r.t, on_progress, &a));
  CHECK_OK(ftq_trainer_train(r.t));
  run_end(&r);

  /* stopped by a callback at step 4, saved, and continued in a new trainer */
  capture b = {0};
  b.stop_at = 4;
  run_start(&r, ds, "{\"max_steps\": 10}", 3);
  REQUIRE_OK(ftq_trainer_set_progress_callback(r.t, on_progress, &b));
  CHECK_STATUS(ftq_trainer_train(r.t), FTQ_ERR_CANCELLED);
  CHECK(ftq_trainer_global_step(r.t) == 4 && b.n == 4);
  char path[512];
  snprintf(path, sizeof path, "%s/resume", dir);
  CHECK_OK(ftq_trainer_save_checkpoint(r.t, path));
  CHECK_OK(ftq_trainer_save_checkpoint(r.t, path)); /* replacing an existing checkpoint */
  run_end(&r);
  run_start(&r, ds, "{\"max_steps\": 10}", 99); /* another initial adapter: the checkpoint's wins */
  REQUIRE_OK(ftq_trainer_set_progress_callback(r.t, on_progress, &b));
  CHECK_OK(ftq_trainer_load_checkpoint(r.t, path));
  CHECK(ftq_trainer_global_step(r.t) == 4);
  b.stop_at = 0;
  CHECK_OK(ftq_trainer_train(r.t));
  CHECK(b.n == 10);
  int same = 1;
  for (int i = 0; i < 10; i++) same &= memcmp(&a.losses[i], &b.losses[i], sizeof(double)) == 0;
  CHECK_MSG(same, "resumed losses differ from the uninterrupted run (e.g. step 10: %.17g vs %.17g)", b.losses[9],
            a.losses[9]);
  run_end(&r);

  /* a checkpoint of another adapter configuration, or of other data, is refused */
  run_start(&r, ds, "{\"max_steps\": 10, \"r\": 4}", 3);
  CHECK_STATUS(ftq_trainer_load_checkpoint(r.t, path), FTQ_ERR_SHAPE);
  CHECK_ERROR_MENTIONS("adapter configuration");
  run_end(&r);
  ftq_dataset *other = load_data("{\"seed\": 8}");
  run_start(&r, other, "{\"max_steps\": 10}", 3);
  CHECK_STATUS(ftq_trainer_load_checkpoint(r.t, path), FTQ_ERR_SHAPE);
  CHECK_ERROR_MENTIONS("data set");
  run_end(&r);
  ftq_dataset_destroy(other);

  /* a damaged checkpoint is refused with its path */
  char state[600];
  snprintf(state, sizeof state, "%s/trainer_state.ftqckpt", path);
  FILE *f = fopen(state, "r+b");
  fseek(f, 200, SEEK_SET);
  fputc(0x55, f);
  fclose(f);
  run_start(&r, ds, "{\"max_steps\": 10}", 3);
  CHECK_STATUS(ftq_trainer_load_checkpoint(r.t, path), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS(path);
  CHECK_STATUS(ftq_trainer_load_checkpoint(r.t, "/nonexistent/ckpt"), FTQ_ERR_IO);
  run_end(&r);
}

static int count_checkpoints(const char *dir, int64_t *steps) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strncmp(e->d_name, "checkpoint-", 11) == 0) steps[n++] = atoll(e->d_name + 11);
  if (d) closedir(d);
  return n;
}

static void test_eval_saves_nan(ftq_dataset *ds, const char *dir) {
  char out[512], json[1024];
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(json, sizeof json, "{\"max_steps\": 6, \"eval_steps\": 3, \"save_steps\": 2, \"save_total_limit\": 2, "
           "\"output_dir\": \"%s\"}", out);
  capture c = {0};
  c.records = json_array();
  run r;
  run_start(&r, ds, json, 3);
  REQUIRE_OK(ftq_trainer_set_log_callback(r.t, on_log, &c));
  CHECK_OK(ftq_trainer_train(r.t));
  int64_t steps[16];
  int n = count_checkpoints(out, steps);
  CHECK_MSG(n == 2 && ((steps[0] == 4 && steps[1] == 6) || (steps[0] == 6 && steps[1] == 4)),
            "%d checkpoints kept", n);
  int evals = 0;
  for (size_t i = 0; i < json_array_size(c.records); i++) evals += json_object_get(json_array_get(c.records, i), "eval_loss") != NULL;
  CHECK(evals == 2);
  /* evaluate() is the token-weighted mean over the eval batches */
  double ev;
  CHECK_OK(ftq_trainer_evaluate(r.t, &ev));
  ftq_batch *b;
  REQUIRE_OK(ftq_batch_create(&b));
  double sum = 0;
  int64_t items = 0;
  for (int64_t i = 0; i < ftq_dataset_num_batches(ds, FTQ_SPLIT_EVAL); i++) {
    double s;
    int64_t k;
    REQUIRE_OK(ftq_dataset_get_batch(ds, FTQ_SPLIT_EVAL, 0, i, b));
    REQUIRE_OK(ftq_model_eval_batch(r.model, b, &s, &k));
    sum += s, items += k;
  }
  CHECK(items > 0 && fabs(ev - sum / (double)items) < 1e-12 * fabs(ev));
  ftq_batch_destroy(b);
  json_decref(c.records);
  run_end(&r);

  /* NaN guard: a NaN adapter gives non-finite losses: skipped, counted, then an error */
  run_start(&r, ds, "{\"max_steps\": 10, \"max_consecutive_nonfinite\": 3}", 3);
  int64_t shape[2];
  REQUIRE_OK(ftq_lora_tensor_info(r.lora, 0, NULL, 0, shape));
  float *nan = malloc(sizeof(float) * (size_t)(shape[0] * shape[1]));
  for (int64_t i = 0; i < shape[0] * shape[1]; i++) nan[i] = NAN;
  REQUIRE_OK(ftq_lora_set_tensor(r.lora, 0, nan, (size_t)(shape[0] * shape[1])));
  CHECK_STATUS(ftq_trainer_train(r.t), FTQ_ERR_NUMERIC);
  CHECK_ERROR_MENTIONS("non-finite");
  CHECK(ftq_trainer_nonfinite_steps(r.t) == 3 && ftq_optimizer_steps_done(ftq_trainer_optimizer(r.t)) == 0);
  free(nan);
  run_end(&r);
}

static void test_plan_refusal(void) {
  /* every example in one batch, a wide model: the activations cannot fit in host memory */
  ftq_dataset *ds = load_data("{\"per_device_train_batch_size\": 1048576, \"max_seq_length\": 96}");
  ftq_model *m;
  REQUIRE_OK(ftq_model_init_random(ctx,
      "{\"hidden_size\": 4096, \"intermediate_size\": 32768, \"num_hidden_layers\": 1, \"num_attention_heads\": 32, "
      "\"vocab_size\": 1481, \"torch_dtype\": \"bfloat16\"}", 1, NULL, &m));
  ftq_lora *l;
  REQUIRE_OK(ftq_lora_create(m, NULL, NULL, 1, &l));
  ftq_trainer *t;
  REQUIRE_OK(ftq_trainer_create(m, l, ds, NULL, &t));
  char *plan = NULL;
  CHECK_STATUS(ftq_trainer_plan(t, &plan), FTQ_ERR_OUT_OF_MEMORY);
  CHECK_ERROR_MENTIONS("does not fit");
  CHECK(plan && strstr(plan, "\"fits\": false"));
  ftq_free(plan);
  CHECK_STATUS(ftq_trainer_train(t), FTQ_ERR_OUT_OF_MEMORY);
  ftq_trainer_destroy(t);
  ftq_lora_destroy(l);
  ftq_model_destroy(m);
  ftq_dataset_destroy(ds);
}

int main(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "num_threads", 2));
  REQUIRE_OK(ftq_context_create("cpu", o, &ctx));
  ftq_options_destroy(o);
  REQUIRE_OK(ftq_tokenizer_load(TOK, NULL, &tok));
  char dir[] = "/tmp/ftq_trainer_XXXXXX";
  REQUIRE_OK(mkdtemp(dir) ? FTQ_OK : FTQ_ERR_IO);
  ftq_dataset *ds = load_data(NULL);
  test_length_and_learning(ds);
  test_stop_resume(ds, dir);
  test_eval_saves_nan(ds, dir);
  test_plan_refusal();
  /* bad arguments */
  ftq_trainer *t = (ftq_trainer *)1;
  CHECK_STATUS(ftq_trainer_create(NULL, NULL, ds, NULL, &t), FTQ_ERR_INVALID_ARGUMENT);
  CHECK(t == NULL);
  ftq_trainer_destroy(NULL);
  ftq_optimizer_destroy(NULL);
  CHECK(ftq_trainer_global_step(NULL) == -1 && ftq_optimizer_steps_done(NULL) == -1);
  ftq_dataset_destroy(ds);
  ftq_tokenizer_destroy(tok);
  size_t cur;
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ALL, &cur, NULL));
  CHECK_MSG(cur == 0, "%zu bytes still held", cur);
  ftq_context_destroy(ctx);
  rm_rf(dir);
  return test_finish("test_trainer");
}
