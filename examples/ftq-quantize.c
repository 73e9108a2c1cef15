/* ftq-quantize: what quantization does to a model's linear weights.
 *
 *   ftq-quantize --model DIR|FILE.gguf --bnb_4bit_quant_type nf4 [--bnb_4bit_use_double_quant]
 *   ftq-quantize --model DIR --load_in_8bit --int8_granularity channel
 *   ftq-quantize --model DIR --bnb_4bit_quant_type nf4 --output NF4_DIR    (also write the checkpoint)
 *
 * Every projection of every layer is quantized with the quantizer's
 * settings (NF4 / FP4 with quant_blocksize and double quantization, or INT8
 * with --load_in_8bit) and measured against its unquantized values: mean
 * squared error, signal-to-quantization-noise ratio, largest error, the
 * share of non-zero weights that became zero, of distinct values that
 * collapsed onto another's code, and (INT8) of clipped values. The last row
 * sums up the whole model. --json prints one JSON object per row instead.
 * --output writes the 4-bit model as a Hugging Face folder in bitsandbytes'
 * checkpoint layout, which transformers loads. Public API only. */
#include <libftq/ftq.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/setup.h"

static const char *const PROJ[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

/* Totals over the model, for the last row. */
typedef struct totals {
  double n, err2, sig2, max_err, zeroed, nonzero, collapsed, clipped;
} totals;

static void print_row(int json, const char *layer, const char *proj, const int64_t *shape, const double *q,
                      int int8) {
  if (json) {
    printf("{\"layer\": \"%s\", \"proj\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"mse\": %.6g, \"sqnr_db\": %.4f, "
           "\"max_abs_error\": %.6g, \"zeroed\": %.6g, \"collapsed\": %.6g, \"clipped\": %.6g}\n",
           layer, proj, (long long)shape[0], (long long)shape[1], q[FTQ_QSTAT_MSE], q[FTQ_QSTAT_SQNR_DB],
           q[FTQ_QSTAT_MAX_ABS_ERROR], q[FTQ_QSTAT_ZEROED_FRACTION], q[FTQ_QSTAT_COLLAPSED_FRACTION],
           int8 ? q[FTQ_QSTAT_CLIPPED_FRACTION] : 0.0);
    return;
  }
  char dims[32];
  if (shape[1]) snprintf(dims, sizeof dims, "%lldx%lld", (long long)shape[0], (long long)shape[1]);
  else snprintf(dims, sizeof dims, "%lld", (long long)shape[0]); /* the totals: a parameter count */
  printf("%-5s %-17s %-11s %11.4e %9.2f %11.4e %8.3f%% %9.3f%%", layer, proj, dims, q[FTQ_QSTAT_MSE],
         q[FTQ_QSTAT_SQNR_DB], q[FTQ_QSTAT_MAX_ABS_ERROR], 100 * q[FTQ_QSTAT_ZEROED_FRACTION],
         100 * q[FTQ_QSTAT_COLLAPSED_FRACTION]);
  if (int8) printf(" %8.3f%%", 100 * q[FTQ_QSTAT_CLIPPED_FRACTION]);
  printf("\n");
}

/* Quantizes every projection, prints a row each and the model's totals. */
static ftq_status report(ftq_model *model, ftq_quantizer *q, int json) {
  int64_t layers;
  ftq_status st = ftq_model_config_int(model, "num_hidden_layers", &layers);
  const int int8 = ftq_quantizer_scheme(q) == FTQ_QSCHEME_INT8_SYM || ftq_quantizer_scheme(q) == FTQ_QSCHEME_INT8_ASYM;
  if (!json) {
    printf("%-5s %-17s %-11s %11s %9s %11s %9s %10s%s\n", "layer", "projection", "shape", "MSE", "SQNR dB", "max err",
           "zeroed", "collapsed", int8 ? "   clipped" : "");
  }
  totals t = {0};
  float *w = NULL;
  size_t cap = 0;
  for (int64_t l = 0; l < layers && st == FTQ_OK; l++)
    for (int p = 0; p < 7 && st == FTQ_OK; p++) {
      char name[128], layer[24];
      int64_t shape[2];
      snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, PROJ[p]);
      snprintf(layer, sizeof layer, "%lld", (long long)l);
      st = ftq_model_merged_weight(model, NULL, name, NULL, 0, shape);
      const size_t n = (size_t)(shape[0] * shape[1]);
      if (st == FTQ_OK && n > cap) {
        free(w);
        cap = n;
        w = malloc(n * sizeof *w);
        if (!w) return FTQ_ERR_OUT_OF_MEMORY;
      }
      double s[6];
      if (st == FTQ_OK) st = ftq_model_merged_weight(model, NULL, name, w, n, NULL);
      if (st == FTQ_OK) st = ftq_quantizer_error_stats(q, w, FTQ_FLOAT32, FTQ_HOST, 2, shape, s, 6);
      if (st != FTQ_OK) break;
      print_row(json, layer, PROJ[p] + (p < 4 ? 10 : 4), shape, s, int8);
      double sig2 = 0, nonzero = 0;
      for (size_t i = 0; i < n; i++) {
        sig2 += (double)w[i] * w[i];
        nonzero += w[i] != 0.0f;
      }
      t.n += (double)n;
      t.err2 += s[FTQ_QSTAT_MSE] * (double)n;
      t.sig2 += sig2;
      t.max_err = fmax(t.max_err, s[FTQ_QSTAT_MAX_ABS_ERROR]);
      t.zeroed += s[FTQ_QSTAT_ZEROED_FRACTION] * nonzero;
      t.nonzero += nonzero;
      t.collapsed += s[FTQ_QSTAT_COLLAPSED_FRACTION] * (double)n; /* weighted by size: an approximation */
      t.clipped += s[FTQ_QSTAT_CLIPPED_FRACTION] * (double)n;
    }
  free(w);
  if (st != FTQ_OK || t.n == 0) return st;
  double all[6] = {t.err2 / t.n, t.err2 > 0 ? 10 * log10(t.sig2 / t.err2) : INFINITY, t.max_err,
                   t.nonzero > 0 ? t.zeroed / t.nonzero : 0, t.collapsed / t.n, t.clipped / t.n};
  int64_t total[2] = {(int64_t)t.n, 0};
  print_row(json, "all", json ? "all" : "(size-weighted)", total, all, int8);
  return FTQ_OK;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *output = NULL, *json = NULL, *device = "cpu";
  const ftq_cli_flag flags[] = {
      {"model", "PATH", "model: a Hugging Face folder or a GGUF file (required)", &model_path},
      {"output", "DIR", "also write the 4-bit model there (bitsandbytes checkpoint layout)", &output},
      {"json", NULL, "one JSON object per row instead of the table", &json},
      {"device", "DEV", "cpu, cuda or cuda:N", &device},
  };
  static const char *const groups[] = {"context", "model", "quant", "merge", NULL};
  const ftq_cli cli = {"ftq-quantize",
                       "Quantizes a model's linear weights and prints the error statistics of every layer.", groups,
                       flags, sizeof flags / sizeof flags[0]};
  ftq_options *opts, *load_opts = NULL;
  if (ftq_options_create(&opts) != FTQ_OK) return 1;
  int rc = ftq_cli_parse(&cli, argc, argv, opts);
  if (rc) {
    ftq_options_destroy(opts);
    return rc == 1 ? 0 : 2;
  }
  if (!model_path) {
    fprintf(stderr, "ftq-quantize: give --model (see --help)\n");
    ftq_options_destroy(opts);
    return 2;
  }
  ftq_context *ctx = NULL;
  ftq_model *model = NULL;
  ftq_quantizer *q = NULL;
  /* the model loads unquantized: the quantizer measures its own work */
  ftq_status st = ftq_options_copy(opts, &load_opts);
  if (st == FTQ_OK) st = ftq_options_unset(load_opts, "load_in_4bit");
  if (st == FTQ_OK) st = ftq_options_unset(load_opts, "load_in_8bit");
  if (st == FTQ_OK) st = ftq_example_open(device, opts, FTQ_LOG_WARN, model_path, load_opts, NULL, &ctx, &model, NULL);
  if (st == FTQ_OK) st = ftq_quantizer_create(ctx, opts, &q);
  if (st == FTQ_OK) st = report(model, q, json != NULL);
  if (st == FTQ_OK && output) {
    int in8 = 0;
    st = ftq_options_get_bool(opts, "load_in_8bit", &in8);
    if (st == FTQ_OK && !in8) st = ftq_options_set_bool(opts, "load_in_4bit", 1);
    if (st == FTQ_OK) st = ftq_model_save_merged(model, NULL, output, opts);
    if (st == FTQ_OK && !json) printf("4-bit model written to %s\n", output);
  }
  if (st != FTQ_OK) {
    fprintf(stderr, "ftq-quantize: %s\n", ftq_last_error());
    rc = 1;
  }
  ftq_quantizer_destroy(q);
  ftq_model_destroy(model);
  ftq_context_destroy(ctx);
  ftq_options_destroy(load_opts);
  ftq_options_destroy(opts);
  return rc;
}
