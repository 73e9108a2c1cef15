/* Data-parallel runs of the example programs: reading a rank's place from
 * the environment launchers set (mpirun, torchrun-like launchers, Slurm,
 * our own --nproc_per_node), and starting and supervising one process per
 * device on this host. POSIX (fork, execve, waitpid); Linux extras where
 * available (the children die with the launcher). No libftq calls: the
 * caller makes the communicator id and passes its text. */
#ifndef FTQ_EXAMPLES_LAUNCH_H
#define FTQ_EXAMPLES_LAUNCH_H

#include <stddef.h>
#include <stdio.h>

/* Where this process sits in a data-parallel run. */
typedef struct ftq_rank_env {
  int active;              /* a rank variable is set: join a communicator */
  int rank, world_size;    /* 0 and 1 when inactive */
  int local_rank;          /* index on this host (device cuda:local_rank); 0 when unknown */
  const char *rank_var;    /* the variables they came from (NULL when absent) */
  const char *local_var;
} ftq_rank_env;

/* Reads FTQ_RANK / RANK / OMPI_COMM_WORLD_RANK / PMI_RANK, the matching
 * world size and FTQ_LOCAL_RANK / LOCAL_RANK / OMPI_COMM_WORLD_LOCAL_RANK /
 * SLURM_LOCALID / MPI_LOCALRANKID. Returns 0, or -1 with a message in err
 * (a malformed value, a rank without a world size, rank >= world size). */
int ftq_rank_env_read(ftq_rank_env *env, char *err, size_t errlen);

/* The device of a rank: "cuda" becomes "cuda:<local_rank>"; anything else
 * ("cpu", an explicit "cuda:N") is kept. */
void ftq_rank_device(const char *device, int local_rank, char *buf, size_t len);

/* What ftq_launch() starts. */
typedef struct ftq_launch_config {
  const char *prog;        /* name for messages, e.g. "ftq-finetune" */
  const char *exe;         /* program to run; NULL: this program (/proc/self/exe, else argv[0] on PATH) */
  char *const *argv;       /* the children's argv (NULL-terminated); argv[0] is kept */
  int nproc;               /* processes to start, >= 1 */
  const char *comm_id;     /* printable communicator id, passed as FTQ_COMM_ID */
  double fail_grace_s;     /* after the first failure, wait this long for the others to fail by
                            * themselves (comm_timeout_s + 30), then SIGTERM them */
  double kill_grace_s;     /* after a SIGTERM, wait this long, then SIGKILL */
  FILE *log;               /* the launcher's own messages (stderr) */
  int peer_failed_signal;  /* sent to the running ranks at once when one fails (ftq-finetune: SIGUSR1,
                            * which makes a rank abort its communicator); 0: none */
} ftq_launch_config;

/* Starts cfg->nproc children with FTQ_RANK, FTQ_WORLD_SIZE, FTQ_LOCAL_RANK,
 * FTQ_LOCAL_WORLD_SIZE, FTQ_COMM_ID and NCCL_NVLS_ENABLE=0 in
 * their environment and waits for them. SIGINT / SIGTERM / SIGHUP received
 * meanwhile are forwarded to the children; a second one kills them. When a
 * child fails, the others get cfg->peer_failed_signal at once (when set)
 * and fail_grace_s to fail by themselves (the library notices a lost peer)
 * before they are terminated. Prints each
 * child's pid when started and, on failure, every failed rank with its exit
 * status or signal. Returns the status this process should exit with: 0 when
 * every child succeeded, else the first failure's exit status (128 + signal
 * for a child killed by a signal), or 1 when no child could be started. */
int ftq_launch(const ftq_launch_config *cfg);

/* Copies argv without the flag --name VALUE / --name=VALUE (every
 * occurrence) into a new NULL-terminated array (free() it; the strings are
 * argv's). Returns NULL when out of memory. */
char **ftq_argv_without(int argc, char **argv, const char *name);

#endif /* FTQ_EXAMPLES_LAUNCH_H */
