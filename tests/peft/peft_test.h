/* Helpers of the adapter, merge and QAT tests: the tiny reference model of
 * tests/ref/peft (make_ref.py), its fixed batch and reference logits,
 * logits through the graph, temporary folders and file comparisons. */
#ifndef FTQ_TEST_PEFT_TEST_H
#define FTQ_TEST_PEFT_TEST_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/graph.h"
#include "quant/bnb_format.h"
#include "model/cpu_context.h"
#include "st_named.h"
#include "test_util.h"

#define REF_DIR "tests/ref/peft"
#define TINY REF_DIR "/tiny"
#define ROWS 2
#define SEQ 9

/* ref.safetensors: the batch and the logits PyTorch computed. */
typedef struct pt_ref {
  ftq_safetensors *f;
  int32_t ids[ROWS * SEQ];
  int64_t vocab;
} pt_ref;

static inline void pt_ref_open(pt_ref *r) {
  REQUIRE_OK(ftq_safetensors_open(REF_DIR "/ref.safetensors", &r->f));
  const ftq_st_tensor *t = ftq_safetensors_find(r->f, "input_ids");
  if (!t || t->dtype != FTQ_DTYPE_I32 || t->numel != ROWS * SEQ) {
    fprintf(stderr, "ref.safetensors: input_ids missing or not I32 [%d, %d]\n", ROWS, SEQ);
    exit(1);
  }
  memcpy(r->ids, t->data, sizeof r->ids);
  r->vocab = ftq_safetensors_find(r->f, "logits_base")->shape[2];
}

static inline const float *pt_ref_logits(const pt_ref *r, const char *name) {
  const ftq_st_tensor *t = ftq_safetensors_find(r->f, name);
  if (!t || t->dtype != FTQ_DTYPE_F32 || t->numel != (uint64_t)(ROWS * SEQ * r->vocab)) {
    fprintf(stderr, "ref.safetensors: %s missing or malformed\n", name);
    exit(1);
  }
  return t->data;
}

/* What every test here starts from: a CPU context, the reference batch and
 * logits, and the tiny model. */
typedef struct pt_env {
  ftq_context *ctx;
  pt_ref r;
  ftq_model *m;
} pt_env;

static inline void pt_env_open(pt_env *e) {
  e->ctx = test_cpu_context();
  pt_ref_open(&e->r);
  REQUIRE_OK(ftq_model_load(e->ctx, TINY, NULL, &e->m));
}

/* Frees the environment and returns the test's exit code. */
static inline int pt_env_close(pt_env *e, const char *test) {
  ftq_model_destroy(e->m);
  ftq_safetensors_close(e->r.f);
  ftq_context_destroy(e->ctx);
  return test_finish(test);
}

/* Logits of the model (its active adapter applied) on the batch: a new array. */
static inline float *pt_logits(struct ftq_model *m, const int32_t *ids) {
  float *out = malloc(sizeof(float) * (size_t)(ROWS * SEQ * m->cfg.vocab_size));
  ftq_graph_batch b = {ROWS, SEQ, ids, NULL, NULL, NULL, NULL};
  REQUIRE_OK(ftq_graph_forward(m, &b, NULL, NULL, NULL, out));
  return out;
}

/* Largest |a - b| relative to the largest |b|. */
static inline double pt_max_rel(const float *a, const float *b, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - (double)b[i]);
    if (!(e <= d)) d = e; /* NaN sticks */
    if (fabs((double)b[i]) > s) s = fabs((double)b[i]);
  }
  return s > 0 ? d / s : d;
}

/* A new empty folder under /tmp. */
static inline char *pt_tmpdir(void) {
  char *p = strdup("/tmp/ftq_peft_XXXXXX");
  if (!p || !mkdtemp(p)) {
    perror("mkdtemp");
    exit(1);
  }
  return p;
}

static int pt_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Removes a folder tree and frees its name. */
static inline void pt_rmtree(char *dir) {
  if (dir) nftw(dir, pt_rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}

/* dir + "/" + name in a static buffer (one at a time). */
static inline const char *pt_path(const char *dir, const char *name) {
  static char buf[2][1024];
  static int k;
  k ^= 1;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

/* The whole file (malloc), its size in *len; NULL if it cannot be read. */
static inline char *pt_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)n + 1);
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(f);
  if (p) p[n] = '\0';
  if (len) *len = (size_t)n;
  return p;
}

/* 1 if both files exist and hold the same bytes. */
static inline int pt_same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = pt_slurp(a, &na), *y = pt_slurp(b, &nb);
  int same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

/* Writes a text file. */
static inline void pt_write(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(text, 1, strlen(text), f) != strlen(text)) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

/* A model folder's tensors as ftq_qtensor_from_bnb4 looks them up. */
typedef struct pt_bnb_view {
  const ftq_st_set *set;
  ftq_named_tensor t[8]; /* every result stays valid during one call */
  int used;
} pt_bnb_view;

static inline const ftq_named_tensor *pt_bnb_lookup(void *user, const char *name) {
  pt_bnb_view *v = user;
  if (v->used == 8) return NULL;
  const ftq_named_tensor *t = test_named_from_st(ftq_st_set_find(v->set, name), &v->t[v->used]);
  if (t) v->used++;
  return t;
}

/* The 4-bit weight `prefix` ("model.layers.0.mlp.down_proj.") of a saved
 * bitsandbytes checkpoint, as a qtensor on ctx (release it). */
static inline void pt_bnb_qtensor(ftq_context *ctx, const ftq_st_set *set, const char *prefix, ftq_qtensor *q) {
  pt_bnb_view v = {set, {{0}}, 0};
  REQUIRE_OK(ftq_qtensor_from_bnb4(ctx, pt_bnb_lookup, &v, prefix, FTQ_MEM_WEIGHTS, q));
}

#endif /* FTQ_TEST_PEFT_TEST_H */
