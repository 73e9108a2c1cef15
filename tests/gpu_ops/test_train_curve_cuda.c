/* A 50-step LoRA training run on a CUDA context tracks the same run on the
 * CPU backend: a tiny random model learns four fixed batches (dropout on,
 * AdamW with the public optimizer), and every step's loss on the GPU (bf16
 * compute) is within 3% of the CPU's (f32), both curves fall, and a second
 * GPU run with the same seed gives bit-identical losses. Prints both
 * curves. FTQ_TEST_QUICK=1: 10 steps (no learning check). Written after the
 * last GPU run of its author: not yet run on a GPU. */
#include "libftq/ftq_lora.h"
#include "libftq/ftq_trainer.h"
#include "../model/random_model.h"

#define STEPS 50
#define ROWS 2
#define SEQ 32

static void run(ftq_context *ctx, int steps, const int32_t *ids, double *losses) {
  ftq_model_config c = rand_config(64, 96, 2, 4, 2, 100);
  struct ftq_model *m = rand_model(ctx, &c, 5, NULL);
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "r", 8));
  REQUIRE_OK(ftq_options_set_float(o, "lora_alpha", 16));
  REQUIRE_OK(ftq_options_set_float(o, "lora_dropout", 0.05));
  REQUIRE_OK(ftq_options_set_string(o, "target_modules", "all-linear"));
  REQUIRE_OK(ftq_options_set_float(o, "learning_rate", 3e-3));
  REQUIRE_OK(ftq_options_set_string(o, "lr_scheduler_type", "constant"));
  REQUIRE_OK(ftq_options_set_float(o, "max_grad_norm", 1.0));
  ftq_lora *l;
  REQUIRE_OK(ftq_lora_create((ftq_model *)m, NULL, o, 3, &l));
  REQUIRE_OK(ftq_lora_set_active(l, 1));
  ftq_optimizer *opt;
  REQUIRE_OK(ftq_optimizer_create(l, o, steps, &opt));
  ftq_graph_settings s = {.training = 1, .seed = 17};
  for (int step = 0; step < steps; step++) {
    const int32_t *b = ids + (size_t)(step % 4) * ROWS * SEQ; /* four batches, seen in turn */
    ftq_graph_batch batch = {ROWS, SEQ, b, b, NULL, NULL, NULL};
    ftq_graph_result res;
    REQUIRE_OK(ftq_lora_zero_grad(l));
    s.step = (uint64_t)step;
    REQUIRE_OK(ftq_graph_forward_backward(m, &batch, &s, &res, NULL, NULL));
    REQUIRE_OK(ftq_optimizer_step(opt, NULL, NULL, NULL));
    losses[step] = res.loss;
  }
  ftq_optimizer_destroy(opt);
  ftq_lora_destroy(l);
  ftq_model_free(m);
  ftq_options_destroy(o);
}

int main(void) {
  int n = 0;
  ftq_cuda_device_count(&n);
  if (n == 0) return test_gpu_unavailable("test_train_curve_cuda", ftq_last_error());
  const char *qe = getenv("FTQ_TEST_QUICK");
  const int steps = qe && *qe && strcmp(qe, "0") != 0 ? 10 : STEPS;
  ftq_context *cpu, *gpu;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &gpu));
  int32_t ids[4 * ROWS * SEQ];
  uint64_t seed = 42;
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) ids[i] = (int32_t)(test_rand_u64(&seed) % 100);
  double lc[STEPS], lg[STEPS], lg2[STEPS];
  run(cpu, steps, ids, lc);
  run(gpu, steps, ids, lg);
  run(gpu, steps, ids, lg2);
  double worst = 0;
  printf("test_train_curve_cuda on %s\n  step   cpu loss   gpu loss\n", ftq_context_device_name(gpu));
  for (int i = 0; i < steps; i++) {
    double d = fabs(lg[i] - lc[i]) / lc[i];
    if (d > worst) worst = d;
    if (i % 5 == 0 || i == steps - 1) printf("  %4d  %9.5f  %9.5f\n", i, lc[i], lg[i]);
  }
  printf("  worst relative difference of a step's loss: %.2e\n", worst);
  CHECK_MSG(worst <= 3e-2, "GPU loss curve leaves the CPU's by %.3g", worst);
  /* both learn: the last pass over the four batches is well below the first */
  double first = 0, last_c = 0, last_g = 0;
  for (int i = 0; i < 4; i++) first += lc[i], last_c += lc[steps - 4 + i], last_g += lg[steps - 4 + i];
  if (steps == STEPS) /* (4.89 -> 1.93 on the CPU) */
    CHECK_MSG(last_c < 0.9 * first && last_g < 0.9 * first, "no learning: first %.4f, last cpu %.4f gpu %.4f", first,
              last_c, last_g);
  CHECK_MSG(memcmp(lg, lg2, sizeof(double) * (size_t)steps) == 0, "two GPU runs with the same seed differ");
  ftq_context_destroy(gpu);
  ftq_context_destroy(cpu);
  return test_finish("test_train_curve_cuda");
}
