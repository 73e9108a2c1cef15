// The CUDA module's entry point and the backend table: lifecycle, memory
// and copies. Operations live in their own files (gemm.cu, elementwise.cu,
// quant.cu, optim.cu, and the model operations in norm.cu, linear.cu,
// attention.cu, lm_head.cu).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "ops.cuh"
#include "quant.cuh"
#include "libftq/ftq_version.h"

const ftq_host_api *g_ftq_host;

ftq_status ftq_cuda_error(ftq_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ftq_status st = g_ftq_host->verror(status, fmt, ap);
  va_end(ap);
  return st;
}

ftq_status ftq_cuda_status(cudaError_t err, const char *what, const char *file, int line) {
  cudaGetLastError();  // clear a non-sticky error so later calls start clean
  ftq_status st = FTQ_ERR_CUDA;
  if (err == cudaErrorMemoryAllocation) st = FTQ_ERR_DEVICE_OUT_OF_MEMORY;
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || err == cudaErrorInvalidDevice)
    st = FTQ_ERR_NO_DEVICE;
  const char *base = strrchr(file, '/');
  return ftq_cuda_error(st, "CUDA error %s (%s) in %s at %s:%d", cudaGetErrorName(err), cudaGetErrorString(err),
                        what, base ? base + 1 : file, line);
}

ftq_status ftq_cublas_status(cublasStatus_t s, const char *what, const char *file, int line) {
  const char *base = strrchr(file, '/');
  return ftq_cuda_error(s == CUBLAS_STATUS_ALLOC_FAILED ? FTQ_ERR_DEVICE_OUT_OF_MEMORY : FTQ_ERR_CUBLAS,
                        "cuBLAS error %d (%s) in %s at %s:%d", (int)s, cublasLtGetStatusString(s), what,
                        base ? base + 1 : file, line);
}

static void cuda_log(const ftq_cuda *c, ftq_log_level level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  g_ftq_host->log(c->ctx, level, msg);
}

// ---------------------------------------------------------------------------
// lifecycle

static ftq_status cuda_device_count(int *count) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *count = 0;
    return ftq_cuda_status(e, "cudaGetDeviceCount", __FILE__, __LINE__);
  }
  *count = n;
  return FTQ_OK;
}

static void cuda_destroy(void *be);

static ftq_status cuda_create(const ftq_backend_config *cfg, void **out, char *name, size_t len) {
  *out = nullptr;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess)
    return ftq_cuda_error(FTQ_ERR_NO_DEVICE, "no usable CUDA device: %s (%s)", cudaGetErrorName(e),
                          cudaGetErrorString(e));
  if (cfg->device_index >= n)
    return ftq_cuda_error(FTQ_ERR_NO_DEVICE, "CUDA device %d requested but %d device%s present", cfg->device_index,
                          n, n == 1 ? " is" : "s are");
  ftq_cuda *c = (ftq_cuda *)calloc(1, sizeof(ftq_cuda));
  if (!c) return ftq_cuda_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for the CUDA context");
  c->device = cfg->device_index;
  c->ctx = cfg->ctx;
  *out = c;  // from here cuda_destroy() cleans up whatever was made
  ftq_status st = FTQ_OK;
#define STEP(x)                   \
  if ((st = (x)) != FTQ_OK) {     \
    cuda_destroy(c);              \
    *out = nullptr;               \
    return st;                    \
  }
  STEP(ftq_cuda_enter(c));
  cudaDeviceProp prop;
  if ((e = cudaGetDeviceProperties(&prop, c->device)) != cudaSuccess) {
    STEP(ftq_cuda_status(e, "cudaGetDeviceProperties", __FILE__, __LINE__));
  }
  c->sm_count = prop.multiProcessorCount;
  c->cc_major = prop.major;
  if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
    STEP(ftq_cuda_status(e, "cudaStreamCreate", __FILE__, __LINE__));
  cublasStatus_t s = cublasLtCreate(&c->lt);
  if (s != CUBLAS_STATUS_SUCCESS) STEP(ftq_cublas_status(s, "cublasLtCreate", __FILE__, __LINE__));
  c->workspace_bytes = cfg->workspace_bytes;
  if (c->workspace_bytes && (e = cudaMalloc(&c->workspace, c->workspace_bytes)) != cudaSuccess)
    STEP(ftq_cuda_status(e, "cudaMalloc(cuBLASLt workspace)", __FILE__, __LINE__));
  if ((e = cudaMalloc(&c->reduce_partials, sizeof(double) * (kReduceBlocks + 1))) != cudaSuccess)
    STEP(ftq_cuda_status(e, "cudaMalloc(reduction scratch)", __FILE__, __LINE__));
  if ((e = cudaMallocHost(&c->reduce_result_host, sizeof(double))) != cudaSuccess)
    STEP(ftq_cuda_status(e, "cudaMallocHost(reduction result)", __FILE__, __LINE__));
  if ((e = cudaMalloc(&c->op_scratch, kOpScratchBytes)) != cudaSuccess)
    STEP(ftq_cuda_status(e, "cudaMalloc(operation scratch)", __FILE__, __LINE__));
  if ((e = cudaMallocHost(&c->op_scratch_host, kOpScratchBytes)) != cudaSuccess)
    STEP(ftq_cuda_status(e, "cudaMallocHost(operation results)", __FILE__, __LINE__));
  STEP(ftq_cuda_gemm_cache_create(&c->gemm_cache));
  const char *prof = getenv("FTQ_CUDA_PROFILE");
  if (prof && *prof && strcmp(prof, "0") != 0) {
    for (int i = 0; i < 8; i++) {
      if ((e = cudaEventCreate(&c->prof.start[i])) != cudaSuccess || (e = cudaEventCreate(&c->prof.stop[i])) != cudaSuccess)
        STEP(ftq_cuda_status(e, "cudaEventCreate(profiler)", __FILE__, __LINE__));
    }
    c->prof.on = 1;
    c->prof.reset_at = atol(prof);
  }
