/* LoRA adapters: PEFT's option names, defaults and initialisations (checked
 * by their distributions), scaling, tensor names and access, several
 * adapters with one active, memory accounting, errors; and the linear
 * operation's dropout mask against its definition in backend.h. */
#include "core/rng.h"
#include "libftq/ftq_lora.h"
#include "lora/lora.h"
#include "quant/qtensor.h"
#include "random_model.h"

static void stats(const float *x, size_t n, double *mean, double *var, double *amax) {
  double s = 0, s2 = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
    if (fabs(x[i]) > m) m = fabs(x[i]);
  }
  *mean = s / (double)n;
  *var = s2 / (double)n - *mean * *mean;
  *amax = m;
}

/* All A (or all B) values of an adapter, concatenated. */
static float *collect(ftq_lora *l, int want_b, size_t *count) {
  size_t total = 0, nt = ftq_lora_tensor_count(l);
  for (size_t i = want_b; i < nt; i += 2) {
    int64_t sh[2];
    ftq_lora_tensor_info(l, i, NULL, 0, sh);
    total += (size_t)(sh[0] * sh[1]);
  }
  float *all = malloc(total * sizeof(float)), *p = all;
  for (size_t i = want_b; i < nt; i += 2) {
    int64_t sh[2];
    ftq_lora_tensor_info(l, i, NULL, 0, sh);
    REQUIRE_OK(ftq_lora_get_tensor(l, i, p, (size_t)(sh[0] * sh[1])));
    p += sh[0] * sh[1];
  }
  *count = total;
  return all;
}

static void test_dropout_mask(ftq_context *ctx) {
  /* W = 0, A = B = identity, scaling 1: y = dropout(x) exactly */
  enum { N = 64, IN = 48 };
  float *x = malloc(sizeof(float) * N * IN), *y = malloc(sizeof(float) * N * IN), *t = malloc(sizeof(float) * N * IN);
  float *eye = calloc(IN * IN, sizeof(float)), *zero = calloc(IN * IN, sizeof(float));
  uint64_t s = 1;
  for (int i = 0; i < N * IN; i++) x[i] = 1.0f + test_rand_uniform(&s) * 0.5f;
  for (int i = 0; i < IN; i++) eye[i * IN + i] = 1.0f;
  ftq_qtensor w;
  REQUIRE_OK(ftq_qtensor_init_plain(ctx, FTQ_DTYPE_F32, IN, IN, zero, "w", &w));
  size_t wb = ftq_linear_work_bytes(N, IN, IN, IN, 0);
  void *work = malloc(wb);
  ftq_linear_args a = {.n = N, .in = IN, .out = IN, .w = &w, .r = IN, .lora_a = eye, .lora_b = eye, .scaling = 1.0f,
                       .dropout = 0.25f, .seed = 77, .stream = 5, .x = x, .t = t, .y = y, .work = work,
                       .work_bytes = wb};
  REQUIRE_OK(ctx->be->linear(ctx->be_ctx, &a));
  int dropped = 0, bad = 0;
  for (int e = 0; e < N * IN; e++) {
    int keep = ftq_rng_uniform(77, 5, (uint64_t)e) >= 0.25f;
    float want = keep ? x[e] * (1.0f / 0.75f) : 0.0f;
    if (fabsf(y[e] - want) > 1e-6f * fabsf(want)) bad++;
    dropped += !keep;
  }
  double frac = (double)dropped / (N * IN);
  printf("dropout p=0.25: %d of %d inputs dropped (%.3f), %d differ from the mask's definition\n", dropped, N * IN,
         frac, bad);
  CHECK(bad == 0);
  CHECK(fabs(frac - 0.25) < 4 * sqrt(0.25 * 0.75 / (N * IN)));
  /* the keep bits the forward saves give the backward the regenerated mask's results, bit for bit */
  uint8_t *mask = malloc(ftq_dropout_mask_bytes(N, IN));
  a.mask = mask;
  REQUIRE_OK(ctx->be->linear(ctx->be_ctx, &a));
  float *dy = malloc(sizeof(float) * N * IN), *dx1 = malloc(sizeof(float) * N * IN), *dx2 = malloc(sizeof(float) * N * IN);
  float *ga1 = calloc(IN * IN, sizeof(float)), *ga2 = calloc(IN * IN, sizeof(float));
  for (int i = 0; i < N * IN; i++) dy[i] = test_rand_uniform(&s);
  a.dy = dy;
  a.dx = dx1;
  a.grad_a = ga1;
  REQUIRE_OK(ctx->be->linear_backward(ctx->be_ctx, &a));
  a.mask = NULL;
  a.dx = dx2;
  a.grad_a = ga2;
  REQUIRE_OK(ctx->be->linear_backward(ctx->be_ctx, &a));
  CHECK(memcmp(dx1, dx2, sizeof(float) * N * IN) == 0 && memcmp(ga1, ga2, sizeof(float) * IN * IN) == 0);
  free(mask), free(dy), free(dx1), free(dx2), free(ga1), free(ga2);
  ftq_qtensor_release(&w);
  free(work), free(x), free(y), free(t), free(eye), free(zero);
}

