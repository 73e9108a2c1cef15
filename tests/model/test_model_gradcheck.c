/* Gradient check independent of PyTorch: a plain float64 implementation of
 * the Llama forward pass written here from the definitions (RMSNorm, RoPE
 * with llama3 scaling, GQA attention with causal, padding and packed-
 * sequence masks, SwiGLU, LoRA with its dropout mask as defined in
 * backend.h, shifted cross-entropy over the accumulated count), central
 * finite differences of its loss with respect to every LoRA parameter and
 * every input-embedding element, against the graph's f32 analytic
 * gradients. Also: the graph's loss against the float64 loss, and gradient
 * checkpointing bit-identical with dropout on. */
#include "core/rng.h"
#include "libftq/ftq_lora.h"
#include "lora/lora.h"
#include "random_model.h"

/* ---------------------------------------------------------------------- */
/* the float64 model                                                        */

typedef struct ref64 {
  const ftq_model_config *c;
  const rand_weights *w;
  double *A[8][FTQ_PROJ_COUNT], *B[8][FTQ_PROJ_COUNT]; /* LoRA, NULL when not adapted */
  int64_t r;
  double scaling, dropout;
  uint64_t seed, step;
  const ftq_graph_batch *b;
  double num_items;
} ref64;

static void rmsnorm64(const double *x, const float *w, int64_t n, double eps, double *y) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
  double rs = 1.0 / sqrt(ss / (double)n + eps);
  for (int64_t i = 0; i < n; i++) y[i] = w[i] * x[i] * rs;
}

/* y[T, out] = x W^T + b + scaling * (drop(x) A^T) B^T */
static void linear64(const ref64 *R, int64_t l, int p, const double *x, int64_t T, double *y) {
  int64_t out, in;
  ftq_model_proj_shape(R->c, (ftq_proj)p, &out, &in);
  const float *W = R->w->w[p][l], *bias = R->w->b[p][l];
  double *xd = malloc(sizeof(double) * (size_t)in), *t = malloc(sizeof(double) * (size_t)(R->r ? R->r : 1));
  const uint64_t stream = FTQ_RNG_NS_DROPOUT | (R->step << 16) | (uint64_t)(l * 8 + p);
  for (int64_t i = 0; i < T; i++) {
    const double *xi = x + i * in;
    for (int64_t o = 0; o < out; o++) {
      double s = bias ? bias[o] : 0.0;
      for (int64_t k = 0; k < in; k++) s += xi[k] * W[o * in + k];
      y[i * out + o] = s;
    }
    if (!R->A[l][p]) continue;
    for (int64_t k = 0; k < in; k++) { /* the mask of backend.h: keep iff uniform(seed, stream, e) >= p */
      int keep = R->dropout <= 0 || ftq_rng_uniform(R->seed, stream, (uint64_t)(i * in + k)) >= (float)R->dropout;
      xd[k] = keep ? xi[k] / (1.0 - R->dropout) : 0.0;
    }
    for (int64_t q = 0; q < R->r; q++) {
      double s = 0;
      for (int64_t k = 0; k < in; k++) s += xd[k] * R->A[l][p][q * in + k];
      t[q] = s;
    }
    for (int64_t o = 0; o < out; o++) {
      double s = 0;
      for (int64_t q = 0; q < R->r; q++) s += t[q] * R->B[l][p][o * R->r + q];
      y[i * out + o] += R->scaling * s;
    }
  }
  free(xd);
  free(t);
}

/* HF's inverse frequencies, llama3 scaling, in double. */
static void inv_freq64(const ftq_model_config *c, double *inv) {
  const int64_t D = c->head_dim;
  for (int64_t i = 0; i < D / 2; i++) {
    double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)D);
    if (c->rope_scaling == FTQ_ROPE_LLAMA3) {
      double low_wl = c->rope_original_max_position / c->rope_low_freq_factor;
      double high_wl = c->rope_original_max_position / c->rope_high_freq_factor;
      double wl = 2 * M_PI / f;
      if (wl > low_wl) f = f / c->rope_factor;
      else if (wl >= high_wl) {
        double sm = (c->rope_original_max_position / wl - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
        f = (1 - sm) * f / c->rope_factor + sm * f;
      }
    }
    inv[i] = f;
  }
}

