/* Quantization-aware LoRA training: the fake-quantized merged weight and
 * the linear operation on it (see qat.h for the definitions). */
#include "model/qat.h"

#include <string.h>

#include "core/context.h"
#include "core/error.h"
#include "core/options.h"
#include "lora/lora.h"
#include "model/merge.h"

static const ftq_option_def qat_option_defs[] = {
    {"qat", "lora", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "quantization-aware LoRA: adapted projections run fake_quant(dequant(W) + scaling B A) with the base weight's "
     "quantization (bnb_4bit_* / load_in_8bit settings for an unquantized base), straight-through gradients to A and "
     "B, no LoRA dropout"},
};
FTQ_OPTION_TABLE(qat, qat_option_defs);

ftq_status ftq_qat_read_options(struct ftq_lora *l, const ftq_options *opts) {
  FTQ_TRY(ftq_options_get_bool(opts, "qat", &l->qat));
  memset(&l->qat_cfg, 0, sizeof l->qat_cfg);
  if (!l->qat) return FTQ_OK;
  FTQ_TRY(ftq_qconfig_from_options(opts, &l->qat_cfg));
  return ftq_qat_check_device(l->model->ctx);
}

ftq_status ftq_qat_check_device(const ftq_context *ctx) {
  if (ctx->type == FTQ_DEVICE_CPU) return FTQ_OK;
  return ftq_error(FTQ_ERR_UNSUPPORTED,
                   "option 'qat': quantization-aware LoRA is enabled on the CPU backend only so far, not on %s",
                   ctx->device_name);
}

void ftq_qat_config(const struct ftq_lora *l, const ftq_qtensor *w, ftq_qconfig *cfg) {
  if (w->scheme == FTQ_QSCHEME_NONE) {
    *cfg = l->qat_cfg;
    return;
  }
  memset(cfg, 0, sizeof *cfg);
  cfg->scheme = w->scheme;
  cfg->blocksize = w->blocksize;
  cfg->nested = w->nested;
  cfg->granularity = w->granularity;
  cfg->group_size = w->group_size;
}

ftq_status ftq_qat_weight(const struct ftq_lora *l, int64_t layer, int proj, float *wbuf) {
  const struct ftq_model *m = l->model;
  const ftq_qtensor *w = &m->layers[layer].proj[proj];
  FTQ_TRY(ftq_merge_weight(m->ctx, w, ftq_lora_module_at(l, layer, proj), l->r, l->scaling, wbuf));
  ftq_qconfig cfg;
  ftq_qat_config(l, w, &cfg);
  ftq_qtensor q;
  FTQ_TRY(ftq_qtensor_quantize(m->ctx, &cfg, wbuf, FTQ_DTYPE_F32, 2, w->shape, FTQ_MEM_WORKSPACE, "QAT weight", &q));
  ftq_status st = ftq_qtensor_dequantize(&q, FTQ_DTYPE_F32, wbuf);
  ftq_qtensor_release(&q);
  return st;
}

/* The two halves of a QAT linear operation, forward or backward: the base
 * part on fake_quant(W') as an f32 NONE-scheme weight with no LoRA (when
 * `base` is set: y, or dx), then the LoRA part alone without dropout and
 * without the base product (y / dx NULL: t = x A^T, or the gradients). */
static ftq_status run(const struct ftq_lora *l, int64_t layer, int proj, const ftq_linear_args *a, float *wbuf,
                      int backward) {
  ftq_context *ctx = l->model->ctx;
  FTQ_TRY(ftq_qat_check_device(ctx));
  ftq_status (*op)(void *, const ftq_linear_args *) = backward ? ctx->be->linear_backward : ctx->be->linear;
  if (backward ? a->dx != NULL : a->y != NULL) {
    FTQ_TRY(ftq_qat_weight(l, layer, proj, wbuf));
    ftq_qtensor v;
    memset(&v, 0, sizeof v);
    v.ctx = ctx;
    v.scheme = FTQ_QSCHEME_NONE;
    v.ndim = 2;
    v.shape[0] = a->w->shape[0];
    v.shape[1] = a->w->shape[1];
    v.orig_dtype = FTQ_DTYPE_F32;
    v.plain = ftq_tensor_view(wbuf, FTQ_DTYPE_F32, 2, v.shape);
    ftq_linear_args b = *a;
    b.w = &v;
    b.r = 0;
    b.grad_a = b.grad_b = NULL;
    FTQ_TRY(op(ctx->be_ctx, &b));
  }
  ftq_linear_args c = *a;
  c.y = NULL;
  c.dx = NULL;
  c.dropout = 0.0f;
  c.mask = NULL;
  return op(ctx->be_ctx, &c);
}

/* Forward: y = x fake_quant(W')^T + bias, and t = x A^T for the backward. */
ftq_status ftq_qat_linear_forward(const struct ftq_lora *l, int64_t layer, int proj, const ftq_linear_args *a,
                                  float *wbuf) {
  return run(l, layer, proj, a, wbuf, 0);
}

/* Backward: dx (+)= dy fake_quant(W'); dB += scaling dy^T t and
 * dA += scaling (dy B)^T x, fake_quant passed straight through. */
ftq_status ftq_qat_linear_backward(const struct ftq_lora *l, int64_t layer, int proj, const ftq_linear_args *a,
                                   float *wbuf) {
  return run(l, layer, proj, a, wbuf, 1);
}
