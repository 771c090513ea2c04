/* Integration tests written in C (test/integration/test_*.c, cmocka): it_isolate() first moves
 * the process into fresh network and mount namespaces, so nothing a test creates (links,
 * namespaces under /run/netns, rules, mounts) is visible to or touches the host. Without root
 * or namespaces the test exits 77, which ctest reports as skipped, with the reason. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IT_SKIP 77

static inline void
it_skip(const char *why)
{
	printf("SKIP: %s\n", why);
	fflush(stdout);
	exit(IT_SKIP);
}

/* Call first in main, before any thread exists. */
static inline void
it_isolate(void)
{
	if (geteuid() != 0)
		it_skip("needs root (network and mount namespaces)");
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
		char why[128];
		snprintf(why, sizeof(why), "cannot create namespaces: %s", strerror(errno));
		it_skip(why);
	}
	/* nothing mounted from here on propagates back to the host */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		it_skip("cannot make / private in the new mount namespace");
	mkdir("/run/netns", 0755);
	if (mount("tmpfs", "/run/netns", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755") <
	    0)
		it_skip("cannot mount a private /run/netns");
	/* lo up, so loopback works inside the new namespace */
	if (system("ip link set lo up") != 0)
		it_skip("cannot bring lo up (iproute2 missing?)");
}

/* Runs a shell command with its output discarded; returns its exit status (-1: not run). */
static inline int it_cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int
it_cmd(const char *fmt, ...)
{
	char c[512], full[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c, sizeof(c), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "%s >/dev/null 2>&1", c);
	int status = system(full);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a shell command, keeps up to size-1 bytes of its stdout (the rest is read and dropped,
 * so the command never blocks on a full pipe); returns its exit status (-1: not run). */
static inline int it_cmd_out(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline int
it_cmd_out(char *buf, size_t size, const char *fmt, ...)
{
	char line[512], drop[4096];
	va_list ap;
	size_t len = 0, n;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	buf[0] = '\0';
	FILE *p = popen(line, "r");
	if (!p)
		return -1;
	while (len + 1 < size && (n = fread(buf + len, 1, size - 1 - len, p)) > 0)
		len += n;
	buf[len] = '\0';
	while (fread(drop, 1, sizeof(drop), p) > 0)
		;
	int status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Milliseconds on the monotonic clock. */
static inline double
it_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* qsort's comparison of doubles, ascending. */
static inline int
it_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}
