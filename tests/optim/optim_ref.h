/* Shared by the optimizer tests: loading tests/ref/optim/optim_ref.json and
 * running its AdamW problem on a context. */
#ifndef FTQ_TEST_OPTIM_REF_H
#define FTQ_TEST_OPTIM_REF_H

#include <jansson.h>

#include "core/context.h"
#include "optim/optimizer.h"
#include "test_util.h"

#define REF_PATH "tests/ref/optim/optim_ref.json"
#define NP 3

static json_t *load_ref(void) {
  json_error_t err;
  json_t *root = json_load_file(REF_PATH, 0, &err);
  if (!root) {
    fprintf(stderr, "cannot read %s: %s (run from the repository root)\n", REF_PATH, err.text);
    exit(1);
  }
  return root;
}

/* Float array from a JSON list of bit patterns. */
static float *ref_floats(json_t *arr, size_t *n) {
  *n = json_array_size(arr);
  float *out = malloc(sizeof(float) * (*n ? *n : 1));
  for (size_t i = 0; i < *n; i++) {
    uint32_t b = (uint32_t)json_integer_value(json_array_get(arr, i));
    memcpy(&out[i], &b, 4);
  }
  return out;
}

typedef struct adamw_problem {
  json_t *ref;
  int steps;
  size_t n[NP];
  float *p0[NP];
  float **grads; /* [steps * NP] */
  ftq_optim_settings s;
} adamw_problem;

static void problem_load(adamw_problem *pb, json_t *root) {
  json_t *a = json_object_get(root, "adamw");
  pb->ref = a;
  pb->steps = (int)json_integer_value(json_object_get(a, "steps"));
  for (int i = 0; i < NP; i++) pb->p0[i] = ref_floats(json_array_get(json_object_get(a, "params0"), i), &pb->n[i]);
  pb->grads = calloc((size_t)pb->steps * NP, sizeof(float *));
  for (int k = 0; k < pb->steps; k++)
    for (int i = 0; i < NP; i++) {
      size_t n;
      pb->grads[k * NP + i] = ref_floats(json_array_get(json_array_get(json_object_get(a, "grads"), k), i), &n);
    }
  memset(&pb->s, 0, sizeof pb->s);
  pb->s.learning_rate = json_real_value(json_object_get(a, "lr"));
  pb->s.weight_decay = json_real_value(json_object_get(a, "weight_decay"));
  pb->s.max_grad_norm = json_real_value(json_object_get(a, "max_grad_norm"));
  pb->s.beta1 = json_real_value(json_object_get(a, "beta1"));
  pb->s.beta2 = json_real_value(json_object_get(a, "beta2"));
  pb->s.eps = json_real_value(json_object_get(a, "eps"));
  pb->s.schedule = FTQ_LR_COSINE;
  pb->s.warmup_steps = json_integer_value(json_object_get(a, "warmup_steps"));
  pb->s.total_steps = pb->steps;
}

static void problem_free(adamw_problem *pb) {
  for (int i = 0; i < NP; i++) free(pb->p0[i]);
  for (int k = 0; k < pb->steps * NP; k++) free(pb->grads[k]);
  free(pb->grads);
}

/* Device buffers for the parameters and gradients of the problem. */
typedef struct adamw_run {
  ftq_context *ctx;
  ftq_buffer p[NP], g[NP];
  ftq_optim_param params[NP];
  ftq_optim *opt;
} adamw_run;

static void run_start(adamw_run *r, ftq_context *ctx, adamw_problem *pb, ftq_adamw_mode mode, int paged) {
  static const char *names[NP] = {"p0", "p1", "p2"};
  memset(r, 0, sizeof *r);
  r->ctx = ctx;
  for (int i = 0; i < NP; i++) {
    REQUIRE_OK(ftq_buffer_alloc(ctx, FTQ_MEM_ADAPTER, pb->n[i] * 4, names[i], &r->p[i]));
    REQUIRE_OK(ftq_buffer_alloc(ctx, FTQ_MEM_GRADIENTS, pb->n[i] * 4, names[i], &r->g[i]));
    REQUIRE_OK(ctx->be->copy(ctx->be_ctx, r->p[i].ptr, pb->p0[i], pb->n[i] * 4, FTQ_COPY_H2D));
    r->params[i] = (ftq_optim_param){names[i], r->p[i].ptr, r->g[i].ptr, pb->n[i], 1};
  }
  ftq_optim_settings s = pb->s;
  s.mode = mode;
  s.paged = paged;
  REQUIRE_OK(ftq_optim_create(ctx, &s, r->params, NP, &r->opt));
}

/* Runs steps [k0, k1) of the problem. */
static void run_steps(adamw_run *r, adamw_problem *pb, int k0, int k1, double *norms) {
  for (int k = k0; k < k1; k++) {
    for (int i = 0; i < NP; i++)
      REQUIRE_OK(r->ctx->be->copy(r->ctx->be_ctx, r->g[i].ptr, pb->grads[k * NP + i], pb->n[i] * 4, FTQ_COPY_H2D));
    ftq_optim_step_info info;
    REQUIRE_OK(ftq_optim_step(r->opt, &info));
    if (norms) norms[k] = info.grad_norm;
  }
}

static void run_params(adamw_run *r, adamw_problem *pb, float *out[NP]) {
  for (int i = 0; i < NP; i++) {
    out[i] = malloc(pb->n[i] * 4);
    REQUIRE_OK(r->ctx->be->copy(r->ctx->be_ctx, out[i], r->p[i].ptr, pb->n[i] * 4, FTQ_COPY_D2H));
  }
}

static void run_end(adamw_run *r) {
  ftq_optim_destroy(r->opt);
  for (int i = 0; i < NP; i++) ftq_buffer_free(r->ctx, &r->p[i]), ftq_buffer_free(r->ctx, &r->g[i]);
}

#endif /* FTQ_TEST_OPTIM_REF_H */
