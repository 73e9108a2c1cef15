/* ftq-finetune --nproc_per_node 2 on the CPU (shared-memory communicator),
 * with the tiny reference model:
 * 1. the run succeeds, rank 0 alone prints, and its logged losses equal
 *    those of one process with gradient_accumulation_steps doubled;
 * 2. with ZeRO-1, a rank SIGKILLed mid-run makes the launcher fail within
 *    a bounded time, naming the rank; resuming from the last checkpoint
 *    completes the run with the losses of the uninterrupted run.
 * usage: test_finetune_ddp <ftq-finetune> <scratch folder>   (run from the source tree) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#define MAX_STEPS 8

static const char *g_exe, *g_scratch;
static const char *g_device; /* NULL: the CPU; "cuda": one GPU per rank (NCCL) */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Starts ftq-finetune with the common settings and `extra` (NULL-ended),
 * stdout and stderr into <scratch>/<name>.out / .err. */
static pid_t start(const char *name, const char *const *extra, const char *delay_ms) {
  static const char *common[] = {"--model", "tests/ref/peft/tiny", "--data", "examples/data/catalog_train_text.jsonl",
                                 "--max_steps", "8", "--logging_steps", "1", "--per_device_train_batch_size", "2",
                                 "--max_seq_length", "64", "--r", "4", "--lora_alpha", "8", "--num_threads", "1",
                                 "--comm_timeout_s", "20", NULL};
  const char *argv[64];
  int k = 0;
  argv[k++] = g_exe;
  for (int i = 0; common[i]; i++) argv[k++] = common[i];
  for (int i = 0; extra[i]; i++) argv[k++] = extra[i];
  if (g_device) {
    argv[k++] = "--device";
    argv[k++] = g_device;
  }
  argv[k] = NULL;
  char out[4096], err[4096];
  snprintf(out, sizeof out, "%s/%s.out", g_scratch, name);
  snprintf(err, sizeof err, "%s/%s.err", g_scratch, name);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0) _exit(126);
    dup2(fo, 1);
    dup2(fe, 2);
    if (delay_ms)
      setenv("FTQ_FINETUNE_TEST_STEP_DELAY_MS", delay_ms, 1);
    else
      unsetenv("FTQ_FINETUNE_TEST_STEP_DELAY_MS");
    execv(g_exe, (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* Waits up to limit_s for pid; returns its waitpid status, or -1 after
 * killing it when it ran over. */
static int wait_for(pid_t pid, double limit_s, double *secs) {
  double t0 = now_s();
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (secs) *secs = now_s() - t0;
      return status;
    }
    if (r < 0 && errno != EINTR) return -1;
    if (now_s() - t0 > limit_s) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fprintf(stderr, "still running after %.0f s: killed\n", limit_s);
      return -1;
    }
    sleep_ms(20);
  }
}

static char *slurp(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", g_scratch, name);
  FILE *f = fopen(path, "r");
  if (!f) return calloc(1, 1);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = calloc((size_t)n + 1, 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
  fclose(f);
  return s;
}

static void show(const char *name) {
  char *s = slurp(name);
  fprintf(stderr, "---- %s ----\n%s\n", name, s);
  free(s);
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
  return n;
}

/* The per-step losses of <run>/metrics.jsonl (the last record of a step
 * wins: a resumed run appends); NAN where a step has none. */
static void losses(const char *run, double out[MAX_STEPS + 1]) {
  for (int i = 0; i <= MAX_STEPS; i++) out[i] = NAN;
  char name[256];
  snprintf(name, sizeof name, "%s/metrics.jsonl", run);
  char *text = slurp(name);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    const char *st = strstr(line, "\"step\":"), *lo = strstr(line, "\"loss\":");
    if (!st || !lo || strstr(line, "\"event\"")) continue;
    long step = strtol(st + 7, NULL, 10);
    if (step >= 1 && step <= MAX_STEPS) out[step] = strtod(lo + 7, NULL);
  }
  free(text);
}

static int same(double a, double b) { return fabs(a - b) <= 1e-5 * fabs(b); }