int main(void) {
  ftq_options *o;
  ftq_context *ctx = test_cpu_context();
  ftq_model_config c = rand_config(96, 160, 3, 6, 2, 50);
  struct ftq_model *m = rand_model(ctx, &c, 4, NULL);
  test_dropout_mask(ctx);

  /* PEFT's defaults: r 8, alpha 8, q_proj + v_proj, kaiming-uniform A, zero B */
  ftq_lora *l;
  size_t adapter0, grad0;
  ftq_context_memory(ctx, FTQ_MEM_ADAPTER, &adapter0, NULL);
  ftq_context_memory(ctx, FTQ_MEM_GRADIENTS, &grad0, NULL);
  REQUIRE_OK(ftq_lora_create(m, NULL, NULL, 1, &l));
  CHECK(strcmp(ftq_lora_name(l), "default") == 0);
  CHECK(ftq_lora_tensor_count(l) == 3 * 2 * 2);
  double scaling;
  REQUIRE_OK(ftq_lora_scaling(l, &scaling));
  CHECK(scaling == 1.0);
  int64_t nparams;
  REQUIRE_OK(ftq_lora_num_parameters(l, &nparams));
  const int64_t kv = 2 * 16;
  CHECK(nparams == 3 * ((8 * 96 + 96 * 8) + (8 * 96 + kv * 8)));
  size_t adapter1, grad1;
  ftq_context_memory(ctx, FTQ_MEM_ADAPTER, &adapter1, NULL);
  ftq_context_memory(ctx, FTQ_MEM_GRADIENTS, &grad1, NULL);
  CHECK(adapter1 - adapter0 >= (size_t)nparams * 4 && grad1 - grad0 >= (size_t)nparams * 4);
  char name[128];
  int64_t sh[2];
  REQUIRE_OK(ftq_lora_tensor_info(l, 0, name, sizeof name, sh));
  CHECK(strcmp(name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") == 0 && sh[0] == 8 &&
        sh[1] == 96);
  REQUIRE_OK(ftq_lora_tensor_info(l, 3, name, sizeof name, sh));
  CHECK(strcmp(name, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight") == 0 && sh[0] == kv &&
        sh[1] == 8);
  size_t idx;
  REQUIRE_OK(ftq_lora_find_tensor(l, "base_model.model.model.layers.2.self_attn.v_proj.lora_A.default.weight", &idx));
  CHECK(idx == 10);
  CHECK_STATUS(ftq_lora_find_tensor(l, "base_model.model.model.layers.2.mlp.up_proj.lora_A.weight", &idx),
               FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("up_proj");
  CHECK_STATUS(ftq_lora_tensor_info(l, 12, name, sizeof name, sh), FTQ_ERR_NOT_FOUND);
  CHECK_STATUS(ftq_lora_tensor_info(l, 0, name, 10, sh), FTQ_ERR_INVALID_ARGUMENT);
  float tiny[4];
  CHECK_STATUS(ftq_lora_get_tensor(l, 0, tiny, 4), FTQ_ERR_SHAPE);
  size_t na, nb;
  float *A = collect(l, 0, &na), *B = collect(l, 1, &nb);
  double mean, var, amax;
  stats(A, na, &mean, &var, &amax);
  const double bound = 1.0 / sqrt(96.0);
  printf("init true: A mean %.2e, var %.4e (U(+-1/sqrt(96)) has %.4e), max |A| %.4f <= %.4f\n", mean, var,
         bound * bound / 3, amax, bound);
  CHECK(amax <= bound && amax > 0.98 * bound);
  CHECK(fabs(mean) < 4 * bound / sqrt(3.0 * (double)na));
  CHECK(fabs(var / (bound * bound / 3) - 1) < 0.05);
  stats(B, nb, &mean, &var, &amax);
  CHECK(amax == 0.0);
  free(A);
  free(B);

  /* a zero-B adapter does not change the model: logits identical */
  int32_t ids[6] = {4, 8, 15, 16, 23, 42};
  ftq_graph_batch b = {1, 6, ids, NULL, NULL, NULL, NULL};
  float *l0 = malloc(sizeof(float) * 6 * 50), *l1 = malloc(sizeof(float) * 6 * 50);
  REQUIRE_OK(ftq_graph_forward(m, &b, NULL, NULL, NULL, l0));
  REQUIRE_OK(ftq_lora_set_active(l, 1));
  CHECK(ftq_lora_is_active(l));
  REQUIRE_OK(ftq_graph_forward(m, &b, NULL, NULL, NULL, l1));
  CHECK(memcmp(l0, l1, sizeof(float) * 6 * 50) == 0);

  /* gaussian init, rsLoRA, every projection; a second adapter takes over */
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "r", 16));
  REQUIRE_OK(ftq_options_set_float(o, "lora_alpha", 32));
  REQUIRE_OK(ftq_options_set_bool(o, "use_rslora", 1));
  REQUIRE_OK(ftq_options_load_json(o, "{\"target_modules\": [\"all-linear\"], \"init_lora_weights\": \"gaussian\"}"));
  ftq_lora *l2;
  REQUIRE_OK(ftq_lora_create(m, "second", o, 2, &l2));
  REQUIRE_OK(ftq_lora_scaling(l2, &scaling));
  CHECK(fabs(scaling - 32.0 / 4.0) < 1e-6);
  CHECK(ftq_lora_tensor_count(l2) == 3 * 7 * 2);
  REQUIRE_OK(ftq_lora_find_tensor(l2, "base_model.model.model.layers.1.mlp.down_proj.lora_A.second.weight", &idx));
  CHECK(idx == 14 + 12);
  A = collect(l2, 0, &na);
  stats(A, na, &mean, &var, &amax);
  printf("init gaussian: A mean %.2e, std %.4f (1/r = %.4f)\n", mean, sqrt(var), 1.0 / 16);
  CHECK(fabs(sqrt(var) * 16 - 1) < 0.03 && fabs(mean) < 4.0 / 16 / sqrt((double)na));
  free(A);
  REQUIRE_OK(ftq_lora_set_active(l2, 1));
  CHECK(ftq_lora_is_active(l2) && !ftq_lora_is_active(l));
  REQUIRE_OK(ftq_lora_set_active(l, 0)); /* not active: no effect */
  CHECK(ftq_lora_is_active(l2));
  ftq_lora_destroy(l2); /* destroying the active adapter leaves the model without one */
  CHECK(ftq_model_active_lora(m) == NULL);

  /* init false: B ~ U(+-1/sqrt(r)) as nn.Linear; seeds give reproducible values */
  REQUIRE_OK(ftq_options_set_string(o, "init_lora_weights", "false"));
  ftq_lora *l3, *l4, *l5;
  REQUIRE_OK(ftq_lora_create(m, NULL, o, 9, &l3));
  REQUIRE_OK(ftq_lora_create(m, NULL, o, 9, &l4));
  REQUIRE_OK(ftq_lora_create(m, NULL, o, 10, &l5));
  B = collect(l3, 1, &nb);
  float *B4 = collect(l4, 1, &nb), *B5 = collect(l5, 1, &nb);
  stats(B, nb, &mean, &var, &amax);
  CHECK(amax <= 0.25 && amax > 0.24 && fabs(var / (1.0 / 16 / 3) - 1) < 0.05);
  CHECK(memcmp(B, B4, nb * 4) == 0 && memcmp(B, B5, nb * 4) != 0);
  free(B), free(B4), free(B5);
  ftq_lora_destroy(l3), ftq_lora_destroy(l4), ftq_lora_destroy(l5);

  /* set/get round trip and zero_grad */
  float vals[8 * 96];
  for (int i = 0; i < 8 * 96; i++) vals[i] = (float)i * 0.001f;
  REQUIRE_OK(ftq_lora_set_tensor(l, 0, vals, 8 * 96));
  float back[8 * 96];
  REQUIRE_OK(ftq_lora_get_tensor(l, 0, back, 8 * 96));
  CHECK(memcmp(vals, back, sizeof vals) == 0);
  REQUIRE_OK(ftq_lora_get_grad(l, 0, back, 8 * 96));
  int zero = 1;
  for (int i = 0; i < 8 * 96; i++) zero &= back[i] == 0.0f;
  CHECK(zero);

  /* option errors name the option */
  CHECK_STATUS(ftq_options_set_string(o, "target_modules", "q_proj,lm_head"), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_string(o, "bias", "all"), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_float(o, "lora_dropout", 1.0), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_int(o, "r", 0), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_string(o, "init_lora_weights", "pissa"), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_lora_create(m, "a.b", NULL, 0, &l2), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_lora_create(NULL, NULL, NULL, 0, &l2), FTQ_ERR_INVALID_ARGUMENT);
  ftq_lora_destroy(NULL);
  CHECK(ftq_lora_tensor_count(NULL) == 0 && !ftq_lora_is_active(NULL) && strcmp(ftq_lora_name(NULL), "") == 0);

  ftq_options_destroy(o);
  free(l0), free(l1);
  ftq_lora_destroy(l);
  ftq_model_free(m);
  size_t left;
  ftq_context_memory(ctx, FTQ_MEM_ADAPTER, &left, NULL);
  CHECK(left == 0);
  ftq_context_destroy(ctx);
  return test_finish("test_lora");
}
