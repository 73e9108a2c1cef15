/* LoRA adapters: options (PEFT's LoraConfig names), PEFT's initialisations
 * from the Philox generator, activation, and host access to parameters and
 * gradients by PEFT tensor name. */
#include "lora/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "core/rng.h"
#include "model/model_build.h"
#include "model/qat.h"

static const ftq_option_def lora_option_defs[] = {
    {"r", "lora", FTQ_OPTION_INT, "8", 1, 65536, NULL, 0, "LoRA rank: inner dimension of the A and B matrices"},
    {"lora_alpha", "lora", FTQ_OPTION_FLOAT, "8", 0, FTQ_NO_MAX, NULL, 0,
     "LoRA scaling numerator: the update is multiplied by lora_alpha / r"},
    {"lora_dropout", "lora", FTQ_OPTION_FLOAT, "0", 0, 0.999, NULL, 0,
     "dropout probability on the input of the LoRA path (training only)"},
    {"target_modules", "lora", FTQ_OPTION_STRING, "q_proj,v_proj", 0, 0,
     "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|all-linear", FTQ_OPTF_LIST,
     "projections that get an adapter; all-linear = all seven (PEFT's Llama default: q_proj,v_proj)"},
    {"use_rslora", "lora", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "rank-stabilised LoRA: scaling = lora_alpha / sqrt(r) instead of lora_alpha / r"},
    {"init_lora_weights", "lora", FTQ_OPTION_STRING, "true", 0, 0, "true|false|gaussian", 0,
     "initialisation: true = kaiming-uniform A, zero B; gaussian = N(0, 1/r) A, zero B; false = random A and B"},
    {"bias", "lora", FTQ_OPTION_STRING, "none", 0, 0, "none", 0, "which biases train (only \"none\" is supported)"},
};
FTQ_OPTION_TABLE(lora, lora_option_defs);

struct ftq_lora *ftq_model_active_lora(const struct ftq_model *m) { return m ? m->active_lora : NULL; }

/* ---------------------------------------------------------------------- */
/* options                                                                  */

static ftq_status parse_targets(const char *list, unsigned *mask) {
  *mask = 0;
  const char *p = list;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    while (len && *p == ' ') p++, len--;
    while (len && p[len - 1] == ' ') len--;
    if (len) {
      int found = 0;
      if (len == 10 && strncmp(p, "all-linear", 10) == 0) {
        *mask = (1u << FTQ_PROJ_COUNT) - 1u;
        found = 1;
      }
      for (int k = 0; k < FTQ_PROJ_COUNT && !found; k++) {
        const char *nm = ftq_proj_name((ftq_proj)k);
        if (strlen(nm) == len && strncmp(p, nm, len) == 0) {
          *mask |= 1u << k;
          found = 1;
        }
      }
      if (!found)
        return ftq_error(FTQ_ERR_OPTION_RANGE, "option 'target_modules': unknown module '%.*s'", (int)len, p);
    }
    if (!e) break;
    p = e + 1;
  }
  if (!*mask) return ftq_error(FTQ_ERR_OPTION_RANGE, "option 'target_modules': no module given");
  return FTQ_OK;
}

static ftq_status read_options(struct ftq_lora *l, const ftq_options *opts) {
  int64_t r;
  double alpha, dropout;
  const char *targets, *init, *bias;
  FTQ_TRY(ftq_options_get_int(opts, "r", &r));
  FTQ_TRY(ftq_options_get_float(opts, "lora_alpha", &alpha));
  FTQ_TRY(ftq_options_get_float(opts, "lora_dropout", &dropout));
  FTQ_TRY(ftq_options_get_string(opts, "target_modules", &targets));
  FTQ_TRY(ftq_options_get_bool(opts, "use_rslora", &l->use_rslora));
  FTQ_TRY(ftq_options_get_string(opts, "init_lora_weights", &init));
  FTQ_TRY(ftq_options_get_string(opts, "bias", &bias));
  if (strcmp(bias, "none") != 0)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "option 'bias' = \"%s\": only \"none\" is supported", bias);
  FTQ_TRY(parse_targets(targets, &l->targets));
  l->r = r;
  l->lora_alpha = alpha;
  l->lora_dropout = (float)dropout;
  /* PEFT computes the scaling in Python double; the graph uses it in f32 */
  l->scaling = (float)(l->use_rslora ? alpha / sqrt((double)r) : alpha / (double)r);
  snprintf(l->init, sizeof l->init, "%s", init);
  return ftq_qat_read_options(l, opts);
}

/* ---------------------------------------------------------------------- */
/* initialisation                                                           */

static uint64_t init_stream(int64_t layer, int proj, int is_b) {
  return FTQ_RNG_NS_LORA_INIT | ((uint64_t)(layer * 8 + proj) << 1) | (uint64_t)is_b;
}

