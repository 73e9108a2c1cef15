/* The rank side of the launcher's peer_failed_signal (launch.h): a thread
 * that waits for SIGUSR1 and then aborts the attached communicator, so a
 * rank blocked in a collective with a dead peer stops at once instead of
 * after comm_timeout_s (NCCL cannot tell a dead peer on this host from a
 * slow one). */
#ifndef FTQ_EXAMPLES_ABORT_WATCH_H
#define FTQ_EXAMPLES_ABORT_WATCH_H

#include "libftq/ftq_comm.h"

/* Blocks SIGUSR1 in the calling thread and starts the watcher. Call it in
 * main before any other thread exists (libftq's thread pools are made with
 * the context), so every thread inherits the mask and only the watcher
 * takes the signal. Returns 0, or -1 when the thread cannot start. */
int ftq_abort_watch_start(void);

/* Attaches the communicator to abort (a signal that came earlier aborts it
 * now); NULL detaches, which must happen before ftq_comm_destroy(). */
void ftq_abort_watch_attach(ftq_comm *comm);

#endif /* FTQ_EXAMPLES_ABORT_WATCH_H */
