/**
 * @file ftq_comm.h
 * @brief Communicators: data-parallel training over several GPUs and hosts.
 *
 * A communicator (::ftq_comm) joins `world_size` processes, one per device,
 * that each hold the quantized base model and the adapter. Attached to a
 * trainer (ftq_trainer_set_comm() in ftq_trainer.h) it makes every rank
 * train on its own shard of the data and all-reduces the adapter gradients,
 * so the run follows the single-device run with the same global batch.
 *
 * Communicators are made from an id the host application creates once
 * (ftq_comm_id_create(), on one process) and hands to every rank by any
 * channel it likes: an environment variable, a file on a shared file system,
 * MPI, its own sockets. ftq_comm_id_to_string() and
 * ftq_comm_id_from_string() turn an id into printable text and back. libftq
 * itself opens no sockets (NCCL's bootstrap, inside ftq_comm_create() on a
 * CUDA context, does).
 *
 * Two kinds exist, chosen by the device type the id was made for:
 * - CUDA contexts: NCCL (libnccl.so.2, 2.14 or newer, found at run time).
 *   NVLink SHARP / multicast (NVLS) is turned off: NCCL_NVLS_ENABLE is set
 *   to 0, and a host value other than 0 is overridden with a warning. The
 *   process that made the id must keep running until every rank has joined
 *   (NCCL's bootstrap root runs there).
 * - CPU contexts: shared memory between the processes (or threads) of one
 *   host, through a POSIX shared-memory object the id names. It serves tests
 *   and CPU runs; it does not span hosts.
 *
 * Failures never hang: every collective waits at most `comm_timeout_s`
 * seconds (option, group "dist"), and a peer that exits or aborts is
 * detected. The call then fails on every surviving rank with
 * ::FTQ_ERR_TIMEOUT (nothing came in time), ::FTQ_ERR_COMM (a peer left,
 * died or aborted) or ::FTQ_ERR_NCCL (NCCL reported an error) and a message naming the operation and
 * the peer where it is known; the communicator is then aborted and only
 * ftq_comm_destroy() is valid on it.
 *
 * A communicator is not thread-safe; use it from the thread that uses its
 * context.
 */
#ifndef LIBFTQ_FTQ_COMM_H
#define LIBFTQ_FTQ_COMM_H

#include <stddef.h>

#include "ftq_context.h"
#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** Bytes of a communicator id. */
#define FTQ_COMM_ID_SIZE 160
/** Bytes a printable id takes, with its terminating NUL. */
#define FTQ_COMM_ID_STRING_SIZE 336

/** A communicator (opaque). */
typedef struct ftq_comm ftq_comm;

/** Reductions of ftq_comm_allreduce(). Values are pinned. */
typedef enum ftq_comm_reduce {
  FTQ_COMM_SUM = 0, /**< Sum over the ranks. */
  FTQ_COMM_MAX = 1, /**< Maximum over the ranks. */
  FTQ_COMM_MIN = 2  /**< Minimum over the ranks. */
} ftq_comm_reduce;

/**
 * Makes a new communicator id for devices of type `device`, on one process
 * only; every rank then passes the same id to ftq_comm_create().
 * For ::FTQ_DEVICE_CUDA it holds an NCCL unique id (the CUDA module must load
 * and have NCCL); for ::FTQ_DEVICE_CPU it names a fresh shared-memory object.
 * @param device the device type the ranks' contexts will have
 * @param id receives FTQ_COMM_ID_SIZE bytes
 * @return FTQ_OK; FTQ_ERR_NO_DEVICE / FTQ_ERR_UNSUPPORTED when the CUDA module
 *         or NCCL is missing; FTQ_ERR_NCCL when NCCL fails
 */
FTQ_API ftq_status ftq_comm_id_create(ftq_device_type device, unsigned char id[FTQ_COMM_ID_SIZE]);

/**
 * Writes an id as printable ASCII text (letters, digits and '-', no spaces),
 * so it can travel through an environment variable or a file.
 * @param id an id from ftq_comm_id_create() or ftq_comm_id_from_string()
 * @param buf receives the text and a NUL
 * @param size bytes at buf; FTQ_COMM_ID_STRING_SIZE always suffices
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT if the id is not one or buf is too small
 */
FTQ_API ftq_status ftq_comm_id_to_string(const unsigned char id[FTQ_COMM_ID_SIZE], char *buf, size_t size);

