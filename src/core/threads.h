/* A small fixed-size thread pool with a blocking parallel-for.
 * Owned by a context; the calling thread takes part in the work. */
#ifndef FTQ_CORE_THREADS_H
#define FTQ_CORE_THREADS_H

#include <stddef.h>

#include "libftq/ftq_status.h"

typedef struct ftq_threadpool ftq_threadpool;

/* fn processes items [begin, end); `worker` is 0..nthreads-1, unique among
 * the calls of one ftq_parallel_for, for per-thread scratch. */
typedef void (*ftq_range_fn)(void *arg, size_t begin, size_t end, int worker);

/* n_threads >= 1 (1 = no extra threads). */
ftq_status ftq_threadpool_create(int n_threads, ftq_threadpool **out);
void ftq_threadpool_destroy(ftq_threadpool *pool);
int ftq_threadpool_size(const ftq_threadpool *pool);

/* Splits [0, n) into at most one contiguous chunk per thread, each of at
 * least `min_chunk` items, runs them and waits. A NULL pool, or a call made
 * from inside a pool worker, runs serially. */
void ftq_parallel_for(ftq_threadpool *pool, size_t n, size_t min_chunk, ftq_range_fn fn, void *arg);

/* Number of online CPU cores (>= 1). */
int ftq_cpu_count(void);

#endif /* FTQ_CORE_THREADS_H */
