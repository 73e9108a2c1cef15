/* Communicators: ids, the public calls and the dispatch to one kind
 * (shared memory for CPU contexts, NCCL in the CUDA module). Failures are
 * sticky: the first one aborts the communicator and every later call
 * repeats its message, so no rank goes on with a half-broken group. */
#include "dist/comm.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/options.h"

static const ftq_option_def dist_option_defs[] = {
    {"comm_timeout_s", "dist", FTQ_OPTION_FLOAT, "600", 0.1, 1e6, NULL, 0,
     "seconds a collective (or joining a communicator) may wait for the other ranks before it fails"},
    {"zero_stage", "dist", FTQ_OPTION_INT, "0", 0, 1, NULL, 0,
     "1: shard the optimizer states across the ranks (ZeRO-1); 0: every rank keeps all of them"},
    {"ddp_overlap", "dist", FTQ_OPTION_BOOL, "true", 0, 0, NULL, 0,
     "all-reduce each layer's adapter gradients while the backward pass goes on (else after it)"},
};
FTQ_OPTION_TABLE(dist, dist_option_defs);

#define PAYLOAD_LEN (FTQ_COMM_ID_SIZE - FTQ_COMM_PAYLOAD_OFFSET)

static const char *kind_name(int kind) { return kind == FTQ_COMM_KIND_NCCL ? "nccl" : "shm"; }

static ftq_status check_id(const unsigned char *id, int *kind) {
  if (memcmp(id, FTQ_COMM_ID_MAGIC, 4) != 0 || id[4] != FTQ_COMM_ID_VERSION ||
      (id[5] != FTQ_COMM_KIND_SHM && id[5] != FTQ_COMM_KIND_NCCL) || id[6] || id[7])
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "not a communicator id (make one with ftq_comm_id_create)");
  *kind = id[5];
  return FTQ_OK;
}

ftq_status ftq_comm_id_create(ftq_device_type device, unsigned char id[FTQ_COMM_ID_SIZE]) {
  FTQ_CHECK_ARG(id, "ftq_comm_id_create: id must not be NULL");
  memset(id, 0, FTQ_COMM_ID_SIZE);
  memcpy(id, FTQ_COMM_ID_MAGIC, 4);
  id[4] = FTQ_COMM_ID_VERSION;
  if (device == FTQ_DEVICE_CPU) {
    id[5] = FTQ_COMM_KIND_SHM;
    return ftq_comm_shm_id_create(id + FTQ_COMM_PAYLOAD_OFFSET, PAYLOAD_LEN);
  }
  FTQ_CHECK_ARG(device == FTQ_DEVICE_CUDA, "ftq_comm_id_create: unknown device type %d", (int)device);
  const ftq_backend *be = NULL;
  FTQ_TRY(ftq_backend_cuda(&be));
  if (!be->comm_id_create)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "the CUDA module was built without NCCL (-DFTQ_NCCL=ON enables it)");
  id[5] = FTQ_COMM_KIND_NCCL;
  return be->comm_id_create(id + FTQ_COMM_PAYLOAD_OFFSET, PAYLOAD_LEN);
}

ftq_status ftq_comm_id_to_string(const unsigned char id[FTQ_COMM_ID_SIZE], char *buf, size_t size) {
  FTQ_CHECK_ARG(id && buf, "ftq_comm_id_to_string: arguments must not be NULL");
  int kind;
  FTQ_TRY(check_id(id, &kind));
  const size_t need = strlen("ftq1--") + strlen(kind_name(kind)) + 2 * PAYLOAD_LEN + 1;
  FTQ_CHECK_ARG(size >= need, "ftq_comm_id_to_string: the buffer holds %zu bytes, the id needs %zu", size, need);
  size_t k = (size_t)snprintf(buf, size, "ftq1-%s-", kind_name(kind));
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < PAYLOAD_LEN; i++) {
    buf[k++] = hex[id[FTQ_COMM_PAYLOAD_OFFSET + i] >> 4];
    buf[k++] = hex[id[FTQ_COMM_PAYLOAD_OFFSET + i] & 15];
  }
  buf[k] = '\0';
  return FTQ_OK;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