/* The highest N of <scratch>/<run>/checkpoint-N, or -1. */
static int last_checkpoint(const char *run) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", g_scratch, run);
  DIR *d = opendir(path);
  int best = -1;
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d));) {
    int n;
    char tail;
    if (sscanf(e->d_name, "checkpoint-%d%c", &n, &tail) == 1 && n > best) best = n;
  }
  closedir(d);
  return best;
}

int main(int argc, char **argv) {
  if (argc != 3 && !(argc == 4 && strcmp(argv[3], "cuda") == 0)) {
    fprintf(stderr, "usage: %s <ftq-finetune> <scratch folder> [cuda]\n", argv[0]);
    return 2;
  }
  g_exe = argv[1];
  g_scratch = argv[2];
  if (argc == 4) { /* the same runs on GPUs 0 and 1 */
    int ndev;
    int gpu_rc = test_need_two_gpus("test_finetune_ddp_cuda", &ndev);
    if (gpu_rc) return gpu_rc;
    g_device = "cuda";
  }
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_scratch, g_scratch);
  if (system(cmd) != 0) return 1;
  char dir_ddp[4096], dir_one[4096], dir_kill[4096];
  snprintf(dir_ddp, sizeof dir_ddp, "%s/ddp", g_scratch);
  snprintf(dir_one, sizeof dir_one, "%s/one", g_scratch);
  snprintf(dir_kill, sizeof dir_kill, "%s/kill", g_scratch);

  /* 1. two ranks against one process with twice the accumulation */
  const char *ddp_args[] = {"--nproc_per_node", "2", "--gradient_accumulation_steps", "1", "--output_dir", dir_ddp,
                            NULL};
  const char *one_args[] = {"--gradient_accumulation_steps", "2", "--output_dir", dir_one, NULL};
  double secs = 0;
  int st = wait_for(start("ddp", ddp_args, NULL), 120, &secs);
  CHECK_MSG(st == 0, "ftq-finetune --nproc_per_node 2: status %d", st);
  if (st != 0) show("ddp.err");
  fprintf(stderr, "2 ranks: %.1f s\n", secs);
  st = wait_for(start("one", one_args, NULL), 120, &secs);
  CHECK_MSG(st == 0, "ftq-finetune (one process): status %d", st);
  if (st != 0) show("one.err");
  double l_ddp[MAX_STEPS + 1], l_one[MAX_STEPS + 1];
  losses("ddp", l_ddp);
  losses("one", l_one);
  for (int s = 1; s <= MAX_STEPS; s++) {
    CHECK_MSG(isfinite(l_ddp[s]) && isfinite(l_one[s]), "step %d: no loss logged (2 ranks %g, one %g)", s,
              l_ddp[s], l_one[s]);
    CHECK_MSG(same(l_ddp[s], l_one[s]), "step %d: loss %.9g with 2 ranks, %.9g in one process", s, l_ddp[s],
              l_one[s]);
  }
  /* rank 0 alone speaks and writes the adapter */
  char *out = slurp("ddp.out"), *err = slurp("ddp.err");
  CHECK_MSG(count(out, "device: ") == 1, "'device:' printed %d times", count(out, "device: "));
  CHECK(count(out, "adapter saved: ") == 1);
  CHECK(strstr(out, "data parallel: 2 ranks; global batch 2 x 2 x 1 = 4 rows per step"));
  CHECK(!strstr(err, "[rank 1]"));
  CHECK(strstr(err, "rank 0: pid ") && strstr(err, "rank 1: pid "));
  free(out);
  free(err);
  char path[4200];
  snprintf(path, sizeof path, "%s/adapter/adapter_model.safetensors", dir_ddp);
  CHECK_MSG(access(path, R_OK) == 0, "%s missing", path);

  /* 2. rank 1 killed after the first checkpoint: the launcher fails in
   * bounded time and names it */
  /* with ZeRO-1 here: the optimizer states are sharded, one file per rank */
  const char *kill_args[] = {"--nproc_per_node", "2", "--zero_stage", "1", "--save_steps", "2", "--output_dir",
                             dir_kill, NULL};
  pid_t launcher = start("kill", kill_args, "400");
  pid_t victim = -1;
  double t_start = now_s();
  while (now_s() - t_start < 60) {
    if (victim < 0) {
      char *e = slurp("kill.err");
      const char *p = strstr(e, "rank 1: pid ");
      if (p) victim = (pid_t)strtol(p + 12, NULL, 10);
      free(e);
    }
    if (victim > 0 && last_checkpoint("kill") >= 2) break;
    if (waitpid(launcher, &st, WNOHANG) == launcher) {
      launcher = -1;
      break;
    }
    sleep_ms(10);
  }
  if (launcher <= 0 || victim <= 0) {
    fprintf(stderr, "the run ended (or never saved checkpoint-2) before rank 1 could be killed\n");
    show("kill.err");
    return 1;
  }
  sleep_ms(100); /* into step 3's pause: checkpoint-2 is complete on every rank */
  double t_kill = now_s();
  CHECK(kill(victim, SIGKILL) == 0);
  st = wait_for(launcher, 90, NULL);
  double took = now_s() - t_kill;
  fprintf(stderr, "launcher ended %.1f s after rank 1 was killed\n", took);
  CHECK_MSG(st != -1 && st != 0, "the launcher's status after a rank was killed: %d", st);
  CHECK_MSG(took < 30, "the launcher took %.1f s to fail (comm_timeout_s 20)", took);
  err = slurp("kill.err");
  char expect[128];
  snprintf(expect, sizeof expect, "rank 1 (pid %ld) was killed by signal 9", (long)victim);
  CHECK_MSG(strstr(err, expect), "the launcher does not say '%s'", expect);
  CHECK(strstr(err, "rank 1 failed first"));
  if (st == 0 || !strstr(err, expect)) show("kill.err");
  free(err);

  /* resuming from the last checkpoint completes the run as if uninterrupted */
  int ck = last_checkpoint("kill");
  CHECK_MSG(ck >= 2 && ck < MAX_STEPS, "last checkpoint: %d", ck);
  char ck_dir[4300];
  snprintf(ck_dir, sizeof ck_dir, "%s/checkpoint-%d", dir_kill, ck);
  const char *resume_args[] = {"--nproc_per_node", "2", "--zero_stage", "1", "--save_steps", "2", "--output_dir",
                               dir_kill, "--resume_from_checkpoint", ck_dir, NULL};
  /* another world size is refused, saying why */
  const char *alone_args[] = {"--zero_stage", "1", "--output_dir", dir_kill, "--resume_from_checkpoint", ck_dir, NULL};
  st = wait_for(start("alone", alone_args, NULL), 120, &secs);
  CHECK_MSG(st != 0, "one process resumed a checkpoint of 2 ranks");
  err = slurp("alone.err");
  CHECK_MSG(strstr(err, "resume with the same world size"), "no clear refusal:\n%s", err);
  free(err);

  st = wait_for(start("resume", resume_args, NULL), 120, &secs);
  CHECK_MSG(st == 0, "resume from %s: status %d", ck_dir, st);
  if (st != 0) show("resume.err");
  out = slurp("resume.out");
  char trained[64];
  snprintf(trained, sizeof trained, "trained %d steps", MAX_STEPS);
  CHECK_MSG(strstr(out, trained), "the resumed run does not say '%s'", trained);
  free(out);
  double l_res[MAX_STEPS + 1];
  losses("kill", l_res);
  for (int s = ck + 1; s <= MAX_STEPS; s++)
    CHECK_MSG(isfinite(l_res[s]) && same(l_res[s], l_ddp[s]), "step %d: loss %.9g after resuming, %.9g uninterrupted",
              s, l_res[s], l_ddp[s]);
  snprintf(path, sizeof path, "%s/adapter/adapter_model.safetensors", dir_kill);
  CHECK_MSG(access(path, R_OK) == 0, "%s missing", path);
  return test_finish("test_finetune_ddp");
}
