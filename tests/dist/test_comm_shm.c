/* Shared-memory communicators (CPU contexts): collectives between threads
 * against rank-order references, ids, and failures between processes
 * (a peer killed, aborting, leaving) and timeouts, which must end every
 * wait promptly and stick. Nothing may stay behind in /dev/shm. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist/comm.h"
#include "test_util.h"

/* The communicator's slot (src/dist/comm_shm.c): data crosses chunk
 * boundaries at multiples of it. */
#define SLOT_BYTES ((size_t)4 << 20)
#define SLOT_FLOATS (SLOT_BYTES / sizeof(float))
#define SLOT_DOUBLES (SLOT_BYTES / sizeof(double))
#define MAX_WORLD 4
#define N_F32 3
#define N_BCAST 5
#define N_HOST (SLOT_DOUBLES + 37)
#define N_MINMAX 9

/* ---------------------------------------------------------------------- */
/* ids and /dev/shm                                                         */

static char shm_names[64][64];
static int n_shm_names;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* A fresh CPU id; remembers its /dev/shm name ("ftq-" + 32 hex digits,
 * the first 16 payload bytes) for the leak check at the end. */
static void new_id(unsigned char id[FTQ_COMM_ID_SIZE]) {
  REQUIRE_OK(ftq_comm_id_create(FTQ_DEVICE_CPU, id));
  char text[FTQ_COMM_ID_STRING_SIZE];
  REQUIRE_OK(ftq_comm_id_to_string(id, text, sizeof text));
  if (n_shm_names < 64) snprintf(shm_names[n_shm_names++], 64, "/dev/shm/ftq-%.32s", text + strlen("ftq1-shm-"));
}

static ftq_options *make_opts(double timeout_s) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "num_threads", 1));
  REQUIRE_OK(ftq_options_set_float(o, "comm_timeout_s", timeout_s));
  return o;
}

/* ---------------------------------------------------------------------- */
/* collectives between threads                                              */

static const size_t f32_counts[N_F32] = {1000, SLOT_FLOATS + SLOT_FLOATS / 2 + 123, 777};
static const size_t bcast_bytes[N_BCAST] = {100, SLOT_BYTES + 1000, 0, 33, 2 * SLOT_BYTES + 5};

static float f32_input(int rank, size_t b, size_t i) {
  uint64_t s = ((uint64_t)rank << 48) ^ ((uint64_t)b << 40) ^ i;
  return test_rand_uniform(&s) * 100.0f;
}
static double host_input(int rank, size_t i) {
  uint64_t s = 0xabcdull ^ ((uint64_t)rank << 48) ^ i;
  return (double)test_rand_uniform(&s) * 1e3;
}
static unsigned char bcast_pattern(int root, size_t b, size_t j) {
  return (unsigned char)(root * 31 + b * 7 + j * 13 + (j >> 9));
}

typedef struct worker {
  const unsigned char *id;
  int rank, world;
  const ftq_options *opts;
  atomic_int *counter; /* barrier check: bumped before each barrier */
  int roots[N_BCAST];
  /* results */
  float *f32[N_F32];
  double *host, minmax[2][N_MINMAX];
  unsigned char *bcast[N_BCAST];
  int barrier_ok;
  ftq_status st;
  char err[1024];
} worker;

