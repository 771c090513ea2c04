/* Unpacks untrusted root filesystems into a staging directory: rootfs tarballs and container
 * images (`docker save` archives, OCI image layouts). libarchive reads; the writing is ours.
 *
 * The daemon runs this as root on archives anyone may hand it, so whatever an archive says,
 * nothing is written outside dest:
 * - Member names are taken relative to dest: a leading '/' is dropped ("/etc/x" -> "etc/x", as
 *   tar does), "." components too, and ".." is taken lexically ("a/../b" -> "b"); a ".." that
 *   would leave dest refuses the archive.
 * - Every directory on the way to an entry is opened with O_NOFOLLOW from dest down, one
 *   component at a time: an entry whose parent path crosses a symlink (planted by an earlier
 *   entry or layer) refuses the archive. Missing directories are made (0755).
 * - An entry replaces what is at its own name (unlinked first, files created O_EXCL): a symlink
 *   there is replaced, never written through. A directory entry keeps an existing directory.
 * - Symlinks may point anywhere (absolute targets are normal in a rootfs): they are stored and
 *   never followed here, only inside the guest.
 * - A hard link must name a regular file already in dest (by a path that crosses no symlink).
 * - Device nodes and FIFOs are made only with allow_devices, otherwise skipped and counted, as
 *   are sockets. Modes (setuid included), numeric owners (when running as root), mtimes and
 *   user./trusted./security. xattrs of files and directories are kept; directory modes and
 *   mtimes are set once everything is in.
 * - Bounded: members and bytes of file data (extract_opts), path depth (128 components).
 * dest must lie where only root can reach: the tree takes the archive's owners, and an owner
 * able to get at it while it is being built could swap names under a check (a hard link's
 * target). On failure dest holds a partial tree: the caller removes it (kit_tree_remove). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "strbuf.h"

#define EXTRACT_BYTES_MAX_DEFAULT (64ull << 30)
#define EXTRACT_ENTRIES_MAX_DEFAULT 2000000ull

struct extract_opts {
	bool allow_devices;   /* make device nodes and FIFOs (a VM's /dev/console) */
	uint64_t max_bytes;   /* file data written, all layers together; 0: the default */
	uint64_t max_entries; /* archive members read, all layers together; 0: the default */
	/* Called at most every 100 ms and once at the end with the archive bytes read so far.
	 * For an image, bytes_total grows once, when the layers are known: it is then the
	 * archive's size plus the layers' sizes. May be NULL. */
	void (*progress)(void *ud, uint64_t bytes_done, uint64_t bytes_total);
	void *progress_ud;
};

struct extract_stats {
	uint64_t files, dirs, symlinks, hardlinks, nodes; /* made (nodes: devices, FIFOs) */
	uint64_t skipped;   /* device nodes and FIFOs without allow_devices, sockets */
	uint64_t whiteouts; /* image layers: whiteouts and opaque markers applied */
	uint64_t bytes;     /* file data written */
};

/* Unpacks a rootfs tarball (tar, optionally gzip, bzip2, xz, lzma, zstd or lz4 compressed) into
 * dest, an existing empty directory. o may be NULL (the defaults); st, when not NULL, gets the
 * counts, also on failure. Errors name the archive and the entry: ERR_INVALID for a refused,
 * corrupt or empty archive, ERR_EXHAUSTED past a bound, ERR_PRECONDITION when dest is not
 * empty. */
int extract_tar(const char *archive, const char *dest, const struct extract_opts *o,
		struct extract_stats *st, struct err *err);

/* An image's runtime settings, from its config. Every string and array is owned (free with
 * oci_meta_free); each array also ends with a NULL. */
struct oci_meta {
	char **entrypoint;
	size_t n_entrypoint;
	char **cmd;
	size_t n_cmd;
	char **env; /* "KEY=value" */
	size_t n_env;
	char **ports; /* exposed ports: "80/tcp", "53/udp" */
	size_t n_ports;
	char *workdir; /* NULL when unset, as is user */
	char *user;
};

/* Unpacks a container image archive into dest (an existing empty directory): a `docker save`
 * archive (manifest.json; Docker >= 25 writes an OCI layout beside it) or an OCI image layout
 * tarball (oci-layout, index.json, blobs/), compressed or not. Picks the image tagged tag
 * ("busybox", "busybox:1.36", "docker.io/library/busybox:1.36"), or the only one when tag is
 * NULL; in an image index, the linux manifest for this host's architecture. Applies its layers
 * in order with the rules above plus whiteouts: ".wh.NAME" deletes NAME from lower layers,
 * ".wh..wh..opq" empties its directory of what lower layers put there. Fills meta from the
 * image config (the caller frees it, also after a failure). The archive's members are first
 * copied into an unnamed temporary file in dest's filesystem (O_TMPFILE): the layers can then
 * be read in any order, and it is gone when this returns. Blob digests are not verified (every
 * byte is treated as untrusted anyway). Errors as extract_tar, naming the layer; ERR_NOT_FOUND
 * when no image matches tag. */
int extract_oci(const char *archive, const char *tag, const char *dest,
		const struct extract_opts *o, struct oci_meta *meta, struct extract_stats *st,
		struct err *err);

/* Frees everything meta holds and zeroes it; accepts NULL. */
void oci_meta_free(struct oci_meta *meta);

/* Appends meta as one compact JSON object (for SQLite):
 * {"entrypoint":[...],"cmd":[...],"env":[...],"ports":[...],"workdir":"/app","user":"1000"}
 * (workdir and user are null when unset). Returns 0, -ENOMEM, or -EINVAL when a string is not
 * UTF-8 (JSON cannot carry it). */
int oci_meta_to_json(const struct oci_meta *meta, struct strbuf *out);

/* Parses what oci_meta_to_json wrote into meta (zeroed first; missing keys are empty). Strict:
 * unknown keys, wrong types and more than 1 MiB of text are ERR_INVALID. On failure meta is
 * left empty. */
int oci_meta_from_json(const char *json, struct oci_meta *meta, struct err *err);
