/* The public optimizer: the internal AdamW (src/optim) over every tensor of
 * an adapter, in PEFT's parameter order. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "train/trainer.h"

void ftq_optimizer_destroy(ftq_optimizer *o) {
  if (!o) return;
  ftq_optim_destroy(o->opt);
  free(o->params);
  free(o->names);
  free(o);
}

ftq_status ftq_optimizer_create(ftq_lora *lora, const ftq_options *opts, int64_t total_steps, ftq_optimizer **out) {
  FTQ_CHECK_ARG(out, "ftq_optimizer_create: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(lora, "ftq_optimizer_create: lora must not be NULL");
  FTQ_CHECK_ARG(total_steps >= 1, "ftq_optimizer_create: total_steps = %lld must be >= 1", (long long)total_steps);
  ftq_optim_settings s;
  FTQ_TRY(ftq_optim_settings_from_options(opts, total_steps, &s));
  ftq_optimizer *o = ftq_calloc(1, sizeof *o, "optimizer");
  if (!o) return FTQ_ERR_OUT_OF_MEMORY;
  o->lora = lora;
  size_t n = lora->n_tensors;
  o->params = ftq_calloc(n, sizeof *o->params, "optimizer parameters");
  o->names = ftq_calloc(n, sizeof *o->names, "optimizer parameter names");
  if (!o->params || !o->names) {
    ftq_optimizer_destroy(o);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  /* PEFT's order: layer by layer, q k v o gate up down, A before B */
  size_t k = 0;
  int64_t layers = lora->model->cfg.num_hidden_layers;
  for (int64_t l = 0; l < layers; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      const ftq_lora_module *m = ftq_lora_module_at(lora, l, p);
      if (!m) continue;
      const ftq_tensor *w[2] = {&m->a, &m->b}, *g[2] = {&m->grad_a, &m->grad_b};
      for (int ab = 0; ab < 2 && k < n; ab++, k++) {
        ftq_status st = ftq_lora_tensor_info(lora, k, o->names[k], sizeof o->names[k], NULL);
        if (st != FTQ_OK) {
          ftq_optimizer_destroy(o);
          return st;
        }
        o->params[k] = (ftq_optim_param){o->names[k], (float *)w[ab]->data, (float *)g[ab]->data,
                                         (size_t)ftq_tensor_numel(w[ab]), 1};
      }
    }
  if (k != n) {
    ftq_optimizer_destroy(o);
    return ftq_error(FTQ_ERR_INTERNAL, "optimizer: adapter lists %zu tensors but %zu were found", n, k);
  }
  ftq_status st = ftq_optim_create(lora->model->ctx, &s, o->params, n, &o->opt);
  if (st != FTQ_OK) {
    ftq_optimizer_destroy(o);
    return st;
  }
  *out = o;
  return FTQ_OK;
}

ftq_status ftq_optimizer_step(ftq_optimizer *o, double *grad_norm, double *learning_rate, int *skipped) {
  FTQ_CHECK_ARG(o, "ftq_optimizer_step: opt must not be NULL");
  ftq_optim_step_info info;
  FTQ_TRY(ftq_optim_step(o->opt, &info));
  if (grad_norm) *grad_norm = info.grad_norm;
  if (learning_rate) *learning_rate = info.lr;
  if (skipped) *skipped = info.skipped;
  return FTQ_OK;
}

int64_t ftq_optimizer_steps_done(const ftq_optimizer *o) { return o ? ftq_optim_steps_done(o->opt) : -1; }

double ftq_optimizer_learning_rate(const ftq_optimizer *o) { return o ? ftq_optim_next_lr(o->opt) : 0.0; }

ftq_status ftq_optimizer_rebuild(ftq_optimizer *o, const ftq_options *opts, int64_t total_steps, const int *owner,
                                 int rank) {
  ftq_optim_settings s;
  FTQ_TRY(ftq_optim_settings_from_options(opts, total_steps, &s));
  for (size_t i = 0; i < o->lora->n_tensors; i++) o->params[i].remote = owner && owner[i] != rank;
  ftq_optim *fresh = NULL;
  FTQ_TRY(ftq_optim_create(o->lora->model->ctx, &s, o->params, o->lora->n_tensors, &fresh));
  ftq_optim_destroy(o->opt);
  o->opt = fresh;
  return FTQ_OK;
}