#define W_TRY(w, expr)                                                         \
  do {                                                                         \
    ftq_status s_ = (expr);                                                    \
    if (s_ != FTQ_OK) {                                                        \
      (w)->st = s_;                                                            \
      snprintf((w)->err, sizeof (w)->err, "%s: %s", #expr, ftq_last_error()); \
      goto done;                                                               \
    }                                                                          \
  } while (0)

static void *collectives_thread(void *arg) {
  worker *w = arg;
  ftq_context *ctx = NULL;
  ftq_comm *comm = NULL;
  W_TRY(w, ftq_context_create("cpu", w->opts, &ctx));
  W_TRY(w, ftq_comm_create(ctx, w->id, w->rank, w->world, w->opts, &comm));
  if (ftq_comm_rank(comm) != w->rank || ftq_comm_size(comm) != w->world) {
    w->st = FTQ_ERR_INTERNAL;
    snprintf(w->err, sizeof w->err, "rank/size %d/%d", ftq_comm_rank(comm), ftq_comm_size(comm));
    goto done;
  }

  /* f32 sum over several buffers as one stream */
  for (size_t b = 0; b < N_F32; b++)
    for (size_t i = 0; i < f32_counts[b]; i++) w->f32[b][i] = f32_input(w->rank, b, i);
  W_TRY(w, ftq_comm_allreduce_sum_f32(comm, w->f32, f32_counts, N_F32, "test f32 sum"));

  /* host values */
  for (size_t i = 0; i < N_HOST; i++) w->host[i] = host_input(w->rank, i);
  W_TRY(w, ftq_comm_allreduce(comm, w->host, N_HOST, FTQ_COMM_SUM));
  for (int k = 0; k < 2; k++) {
    for (size_t i = 0; i < N_MINMAX; i++) w->minmax[k][i] = host_input(w->rank, 1000 + i);
    W_TRY(w, ftq_comm_allreduce(comm, w->minmax[k], N_MINMAX, k ? FTQ_COMM_MIN : FTQ_COMM_MAX));
  }
  W_TRY(w, ftq_comm_allreduce(comm, NULL, 0, FTQ_COMM_SUM));

  /* broadcast: each rank fills the buffers it is root of, garbage elsewhere */
  for (size_t b = 0; b < N_BCAST; b++)
    for (size_t j = 0; j < bcast_bytes[b]; j++)
      w->bcast[b][j] = w->roots[b] == w->rank ? bcast_pattern(w->rank, b, j) : (unsigned char)(0xEE ^ w->rank);
  W_TRY(w, ftq_comm_broadcast_bufs(comm, (void *const *)w->bcast, bcast_bytes, w->roots, N_BCAST, "test broadcast"));
  W_TRY(w, ftq_comm_wait(comm, "test wait"));

  /* barrier: nobody passes round k before everyone bumped the counter k times */
  w->barrier_ok = 1;
  for (int k = 1; k <= 20; k++) {
    atomic_fetch_add(w->counter, 1);
    W_TRY(w, ftq_comm_barrier(comm));
    if (atomic_load(w->counter) < k * w->world) w->barrier_ok = 0;
    W_TRY(w, ftq_comm_barrier(comm)); /* nobody bumps round k+1 before everyone checked round k */
  }
  W_TRY(w, ftq_comm_check(comm));
  w->st = FTQ_OK;
done:
  ftq_comm_destroy(comm);
  ftq_context_destroy(ctx);
  return NULL;
}

static void test_collectives(int world) {
  unsigned char id[FTQ_COMM_ID_SIZE];
  new_id(id);
  ftq_options *opts = make_opts(20);
  atomic_int counter = 0;
  worker w[MAX_WORLD];
  pthread_t th[MAX_WORLD];
  const int roots[N_BCAST] = {0, world - 1, 1 % world, (world - 1) / 2, 2 % world};
  memset(w, 0, sizeof w);
  for (int r = 0; r < world; r++) {
    w[r] = (worker){.id = id, .rank = r, .world = world, .opts = opts, .counter = &counter, .st = FTQ_ERR_INTERNAL};
    memcpy(w[r].roots, roots, sizeof roots);
    for (size_t b = 0; b < N_F32; b++) w[r].f32[b] = malloc(f32_counts[b] * sizeof(float));
    for (size_t b = 0; b < N_BCAST; b++) w[r].bcast[b] = malloc(bcast_bytes[b] + 1);
    w[r].host = malloc(N_HOST * sizeof(double));
  }
  const double t0 = now_s();
  for (int r = 0; r < world; r++)
    REQUIRE_OK(pthread_create(&th[r], NULL, collectives_thread, &w[r]) ? FTQ_ERR_INTERNAL : FTQ_OK);
  for (int r = 0; r < world; r++) pthread_join(th[r], NULL);
  printf("world %d: collectives in %.3f s\n", world, now_s() - t0);

  for (int r = 0; r < world; r++) CHECK_MSG(w[r].st == FTQ_OK, "world %d rank %d: %s", world, r, w[r].err);

  /* f32: rank-order float reference; every rank bit-identical to it */
  for (size_t b = 0; b < N_F32; b++) {
    size_t bad = 0;
    for (size_t i = 0; i < f32_counts[b]; i++) {
      float ref = f32_input(0, b, i);
      for (int r = 1; r < world; r++) ref += f32_input(r, b, i);
      for (int r = 0; r < world; r++)
        if (memcmp(&w[r].f32[b][i], &ref, sizeof ref) != 0) bad++;
    }
    CHECK_MSG(bad == 0, "world %d: f32 buffer %zu: %zu elements differ from the rank-order sum", world, b, bad);
  }
  /* host values */
  size_t bad = 0;
  for (size_t i = 0; i < N_HOST; i++) {
    double ref = host_input(0, i);
    for (int r = 1; r < world; r++) ref += host_input(r, i);
    for (int r = 0; r < world; r++)
      if (memcmp(&w[r].host[i], &ref, sizeof ref) != 0) bad++;
  }
  CHECK_MSG(bad == 0, "world %d: host sum: %zu values differ", world, bad);
  for (size_t i = 0; i < N_MINMAX; i++) {
    double mx = host_input(0, 1000 + i), mn = mx;
    for (int r = 1; r < world; r++) {
      double v = host_input(r, 1000 + i);
      mx = v > mx ? v : mx;
      mn = v < mn ? v : mn;
    }
    for (int r = 0; r < world; r++) {
      CHECK_MSG(w[r].minmax[0][i] == mx, "world %d rank %d: max[%zu] %g, expected %g", world, r, i,
                w[r].minmax[0][i], mx);
      CHECK_MSG(w[r].minmax[1][i] == mn, "world %d rank %d: min[%zu] %g, expected %g", world, r, i,
                w[r].minmax[1][i], mn);
    }
  }
  /* broadcast */
  for (int r = 0; r < world; r++)
    for (size_t b = 0; b < N_BCAST; b++) {
      size_t wrong = 0;
      for (size_t j = 0; j < bcast_bytes[b]; j++) wrong += w[r].bcast[b][j] != bcast_pattern(roots[b], b, j);
      CHECK_MSG(wrong == 0, "world %d rank %d: broadcast buffer %zu (root %d): %zu bytes wrong", world, r, b,
                roots[b], wrong);
    }
  for (int r = 0; r < world; r++) CHECK_MSG(w[r].barrier_ok, "world %d rank %d passed a barrier early", world, r);

  for (int r = 0; r < world; r++) {
    for (size_t b = 0; b < N_F32; b++) free(w[r].f32[b]);
    for (size_t b = 0; b < N_BCAST; b++) free(w[r].bcast[b]);
    free(w[r].host);
  }
  ftq_options_destroy(opts);
}

/* ---------------------------------------------------------------------- */
/* ids and argument checks                                                  */

static void test_ids(void) {
  unsigned char id[FTQ_COMM_ID_SIZE], back[FTQ_COMM_ID_SIZE], other[FTQ_COMM_ID_SIZE];
  char text[FTQ_COMM_ID_STRING_SIZE], padded[FTQ_COMM_ID_STRING_SIZE + 16];
  new_id(id);
  new_id(other);
  CHECK(memcmp(id, other, FTQ_COMM_ID_SIZE) != 0);
  CHECK_OK(ftq_comm_id_to_string(id, text, sizeof text));
  CHECK(strncmp(text, "ftq1-shm-", 9) == 0);
  for (const char *p = text; *p; p++)
    CHECK_MSG((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-', "character '%c' in id text", *p);
  CHECK_OK(ftq_comm_id_from_string(text, back));
  CHECK(memcmp(id, back, FTQ_COMM_ID_SIZE) == 0);
  snprintf(padded, sizeof padded, "  %s\n", text);
  memset(back, 0, sizeof back);
  CHECK_OK(ftq_comm_id_from_string(padded, back));
  CHECK(memcmp(id, back, FTQ_COMM_ID_SIZE) == 0);
  CHECK_STATUS(ftq_comm_id_to_string(id, text, 10), FTQ_ERR_INVALID_ARGUMENT);

  /* malformed text */
  CHECK_STATUS(ftq_comm_id_from_string("", back), FTQ_ERR_FORMAT);
  CHECK_STATUS(ftq_comm_id_from_string("hello", back), FTQ_ERR_FORMAT);
  CHECK_STATUS(ftq_comm_id_from_string("ftq1-shm-00ff", back), FTQ_ERR_FORMAT);
  CHECK_OK(ftq_comm_id_to_string(id, text, sizeof text));
  char bad[FTQ_COMM_ID_STRING_SIZE + 16];
  snprintf(bad, sizeof bad, "%s", text);
  bad[20] = 'g';
  CHECK_STATUS(ftq_comm_id_from_string(bad, back), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("not a hex digit");
  snprintf(bad, sizeof bad, "%s0", text);
  CHECK_STATUS(ftq_comm_id_from_string(bad, back), FTQ_ERR_FORMAT);

  /* kind vs context, bad ranks, not an id */
  ftq_options *opts = make_opts(2);
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", opts, &ctx));
  ftq_comm *comm = (ftq_comm *)&comm;
  snprintf(bad, sizeof bad, "ftq1-nccl-%s", text + 9);
  CHECK_OK(ftq_comm_id_from_string(bad, back));
  CHECK_STATUS(ftq_comm_create(ctx, back, 0, 1, opts, &comm), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("nccl id on a CPU context");
  CHECK(comm == NULL);
  CHECK_STATUS(ftq_comm_create(ctx, id, -1, 2, opts, &comm), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_comm_create(ctx, id, 2, 2, opts, &comm), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_comm_create(ctx, id, 0, 0, opts, &comm), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_comm_create(NULL, id, 0, 1, opts, &comm), FTQ_ERR_INVALID_ARGUMENT);
  memset(back, 0, sizeof back);
  CHECK_STATUS(ftq_comm_create(ctx, back, 0, 1, opts, &comm), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_comm_id_to_string(back, text, sizeof text), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_comm_id_create(FTQ_DEVICE_CPU, NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_options_set_float(opts, "comm_timeout_s", 0.0), FTQ_ERR_OPTION_RANGE);

  /* the same id serves again once its communicator is made (the name is
   * unlinked by then); a one-rank communicator needs no peers */
  for (int k = 0; k < 2; k++) {
    CHECK_OK(ftq_comm_create(ctx, id, 0, 1, opts, &comm));
    double v[2] = {1.5, -2};
    CHECK_OK(ftq_comm_allreduce(comm, v, 2, FTQ_COMM_SUM));
    CHECK(v[0] == 1.5 && v[1] == -2);
    CHECK_OK(ftq_comm_barrier(comm));
    CHECK_OK(ftq_comm_check(comm));
    CHECK_STATUS(ftq_comm_allreduce(comm, v, 2, (ftq_comm_reduce)7), FTQ_ERR_INVALID_ARGUMENT);
    ftq_comm_destroy(comm);
  }
  ftq_comm_destroy(NULL);
  CHECK(ftq_comm_rank(NULL) == -1 && ftq_comm_size(NULL) == -1);
  ftq_context_destroy(ctx);
  ftq_options_destroy(opts);
}

/* ---------------------------------------------------------------------- */
/* failures between threads: timeouts and mismatched world sizes            */

typedef struct joiner {
  const unsigned char *id;
  int rank, world;
  const ftq_options *opts;
  double sleep_before_barrier;
  ftq_status create_st, barrier_st;
  char err[1024];
} joiner;

/* Joins, sleeps, then calls one barrier. */
static void *join_thread(void *arg) {
  joiner *j = arg;
  ftq_context *ctx = NULL;
  ftq_comm *comm = NULL;
  j->barrier_st = FTQ_ERR_INTERNAL;
  j->create_st = ftq_context_create("cpu", j->opts, &ctx);
  if (j->create_st == FTQ_OK) j->create_st = ftq_comm_create(ctx, j->id, j->rank, j->world, j->opts, &comm);
  if (j->create_st != FTQ_OK) {
    snprintf(j->err, sizeof j->err, "%s", ftq_last_error());
  } else {
    sleep_s(j->sleep_before_barrier);
    j->barrier_st = ftq_comm_barrier(comm);
    snprintf(j->err, sizeof j->err, "%s", ftq_last_error());
  }
  ftq_comm_destroy(comm);
  ftq_context_destroy(ctx);
  return NULL;
}

static void test_timeouts(void) {
  ftq_options *opts = make_opts(0.5);
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", opts, &ctx));
  unsigned char id[FTQ_COMM_ID_SIZE];
  ftq_comm *comm = NULL;

  /* only rank 0 joins */
  new_id(id);
  double t0 = now_s();
  CHECK_STATUS(ftq_comm_create(ctx, id, 0, 2, opts, &comm), FTQ_ERR_TIMEOUT);
  double dt = now_s() - t0;
  CHECK_ERROR_MENTIONS("rank 1 to join");
  CHECK_MSG(dt >= 0.45 && dt < 3, "rank 0 alone timed out after %.3f s", dt);
  CHECK(comm == NULL);

  /* only rank 1 joins: the object never appears */
  new_id(id);
  t0 = now_s();
  CHECK_STATUS(ftq_comm_create(ctx, id, 1, 2, opts, &comm), FTQ_ERR_TIMEOUT);
  dt = now_s() - t0;
  CHECK_ERROR_MENTIONS("to appear");
  CHECK_MSG(dt >= 0.45 && dt < 3, "rank 1 alone timed out after %.3f s", dt);

  /* a joined peer that does not come to the barrier in time; when it does,
   * it finds the communicator aborted by rank 0's timeout */
  new_id(id);
  joiner peer = {.id = id, .rank = 1, .world = 2, .opts = opts, .sleep_before_barrier = 1.5};
  pthread_t th;
  REQUIRE_OK(pthread_create(&th, NULL, join_thread, &peer) ? FTQ_ERR_INTERNAL : FTQ_OK);
  REQUIRE_OK(ftq_comm_create(ctx, id, 0, 2, opts, &comm));
  t0 = now_s();
  CHECK_STATUS(ftq_comm_barrier(comm), FTQ_ERR_TIMEOUT);
  dt = now_s() - t0;
  CHECK_ERROR_MENTIONS("shm communicator, rank 0 of 2, barrier: timed out after 0.5 s waiting for rank 1");
  CHECK_MSG(dt >= 0.45 && dt < 1.4, "barrier timed out after %.3f s", dt);
  /* sticky: the same error, from every later call */
  CHECK_STATUS(ftq_comm_barrier(comm), FTQ_ERR_TIMEOUT);
  CHECK_ERROR_MENTIONS("failed earlier");
  CHECK_ERROR_MENTIONS("waiting for rank 1");
  CHECK_STATUS(ftq_comm_check(comm), FTQ_ERR_TIMEOUT);
  double v = 1;
  CHECK_STATUS(ftq_comm_allreduce(comm, &v, 1, FTQ_COMM_SUM), FTQ_ERR_TIMEOUT);
  CHECK_STATUS(ftq_comm_allreduce(comm, NULL, 0, FTQ_COMM_SUM), FTQ_ERR_TIMEOUT);
  CHECK_OK(ftq_comm_abort(comm));
  pthread_join(th, NULL);
  CHECK_MSG(peer.create_st == FTQ_OK, "%s", peer.err);
  CHECK_MSG(peer.barrier_st == FTQ_ERR_COMM && strstr(peer.err, "rank 0 aborted"), "late peer got %d: %s",
            (int)peer.barrier_st, peer.err);
  ftq_comm_destroy(comm);
  comm = NULL;

  /* a rank given another world size fails at once, and so does rank 0 */
  ftq_options *slow = make_opts(20);
  new_id(id);
  joiner r0 = {.id = id, .rank = 0, .world = 2, .opts = slow};
  joiner r1 = {.id = id, .rank = 1, .world = 3, .opts = slow};
  t0 = now_s();
  REQUIRE_OK(pthread_create(&th, NULL, join_thread, &r0) ? FTQ_ERR_INTERNAL : FTQ_OK);
  join_thread(&r1);
  pthread_join(th, NULL);
  dt = now_s() - t0;
  CHECK_MSG(r1.create_st == FTQ_ERR_INVALID_ARGUMENT && strstr(r1.err, "world size 2"), "rank 1 got %d: %s",
            (int)r1.create_st, r1.err);
  CHECK_MSG(r0.create_st == FTQ_ERR_COMM && strstr(r0.err, "world size 3"), "rank 0 got %d: %s", (int)r0.create_st,
            r0.err);
  CHECK_MSG(dt < 5, "world-size mismatch took %.3f s", dt);

  ftq_options_destroy(slow);
  ftq_context_destroy(ctx);
  ftq_options_destroy(opts);
}

/* ---------------------------------------------------------------------- */
/* failures between processes                                               */

enum { CHILD_KILL, CHILD_ABORT, CHILD_DESTROY };

/* Rank 1 in a child process: a few collectives, then it dies, aborts or
 * leaves. Returns its exit code (0: everything as expected). */
static int child_main(const unsigned char *id, int mode) {
  ftq_options *opts = make_opts(30);
  ftq_context *ctx;
  ftq_comm *comm;
  if (ftq_context_create("cpu", opts, &ctx) != FTQ_OK) return 2;
  if (ftq_comm_create(ctx, id, 1, 2, opts, &comm) != FTQ_OK) return 3;
  for (int k = 0; k < 3; k++) {
    double v[3] = {1, 2, 3};
    if (ftq_comm_allreduce(comm, v, 3, FTQ_COMM_SUM) != FTQ_OK || v[0] != 2 || v[2] != 6) return 4;
  }
  sleep_s(0.1); /* the parent is waiting in its barrier by now */
  int code = 0;
  if (mode == CHILD_KILL) {
    raise(SIGKILL);
  } else if (mode == CHILD_ABORT) {
    ftq_comm_abort(comm);
    /* this rank's own later calls fail too */
    if (ftq_comm_barrier(comm) != FTQ_ERR_COMM || !strstr(ftq_last_error(), "aborted on this rank")) code = 5;
    sleep_s(0.3); /* still alive: the parent must see the abort, not an exit */
    ftq_comm_destroy(comm);
  } else {
    ftq_comm_destroy(comm);
    sleep_s(0.5); /* still alive: the parent must see that it left */
  }
  ftq_context_destroy(ctx);
  ftq_options_destroy(opts);
  return code;
}

static void test_processes(int mode, const char *expect) {
  unsigned char id[FTQ_COMM_ID_SIZE];
  new_id(id);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  REQUIRE_OK(pid < 0 ? FTQ_ERR_INTERNAL : FTQ_OK);
  if (pid == 0) _exit(child_main(id, mode));

  ftq_options *opts = make_opts(30);
  ftq_context *ctx;
  ftq_comm *comm;
  REQUIRE_OK(ftq_context_create("cpu", opts, &ctx));
  REQUIRE_OK(ftq_comm_create(ctx, id, 0, 2, opts, &comm));
  for (int k = 0; k < 3; k++) {
    double v[3] = {1, 2, 3};
    CHECK_OK(ftq_comm_allreduce(comm, v, 3, FTQ_COMM_SUM));
    CHECK(v[0] == 2 && v[1] == 4 && v[2] == 6);
  }
  const double t0 = now_s();
  CHECK_STATUS(ftq_comm_barrier(comm), FTQ_ERR_COMM);
  const double dt = now_s() - t0;
  CHECK_ERROR_MENTIONS("shm communicator, rank 0 of 2, barrier: ");
  CHECK_ERROR_MENTIONS(expect);
  CHECK_MSG(dt < 2, "the barrier failed only after %.3f s (timeout 30 s)", dt);
  printf("peer %s: barrier failed after %.3f s: %s\n", expect, dt, ftq_last_error());
  /* sticky */
  float x = 1, *bufs[1] = {&x};
  const size_t counts[1] = {1};
  CHECK_STATUS(ftq_comm_allreduce_sum_f32(comm, bufs, counts, 1, "sticky f32"), FTQ_ERR_COMM);
  CHECK_ERROR_MENTIONS("failed earlier");
  CHECK_ERROR_MENTIONS(expect);
  CHECK_STATUS(ftq_comm_check(comm), FTQ_ERR_COMM);
  CHECK_STATUS(ftq_comm_wait(comm, "sticky wait"), FTQ_ERR_COMM);
  ftq_comm_destroy(comm);

  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  if (mode == CHILD_KILL)
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
  else
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
  ftq_context_destroy(ctx);
  ftq_options_destroy(opts);
}

/* The health check notices a dead peer without a collective. */
static void test_check_dead_peer(void) {
  unsigned char id[FTQ_COMM_ID_SIZE];
  new_id(id);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  REQUIRE_OK(pid < 0 ? FTQ_ERR_INTERNAL : FTQ_OK);
  if (pid == 0) {
    ftq_options *opts = make_opts(30);
    ftq_context *ctx;
    ftq_comm *comm;
    if (ftq_context_create("cpu", opts, &ctx) != FTQ_OK || ftq_comm_create(ctx, id, 1, 2, opts, &comm) != FTQ_OK)
      _exit(2);
    raise(SIGKILL);
    _exit(3);
  }
  ftq_options *opts = make_opts(30);
  ftq_context *ctx;
  ftq_comm *comm;
  REQUIRE_OK(ftq_context_create("cpu", opts, &ctx));
  REQUIRE_OK(ftq_comm_create(ctx, id, 0, 2, opts, &comm));
  ftq_status st = FTQ_OK;
  for (int k = 0; k < 200 && st == FTQ_OK; k++) { /* up to 2 s */
    st = ftq_comm_check(comm);
    if (st == FTQ_OK) sleep_s(0.01);
  }
  CHECK_STATUS(st, FTQ_ERR_COMM);
  CHECK_ERROR_MENTIONS("health check: rank 1 (pid");
  ftq_comm_destroy(comm);
  int status;
  CHECK(waitpid(pid, &status, 0) == pid);
  ftq_context_destroy(ctx);
  ftq_options_destroy(opts);
}

int main(void) {
  const double t0 = now_s();
  for (int world = 1; world <= MAX_WORLD; world++) test_collectives(world);
  test_ids();
  test_timeouts();
  test_processes(CHILD_KILL, "rank 1 (pid");
  test_processes(CHILD_ABORT, "rank 1 aborted");
  test_processes(CHILD_DESTROY, "rank 1 left the communicator");
  test_check_dead_peer();

  /* every object was unlinked, whether its communicator worked or failed */
  for (int i = 0; i < n_shm_names; i++) CHECK_MSG(access(shm_names[i], F_OK) != 0, "%s is left behind", shm_names[i]);
  printf("test_comm_shm: %d ids, %.2f s\n", n_shm_names, now_s() - t0);
  return test_finish("test_comm_shm");
}
