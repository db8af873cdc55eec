/*
 * tests/unit/test_loop.c: the event loop: timer order and cancellation,
 * posts from other threads, signals through signalfd, fd readiness, and
 * removing watches from inside callbacks.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapd/loop.h"

/* A hung loop must fail the test, not the whole run. */
#define GUARD() alarm(20)

struct order {
	int seen[16];
	int n;
	int stop_after;
};

struct tarm {
	struct order *o;
	int id;
};

static void
on_order_timer(struct loop *l, void *arg)
{
	struct tarm *t = arg;

	t->o->seen[t->o->n++] = t->id;
	if (t->o->n == t->o->stop_after)
		loop_stop(l);
}

static void
test_timer_order(void **state)
{
	struct loop *l;
	struct order o = { .stop_after = 6 };
	/* Delays and ids: equal delays fire in the order they were added. */
	const uint64_t ms[] = { 30, 10, 20, 0, 10, 0 };
	struct tarm t[6];
	(void)state;

	GUARD();
	assert_int_equal(loop_new(&l), 0);
	for (int i = 0; i < 6; i++) {
		t[i].o = &o;
		t[i].id = i;
		assert_int_equal(loop_timer_add(l, ms[i], on_order_timer, &t[i],
						NULL), 0);
	}
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(o.n, 6);
	assert_int_equal(o.seen[0], 3);
	assert_int_equal(o.seen[1], 5);
	assert_int_equal(o.seen[2], 1);
	assert_int_equal(o.seen[3], 4);
	assert_int_equal(o.seen[4], 2);
	assert_int_equal(o.seen[5], 0);
	loop_free(l);
}

