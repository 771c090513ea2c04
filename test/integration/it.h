/* Integration tests written in C (test/integration/test_*.c, cmocka): it_isolate() first moves
 * the process into fresh network and mount namespaces, so nothing a test creates (links,
 * namespaces under /run/netns, rules, mounts) is visible to or touches the host. Without root
 * or namespaces the test exits 77, which ctest reports as skipped, with the reason. */
#pragma once

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
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
