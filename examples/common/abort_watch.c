/* See abort_watch.h. ftq_comm_abort is the one communicator call that may
 * come from another thread; the mutex keeps it from racing the detach
 * before ftq_comm_destroy. */
#include "abort_watch.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static ftq_comm *g_comm;
static int g_pending; /* the signal came before a communicator was attached */

static void *watch(void *arg) {
  sigset_t *set = arg;
  for (;;) {
    int sig = 0;
    if (sigwait(set, &sig) != 0) continue;
    pthread_mutex_lock(&g_mu);
    if (g_comm) {
      fprintf(stderr, "[rank %d] another rank failed (the launcher says so): aborting the communicator\n",
              ftq_comm_rank(g_comm));
      ftq_comm_abort(g_comm);
    } else {
      g_pending = 1;
    }
    pthread_mutex_unlock(&g_mu);
  }
  return NULL;
}

int ftq_abort_watch_start(void) {
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&th, &attr, watch, &set);
  pthread_attr_destroy(&attr);
  return rc == 0 ? 0 : -1;
}

void ftq_abort_watch_attach(ftq_comm *comm) {
  pthread_mutex_lock(&g_mu);
  g_comm = comm;
  if (comm && g_pending) ftq_comm_abort(comm);
  pthread_mutex_unlock(&g_mu);
}
