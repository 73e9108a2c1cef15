/* The QAT experiment of docs/adapters.md (not a ctest: it trains for
 * minutes). On an NF4 base (quantized at load, double quantization), the
 * same LoRA is trained twice on the same data with the same seed, once
 * plainly and once with `qat`, then each adapter is evaluated on held-out
 * data three ways: applied unmerged (LoRA on the NF4 base), merged and
 * re-quantized to NF4 (what a deployed 4-bit model computes; evaluated as
 * the adapter in QAT mode, which test_qat shows to be that model exactly),
 * and the merged NF4 folder is written once to show its size. Prints one
 * JSON object per measurement.
 *
 * usage: qat_experiment MODEL TRAIN.jsonl EVAL.jsonl [steps] [eval_batches] [out_dir]
 *   e.g. qat_experiment $(scripts/get-model.sh) examples/data/catalog_train_messages.jsonl \
 *        examples/data/catalog_eval_messages.jsonl 120 25 /tmp/qat
 * (eval_batches: the same first batches of 4 examples for every evaluation;
 * 0 = all)
 * Public API only. */
#include <libftq/ftq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TRY(x)                                                        \
  do {                                                                \
    if ((x) != FTQ_OK) {                                              \
      fprintf(stderr, "qat_experiment: %s: %s\n", #x, ftq_last_error()); \
      exit(1);                                                        \
    }                                                                 \
  } while (0)

static void on_log(void *user, ftq_log_level level, const char *msg) {
  (void)user;
  if (level <= FTQ_LOG_WARN) fprintf(stderr, "%s\n", msg);
}

static int on_record(void *user, const char *record) {
  fprintf(stderr, "%s %s\n", (const char *)user, record);
  return 0;
}

/* Token-weighted mean loss over the first `limit` batches (0: all). */
static double eval_loss(ftq_model *m, ftq_dataset *ds, int64_t limit) {
  ftq_batch *b;
  TRY(ftq_batch_create(&b));
  double sum = 0;
  int64_t n = 0, batches = ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN);
  if (limit > 0 && limit < batches) batches = limit;
  for (int64_t i = 0; i < batches; i++) {
    double s;
    int64_t k;
    TRY(ftq_dataset_get_batch(ds, FTQ_SPLIT_TRAIN, 0, i, b));
    TRY(ftq_model_eval_batch(m, b, &s, &k));
    sum += s;
    n += k;
  }
  ftq_batch_destroy(b);
  return sum / (double)n;
}

static void setopt(ftq_options *o, const char *name, const char *value) { TRY(ftq_options_set_parse(o, name, value)); }

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODEL TRAIN.jsonl EVAL.jsonl [steps] [eval_batches] [out_dir]\n", argv[0]);
    return 2;
  }
  const char *steps = argc > 4 ? argv[4] : "120", *out = argc > 6 ? argv[6] : "/tmp/ftq_qat_experiment";
  const int64_t limit = argc > 5 ? atoll(argv[5]) : 0;
  ftq_options *o;
  TRY(ftq_options_create(&o));
  /* the base as QLoRA holds it */
  setopt(o, "num_threads", "2");
  setopt(o, "load_in_4bit", "true");
  setopt(o, "bnb_4bit_quant_type", "nf4");
  setopt(o, "bnb_4bit_use_double_quant", "true");
  /* data: assistant turns only, the model's chat template */
  setopt(o, "assistant_only_loss", "true");
  setopt(o, "max_seq_length", "256");
  setopt(o, "per_device_train_batch_size", "4");
  setopt(o, "seed", "42");
  /* LoRA and training */
  setopt(o, "r", "16");
  setopt(o, "lora_alpha", "32");
  setopt(o, "lora_dropout", "0.05");
  setopt(o, "target_modules", "all-linear");
  setopt(o, "learning_rate", "5e-4");
  setopt(o, "lr_scheduler_type", "cosine");
  setopt(o, "warmup_ratio", "0.03");
  setopt(o, "max_steps", steps);
  setopt(o, "logging_steps", "20");

  mkdir(out, 0777);
  ftq_context *ctx;
  TRY(ftq_context_create("cpu", o, &ctx));
  TRY(ftq_context_set_log_callback(ctx, on_log, NULL));
  ftq_tokenizer *tok;
  ftq_dataset *train, *eval;
  TRY(ftq_tokenizer_load(argv[1], o, &tok));
  TRY(ftq_dataset_load(ctx, tok, argv[2], o, &train));
  TRY(ftq_dataset_load(ctx, tok, argv[3], o, &eval));
  printf("{\"device\": \"%s\", \"steps\": %s, \"train_examples\": %lld, \"eval_batches\": %lld}\n",
         ftq_context_device_name(ctx), steps, (long long)ftq_dataset_num_examples(train, FTQ_SPLIT_TRAIN),
         (long long)(limit > 0 ? limit : ftq_dataset_num_batches(eval, FTQ_SPLIT_TRAIN)));

  for (int qat = 0; qat <= 1; qat++) {
    ftq_model *m;
    ftq_lora *l, *plain, *merged;
    ftq_trainer *t;
    TRY(ftq_model_load(ctx, argv[1], o, &m));
    if (!qat) printf("{\"run\": \"base NF4\", \"eval_loss\": %.6f}\n", eval_loss(m, eval, limit));
    fflush(stdout);
    TRY(ftq_options_set_bool(o, "qat", qat));
    TRY(ftq_lora_create(m, "trained", o, 42, &l));
    TRY(ftq_trainer_create(m, l, train, o, &t));
    TRY(ftq_trainer_set_log_callback(t, on_record, qat ? "[qat]" : "[lora]"));
    TRY(ftq_trainer_train(t));
    ftq_trainer_destroy(t);
    /* the trained adapter read back both ways */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", out, qat ? "qat_adapter" : "lora_adapter");
    TRY(ftq_lora_save(l, dir, NULL));
    TRY(ftq_options_set_bool(o, "qat", 0));
    TRY(ftq_lora_load(m, dir, "plain", o, &plain));
    TRY(ftq_options_set_bool(o, "qat", 1));
    TRY(ftq_lora_load(m, dir, "merged", o, &merged));
    TRY(ftq_options_set_bool(o, "qat", 0));
    TRY(ftq_lora_set_active(plain, 1));
    double unmerged = eval_loss(m, eval, limit);
    TRY(ftq_lora_set_active(merged, 1));
    double requant = eval_loss(m, eval, limit);
    printf("{\"run\": \"%s\", \"eval_loss_unmerged\": %.6f, \"eval_loss_merged_nf4\": %.6f}\n",
           qat ? "LoRA trained with qat" : "LoRA", unmerged, requant);
    fflush(stdout);
    snprintf(dir, sizeof dir, "%s/%s", out, qat ? "qat_merged_nf4" : "lora_merged_nf4");
    TRY(ftq_model_save_merged(m, l, dir, o));
    ftq_lora_destroy(merged);
    ftq_lora_destroy(plain);
    ftq_lora_destroy(l);
    ftq_model_destroy(m);
  }
  ftq_dataset_destroy(eval);
  ftq_dataset_destroy(train);
  ftq_tokenizer_destroy(tok);
  ftq_context_destroy(ctx);
  ftq_options_destroy(o);
  return 0;
}
