/* Shared-memory communicators for CPU contexts: the ranks (processes or
 * threads of one host) map one POSIX shared-memory object that the id
 * names. It holds a header, one record per rank (pid, joined / left flags,
 * a barrier arrival counter) and one data slot per rank. Every collective
 * is synchronous: ranks copy into their own slot, meet at a barrier, read
 * the slots they need and meet again before any slot is reused.
 *
 * Waits never hang: they give up after the timeout, and notice a global
 * abort word, a peer that left (ftq_comm_destroy) and a peer process that
 * died. The object's name is unlinked as soon as every rank has joined, so
 * nothing stays in /dev/shm however the processes end later. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "dist/comm.h"

/* Bytes of each rank's data slot: collectives move data in chunks of this
 * size, two barriers per chunk. */
#define SHM_SLOT_BYTES ((size_t)4 << 20)
#define SHM_MAGIC 0x4654514353484d31ull /* "FTQCSHM1", written last by rank 0 */
#define SHM_VERSION 1u
#define SHM_NAME_MAX 48
/* A waiting rank spins this many rounds (yielding) before it sleeps. */
#define SHM_SPIN_ROUNDS 200
#define SHM_SLEEP_NS 30000L
/* How often a waiting rank asks whether missing peers' processes live. */
#define SHM_LIVENESS_S 0.01

typedef struct shm_header {
  _Atomic uint64_t magic; /* SHM_MAGIC once the header is set up */
  uint32_t version;
  int32_t size;           /* world size */
  uint64_t slot_bytes;
  uint64_t total_bytes;
  _Atomic int32_t abort_rank; /* rank that aborted + 1; 0 while healthy */
  _Atomic int32_t bad_size;   /* a world size some rank joined with that is not `size`, else 0 */
} shm_header;

/* One cache line per rank, so ranks' counters do not share lines. */
typedef struct shm_rank {
  _Alignas(64) _Atomic uint64_t arrived; /* barrier generation this rank reached */
  _Atomic uint64_t pidns;                /* inode of its pid namespace (0 if unknown) */
  _Atomic int32_t pid;
  _Atomic int32_t joined;
  _Atomic int32_t left;
} shm_rank;

typedef struct shm_comm {
  int rank, size;
  double timeout_s;
  char name[SHM_NAME_MAX];
  unsigned char *base;
  size_t total;
  shm_header *hdr;
  shm_rank *ranks;
  unsigned char *slots; /* size * SHM_SLOT_BYTES */
  uint64_t gen;         /* my barrier generation */
  pid_t pid;
  uint64_t pidns;
  size_t *fill;         /* per-rank slot fill while planning a broadcast round */
} shm_comm;

/* ---------------------------------------------------------------------- */
/* helpers                                                                 */

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ns(long ns) {
  struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
  nanosleep(&ts, NULL);
}

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static unsigned char *slot_of(const shm_comm *c, int r) { return c->slots + (size_t)r * SHM_SLOT_BYTES; }

/* Every message starts "shm communicator, rank R of N, <what>: ". */
static ftq_status shm_fail(const shm_comm *c, ftq_status st, const char *what, const char *fmt, ...)
    FTQ_PRINTF(4, 5);
static ftq_status shm_fail(const shm_comm *c, ftq_status st, const char *what, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ftq_error(st, "shm communicator, rank %d of %d, %s: %s", c->rank, c->size, what, msg);
}

/* The pid namespace's inode: pids are compared only between ranks in the
 * same namespace (containers may share /dev/shm but not pids). */
