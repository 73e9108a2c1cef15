/* Builds libftq models and adapters from the reference files of
 * tests/ref/model (see gen_ref.py): configuration from the file's metadata,
 * weights by Hugging Face name through ftq_model_set_hf_tensor, NF4 weights
 * as bitsandbytes-layout qtensors, LoRA tensors by PEFT name. */
#ifndef FTQ_TEST_REF_MODEL_H
#define FTQ_TEST_REF_MODEL_H

#include "core/context.h"
#include "core/error.h"
#include "libftq/ftq_lora.h"
#include "lora/lora.h"
#include "model/graph.h"
#include "model/model_build.h"
#include "ref_file.h"
#include "cpu_context.h"

static inline void ref_config(const ref_file *r, ftq_model_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
  c->hidden_size = (int64_t)ref_cfg_num(r, "hidden_size");
  c->intermediate_size = (int64_t)ref_cfg_num(r, "intermediate_size");
  c->num_hidden_layers = (int64_t)ref_cfg_num(r, "num_hidden_layers");
  c->num_attention_heads = (int64_t)ref_cfg_num(r, "num_attention_heads");
  c->num_key_value_heads = (int64_t)ref_cfg_num(r, "num_key_value_heads");
  c->vocab_size = (int64_t)ref_cfg_num(r, "vocab_size");
  c->max_position_embeddings = 256;
  c->rms_norm_eps = ref_cfg_num(r, "rms_norm_eps");
  c->rope_theta = ref_cfg_num(r, "rope_theta");
  json_t *rope = json_object_get(r->config, "rope");
  if (rope && json_is_object(rope)) {
    const char *type = json_string_value(json_object_get(rope, "rope_type"));
    c->rope_scaling = strcmp(type, "llama3") == 0 ? FTQ_ROPE_LLAMA3 : FTQ_ROPE_LINEAR;
    c->rope_factor = json_number_value(json_object_get(rope, "factor"));
    c->rope_low_freq_factor = json_number_value(json_object_get(rope, "low_freq_factor"));
    c->rope_high_freq_factor = json_number_value(json_object_get(rope, "high_freq_factor"));
    c->rope_original_max_position =
        (int64_t)json_number_value(json_object_get(rope, "original_max_position_embeddings"));
  }
  c->tie_word_embeddings = json_is_true(json_object_get(r->config, "tie"));
  c->attention_bias = json_is_true(json_object_get(r->config, "bias"));
  c->bos_token_id = 1;
  c->eos_token_ids[0] = (int64_t)ref_cfg_num(r, "eos_token_id");
  c->n_eos_token_ids = 1;
  c->pad_token_id = 0;
  c->torch_dtype = strcmp(json_string_value(json_object_get(r->config, "dtype")), "bf16") == 0 ? FTQ_DTYPE_BF16
                                                                                                 : FTQ_DTYPE_F32;
  ftq_model_config_finish(c);
}

/* An NF4 qtensor in bitsandbytes layout from packed codes and f32 absmax. */
static inline ftq_status ref_nf4_qtensor(ftq_context *ctx, const ref_tensor *packed, const ref_tensor *absmax,
                                         int64_t rows, int64_t cols, ftq_qtensor *q) {
  memset(q, 0, sizeof *q);
  ftq_status st = ftq_tensor_alloc(ctx, FTQ_MEM_WEIGHTS, FTQ_DTYPE_U8, 1, &packed->numel, "nf4 packed", &q->packed);
  if (st == FTQ_OK)
    st = ftq_tensor_alloc(ctx, FTQ_MEM_WEIGHTS, FTQ_DTYPE_F32, 1, &absmax->numel, "nf4 absmax", &q->absmax);
  if (st == FTQ_OK) st = ftq_tensor_upload(ctx, &q->packed, packed->data);
  if (st == FTQ_OK) st = ftq_tensor_upload(ctx, &q->absmax, absmax->data);
  q->ctx = ctx;
  q->scheme = FTQ_QSCHEME_NF4;
  q->ndim = 2;
  q->shape[0] = rows;
  q->shape[1] = cols;
  q->orig_dtype = FTQ_DTYPE_F32;
  q->blocksize = 64;
  if (st != FTQ_OK) ftq_qtensor_release(q);
  return st;
}

/* The model of a reference file; with nf4, linear weights from the file's
 * NF4 codes. */