#undef STEP
  snprintf(name, len, "cuda:%d %s (sm_%d%d, %.1f GiB)", c->device, prop.name, prop.major, prop.minor,
           (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  cuda_log(c, FTQ_LOG_DEBUG, "CUDA context on %s: %d SMs, cuBLASLt workspace %zu bytes", name, c->sm_count,
           c->workspace_bytes);
  return FTQ_OK;
}

static const char *const k_prof_names[FTQ_PROF_COUNT] = {
    "embedding", "rmsnorm", "rmsnorm_backward", "linear", "linear_backward", "  weight (dequantize)",
    "  base gemm (incl. activation rounding)", "  lora (incl. dropout)", "    dropout", "rope", "attention", "attention_backward",
    "swiglu", "swiglu_backward", "lm_head", "adamw", "reduce"};

static void prof_report(ftq_cuda *c) {
  double total = 0;
  for (int i = 0; i < FTQ_PROF_COUNT; i++)
    if (i != FTQ_PROF_WEIGHT && i != FTQ_PROF_BASE_GEMM && i != FTQ_PROF_LORA && i != FTQ_PROF_DROPOUT)
      total += c->prof.ms[i];
  cuda_log(c, FTQ_LOG_INFO, "CUDA profile: %.1f ms of GPU time in profiled operations", total);
  for (int i = 0; i < FTQ_PROF_COUNT; i++)
    if (c->prof.calls[i])
      cuda_log(c, FTQ_LOG_INFO, "CUDA profile: %-40s %9.2f ms %7ld calls %8.1f us/call", k_prof_names[i],
               c->prof.ms[i], c->prof.calls[i], 1e3 * c->prof.ms[i] / (double)c->prof.calls[i]);
}

static void cuda_destroy(void *be) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!c) return;
  cudaSetDevice(c->device);
  if (c->stream) cudaStreamSynchronize(c->stream);
  if (c->prof.on) prof_report(c);
  for (int i = 0; i < 8; i++) {
    if (c->prof.start[i]) cudaEventDestroy(c->prof.start[i]);
    if (c->prof.stop[i]) cudaEventDestroy(c->prof.stop[i]);
  }
  ftq_cuda_gemm_cache_destroy(c->gemm_cache);
  if (c->lt) cublasLtDestroy(c->lt);
  cudaFree(c->workspace);
  cudaFree(c->reduce_partials);
  cudaFreeHost(c->reduce_result_host);
  cudaFree(c->op_scratch);
  cudaFreeHost(c->op_scratch_host);
  if (c->stream) cudaStreamDestroy(c->stream);
  cudaGetLastError();
  free(c);
}

static ftq_status cuda_device_memory(void *be, size_t *free_bytes, size_t *total_bytes) {
  ftq_cuda *c = (ftq_cuda *)be;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_CUDA_TRY(cudaMemGetInfo(free_bytes, total_bytes));
  return FTQ_OK;
}

static ftq_status cuda_synchronize(void *be) {
  ftq_cuda *c = (ftq_cuda *)be;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_CUDA_TRY(cudaStreamSynchronize(c->stream));
  c->q4_fresh = nullptr;
  if (c->prof.on && ++c->prof.syncs == c->prof.reset_at) {  // leave the warm-up out of the profile
    memset(c->prof.ms, 0, sizeof c->prof.ms);
    memset(c->prof.calls, 0, sizeof c->prof.calls);
  }
  return FTQ_OK;
}

// ---------------------------------------------------------------------------
// memory