ftq_status ftq_comm_id_from_string(const char *text, unsigned char id[FTQ_COMM_ID_SIZE]) {
  FTQ_CHECK_ARG(text && id, "ftq_comm_id_from_string: arguments must not be NULL");
  while (isspace((unsigned char)*text)) text++;
  size_t n = strlen(text);
  while (n && isspace((unsigned char)text[n - 1])) n--;
  int kind;
  size_t pre;
  if (n >= 9 && !strncmp(text, "ftq1-shm-", 9)) {
    kind = FTQ_COMM_KIND_SHM;
    pre = 9;
  } else if (n >= 10 && !strncmp(text, "ftq1-nccl-", 10)) {
    kind = FTQ_COMM_KIND_NCCL;
    pre = 10;
  } else {
    return ftq_error(FTQ_ERR_FORMAT, "communicator id: expected text starting 'ftq1-shm-' or 'ftq1-nccl-'");
  }
  if (n - pre != 2 * PAYLOAD_LEN)
    return ftq_error(FTQ_ERR_FORMAT, "communicator id: %zu hex digits after '%.*s', expected %d", n - pre, (int)pre,
                     text, 2 * PAYLOAD_LEN);
  unsigned char tmp[FTQ_COMM_ID_SIZE] = {0};
  memcpy(tmp, FTQ_COMM_ID_MAGIC, 4);
  tmp[4] = FTQ_COMM_ID_VERSION;
  tmp[5] = (unsigned char)kind;
  for (size_t i = 0; i < PAYLOAD_LEN; i++) {
    int hi = hex_value(text[pre + 2 * i]), lo = hex_value(text[pre + 2 * i + 1]);
    if (hi < 0 || lo < 0)
      return ftq_error(FTQ_ERR_FORMAT, "communicator id: '%c' at offset %zu is not a hex digit",
                       hi < 0 ? text[pre + 2 * i] : text[pre + 2 * i + 1], pre + 2 * i + (hi < 0 ? 0 : 1));
    tmp[FTQ_COMM_PAYLOAD_OFFSET + i] = (unsigned char)(hi << 4 | lo);
  }
  memcpy(id, tmp, FTQ_COMM_ID_SIZE);
  return FTQ_OK;
}

ftq_status ftq_comm_create(ftq_context *ctx, const unsigned char id[FTQ_COMM_ID_SIZE], int rank, int world_size,
                           const ftq_options *opts, ftq_comm **out) {
  FTQ_CHECK_ARG(out, "ftq_comm_create: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(ctx && id, "ftq_comm_create: context and id must not be NULL");
  FTQ_CHECK_ARG(world_size >= 1 && rank >= 0 && rank < world_size,
                "ftq_comm_create: rank %d of world size %d (need 0 <= rank < world_size, world_size >= 1)", rank,
                world_size);
  int kind;
  FTQ_TRY(check_id(id, &kind));
  double timeout = 600;
  if (opts) FTQ_TRY(ftq_options_get_float(opts, "comm_timeout_s", &timeout));
  const int want = ctx->type == FTQ_DEVICE_CUDA ? FTQ_COMM_KIND_NCCL : FTQ_COMM_KIND_SHM;
  if (kind != want)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "ftq_comm_create: a %s id on a %s context (make the id for the "
                     "ranks' device type)", kind_name(kind), ctx->type == FTQ_DEVICE_CUDA ? "CUDA" : "CPU");
  ftq_comm *c = ftq_calloc(1, sizeof *c, "communicator");
  if (!c) return FTQ_ERR_OUT_OF_MEMORY;
  c->ctx = ctx;
  c->rank = rank;
  c->size = world_size;
  c->kind = kind;
  c->timeout_s = timeout;
  ftq_status st;
  if (kind == FTQ_COMM_KIND_SHM) {
    st = ftq_comm_shm_create(id + FTQ_COMM_PAYLOAD_OFFSET, PAYLOAD_LEN, rank, world_size, timeout, &c->impl, &c->ops);
  } else if (!ctx->be->comm_create) {
    st = ftq_error(FTQ_ERR_UNSUPPORTED, "the CUDA module was built without NCCL (-DFTQ_NCCL=ON enables it)");
  } else {
    st = ctx->be->comm_create(ctx->be_ctx, id + FTQ_COMM_PAYLOAD_OFFSET, PAYLOAD_LEN, rank, world_size, timeout,
                              &c->impl, &c->ops);
  }
  if (st != FTQ_OK) {
    free(c);
    return ftq_error_context(st, "joining communicator (%s) as rank %d of %d", kind_name(kind), rank, world_size);
  }
  *out = c;
  return FTQ_OK;
}

