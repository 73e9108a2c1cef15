/* AdamW with clipping and schedule over device parameter tensors. */
#include "optim/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"

static const ftq_option_def optim_option_defs[] = {
    {"optim", "optim", FTQ_OPTION_STRING, "adamw_torch", 0, 0,
     "adamw_torch|adamw_torch_fused|adamw_32bit|paged_adamw_32bit", 0,
     "optimizer as transformers names it: torch AdamW (decay first) or bitsandbytes 32-bit AdamW (decay after; "
     "paged keeps states in pinned host memory)"},
    {"learning_rate", "optim", FTQ_OPTION_FLOAT, "5e-05", 0, 10, NULL, 0, "peak learning rate"},
    {"adam_beta1", "optim", FTQ_OPTION_FLOAT, "0.9", 0, 0.999999, NULL, 0, "AdamW beta1"},
    {"adam_beta2", "optim", FTQ_OPTION_FLOAT, "0.999", 0, 0.999999999, NULL, 0, "AdamW beta2"},
    {"adam_epsilon", "optim", FTQ_OPTION_FLOAT, "1e-08", 1e-30, 1, NULL, 0, "AdamW epsilon"},
    {"weight_decay", "optim", FTQ_OPTION_FLOAT, "0", 0, 10, NULL, 0, "decoupled weight decay (all LoRA weights)"},
    {"max_grad_norm", "optim", FTQ_OPTION_FLOAT, "1", 0, 1e9, NULL, 0,
     "clip the global L2 norm of the gradients to this; 0 disables clipping"},
    {"lr_scheduler_type", "optim", FTQ_OPTION_STRING, "linear", 0, 0, "linear|cosine|constant|constant_with_warmup", 0,
     "learning-rate schedule (transformers' formulas)"},
    {"warmup_ratio", "optim", FTQ_OPTION_FLOAT, "0", 0, 1, NULL, 0,
     "warm-up steps as a fraction of the total (ceil), used when warmup_steps is 0"},
    {"warmup_steps", "optim", FTQ_OPTION_INT, "0", 0, 1e12, NULL, 0, "warm-up steps; overrides warmup_ratio when > 0"},
};
FTQ_OPTION_TABLE(optim, optim_option_defs);

struct ftq_optim {
  ftq_context *ctx;
  ftq_optim_settings s;
  size_t count;
  ftq_optim_param *params;
  float **m, **v;      /* per parameter, device or pinned host */
  ftq_buffer *state;   /* device buffers (not paged), one per parameter */
  void **host_state;   /* pinned host blocks (paged), one per parameter */
  int64_t step;        /* updates done */
};

ftq_status ftq_optim_settings_from_options(const ftq_options *o, int64_t total, ftq_optim_settings *s) {
  memset(s, 0, sizeof *s);
  const char *name, *sched;
  int64_t warmup;
  double ratio;
  FTQ_TRY(ftq_options_get_string(o, "optim", &name));
  FTQ_TRY(ftq_options_get_float(o, "learning_rate", &s->learning_rate));
  FTQ_TRY(ftq_options_get_float(o, "adam_beta1", &s->beta1));
  FTQ_TRY(ftq_options_get_float(o, "adam_beta2", &s->beta2));
  FTQ_TRY(ftq_options_get_float(o, "adam_epsilon", &s->eps));
  FTQ_TRY(ftq_options_get_float(o, "weight_decay", &s->weight_decay));
  FTQ_TRY(ftq_options_get_float(o, "max_grad_norm", &s->max_grad_norm));
  FTQ_TRY(ftq_options_get_string(o, "lr_scheduler_type", &sched));
  FTQ_TRY(ftq_options_get_float(o, "warmup_ratio", &ratio));
  FTQ_TRY(ftq_options_get_int(o, "warmup_steps", &warmup));
  s->mode = strstr(name, "32bit") ? FTQ_ADAMW_BNB : FTQ_ADAMW_TORCH;
  s->paged = strncmp(name, "paged_", 6) == 0;
  s->schedule = (ftq_lr_schedule)ftq_lr_schedule_parse(sched);
  if (total < 1) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "optimizer: total steps %lld must be >= 1", (long long)total);
  s->total_steps = total;
  s->warmup_steps = ftq_warmup_steps(total, warmup, ratio);
  return FTQ_OK;
}

void ftq_optim_destroy(ftq_optim *o) {
  if (!o) return;
  for (size_t i = 0; i < o->count; i++) {
    if (o->state) ftq_buffer_free(o->ctx, &o->state[i]);
    if (o->host_state && o->host_state[i]) o->ctx->be->host_free(o->ctx->be_ctx, o->host_state[i]);
  }
  free(o->state);
  free(o->host_state);
  free(o->m);
  free(o->v);
  free(o->params);
  free(o);
}