static uint64_t my_pidns(void) {
  struct stat st;
  return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Whether process `pid` has exited. A zombie counts as exited: a parent
 * that waits in a collective does not reap its dead child, and kill(pid, 0)
 * still succeeds on a zombie. */
static int process_exited(pid_t pid) {
  if (kill(pid, 0) == -1 && errno == ESRCH) return 1;
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0; /* no /proc: kill() above is all we can tell */
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* "pid (comm) S ...": the state follows the last ')' (comm may hold one) */
  const char *p = strrchr(buf, ')');
  return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Whether a peer's process is known to have died without leaving. */
static int peer_died(const shm_comm *c, int r, pid_t *pid_out) {
  const shm_rank *pr = &c->ranks[r];
  pid_t pid = (pid_t)atomic_load_explicit(&pr->pid, memory_order_acquire);
  *pid_out = pid;
  if (pid <= 0 || pid == c->pid) return 0; /* not joined yet, or a thread of this process */
  if (atomic_load_explicit(&pr->pidns, memory_order_relaxed) != c->pidns) return 0;
  return process_exited(pid);
}

static ftq_status check_abort(const shm_comm *c, const char *what) {
  int a = atomic_load_explicit(&c->hdr->abort_rank, memory_order_acquire);
  if (a) {
    if (a - 1 == c->rank) return shm_fail(c, FTQ_ERR_COMM, what, "the communicator was aborted on this rank");
    return shm_fail(c, FTQ_ERR_COMM, what, "rank %d aborted", a - 1);
  }
  int bad = atomic_load_explicit(&c->hdr->bad_size, memory_order_acquire);
  if (bad)
    return shm_fail(c, FTQ_ERR_COMM, what, "a rank tried to join with world size %d, this communicator has %d", bad,
                    c->size);
  return FTQ_OK;
}

/* Whether rank r has arrived: at barrier generation g, or (g == 0) joined. */
static int has_arrived(const shm_comm *c, int r, uint64_t g) {
  if (g == 0) return atomic_load_explicit(&c->ranks[r].joined, memory_order_acquire) != 0;
  return atomic_load_explicit(&c->ranks[r].arrived, memory_order_acquire) >= g;
}

/* Waits until every rank has arrived (see has_arrived), watching for an
 * abort, peers that left or died, and the timeout counted from t0. */
static ftq_status wait_all(const shm_comm *c, uint64_t g, double t0, const char *what) {
  double next_liveness = mono_s() + SHM_LIVENESS_S;
  for (unsigned round = 0;; round++) {
    int missing = -1;
    for (int r = 0; r < c->size; r++)
      if (!has_arrived(c, r, g)) {
        missing = r;
        break;
      }
    if (missing < 0) return FTQ_OK;

    FTQ_TRY(check_abort(c, what));
    for (int r = missing; r < c->size; r++)
      if (!has_arrived(c, r, g) && atomic_load_explicit(&c->ranks[r].left, memory_order_acquire))
        return shm_fail(c, FTQ_ERR_COMM, what, "rank %d left the communicator", r);

    const double now = mono_s();
    if (now >= next_liveness) {
      next_liveness = now + SHM_LIVENESS_S;
      for (int r = missing; r < c->size; r++) {
        pid_t pid;
        if (!has_arrived(c, r, g) && peer_died(c, r, &pid))
          return shm_fail(c, FTQ_ERR_COMM, what, "rank %d (pid %ld) exited", r, (long)pid);
      }
    }
    if (now - t0 > c->timeout_s) {
      char list[256];
      size_t k = 0;
      int shown = 0, more = 0;
      list[0] = '\0';
      for (int r = 0; r < c->size; r++) {
        if (has_arrived(c, r, g)) continue;
        if (shown < 16 && k < sizeof list - 16) {
          k += (size_t)snprintf(list + k, sizeof list - k, "%s%d", shown ? ", " : "", r);
          shown++;
        } else {
          more++;
        }
      }
      if (more) snprintf(list + k, sizeof list - k, " and %d more", more);
      return shm_fail(c, FTQ_ERR_TIMEOUT, what, "timed out after %g s waiting for rank%s %s to %s", c->timeout_s,
                      shown + more > 1 ? "s" : "", list, g == 0 ? "join" : "arrive");
    }
    if (round < SHM_SPIN_ROUNDS)
      sched_yield();
    else
      sleep_ns(SHM_SLEEP_NS);
  }
}

static ftq_status barrier_from(shm_comm *c, double t0, const char *what) {
  const uint64_t g = c->gen + 1;
  atomic_store_explicit(&c->ranks[c->rank].arrived, g, memory_order_release);
  c->gen = g;
  return wait_all(c, g, t0, what);
}

static ftq_status shm_barrier_op(shm_comm *c, const char *what) { return barrier_from(c, mono_s(), what); }

/* ---------------------------------------------------------------------- */
/* collectives                                                             */

static ftq_status shm_barrier(void *impl, const char *what) {
  shm_comm *c = impl;
  /* an aborted rank never arrives, so peers cannot pass a barrier it missed */
  FTQ_TRY(check_abort(c, what));
  if (c->size == 1) return FTQ_OK;
  return shm_barrier_op(c, what);
}

/* The buffers as one stream, in chunks of one slot: copy mine in, barrier,
 * sum every slot from rank 0 upwards (so all ranks get the same bits),
 * barrier (nobody refills a slot that is still being read). */
static ftq_status shm_allreduce_f32(void *impl, float *const *bufs, const size_t *counts, size_t n_bufs,
                                    const char *what) {
  shm_comm *c = impl;
  FTQ_TRY(check_abort(c, what));
  for (size_t i = 0; i < n_bufs; i++)
    if (counts[i] && !bufs[i]) return shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "buffer %zu is NULL", i);
  if (c->size == 1) return FTQ_OK;
  const size_t cap = SHM_SLOT_BYTES / sizeof(float);
  float *mine = (float *)slot_of(c, c->rank);
  size_t b = 0, off = 0;
  while (b < n_bufs) {
    const size_t b0 = b, off0 = off;
    size_t fill = 0;
    while (b < n_bufs && fill < cap) {
      size_t take = counts[b] - off < cap - fill ? counts[b] - off : cap - fill;
      if (take) memcpy(mine + fill, bufs[b] + off, take * sizeof(float));
      fill += take;
      off += take;
      if (off == counts[b]) {
        b++;
        off = 0;
      }
    }
    if (!fill) break; /* only empty buffers were left */
    FTQ_TRY(shm_barrier_op(c, what));
    size_t pos = 0;
    for (size_t bb = b0, o = off0; pos < fill; bb++, o = 0) {
      size_t take = counts[bb] - o < fill - pos ? counts[bb] - o : fill - pos;
      float *out = bufs[bb] + o;
      if (take) memcpy(out, (const float *)slot_of(c, 0) + pos, take * sizeof(float));
      for (int r = 1; r < c->size; r++) {
        const float *s = (const float *)slot_of(c, r) + pos;
        for (size_t j = 0; j < take; j++) out[j] += s[j];
      }
      pos += take;
    }
    FTQ_TRY(shm_barrier_op(c, what));
  }
  return FTQ_OK;
}

static ftq_status shm_allreduce_host(void *impl, double *values, size_t n, ftq_comm_reduce op, const char *what) {
  shm_comm *c = impl;
  FTQ_TRY(check_abort(c, what));
  if (c->size == 1) return FTQ_OK;
  const size_t cap = SHM_SLOT_BYTES / sizeof(double);
  for (size_t pos = 0; pos < n; pos += cap) {
    const size_t take = n - pos < cap ? n - pos : cap;
    memcpy(slot_of(c, c->rank), values + pos, take * sizeof(double));
    FTQ_TRY(shm_barrier_op(c, what));
    double *out = values + pos;
    memcpy(out, slot_of(c, 0), take * sizeof(double));
    for (int r = 1; r < c->size; r++) {
      const double *s = (const double *)slot_of(c, r);
      if (op == FTQ_COMM_SUM) {
        for (size_t j = 0; j < take; j++) out[j] += s[j];
      } else {
        /* NaN wins: once the running value is NaN no comparison replaces it */
        const int is_max = op == FTQ_COMM_MAX;
        for (size_t j = 0; j < take; j++)
          if (s[j] != s[j] || (is_max ? s[j] > out[j] : s[j] < out[j])) out[j] = s[j];
      }
    }
    FTQ_TRY(shm_barrier_op(c, what));
  }
  return FTQ_OK;
}

/* One broadcast round from the cursor (*pb, *poff): pieces of the buffers
 * go to their root's slot in order until a root's slot is full. Pass 0:
 * roots copy their pieces in; pass 1: the others copy them out. Both passes
 * walk the same pieces because every rank knows every size and root.
 * Returns the bytes the round moves. */
static size_t bcast_round(shm_comm *c, void *const *bufs, const size_t *bytes, const int *roots, size_t n,
                          size_t *pb, size_t *poff, int pass) {
  memset(c->fill, 0, (size_t)c->size * sizeof *c->fill);
  size_t b = *pb, off = *poff, moved = 0;
  while (b < n) {
    if (off == bytes[b]) {
      b++;
      off = 0;
      continue;
    }
    const int root = roots[b];
    const size_t room = SHM_SLOT_BYTES - c->fill[root];
    if (!room) break;
    const size_t take = bytes[b] - off < room ? bytes[b] - off : room;
    unsigned char *s = slot_of(c, root) + c->fill[root];
    unsigned char *p = (unsigned char *)bufs[b] + off;
    if (pass == 0 && root == c->rank) memcpy(s, p, take);
    if (pass == 1 && root != c->rank) memcpy(p, s, take);
    c->fill[root] += take;
    off += take;
    moved += take;
  }
  *pb = b;
  *poff = off;
  return moved;
}

static ftq_status shm_broadcast(void *impl, void *const *bufs, const size_t *bytes, const int *roots, size_t n_bufs,
                                const char *what) {
  shm_comm *c = impl;
  FTQ_TRY(check_abort(c, what));
  for (size_t i = 0; i < n_bufs; i++) {
    if (roots[i] < 0 || roots[i] >= c->size)
      return shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "buffer %zu has root %d, outside [0, %d)", i, roots[i],
                      c->size);
    if (bytes[i] && !bufs[i]) return shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "buffer %zu is NULL", i);
  }
  if (c->size == 1) return FTQ_OK;
  size_t b = 0, off = 0;
  while (b < n_bufs) {
    size_t b0 = b, off0 = off;
    if (!bcast_round(c, bufs, bytes, roots, n_bufs, &b, &off, 0)) break;
    FTQ_TRY(shm_barrier_op(c, what));
    bcast_round(c, bufs, bytes, roots, n_bufs, &b0, &off0, 1);
    FTQ_TRY(shm_barrier_op(c, what));
  }
  return FTQ_OK;
}