void ftq_comm_destroy(ftq_comm *c) {
  if (!c) return;
  if (c->ops) c->ops->destroy(c->impl);
  free(c);
}

int ftq_comm_rank(const ftq_comm *c) { return c ? c->rank : -1; }
int ftq_comm_size(const ftq_comm *c) { return c ? c->size : -1; }

/* Records the first failure (the message is already set) and aborts. */
static ftq_status fail(ftq_comm *c, ftq_status st) {
  if (st == FTQ_OK || c->failed != FTQ_OK) return st;
  c->failed = st;
  snprintf(c->failure, sizeof c->failure, "%s", ftq_last_error());
  c->ops->abort(c->impl);
  return st;
}

static ftq_status sticky(const ftq_comm *c) {
  return ftq_error(c->failed, "rank %d of %d: the communicator failed earlier: %s", c->rank, c->size, c->failure);
}

#define COMM_CALL(c, expr)                     \
  do {                                         \
    if ((c)->failed != FTQ_OK) return sticky(c); \
    return fail((c), (expr));                  \
  } while (0)

ftq_status ftq_comm_check(ftq_comm *c) {
  FTQ_CHECK_ARG(c, "ftq_comm_check: comm must not be NULL");
  COMM_CALL(c, c->ops->check(c->impl));
}

ftq_status ftq_comm_abort(ftq_comm *c) {
  FTQ_CHECK_ARG(c, "ftq_comm_abort: comm must not be NULL");
  c->ops->abort(c->impl);
  return FTQ_OK;
}

ftq_status ftq_comm_barrier(ftq_comm *c) {
  FTQ_CHECK_ARG(c, "ftq_comm_barrier: comm must not be NULL");
  COMM_CALL(c, c->ops->barrier(c->impl, "barrier"));
}

ftq_status ftq_comm_allreduce(ftq_comm *c, double *values, size_t n, ftq_comm_reduce op) {
  FTQ_CHECK_ARG(c && (values || !n), "ftq_comm_allreduce: comm and values must not be NULL");
  FTQ_CHECK_ARG(op == FTQ_COMM_SUM || op == FTQ_COMM_MAX || op == FTQ_COMM_MIN,
                "ftq_comm_allreduce: unknown reduction %d", (int)op);
  if (!n) return c->failed != FTQ_OK ? sticky(c) : FTQ_OK;
  COMM_CALL(c, c->ops->allreduce_host(c->impl, values, n, op, "all-reduce of host values"));
}

ftq_status ftq_comm_allreduce_sum_f32(ftq_comm *c, float *const *bufs, const size_t *counts, size_t n_bufs,
                                      const char *what) {
  if (!n_bufs) return c->failed != FTQ_OK ? sticky(c) : FTQ_OK;
  COMM_CALL(c, c->ops->allreduce_f32(c->impl, bufs, counts, n_bufs, what));
}

ftq_status ftq_comm_broadcast_bufs(ftq_comm *c, void *const *bufs, const size_t *bytes, const int *roots,
                                   size_t n_bufs, const char *what) {
  if (!n_bufs) return c->failed != FTQ_OK ? sticky(c) : FTQ_OK;
  COMM_CALL(c, c->ops->broadcast(c->impl, bufs, bytes, roots, n_bufs, what));
}

ftq_status ftq_comm_wait(ftq_comm *c, const char *what) { COMM_CALL(c, c->ops->wait(c->impl, what)); }

/* ---------------------------------------------------------------------- */
/* from the environment                                                     */

