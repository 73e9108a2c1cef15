/* Optimizer: schedules against transformers' own multipliers; AdamW against
 * torch.optim.AdamW + clip_grad_norm_ (torch mode) and against the
 * bitsandbytes 32-bit kernel's arithmetic (bnb mode, paged and not) for 10
 * steps with cosine warm-up, decay and clipping; NaN guard; resume. */
#include "optim_ref.h"

static void test_schedules(json_t *root) {
  json_t *list = json_object_get(root, "schedules");
  for (size_t e = 0; e < json_array_size(list); e++) {
    json_t *it = json_array_get(list, e);
    int type = ftq_lr_schedule_parse(json_string_value(json_object_get(it, "type")));
    CHECK(type >= 0);
    int64_t total = json_integer_value(json_object_get(it, "total"));
    int64_t warm = json_integer_value(json_object_get(it, "warmup"));
    json_t *lam = json_object_get(it, "lambda");
    int bad = 0;
    for (size_t s = 0; s < json_array_size(lam); s++) {
      double want = json_number_value(json_array_get(lam, s));
      double got = ftq_lr_lambda((ftq_lr_schedule)type, (int64_t)s, warm, total);
      if (fabs(got - want) > 1e-15 * fmax(1.0, fabs(want))) bad++;
    }
    CHECK_MSG(bad == 0, "schedule %s total %lld warmup %lld: %d of %zu multipliers differ",
              json_string_value(json_object_get(it, "type")), (long long)total, (long long)warm, bad,
              json_array_size(lam));
  }
  CHECK(ftq_lr_schedule_parse("polynomial") == -1);
  json_t *ratios = json_object_get(root, "warmup_ratios");
  for (size_t e = 0; e < json_array_size(ratios); e++) {
    json_t *it = json_array_get(ratios, e);
    CHECK(ftq_warmup_steps(json_integer_value(json_object_get(it, "total")), 0,
                           json_number_value(json_object_get(it, "ratio"))) ==
          json_integer_value(json_object_get(it, "warmup")));
  }
  CHECK(ftq_warmup_steps(250, 5, 0.5) == 5); /* explicit steps win */
}

/* Compares run parameters with a reference trajectory entry; returns the
 * worst relative error and counts differing bits. */
static double compare(adamw_problem *pb, float *got[NP], json_t *want_step, int *ndiff) {
  double worst = 0;
  *ndiff = 0;
  for (int i = 0; i < NP; i++) {
    size_t n;
    float *want = ref_floats(json_array_get(want_step, i), &n);
    for (size_t j = 0; j < n; j++) {
      double e = fabs((double)got[i][j] - want[j]) / fmax(1e-3, fabs(want[j]));
      if (e > worst || isnan(got[i][j])) worst = isnan(got[i][j]) ? INFINITY : e;
      if (memcmp(&got[i][j], &want[j], 4) != 0) (*ndiff)++;
    }
    free(want);
  }
  return worst;
}

static void test_adamw(ftq_context *ctx, adamw_problem *pb) {
  /* torch mode, step by step */
  adamw_run r;
  run_start(&r, ctx, pb, FTQ_ADAMW_TORCH, 0);
  double norms[64];
  json_t *traj = json_object_get(pb->ref, "torch");
  double worst_all = 0;
  for (int k = 0; k < pb->steps; k++) {
    run_steps(&r, pb, k, k + 1, norms);
    float *got[NP];
    run_params(&r, pb, got);
    int nd;
    double w = compare(pb, got, json_array_get(traj, k), &nd);
    if (w > worst_all) worst_all = w;
    double tn = json_number_value(json_array_get(json_object_get(pb->ref, "torch_grad_norms"), k));
    CHECK_MSG(fabs(norms[k] - tn) <= 1e-6 * tn, "step %d grad norm %.9g vs torch %.9g", k + 1, norms[k], tn);
    for (int i = 0; i < NP; i++) free(got[i]);
  }
  printf("torch AdamW: worst relative parameter error over %d steps: %.3g\n", pb->steps, worst_all);
  /* torch reduces the clipping norm in fp32 and vectorises lerp/addcmul with
   * FMAs: a few ulps per step, far below the 1e-5 the issue asks for */
  CHECK_MSG(worst_all < 1e-5, "torch AdamW trajectory differs: %.3g", worst_all);
  CHECK(ftq_optim_steps_done(r.opt) == pb->steps);
  run_end(&r);

  /* bnb mode, not paged and paged: the same bits as the kernel arithmetic */
  for (int paged = 0; paged < 2; paged++) {
    run_start(&r, ctx, pb, FTQ_ADAMW_BNB, paged);
    run_steps(&r, pb, 0, pb->steps, NULL);
    float *got[NP];
    run_params(&r, pb, got);
    int nd;
    double w = compare(pb, got, json_array_get(json_object_get(pb->ref, "bnb"), pb->steps - 1), &nd);
    printf("bnb AdamW%s: %d values differ in bits, worst relative error %.3g\n", paged ? " (paged)" : "", nd, w);
    CHECK_MSG(nd == 0, "bnb AdamW%s differs from the kernel arithmetic in %d values", paged ? " (paged)" : "", nd);
    for (int i = 0; i < NP; i++) free(got[i]);
    run_end(&r);
  }
}

