/* Data-parallel launching for the example programs (see launch.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "launch.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

extern char **environ;

/* ---------------------------------------------------------------------- */
/* A rank's place, from the environment                                     */

/* The first of `names` that is set, as an integer in [lo, hi]: 1 found,
 * 0 none set, -1 malformed (message in err). */
static int env_int(const char *const *names, long lo, long hi, int *out, const char **which, char *err,
                   size_t errlen) {
  for (; *names; names++) {
    const char *v = getenv(*names);
    if (!v || !*v) continue;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi) {
      snprintf(err, errlen, "environment variable %s = '%s' is not an integer in [%ld, %ld]", *names, v, lo, hi);
      return -1;
    }
    *out = (int)x;
    *which = *names;
    return 1;
  }
  return 0;
}

int ftq_rank_env_read(ftq_rank_env *env, char *err, size_t errlen) {
  /* the same variables, in the same order, as ftq_comm_create_from_env() */
  static const char *const rank_vars[] = {"FTQ_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", NULL};
  static const char *const size_vars[] = {"FTQ_WORLD_SIZE", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
  static const char *const local_vars[] = {"FTQ_LOCAL_RANK", "LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                           "SLURM_LOCALID", "MPI_LOCALRANKID", NULL};
  memset(env, 0, sizeof *env);
  env->world_size = 1;
  const char *size_var = NULL;
  int r = env_int(rank_vars, 0, 1 << 20, &env->rank, &env->rank_var, err, errlen);
  if (r < 0) return -1;
  env->active = r;
  if (env_int(size_vars, 1, 1 << 20, &env->world_size, &size_var, err, errlen) < 0) return -1;
  if (env_int(local_vars, 0, 1 << 20, &env->local_rank, &env->local_var, err, errlen) < 0) return -1;
  if (!env->active) {
    env->world_size = 1;
    env->local_rank = 0;
    return 0;
  }
  if (!size_var) {
    snprintf(err, errlen, "%s is set but no world size is (FTQ_WORLD_SIZE, WORLD_SIZE, OMPI_COMM_WORLD_SIZE or "
             "PMI_SIZE)", env->rank_var);
    return -1;
  }
  if (env->rank >= env->world_size) {
    snprintf(err, errlen, "rank %d (%s) is not below the world size %d (%s)", env->rank, env->rank_var,
             env->world_size, size_var);
    return -1;
  }
  return 0;
}

void ftq_rank_device(const char *device, int local_rank, char *buf, size_t len) {
  if (strcmp(device, "cuda") == 0)
    snprintf(buf, len, "cuda:%d", local_rank);
  else
    snprintf(buf, len, "%s", device);
}

char **ftq_argv_without(int argc, char **argv, const char *name) {
  char **out = calloc((size_t)argc + 1, sizeof *out);
  if (!out) return NULL;
  const size_t n = strlen(name);
  int k = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (i > 0 && strncmp(a, "--", 2) == 0 && strncmp(a + 2, name, n) == 0) {
      if (a[2 + n] == '=') continue;
      if (a[2 + n] == '\0') {
        i++; /* and its value */
        continue;
      }
    }
    out[k++] = argv[i];
  }
  out[k] = NULL;
  return out;
}

/* ---------------------------------------------------------------------- */
/* Starting and supervising the children                                    */

static volatile sig_atomic_t g_signal, g_signal_count;

static void on_signal(int sig) {
  g_signal = sig;
  g_signal_count++;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct child {
  pid_t pid;
  int running;
  int status;      /* waitpid's */
  char **envp;
} child;

/* The variables the launcher sets; inherited values of them are dropped. */
static const char *const own_vars[] = {"FTQ_RANK", "FTQ_WORLD_SIZE", "FTQ_LOCAL_RANK", "FTQ_LOCAL_WORLD_SIZE",
                                       "FTQ_COMM_ID", "NCCL_NVLS_ENABLE", NULL};

static int is_own_var(const char *entry) {
  for (const char *const *v = own_vars; *v; v++) {
    size_t n = strlen(*v);
    if (strncmp(entry, *v, n) == 0 && entry[n] == '=') return 1;
  }
  return 0;
}

static void free_envp(char **envp, size_t n_inherited) {
  if (!envp) return;
  for (char **e = envp + n_inherited; *e; e++) free(*e);
  free(envp);
}

/* The environment of rank r: ours without the launcher's variables, then
 * those for this rank. Built before fork(), as the child may only make
 * async-signal-safe calls until it execs. */
static char **make_envp(const ftq_launch_config *cfg, int rank, size_t *n_inherited) {
  size_t n = 0;
  for (char **e = environ; *e; e++) n++;
  char **envp = calloc(n + 8, sizeof *envp);
  if (!envp) return NULL;
  size_t k = 0;
  for (char **e = environ; *e; e++)
    if (!is_own_var(*e)) envp[k++] = *e;
  *n_inherited = k;
  char buf[64];
  const int values[] = {rank, cfg->nproc, rank, cfg->nproc};
  for (int i = 0; i < 4; i++) {
    snprintf(buf, sizeof buf, "%s=%d", own_vars[i], values[i]);
    if (!(envp[k++] = strdup(buf))) goto oom;
  }
  size_t len = strlen(cfg->comm_id) + 16;
  if (!(envp[k] = malloc(len))) goto oom;
  snprintf(envp[k++], len, "FTQ_COMM_ID=%s", cfg->comm_id);
  /* NVLink SHARP (multicast) stays off, as the library forces it anyway
   * (docs/cuda.md: on shared machines it can take the GPUs out of service) */
  if (!(envp[k++] = strdup("NCCL_NVLS_ENABLE=0"))) goto oom;
  envp[k] = NULL;
  return envp;
oom:
  free_envp(envp, *n_inherited);
  return NULL;
}

static void signal_all(child *c, int n, int sig) {
  for (int i = 0; i < n; i++)
    if (c[i].running) kill(c[i].pid, sig);
}

static int running_count(const child *c, int n) {
  int k = 0;
  for (int i = 0; i < n; i++) k += c[i].running;
  return k;
}

/* "rank 1 (pid 42) exited with status 1" / "... was killed by signal 9 (Killed)". */
static void describe(FILE *out, const char *prog, int rank, const child *c, const char *note) {
  if (WIFEXITED(c->status)) {
    int code = WEXITSTATUS(c->status);
    fprintf(out, "%s: rank %d (pid %ld) exited with status %d%s%s\n", prog, rank, (long)c->pid, code,
            code == 127 ? " (the program could not be started)" : "", note);
  } else if (WIFSIGNALED(c->status)) {
    int sig = WTERMSIG(c->status);
    fprintf(out, "%s: rank %d (pid %ld) was killed by signal %d (%s)%s\n", prog, rank, (long)c->pid, sig,
            strsignal(sig), note);
  }
  fflush(out);
}

static int failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

static int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int ftq_launch(const ftq_launch_config *cfg) {
  FILE *log = cfg->log ? cfg->log : stderr;
  const int n = cfg->nproc;
  child *c = calloc((size_t)n, sizeof *c);
  size_t *inherited = calloc((size_t)n, sizeof *inherited);
  if (!c || !inherited) {
    fprintf(log, "%s: out of memory\n", cfg->prog);
    free(c);
    free(inherited);
    return 1;
  }
  for (int r = 0; r < n; r++)
    if (!(c[r].envp = make_envp(cfg, r, &inherited[r]))) {
      fprintf(log, "%s: out of memory\n", cfg->prog);
      for (int i = 0; i < r; i++) free_envp(c[i].envp, inherited[i]);
      free(c);
      free(inherited);
      return 1;
    }
  const char *exe = cfg->exe;
  int search_path = 0;
  if (!exe) {
    /* ourselves, by the kernel's link when there is one (argv[0] may be a
     * relative name looked up on PATH) */
    exe = access("/proc/self/exe", X_OK) == 0 ? "/proc/self/exe" : cfg->argv[0];
    search_path = exe == cfg->argv[0];
  }

  /* handlers before the first fork, so no signal slips between */
  struct sigaction sa, old_int, old_term, old_hup;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_signal = 0;
  g_signal_count = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGHUP, &sa, &old_hup);

  const pid_t parent = getpid();
  int started = 0, result = 0;
  for (int r = 0; r < n; r++) {
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid == 0) {
#ifdef __linux__
      /* the children go when the launcher goes, even if it is SIGKILLed */
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(127);
#endif
      environ = c[r].envp;
      if (search_path)
        execvp(exe, cfg->argv);
      else
        execv(exe, cfg->argv);
      _exit(127);
    }
    if (pid < 0) {
      fprintf(log, "%s: cannot start rank %d: %s\n", cfg->prog, r, strerror(errno));
      result = 1;
      break;
    }
    c[r].pid = pid;
    c[r].running = 1;
    started++;
    fprintf(log, "%s: rank %d: pid %ld\n", cfg->prog, r, (long)pid);
  }
  fflush(log);
  (void)parent;

  double stop_t = -1, term_t = -1, kill_t = -1;
  int first = -1, signals_seen = 0;
  if (result) {
    /* a partial start cannot form the communicator: stop what was started */
    signal_all(c, n, SIGTERM);
    term_t = stop_t = mono_s();
  }
  while (running_count(c, n) > 0) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno != EINTR) break; /* no children left (cannot happen while some run) */
    if (pid > 0) {
      for (int r = 0; r < n; r++) {
        if (c[r].pid != pid || !c[r].running) continue;
        c[r].running = 0;
        c[r].status = status;
        if (failed(status)) {
          describe(log, cfg->prog, r, &c[r], term_t >= 0 ? " (stopped by the launcher)" : "");
          if (first < 0) {
            first = r;
            if (stop_t < 0) stop_t = mono_s();
            if (cfg->peer_failed_signal && term_t < 0 && running_count(c, n) > 0) {
              /* the others would otherwise wait for their collectives to time out */
              fprintf(log, "%s: telling the %d other rank(s) to stop (%s)\n", cfg->prog, running_count(c, n),
                      strsignal(cfg->peer_failed_signal));
              fflush(log);
              signal_all(c, n, cfg->peer_failed_signal);
            }
          }
        }
      }
      continue; /* collect whatever else has ended before sleeping */
    }
    const double now = mono_s();
    if (g_signal_count != signals_seen) {
      signals_seen = g_signal_count;
      if (signals_seen == 1) {
        int sig = g_signal;
        fprintf(log, "%s: %s: passing it on to the %d running rank(s)%s\n", cfg->prog, strsignal(sig),
                running_count(c, n), sig == SIGINT ? " (they stop after the current step; again to kill them)" : "");
        signal_all(c, n, sig);
        if (stop_t < 0) stop_t = now;
        if (sig != SIGINT && term_t < 0) term_t = now; /* already a termination: SIGKILL follows */
      } else if (kill_t < 0) {
        fprintf(log, "%s: signalled again: killing the running rank(s)\n", cfg->prog);
        signal_all(c, n, SIGKILL);
        kill_t = now;
      }
      fflush(log);
    }
    if (stop_t >= 0 && term_t < 0 && now - stop_t > cfg->fail_grace_s) {
      fprintf(log, "%s: %d rank(s) still running %.0f s after %s: terminating them\n", cfg->prog,
              running_count(c, n), now - stop_t, first >= 0 ? "the first failure" : "the signal");
      fflush(log);
      signal_all(c, n, SIGTERM);
      term_t = now;
    }
    if (term_t >= 0 && kill_t < 0 && now - term_t > cfg->kill_grace_s) {
      fprintf(log, "%s: %d rank(s) still running %.0f s after SIGTERM: killing them\n", cfg->prog,
              running_count(c, n), now - term_t);
      fflush(log);
      signal_all(c, n, SIGKILL);
      kill_t = now;
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL); /* a signal cuts it short */
  }

  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGHUP, &old_hup, NULL);

  if (first >= 0) {
    int n_failed = 0;
    for (int r = 0; r < n; r++) n_failed += c[r].pid > 0 && failed(c[r].status);
    if (signals_seen)
      fprintf(log, "%s: after the signal, %d of %d rank(s) ended with an error; rank %d first (", cfg->prog, n_failed,
              started, first);
    else
      fprintf(log, "%s: %d of %d rank(s) failed; rank %d failed first (", cfg->prog, n_failed, started, first);
    if (WIFEXITED(c[first].status))
      fprintf(log, "exit status %d)\n", WEXITSTATUS(c[first].status));
    else
      fprintf(log, "signal %d, %s)\n", WTERMSIG(c[first].status), strsignal(WTERMSIG(c[first].status)));
    fflush(log);
    result = exit_code(c[first].status);
  }
  for (int r = 0; r < n; r++) free_envp(c[r].envp, inherited[r]);
  free(c);
  free(inherited);
  return result;
}
