/* Thread pool: every index exactly once, chunking, nesting, many rounds. */
#include <stdatomic.h>

#include "core/threads.h"
#include "test_util.h"

typedef struct job {
  atomic_int *hits;
  atomic_int calls;
  ftq_threadpool *pool;
  atomic_int nested_ok;
} job;

static void mark(void *arg, size_t b, size_t e, int worker) {
  job *j = arg;
  atomic_fetch_add(&j->calls, 1);
  for (size_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
  (void)worker;
}

static void inner(void *arg, size_t b, size_t e, int worker) {
  atomic_int *count = arg;
  atomic_fetch_add(count, (int)(e - b));
  (void)worker;
}

static void outer(void *arg, size_t b, size_t e, int worker) {
  job *j = arg;
  atomic_int count = 0;
  ftq_parallel_for(j->pool, 100, 1, inner, &count); /* runs serially inside a worker */
  if (atomic_load(&count) == 100) atomic_fetch_add(&j->nested_ok, 1);
  (void)b, (void)e, (void)worker;
}

int main(void) {
  int sizes[] = {1, 2, 3, 4, 7};
  size_t ns[] = {0, 1, 2, 5, 63, 64, 65, 1000, 12345};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    ftq_threadpool *p;
    REQUIRE_OK(ftq_threadpool_create(sizes[s], &p));
    CHECK(ftq_threadpool_size(p) == sizes[s]);
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
      for (size_t min_chunk = 1; min_chunk <= 100; min_chunk *= 10) {
        size_t n = ns[k];
        atomic_int *hits = calloc(n ? n : 1, sizeof *hits);
        job j = {hits, 0, p, 0};
        ftq_parallel_for(p, n, min_chunk, mark, &j);
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= atomic_load(&hits[i]) == 1;
        CHECK_MSG(ok, "threads=%d n=%zu min_chunk=%zu", sizes[s], n, min_chunk);
        int calls = atomic_load(&j.calls);
        CHECK(calls <= sizes[s]);
        if (n) CHECK((size_t)calls <= (n + min_chunk - 1) / min_chunk);
        free(hits);
      }
    }
    job j = {NULL, 0, p, 0};
    ftq_parallel_for(p, (size_t)sizes[s], 1, outer, &j);
    CHECK(atomic_load(&j.nested_ok) == sizes[s]);
    /* many quick rounds: no lost wake-ups */
    atomic_int *hits = calloc(16, sizeof *hits);
    for (int r = 0; r < 2000; r++) {
      job q = {hits, 0, p, 0};
      ftq_parallel_for(p, 16, 1, mark, &q);
    }
    int ok = 1;
    for (int i = 0; i < 16; i++) ok &= atomic_load(&hits[i]) == 2000;
    CHECK(ok);
    free(hits);
    ftq_threadpool_destroy(p);
  }
  /* NULL pool runs serially */
  atomic_int *hits = calloc(10, sizeof *hits);
  job j = {hits, 0, NULL, 0};
  ftq_parallel_for(NULL, 10, 1, mark, &j);
  CHECK(atomic_load(&j.calls) == 1);
  free(hits);
  ftq_threadpool_destroy(NULL);
  CHECK(ftq_cpu_count() >= 1);
  return test_finish("test_threads");
}