static ftq_status cuda_alloc(void *be, size_t bytes, void **ptr) {
  ftq_cuda *c = (ftq_cuda *)be;
  *ptr = nullptr;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_CUDA_TRY(cudaMalloc(ptr, bytes));
  return FTQ_OK;
}

static void cuda_free(void *be, void *ptr) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!ptr) return;
  cudaSetDevice(c->device);
  // memory may still be in use by queued work on the stream
  cudaStreamSynchronize(c->stream);
  cudaFree(ptr);
}

static ftq_status cuda_host_alloc(void *be, size_t bytes, void **ptr) {
  ftq_cuda *c = (ftq_cuda *)be;
  *ptr = nullptr;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  cudaError_t e = cudaMallocHost(ptr, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return ftq_cuda_error(FTQ_ERR_OUT_OF_MEMORY, "cannot pin %zu bytes of host memory: %s", bytes,
                          cudaGetErrorString(e));
  }
  return FTQ_OK;
}

static void cuda_host_free(void *be, void *ptr) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!ptr) return;
  cudaSetDevice(c->device);
  cudaStreamSynchronize(c->stream);
  cudaFreeHost(ptr);
}

// Copies are ordered on the context's stream. Those that touch host
// memory complete before return, so host buffers may be reused at once;
// device-to-device copies stay queued like any other operation.
static ftq_status cuda_copy(void *be, void *dst, const void *src, size_t bytes, ftq_copy_kind kind) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!bytes) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  cudaMemcpyKind k = kind == FTQ_COPY_H2D ? cudaMemcpyHostToDevice
                     : kind == FTQ_COPY_D2H ? cudaMemcpyDeviceToHost
                                            : cudaMemcpyDeviceToDevice;
  FTQ_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, k, c->stream));
  if (kind != FTQ_COPY_D2D) {
    FTQ_CUDA_TRY(cudaStreamSynchronize(c->stream));
    c->q4_fresh = nullptr;  // everything queued is done
  }
  return FTQ_OK;
}

// ---------------------------------------------------------------------------
// the table and the entry point

static ftq_backend make_table() {
  ftq_backend t;
  memset(&t, 0, sizeof t);
  t.abi = FTQ_BACKEND_ABI;
  t.size = sizeof(ftq_backend);
  t.name = "cuda";
  t.device_count = cuda_device_count;
  t.create = cuda_create;
  t.destroy = cuda_destroy;
  t.device_memory = cuda_device_memory;
  t.synchronize = cuda_synchronize;
  t.alloc = cuda_alloc;
  t.free = cuda_free;
  t.host_alloc = cuda_host_alloc;
  t.host_free = cuda_host_free;
  t.copy = cuda_copy;
  t.fill = ftq_cuda_fill;
  t.convert = ftq_cuda_convert;
  t.axpby = ftq_cuda_axpby;
  t.reduce = ftq_cuda_reduce;
  t.gemm = ftq_cuda_gemm;
  t.adamw = ftq_cuda_adamw;
  t.quantize_4bit = ftq_cuda_quantize_4bit;
  t.quantize_8bit = ftq_cuda_quantize_8bit;
  t.dequantize_4bit = ftq_cuda_dequantize_4bit;
  t.quantize_int8 = ftq_cuda_quantize_int8;
  t.dequantize_int8 = ftq_cuda_dequantize_int8;
  t.mask_select = ftq_cuda_mask_select;
  t.embedding = ftq_cuda_embedding;
  t.rmsnorm = ftq_cuda_rmsnorm;
  t.rmsnorm_backward = ftq_cuda_rmsnorm_backward;
  t.linear = ftq_cuda_linear;
  t.linear_backward = ftq_cuda_linear_backward;
  t.rope = ftq_cuda_rope;
  t.attention = ftq_cuda_attention;
  t.attention_backward = ftq_cuda_attention_backward;
  t.swiglu = ftq_cuda_swiglu;
  t.swiglu_backward = ftq_cuda_swiglu_backward;
  t.lm_head = ftq_cuda_lm_head;
#ifdef FTQ_WITH_NCCL
  t.comm_id_create = ftq_cuda_comm_id_create;
  t.comm_create = ftq_cuda_comm_create;
#endif  // without NCCL both stay NULL and libftq reports FTQ_ERR_UNSUPPORTED
  return t;
}

static const ftq_backend g_table = make_table();

extern "C" __attribute__((visibility("default"))) const ftq_backend *ftq_cuda_module_entry(const ftq_host_api *host) {
  if (!host || host->abi != FTQ_BACKEND_ABI || !host->dequantize) return nullptr;
  g_ftq_host = host;
  if (strcmp(host->version, FTQ_VERSION_STRING) != 0) {
    ftq_cuda_error(FTQ_ERR_NO_DEVICE, "the CUDA module is version %s but libftq is %s; install matching versions",
                   FTQ_VERSION_STRING, host->version);
    return nullptr;
  }
  return &g_table;
}