/* U(-bound, bound) as torch's uniform_: lo + (hi - lo) * u. */
static void fill_uniform(float *x, size_t n, float bound, uint64_t seed, uint64_t stream) {
  for (size_t i = 0; i < n; i++) x[i] = -bound + 2.0f * bound * ftq_rng_uniform(seed, stream, i);
}

/* N(0, std^2) by Box-Muller on two uniforms per value. */
static void fill_normal(float *x, size_t n, double std, uint64_t seed, uint64_t stream) {
  for (size_t i = 0; i < n; i++) {
    double u1 = 1.0 - (double)ftq_rng_uniform(seed, stream, 2 * i); /* (0, 1] */
    double u2 = (double)ftq_rng_uniform(seed, stream, 2 * i + 1);
    x[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
  }
}

static ftq_status init_module(struct ftq_lora *l, int64_t layer, int proj, float *host) {
  ftq_context *ctx = l->model->ctx;
  ftq_lora_module *m = &l->modules[layer * FTQ_PROJ_COUNT + proj];
  const int64_t out = m->b.shape[0], in = m->a.shape[1], r = l->r;
  size_t na = (size_t)(r * in), nb = (size_t)(out * r);
  const float bound_a = (float)(1.0 / sqrt((double)in));
  if (strcmp(l->init, "gaussian") == 0)
    fill_normal(host, na, 1.0 / (double)r, l->seed, init_stream(layer, proj, 0));
  else
    fill_uniform(host, na, bound_a, l->seed, init_stream(layer, proj, 0));
  FTQ_TRY(ftq_tensor_upload(ctx, &m->a, host));
  if (strcmp(l->init, "false") == 0)
    fill_uniform(host, nb, (float)(1.0 / sqrt((double)r)), l->seed, init_stream(layer, proj, 1));
  else
    memset(host, 0, nb * sizeof(float));
  return ftq_tensor_upload(ctx, &m->b, host);
}

static void free_modules(struct ftq_lora *l) {
  if (!l->modules) return;
  ftq_context *ctx = l->model->ctx;
  size_t n = (size_t)l->model->cfg.num_hidden_layers * FTQ_PROJ_COUNT;
  for (size_t i = 0; i < n; i++) {
    ftq_tensor_free(ctx, &l->modules[i].a);
    ftq_tensor_free(ctx, &l->modules[i].b);
    ftq_tensor_free(ctx, &l->modules[i].grad_a);
    ftq_tensor_free(ctx, &l->modules[i].grad_b);
  }
  free(l->modules);
  l->modules = NULL;
}

ftq_status ftq_lora_create(ftq_model *model, const char *adapter_name, const ftq_options *opts, uint64_t seed,
                           ftq_lora **out) {
  FTQ_CHECK_ARG(out, "ftq_lora_create: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(model, "ftq_lora_create: model must not be NULL");
  if (!adapter_name) adapter_name = "default";
  FTQ_CHECK_ARG(*adapter_name && strlen(adapter_name) < 64 && !strchr(adapter_name, '.'),
                "ftq_lora_create: adapter name \"%s\" must be 1-63 characters without '.'", adapter_name);
  struct ftq_lora *l = ftq_calloc(1, sizeof *l, "LoRA adapter");
  if (!l) return FTQ_ERR_OUT_OF_MEMORY;
  l->model = model;
  l->seed = seed;
  snprintf(l->name, sizeof l->name, "%s", adapter_name);
  ftq_status st = read_options(l, opts);
  if (st != FTQ_OK) {
    free(l);
    return ftq_error_context(st, "creating LoRA adapter '%s'", adapter_name);
  }
  const ftq_model_config *c = &model->cfg;
  size_t n = (size_t)c->num_hidden_layers * FTQ_PROJ_COUNT;
  l->modules = ftq_calloc(n, sizeof *l->modules, "LoRA modules");
  float *host = NULL;
  if (!l->modules) {
    st = FTQ_ERR_OUT_OF_MEMORY;
    goto fail;
  }
  int64_t max_elems = 0;
  for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
    int64_t o, i;
    ftq_model_proj_shape(c, (ftq_proj)p, &o, &i);
    if (o * l->r > max_elems) max_elems = o * l->r;
    if (i * l->r > max_elems) max_elems = i * l->r;
  }
  host = ftq_malloc((size_t)max_elems * sizeof(float), "LoRA initial values");
  if (!host) {
    st = FTQ_ERR_OUT_OF_MEMORY;
    goto fail;
  }
  for (int64_t layer = 0; layer < c->num_hidden_layers; layer++) {
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      if (!(l->targets & (1u << p))) continue;
      ftq_lora_module *m = &l->modules[layer * FTQ_PROJ_COUNT + p];
      int64_t o, i;
      ftq_model_proj_shape(c, (ftq_proj)p, &o, &i);
      int64_t sa[2] = {l->r, i}, sb[2] = {o, l->r};
      if ((st = ftq_tensor_alloc(model->ctx, FTQ_MEM_ADAPTER, FTQ_DTYPE_F32, 2, sa, "lora_A", &m->a)) != FTQ_OK ||
          (st = ftq_tensor_alloc(model->ctx, FTQ_MEM_ADAPTER, FTQ_DTYPE_F32, 2, sb, "lora_B", &m->b)) != FTQ_OK ||
          (st = ftq_tensor_alloc(model->ctx, FTQ_MEM_GRADIENTS, FTQ_DTYPE_F32, 2, sa, "lora_A grad", &m->grad_a)) !=
              FTQ_OK ||
          (st = ftq_tensor_alloc(model->ctx, FTQ_MEM_GRADIENTS, FTQ_DTYPE_F32, 2, sb, "lora_B grad", &m->grad_b)) !=
              FTQ_OK ||
          (st = init_module(l, layer, p, host)) != FTQ_OK)
        goto fail;
      l->n_tensors += 2;
    }
  }
  free(host);
  host = NULL;
  if ((st = ftq_lora_zero_grad(l)) != FTQ_OK) goto fail;
  int64_t count = 0;
  ftq_lora_num_parameters(l, &count);
  FTQ_LOGI(model->ctx, "LoRA adapter '%s': r=%lld, lora_alpha=%g (scaling %g), dropout %g, %zu tensors, %lld parameters",
           l->name, (long long)l->r, l->lora_alpha, (double)l->scaling, (double)l->lora_dropout, l->n_tensors,
           (long long)count);
  *out = l;
  return FTQ_OK;
fail:
  free(host);
  free_modules(l);
  free(l);
  return ftq_error_context(st, "creating LoRA adapter '%s'", adapter_name);
}

