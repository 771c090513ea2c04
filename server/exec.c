#include "exec.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "store.h"
#include "uuid.h"

#define IDLE_MS (10 * 60 * 1000)
#define MAX_SESSIONS 256

struct session {
	struct session *next;
	char id[40];
	struct ssh_exec *x;
	pthread_mutex_t lock; /* one reader or writer at a time on the ssh channel */
	int64_t deadline_ms;  /* 0: none */
	unsigned timeout_sec;
	int64_t used_ms;
	int refs; /* callers inside; the registry holds one */
	bool done;
};

struct execs {
	pthread_mutex_t lock;
	struct session *head;
	size_t n;
};

int
execs_new(struct execs **ret, struct err *err)
{
	struct execs *e = calloc(1, sizeof(*e));

	if (!e)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	pthread_mutex_init(&e->lock, NULL);
	*ret = e;
	return 0;
}

static void
session_free(struct session *s)
{
	ssh_exec_free(s->x);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void
execs_free(struct execs *e)
{
	if (!e)
		return;
	for (struct session *s = e->head, *n; s; s = n) {
		n = s->next;
		session_free(s);
	}
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/* Unlinks sessions that ended or sat idle; frees those nobody uses. The lock is held. */
static void
sweep_locked(struct execs *e)
{
	int64_t now = store_now_ms();

	for (struct session **p = &e->head; *p;) {
		struct session *s = *p;
		if ((s->done || now - s->used_ms > IDLE_MS) && s->refs == 1) {
			*p = s->next;
			e->n--;
			session_free(s);
		} else {
			p = &s->next;
		}
	}
}

int
execs_start(struct execs *e, const struct ssh_target *t, const char *command,
	    const struct ssh_pty *pty, unsigned timeout_sec, char ret_id[40], struct err *err)
{
	struct session *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if ((r = ssh_exec_start(t, command, pty, &s->x, err)) < 0) {
		free(s);
		return r;
	}
	pthread_mutex_init(&s->lock, NULL);
	uuid_generate_text(s->id);
	s->used_ms = store_now_ms();
	s->timeout_sec = timeout_sec;
	s->deadline_ms = timeout_sec ? s->used_ms + (int64_t)timeout_sec * 1000 : 0;
	s->refs = 1;
	pthread_mutex_lock(&e->lock);
	sweep_locked(e);
	if (e->n >= MAX_SESSIONS) {
		pthread_mutex_unlock(&e->lock);
		session_free(s);
		return err_set(err, ERR_EXHAUSTED, NULL, EMFILE,
			       "too many exec sessions (%d): finish some first", MAX_SESSIONS);
	}
	s->next = e->head;
	e->head = s;
	e->n++;
	snprintf(ret_id, 40, "%s", s->id);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static struct session *
acquire(struct execs *e, const char *id, struct err *err)
{
	struct session *s;

	pthread_mutex_lock(&e->lock);
	for (s = e->head; s && !streq(s->id, id); s = s->next)
		;
	if (s && !s->done)
		s->refs++;
	pthread_mutex_unlock(&e->lock);
	if (!s || s->done) {
		err_set(err, ERR_NOT_FOUND, "exec_id", ENOENT,
			"exec session '%s' not found (it ended or expired)", id);
		return NULL;
	}
	return s;
}

static void
release(struct execs *e, struct session *s, bool done)
{
	pthread_mutex_lock(&e->lock);
	s->used_ms = store_now_ms();
	s->done = s->done || done;
	s->refs--;
	sweep_locked(e);
	pthread_mutex_unlock(&e->lock);
}

/* Past its deadline a command is killed and reported as exit status 124 (like timeout(1)). */
static bool
timed_out(struct session *s, struct strbuf *errout, int *ret_code)
{
	if (!s->deadline_ms || store_now_ms() < s->deadline_ms)
		return false;
	ssh_exec_signal(s->x, "KILL", NULL);
	strbuf_printf(errout, "sistemo: command killed after its %u s timeout\n", s->timeout_sec);
	*ret_code = 124;
	return true;
}

/* One slice of a read: the session lock is held only this long, so input gets through. */
#define SLICE_MS 50

int
execs_read(struct execs *e, const char *id, unsigned wait_ms, struct strbuf *out,
	   struct strbuf *errout, bool *ret_exited, int *ret_code, struct err *err)
{
	struct session *s = acquire(e, id, err);
	int64_t end = store_now_ms() + wait_ms;
	size_t out0 = out->len, err0 = errout->len;
	int r = 0;

	*ret_exited = false;
	if (!s)
		return -ENOENT;
	do {
		int64_t left = end - store_now_ms();
		pthread_mutex_lock(&s->lock);
		r = ssh_exec_read(s->x, out, errout,
				  left < SLICE_MS ? (int)(left > 0 ? left : 0) : SLICE_MS,
				  ret_exited, ret_code, err);
		if (r >= 0 && !*ret_exited)
			*ret_exited = timed_out(s, errout, ret_code);
		pthread_mutex_unlock(&s->lock);
	} while (r >= 0 && !*ret_exited && out->len == out0 && errout->len == err0 &&
		 store_now_ms() < end);
	release(e, s, r < 0 || *ret_exited);
	return r;
}

int
execs_write(struct execs *e, const char *id, const void *data, size_t n, bool eof, struct err *err)
{
	struct session *s = acquire(e, id, err);

	if (!s)
		return -ENOENT;
	pthread_mutex_lock(&s->lock);
	int r = ssh_exec_write(s->x, data, n, eof, err);
	pthread_mutex_unlock(&s->lock);
	release(e, s, false);
	return r;
}

int
execs_resize(struct execs *e, const char *id, unsigned cols, unsigned rows, struct err *err)
{
	struct session *s = acquire(e, id, err);

	if (!s)
		return -ENOENT;
	pthread_mutex_lock(&s->lock);
	int r = ssh_exec_resize(s->x, cols, rows, err);
	pthread_mutex_unlock(&s->lock);
	release(e, s, false);
	return r;
}

int
execs_signal(struct execs *e, const char *id, const char *signal, struct err *err)
{
	struct session *s = acquire(e, id, err);

	if (!s)
		return -ENOENT;
	pthread_mutex_lock(&s->lock);
	int r = ssh_exec_signal(s->x, signal, err);
	pthread_mutex_unlock(&s->lock);
	release(e, s, false);
	return r;
}
