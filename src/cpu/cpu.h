/* CPU backend internals shared by its files. */
#ifndef FTQ_CPU_CPU_H
#define FTQ_CPU_CPU_H

#include "backend.h"
#include "core/threads.h"

typedef struct ftq_cpu {
  ftq_threadpool *pool;
  int num_threads;
} ftq_cpu;

ftq_status ftq_cpu_gemm(void *be, const ftq_gemm_args *args);

/* One f32 GEMM, row-major: C = alpha op(A) op(B) + beta C (the model
 * operations' shorthand for ftq_cpu_gemm). */
static inline ftq_status ftq_cpu_mm(void *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                    int64_t ldc) {
  ftq_gemm_args g = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta,
                     .a = a, .a_type = FTQ_DTYPE_F32, .lda = lda, .b = b, .b_type = FTQ_DTYPE_F32, .ldb = ldb,
                     .c = c, .c_type = FTQ_DTYPE_F32, .ldc = ldc, .batch = 1};
  return ftq_cpu_gemm(be, &g);
}

/* Reads element i of a float buffer of type t as fp32. */
float ftq_cpu_load(const void *x, ftq_dtype t, size_t i);



ftq_status ftq_cpu_adamw(void *be, const ftq_adamw_args *args);
/* Model operations (ops_*.c); see backend.h for their contracts. */
ftq_status ftq_cpu_embedding(void *be, const int32_t *ids, int64_t n, const void *table, ftq_dtype type,
                             int64_t vocab, int64_t dim, float *out);
ftq_status ftq_cpu_rmsnorm(void *be, int64_t rows, int64_t dim, float eps, const float *x, const float *delta,
                           float *sum, const void *w, ftq_dtype wt, float *y, float *rstd);
ftq_status ftq_cpu_rmsnorm_backward(void *be, int64_t rows, int64_t dim, const float *x, const void *w, ftq_dtype wt,
                                    const float *rstd, const float *dy, float *dx, int accumulate);
ftq_status ftq_cpu_linear(void *be, const ftq_linear_args *args);
ftq_status ftq_cpu_linear_backward(void *be, const ftq_linear_args *args);
ftq_status ftq_cpu_rope(void *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                        const int32_t *positions, const float *inv_freq, int inverse);
ftq_status ftq_cpu_attention(void *be, const ftq_attention_args *args);
ftq_status ftq_cpu_attention_backward(void *be, const ftq_attention_args *args);
ftq_status ftq_cpu_swiglu(void *be, size_t n, const float *gate, const float *up, float *out);
ftq_status ftq_cpu_swiglu_backward(void *be, size_t n, const float *gate, const float *up, const float *dout,
                                   float *dgate, float *dup);
ftq_status ftq_cpu_lm_head(void *be, const ftq_lm_head_args *args);

/* The plain-C GEMM, always built: the fallback without BLAS and the
 * independent check of the BLAS path in tests. */
ftq_status ftq_cpu_gemm_plain(ftq_cpu *cpu, const ftq_gemm_args *args);
#endif /* FTQ_CPU_CPU_H */
