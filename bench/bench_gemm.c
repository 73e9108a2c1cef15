/* GEMM throughput of a backend on Llama-shaped problems, as JSON lines.
 *
 *   bench_gemm [device] [--quick]
 *
 * device: "cpu" (default) or "cuda:N". Each line: device, dtype, m, n, k,
 * median milliseconds over the repeats, TFLOP/s. Inputs are random (never
 * zeros: they run faster than real data) and rotate among several buffers
 * so repeated runs do not measure the L2 cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/context.h"
#include "core/half.h"


#define ROT 3

int main(int argc, char **argv) {
  const char *dev = "cpu";
  int quick = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) quick = 1;
    else dev = argv[i];
  }
  ftq_context *ctx;
  if (ftq_context_create(dev, NULL, &ctx) != FTQ_OK) {
    fprintf(stderr, "bench_gemm: %s\n", ftq_last_error());
    return 1;
  }
  int cuda = ftq_context_device_type(ctx) == FTQ_DEVICE_CUDA;
  /* Llama-2-7B linear layers at 2048 tokens (m = tokens), and a LoRA-rank product */
  int shapes[][3] = {{2048, 4096, 4096}, {2048, 11008, 4096}, {2048, 4096, 11008}, {2048, 64, 4096}, {2048, 4096, 64}};
  int nshapes = 5;
  if (!cuda) { /* CPU: scaled down to stay quick */
    static int cpu_shapes[][3] = {{256, 576, 576}, {256, 1536, 576}, {256, 576, 1536}};
    memcpy(shapes, cpu_shapes, sizeof cpu_shapes);
    nshapes = 3;
  }
  ftq_dtype types[] = {FTQ_DTYPE_F32, FTQ_DTYPE_BF16, FTQ_DTYPE_F16};
  int ntypes = cuda ? 3 : 1;
  int reps = quick ? 5 : (cuda ? 50 : 5);
  for (int t = 0; t < ntypes; t++)
    for (int s = 0; s < nshapes; s++) {
      int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
      size_t es = ftq_dtype_size(types[t]);
      ftq_buffer a[ROT], b[ROT], c;
      size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
      float *host = malloc(4 * (na > nb ? na : nb));
      uint16_t *h16 = malloc(2 * (na > nb ? na : nb));
      uint64_t seed = 1;
      int ok = ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, nc * 4, "C", &c) == FTQ_OK;
      for (int r = 0; r < ROT && ok; r++) {
        ok = ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, na * es, "A", &a[r]) == FTQ_OK &&
             ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, nb * es, "B", &b[r]) == FTQ_OK;
        for (int which = 0; which < 2 && ok; which++) {
          size_t cnt = which ? nb : na;
          for (size_t i = 0; i < cnt; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            host[i] = (float)((seed >> 40) / 16777216.0 - 0.5);
            h16[i] = types[t] == FTQ_DTYPE_BF16 ? ftq_f32_to_bf16(host[i]) : ftq_f32_to_f16(host[i]);
          }
          ok = ctx->be->copy(ctx->be_ctx, which ? b[r].ptr : a[r].ptr, es == 4 ? (void *)host : (void *)h16, cnt * es,
                             FTQ_COPY_H2D) == FTQ_OK;
        }
      }
      if (!ok) {
        fprintf(stderr, "bench_gemm: %s\n", ftq_last_error());
        return 1;
      }
      ftq_gemm_args g = {0};
      g.m = m, g.n = n, g.k = k, g.lda = k, g.ldb = n, g.ldc = n, g.alpha = 1, g.beta = 0, g.batch = 1;
      g.a_type = g.b_type = types[t], g.c_type = FTQ_DTYPE_F32;
      double *ms = malloc(sizeof(double) * reps);
      /* several products per sample so launch latency and the host clock
       * do not weigh on one short kernel */
      const int inner = cuda ? 10 : 1;
      for (int r = -2; r < reps; r++) { /* two warm-ups */
        ftq_context_synchronize(ctx);
        double t0 = now_ms();
        for (int q = 0; q < inner; q++) {
          g.a = a[q % ROT].ptr, g.b = b[(q + 1) % ROT].ptr, g.c = c.ptr;
          if (ctx->be->gemm(ctx->be_ctx, &g) != FTQ_OK) {
            fprintf(stderr, "bench_gemm: %s\n", ftq_last_error());
            return 1;
          }
        }
        if (ftq_context_synchronize(ctx) != FTQ_OK) {
          fprintf(stderr, "bench_gemm: %s\n", ftq_last_error());
          return 1;
        }
        if (r >= 0) ms[r] = (now_ms() - t0) / inner;
      }
      qsort(ms, reps, sizeof *ms, cmp_double);
      double med = ms[reps / 2];
      printf("{\"bench\": \"gemm\", \"device\": \"%s\", \"dtype\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
             "\"median_ms\": %.4f, \"tflops\": %.2f}\n",
             ftq_context_device_name(ctx), ftq_dtype_name(types[t]), m, n, k, med, 2.0 * m * n * k / (med * 1e9));
      fflush(stdout);
      free(ms);
      free(host);
      free(h16);
      ftq_buffer_free(ctx, &c);
      for (int r = 0; r < ROT; r++) ftq_buffer_free(ctx, &a[r]), ftq_buffer_free(ctx, &b[r]);
    }
  ftq_context_destroy(ctx);
  return 0;
}