static void rope64(double *x, int64_t heads, int64_t D, int32_t pos, const double *inv) {
  for (int64_t h = 0; h < heads; h++)
    for (int64_t i = 0; i < D / 2; i++) {
      double a = pos * inv[i], c = cos(a), s = sin(a);
      double *v = x + h * D, x1 = v[i], x2 = v[i + D / 2];
      v[i] = x1 * c - x2 * s;
      v[i + D / 2] = x2 * c + x1 * s;
    }
}

/* The loss (sum over counted targets / num_items) with h0 the embeddings. */
static double loss64(const ref64 *R, const double *h0) {
  const ftq_model_config *c = R->c;
  const ftq_graph_batch *b = R->b;
  const int64_t S = b->seq_len, T = b->n_rows * S, Hd = c->hidden_size, D = c->head_dim;
  const int64_t nh = c->num_attention_heads, kvh = c->num_key_value_heads, Q = nh * D, KV = kvh * D,
                I = c->intermediate_size, V = c->vocab_size;
  double *h = malloc(sizeof(double) * (size_t)(T * Hd)), *xn = malloc(sizeof(double) * (size_t)(T * Hd));
  double *q = malloc(sizeof(double) * (size_t)(T * Q)), *k = malloc(sizeof(double) * (size_t)(T * KV));
  double *v = malloc(sizeof(double) * (size_t)(T * KV)), *att = malloc(sizeof(double) * (size_t)(T * Q));
  double *tmp = malloc(sizeof(double) * (size_t)(T * Hd)), *g = malloc(sizeof(double) * (size_t)(T * I));
  double *u = malloc(sizeof(double) * (size_t)(T * I)), *sc = malloc(sizeof(double) * (size_t)S);
  double inv[64];
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
  inv_freq64(c, inv);
  for (int64_t i = 0; i < T; i++) {
    int64_t t = i % S;
    pos[i] = (t == 0 || (b->seq_ids && b->seq_ids[i] != b->seq_ids[i - 1])) ? 0 : pos[i - 1] + 1;
  }
  memcpy(h, h0, sizeof(double) * (size_t)(T * Hd));
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    for (int64_t i = 0; i < T; i++) rmsnorm64(h + i * Hd, R->w->norm1[l], Hd, c->rms_norm_eps, xn + i * Hd);
    linear64(R, l, FTQ_PROJ_Q, xn, T, q);
    linear64(R, l, FTQ_PROJ_K, xn, T, k);
    linear64(R, l, FTQ_PROJ_V, xn, T, v);
    for (int64_t i = 0; i < T; i++) {
      rope64(q + i * Q, nh, D, pos[i], inv);
      rope64(k + i * KV, kvh, D, pos[i], inv);
    }
    for (int64_t i = 0; i < T; i++) {
      const int64_t row = i / S, t = i % S;
      for (int64_t hh = 0; hh < nh; hh++) {
        const int64_t kh = hh / (nh / kvh);
        double m = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const int64_t kj = row * S + j;
          int vis = (!b->attention_mask || b->attention_mask[kj]) && (!b->seq_ids || b->seq_ids[kj] == b->seq_ids[i]);
          sc[j] = -INFINITY;
          if (!vis) continue;
          double s = 0;
          for (int64_t d = 0; d < D; d++) s += q[i * Q + hh * D + d] * k[kj * KV + kh * D + d];
          sc[j] = s / sqrt((double)D);
          if (sc[j] > m) m = sc[j];
        }
        double sum = 0;
        for (int64_t j = 0; j <= t; j++) sum += sc[j] == -INFINITY ? 0 : exp(sc[j] - m);
        for (int64_t d = 0; d < D; d++) {
          double o = 0;
          for (int64_t j = 0; j <= t; j++)
            if (sc[j] != -INFINITY) o += exp(sc[j] - m) / sum * v[(row * S + j) * KV + kh * D + d];
          att[i * Q + hh * D + d] = m == -INFINITY ? 0.0 : o;
        }
      }
    }
    linear64(R, l, FTQ_PROJ_O, att, T, tmp);
    for (int64_t e = 0; e < T * Hd; e++) h[e] += tmp[e];
    for (int64_t i = 0; i < T; i++) rmsnorm64(h + i * Hd, R->w->norm2[l], Hd, c->rms_norm_eps, xn + i * Hd);
    linear64(R, l, FTQ_PROJ_GATE, xn, T, g);
    linear64(R, l, FTQ_PROJ_UP, xn, T, u);
    for (int64_t e = 0; e < T * I; e++) g[e] = g[e] / (1.0 + exp(-g[e])) * u[e];
    linear64(R, l, FTQ_PROJ_DOWN, g, T, tmp);
    for (int64_t e = 0; e < T * Hd; e++) h[e] += tmp[e];
  }
  const float *head = c->tie_word_embeddings ? R->w->emb : R->w->head;
  double loss = 0;
  for (int64_t i = 0; i < T; i++) {
    const int64_t t = i % S;
    if (t + 1 >= S || (b->seq_ids && b->seq_ids[i + 1] != b->seq_ids[i])) continue;
    const int32_t y = b->labels[i + 1];
    if (y == FTQ_IGNORE_INDEX) continue;
    rmsnorm64(h + i * Hd, R->w->final_norm, Hd, c->rms_norm_eps, xn + i * Hd);
    double mx = -INFINITY, *lg = malloc(sizeof(double) * (size_t)V);
    for (int64_t vv = 0; vv < V; vv++) {
      double s = 0;
      for (int64_t d = 0; d < Hd; d++) s += xn[i * Hd + d] * head[vv * Hd + d];
      lg[vv] = s;
      if (s > mx) mx = s;
    }
    double se = 0;
    for (int64_t vv = 0; vv < V; vv++) se += exp(lg[vv] - mx);
    loss += mx + log(se) - lg[y];
    free(lg);
  }
  free(h), free(xn), free(q), free(k), free(v), free(att), free(tmp), free(g), free(u), free(sc), free(pos);
  return loss / R->num_items;
}