void ftq_lora_destroy(ftq_lora *l) {
  if (!l) return;
  if (l->model && l->model->active_lora == l) l->model->active_lora = NULL;
  free_modules(l);
  free(l);
}

ftq_status ftq_lora_set_active(ftq_lora *l, int active) {
  FTQ_CHECK_ARG(l, "ftq_lora_set_active: lora must not be NULL");
  if (active) l->model->active_lora = l;
  else if (l->model->active_lora == l) l->model->active_lora = NULL;
  return FTQ_OK;
}

int ftq_lora_is_active(const ftq_lora *l) { return l && l->model->active_lora == l; }

const char *ftq_lora_name(const ftq_lora *l) { return l ? l->name : ""; }

ftq_status ftq_lora_num_parameters(const ftq_lora *l, int64_t *count) {
  FTQ_CHECK_ARG(l && count, "ftq_lora_num_parameters: arguments must not be NULL");
  int64_t n = 0;
  for (int64_t layer = 0; layer < l->model->cfg.num_hidden_layers; layer++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      const ftq_lora_module *m = ftq_lora_module_at(l, layer, p);
      if (m) n += ftq_tensor_numel(&m->a) + ftq_tensor_numel(&m->b);
    }
  *count = n;
  return FTQ_OK;
}

ftq_status ftq_lora_scaling(const ftq_lora *l, double *scaling) {
  FTQ_CHECK_ARG(l && scaling, "ftq_lora_scaling: arguments must not be NULL");
  *scaling = l->scaling;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* tensors by index and PEFT name                                           */

size_t ftq_lora_tensor_count(const ftq_lora *l) { return l ? l->n_tensors : 0; }

/* Tensor `index` -> (module, is_b), in PEFT's parameter order. */
static ftq_status locate(const ftq_lora *l, size_t index, int64_t *layer, int *proj, int *is_b) {
  if (!l) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "LoRA adapter must not be NULL");
  size_t k = 0;
  for (int64_t L = 0; L < l->model->cfg.num_hidden_layers; L++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      if (!(l->targets & (1u << p))) continue;
      if (index == k || index == k + 1) {
        *layer = L;
        *proj = p;
        *is_b = (int)(index - k);
        return FTQ_OK;
      }
      k += 2;
    }
  return ftq_error(FTQ_ERR_NOT_FOUND, "LoRA adapter '%s' has %zu tensors; index %zu is out of range", l->name,
                   l->n_tensors, index);
}

static int format_name(char *buf, size_t len, int64_t layer, int proj, int is_b, const char *adapter) {
  const char *block = proj <= FTQ_PROJ_O ? "self_attn" : "mlp";
  return snprintf(buf, len, "base_model.model.model.layers.%lld.%s.%s.lora_%c%s%s.weight", (long long)layer, block,
                  ftq_proj_name((ftq_proj)proj), is_b ? 'B' : 'A', adapter ? "." : "", adapter ? adapter : "");
}

