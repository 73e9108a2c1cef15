/* Quantizer speed on Llama-2-7B shapes, as JSON lines:
 *
 *   bench_quant [device] [--quick]
 *
 * - "copy": device-to-device copy bandwidth (bytes read + written), the
 *   yardstick of the memory-bound kernels;
 * - "dequant": NF4 (block 64) -> bf16 for the three linear shapes of
 *   Llama-2-7B, without and with double quantization: median time and
 *   GB/s counting bytes read (codes + absmax) + written (bf16);
 * - "quantize_7b": quantizing every linear weight of Llama-2-7B (224
 *   tensors) from bf16 device buffers to NF4 + double quant, wall time
 *   including the allocation of the results.
 * bench/peer/quant_bnb.py measures bitsandbytes on the same shapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/context.h"
#include "core/half.h"
#include "quant/qtensor.h"


#define TRY(x)                                                              \
  do {                                                                      \
    ftq_status st_ = (x);                                                   \
    if (st_ != FTQ_OK) {                                                    \
      fprintf(stderr, "bench_quant: %s: %s\n", #x, ftq_last_error());      \
      exit(1);                                                              \
    }                                                                       \
  } while (0)

#define ROT 3

/* Random bf16 weights (never zeros: real data) on the device. */
static void fill_bf16(ftq_context *ctx, void *dev, size_t n, uint64_t seed) {
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    float u = (float)((seed >> 40) & 0xffffff) / 16777216.0f - 0.5f;
    h[i] = ftq_f32_to_bf16(u * 0.04f);
  }
  TRY(ctx->be->copy(ctx->be_ctx, dev, h, n * 2, FTQ_COPY_H2D));
  free(h);
}

static double copy_bandwidth(ftq_context *ctx, size_t bytes, int reps, double *ms_out) {
  ftq_buffer a, b;
  TRY(ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, bytes, "copy source", &a));
  TRY(ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, bytes, "copy target", &b));
  TRY(ctx->be->fill(ctx->be_ctx, a.ptr, FTQ_DTYPE_U8, bytes, 7.0f));
  double t[64];
  for (int r = -2; r < reps; r++) {
    TRY(ftq_context_synchronize(ctx));
    double t0 = now_ms();
    TRY(ctx->be->copy(ctx->be_ctx, b.ptr, a.ptr, bytes, FTQ_COPY_D2D)); /* stream-ordered: wait for it */
    TRY(ftq_context_synchronize(ctx));
    if (r >= 0) t[r] = now_ms() - t0;
  }
  ftq_buffer_free(ctx, &a);
  ftq_buffer_free(ctx, &b);
  double ms = median(t, reps);
  if (ms_out) *ms_out = ms;
  return 2.0 * (double)bytes / (ms * 1e6);
}

/* NF4 dequantization of the three shapes, without and with double quant. */
static void bench_dequant(ftq_context *ctx, const char *name, int cuda, int64_t shapes[3][2], int reps, double copy_gbs,
                          const char *variant) {
  for (int s = 0; s < 3; s++)
    for (int nested = 0; nested < 2; nested++) {
      int64_t n = shapes[s][0] * shapes[s][1];
      ftq_qconfig cfg = {FTQ_QSCHEME_NF4, 64, nested, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
      ftq_buffer src, out[ROT];
      TRY(ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, (size_t)n * 2, "bf16 source", &src));
      ftq_qtensor q[ROT];
      for (int r = 0; r < ROT; r++) {
        fill_bf16(ctx, src.ptr, (size_t)n, 1000u + (uint64_t)(r + 10 * s));
        TRY(ftq_qtensor_quantize(ctx, &cfg, src.ptr, FTQ_DTYPE_BF16, 2, shapes[s], FTQ_MEM_WEIGHTS, "w", &q[r]));
        TRY(ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, (size_t)n * 2, "bf16 output", &out[r]));
      }
      ftq_buffer_free(ctx, &src);
      size_t read = ftq_tensor_bytes(&q[0].packed) + ftq_tensor_bytes(&q[0].absmax) +
                    ftq_tensor_bytes(&q[0].nested_absmax) + (nested ? 1024 : 0);
      size_t bytes = read + (size_t)n * 2;
      /* back-to-back launches, rotating over 3 sets; median of batches of 50 */
      double t[64];
      int batch = cuda ? 50 : 1;
      for (int r = -2; r < reps; r++) {
        TRY(ftq_context_synchronize(ctx));
        double t0 = now_ms();
        for (int k = 0; k < batch; k++) TRY(ftq_qtensor_dequantize(&q[k % ROT], FTQ_DTYPE_BF16, out[k % ROT].ptr));
        TRY(ftq_context_synchronize(ctx));
        if (r >= 0) t[r] = (now_ms() - t0) / batch;
      }
      double ms = median(t, reps), gbs = (double)bytes / (ms * 1e6);
      double cmp_ms;
      double copy_same = copy_bandwidth(ctx, bytes / 2, cuda ? 10 : 3, &cmp_ms);
      printf(
          "{\"bench\": \"dequant\", \"variant\": \"%s\", \"device\": \"%s\", \"scheme\": \"nf4\", \"blocksize\": 64, "
          "\"double_quant\": %s, "
          "\"out\": \"bf16\", \"rows\": %lld, \"cols\": %lld, \"bytes\": %zu, \"median_ms\": %.4f, \"gbps\": %.1f, "
          "\"copy_gbps\": %.1f, \"pct_of_copy\": %.1f, \"copy_gbps_same_bytes\": %.1f}\n",
          variant, name, nested ? "true" : "false", (long long)shapes[s][0], (long long)shapes[s][1], bytes, ms, gbs,
          copy_gbs, 100.0 * gbs / copy_gbs, copy_same);
      for (int r = 0; r < ROT; r++) {
        ftq_qtensor_release(&q[r]);
        ftq_buffer_free(ctx, &out[r]);
      }
    }
}