/* The first of the named variables that is set, as an int in [lo, hi]. */
static ftq_status env_int(const char *const *names, int lo, int hi, int *out, const char **which) {
  *which = NULL;
  for (; *names; names++) {
    const char *v = getenv(*names);
    if (!v || !*v) continue;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "environment variable %s = '%s' is not an integer in [%d, %d]",
                       *names, v, lo, hi);
    *out = (int)x;
    *which = *names;
    return FTQ_OK;
  }
  return FTQ_OK;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Rank 0 writes a fresh id into the file atomically (replacing an old
 * one); the others wait for the file. A file left from an earlier run can
 * be read by a rank that starts before rank 0 writes: use a path unique to
 * the job (docs/distributed.md). */
static ftq_status id_from_file(const char *path, int rank, ftq_device_type dev, double timeout,
                               unsigned char id[FTQ_COMM_ID_SIZE]) {
  char text[FTQ_COMM_ID_STRING_SIZE + 8];
  if (rank == 0) {
    FTQ_TRY(ftq_comm_id_create(dev, id));
    FTQ_TRY(ftq_comm_id_to_string(id, text, sizeof text));
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "FTQ_COMM_ID_FILE: path too long");
    FILE *f = fopen(tmp, "w");
    if (!f) return ftq_error(FTQ_ERR_IO, "FTQ_COMM_ID_FILE: cannot create '%s': %s", tmp, strerror(errno));
    int ok = fprintf(f, "%s\n", text) > 0;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
      int e = errno;
      unlink(tmp);
      return ftq_error(FTQ_ERR_IO, "FTQ_COMM_ID_FILE: cannot write '%s': %s", path, strerror(e));
    }
    return FTQ_OK;
  }
  const double t0 = mono_s();
  for (;;) {
    FILE *f = fopen(path, "r");
    if (f) {
      size_t n = fread(text, 1, sizeof text - 1, f);
      fclose(f);
      text[n] = '\0';
      ftq_status st = ftq_comm_id_from_string(text, id);
      return st == FTQ_OK ? st : ftq_error_context(st, "FTQ_COMM_ID_FILE '%s'", path);
    }
    if (errno != ENOENT)
      return ftq_error(FTQ_ERR_IO, "FTQ_COMM_ID_FILE: cannot read '%s': %s", path, strerror(errno));
    if (mono_s() - t0 > timeout)
      return ftq_error(FTQ_ERR_TIMEOUT, "FTQ_COMM_ID_FILE: '%s' did not appear within %g s (rank 0 writes it)", path,
                       timeout);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

ftq_status ftq_comm_create_from_env(ftq_context *ctx, const ftq_options *opts, ftq_comm **out) {
  FTQ_CHECK_ARG(out, "ftq_comm_create_from_env: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(ctx, "ftq_comm_create_from_env: context must not be NULL");
  static const char *const rank_vars[] = {"FTQ_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", NULL};
  static const char *const size_vars[] = {"FTQ_WORLD_SIZE", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
  int rank = 0, size = 1;
  const char *rv, *sv;
  FTQ_TRY(env_int(rank_vars, 0, 1 << 20, &rank, &rv));
  FTQ_TRY(env_int(size_vars, 1, 1 << 20, &size, &sv));
  if (rv && !sv) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s is set but no world size variable is", rv);
  if (rank >= size)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "rank %d (%s) is not below the world size %d (%s)", rank,
                     rv ? rv : "default", size, sv ? sv : "default");
  double timeout = 600;
  if (opts) FTQ_TRY(ftq_options_get_float(opts, "comm_timeout_s", &timeout));
  unsigned char id[FTQ_COMM_ID_SIZE];
  const char *text = getenv("FTQ_COMM_ID"), *file = getenv("FTQ_COMM_ID_FILE");
  if (text && *text) {
    ftq_status st = ftq_comm_id_from_string(text, id);
    if (st != FTQ_OK) return ftq_error_context(st, "environment variable FTQ_COMM_ID");
  } else if (file && *file) {
    FTQ_TRY(id_from_file(file, rank, ctx->type, timeout, id));
  } else if (size == 1) {
    FTQ_TRY(ftq_comm_id_create(ctx->type, id));
  } else {
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "world size %d but neither FTQ_COMM_ID nor FTQ_COMM_ID_FILE is set",
                     size);
  }
  return ftq_comm_create(ctx, id, rank, size, opts, out);
}