/**
 * Reads an id written by ftq_comm_id_to_string(); leading and trailing
 * white space is ignored.
 * @param text the printable id
 * @param id receives FTQ_COMM_ID_SIZE bytes
 * @return FTQ_OK; FTQ_ERR_FORMAT naming what is wrong with the text
 */
FTQ_API ftq_status ftq_comm_id_from_string(const char *text, unsigned char id[FTQ_COMM_ID_SIZE]);

/**
 * Joins the communicator `id` as rank `rank` of `world_size`. Collective:
 * every rank calls it, and it returns once all have joined, or fails after
 * `comm_timeout_s` seconds (::FTQ_ERR_TIMEOUT, naming the ranks missing where
 * known).
 * @param ctx the rank's context; its device type must be the id's
 * @param id the id every rank was given
 * @param rank this process's rank, 0 <= rank < world_size
 * @param world_size the number of ranks, >= 1
 * @param opts options (group "dist": comm_timeout_s), or NULL for defaults
 * @param out receives the communicator
 * @return FTQ_OK or an error status
 */
FTQ_API ftq_status ftq_comm_create(ftq_context *ctx, const unsigned char id[FTQ_COMM_ID_SIZE], int rank,
                                   int world_size, const ftq_options *opts, ftq_comm **out);

/**
 * Joins a communicator described by the environment, as launchers set it:
 * rank and world size from FTQ_RANK / FTQ_WORLD_SIZE, else RANK / WORLD_SIZE
 * (torchrun), else OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE (Open MPI),
 * else PMI_RANK / PMI_SIZE (MPICH, Slurm); the id from FTQ_COMM_ID (its
 * printable form), else from the file FTQ_COMM_ID_FILE: rank 0 creates the
 * id and writes the file atomically, the other ranks wait
 * for it up to `comm_timeout_s` (a file on a file system every host sees;
 * rank 0 replaces an existing file, so use a path unique to the job, since a
 * rank that starts first could read a stale id).
 * Without any rank variable it makes a one-rank communicator.
 * @param ctx the rank's context
 * @param opts options (group "dist"), or NULL for defaults
 * @param out receives the communicator
 * @return FTQ_OK or an error status naming the variable or file at fault
 */
FTQ_API ftq_status ftq_comm_create_from_env(ftq_context *ctx, const ftq_options *opts, ftq_comm **out);

/**
 * Leaves and frees a communicator (NULL is ignored). Not collective: a rank
 * may destroy its communicator while peers still wait, and they then fail
 * instead of hanging.
 * @param comm the communicator
 */
FTQ_API void ftq_comm_destroy(ftq_comm *comm);

/** @return the rank of this process, or -1 for NULL. @param comm the communicator */
FTQ_API int ftq_comm_rank(const ftq_comm *comm);

/** @return the number of ranks, or -1 for NULL. @param comm the communicator */
FTQ_API int ftq_comm_size(const ftq_comm *comm);

/**
 * Asks, without waiting, whether the communicator has failed (an
 * asynchronous NCCL error, an aborted or vanished peer).
 * @param comm the communicator
 * @return FTQ_OK while healthy, else the error that stopped it
 */
FTQ_API ftq_status ftq_comm_check(ftq_comm *comm);

/**
 * Aborts the communicator: pending and later operations fail on this rank,
 * and peers detect it and fail too. Use it to stop a run on every rank
 * promptly, e.g. from a signal-watching thread (the one call that may come
 * from another thread).
 * @param comm the communicator
 * @return FTQ_OK
 */
FTQ_API ftq_status ftq_comm_abort(ftq_comm *comm);

/**
 * Waits until every rank has called it.
 * @param comm the communicator
 * @return FTQ_OK or the failure (timeout, peer lost)
 */
FTQ_API ftq_status ftq_comm_barrier(ftq_comm *comm);

/**
 * All-reduces host values in place: afterwards every rank holds the same
 * bits (shared memory sums in rank order; NCCL in its own fixed order).
 * Meant for metrics and decisions (counts, losses, a stop flag).
 * @param comm the communicator
 * @param values n doubles in host memory
 * @param n the count (n == 0 returns at once and synchronises nothing)
 * @param op the reduction
 * @return FTQ_OK or the failure
 */
FTQ_API ftq_status ftq_comm_allreduce(ftq_comm *comm, double *values, size_t n, ftq_comm_reduce op);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_COMM_H */
