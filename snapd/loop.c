/*
 * snapd/loop.c: the event loop behind snapd/loop.h.
 *
 * One epoll instance carries every fd watch, one signalfd for the signals
 * the daemon asked for, and one eventfd that wakes the loop when another
 * thread posts a function. Timers live in a binary min-heap ordered by
 * (deadline, sequence number), so timers due at the same moment fire in the
 * order they were added; the nearest deadline becomes epoll_wait's timeout.
 *
 * Removal during dispatch: epoll_wait hands back up to a batch of events
 * that point at watches, and a callback may unwatch any of them (its own
 * included). An unwatched watch is taken out of epoll at once, marked dead
 * and parked on a list that is freed only after the whole batch has been
 * dispatched, so a later event of the same batch never touches freed
 * memory. A timer being fired is out of the heap already; cancelling it
 * from its own callback is a no-op and it is freed when the callback
 * returns.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/util.h"
#include "snapd/loop.h"

#define LOOP_BATCH 64
#define LOOP_EVMASK (LOOP_IN | LOOP_OUT | LOOP_ERR | LOOP_HUP)

/* What an epoll event's data.ptr points at: a watch or one of ours. */
enum watch_kind {
	WATCH_FD,
	WATCH_SIGNAL,
	WATCH_POST,
};

struct loop_watch {
	enum watch_kind kind;
	int fd;
	loop_fd_fn fn;
	void *arg;
	bool dead;
	struct loop_watch *prev, *next; /* live list, or next on the dead list */
};

struct loop_timer {
	uint64_t deadline;  /* monotonic ns */
	uint64_t seq;
	size_t idx;         /* position in the heap while pending */
	bool firing;        /* popped, callback running */
	loop_fn fn;
	void *arg;
};

struct loop_post {
	loop_fn fn;
	void *arg;
	struct loop_post *next;
};

struct loop_sig {
	loop_signal_fn fn;
	void *arg;
};

struct loop {
	int epfd;
	bool stop;
	struct loop_watch *live; /* registered fd watches */
	struct loop_watch *dead; /* unwatched during this batch */

	struct loop_timer **heap;
	size_t nheap, capheap;
	uint64_t seq;

	int sigfd;
	sigset_t sigmask;
	struct loop_watch sigwatch;
	struct loop_sig sigs[_NSIG];

	int evfd;
	struct loop_watch postwatch;
	pthread_mutex_t lock;   /* guards posthead/posttail */
	struct loop_post *posthead, *posttail;
};

/* --- timer heap ---------------------------------------------------------- */

static bool
timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline;
	return a->seq < b->seq;
}

static void
heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->idx = i;
}

static void
heap_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!timer_before(t, l->heap[p]))
			break;
		heap_set(l, i, l->heap[p]);
		i = p;
	}
	heap_set(l, i, t);
}

static void
heap_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && timer_before(l->heap[c + 1], l->heap[c]))
			c++;
		if (!timer_before(l->heap[c], t))
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

static void
heap_remove(struct loop *l, struct loop_timer *t)
{
	size_t i = t->idx;
	struct loop_timer *last = l->heap[--l->nheap];

	if (i == l->nheap)
		return;
	heap_set(l, i, last);
	heap_up(l, i);
	heap_down(l, last->idx);
}

/* --- creation ------------------------------------------------------------ */

int
loop_new(struct loop **out)
{
	struct loop *l;
	struct epoll_event ev;
	int rc;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->epfd = l->sigfd = l->evfd = -1;
	sigemptyset(&l->sigmask);
	rc = pthread_mutex_init(&l->lock, NULL);
	if (rc != 0) {
		free(l);
		return -rc;
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		rc = -errno;
		goto out;
	}
	l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->evfd < 0) {
		rc = -errno;
		goto out;
	}
	l->postwatch.kind = WATCH_POST;
	l->postwatch.fd = l->evfd;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &l->postwatch;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) {
		rc = -errno;
		goto out;
	}
	*out = l;
	return 0;