/* Every operation completes before it returns: nothing is pending. */
static ftq_status shm_wait(void *impl, const char *what) { return FTQ_OK; }

/* An abort anywhere, or a peer whose process died without leaving (one that
 * left normally is not a failure here: ranks finish at different times). */
static ftq_status shm_check(void *impl) {
  shm_comm *c = impl;
  FTQ_TRY(check_abort(c, "health check"));
  for (int r = 0; r < c->size; r++) {
    pid_t pid;
    if (r != c->rank && !atomic_load_explicit(&c->ranks[r].left, memory_order_acquire) && peer_died(c, r, &pid))
      return shm_fail(c, FTQ_ERR_COMM, "health check", "rank %d (pid %ld) exited", r, (long)pid);
  }
  return FTQ_OK;
}

/* Only an atomic store: safe from another thread; the first abort wins. */
static void shm_abort(void *impl) {
  shm_comm *c = impl;
  int32_t none = 0;
  atomic_compare_exchange_strong_explicit(&c->hdr->abort_rank, &none, c->rank + 1, memory_order_acq_rel,
                                          memory_order_acquire);
}

static void unmap(shm_comm *c) {
  if (c->base) munmap(c->base, c->total);
  c->base = c->slots = NULL;
  c->hdr = NULL;
  c->ranks = NULL;
}

