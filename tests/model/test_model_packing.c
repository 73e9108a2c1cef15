/* Packed sequences and padding: three sequences run (1) one by one as
 * separate micro-batches normalised by the accumulated token count, (2)
 * packed into one row with sequence ids (attention never crosses a
 * boundary, positions restart), (3) as a right-padded batch — must give the
 * same per-token losses, the same input-embedding gradients and the same
 * summed LoRA gradients. */
#include "libftq/ftq_lora.h"
#include "random_model.h"

enum { NSEQ = 3 };
static const int32_t LEN[NSEQ] = {5, 8, 3};
static const int32_t TOK[16] = {4, 9, 23, 7, 31, /**/ 12, 44, 3, 18, 27, 5, 38, 11, /**/ 20, 6, 41};

typedef struct run_out {
  float *token_loss, *demb, **grads;
  double loss;
} run_out;

static size_t nt_g;

static void grads_get(ftq_lora *l, float **g) {
  for (size_t i = 0; i < nt_g; i++) {
    int64_t shape[2];
    ftq_lora_tensor_info(l, i, NULL, 0, shape);
    size_t n = (size_t)(shape[0] * shape[1]);
    if (!g[i]) g[i] = calloc(n, sizeof(float));
    REQUIRE_OK(ftq_lora_get_grad(l, i, g[i], n));
  }
}

static void compare_grads(ftq_lora *l, float **a, float **b, const char *what) {
  double worst = 0;
  for (size_t i = 0; i < nt_g; i++) {
    int64_t shape[2];
    ftq_lora_tensor_info(l, i, NULL, 0, shape);
    double e = test_rel_error_f32(a[i], b[i], (size_t)(shape[0] * shape[1]));
    if (e > worst) worst = e;
  }
  printf("%-44s worst LoRA gradient relative difference %.2e\n", what, worst);
  CHECK_MSG(worst < 2e-6, "%s: gradients differ by %.3g", what, worst);
}

