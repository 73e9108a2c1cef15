// NCCL communicators: the "nccl" kind of ftq_comm (src/dist/comm.h) for
// CUDA contexts, reached through the backend table's comm_id_create and
// comm_create. Built only with FTQ_WITH_NCCL.
//
// Fault tolerance rests on NCCL's non-blocking mode: no NCCL call blocks,
// so every wait is a polling loop here that watches NCCL's error state, an
// abort from another thread and the communicator's timeout, and aborts the
// communicator (which stops its kernels) instead of hanging when a peer is
// gone. The collectives run on a communication stream of their own, ordered
// after the context's stream by events.
//
// libnccl is opened at run time, not linked: the module then still loads,
// and serves single-GPU work, on hosts without NCCL (docs/design.md §9.1);
// the communicator entries report FTQ_ERR_UNSUPPORTED there.
#ifdef FTQ_WITH_NCCL

#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <new>

#include "common.cuh"
#include "dist/comm.h"

static_assert(NCCL_UNIQUE_ID_BYTES <= FTQ_COMM_ID_SIZE - FTQ_COMM_PAYLOAD_OFFSET,
              "an NCCL unique id must fit in a communicator id's payload");

namespace {

// ---------------------------------------------------------------------------
// libnccl, opened on first use

// The entry points used, typed from nccl.h. NCCL 2.14 has them all (and
// non-blocking communicators).
struct NcclApi {
  decltype(&ncclGetVersion) GetVersion;
  decltype(&ncclGetUniqueId) GetUniqueId;
  decltype(&ncclCommInitRankConfig) CommInitRankConfig;
  decltype(&ncclCommGetAsyncError) CommGetAsyncError;
  decltype(&ncclCommFinalize) CommFinalize;
  decltype(&ncclCommDestroy) CommDestroy;
  decltype(&ncclCommAbort) CommAbort;
  decltype(&ncclGetErrorString) GetErrorString;
  decltype(&ncclGetLastError) GetLastError;
  decltype(&ncclGroupStart) GroupStart;
  decltype(&ncclGroupEnd) GroupEnd;
  decltype(&ncclAllReduce) AllReduce;
  decltype(&ncclBroadcast) Broadcast;
};
NcclApi nc;
int nc_version;
char nc_error[768];  // why NCCL is unusable; empty once loaded
pthread_once_t nc_once = PTHREAD_ONCE_INIT;

constexpr int kMinNcclVersion = 21400;  // 2.14.0, NCCL's version code

// Tries $FTQ_NCCL_LIBRARY, then libnccl.so.2 on the loader's path, then the
// folder of the NCCL the module was built with.
void nc_load_once() {
  const char *env = getenv("FTQ_NCCL_LIBRARY");
  const char *tries[3] = {env && *env ? env : nullptr, "libnccl.so.2",
#ifdef FTQ_NCCL_BUILD_DIR
                          FTQ_NCCL_BUILD_DIR "/libnccl.so.2"
#else
                          nullptr
#endif
  };
  void *h = nullptr;
  size_t used = 0;
  nc_error[0] = '\0';
  for (const char *path : tries) {
    if (!path) continue;
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h) break;
    const char *e = dlerror();
    used += (size_t)snprintf(nc_error + used, used < sizeof nc_error ? sizeof nc_error - used : 0, "%s%s",
                             used ? "; " : "", e ? e : path);
    if (used >= sizeof nc_error) used = sizeof nc_error - 1;
  }
  if (!h) return;  // nc_error says why
  const char *missing = nullptr;
#define FTQ_NCCL_SYM(field, name) \
  if (!missing && !(nc.field = reinterpret_cast<decltype(nc.field)>(dlsym(h, #name)))) missing = #name;
  FTQ_NCCL_SYM(GetVersion, ncclGetVersion)
  FTQ_NCCL_SYM(GetUniqueId, ncclGetUniqueId)
  FTQ_NCCL_SYM(CommInitRankConfig, ncclCommInitRankConfig)
  FTQ_NCCL_SYM(CommGetAsyncError, ncclCommGetAsyncError)
  FTQ_NCCL_SYM(CommFinalize, ncclCommFinalize)
  FTQ_NCCL_SYM(CommDestroy, ncclCommDestroy)
  FTQ_NCCL_SYM(CommAbort, ncclCommAbort)
  FTQ_NCCL_SYM(GetErrorString, ncclGetErrorString)
  FTQ_NCCL_SYM(GetLastError, ncclGetLastError)
  FTQ_NCCL_SYM(GroupStart, ncclGroupStart)
  FTQ_NCCL_SYM(GroupEnd, ncclGroupEnd)
  FTQ_NCCL_SYM(AllReduce, ncclAllReduce)
  FTQ_NCCL_SYM(Broadcast, ncclBroadcast)
#undef FTQ_NCCL_SYM
  if (!missing && (nc.GetVersion(&nc_version) != ncclSuccess || nc_version < kMinNcclVersion)) missing = "version";
  if (missing) {
    if (strcmp(missing, "version") == 0)
      snprintf(nc_error, sizeof nc_error, "the NCCL found is version code %d, libftq needs 2.14 or newer", nc_version);
    else
      snprintf(nc_error, sizeof nc_error, "the NCCL found lacks %s (libftq needs 2.14 or newer)", missing);
    dlclose(h);
    return;
  }
  nc_error[0] = '\0';
}

ftq_status nc_load() {
  pthread_once(&nc_once, nc_load_once);
  if (nc_error[0])
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "NCCL is not available: %s; install NCCL 2.14 or newer (libnccl.so.2) "
                          "or set FTQ_NCCL_LIBRARY to its path", nc_error);
  return FTQ_OK;
}

// ---------------------------------------------------------------------------
// communicators

// Host values travel through a fixed staging buffer, chunk by chunk, so the
// communicator never reallocates device memory after creation (cudaFree may
// wait for the device, which may be waiting for a dead peer).
constexpr size_t kHostChunk = 4096;

struct NcclComm {
  ftq_cuda *cu = nullptr;  // the context's backend state: device, stream, log
  int rank = 0, size = 0;
  double timeout_s = 0;
  // Guards `comm`: ftq_comm_abort may come from another thread, and
  // ncclCommAbort frees the communicator, so every NCCL call on it holds the
  // lock (they are all short: the communicator never blocks).
  std::mutex mu;
  ncclComm_t comm = nullptr;  // null once aborted or destroyed
  std::atomic<int> aborted{0};
  cudaStream_t stream = nullptr;  // communication stream
  cudaEvent_t ready = nullptr;    // the context's stream -> the communication stream
  cudaEvent_t done = nullptr;     // the communication stream -> the host and the context's stream
  double *dev_vals = nullptr;     // kHostChunk doubles, device
  double *host_vals = nullptr;    // kHostChunk doubles, pinned
};

double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// Polling interval: yield at first (most collectives end within
// microseconds of the call), then sleep longer, up to 1 ms.
void poll_pause(int *polls) {
  const int k = (*polls)++;
  if (k < 64) {
    sched_yield();
    return;
  }
  const long us = k < 256 ? 50 : k < 1024 ? 200 : 1000;
  struct timespec ts = {0, us * 1000};
  nanosleep(&ts, nullptr);
}

void comm_log(const NcclComm *n, ftq_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void comm_log(const NcclComm *n, ftq_log_level level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  g_ftq_host->log(n->cu->ctx, level, msg);
}

// NCCL's own text about its last error (the same thread or a background one).
const char *nccl_detail() {
  const char *s = nc.GetLastError(nullptr);
  return s && *s ? s : "none";
}

// A failed NCCL call or an error state. Remote and system errors mean a peer
// (or the link to it) failed: FTQ_ERR_COMM; anything else is FTQ_ERR_NCCL.
ftq_status nccl_error(const NcclComm *n, ncclResult_t r, const char *what, const char *call) {
  const bool peer = r == ncclRemoteError || r == ncclSystemError;
  return ftq_cuda_error(peer ? FTQ_ERR_COMM : FTQ_ERR_NCCL,
                        "NCCL %s, rank %d of %d: %s failed: %s (ncclResult_t %d)%s; NCCL's last error: %s", what, n->rank, n->size, call, nc.GetErrorString(r), (int)r,
                        peer ? "; a peer process exited or failed, or the connection to it broke" : "", nccl_detail());
}

ftq_status aborted_error(const NcclComm *n, const char *what) {
  return ftq_cuda_error(FTQ_ERR_COMM, "NCCL %s, rank %d of %d: the communicator was aborted (ftq_comm_abort or an "
                        "earlier failure)", what, n->rank, n->size);
}

ftq_status timeout_error(const NcclComm *n, const char *what, const char *call, bool joining) {
  if (joining)
    return ftq_cuda_error(FTQ_ERR_TIMEOUT, "NCCL communicator, rank %d of %d: joining timed out after %g s; ranks that "
                          "never joined stop the others here (every rank needs the same id and world size, and the "
                          "process that made the id must still run); NCCL's last error: %s", n->rank, n->size,
                          n->timeout_s, nccl_detail());
  return ftq_cuda_error(FTQ_ERR_TIMEOUT, "NCCL %s, rank %d of %d: %s not complete after %g s; a peer may have died, "
                        "hung or stopped calling the same collectives; NCCL's last error: %s", what, n->rank, n->size,
                        call, n->timeout_s, nccl_detail());
}

// Stops everything: sets the flag the polling loops watch, and aborts the
// NCCL communicator, which makes its kernels return. Safe from any thread
// and idempotent. A non-blocking communicator finishes the teardown in
// NCCL's own thread, so this returns at once.
void abort_comm(NcclComm *n) {
  n->aborted.store(1);
  std::lock_guard<std::mutex> lock(n->mu);
  if (!n->comm) return;
  int prev = -1;
  if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
  cudaSetDevice(n->cu->device);
  nc.CommAbort(n->comm);
  n->comm = nullptr;
  if (prev >= 0 && prev != n->cu->device) cudaSetDevice(prev);
  cudaGetLastError();
}

// A failure leaves the communicator aborted, so the peers stop too and no
// later call touches a broken NCCL state.
ftq_status finish(NcclComm *n, ftq_status st) {
  if (st != FTQ_OK) abort_comm(n);
  return st;
}

// NCCL's error state; ncclInProgress while a call goes on in its thread.
ftq_status query(NcclComm *n, const char *what, ncclResult_t *state) {
  ncclResult_t r;
  {
    std::lock_guard<std::mutex> lock(n->mu);
    if (!n->comm) return aborted_error(n, what);
    r = nc.CommGetAsyncError(n->comm, state);
  }
  if (r != ncclSuccess) return nccl_error(n, r, what, "ncclCommGetAsyncError");
  return FTQ_OK;
}

// In non-blocking mode a call may return ncclInProgress and go on in NCCL's
// thread; NCCL requires its state to reach ncclSuccess before the next call
// and before CUDA work is queued behind it on the stream. Polls until then,
// an error, an abort or the deadline.
ftq_status settle(NcclComm *n, const char *what, const char *call, double deadline, bool joining) {
  for (int polls = 0;;) {
    ncclResult_t state = ncclSuccess;
    FTQ_TRY_CU(query(n, what, &state));
    if (state == ncclSuccess) return FTQ_OK;
    if (state != ncclInProgress) return nccl_error(n, state, what, call);
    if (now_s() > deadline) return timeout_error(n, what, call, joining);
    poll_pause(&polls);
  }
}

// Polls the `done` event (recorded behind the work on the communication
// stream) and NCCL's error state until the work is complete, NCCL reports an
// error, the communicator is aborted or the deadline passes.
ftq_status await_done(NcclComm *n, const char *what, double deadline) {
  for (int polls = 0;;) {
    const cudaError_t e = cudaEventQuery(n->done);
    if (e != cudaSuccess && e != cudaErrorNotReady) {
      cudaGetLastError();
      return ftq_cuda_error(FTQ_ERR_CUDA, "NCCL %s, rank %d of %d: the communication stream failed: %s (%s)", what,
                            n->rank, n->size, cudaGetErrorName(e), cudaGetErrorString(e));
    }
    ncclResult_t state = ncclSuccess;
    FTQ_TRY_CU(query(n, what, &state));
    // checked after completion too: kernels stopped by an error complete
    if (state != ncclSuccess && state != ncclInProgress) return nccl_error(n, state, what, "the collective");
    if (e == cudaSuccess) return FTQ_OK;
    if (now_s() > deadline) return timeout_error(n, what, "the collective", false);
    poll_pause(&polls);
  }
}

// Queues one group of collectives on the communication stream: after the
// work queued so far on the context's stream when follow_context, and
// waiting until NCCL has queued the kernels (settle).
template <class Enqueue>
ftq_status issue(NcclComm *n, const char *what, const char *call, bool follow_context, Enqueue enqueue) {
  if (n->aborted.load()) return aborted_error(n, what);
  FTQ_TRY_CU(ftq_cuda_enter(n->cu));
  if (follow_context) {
    FTQ_CUDA_TRY(cudaEventRecord(n->ready, n->cu->stream));
    FTQ_CUDA_TRY(cudaStreamWaitEvent(n->stream, n->ready, 0));
  }
  const double deadline = now_s() + n->timeout_s;
  ncclResult_t r, first = ncclSuccess;
  {
    std::lock_guard<std::mutex> lock(n->mu);
    if (!n->comm) return aborted_error(n, what);
    r = nc.GroupStart();
    if (r == ncclSuccess) {
      first = enqueue(n->comm);  // the group is closed even after an error
      r = nc.GroupEnd();
    }
  }
  if (first != ncclSuccess && first != ncclInProgress) return nccl_error(n, first, what, call);
  if (r == ncclInProgress) return settle(n, what, call, deadline, false);
  if (r != ncclSuccess) return nccl_error(n, r, what, call);
  return FTQ_OK;
}

// ---------------------------------------------------------------------------
// the operations (ftq_comm_ops)

ftq_status nccl_allreduce_f32(void *impl, float *const *bufs, const size_t *counts, size_t n_bufs, const char *what) {
  NcclComm *n = (NcclComm *)impl;
  return finish(n, issue(n, what, "ncclAllReduce", true, [&](ncclComm_t comm) {
    ncclResult_t first = ncclSuccess;
    for (size_t i = 0; i < n_bufs; i++) {
      if (!counts[i]) continue;
      const ncclResult_t r = nc.AllReduce(bufs[i], bufs[i], counts[i], ncclFloat, ncclSum, comm, n->stream);
      if (first == ncclSuccess) first = r;
    }
    return first;
  }));
}

ftq_status nccl_broadcast(void *impl, void *const *bufs, const size_t *bytes, const int *roots, size_t n_bufs,
                          const char *what) {
  NcclComm *n = (NcclComm *)impl;
  for (size_t i = 0; i < n_bufs; i++)
    if (roots[i] < 0 || roots[i] >= n->size)
      return finish(n, ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "NCCL %s, rank %d of %d: buffer %zu has root %d, "
                                      "outside the ranks", what, n->rank, n->size, i, roots[i]));
  return finish(n, issue(n, what, "ncclBroadcast", true, [&](ncclComm_t comm) {
    ncclResult_t first = ncclSuccess;
    for (size_t i = 0; i < n_bufs; i++) {
      if (!bytes[i]) continue;
      const ncclResult_t r = nc.Broadcast(bufs[i], bufs[i], bytes[i], ncclUint8, roots[i], comm, n->stream);
      if (first == ncclSuccess) first = r;
    }
    return first;
  }));
}

ftq_status wait_impl(NcclComm *n, const char *what) {
  if (n->aborted.load()) return aborted_error(n, what);
  FTQ_TRY_CU(ftq_cuda_enter(n->cu));
  FTQ_CUDA_TRY(cudaEventRecord(n->done, n->stream));
  // the context's stream is ordered behind the collectives on the device;
  // the host polls so that a lost peer cannot block it
  FTQ_CUDA_TRY(cudaStreamWaitEvent(n->cu->stream, n->done, 0));
  return await_done(n, what, now_s() + n->timeout_s);
}

ftq_status nccl_wait(void *impl, const char *what) {
  NcclComm *n = (NcclComm *)impl;
  return finish(n, wait_impl(n, what));
}

ftq_status allreduce_host_impl(NcclComm *n, double *values, size_t count, ftq_comm_reduce op, const char *what) {
  const ncclRedOp_t nop = op == FTQ_COMM_MAX ? ncclMax : op == FTQ_COMM_MIN ? ncclMin : ncclSum;
  for (size_t off = 0; off < count; off += kHostChunk) {
    const size_t m = count - off < kHostChunk ? count - off : kHostChunk;
    if (n->aborted.load()) return aborted_error(n, what);
    FTQ_TRY_CU(ftq_cuda_enter(n->cu));
    memcpy(n->host_vals, values + off, m * sizeof(double));
    // host values depend on nothing queued on the context's stream
    FTQ_CUDA_TRY(cudaMemcpyAsync(n->dev_vals, n->host_vals, m * sizeof(double), cudaMemcpyHostToDevice, n->stream));
    FTQ_TRY_CU(issue(n, what, "ncclAllReduce", false, [&](ncclComm_t comm) {
      return nc.AllReduce(n->dev_vals, n->dev_vals, m, ncclDouble, nop, comm, n->stream);
    }));
    FTQ_CUDA_TRY(cudaMemcpyAsync(n->host_vals, n->dev_vals, m * sizeof(double), cudaMemcpyDeviceToHost, n->stream));
    FTQ_CUDA_TRY(cudaEventRecord(n->done, n->stream));
    FTQ_TRY_CU(await_done(n, what, now_s() + n->timeout_s));
    memcpy(values + off, n->host_vals, m * sizeof(double));
  }
  return FTQ_OK;
}

ftq_status nccl_allreduce_host(void *impl, double *values, size_t count, ftq_comm_reduce op, const char *what) {
  NcclComm *n = (NcclComm *)impl;
  return finish(n, allreduce_host_impl(n, values, count, op, what));
}

ftq_status nccl_barrier(void *impl, const char *what) {
  NcclComm *n = (NcclComm *)impl;
  double one = 1;
  FTQ_TRY_CU(nccl_allreduce_host(impl, &one, 1, FTQ_COMM_SUM, what));
  if (one != (double)n->size)
    return finish(n, ftq_cuda_error(FTQ_ERR_INTERNAL, "NCCL %s, rank %d of %d: the barrier counted %g ranks", what,
                                    n->rank, n->size, one));
  return FTQ_OK;
}

ftq_status nccl_check(void *impl) {
  NcclComm *n = (NcclComm *)impl;
  const char *what = "health check";
  if (n->aborted.load()) return aborted_error(n, what);
  ncclResult_t state = ncclSuccess;
  ftq_status st = query(n, what, &state);
  if (st == FTQ_OK && state != ncclSuccess && state != ncclInProgress)
    st = nccl_error(n, state, what, "an earlier operation (asynchronous error)");
  return finish(n, st);
}

void nccl_abort(void *impl) { abort_comm((NcclComm *)impl); }

// Leaves cleanly while healthy (ncclCommFinalize completes the issued
// work, bounded by the timeout), else aborts; then frees what the
// communicator made. It reports through the log, not the thread's error
// message, which may still describe the failure that led here.
void nccl_destroy(void *impl) {
  NcclComm *n = (NcclComm *)impl;
  if (!n) return;
  cudaSetDevice(n->cu->device);
  bool healthy;
  {
    std::lock_guard<std::mutex> lock(n->mu);
    healthy = n->comm && !n->aborted.load();
  }
  if (healthy) {
    const double deadline = now_s() + n->timeout_s;
    ncclResult_t r, state = ncclInProgress;
    {
      std::lock_guard<std::mutex> lock(n->mu);
      r = n->comm ? nc.CommFinalize(n->comm) : ncclInvalidUsage;
    }
    for (int polls = 0; (r == ncclSuccess || r == ncclInProgress) && state == ncclInProgress;) {
      {
        std::lock_guard<std::mutex> lock(n->mu);
        r = n->comm ? nc.CommGetAsyncError(n->comm, &state) : ncclInvalidUsage;
      }
      if (state != ncclInProgress || now_s() > deadline) break;
      poll_pause(&polls);
    }
    if (r == ncclSuccess && state == ncclSuccess) {
      std::lock_guard<std::mutex> lock(n->mu);
      // local and non-blocking after finalize; NCCL frees the rest in its thread
      nc.CommDestroy(n->comm);
      n->comm = nullptr;
    } else {
      const bool call_failed = r != ncclSuccess && r != ncclInProgress;
      comm_log(n, FTQ_LOG_WARN, "NCCL communicator, rank %d of %d: leaving cleanly %s (%s); aborting it instead",
               n->rank, n->size, !call_failed && state == ncclInProgress ? "timed out" : "failed",
               nc.GetErrorString(call_failed ? r : state));
    }
  }
  abort_comm(n);  // nothing left to do after a clean leave
  if (n->ready) cudaEventDestroy(n->ready);
  if (n->done) cudaEventDestroy(n->done);
  if (n->stream) cudaStreamDestroy(n->stream);
  cudaFree(n->dev_vals);
  cudaFreeHost(n->host_vals);
  cudaGetLastError();
  delete n;
}

const ftq_comm_ops kNcclOps = {
    "nccl",           nccl_allreduce_f32, nccl_broadcast, nccl_wait, nccl_allreduce_host,
    nccl_barrier,     nccl_check,         nccl_abort,     nccl_destroy,
};

// NVLink SHARP / multicast (NVLS) stays off: on shared hosts a program that
// uses it can take the GPUs out of service. Set before NCCL reads its
// environment; a host value other than 0 is overridden, with a warning.
void nvls_off(const ftq_context *ctx) {
  const char *v = getenv("NCCL_NVLS_ENABLE");
  if (v && strcmp(v, "0") == 0) return;
  if (v) {
    char msg[256];
    snprintf(msg, sizeof msg, "NCCL_NVLS_ENABLE=%.64s overridden to 0: libftq keeps NVLink SHARP / multicast off", v);
    g_ftq_host->log(ctx, FTQ_LOG_WARN, msg);
  }
  setenv("NCCL_NVLS_ENABLE", "0", 1);
}

ftq_status make_resources(NcclComm *n) {
  FTQ_CUDA_TRY(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
  FTQ_CUDA_TRY(cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming));
  FTQ_CUDA_TRY(cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming));
  FTQ_CUDA_TRY(cudaMalloc(&n->dev_vals, kHostChunk * sizeof(double)));
  FTQ_CUDA_TRY(cudaMallocHost(&n->host_vals, kHostChunk * sizeof(double)));
  return FTQ_OK;
}

ftq_status join(NcclComm *n, const unsigned char *payload) {
  ncclUniqueId id;
  memcpy(id.internal, payload, NCCL_UNIQUE_ID_BYTES);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; the waits here poll
  const double deadline = now_s() + n->timeout_s;
  ncclComm_t comm = nullptr;
  const ncclResult_t r = nc.CommInitRankConfig(&comm, n->size, id, n->rank, &config);
  {
    std::lock_guard<std::mutex> lock(n->mu);
    n->comm = comm;
  }
  if (r != ncclSuccess && r != ncclInProgress) return nccl_error(n, r, "communicator", "ncclCommInitRankConfig");
  if (!comm)
    return ftq_cuda_error(FTQ_ERR_NCCL, "NCCL communicator, rank %d of %d: ncclCommInitRankConfig returned no "
                          "communicator; NCCL's last error: %s", n->rank, n->size, nccl_detail());
  return settle(n, "communicator", "joining (ncclCommInitRankConfig)", deadline, true);
}

}  // namespace

ftq_status ftq_cuda_comm_id_create(unsigned char *payload, size_t len) {
  if (len < NCCL_UNIQUE_ID_BYTES)
    return ftq_cuda_error(FTQ_ERR_INTERNAL, "NCCL id: %zu bytes of payload, an NCCL unique id needs %d", len,
                          NCCL_UNIQUE_ID_BYTES);
  nvls_off(nullptr);
  FTQ_TRY_CU(nc_load());
  ncclUniqueId id;
  const ncclResult_t r = nc.GetUniqueId(&id);
  if (r != ncclSuccess)
    return ftq_cuda_error(FTQ_ERR_NCCL, "NCCL id: ncclGetUniqueId failed: %s; NCCL's last error: %s",
                          nc.GetErrorString(r), nccl_detail());
  memcpy(payload, id.internal, NCCL_UNIQUE_ID_BYTES);
  return FTQ_OK;
}

ftq_status ftq_cuda_comm_create(void *be, const unsigned char *payload, size_t len, int rank, int size,
                                double timeout_s, void **impl, const ftq_comm_ops **ops) {
  ftq_cuda *cu = (ftq_cuda *)be;
  *impl = nullptr;
  *ops = nullptr;
  if (len < NCCL_UNIQUE_ID_BYTES)
    return ftq_cuda_error(FTQ_ERR_INTERNAL, "NCCL communicator: %zu bytes of id payload, NCCL needs %d", len,
                          NCCL_UNIQUE_ID_BYTES);
  nvls_off(cu->ctx);
  FTQ_TRY_CU(nc_load());
  FTQ_TRY_CU(ftq_cuda_enter(cu));  // NCCL binds the communicator to the current device
  NcclComm *n = new (std::nothrow) NcclComm;
  if (!n) return ftq_cuda_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for an NCCL communicator");
  n->cu = cu;
  n->rank = rank;
  n->size = size;
  n->timeout_s = timeout_s;
  ftq_status st = make_resources(n);
  if (st == FTQ_OK) st = join(n, payload);
  if (st != FTQ_OK) {
    abort_comm(n);  // destroy must not try a clean leave of a half-made communicator
    nccl_destroy(n);
    return st;
  }
  comm_log(n, FTQ_LOG_INFO, "NCCL communicator: rank %d of %d on cuda:%d (NCCL %d.%d.%d, NVLS off, timeout %g s)",
           rank, size, cu->device, nc_version / 10000, nc_version / 100 % 100, nc_version % 100, timeout_s);
  *impl = n;
  *ops = &kNcclOps;
  return FTQ_OK;
}

#endif  // FTQ_WITH_NCCL
