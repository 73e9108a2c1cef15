/* Thread pool: workers sleep on a condition variable and wake for each
 * parallel_for "generation"; the caller runs chunk 0 and waits for the rest. */
#include "core/threads.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"

struct ftq_threadpool {
  int n;                 /* threads including the caller */
  pthread_t *threads;    /* n - 1 workers */
  pthread_mutex_t mu;
  pthread_cond_t wake;
  pthread_cond_t done;
  unsigned long generation;
  int pending;           /* workers still running this generation */
  int quit;
  /* current job */
  ftq_range_fn fn;
  void *arg;
  size_t n_items, chunk;
  int n_chunks;
};

static _Thread_local int tl_in_worker;

typedef struct worker_arg {
  ftq_threadpool *pool;
  int index;
} worker_arg;

static void run_chunk(ftq_threadpool *p, int c) {
  size_t begin = (size_t)c * p->chunk;
  size_t end = begin + p->chunk;
  if (end > p->n_items) end = p->n_items;
  if (begin < end) p->fn(p->arg, begin, end, c);
}

static void *worker_main(void *argp) {
  worker_arg wa = *(worker_arg *)argp;
  free(argp);
  ftq_threadpool *p = wa.pool;
  tl_in_worker = 1;
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
    if (p->quit) break;
    seen = p->generation;
    int c = wa.index;
    int active = c < p->n_chunks;
    pthread_mutex_unlock(&p->mu);
    if (active) run_chunk(p, c);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

ftq_status ftq_threadpool_create(int n_threads, ftq_threadpool **out) {
  *out = NULL;
  if (n_threads < 1) n_threads = 1;
  ftq_threadpool *p = ftq_calloc(1, sizeof *p, "thread pool");
  if (!p) return FTQ_ERR_OUT_OF_MEMORY;
  p->n = n_threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  if (n_threads > 1) {
    p->threads = ftq_calloc((size_t)n_threads - 1, sizeof *p->threads, "thread handles");
    if (!p->threads) {
      ftq_threadpool_destroy(p);
      return FTQ_ERR_OUT_OF_MEMORY;
    }
    for (int i = 1; i < n_threads; i++) {
      worker_arg *wa = malloc(sizeof *wa);
      int rc = wa ? 0 : -1;
      if (wa) {
        wa->pool = p;
        wa->index = i;
        rc = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
        if (rc != 0) free(wa);
      }
      if (rc != 0) {
        p->n = i; /* only i-1 workers exist; destroy joins those */
        ftq_threadpool_destroy(p);
        return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "cannot start CPU worker thread %d of %d", i, n_threads);
      }
    }
  }
  *out = p;
  return FTQ_OK;
}

void ftq_threadpool_destroy(ftq_threadpool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->quit = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  if (p->threads)
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  free(p);
}

int ftq_threadpool_size(const ftq_threadpool *p) { return p ? p->n : 1; }

void ftq_parallel_for(ftq_threadpool *p, size_t n, size_t min_chunk, ftq_range_fn fn, void *arg) {
  if (n == 0) return;
  if (min_chunk < 1) min_chunk = 1;
  size_t max_chunks = (n + min_chunk - 1) / min_chunk;
  int n_chunks = (!p || tl_in_worker) ? 1 : (max_chunks < (size_t)p->n ? (int)max_chunks : p->n);
  if (n_chunks <= 1) {
    fn(arg, 0, n, 0);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->arg = arg;
  p->n_items = n;
  p->chunk = (n + (size_t)n_chunks - 1) / (size_t)n_chunks;
  p->n_chunks = n_chunks;
  p->pending = p->n - 1;
  p->generation++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);

  tl_in_worker = 1; /* nested parallel_for from fn runs serially */
  run_chunk(p, 0);
  tl_in_worker = 0;

  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

int ftq_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
