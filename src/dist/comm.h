/* Internal view of ftq_comm (include/libftq/ftq_comm.h): the public calls
 * in src/dist/comm.c dispatch to one implementation through
 * ftq_comm_ops (backend.h): shared memory for CPU contexts
 * (src/dist/comm_shm.c), NCCL for CUDA contexts (cuda/comm_nccl.cu, reached
 * through the backend table). The trainer (src/train/trainer_dist.c) uses
 * the device-buffer collectives below. */
#ifndef FTQ_DIST_COMM_H
#define FTQ_DIST_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "core/context.h"
#include "libftq/ftq_comm.h"

/* The id's layout: "FTQC", version, kind, two zero bytes, then the kind's
 * payload (an NCCL unique id, or the shared-memory object's random name). */
#define FTQ_COMM_ID_MAGIC "FTQC"
#define FTQ_COMM_ID_VERSION 1
#define FTQ_COMM_KIND_SHM 0
#define FTQ_COMM_KIND_NCCL 1
#define FTQ_COMM_PAYLOAD_OFFSET 8

struct ftq_comm {
  ftq_context *ctx;
  int rank, size;
  int kind;                 /* FTQ_COMM_KIND_* */
  double timeout_s;
  const ftq_comm_ops *ops;
  void *impl;
  ftq_status failed;        /* sticky: the first failure; FTQ_OK while healthy */
  char failure[512];        /* its message, repeated by every later call */
};

/* The collectives on device buffers of the comm's context (host memory on
 * the CPU), for the trainer. They may return before the work is done
 * (NCCL: on a communication stream, ordered after the work issued so far on
 * the context's stream); ftq_comm_wait() makes the context's stream wait
 * for them and blocks until they are complete. A failure is sticky: the
 * communicator aborts and every later call returns the same error. */
ftq_status ftq_comm_allreduce_sum_f32(ftq_comm *c, float *const *bufs, const size_t *counts, size_t n_bufs,
                                      const char *what);
ftq_status ftq_comm_broadcast_bufs(ftq_comm *c, void *const *bufs, const size_t *bytes, const int *roots,
                                   size_t n_bufs, const char *what);
ftq_status ftq_comm_wait(ftq_comm *c, const char *what);

/* Shared-memory communicators (src/dist/comm_shm.c). The payload of an id
 * is FTQ_COMM_ID_SIZE - FTQ_COMM_PAYLOAD_OFFSET bytes. */
ftq_status ftq_comm_shm_id_create(unsigned char *payload, size_t len);
ftq_status ftq_comm_shm_create(const unsigned char *payload, size_t len, int rank, int size, double timeout_s,
                               void **impl, const ftq_comm_ops **ops);

#endif /* FTQ_DIST_COMM_H */