/* d loss / d p[k] for k < n by central differences (step 1e-5) in float64. */
static void central_diff(const ref64 *R, double *h0, double *p, size_t n, float *out) {
  const double eps = 1e-5;
  for (size_t k = 0; k < n; k++) {
    double keep = p[k];
    p[k] = keep + eps;
    double lp = loss64(R, h0);
    p[k] = keep - eps;
    double lm = loss64(R, h0);
    p[k] = keep;
    out[k] = (float)((lp - lm) / (2 * eps));
  }
}

/* ---------------------------------------------------------------------- */

int main(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  ftq_context *ctx = test_cpu_context();

  /* GQA 3:1, attention biases, llama3 RoPE over all three regimes, 2 layers */
  ftq_model_config c = rand_config(18, 20, 2, 3, 1, 17); /* head_dim 6 */
  c.attention_bias = 1;
  c.rope_scaling = FTQ_ROPE_LLAMA3;
  c.rope_factor = 4.0;
  c.rope_low_freq_factor = 1.0;
  c.rope_high_freq_factor = 2.0;
  c.rope_original_max_position = 32; /* wavelengths 6.3 (high), 29 (medium), 135 (low) */
  c.rope_theta = 100.0;
  rand_weights w;
  struct ftq_model *m = rand_model(ctx, &c, 99, &w);

  REQUIRE_OK(ftq_options_set_int(o, "r", 2));
  REQUIRE_OK(ftq_options_set_float(o, "lora_alpha", 3.0));
  REQUIRE_OK(ftq_options_set_float(o, "lora_dropout", 0.3));
  REQUIRE_OK(ftq_options_set_string(o, "target_modules", "all-linear"));
  REQUIRE_OK(ftq_options_set_string(o, "init_lora_weights", "false")); /* A and B random: every gradient lives */
  ftq_lora *lora;
  REQUIRE_OK(ftq_lora_create(m, NULL, o, 5, &lora));
  REQUIRE_OK(ftq_lora_set_active(lora, 1));
  ftq_options_destroy(o);

  /* row 0: two packed sequences (positions restart); row 1: right padding */
  enum { ROWS = 2, S = 7 };
  const int32_t ids[ROWS * S] = {3, 7, 11, 4, 9, 16, 5, /**/ 8, 12, 1, 15, 6, 0, 0};
  const int32_t mask[ROWS * S] = {1, 1, 1, 1, 1, 1, 1, /**/ 1, 1, 1, 1, 1, 0, 0};
  const int32_t seq[ROWS * S] = {0, 0, 0, 1, 1, 1, 1, /**/ 0, 0, 0, 0, 0, 0, 0};
  const int32_t labels[ROWS * S] = {-100, 7, 11, -100, 9, 16, 5, /**/ 8, -100, 1, 15, 6, -100, -100};
  ftq_graph_batch b = {ROWS, S, ids, labels, mask, NULL, seq};
  ftq_graph_settings s = {.training = 1, .seed = 1234, .step = 3, .num_items = 11.0};

  const int64_t T = ROWS * S, Hd = c.hidden_size;
  float *demb = malloc(sizeof(float) * (size_t)(T * Hd));
  ftq_graph_result res;
  REQUIRE_OK(ftq_graph_forward_backward(m, &b, &s, &res, NULL, demb));

  /* the float64 twin with the same parameters */
  ref64 R;
  memset(&R, 0, sizeof R);
  R.c = &c;
  R.w = &w;
  R.r = 2;
  R.scaling = 3.0 / 2.0;
  R.dropout = 0.3;
  R.seed = s.seed;
  R.step = s.step;
  R.b = &b;
  R.num_items = s.num_items;
  size_t nt = ftq_lora_tensor_count(lora);
  for (size_t i = 0; i < nt; i++) {
    char name[128];
    int64_t shape[2];
    REQUIRE_OK(ftq_lora_tensor_info(lora, i, name, sizeof name, shape));
    size_t n = (size_t)(shape[0] * shape[1]);
    float *f = malloc(sizeof(float) * n);
    REQUIRE_OK(ftq_lora_get_tensor(lora, i, f, n));
    double *d = malloc(sizeof(double) * n);
    for (size_t k = 0; k < n; k++) d[k] = f[k];
    free(f);
    int64_t layer = (int64_t)(i / 14);
    int p = (int)((i % 14) / 2);
    if (i % 2) R.B[layer][p] = d;
    else R.A[layer][p] = d;
  }
  double *h0 = malloc(sizeof(double) * (size_t)(T * Hd));
  for (int64_t i = 0; i < T; i++)
    for (int64_t d = 0; d < Hd; d++) h0[i * Hd + d] = w.emb[ids[i] * Hd + d];

  double L0 = loss64(&R, h0);
  printf("loss: graph %.9f, float64 %.9f (rel %.2e), %lld counted targets\n", res.loss, L0, fabs(res.loss - L0) / L0,
         (long long)res.n_items);
  CHECK_MSG(fabs(res.loss - L0) <= 2e-6 * fabs(L0), "loss %.9g vs float64 %.9g", res.loss, L0);
  CHECK(res.n_items == 8); /* 5 in row 0 (none across the sequence boundary), 3 in row 1 */

  double worst = 0;
  for (size_t i = 0; i < nt; i++) {
    char name[128];
    int64_t shape[2];
    REQUIRE_OK(ftq_lora_tensor_info(lora, i, name, sizeof name, shape));
    size_t n = (size_t)(shape[0] * shape[1]);
    float *gg = malloc(sizeof(float) * n), *fd = malloc(sizeof(float) * n);
    REQUIRE_OK(ftq_lora_get_grad(lora, i, gg, n));
    central_diff(&R, h0, i % 2 ? R.B[i / 14][(i % 14) / 2] : R.A[i / 14][(i % 14) / 2], n, fd);
    double e = test_rel_error_f32(gg, fd, n);
    if (e > worst) worst = e;
    CHECK_MSG(e < 1e-4, "%s: gradient vs finite differences: relative error %.3g", name, e);
    free(gg);
    free(fd);
  }
  float *fd = malloc(sizeof(float) * (size_t)(T * Hd));
  central_diff(&R, h0, h0, (size_t)(T * Hd), fd);
  double e = test_rel_error_f32(demb, fd, (size_t)(T * Hd));
  if (e > worst) worst = e;
  CHECK_MSG(e < 1e-4, "input embeddings: gradient vs finite differences: relative error %.3g", e);
  printf("worst relative error of %zu LoRA tensors + the input embeddings vs float64 finite differences: %.2e\n", nt,
         worst);

  /* checkpointing with dropout (the option as a trainer sets it): bit-identical */
  ftq_graph_settings s2;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_bool(o, "gradient_checkpointing", 1));
  REQUIRE_OK(ftq_graph_settings_init(o, &s2));
  ftq_options_destroy(o);
  CHECK(s2.gradient_checkpointing == 1 && s2.training == 1);
  float **g1 = calloc(nt, sizeof *g1);
  for (size_t i = 0; i < nt; i++) {
    int64_t shape[2];
    ftq_lora_tensor_info(lora, i, NULL, 0, shape);
    g1[i] = malloc(sizeof(float) * (size_t)(shape[0] * shape[1]));
    ftq_lora_get_grad(lora, i, g1[i], (size_t)(shape[0] * shape[1]));
  }
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  s.gradient_checkpointing = s2.gradient_checkpointing;
  float *demb2 = malloc(sizeof(float) * (size_t)(T * Hd));
  ftq_graph_result res2;
  REQUIRE_OK(ftq_graph_forward_backward(m, &b, &s, &res2, NULL, demb2));
  CHECK(res2.loss == res.loss);
  CHECK(memcmp(demb, demb2, sizeof(float) * (size_t)(T * Hd)) == 0);
  for (size_t i = 0; i < nt; i++) {
    int64_t shape[2];
    ftq_lora_tensor_info(lora, i, NULL, 0, shape);
    size_t n = (size_t)(shape[0] * shape[1]);
    float *g2 = malloc(sizeof(float) * n);
    ftq_lora_get_grad(lora, i, g2, n);
    CHECK_MSG(memcmp(g1[i], g2, sizeof(float) * n) == 0, "tensor %zu: checkpointed gradient differs", i);
    free(g2);
    free(g1[i]);
  }
  free(g1);
  /* another step draws other dropout masks */
  s.step = 4;
  REQUIRE_OK(ftq_graph_forward_backward(m, &b, &s, &res2, NULL, demb2));
  CHECK_MSG(res2.loss != res.loss, "dropout masks did not change with the step");

  for (int64_t l = 0; l < c.num_hidden_layers; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      free(R.A[l][p]);
      free(R.B[l][p]);
    }
  free(fd);
  free(h0);
  free(demb);
  free(demb2);
  ftq_lora_destroy(lora);
  ftq_model_free(m);
  rand_weights_free(&w, c.num_hidden_layers);
  ftq_context_destroy(ctx);
  return test_finish("test_model_gradcheck");
}
