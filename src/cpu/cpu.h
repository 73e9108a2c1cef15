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

/* Reads element i of a float buffer of type t as fp32. */
float ftq_cpu_load(const void *x, ftq_dtype t, size_t i);



ftq_status ftq_cpu_adamw(void *be, const ftq_adamw_args *args);

/* The plain-C GEMM, always built: the fallback without BLAS and the
 * independent check of the BLAS path in tests. */
ftq_status ftq_cpu_gemm_plain(ftq_cpu *cpu, const ftq_gemm_args *args);
#endif /* FTQ_CPU_CPU_H */