int main(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  ftq_context *ctx = test_cpu_context();
  ftq_model_config c = rand_config(40, 64, 2, 4, 2, 50);
  struct ftq_model *m = rand_model(ctx, &c, 7, NULL);
  REQUIRE_OK(ftq_options_set_int(o, "r", 4));
  REQUIRE_OK(ftq_options_set_string(o, "target_modules", "all-linear"));
  REQUIRE_OK(ftq_options_set_string(o, "init_lora_weights", "false"));
  ftq_lora *lora;
  REQUIRE_OK(ftq_lora_create(m, NULL, o, 11, &lora));
  REQUIRE_OK(ftq_lora_set_active(lora, 1));
  ftq_options_destroy(o);
  nt_g = ftq_lora_tensor_count(lora);
  const int64_t H = c.hidden_size;
  int64_t total = 0;
  for (int k = 0; k < NSEQ; k++) total += LEN[k] - 1; /* every token but the first is a target */
  ftq_graph_settings s = {.training = 1, .num_items = (double)total};

  /* (1) one by one, gradients accumulated */
  float sep_loss[16], *sep_demb = calloc(16 * (size_t)H, sizeof(float));
  float **g_sep = calloc(nt_g, sizeof *g_sep);
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  double sep_sum = 0;
  for (int k = 0, off = 0; k < NSEQ; off += LEN[k], k++) {
    ftq_graph_batch b = {1, LEN[k], TOK + off, TOK + off, NULL, NULL, NULL};
    ftq_graph_result r;
    REQUIRE_OK(ftq_graph_forward_backward(m, &b, &s, &r, sep_loss + off, sep_demb + (size_t)off * (size_t)H));
    sep_sum += r.loss;
  }
  grads_get(lora, g_sep);

  /* (2) packed into one row */
  int32_t seq[16];
  for (int k = 0, off = 0; k < NSEQ; off += LEN[k], k++)
    for (int t = 0; t < LEN[k]; t++) seq[off + t] = k;
  float pk_loss[16], *pk_demb = calloc(16 * (size_t)H, sizeof(float));
  float **g_pk = calloc(nt_g, sizeof *g_pk);
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  ftq_graph_batch bp = {1, 16, TOK, TOK, NULL, NULL, seq};
  ftq_graph_result rp;
  REQUIRE_OK(ftq_graph_forward_backward(m, &bp, &s, &rp, pk_loss, pk_demb));
  grads_get(lora, g_pk);
  CHECK(rp.n_items == total);
  printf("%-44s loss %.9f, one by one %.9f\n", "packed", rp.loss, sep_sum);
  CHECK(fabs(rp.loss - sep_sum) <= 1e-6 * fabs(sep_sum));
  double e = test_rel_error_f32(pk_loss, sep_loss, 16);
  printf("%-44s token losses relative difference %.2e\n", "packed", e);
  CHECK(e < 1e-6);
  e = test_rel_error_f32(pk_demb, sep_demb, 16 * (size_t)H);
  printf("%-44s input-embedding gradient relative difference %.2e\n", "packed", e);
  CHECK(e < 2e-6);
  compare_grads(lora, g_pk, g_sep, "packed vs one by one");

  /* the same with explicit position ids */
  int32_t pos[16];
  for (int k = 0, off = 0; k < NSEQ; off += LEN[k], k++)
    for (int t = 0; t < LEN[k]; t++) pos[off + t] = t;
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  ftq_graph_batch bq = {1, 16, TOK, TOK, NULL, pos, seq};
  ftq_graph_result rq;
  float pq_loss[16];
  REQUIRE_OK(ftq_graph_forward_backward(m, &bq, &s, &rq, pq_loss, NULL));
  CHECK(rq.loss == rp.loss && memcmp(pq_loss, pk_loss, sizeof pq_loss) == 0);

  /* (3) right-padded batch of three rows of 8 */
  int32_t ids[3 * 8], lab[3 * 8], mask[3 * 8];
  for (int k = 0, off = 0; k < NSEQ; off += LEN[k], k++)
    for (int t = 0; t < 8; t++) {
      ids[k * 8 + t] = t < LEN[k] ? TOK[off + t] : 0;
      lab[k * 8 + t] = t < LEN[k] ? TOK[off + t] : -100;
      mask[k * 8 + t] = t < LEN[k];
    }
  float pd_loss[24], *pd_demb = calloc(24 * (size_t)H, sizeof(float));
  float **g_pd = calloc(nt_g, sizeof *g_pd);
  REQUIRE_OK(ftq_lora_zero_grad(lora));
  ftq_graph_batch bd = {3, 8, ids, lab, mask, NULL, NULL};
  ftq_graph_result rd;
  REQUIRE_OK(ftq_graph_forward_backward(m, &bd, &s, &rd, pd_loss, pd_demb));
  grads_get(lora, g_pd);
  CHECK(rd.n_items == total);
  CHECK(fabs(rd.loss - sep_sum) <= 1e-6 * fabs(sep_sum));
  float pd_compact[16], *pd_demb_compact = calloc(16 * (size_t)H, sizeof(float));
  for (int k = 0, off = 0; k < NSEQ; off += LEN[k], k++)
    for (int t = 0; t < LEN[k]; t++) {
      pd_compact[off + t] = pd_loss[k * 8 + t];
      memcpy(pd_demb_compact + (size_t)(off + t) * (size_t)H, pd_demb + (size_t)(k * 8 + t) * (size_t)H,
             sizeof(float) * (size_t)H);
    }
  e = test_rel_error_f32(pd_compact, sep_loss, 16);
  printf("%-44s token losses relative difference %.2e\n", "padded", e);
  CHECK(e < 1e-6);
  e = test_rel_error_f32(pd_demb_compact, sep_demb, 16 * (size_t)H);
  printf("%-44s input-embedding gradient relative difference %.2e\n", "padded", e);
  CHECK(e < 2e-6);
  for (int k = 0; k < NSEQ; k++) /* padding positions predict nothing and get no gradient */
    for (int t = LEN[k] - 1; t < 8; t++) CHECK(pd_loss[k * 8 + t] == 0.0f);
  for (int k = 0; k < NSEQ; k++)
    for (int t = LEN[k]; t < 8; t++)
      for (int64_t d = 0; d < H; d++) CHECK(pd_demb[(size_t)(k * 8 + t) * (size_t)H + (size_t)d] == 0.0f);
  compare_grads(lora, g_pd, g_sep, "padded vs one by one");

  for (size_t i = 0; i < nt_g; i++) {
    free(g_sep[i]);
    free(g_pk[i]);
    free(g_pd[i]);
  }
  free(g_sep), free(g_pk), free(g_pd), free(sep_demb), free(pk_demb), free(pd_demb), free(pd_demb_compact);
  ftq_lora_destroy(lora);
  ftq_model_free(m);
  ftq_context_destroy(ctx);
  return test_finish("test_model_packing");
}
