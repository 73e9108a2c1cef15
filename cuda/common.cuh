// Shared by every file of the CUDA module: the host services (error text,
// logging), error-checking macros and the per-context state.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdarg.h>

#include "backend.h"

// The host table libftq handed to the module at load (see module.cu).
extern const ftq_host_api *g_ftq_host;

// Sets the thread's error message in libftq and returns `status`.
ftq_status ftq_cuda_error(ftq_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

// Turns a failed CUDA runtime call into FTQ_ERR_CUDA (or the OOM status)
// naming the call, the error and where it happened.
ftq_status ftq_cuda_status(cudaError_t err, const char *what, const char *file, int line);
ftq_status ftq_cublas_status(cublasStatus_t st, const char *what, const char *file, int line);

#define FTQ_CUDA_TRY(call)                                                        \
  do {                                                                            \
    cudaError_t ftq_e_ = (call);                                                  \
    if (ftq_e_ != cudaSuccess) return ftq_cuda_status(ftq_e_, #call, __FILE__, __LINE__); \
  } while (0)

#define FTQ_CUBLAS_TRY(call)                                                          \
  do {                                                                                \
    cublasStatus_t ftq_s_ = (call);                                                   \
    if (ftq_s_ != CUBLAS_STATUS_SUCCESS) return ftq_cublas_status(ftq_s_, #call, __FILE__, __LINE__); \
  } while (0)

// Checks the launch of the kernel just queued.
#define FTQ_CUDA_LAUNCH_CHECK(name) FTQ_CUDA_TRY(cudaGetLastError())

#define FTQ_TRY_CU(expr)              \
  do {                                \
    ftq_status ftq_st_ = (expr);      \
    if (ftq_st_ != FTQ_OK) return ftq_st_; \
  } while (0)

struct ftq_gemm_cache;  // gemm.cu

// Opt-in per-operation GPU time (FTQ_CUDA_PROFILE=k at context creation):
// each profiled scope records events around its work and waits for them,
// so the figures are exact but the run is slower; the totals count from
// the k-th synchronize call of the context on (k = 1: from the start, so
// warm-up work can be left out) and are logged (INFO) when the context is
// destroyed. Scopes may nest (times inclusive).
enum ftq_prof_id {
  FTQ_PROF_EMBEDDING, FTQ_PROF_RMSNORM, FTQ_PROF_RMSNORM_BWD, FTQ_PROF_LINEAR, FTQ_PROF_LINEAR_BWD,
  FTQ_PROF_WEIGHT, FTQ_PROF_BASE_GEMM, FTQ_PROF_LORA, FTQ_PROF_DROPOUT, FTQ_PROF_ROPE, FTQ_PROF_ATTENTION, FTQ_PROF_ATTENTION_BWD,
  FTQ_PROF_SWIGLU, FTQ_PROF_SWIGLU_BWD, FTQ_PROF_LM_HEAD, FTQ_PROF_ADAMW, FTQ_PROF_REDUCE, FTQ_PROF_COUNT
};
struct ftq_prof {
  int on, depth;
  long syncs, reset_at;
  cudaEvent_t start[8], stop[8];
  double ms[FTQ_PROF_COUNT];
  long calls[FTQ_PROF_COUNT];
};

// Per-context state of the CUDA backend.
struct ftq_cuda {
  int device;
  const ftq_context *ctx;  // for logging
  cudaStream_t stream;
  cublasLtHandle_t lt;
  void *workspace;
  size_t workspace_bytes;
  double *reduce_partials;  // device scratch for reductions (kReduceBlocks + 1)
  double *reduce_result_host;  // pinned, one value
  ftq_gemm_cache *gemm_cache;
  int sm_count;
  int cc_major;  // compute capability (PDL launches need 9+)
  // the codes the last quantize_4bit wrote, until the stream is synchronised:
  // a PDL dequantize of them must wait for the previous kernel before reading
  const void *q4_fresh;
  // the model operations' small results: [0] an int flag (first bad index),
  // [8..) doubles (the LM head's loss sum and count); device and pinned host
  void *op_scratch;
  void *op_scratch_host;
  ftq_prof prof;
};

// Times the enclosing block on the context's stream when profiling is on.
struct FtqProfScope {
  ftq_cuda *c;
  int id, level;
  FtqProfScope(ftq_cuda *cu, int which) : c(cu), id(which), level(-1) {
    if (!c->prof.on || c->prof.depth >= 8) return;
    level = c->prof.depth++;
    cudaEventRecord(c->prof.start[level], c->stream);
  }
  ~FtqProfScope() {
    if (level < 0) return;
    float ms = 0;
    cudaEventRecord(c->prof.stop[level], c->stream);
    if (cudaEventSynchronize(c->prof.stop[level]) == cudaSuccess &&
        cudaEventElapsedTime(&ms, c->prof.start[level], c->prof.stop[level]) == cudaSuccess) {
      c->prof.ms[id] += ms;
      c->prof.calls[id]++;
    }
    cudaGetLastError();
    c->prof.depth--;
  }
};
#define FTQ_PROF_CAT2(a, b) a##b
#define FTQ_PROF_CAT(a, b) FTQ_PROF_CAT2(a, b)
#define FTQ_PROFILE(c, id) FtqProfScope FTQ_PROF_CAT(ftq_prof_scope_, __LINE__)(c, id)

constexpr size_t kOpScratchBytes = 64;

constexpr int kReduceBlocks = 1024;

// Makes the context's device current for this thread.
static inline ftq_status ftq_cuda_enter(ftq_cuda *c) {
  FTQ_CUDA_TRY(cudaSetDevice(c->device));
  return FTQ_OK;
}

// gemm.cu
ftq_status ftq_cuda_gemm(void *be, const ftq_gemm_args *args);
ftq_status ftq_cuda_gemm_cache_create(ftq_gemm_cache **out);
void ftq_cuda_gemm_cache_destroy(ftq_gemm_cache *cache);

// elementwise.cu
ftq_status ftq_cuda_fill(void *be, void *x, ftq_dtype type, size_t n, float value);
ftq_status ftq_cuda_convert(void *be, void *dst, ftq_dtype dst_type, const void *src, ftq_dtype src_type, size_t n);
ftq_status ftq_cuda_axpby(void *be, size_t n, float a, const float *x, float b, float *y);
ftq_status ftq_cuda_reduce(void *be, ftq_reduce_op op, const void *x, ftq_dtype type, size_t n, double *result);

// optim.cu
ftq_status ftq_cuda_adamw(void *be, const ftq_adamw_args *args);

#ifdef FTQ_WITH_NCCL
// comm_nccl.cu: the backend table's communicator entries
ftq_status ftq_cuda_comm_id_create(unsigned char *payload, size_t len);
ftq_status ftq_cuda_comm_create(void *be, const unsigned char *payload, size_t len, int rank, int size,
                                double timeout_s, void **impl, const ftq_comm_ops **ops);
#endif

// Grid size for a grid-stride loop over n elements.
static inline unsigned ftq_grid_for(size_t n, int threads, const ftq_cuda *c) {
  size_t blocks = (n + (size_t)threads - 1) / (size_t)threads;
  size_t cap = (size_t)c->sm_count * 32;
  if (blocks > cap) blocks = cap;
  return blocks ? (unsigned)blocks : 1u;
}
