/*
 * snapd/loop.h: the daemon's single-threaded event loop.
 *
 * One thread owns the loop and every fd registered with it; handlers run on
 * that thread and must never block. Worker threads (a save, a restore) talk
 * back to the loop only through loop_post(), which is the one thread-safe
 * entry point: the posted function runs later on the loop thread.
 *
 * Signals arrive through a signalfd (loop_watch_signal); they never run
 * handlers asynchronously.
 *
 * Ownership: the loop never closes fds it watches; the caller unwatches
 * before closing. A watch or timer handle stays valid until removed, or (for
 * a one-shot timer) until its callback returned. Removing a watch from
 * inside any callback is allowed, including its own.
 */
#ifndef SNAPD_LOOP_H
#define SNAPD_LOOP_H

#include <stdint.h>

struct loop;
struct loop_watch;
struct loop_timer;

/* Event bits given to and asked of a watch (subset of epoll's). */
#define LOOP_IN   0x1u
#define LOOP_OUT  0x4u
#define LOOP_ERR  0x8u
#define LOOP_HUP  0x10u

typedef void (*loop_fd_fn)(struct loop *l, int fd, uint32_t events, void *arg);
typedef void (*loop_fn)(struct loop *l, void *arg);
typedef void (*loop_signal_fn)(struct loop *l, int signo, void *arg);

/* Create a loop. Returns 0 and *out, or -errno. */
int loop_new(struct loop **out);

/* Free the loop (watches and timers still registered are dropped). NULL ok. */
void loop_free(struct loop *l);

/*
 * Run until loop_stop() is called. Returns 0, or -errno if the loop itself
 * failed (epoll_wait error other than EINTR).
 */
int loop_run(struct loop *l);

/* Make loop_run() return after the current iteration. */
void loop_stop(struct loop *l);

/*
 * Watch @fd for @events (LOOP_IN and/or LOOP_OUT; ERR and HUP are always
 * reported). One watch per fd: a second one gives -EEXIST. Returns 0 and
 * *out, or -errno.
 */
int loop_watch_fd(struct loop *l, int fd, uint32_t events, loop_fd_fn fn,
		  void *arg, struct loop_watch **out);

/* Change the events a watch asks for. Returns 0 or -errno. */
int loop_watch_modify(struct loop *l, struct loop_watch *w, uint32_t events);

/* Stop watching and free the watch. NULL ok. */
void loop_unwatch(struct loop *l, struct loop_watch *w);

/*
 * Call @fn once after @ms milliseconds (monotonic clock). Returns 0 and
 * *out (@out may be NULL), or -errno. The timer is freed after @fn returns.
 * Timers due at the same time fire in the order they were added; a timer
 * added by a timer callback fires at the earliest in the next iteration.
 */
int loop_timer_add(struct loop *l, uint64_t ms, loop_fn fn, void *arg,
		   struct loop_timer **out);

/* Cancel a pending timer and free it. NULL ok; not after it fired (from
 * its own callback it is a no-op: the timer is freed when that returns). */
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/*
 * Deliver @signo through the loop (blocks it for the whole process; call
 * before starting threads). Returns 0 or -errno.
 */
int loop_watch_signal(struct loop *l, int signo, loop_signal_fn fn,
		      void *arg);

/*
 * Thread-safe: run @fn(@arg) on the loop thread soon. Callbacks run in the
 * order they were posted. Returns 0, or -ENOMEM.
 */
int loop_post(struct loop *l, loop_fn fn, void *arg);

#endif
