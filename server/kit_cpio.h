/* A writer for the "newc" cpio format the kernel unpacks as an initramfs: directories, files,
 * symlinks and device nodes, all owned by root, written straight from host files to an fd (no
 * staging tree, so nothing on the host is ever written through a link). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kit_cpio;

/* Starts an archive on fd (borrowed, written sequentially). Returns 0 or -ENOMEM. */
int kit_cpio_new(int fd, struct kit_cpio **ret);
/* Frees the writer; accepts NULL. Does not close the fd. */
void kit_cpio_free(struct kit_cpio *c);

/* Entry names are relative ("bin/busybox"); parents must be added first. mode holds the
 * permission bits only. Each returns 0 or a negative errno. */
int kit_cpio_add_dir(struct kit_cpio *c, const char *name, mode_t mode);
int kit_cpio_add_data(struct kit_cpio *c, const char *name, mode_t mode, const void *data,
		      size_t size);
/* Adds a copy of the host file src (followed if a link; must be a regular file). */
int kit_cpio_add_file(struct kit_cpio *c, const char *name, mode_t mode, const char *src);
int kit_cpio_add_symlink(struct kit_cpio *c, const char *name, const char *target);
int kit_cpio_add_chardev(struct kit_cpio *c, const char *name, mode_t mode, unsigned major,
			 unsigned minor);

/* Writes the TRAILER!!! entry and pads the archive to 512 bytes. */
int kit_cpio_finish(struct kit_cpio *c);
