/* Staging trees for the guest kit, built under a directory fd: every path component is opened
 * with O_NOFOLLOW and files are created O_EXCL, so nothing is ever written through a symlink
 * (an applet link like sbin/init -> ../bin/busybox stays a link). Plus the file helpers
 * around them: copies that keep holes, recursive removal that never leaves the tree. */
#pragma once

#include <sys/stat.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Formats a path into buf: 0, or -ENAMETOOLONG when it does not fit. */
int kit_path(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Relative paths only ("usr/bin/awk"): no leading '/', no "..", no empty component. */

/* mkdir -p path, each missing directory created with mode; an existing component must be a
 * real directory (a symlink or file there: -ENOTDIR). */
int kit_tree_mkdir(int root, const char *path, mode_t mode);

/* Creates a new file (never replaces one) with mode and the given bytes. */
int kit_tree_write(int root, const char *path, mode_t mode, const void *data, size_t size);

/* Opens src for reading (O_CLOEXEC) and fills st; -EINVAL unless it is a regular file.
 * Returns the fd or a negative errno. */
int kit_tree_open_regular(const char *src, struct stat *st);

/* Creates a new file with mode holding a copy of the host file src (followed if a link). */
int kit_tree_copy(int root, const char *path, mode_t mode, const char *src);

/* Creates the symbolic link path -> target (target is stored, never resolved). */
int kit_tree_symlink(int root, const char *path, const char *target);

/* The relative link target from link path to a file given from the tree root:
 * ("usr/bin/awk", "bin/busybox") -> "../../bin/busybox"; ("bin/sh", ...) -> "busybox". */
int kit_tree_relative(const char *link, const char *target, char *buf, size_t size);

/* Bytes the tree at dir takes on disk (allocated blocks, links not followed). */
int kit_tree_usage(const char *dir, uint64_t *ret_bytes);

/* rm -rf path: links are removed, never followed; stays on path's filesystem. Missing: 0. */
int kit_tree_remove(const char *path);

/* Reads a whole file of at most max bytes into a NUL-terminated buffer the caller frees.
 * -EFBIG when larger. */
int kit_tree_read(const char *path, size_t max, char **ret);

/* True when path is an ELF executable without a program interpreter (statically linked). */
bool kit_tree_elf_static(const char *path);

/* Copies the open file src into dst (both at offset 0) keeping holes: SEEK_DATA/SEEK_HOLE and
 * copy_file_range, read/write where that is refused. dst ends up src's size. */
int kit_tree_copy_sparse(int src, int dst);

/* True when path is a regular file of the tree at root (a directory fd), links resolved inside
 * the tree as the guest will (openat2 RESOLVE_IN_ROOT); with executable, an executable one. */
bool kit_tree_has(int root, const char *path, bool executable);

/* Opens path (created 0600, never through a link; flags added, e.g. O_APPEND) and takes an
 * exclusive flock on it, waiting; returns the fd, which holds the lock until closed. */
int kit_lock_file(const char *path, int flags, struct err *err);