ftq_status ftq_optim_create(ftq_context *ctx, const ftq_optim_settings *s, const ftq_optim_param *params,
                            size_t count, ftq_optim **out) {
  *out = NULL;
  if (!(s->beta1 >= 0 && s->beta1 < 1 && s->beta2 >= 0 && s->beta2 < 1 && s->eps > 0 && s->learning_rate >= 0))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "optimizer: invalid hyper-parameters (beta1 %g, beta2 %g, eps %g, lr %g)",
                     s->beta1, s->beta2, s->eps, s->learning_rate);
  ftq_optim *o = ftq_calloc(1, sizeof *o, "optimizer");
  if (!o) return FTQ_ERR_OUT_OF_MEMORY;
  o->ctx = ctx;
  o->s = *s;
  o->count = count;
  o->params = ftq_calloc(count, sizeof *o->params, "optimizer parameters");
  o->m = ftq_calloc(count, sizeof *o->m, "optimizer states");
  o->v = ftq_calloc(count, sizeof *o->v, "optimizer states");
  o->state = ftq_calloc(count, sizeof *o->state, "optimizer states");
  o->host_state = ftq_calloc(count, sizeof *o->host_state, "optimizer states");
  if (!o->params || !o->m || !o->v || !o->state || !o->host_state) {
    ftq_optim_destroy(o);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  if (count) memcpy(o->params, params, count * sizeof *params);
  ftq_status st = FTQ_OK;
  for (size_t i = 0; i < count && st == FTQ_OK; i++) {
    if (params[i].remote) continue; /* another rank keeps these states */
    size_t bytes = 2 * params[i].n * sizeof(float);
    void *base = NULL;
    if (s->paged) {
      st = ctx->be->host_alloc(ctx->be_ctx, bytes, &o->host_state[i]);
      if (st == FTQ_OK) {
        base = o->host_state[i];
        memset(base, 0, bytes);
      }
    } else {
      st = ftq_buffer_alloc(ctx, FTQ_MEM_OPTIMIZER, bytes, params[i].name, &o->state[i]);
      if (st == FTQ_OK) {
        base = o->state[i].ptr;
        st = ctx->be->fill(ctx->be_ctx, base, FTQ_DTYPE_F32, 2 * params[i].n, 0.0f);
      }
    }
    if (st == FTQ_OK) {
      o->m[i] = base;
      o->v[i] = (float *)base + params[i].n;
    }
  }
  if (st != FTQ_OK) {
    ftq_optim_destroy(o);
    return ftq_error_context(st, "creating the optimizer states");
  }
  *out = o;
  return FTQ_OK;
}

int64_t ftq_optim_steps_done(const ftq_optim *o) { return o->step; }

static double lr_at(const ftq_optim *o, int64_t step) {
  return o->s.learning_rate * ftq_lr_lambda(o->s.schedule, step, o->s.warmup_steps, o->s.total_steps);
}

double ftq_optim_next_lr(const ftq_optim *o) { return lr_at(o, o->step); }