static void test_nonfinite_and_resume(ftq_context *ctx, adamw_problem *pb) {
  adamw_run r;
  run_start(&r, ctx, pb, FTQ_ADAMW_BNB, 0);
  run_steps(&r, pb, 0, 2, NULL);
  float *before[NP];
  run_params(&r, pb, before);
  /* a NaN gradient: skipped, nothing changes, the step does not count */
  float *bad = malloc(pb->n[1] * 4);
  memcpy(bad, pb->grads[2 * NP + 1], pb->n[1] * 4);
  bad[3] = NAN;
  for (int i = 0; i < NP; i++)
    REQUIRE_OK(ctx->be->copy(ctx->be_ctx, r.g[i].ptr, i == 1 ? bad : pb->grads[2 * NP + i], pb->n[i] * 4, FTQ_COPY_H2D));
  ftq_optim_step_info info;
  CHECK_OK(ftq_optim_step(r.opt, &info));
  CHECK(info.skipped == 1 && isnan(info.grad_norm));
  CHECK(ftq_optim_steps_done(r.opt) == 2);
  float *after[NP];
  run_params(&r, pb, after);
  for (int i = 0; i < NP; i++) {
    CHECK(memcmp(before[i], after[i], pb->n[i] * 4) == 0);
    free(after[i]), free(before[i]);
  }
  free(bad);
  /* resume: save after 4 steps, continue in a new optimizer from the saved state */
  run_steps(&r, pb, 2, 4, NULL);
  size_t sb = ftq_optim_state_bytes(r.opt);
  void *state = malloc(sb);
  CHECK_OK(ftq_optim_state_save(r.opt, state, sb));
  CHECK_STATUS(ftq_optim_state_save(r.opt, state, sb - 1), FTQ_ERR_SHAPE);
  float *mid[NP];
  run_params(&r, pb, mid);
  run_steps(&r, pb, 4, pb->steps, NULL);
  float *straight[NP];
  run_params(&r, pb, straight);
  run_end(&r);

  run_start(&r, ctx, pb, FTQ_ADAMW_BNB, 1); /* resume into a paged optimizer: same numbers */
  for (int i = 0; i < NP; i++) REQUIRE_OK(ctx->be->copy(ctx->be_ctx, r.p[i].ptr, mid[i], pb->n[i] * 4, FTQ_COPY_H2D));
  CHECK_OK(ftq_optim_state_load(r.opt, state, sb));
  CHECK(ftq_optim_steps_done(r.opt) == 4);
  run_steps(&r, pb, 4, pb->steps, NULL);
  float *resumed[NP];
  run_params(&r, pb, resumed);
  for (int i = 0; i < NP; i++) {
    CHECK_MSG(memcmp(resumed[i], straight[i], pb->n[i] * 4) == 0, "resumed parameter %d differs", i);
    free(resumed[i]), free(straight[i]), free(mid[i]);
  }
  CHECK_STATUS(ftq_optim_state_load(r.opt, state, sb + 4), FTQ_ERR_SHAPE);
  int64_t neg = -1;
  memcpy(state, &neg, sizeof neg);
  CHECK_STATUS(ftq_optim_state_load(r.opt, state, sb), FTQ_ERR_FORMAT);
  free(state);
  run_end(&r);
}

static void test_options(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  ftq_optim_settings s;
  CHECK_OK(ftq_optim_settings_from_options(o, 100, &s));
  CHECK(s.mode == FTQ_ADAMW_TORCH && !s.paged && s.learning_rate == 5e-5 && s.schedule == FTQ_LR_LINEAR);
  CHECK(s.max_grad_norm == 1.0 && s.weight_decay == 0.0 && s.warmup_steps == 0);
  CHECK_OK(ftq_options_load_json(o, "{\"optim\": \"paged_adamw_32bit\", \"learning_rate\": 2e-4, "
                                    "\"lr_scheduler_type\": \"cosine\", \"warmup_ratio\": 0.03, "
                                    "\"weight_decay\": 0.001, \"max_grad_norm\": 0.3}"));
  CHECK_OK(ftq_optim_settings_from_options(o, 250, &s));
  CHECK(s.mode == FTQ_ADAMW_BNB && s.paged && s.schedule == FTQ_LR_COSINE && s.warmup_steps == 8);
  CHECK(s.learning_rate == 2e-4 && s.weight_decay == 0.001 && s.max_grad_norm == 0.3);
  CHECK_OK(ftq_options_set_string(o, "optim", "adamw_32bit"));
  CHECK_OK(ftq_optim_settings_from_options(o, 250, &s));
  CHECK(s.mode == FTQ_ADAMW_BNB && !s.paged);
  CHECK_STATUS(ftq_options_set_string(o, "optim", "sgd"), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_float(o, "learning_rate", -1), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_string(o, "lr_scheduler_type", "polynomial"), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_optim_settings_from_options(o, 0, &s), FTQ_ERR_INVALID_ARGUMENT);
  ftq_options_destroy(o);
}

int main(void) {
  json_t *root = load_ref();
  test_schedules(root);
  test_options();
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  adamw_problem pb;
  problem_load(&pb, root);
  test_adamw(ctx, &pb);
  test_nonfinite_and_resume(ctx, &pb);
  size_t cur;
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_OPTIMIZER, &cur, NULL));
  CHECK(cur == 0); /* every state freed */
  problem_free(&pb);
  ftq_context_destroy(ctx);
  json_decref(root);
  return test_finish("test_optim");
}
