/* Ten optimizer steps (cosine schedule with warm-up, clipping, weight decay,
 * gradient accumulation over two micro-batches normalised by the tokens of
 * the whole accumulated batch) against transformers + PEFT +
 * torch.optim.AdamW in float64 (tests/ref/train/gen_train_ref.py): every
 * step's loss, learning rate and gradient norm, and the adapter after the
 * last step, at ~1e-5. */
#include "ref_model.h"
#include "train/trainer.h"

#define REF "tests/ref/train/train10.safetensors"

static double rel(double a, double b) { return fabs(a - b) / fmax(1e-12, fabs(b)); }

int main(void) {
  ref_file r;
  if (!ref_open(&r, REF)) return 1;
  ftq_context *ctx = test_cpu_context();
  struct ftq_model *m = NULL;
  ftq_lora *lora = NULL;
  REQUIRE_OK(ref_model_load(ctx, &r, 0, &m));
  REQUIRE_OK(ref_lora_load(m, &r, &lora));
  REQUIRE_OK(ftq_lora_set_active(lora, 1));
  json_t *tc = json_object_get(r.config, "train");
  const int steps = (int)json_integer_value(json_object_get(tc, "steps"));
  const int accum = (int)json_integer_value(json_object_get(tc, "accum"));
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "optim", "adamw_torch"));
  REQUIRE_OK(ftq_options_set_float(o, "learning_rate", json_number_value(json_object_get(tc, "learning_rate"))));
  REQUIRE_OK(ftq_options_set_float(o, "weight_decay", json_number_value(json_object_get(tc, "weight_decay"))));
  REQUIRE_OK(ftq_options_set_float(o, "max_grad_norm", json_number_value(json_object_get(tc, "max_grad_norm"))));
  REQUIRE_OK(ftq_options_set_string(o, "lr_scheduler_type", "cosine"));
  REQUIRE_OK(ftq_options_set_int(o, "warmup_steps", json_integer_value(json_object_get(tc, "warmup_steps"))));
  ftq_optimizer *opt;
  REQUIRE_OK(ftq_optimizer_create(lora, o, steps, &opt));

  ref_tensor ids = ref_need(&r, "input_ids"), mask = ref_need(&r, "attention_mask"), lab = ref_need(&r, "labels");
  ref_tensor losses = ref_need(&r, "losses"), lrs = ref_need(&r, "lrs"), norms = ref_need(&r, "grad_norms");
  ref_tensor norms32 = ref_need(&r, "f32.grad_norms");
  const int64_t rows = ids.shape[2], seq = ids.shape[3], per = rows * seq;
  ftq_graph_settings s;
  REQUIRE_OK(ftq_graph_settings_init(NULL, &s));
  double worst_loss = 0, worst_lr = 0, worst_norm = 0;
  for (int st = 0; st < steps; st++) {
    /* labelled tokens of the accumulated batch, counted as transformers does (shifted labels) */
    double num_items = 0;
    for (int a = 0; a < accum; a++) {
      const int32_t *L = (const int32_t *)lab.data + (st * accum + a) * per;
      for (int64_t i = 0; i < rows; i++)
        for (int64_t t = 1; t < seq; t++) num_items += L[i * seq + t] != -100;
    }
    REQUIRE_OK(ftq_lora_zero_grad(lora));
    double loss = 0;
    for (int a = 0; a < accum; a++) {
      ftq_graph_batch b = {rows, seq, (const int32_t *)ids.data + (st * accum + a) * per,
                           (const int32_t *)lab.data + (st * accum + a) * per,
                           (const int32_t *)mask.data + (st * accum + a) * per, NULL, NULL};
      s.num_items = num_items;
      s.step = (uint64_t)(st * accum + a);
      ftq_graph_result res;
      REQUIRE_OK(ftq_graph_forward_backward(m, &b, &s, &res, NULL, NULL));
      loss += res.loss;
    }
    double norm, lr;
    int skipped;
    REQUIRE_OK(ftq_optimizer_step(opt, &norm, &lr, &skipped));
    CHECK(!skipped);
    double want_loss = ((const double *)losses.data)[st], want_lr = ((const double *)lrs.data)[st];
    double want_norm = ((const double *)norms.data)[st];
    worst_loss = fmax(worst_loss, rel(loss, want_loss));
    /* where plain f32 drifts from float64 (PyTorch's own f32 run shows how
     * far), libftq may drift as far: up to 3x PyTorch's f32 error */
    double torch32 = rel(((const double *)norms32.data)[st], want_norm);
    worst_norm = fmax(worst_norm, rel(norm, want_norm) / fmax(1.0, torch32 / 1e-5 * 3));
    worst_lr = fmax(worst_lr, fabs(lr - want_lr));
    printf("step %2d: loss %.7f (torch %.7f)  lr %.6g (torch %.6g)  grad norm %.6f (torch %.6f)\n", st + 1, loss,
           want_loss, lr, want_lr, norm, want_norm);
  }
  CHECK_MSG(worst_loss < 1e-5, "losses differ: worst relative %.3g", worst_loss);
  CHECK_MSG(worst_norm < 1e-5, "gradient norms differ beyond f32 drift: worst scaled relative %.3g", worst_norm);
  CHECK_MSG(worst_lr < 1e-12, "learning rates differ by %.3g", worst_lr);
  CHECK(ftq_optimizer_steps_done(opt) == steps);

  /* the adapter after ten steps, per tensor */
  double worst_w = 0;
  json_t *names = json_object_get(r.config, "lora_tensors");
  for (size_t i = 0; i < json_array_size(names); i++) {
    const char *nm = json_string_value(json_array_get(names, i));
    char key[256];
    snprintf(key, sizeof key, "final.%s", nm);
    ref_tensor want = ref_need(&r, key);
    size_t idx;
    REQUIRE_OK(ftq_lora_find_tensor(lora, nm, &idx));
    float *got = malloc(sizeof(float) * (size_t)want.numel);
    REQUIRE_OK(ftq_lora_get_tensor(lora, idx, got, (size_t)want.numel));
    double err = test_rel_error_f32(got, want.data, (size_t)want.numel);
    worst_w = fmax(worst_w, err);
    if (err > 1e-5) printf("  %s: relative error %.3g\n", nm, err);
    free(got);
  }
  printf("adapter after %d steps: worst relative error per tensor %.3g; losses %.3g\n", steps, worst_w, worst_loss);
  CHECK_MSG(worst_w < 1e-5, "adapter weights differ: worst relative %.3g", worst_w);

  ftq_optimizer_destroy(opt);
  ftq_options_destroy(o);
  ftq_lora_destroy(lora);
  ftq_model_free(m);
  ftq_context_destroy(ctx);
  ref_close(&r);
  return test_finish("test_train_ref");
}