static inline ftq_status ref_model_load(ftq_context *ctx, const ref_file *r, int nf4, struct ftq_model **out) {
  ftq_model_config cfg;
  ref_config(r, &cfg);
  struct ftq_model *m;
  ftq_status st = ftq_model_new(ctx, &cfg, &m);
  if (st != FTQ_OK) return st;
  for (size_t ti = 0; ti < ref_count(r); ti++) {
    const char *key = ref_name(r, ti);
    ref_tensor t;
    if (strncmp(key, "w.", 2) == 0) { /* weights by HF name */
      ref_get(r, key, &t);
      ftq_dtype dt = strcmp(t.dtype, "U16") == 0 ? FTQ_DTYPE_BF16 : FTQ_DTYPE_F32;
      st = ftq_model_set_hf_tensor(m, key + 2, dt, t.ndim, t.shape, t.data);
    } else if (nf4 && strncmp(key, "nf4.", 4) == 0 && strstr(key, ".packed")) { /* NF4 linear weights */
      char name[256], nk[300];
      long long layer;
      char proj[32];
      snprintf(name, sizeof name, "%.*s", (int)(strstr(key, ".packed") - key - 4), key + 4);
      if (sscanf(name, "model.layers.%lld.%*[a-z_].%31[a-z_].weight", &layer, proj) != 2) {
        st = ftq_error(FTQ_ERR_INTERNAL, "reference: unexpected NF4 tensor %s", key);
        break;
      }
      int p = 0;
      while (p < FTQ_PROJ_COUNT && strcmp(ftq_proj_name((ftq_proj)p), proj) != 0) p++;
      snprintf(nk, sizeof nk, "nf4.%s.absmax", name);
      ref_tensor am = ref_need(r, nk);
      snprintf(nk, sizeof nk, "nf4.%s.dequantized", name);
      ref_tensor dq = ref_need(r, nk);
      ref_get(r, key, &t);
      ftq_qtensor q;
      st = ref_nf4_qtensor(ctx, &t, &am, dq.shape[0], dq.shape[1], &q);
      if (st == FTQ_OK) st = ftq_model_set_linear(m, layer, (ftq_proj)p, &q);
      ftq_qtensor_release(&q);
    }
    if (st != FTQ_OK) break;
  }
  if (st != FTQ_OK) {
    ftq_model_free(m);
    return st;
  }
  *out = m;
  return FTQ_OK;
}

/* The file's adapter: options as gen_ref.py gave PEFT, values from the file. */
static inline ftq_status ref_lora_load(struct ftq_model *m, const ref_file *r, ftq_lora **out) {
  json_t *lc = json_object_get(r->config, "lora");
  ftq_options *o;
  ftq_status st = ftq_options_create(&o);
  if (st != FTQ_OK) return st;
  char targets[256] = "";
  json_t *tm = json_object_get(lc, "target_modules");
  for (size_t i = 0; i < json_array_size(tm); i++) {
    if (i) strcat(targets, ",");
    strcat(targets, json_string_value(json_array_get(tm, i)));
  }
  ftq_options_set_int(o, "r", json_integer_value(json_object_get(lc, "r")));
  ftq_options_set_float(o, "lora_alpha", json_number_value(json_object_get(lc, "lora_alpha")));
  ftq_options_set_bool(o, "use_rslora", json_is_true(json_object_get(lc, "use_rslora")));
  ftq_options_set_string(o, "target_modules", targets);
  ftq_options_set_string(o, "init_lora_weights", "false");
  ftq_lora *l = NULL;
  st = ftq_lora_create(m, NULL, o, 7, &l);
  ftq_options_destroy(o);
  if (st != FTQ_OK) return st;
  json_t *names = json_object_get(r->config, "lora_tensors");
  if (json_array_size(names) != ftq_lora_tensor_count(l)) {
    ftq_lora_destroy(l);
    return ftq_error(FTQ_ERR_INTERNAL, "adapter has %zu tensors, reference %zu", ftq_lora_tensor_count(l),
                     json_array_size(names));
  }
  for (size_t i = 0; i < json_array_size(names) && st == FTQ_OK; i++) {
    const char *nm = json_string_value(json_array_get(names, i));
    char key[256];
    snprintf(key, sizeof key, "lora.%s", nm);
    ref_tensor t = ref_need(r, key);
    size_t idx;
    st = ftq_lora_find_tensor(l, nm, &idx);
    if (st == FTQ_OK && idx != i) st = ftq_error(FTQ_ERR_INTERNAL, "tensor %s at index %zu, PEFT has %zu", nm, idx, i);
    if (st == FTQ_OK) st = ftq_lora_set_tensor(l, idx, t.data, (size_t)t.numel);
  }
  if (st != FTQ_OK) {
    ftq_lora_destroy(l);
    return st;
  }
  *out = l;
  return FTQ_OK;
}

static inline void ref_batch(const ref_file *r, ftq_graph_batch *b) {
  ref_tensor ids = ref_need(r, "input_ids"), mask = ref_need(r, "attention_mask"), lab = ref_need(r, "labels");
  memset(b, 0, sizeof *b);
  b->n_rows = ids.shape[0];
  b->seq_len = ids.shape[1];
  b->input_ids = ids.data;
  b->attention_mask = mask.data;
  b->labels = lab.data;
}

#endif /* FTQ_TEST_REF_MODEL_H */
