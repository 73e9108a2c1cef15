/* Interoperability with peft and transformers, run live (ctest label
 * `interop`): interop.py builds a tiny Qwen2-style model and a PEFT adapter;
 * libftq loads the adapter and must give PeftModel's logits; libftq then
 * saves an adapter of its own, a merged model folder and an NF4
 * re-quantized one, with its logits, and interop.py loads them with
 * PeftModel.from_pretrained / AutoModelForCausalLM.from_pretrained and
 * compares. The interpreter is $FTQ_PYTHON (required to work when set);
 * without it, python3, and the test is skipped (77) when torch, peft or
 * transformers cannot be imported. */
#include <sys/wait.h>

#include "lora/lora.h"
#include "peft_test.h"

/* Runs python with up to three arguments; returns its exit status (-1 if it
 * could not run). */
static int run_python(const char *py, const char *a, const char *b, const char *c) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execlp(py, py, a, b, c, (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

static float *logits_on(ftq_model *m, const int32_t *ids) { return pt_logits(m, ids); }

int main(void) {
  const char *env = getenv("FTQ_PYTHON");
  const char *py = env && *env ? env : "python3";
  if (run_python(py, "-c", "import torch, peft, transformers, safetensors", NULL) != 0) {
    if (env && *env) {
      fprintf(stderr, "test_peft_interop: FTQ_PYTHON=%s cannot import torch, peft and transformers\n", py);
      return 1;
    }
    printf("test_peft_interop: SKIP: %s cannot import torch, peft and transformers (set FTQ_PYTHON)\n", py);
    return TEST_SKIP_CODE;
  }
  char *dir = pt_tmpdir(), path[1024];
  if (run_python(py, "tests/peft/interop.py", "make", dir) != 0) {
    fprintf(stderr, "test_peft_interop: interop.py make failed\n");
    pt_rmtree(dir);
    return 1;
  }
  ftq_context *ctx = test_cpu_context();
  ftq_safetensors *ref;
  snprintf(path, sizeof path, "%s/ref.safetensors", dir);
  REQUIRE_OK(ftq_safetensors_open(path, &ref));
  const ftq_st_tensor *ids_t = ftq_safetensors_find(ref, "input_ids");
  const ftq_st_tensor *lb = ftq_safetensors_find(ref, "logits_base"), *lp = ftq_safetensors_find(ref, "logits_peft");
  if (!ids_t || ids_t->numel != ROWS * SEQ || !lb || !lp) {
    fprintf(stderr, "test_peft_interop: %s is incomplete\n", path);
    return 1;
  }
  const int32_t *ids = ids_t->data;
  const size_t nl = (size_t)lb->numel;

  /* a PEFT-made adapter in libftq */
  ftq_model *m;
  snprintf(path, sizeof path, "%s/base", dir);
  REQUIRE_OK(ftq_model_load(ctx, path, NULL, &m));
  float *got = logits_on(m, ids);
  double e = pt_max_rel(got, lb->data, nl);
  CHECK_MSG(e < 2e-5, "base model: logits differ from transformers' by %.3g", e);
  free(got);
  ftq_lora *peft;
  snprintf(path, sizeof path, "%s/peft_adapter", dir);
  REQUIRE_OK(ftq_lora_load(m, path, NULL, NULL, &peft));
  REQUIRE_OK(ftq_lora_set_active(peft, 1));
  got = logits_on(m, ids);
  e = pt_max_rel(got, lp->data, nl);
  printf("PEFT adapter in libftq: max relative difference %.3g\n", e);
  CHECK_MSG(e < 2e-5, "PEFT adapter: logits differ from PeftModel's by %.3g", e);
  free(got);
  ftq_lora_destroy(peft);

  /* a libftq adapter, merged folders, and libftq's logits for each */
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "r", 4));
  REQUIRE_OK(ftq_options_set_float(o, "lora_alpha", 8));
  REQUIRE_OK(ftq_options_set_bool(o, "use_rslora", 1));
  REQUIRE_OK(ftq_options_set_string(o, "target_modules", "all-linear"));
  REQUIRE_OK(ftq_options_set_string(o, "init_lora_weights", "false"));
  ftq_lora *mine;
  REQUIRE_OK(ftq_lora_create(m, "mine", o, 11, &mine));
  REQUIRE_OK(ftq_lora_set_active(mine, 1));
  float *l_ftq = logits_on(m, ids);
  snprintf(path, sizeof path, "%s/ftq_adapter", dir);
  CHECK_OK(ftq_lora_save(mine, path, NULL));
  snprintf(path, sizeof path, "%s/merged", dir);
  CHECK_OK(ftq_model_save_merged(m, mine, path, NULL));
  ftq_model *merged;
  REQUIRE_OK(ftq_model_load(ctx, path, NULL, &merged));
  float *l_merged = logits_on(merged, ids);
  ftq_model_destroy(merged);

  ftq_options *q;
  REQUIRE_OK(ftq_options_create(&q));
  REQUIRE_OK(ftq_options_set_bool(q, "load_in_4bit", 1));
  REQUIRE_OK(ftq_options_set_string(q, "bnb_4bit_quant_type", "nf4"));
  REQUIRE_OK(ftq_options_set_bool(q, "bnb_4bit_use_double_quant", 1));
  snprintf(path, sizeof path, "%s/merged_nf4", dir);
  CHECK_OK(ftq_model_save_merged(m, mine, path, q));
  /* every projection is adapted, so the QAT forward pass is the NF4 merged model's */
  REQUIRE_OK(ftq_options_set_bool(q, "qat", 1));
  ftq_lora *qat;
  snprintf(path, sizeof path, "%s/ftq_adapter", dir);
  REQUIRE_OK(ftq_lora_load(m, path, "qat", q, &qat));
  REQUIRE_OK(ftq_lora_set_active(qat, 1));
  float *l_nf4 = logits_on(m, ids);

  ftq_st_writer *w;
  int64_t shape[3] = {ROWS, SEQ, (int64_t)(nl / (ROWS * SEQ))}, ishape[2] = {ROWS, SEQ};
  REQUIRE_OK(ftq_st_writer_create(&w));
  REQUIRE_OK(ftq_st_writer_add(w, "input_ids", FTQ_DTYPE_I32, 2, ishape, ids));
  REQUIRE_OK(ftq_st_writer_add(w, "logits_ftq", FTQ_DTYPE_F32, 3, shape, l_ftq));
  REQUIRE_OK(ftq_st_writer_add(w, "logits_ftq_merged", FTQ_DTYPE_F32, 3, shape, l_merged));
  REQUIRE_OK(ftq_st_writer_add(w, "logits_ftq_nf4", FTQ_DTYPE_F32, 3, shape, l_nf4));
  snprintf(path, sizeof path, "%s/ftq_logits.safetensors", dir);
  REQUIRE_OK(ftq_st_writer_write(w, path));
  ftq_st_writer_destroy(w);

  int rc = run_python(py, "tests/peft/interop.py", "check", dir);
  CHECK_MSG(rc == 0, "interop.py check exited with %d", rc);

  free(l_ftq);
  free(l_merged);
  free(l_nf4);
  ftq_lora_destroy(qat);
  ftq_lora_destroy(mine);
  ftq_options_destroy(q);
  ftq_options_destroy(o);
  ftq_model_destroy(m);
  ftq_safetensors_close(ref);
  ftq_context_destroy(ctx);
  if (getenv("FTQ_KEEP_INTEROP")) printf("files kept in %s\n", dir), free(dir);
  else pt_rmtree(dir);
  return test_finish("test_peft_interop");
}