out:
	loop_free(l);
	return rc;
}

static void
free_dead(struct loop *l)
{
	while (l->dead) {
		struct loop_watch *w = l->dead;
		l->dead = w->next;
		free(w);
	}
}

void
loop_free(struct loop *l)
{
	if (!l)
		return;
	free_dead(l);
	while (l->live) {
		struct loop_watch *w = l->live;
		l->live = w->next;
		free(w);
	}
	for (size_t i = 0; i < l->nheap; i++)
		free(l->heap[i]);
	free(l->heap);
	while (l->posthead) {
		struct loop_post *p = l->posthead;
		l->posthead = p->next;
		free(p);
	}
	if (l->sigfd >= 0)
		close(l->sigfd);
	if (l->evfd >= 0)
		close(l->evfd);
	if (l->epfd >= 0)
		close(l->epfd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* --- fd watches ---------------------------------------------------------- */

int
loop_watch_fd(struct loop *l, int fd, uint32_t events, loop_fd_fn fn,
	      void *arg, struct loop_watch **out)
{
	struct loop_watch *w;
	struct epoll_event ev;

	if (fd < 0 || !fn)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->kind = WATCH_FD;
	w->fd = fd;
	w->fn = fn;
	w->arg = arg;
	memset(&ev, 0, sizeof(ev));
	ev.events = events & (LOOP_IN | LOOP_OUT);
	ev.data.ptr = w;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int rc = -errno;
		free(w);
		return rc;
	}
	w->next = l->live;
	if (l->live)
		l->live->prev = w;
	l->live = w;
	*out = w;
	return 0;
}

int
loop_watch_modify(struct loop *l, struct loop_watch *w, uint32_t events)
{
	struct epoll_event ev;

	if (!w || w->dead)
		return -EINVAL;
	memset(&ev, 0, sizeof(ev));
	ev.events = events & (LOOP_IN | LOOP_OUT);
	ev.data.ptr = w;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

void
loop_unwatch(struct loop *l, struct loop_watch *w)
{
	if (!w || w->dead)
		return;
	/* The fd may already be closed by a careless caller; nothing to do
	 * then, epoll dropped it with the last reference. */
	(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	if (w->prev)
		w->prev->next = w->next;
	else
		l->live = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->dead = true;
	w->prev = NULL;
	w->next = l->dead;
	l->dead = w;
}

/* --- timers -------------------------------------------------------------- */

int
loop_timer_add(struct loop *l, uint64_t ms, loop_fn fn, void *arg,
	       struct loop_timer **out)
{
	struct loop_timer *t;
	uint64_t now = snap_now_mono_ns();

	if (!fn)
		return -EINVAL;
	if (ms > (UINT64_MAX - now) / 1000000u)
		return -ERANGE;
	if (l->nheap == l->capheap) {
		size_t cap = l->capheap ? l->capheap * 2 : 16;
		struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->capheap = cap;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->deadline = now + ms * 1000000u;
	t->seq = l->seq++;
	t->fn = fn;
	t->arg = arg;
	heap_set(l, l->nheap++, t);
	heap_up(l, t->idx);
	if (out)
		*out = t;
	return 0;
}

void
loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	if (!t || t->firing)
		return;
	heap_remove(l, t);
	free(t);
}

/* Milliseconds until the nearest deadline, rounded up; -1 if none. */
static int
next_timeout(struct loop *l)
{
	uint64_t now, d;

	if (l->nheap == 0)
		return -1;
	now = snap_now_mono_ns();
	if (l->heap[0]->deadline <= now)
		return 0;
	d = (l->heap[0]->deadline - now + 999999u) / 1000000u;
	return d > 60000 ? 60000 : (int)d;
}

/*
 * Fire the timers due now. Timers added by these callbacks (even with a
 * zero delay) wait for the next iteration, so a timer that re-arms itself
 * cannot starve the fds.
 */
static void
run_timers(struct loop *l)
{
	uint64_t now = snap_now_mono_ns();
	uint64_t seq_limit = l->seq;

	while (l->nheap > 0 && !l->stop) {
		struct loop_timer *t = l->heap[0];
		if (t->deadline > now || t->seq >= seq_limit)
			break;
		heap_remove(l, t);
		t->firing = true;
		t->fn(l, t->arg);
		free(t);
	}
}

/* --- signals ------------------------------------------------------------- */

static void
on_signalfd(struct loop *l)
{
	struct signalfd_siginfo si;

	for (;;) {
		ssize_t n = read(l->sigfd, &si, sizeof(si));
		if (n != (ssize_t)sizeof(si))
			return; /* EAGAIN: drained */
		if (si.ssi_signo < _NSIG && l->sigs[si.ssi_signo].fn)
			l->sigs[si.ssi_signo].fn(l, (int)si.ssi_signo,
						 l->sigs[si.ssi_signo].arg);
	}
}

int
loop_watch_signal(struct loop *l, int signo, loop_signal_fn fn, void *arg)
{
	sigset_t mask = l->sigmask;
	int fd, rc;

	if (signo <= 0 || signo >= _NSIG || !fn)
		return -EINVAL;
	if (sigaddset(&mask, signo) < 0)
		return -EINVAL;
	rc = pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if (rc != 0)
		return -rc;
	fd = signalfd(l->sigfd, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (l->sigfd < 0) {
		struct epoll_event ev;

		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		l->sigwatch.kind = WATCH_SIGNAL;
		l->sigwatch.fd = fd;
		ev.data.ptr = &l->sigwatch;
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
		l->sigfd = fd;
	}
	l->sigmask = mask;
	l->sigs[signo].fn = fn;
	l->sigs[signo].arg = arg;
	return 0;
}

/* --- posting from other threads ---------------------------------------- */

int
loop_post(struct loop *l, loop_fn fn, void *arg)
{
	struct loop_post *p = malloc(sizeof(*p));
	uint64_t one = 1;
	ssize_t n;

	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->arg = arg;
	p->next = NULL;
	pthread_mutex_lock(&l->lock);
	if (l->posttail)
		l->posttail->next = p;
	else
		l->posthead = p;
	l->posttail = p;
	pthread_mutex_unlock(&l->lock);
	/* EAGAIN means the counter is saturated: the loop wakes anyway. */
	do {
		n = write(l->evfd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
	return 0;
}

static void
run_posts(struct loop *l)
{
	struct loop_post *p;
	uint64_t cnt;
	/* Only resets the counter; the queue says what is to be done. */
	ssize_t n = read(l->evfd, &cnt, sizeof(cnt));

	(void)n;
	pthread_mutex_lock(&l->lock);
	p = l->posthead;
	l->posthead = l->posttail = NULL;
	pthread_mutex_unlock(&l->lock);
	/* Posts queued while these run land in the next batch, after them. */
	while (p) {
		struct loop_post *next = p->next;
		p->fn(l, p->arg);
		free(p);
		p = next;
	}
}

/* --- running ------------------------------------------------------------- */

int
loop_run(struct loop *l)
{
	struct epoll_event ev[LOOP_BATCH];
	int rc = 0;

	while (!l->stop) {
		int n = epoll_wait(l->epfd, ev, LOOP_BATCH, next_timeout(l));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct loop_watch *w = ev[i].data.ptr;
			switch (w->kind) {
			case WATCH_FD:
				if (!w->dead)
					w->fn(l, w->fd, ev[i].events & LOOP_EVMASK,
					      w->arg);
				break;
			case WATCH_SIGNAL:
				on_signalfd(l);
				break;
			case WATCH_POST:
				run_posts(l);
				break;
			}
		}
		free_dead(l);
		run_timers(l);
		free_dead(l);
	}
	l->stop = false;
	return rc;
}

void
loop_stop(struct loop *l)
{
	l->stop = true;
}