static void shm_destroy(void *impl) {
  shm_comm *c = impl;
  if (!c) return;
  if (c->ranks) atomic_store_explicit(&c->ranks[c->rank].left, 1, memory_order_release);
  unmap(c);
  free(c->fill);
  free(c);
}

static const ftq_comm_ops shm_ops = {
    .name = "shm",
    .allreduce_f32 = shm_allreduce_f32,
    .broadcast = shm_broadcast,
    .wait = shm_wait,
    .allreduce_host = shm_allreduce_host,
    .barrier = shm_barrier,
    .check = shm_check,
    .abort = shm_abort,
    .destroy = shm_destroy,
};

/* ---------------------------------------------------------------------- */
/* ids and joining                                                         */

#define SHM_NAME_BYTES 16

ftq_status ftq_comm_shm_id_create(unsigned char *payload, size_t len) {
  if (len < SHM_NAME_BYTES)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "shm communicator id: payload of %zu bytes, need %d", len,
                     SHM_NAME_BYTES);
  memset(payload, 0, len);
  size_t got = 0;
  while (got < SHM_NAME_BYTES) {
    ssize_t n = getrandom(payload + got, SHM_NAME_BYTES - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ftq_error(FTQ_ERR_IO, "shm communicator id: getrandom failed: %s", strerror(errno));
    }
    got += (size_t)n;
  }
  return FTQ_OK;
}

