/* The examples' data-parallel launcher (examples/common/launch.c) with
 * shell children: environment of each rank, exit statuses, a failed rank
 * stopping the others after the grace time (SIGTERM, then SIGKILL), signal
 * forwarding; and reading a rank's place from launchers' variables. */
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "launch.h"
#include "test_util.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int g_peer_signal; /* the launcher's peer_failed_signal for the next run() */

/* Runs `script` in nproc shells; returns the launcher's status, its
 * messages in *log (free it) and the seconds it took in *secs. */
static int run(int nproc, const char *script, double fail_grace, char **log, double *secs) {
  char *const argv[] = {"sh", "-c", (char *)script, NULL};
  size_t len = 0;
  FILE *mem = open_memstream(log, &len);
  ftq_launch_config cfg = {"launcher", "/bin/sh", argv, nproc, "ftq1-shm-00ff", fail_grace, 0.5, mem,
                           g_peer_signal};
  double t0 = now_s();
  int rc = ftq_launch(&cfg);
  *secs = now_s() - t0;
  fclose(mem);
  return rc;
}

static void clear_rank_vars(void) {
  const char *vars[] = {"FTQ_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "FTQ_WORLD_SIZE", "WORLD_SIZE",
                        "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "FTQ_LOCAL_RANK", "LOCAL_RANK",
                        "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

int main(void) {
  char *log = NULL;
  double secs;

  /* every rank gets its place and the id; NVLS is off; inherited values of
   * the launcher's own variables are replaced */
  setenv("FTQ_RANK", "7", 1);
  unsetenv("NCCL_NVLS_ENABLE");
  CHECK(run(3,
            "[ \"$FTQ_RANK\" -ge 0 ] && [ \"$FTQ_RANK\" -lt 3 ] && [ \"$FTQ_LOCAL_RANK\" = \"$FTQ_RANK\" ] && "
            "[ \"$FTQ_WORLD_SIZE\" = 3 ] && [ \"$FTQ_LOCAL_WORLD_SIZE\" = 3 ] && [ \"$FTQ_COMM_ID\" = ftq1-shm-00ff ] "
            "&& [ \"$NCCL_NVLS_ENABLE\" = 0 ]",
            5, &log, &secs) == 0);
  CHECK(strstr(log, "rank 0: pid ") && strstr(log, "rank 2: pid "));
  CHECK(!strstr(log, "failed"));
  free(log);
  /* NVLS stays off whatever the environment says */
  setenv("NCCL_NVLS_ENABLE", "1", 1);
  CHECK(run(2, "[ \"$NCCL_NVLS_ENABLE\" = 0 ]", 5, &log, &secs) == 0);
  free(log);
  unsetenv("NCCL_NVLS_ENABLE");
  unsetenv("FTQ_RANK");

  /* rank 1 fails at once; the others would hang: after the grace time
   * they get SIGTERM; the status is rank 1's and the message names it */
  CHECK(run(3, "[ \"$FTQ_RANK\" = 1 ] && exit 5; exec sleep 30", 0.3, &log, &secs) == 5);
  CHECK(secs < 10);
  CHECK(strstr(log, "rank 1 (pid ") && strstr(log, "exited with status 5"));
  CHECK(strstr(log, "terminating them"));
  CHECK(strstr(log, "rank 0 (pid ") && strstr(log, "killed by signal 15"));
  CHECK(strstr(log, "3 of 3 rank(s) failed; rank 1 failed first (exit status 5)"));
  free(log);

  /* with a peer_failed_signal the others hear of the failure at once and
   * stop long before the grace time (60 s) */
  g_peer_signal = SIGUSR1;
  CHECK(run(3, "trap 'exit 7' USR1; [ \"$FTQ_RANK\" = 1 ] && exit 5; while :; do sleep 0.05; done", 60, &log,
            &secs) == 5);
  CHECK_MSG(secs < 10, "the ranks took %.1f s to stop", secs);
  CHECK(strstr(log, "telling the 2 other rank(s) to stop"));
  CHECK(strstr(log, "rank 0 (pid ") && strstr(log, "exited with status 7"));
  CHECK(!strstr(log, "terminating them"));
  free(log);
  g_peer_signal = 0;

  /* a rank that ignores SIGTERM is killed; a rank killed by a signal
   * gives 128 + signal */
  CHECK(run(2, "if [ \"$FTQ_RANK\" = 1 ]; then kill -9 $$; fi; trap '' TERM; exec sleep 30", 0.2, &log, &secs) == 137);
  CHECK(secs < 10);
  CHECK(strstr(log, "rank 1 (pid ") && strstr(log, "killed by signal 9"));
  CHECK(strstr(log, "killing them"));
  CHECK(strstr(log, "rank 1 failed first (signal 9"));
  free(log);

  /* SIGINT to the launcher reaches the ranks (rank 0 sends it to its parent) */
  CHECK(run(2, "trap 'exit 3' INT; [ \"$FTQ_RANK\" = 0 ] && sleep 0.2 && kill -INT $PPID; "
               "while :; do sleep 0.05; done", 20, &log, &secs) == 3);
  CHECK(secs < 10);
  CHECK(strstr(log, "passing it on to the 2 running rank(s)"));
  free(log);

  /* a program that cannot be started */
  {
    char *const argv[] = {"nothing", NULL};
    size_t len = 0;
    FILE *mem = open_memstream(&log, &len);
    ftq_launch_config cfg = {"launcher", "/nonexistent/program", argv, 2, "id", 1, 1, mem};
    CHECK(ftq_launch(&cfg) == 127);
    fclose(mem);
    CHECK(strstr(log, "could not be started"));
    free(log);
  }

  /* argv without --nproc_per_node, in both spellings */
  {
    char *argv[] = {"prog", "--a", "1", "--nproc_per_node", "4", "--b", "--nproc_per_node=2", "--nproc_per_nodex",
                    NULL};
    char **out = ftq_argv_without(8, argv, "nproc_per_node");
    if (!out) return 1;
    const char *want[] = {"prog", "--a", "1", "--b", "--nproc_per_nodex", NULL};
    for (int i = 0; want[i]; i++) CHECK(out[i] && strcmp(out[i], want[i]) == 0);
    CHECK(out[5] == NULL);
    free(out);
  }

  /* a rank's place from the launchers' variables */
  ftq_rank_env env;
  char err[256];
  clear_rank_vars();
  CHECK(ftq_rank_env_read(&env, err, sizeof err) == 0 && !env.active && env.rank == 0 && env.world_size == 1);
  setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  setenv("OMPI_COMM_WORLD_SIZE", "8", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  CHECK(ftq_rank_env_read(&env, err, sizeof err) == 0 && env.active && env.rank == 3 && env.world_size == 8 &&
        env.local_rank == 1 && strcmp(env.rank_var, "OMPI_COMM_WORLD_RANK") == 0);
  setenv("FTQ_RANK", "2", 1); /* ours first */
  setenv("FTQ_WORLD_SIZE", "4", 1);
  setenv("SLURM_LOCALID", "0", 1);
  CHECK(ftq_rank_env_read(&env, err, sizeof err) == 0 && env.rank == 2 && env.world_size == 4 &&
        env.local_rank == 1);
  setenv("FTQ_WORLD_SIZE", "2", 1);
  CHECK(ftq_rank_env_read(&env, err, sizeof err) == -1 && strstr(err, "not below the world size"));
  setenv("FTQ_WORLD_SIZE", "four", 1);
  CHECK(ftq_rank_env_read(&env, err, sizeof err) == -1 && strstr(err, "FTQ_WORLD_SIZE"));
  clear_rank_vars();
  setenv("RANK", "1", 1);
  CHECK(ftq_rank_env_read(&env, err, sizeof err) == -1 && strstr(err, "no world size"));
  clear_rank_vars();

  char dev[32];
  ftq_rank_device("cuda", 3, dev, sizeof dev);
  CHECK(strcmp(dev, "cuda:3") == 0);
  ftq_rank_device("cuda:1", 3, dev, sizeof dev);
  CHECK(strcmp(dev, "cuda:1") == 0);
  ftq_rank_device("cpu", 3, dev, sizeof dev);
  CHECK(strcmp(dev, "cpu") == 0);
  return test_finish("test_launch");
}
