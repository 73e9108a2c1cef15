/* bitsandbytes 4-bit checkpoints as files: the .safetensors that
 * Linear4bit.state_dict() + safetensors.torch.save_file wrote (bitsandbytes
 * 0.50.2 on a GPU, tests/ref/quant/make_ref.py), read with libftq's
 * safetensors reader into a quantized tensor without re-quantizing, and
 * written back with libftq's writer: the file must come out byte for byte
 * the same. This is the glue the model loader / saver calls. */
#include <unistd.h>

#include "core/context.h"
#include "io/safetensors.h"
#include "quant/bnb_format.h"
#include "ref_file.h"
#include "st_named.h"
#include "test_util.h"

typedef struct st_view {
  const ftq_safetensors *f;
  ftq_named_tensor t[16]; /* one slot per tensor: results must stay valid during the call */
  int used;
} st_view;

/* The adapter between a safetensors tensor and the quantizer's named tensor. */
static const ftq_named_tensor *st_lookup(void *user, const char *name) {
  st_view *v = user;
  if (v->used == 16) return NULL;
  const ftq_named_tensor *t = test_named_from_st(ftq_safetensors_find(v->f, name), &v->t[v->used]);
  if (t) v->used++;
  return t;
}

typedef struct collect {
  ftq_st_writer *w;
  void *keep[16];
  int n;
} collect;

static ftq_status st_emit(void *user, const ftq_named_tensor *t) {
  collect *c = user;
  void *copy = malloc(t->bytes ? t->bytes : 1); /* the writer keeps a pointer until it writes */
  memcpy(copy, t->data, t->bytes);
  c->keep[c->n++] = copy;
  return ftq_st_writer_add(c->w, t->name, t->dtype, t->ndim, t->shape, copy);
}

static void *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  void *b = malloc(*len ? *len : 1);
  if (fread(b, 1, *len, f) != *len) *len = 0;
  fclose(f);
  return b;
}

static void one(ftq_context *ctx, const ref_file *rf, const char *tag, ftq_dtype dt) {
  char path[256], out[256], key[128];
  snprintf(path, sizeof path, "tests/ref/quant/bnb_linear_%s.safetensors", tag);
  ftq_safetensors *f;
  REQUIRE_OK(ftq_safetensors_open(path, &f));
  st_view v;
  memset(&v, 0, sizeof v);
  v.f = f;
  const char *prefix = "model.layers.0.mlp.down_proj.";
  CHECK(ftq_bnb4_present(st_lookup, &v, prefix));
  v.used = 0;
  ftq_qtensor q;
  REQUIRE_OK(ftq_qtensor_from_bnb4(ctx, st_lookup, &v, prefix, FTQ_MEM_WEIGHTS, &q));
  snprintf(key, sizeof key, "ckpt/%s/deq", tag);
  const ref_rec *deq = ref_get(rf, key);
  void *y = malloc(64 * 576 * ftq_dtype_size(dt));
  CHECK_OK(ftq_qtensor_dequantize(&q, dt, y));
  CHECK_MSG(deq && memcmp(y, deq->data, deq->bytes) == 0, "%s: dequantized weight differs from bitsandbytes'", tag);
  /* written back through the writer: the same file */
  collect c = {NULL, {0}, 0};
  REQUIRE_OK(ftq_st_writer_create(&c.w));
  CHECK_OK(ftq_qtensor_to_bnb4(&q, prefix, st_emit, &c));
  snprintf(out, sizeof out, "/tmp/ftq-quant-%d-%s.safetensors", (int)getpid(), tag);
  CHECK_OK(ftq_st_writer_write(c.w, out));
  size_t la = 0, lb = 0;
  void *a = read_all(path, &la), *b = read_all(out, &lb);
  CHECK_MSG(a && b && la == lb && memcmp(a, b, la) == 0, "%s: the written file (%zu bytes) differs from "
            "bitsandbytes' (%zu bytes)", tag, lb, la);
  unlink(out);
  free(a);
  free(b);
  for (int i = 0; i < c.n; i++) free(c.keep[i]);
  ftq_st_writer_destroy(c.w);
  free(y);
  ftq_qtensor_release(&q);
  ftq_safetensors_close(f);
}

int main(void) {
  ref_file rf;
  if (!ref_open("tests/ref/quant/quant_ref.bin", &rf)) {
    fprintf(stderr, "cannot read tests/ref/quant/quant_ref.bin (run from the source root)\n");
    return 1;
  }
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  one(ctx, &rf, "nf4_dq_bf16", FTQ_DTYPE_BF16);
  one(ctx, &rf, "nf4_nodq_f16", FTQ_DTYPE_F16);
  one(ctx, &rf, "fp4_dq_f32", FTQ_DTYPE_F32);
  one(ctx, &rf, "fp4_nodq_bf16", FTQ_DTYPE_BF16);
  ftq_context_destroy(ctx);
  ref_close(&rf);
  return test_finish("test_quant_bnb_file");
}