/* Offsets in the object for a world of `size` ranks; 0 on overflow. */
static size_t layout(int size, size_t *ranks_off, size_t *slots_off) {
  *ranks_off = round_up(sizeof(shm_header), 64);
  size_t slots, total;
  if (!ftq_mul_size((size_t)size, sizeof(shm_rank), &slots)) return 0;
  *slots_off = round_up(*ranks_off + slots, 4096);
  if (!ftq_mul_size((size_t)size, SHM_SLOT_BYTES, &slots) || !ftq_add_size(*slots_off, slots, &total)) return 0;
  return total;
}

static void set_views(shm_comm *c, size_t ranks_off, size_t slots_off) {
  c->hdr = (shm_header *)c->base;
  c->ranks = (shm_rank *)(c->base + ranks_off);
  c->slots = c->base + slots_off;
}

/* Rank 0: makes the object, sets the header up and publishes it. */
static ftq_status create_object(shm_comm *c, size_t ranks_off, size_t slots_off, const char *what) {
  int fd = shm_open(c->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what,
                      "shared-memory object %s already exists (two ranks 0, or an id in use twice at once)", c->name);
    return shm_fail(c, FTQ_ERR_IO, what, "cannot create shared-memory object %s: %s", c->name, strerror(errno));
  }
  /* Reserve the pages now: on a full tmpfs a later first touch would raise
   * SIGBUS instead of an error (docker's /dev/shm is 64 MiB by default). */
  int e = ftruncate(fd, (off_t)c->total) != 0 ? errno : posix_fallocate(fd, 0, (off_t)c->total);
  if (e) {
    close(fd);
    shm_unlink(c->name);
    return shm_fail(c, e == ENOSPC ? FTQ_ERR_OUT_OF_MEMORY : FTQ_ERR_IO, what,
                    "cannot size shared-memory object %s to %zu bytes (%zu MiB per rank): %s; /dev/shm may be too "
                    "small (docker: --shm-size)", c->name, c->total, SHM_SLOT_BYTES >> 20, strerror(e));
  }
  void *p = mmap(NULL, c->total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  e = errno;
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(c->name);
    return shm_fail(c, FTQ_ERR_IO, what, "cannot map shared-memory object %s: %s", c->name, strerror(e));
  }
  c->base = p;
  set_views(c, ranks_off, slots_off);
  c->hdr->version = SHM_VERSION;
  c->hdr->size = c->size;
  c->hdr->slot_bytes = SHM_SLOT_BYTES;
  c->hdr->total_bytes = c->total;
  atomic_store_explicit(&c->hdr->magic, SHM_MAGIC, memory_order_release);
  return FTQ_OK;
}

/* Other ranks: open the object once rank 0 made it, and wait until its
 * header is published. */
static ftq_status open_object(shm_comm *c, size_t ranks_off, size_t slots_off, double t0, const char *what) {
  int fd = -1;
  const char *step = "to appear (rank 0 creates it)";
  for (;;) {
    if (fd < 0) {
      fd = shm_open(c->name, O_RDWR | O_CLOEXEC, 0);
      if (fd < 0 && errno != ENOENT)
        return shm_fail(c, FTQ_ERR_IO, what, "cannot open shared-memory object %s: %s", c->name, strerror(errno));
    }
    if (fd >= 0 && !c->base) {
      struct stat st;
      if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return shm_fail(c, FTQ_ERR_IO, what, "cannot stat shared-memory object %s: %s", c->name, strerror(e));
      }
      step = "to be sized by rank 0";
      if (st.st_size > 0) {
        /* rank 0 sizes the object in one ftruncate: a size that is not
         * ours is a different world size or library version */
        if ((size_t)st.st_size < sizeof(shm_header)) {
          close(fd);
          return shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "shared-memory object %s has %lld bytes, not a libftq "
                          "communicator", c->name, (long long)st.st_size);
        }
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        int e = errno;
        close(fd);
        fd = -1;
        if (p == MAP_FAILED)
          return shm_fail(c, FTQ_ERR_IO, what, "cannot map shared-memory object %s: %s", c->name, strerror(e));
        c->base = p;
        c->total = (size_t)st.st_size;
        step = "to be initialised by rank 0";
      }
    }
    if (c->base) {
      shm_header *h = (shm_header *)c->base;
      if (atomic_load_explicit(&h->magic, memory_order_acquire) == SHM_MAGIC) {
        if (h->size != c->size) {
          int32_t none = 0;
          atomic_compare_exchange_strong(&h->bad_size, &none, c->size);
          const int32_t theirs = h->size;
          unmap(c);
          return shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "rank 0 made the communicator for world size %d, this "
                          "rank was given %d", theirs, c->size);
        }
        size_t want = layout(c->size, &ranks_off, &slots_off);
        if (h->version != SHM_VERSION || h->slot_bytes != SHM_SLOT_BYTES || h->total_bytes != want ||
            c->total != want) {
          const unsigned version = h->version;
          const unsigned long long slot = h->slot_bytes;
          unmap(c);
          return shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "shared-memory object %s has a different layout "
                          "(version %u, slots of %llu bytes): ranks run different libftq versions", c->name,
                          version, slot);
        }
        set_views(c, ranks_off, slots_off);
        return FTQ_OK;
      }
    }
    if (mono_s() - t0 > c->timeout_s) {
      if (fd >= 0) close(fd);
      unmap(c);
      return shm_fail(c, FTQ_ERR_TIMEOUT, what, "timed out after %g s waiting for shared-memory object %s %s",
                      c->timeout_s, c->name, step);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    sleep_ns(5000000L + now.tv_nsec % 15000000L); /* 5-20 ms, staggered so ranks do not poll in step */
  }
}

