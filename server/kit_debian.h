/* The built-in image "debian" (kit_image_build in kit.h): debootstrap of Debian 12 minbase with
 * systemd and OpenSSH, run in its own mount and PID namespaces, then made fit for sistemo. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "kit.h"

#define KIT_DEBIAN_SUITE "bookworm"
#define KIT_DEBIAN_MIRROR "http://deb.debian.org/debian"

/* The first http(s) mirror serving KIT_DEBIAN_SUITE in text, apt's sources in either format:
 * one-line ("deb [arch=amd64] http://m/debian bookworm main") or deb822 stanzas ("Types: deb",
 * "URIs: ...", "Suites: bookworm ..."). Copied into buf without a trailing '/'; -ENOENT when
 * there is none, -ENAMETOOLONG when it does not fit. */
int kit_debian_mirror_parse(const char *text, char *buf, size_t size);

/* The mirror debootstrap uses: the first one kit_debian_mirror_parse finds in
 * /etc/apt/sources.list, then /etc/apt/sources.list.d/ (*.list and *.sources, in name order),
 * else KIT_DEBIAN_MIRROR. */
void kit_debian_mirror(char *buf, size_t size);

/* Follows debootstrap's "I: ..." lines through its phases (download, unpack, configure). */
struct kit_debian_progress {
	unsigned phase; /* index of the current phase, 0 before the first */
	unsigned items; /* packages seen in the current phase */
};

/* Reads one line of debootstrap's output. True when it is worth a progress report: a new
 * phase or every tenth package of one; then *ret_percent is the rough share of the debootstrap
 * run done (0-100) and msg says what it does ("downloading packages (40)"). */
bool kit_debian_progress_line(struct kit_debian_progress *p, const char *line,
			      unsigned *ret_percent, char *msg, size_t size);

/* Runs debootstrap (KIT_DEBIAN_SUITE, minbase, systemd-sysv, udev, openssh-server, iproute2,
 * iputils-ping, ca-certificates; the release checked with Debian's archive keyring) into the
 * empty directory tree, from mirror, in two stages, each in a jail (jail.h) of its own: the
 * first (--foreign: download, check, unpack; debootstrap's code only) in new PID and mount
 * namespaces; the second (the packages' maintainer scripts: code from the archive) inside the
 * tree by pivot_root, with its own /proc and /dev and no network at all. Neither sees a host
 * process or keeps a mount; each is killed with all it started after 15 minutes
 * (ERR_DEADLINE). */
int kit_debian_bootstrap(const char *tree, const char *mirror, kit_percent_fn progress, void *ud,
			 struct err *err);

/* What `image build debian` may change: the release and packages added to the list above. */
struct kit_debian_opts {
	const char *suite; /* NULL or "": KIT_DEBIAN_SUITE */
	const char *const *packages;
	size_t n_packages;
};

/* kit_debian_bootstrap of o->suite with o->packages included too (names checked). */
int kit_debian_bootstrap_opts(const char *tree, const char *mirror, const struct kit_debian_opts *o,
			      kit_percent_fn progress, void *ud, struct err *err);

/* Makes the debootstrapped tree at root (a directory fd) fit for sistemo machines, never
 * following a link in it: no SSH host keys, an empty machine-id (systemd makes one at first
 * boot; a preset keeps that boot from enabling more units), no downloaded packages or package
 * lists, a placeholder hostname, /etc/fstab for /dev/vda, sshd taking root's key only; the
 * apt, fstrim, e2scrub and dpkg-backup timers, timesyncd, the first-boot wizard and the
 * virtual-terminal gettys masked. Fails when root has a password. */
int kit_debian_configure(int root, struct err *err);

/* Adds openssh-server to a Debian-based tree (tree: its path; root: a directory fd on it) that
 * lacks it. The host's apt-get downloads the packages, reading only the tree's apt sources and
 * dpkg status (copied out, links resolved inside the tree); the tree's own dpkg installs them in
 * a jail (jail.h): pivot_root into the tree, own PID and mount namespaces, no network, no mount
 * or device capabilities, services kept from starting by policy-rc.d. The packages, the host
 * keys the scripts made and our policy-rc.d are removed after; sshd takes root's key only.
 * Errors say which step failed (no sources, apt-get, dpkg). */
int kit_debian_add_openssh(const char *tree, int root, kit_percent_fn progress, void *ud,
			   struct err *err);