ftq_status ftq_lora_tensor_info(const ftq_lora *l, size_t index, char *name, size_t name_len, int64_t *shape) {
  int64_t layer;
  int proj, is_b;
  FTQ_TRY(locate(l, index, &layer, &proj, &is_b));
  const ftq_lora_module *m = ftq_lora_module_at(l, layer, proj);
  const ftq_tensor *t = is_b ? &m->b : &m->a;
  if (name) {
    int w = format_name(name, name_len, layer, proj, is_b, NULL);
    if (w < 0 || (size_t)w >= name_len)
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "ftq_lora_tensor_info: name buffer of %zu bytes is too small",
                       name_len);
  }
  if (shape) {
    shape[0] = t->shape[0];
    shape[1] = t->shape[1];
  }
  return FTQ_OK;
}

ftq_status ftq_lora_find_tensor(const ftq_lora *l, const char *name, size_t *index) {
  FTQ_CHECK_ARG(l && name && index, "ftq_lora_find_tensor: arguments must not be NULL");
  char buf[192];
  for (size_t i = 0; i < l->n_tensors; i++) {
    int64_t layer;
    int proj, is_b;
    FTQ_TRY(locate(l, i, &layer, &proj, &is_b));
    format_name(buf, sizeof buf, layer, proj, is_b, NULL);
    int hit = strcmp(buf, name) == 0;
    if (!hit) {
      format_name(buf, sizeof buf, layer, proj, is_b, l->name);
      hit = strcmp(buf, name) == 0;
    }
    if (hit) {
      *index = i;
      return FTQ_OK;
    }
  }
  return ftq_error(FTQ_ERR_NOT_FOUND, "LoRA adapter '%s' has no tensor '%s'", l->name, name);
}

static ftq_status tensor_at(const ftq_lora *l, size_t index, int grad, size_t count, const ftq_tensor **t) {
  int64_t layer;
  int proj, is_b;
  FTQ_TRY(locate(l, index, &layer, &proj, &is_b));
  const ftq_lora_module *m = ftq_lora_module_at(l, layer, proj);
  *t = grad ? (is_b ? &m->grad_b : &m->grad_a) : (is_b ? &m->b : &m->a);
  if ((size_t)ftq_tensor_numel(*t) != count) {
    char nm[192];
    format_name(nm, sizeof nm, layer, proj, is_b, NULL);
    return ftq_error(FTQ_ERR_SHAPE, "LoRA tensor '%s' has %lld elements, %zu given", nm,
                     (long long)ftq_tensor_numel(*t), count);
  }
  return FTQ_OK;
}

ftq_status ftq_lora_get_tensor(const ftq_lora *l, size_t index, float *dst, size_t count) {
  const ftq_tensor *t;
  FTQ_CHECK_ARG(dst, "ftq_lora_get_tensor: dst must not be NULL");
  FTQ_TRY(tensor_at(l, index, 0, count, &t));
  return ftq_tensor_download(l->model->ctx, t, dst);
}

ftq_status ftq_lora_set_tensor(ftq_lora *l, size_t index, const float *src, size_t count) {
  const ftq_tensor *t;
  FTQ_CHECK_ARG(src, "ftq_lora_set_tensor: src must not be NULL");
  FTQ_TRY(tensor_at(l, index, 0, count, &t));
  return ftq_tensor_upload(l->model->ctx, (ftq_tensor *)t, src);
}

ftq_status ftq_lora_get_grad(const ftq_lora *l, size_t index, float *dst, size_t count) {
  const ftq_tensor *t;
  FTQ_CHECK_ARG(dst, "ftq_lora_get_grad: dst must not be NULL");
  FTQ_TRY(tensor_at(l, index, 1, count, &t));
  return ftq_tensor_download(l->model->ctx, t, dst);
}

ftq_status ftq_lora_zero_grad(ftq_lora *l) {
  FTQ_CHECK_ARG(l, "ftq_lora_zero_grad: lora must not be NULL");
  ftq_context *ctx = l->model->ctx;
  for (int64_t layer = 0; layer < l->model->cfg.num_hidden_layers; layer++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      const ftq_lora_module *m = ftq_lora_module_at(l, layer, p);
      if (!m) continue;
      FTQ_TRY(ctx->be->fill(ctx->be_ctx, m->grad_a.data, FTQ_DTYPE_F32, (size_t)ftq_tensor_numel(&m->grad_a), 0.0f));
      FTQ_TRY(ctx->be->fill(ctx->be_ctx, m->grad_b.data, FTQ_DTYPE_F32, (size_t)ftq_tensor_numel(&m->grad_b), 0.0f));
    }
  return FTQ_OK;
}