ftq_status ftq_comm_shm_create(const unsigned char *payload, size_t len, int rank, int size, double timeout_s,
                               void **impl, const ftq_comm_ops **ops) {
  *impl = NULL;
  *ops = NULL;
  if (len < SHM_NAME_BYTES)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "shm communicator: id payload of %zu bytes, need %d", len,
                     SHM_NAME_BYTES);
  /* 64-bit atomics in shared memory work across processes only when they
   * are lock-free (address-free); every Linux target libftq builds for has
   * them, but say so rather than corrupt silently. */
  if (ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_LONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "shm communicator: this target lacks lock-free 64-bit atomics");
  const double t0 = mono_s();
  const char *what = "joining";
  shm_comm *c = ftq_calloc(1, sizeof *c, "shm communicator");
  if (!c) return FTQ_ERR_OUT_OF_MEMORY;
  c->rank = rank;
  c->size = size;
  c->timeout_s = timeout_s;
  c->pid = getpid();
  c->pidns = my_pidns();
  static const char hex[] = "0123456789abcdef";
  memcpy(c->name, "/ftq-", 5);
  for (int i = 0; i < SHM_NAME_BYTES; i++) {
    c->name[5 + 2 * i] = hex[payload[i] >> 4];
    c->name[6 + 2 * i] = hex[payload[i] & 15];
  }
  c->name[5 + 2 * SHM_NAME_BYTES] = '\0';
  c->fill = ftq_calloc((size_t)size, sizeof *c->fill, "shm communicator");
  if (!c->fill) {
    free(c);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  size_t ranks_off = 0, slots_off = 0;
  c->total = layout(size, &ranks_off, &slots_off);
  ftq_status st = FTQ_OK;
  if (!c->total) st = shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "world size %d is too large", size);
  if (st == FTQ_OK)
    st = rank == 0 ? create_object(c, ranks_off, slots_off, what) : open_object(c, ranks_off, slots_off, t0, what);
  int unlinked = rank != 0;
  if (st == FTQ_OK) {
    shm_rank *me = &c->ranks[rank];
    if (atomic_exchange(&me->joined, 1)) {
      /* the record is the first holder's: leave it and the group alone */
      unmap(c);
      st = shm_fail(c, FTQ_ERR_INVALID_ARGUMENT, what, "another process already joined %s as rank %d", c->name,
                    rank);
    } else {
      atomic_store_explicit(&me->pidns, c->pidns, memory_order_relaxed);
      atomic_store_explicit(&me->pid, (int32_t)c->pid, memory_order_release);
    }
  }
  /* Rank 0 unlinks the name once all joined and before anyone passes the
   * joining barrier, so a rank that reuses the id right after cannot open
   * this object. */
  if (st == FTQ_OK && rank == 0) {
    st = wait_all(c, 0, t0, what);
    if (st == FTQ_OK) {
      shm_unlink(c->name);
      unlinked = 1;
    }
  }
  if (st == FTQ_OK) st = barrier_from(c, t0, what);
  if (st != FTQ_OK) {
    if (!unlinked) shm_unlink(c->name);
    /* joined peers waiting for us fail at once instead of timing out */
    if (c->hdr) shm_abort(c);
    shm_destroy(c);
    return st;
  }
  *impl = c;
  *ops = &shm_ops;
  return FTQ_OK;
}