int main(int argc, char **argv) {
  const char *dev = "cpu";
  int quick = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) quick = 1;
    else dev = argv[i];
  }
  ftq_context *ctx;
  if (ftq_context_create(dev, NULL, &ctx) != FTQ_OK) {
    fprintf(stderr, "bench_quant: %s\n", ftq_last_error());
    return 1;
  }
  int cuda = ftq_context_device_type(ctx) == FTQ_DEVICE_CUDA;
  const char *name = ftq_context_device_name(ctx);
  /* Llama-2-7B linear weights [out, in]; the CPU gets a scaled-down set */
  int64_t shapes[3][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  int counts[3] = {4, 2, 1}; /* per layer: q/k/v/o, gate/up, down */
  if (!cuda) {
    int64_t small[3][2] = {{576, 576}, {1536, 576}, {576, 1536}};
    memcpy(shapes, small, sizeof small);
  }
  int layers = cuda ? 32 : 2, reps = quick ? 5 : (cuda ? 30 : 3);

  double copy_ms;
  size_t copy_bytes = cuda ? (size_t)1 << 30 : (size_t)64 << 20;
  double copy_gbs = copy_bandwidth(ctx, copy_bytes, cuda ? 20 : 5, &copy_ms);
  printf("{\"bench\": \"copy\", \"device\": \"%s\", \"bytes\": %zu, \"median_ms\": %.4f, \"gbps\": %.1f}\n", name,
         copy_bytes, copy_ms, copy_gbs);

  /* FTQ_BENCH_DEQUANT_VARIANTS="default,16cs,w1cs,w2cs,w4cs" also times the
   * CUDA kernel's other variants (cuda/quant.cu) */
  const char *variants = getenv("FTQ_BENCH_DEQUANT_VARIANTS");
  char vlist[128];
  snprintf(vlist, sizeof vlist, "%s", variants && cuda ? variants : "default");
  for (char *save = NULL, *variant = strtok_r(vlist, ",", &save); variant; variant = strtok_r(NULL, ",", &save)) {
    if (strcmp(variant, "default") != 0) setenv("FTQ_DEQUANT_VARIANT", variant, 1);
    bench_dequant(ctx, name, cuda, shapes, reps, copy_gbs, variant);
  }
  unsetenv("FTQ_DEQUANT_VARIANT");

  /* every linear weight of the model, bf16 -> NF4 + double quant */
  ftq_buffer srcs[3];
  for (int s = 0; s < 3; s++) {
    TRY(ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, (size_t)(shapes[s][0] * shapes[s][1]) * 2, "bf16 weights", &srcs[s]));
    fill_bf16(ctx, srcs[s].ptr, (size_t)(shapes[s][0] * shapes[s][1]), 77u + (uint64_t)s);
  }
  int total = layers * 7;
  ftq_qtensor *qs = calloc((size_t)total, sizeof *qs);
  ftq_qconfig cfg = {FTQ_QSCHEME_NF4, 64, 1, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
  double best = 1e30;
  size_t held = 0;
  for (int round = 0; round < (quick ? 1 : 3); round++) {
    TRY(ftq_context_synchronize(ctx));
    double t0 = now_ms();
    int k = 0;
    for (int l = 0; l < layers; l++)
      for (int s = 0; s < 3; s++)
        for (int c = 0; c < counts[s]; c++)
          TRY(ftq_qtensor_quantize(ctx, &cfg, srcs[s].ptr, FTQ_DTYPE_BF16, 2, shapes[s], FTQ_MEM_WEIGHTS, "w", &qs[k++]));
    TRY(ftq_context_synchronize(ctx));
    double ms = now_ms() - t0;
    if (ms < best) best = ms;
    held = 0;
    for (int i = 0; i < total; i++) {
      held += ftq_qtensor_bytes(&qs[i]);
      ftq_qtensor_release(&qs[i]);
    }
  }
  int64_t params = 0;
  for (int s = 0; s < 3; s++) params += (int64_t)layers * counts[s] * shapes[s][0] * shapes[s][1];
  printf("{\"bench\": \"quantize_7b\", \"device\": \"%s\", \"scheme\": \"nf4\", \"blocksize\": 64, \"double_quant\": true, "
         "\"in\": \"bf16\", \"tensors\": %d, \"params\": %lld, \"quantized_bytes\": %zu, \"best_s\": %.4f}\n",
         name, total, (long long)params, held, best / 1e3);
  for (int s = 0; s < 3; s++) ftq_buffer_free(ctx, &srcs[s]);
  free(qs);
  ftq_context_destroy(ctx);
  return 0;
}