ftq_status ftq_optim_step(ftq_optim *o, ftq_optim_step_info *info) {
  ftq_context *ctx = o->ctx;
  memset(info, 0, sizeof *info);
  /* global norm: per-tensor sums of squares, accumulated in double */
  double sumsq = 0.0;
  for (size_t i = 0; i < o->count; i++) {
    double s;
    FTQ_TRY(ctx->be->reduce(ctx->be_ctx, FTQ_REDUCE_SUMSQ, o->params[i].grad, FTQ_DTYPE_F32, o->params[i].n, &s));
    sumsq += s;
  }
  double norm = sqrt(sumsq);
  info->grad_norm = norm;
  info->lr = lr_at(o, o->step);
  if (!isfinite(norm)) {
    info->skipped = 1;
    FTQ_LOGW(ctx, "optimizer step %lld skipped: gradient norm is %g", (long long)(o->step + 1), norm);
    return FTQ_OK;
  }
  float scale = 1.0f;
  if (o->s.max_grad_norm > 0) {
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), in fp32, clamped to 1 */
    float coef = (float)o->s.max_grad_norm / ((float)norm + 1e-6f);
    scale = coef < 1.0f ? coef : 1.0f;
  }
  int64_t t = o->step + 1;
  double lr = info->lr;
  ftq_adamw_args a;
  memset(&a, 0, sizeof a);
  a.mode = o->s.mode;
  a.grad_scale = scale;
  a.beta1 = (float)o->s.beta1;
  a.beta2 = (float)o->s.beta2;
  a.one_minus_beta1 = (float)(1.0 - o->s.beta1);
  a.one_minus_beta2 = (float)(1.0 - o->s.beta2);
  if (o->s.mode == FTQ_ADAMW_BNB) {
    /* bitsandbytes passes fp32 scalars and computes the corrections in
     * fp32 with powf; libm/CUDA powf may be off by an ulp, so the power is
     * taken correctly rounded (double, then float) for a defined result */
    float lrf = (float)lr, b1 = a.beta1, b2 = a.beta2;
    float c1 = 1.0f - (float)pow((double)b1, (double)t);
    float c2 = sqrtf(1.0f - (float)pow((double)b2, (double)t));
    a.step_size = -lrf * c2 / c1;
    a.eps = (float)o->s.eps * c2;
    a.decay_factor = o->s.weight_decay > 0 ? 1.0f - lrf * (float)o->s.weight_decay : 1.0f;
    a.one_minus_beta1 = 1.0f - b1;
    a.one_minus_beta2 = 1.0f - b2;
  } else {
    /* torch: Python doubles, cast to fp32 where they meet the tensors */
    double bc1 = 1.0 - pow(o->s.beta1, (double)t);
    double bc2 = 1.0 - pow(o->s.beta2, (double)t);
    a.step_size = (float)(-(lr / bc1));
    a.bc2_sqrt = (float)sqrt(bc2);
    a.eps = (float)o->s.eps;
    a.decay_factor = (float)(1.0 - lr * o->s.weight_decay);
  }
  for (size_t i = 0; i < o->count; i++) {
    if (o->params[i].remote) continue;
    ftq_adamw_args ai = a;
    ai.param = o->params[i].param;
    ai.grad = o->params[i].grad;
    ai.m = o->m[i];
    ai.v = o->v[i];
    ai.n = o->params[i].n;
    if (!o->params[i].decay) ai.decay_factor = 1.0f;
    if (!ctx->be->adamw)
      return ftq_error(FTQ_ERR_UNSUPPORTED, "the %s backend has no AdamW operation", ctx->be->name);
    FTQ_TRY(ctx->be->adamw(ctx->be_ctx, &ai));
  }
  if (o->s.paged) FTQ_TRY(ctx->be->synchronize(ctx->be_ctx)); /* host states are read by the device */
  o->step = t;
  return FTQ_OK;
}

/* Layout: int64 step, then for each parameter m[n], v[n] (fp32). */
size_t ftq_optim_state_bytes(const ftq_optim *o) {
  size_t b = sizeof(int64_t);
  for (size_t i = 0; i < o->count; i++)
    if (!o->params[i].remote) b += 2 * o->params[i].n * sizeof(float);
  return b;
}

static ftq_status copy_states(ftq_optim *o, unsigned char *host, int to_host) {
  ftq_context *ctx = o->ctx;
  size_t off = sizeof(int64_t);
  for (size_t i = 0; i < o->count; i++) {
    if (o->params[i].remote) continue;
    size_t bytes = 2 * o->params[i].n * sizeof(float);
    if (o->s.paged) {
      if (to_host) memcpy(host + off, o->m[i], bytes);
      else memcpy(o->m[i], host + off, bytes);
    } else {
      FTQ_TRY(ctx->be->copy(ctx->be_ctx, to_host ? (void *)(host + off) : (void *)o->m[i],
                            to_host ? (const void *)o->m[i] : (const void *)(host + off), bytes,
                            to_host ? FTQ_COPY_D2H : FTQ_COPY_H2D));
    }
    off += bytes;
  }
  return FTQ_OK;
}

ftq_status ftq_optim_state_save(const ftq_optim *o, void *host, size_t bytes) {
  if (bytes != ftq_optim_state_bytes(o))
    return ftq_error(FTQ_ERR_SHAPE, "optimizer state: %zu bytes given, %zu needed", bytes, ftq_optim_state_bytes(o));
  if (o->s.paged) FTQ_TRY(o->ctx->be->synchronize(o->ctx->be_ctx));
  memcpy(host, &o->step, sizeof o->step);
  return copy_states((ftq_optim *)o, host, 1);
}

ftq_status ftq_optim_state_load(ftq_optim *o, const void *host, size_t bytes) {
  if (bytes != ftq_optim_state_bytes(o))
    return ftq_error(FTQ_ERR_SHAPE, "optimizer state: %zu bytes given, %zu expected for this adapter", bytes,
                     ftq_optim_state_bytes(o));
  int64_t step;
  memcpy(&step, host, sizeof step);
  if (step < 0) return ftq_error(FTQ_ERR_FORMAT, "optimizer state: negative step count %lld", (long long)step);
  if (o->s.paged) FTQ_TRY(o->ctx->be->synchronize(o->ctx->be_ctx));
  FTQ_TRY(copy_states(o, (unsigned char *)host, 0));
  o->step = step;
  return FTQ_OK;
}