static void
test_timer_cancel(void **state)
{
	struct loop *l;
	struct order o = { .stop_after = 2 };
	struct tarm t[3] = { { &o, 0 }, { &o, 1 }, { &o, 2 } };
	struct loop_timer *h[3];
	(void)state;

	GUARD();
	assert_int_equal(loop_new(&l), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(loop_timer_add(l, (uint64_t)i * 5, on_order_timer,
						&t[i], &h[i]), 0);
	loop_timer_cancel(l, h[1]);
	loop_timer_cancel(l, NULL);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(o.n, 2);
	assert_int_equal(o.seen[0], 0);
	assert_int_equal(o.seen[1], 2);
	loop_free(l);
}

/* A timer cancelling itself while it fires is harmless. */
struct selfcancel {
	struct loop_timer *self;
	int fired;
};

static void
on_selfcancel(struct loop *l, void *arg)
{
	struct selfcancel *s = arg;

	s->fired++;
	loop_timer_cancel(l, s->self);
	loop_stop(l);
}

static void
test_timer_cancel_self(void **state)
{
	struct loop *l;
	struct selfcancel s = { 0 };
	(void)state;

	GUARD();
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_timer_add(l, 0, on_selfcancel, &s, &s.self), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(s.fired, 1);
	loop_free(l);
}

/* --- posts from threads -------------------------------------------------- */

#define NTHREADS 4
#define NPOSTS 2000

struct posted {
	int last[NTHREADS];  /* last sequence seen per thread */
	int total;
	int disorder;
};

struct postmsg {
	struct posted *p;
	int thread, seq;
};

struct poster {
	struct loop *l;
	struct posted *p;
	int thread;
	struct postmsg msgs[NPOSTS];
};

static void
on_post(struct loop *l, void *arg)
{
	struct postmsg *m = arg;

	if (m->seq != m->p->last[m->thread] + 1)
		m->p->disorder++;
	m->p->last[m->thread] = m->seq;
	if (++m->p->total == NTHREADS * NPOSTS)
		loop_stop(l);
}

static void *
poster_main(void *arg)
{
	struct poster *ps = arg;

	for (int i = 0; i < NPOSTS; i++) {
		ps->msgs[i] = (struct postmsg){ ps->p, ps->thread, i };
		if (loop_post(ps->l, on_post, &ps->msgs[i]) != 0)
			abort();
	}
	return NULL;
}

static void
test_post_threads(void **state)
{
	struct loop *l;
	struct posted p = { .total = 0 };
	struct poster *ps;
	pthread_t th[NTHREADS];
	(void)state;

	GUARD();
	for (int i = 0; i < NTHREADS; i++)
		p.last[i] = -1;
	ps = calloc(NTHREADS, sizeof(*ps));
	assert_non_null(ps);
	assert_int_equal(loop_new(&l), 0);
	for (int i = 0; i < NTHREADS; i++) {
		ps[i].l = l;
		ps[i].p = &p;
		ps[i].thread = i;
		assert_int_equal(pthread_create(&th[i], NULL, poster_main, &ps[i]),
				 0);
	}
	assert_int_equal(loop_run(l), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(p.total, NTHREADS * NPOSTS);
	assert_int_equal(p.disorder, 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(p.last[i], NPOSTS - 1);
	loop_free(l);
	free(ps);
}

/* Posts still queued when the loop is freed are dropped without leaking. */
static void
on_never(struct loop *l, void *arg)
{
	(void)l;
	(void)arg;
	fail_msg("dropped post ran");
}

static void
test_post_dropped(void **state)
{
	struct loop *l;
	(void)state;

	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_post(l, on_never, NULL), 0);
	assert_int_equal(loop_post(l, on_never, NULL), 0);
	loop_free(l);
	loop_free(NULL);
}

/* --- signals ------------------------------------------------------------- */

struct sigs {
	int usr1, usr2;
};

static void
on_signal(struct loop *l, int signo, void *arg)
{
	struct sigs *s = arg;

	if (signo == SIGUSR1)
		s->usr1++;
	else if (signo == SIGUSR2)
		s->usr2++;
	if (s->usr1 && s->usr2)
		loop_stop(l);
}

static void
test_signals(void **state)
{
	struct loop *l;
	struct sigs s = { 0, 0 };
	(void)state;

	GUARD();
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_watch_signal(l, SIGUSR1, on_signal, &s), 0);
	assert_int_equal(loop_watch_signal(l, SIGUSR2, on_signal, &s), 0);
	assert_int_equal(loop_watch_signal(l, 0, on_signal, &s), -EINVAL);
	/* Blocked now: without the loop these would kill the process. */
	assert_int_equal(kill(getpid(), SIGUSR1), 0);
	assert_int_equal(kill(getpid(), SIGUSR2), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(s.usr1, 1);
	assert_int_equal(s.usr2, 1);
	loop_free(l);
}

/* --- fd watches ---------------------------------------------------------- */

struct pair {
	struct loop_watch *w[2];
	int fds[2][2];
	int calls[2];
	int kill_other;      /* the first to run unwatches both */
};

struct pairarm {
	struct pair *p;
	int idx;
};

static void
on_pair(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct pairarm *a = arg;
	struct pair *p = a->p;
	(void)fd;

	assert_true(ev & LOOP_IN);
	p->calls[a->idx]++;
	if (p->kill_other) {
		/* Both fds are ready in the same batch: remove the other's
		 * watch and our own; the other must never run. */
		loop_unwatch(l, p->w[1 - a->idx]);
		loop_unwatch(l, p->w[a->idx]);
		p->w[0] = p->w[1] = NULL;
	}
	loop_stop(l);
}

static void
test_unwatch_in_callback(void **state)
{
	struct loop *l;
	struct pair p;
	struct pairarm a[2];
	(void)state;

	GUARD();
	memset(&p, 0, sizeof(p));
	p.kill_other = 1;
	assert_int_equal(loop_new(&l), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pipe(p.fds[i]), 0);
		a[i].p = &p;
		a[i].idx = i;
		assert_int_equal(loop_watch_fd(l, p.fds[i][0], LOOP_IN, on_pair,
					       &a[i], &p.w[i]), 0);
		assert_int_equal(write(p.fds[i][1], "x", 1), 1);
	}
	/* A second watch on the same fd is refused. */
	{
		struct loop_watch *dup;
		assert_int_equal(loop_watch_fd(l, p.fds[0][0], LOOP_IN, on_pair,
					       &a[0], &dup), -EEXIST);
	}
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(p.calls[0] + p.calls[1], 1);
	/* Nothing is watched any more: a timer is the only way out. */
	loop_unwatch(l, NULL);
	for (int i = 0; i < 2; i++) {
		close(p.fds[i][0]);
		close(p.fds[i][1]);
	}
	loop_free(l);
}

static void
on_stop_timer(struct loop *l, void *arg)
{
	(void)arg;
	loop_stop(l);
}

struct outw {
	struct loop_watch *w;
	int ins, outs;
};

static void
on_out(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct outw *o = arg;
	(void)fd;

	if (ev & LOOP_OUT) {
		o->outs++;
		/* Switch to input: the pipe's write end never becomes
		 * readable, so only the timer ends the run. */
		assert_int_equal(loop_watch_modify(l, o->w, LOOP_IN), 0);
	}
	if (ev & LOOP_IN)
		o->ins++;
}

static void
test_modify_and_free_live(void **state)
{
	struct loop *l;
	struct outw o = { NULL, 0, 0 };
	int fds[2];
	(void)state;

	GUARD();
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_watch_fd(l, fds[1], LOOP_OUT, on_out, &o, &o.w), 0);
	assert_int_equal(loop_timer_add(l, 50, on_stop_timer, NULL, NULL), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(o.outs, 1);
	assert_int_equal(o.ins, 0);
	/* A watch and a timer still registered are released by loop_free. */
	assert_int_equal(loop_timer_add(l, 100000, on_stop_timer, NULL, NULL), 0);
	loop_free(l);
	close(fds[0]);
	close(fds[1]);
}

/* A peer closing its end is reported as HUP even when not asked for. */
struct hup {
	struct loop_watch *w;
	uint32_t ev;
};

static void
on_hup(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct hup *h = arg;
	(void)fd;

	h->ev = ev;
	loop_unwatch(l, h->w);
	loop_stop(l);
}

static void
test_hup(void **state)
{
	struct loop *l;
	struct hup h = { NULL, 0 };
	int fds[2];
	(void)state;

	GUARD();
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_watch_fd(l, fds[0], 0, on_hup, &h, &h.w), 0);
	close(fds[1]);
	assert_int_equal(loop_run(l), 0);
	assert_true(h.ev & LOOP_HUP);
	close(fds[0]);
	loop_free(l);
}

static void
test_stop_before_run(void **state)
{
	struct loop *l;
	(void)state;

	GUARD();
	assert_int_equal(loop_new(&l), 0);
	loop_stop(l);
	/* Returns at once although nothing could ever wake it. */
	assert_int_equal(loop_run(l), 0);
	loop_free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_timer_cancel),
		cmocka_unit_test(test_timer_cancel_self),
		cmocka_unit_test(test_post_threads),
		cmocka_unit_test(test_post_dropped),
		cmocka_unit_test(test_signals),
		cmocka_unit_test(test_unwatch_in_callback),
		cmocka_unit_test(test_modify_and_free_live),
		cmocka_unit_test(test_hup),
		cmocka_unit_test(test_stop_before_run),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
