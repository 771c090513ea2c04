#include "image_fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lzma.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "daemon.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"
#include "pbjson.h"
#include "strbuf.h"

#define CHUNK (1u << 20)
#define BLOCK 4096u
#define ATTEMPTS 3
#define URL_IMAGE_MAX (50ull << 30)
#define REPORT_EVERY_MS 500

enum codec { CODEC_NONE, CODEC_GZIP, CODEC_ZSTD, CODEC_XZ };

static const char *const codec_names[] = {"none", "gzip", "zstd", "xz"};

int
image_fetch_init(struct err *err)
{
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

	return rc == CURLE_OK ? 0
			      : err_set(err, ERR_INTERNAL, NULL, EIO, "libcurl: %s",
					curl_easy_strerror(rc));
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- one download into a file that grows across attempts -------------------------------- */

struct download {
	const char *url;
	int fd;             /* the .partial file, O_APPEND */
	uint64_t offset;    /* bytes in it when this attempt began */
	uint64_t written;   /* bytes this attempt added */
	uint64_t max_bytes; /* the file may not grow past this */
	uint64_t total;     /* the whole file's size when known, else 0 */
	const struct image_progress *p;
	unsigned from, to; /* the share of the operation's percent */
	int64_t last_report_ms;
	int write_errno;
	bool cancelled;
	char error[CURL_ERROR_SIZE];
};

static size_t
on_data(char *data, size_t size, size_t n, void *ud)
{
	struct download *dl = ud;
	size_t len = size * n;

	if (dl->offset + dl->written + len > dl->max_bytes) {
		dl->write_errno = EFBIG;
		return 0;
	}
	for (size_t done = 0; done < len;) {
		ssize_t w = write(dl->fd, data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			dl->write_errno = w < 0 ? errno : EIO;
			return 0;
		}
		done += (size_t)w;
	}
	dl->written += len;
	return len;
}

static int
on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct download *dl = ud;
	struct err scratch = {0};
	int64_t t = now_ms();

	(void)dlnow, (void)ultotal, (void)ulnow;
	if (image_cancelled(dl->p, &scratch)) {
		dl->cancelled = true;
		return 1;
	}
	if (t - dl->last_report_ms < REPORT_EVERY_MS)
		return 0;
	dl->last_report_ms = t;
	uint64_t done = dl->offset + dl->written;
	uint64_t total = dl->total ? dl->total : dltotal > 0 ? dl->offset + (uint64_t)dltotal : 0;
	char of[32] = "?";
	unsigned pct = dl->from;
	if (total) {
		snprintf(of, sizeof(of), "%.1f", (double)total / (1 << 20));
		pct += (unsigned)((dl->to - dl->from) * (done > total ? total : done) / total);
	}
	image_report(dl->p, "download", pct, "downloaded %.1f of %s MiB%s",
		     (double)done / (1 << 20), of, dl->offset ? " (resumed)" : "");
	return 0;
}

static CURL *
easy_new(const char *url, char *errbuf)
{
	CURL *c = curl_easy_init();

	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	/* a transfer stalled for a minute is broken: a later attempt resumes it */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "sistemo/" SISTEMO_VERSION);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	errbuf[0] = '\0';
	return c;
}

static CURLcode
attempt(struct download *dl, long *ret_status)
{
	CURL *c = easy_new(dl->url, dl->error);
	CURLcode rc;

	*ret_status = 0;
	if (!c)
		return CURLE_OUT_OF_MEMORY;
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, dl);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, dl);
	curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)dl->offset);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status);
	if (!dl->error[0])
		snprintf(dl->error, sizeof(dl->error), "%s", curl_easy_strerror(rc));
	curl_easy_cleanup(c);
	return rc;
}

/* Where the next attempt starts: the partial file's size; true when it is complete. */
static int
attempt_start(struct download *dl, bool *ret_complete)
{
	struct stat st;

	if (fstat(dl->fd, &st) < 0)
		return -errno;
	dl->offset = (uint64_t)st.st_size;
	dl->written = 0;
	if (dl->total && dl->offset > dl->total) {
		if (ftruncate(dl->fd, 0) < 0)
			return -errno;
		dl->offset = 0;
	}
	*ret_complete = dl->total && dl->offset == dl->total;
	return 0;
}

static int
attempt_failed(struct download *dl, CURLcode rc, long status, struct err *err)
{
	if (dl->cancelled)
		return err_set(err, ERR_CANCELLED, NULL, ECANCELED, "cancelled");
	if (dl->write_errno == EFBIG)
		return err_set(err, ERR_INVALID, NULL, EFBIG,
			       "'%s' is larger than %llu bytes: refused", dl->url,
			       (unsigned long long)dl->max_bytes);
	if (dl->write_errno)
		return err_set(err, ERR_INTERNAL, NULL, dl->write_errno, "write: %s",
			       strerror(dl->write_errno));
	/* the server ignored the range, or the partial file is no prefix of its file */
	if (rc == CURLE_RANGE_ERROR || status == 416)
		return ftruncate(dl->fd, 0) < 0 ? -errno : 1;
	if (status >= 400 && status < 500)
		return err_set(err, status == 404 ? ERR_NOT_FOUND : ERR_UNAVAILABLE, NULL, EIO,
			       "download '%s': HTTP %ld", dl->url, status);
	log_warn("download '%s' interrupted after %llu bytes: %s", dl->url,
		 (unsigned long long)(dl->offset + dl->written), dl->error);
	return 1;
}

/* Downloads url into the open partial file, resuming from its size; retried twice. */
static int
download(struct download *dl, struct err *err)
{
	bool complete;
	long status;
	int r;

	for (unsigned i = 0; i < ATTEMPTS; i++) {
		if ((r = attempt_start(dl, &complete)) < 0)
			return err_set(err, ERR_INTERNAL, NULL, -r, "partial file: %s",
				       strerror(-r));
		if (complete)
			return 0;
		if (dl->offset)
			image_report(dl->p, "download", dl->from, "resuming at byte %llu",
				     (unsigned long long)dl->offset);
		CURLcode rc = attempt(dl, &status);
		if (rc == CURLE_OK)
			return 0;
		if ((r = attempt_failed(dl, rc, status, err)) <= 0)
			return r < 0 ? r : -EIO;
		if (i + 1 < ATTEMPTS)
			sleep(1u << i);
	}
	return err_set(err, ERR_UNAVAILABLE, NULL, EIO,
		       "download '%s' failed %d times (the partial file is kept: the next pull "
		       "resumes it): %s",
		       dl->url, ATTEMPTS, dl->error);
}

/* ---- a small download into memory: the index ---------------------------------------- */

struct memory {
	struct strbuf buf;
	size_t max;
};

static size_t
on_memory(char *data, size_t size, size_t n, void *ud)
{
	struct memory *m = ud;

	if (m->buf.len + size * n > m->max || strbuf_append(&m->buf, data, size * n) < 0)
		return 0;
	return size * n;
}

static int
get_memory(const char *url, size_t max, struct strbuf *out, struct err *err)
{
	char errbuf[CURL_ERROR_SIZE];
	struct memory m = {.max = max};
	CURL *c = easy_new(url, errbuf);
	CURLcode rc;

	if (!c)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_memory);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	rc = curl_easy_perform(c);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK) {
		strbuf_free(&m.buf);
		return err_set(err, ERR_UNAVAILABLE, NULL, EIO, "'%s': %s", url,
			       errbuf[0] ? errbuf : curl_easy_strerror(rc));
	}
	*out = m.buf;
	return 0;
}

/* ---- decompression into a sparse file -------------------------------------------------- */

struct sparse {
	int fd;
	uint64_t off, max;
};

static bool
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Writes n bytes at the current offset; whole zero blocks become holes. */
static int
sparse_write(struct sparse *s, const uint8_t *p, size_t n)
{
	if (s->off + n > s->max)
		return -EFBIG;
	while (n > 0) {
		size_t k = BLOCK - s->off % BLOCK;
		k = k < n ? k : n;
		if (!(k == BLOCK && all_zero(p, k))) {
			ssize_t w = pwrite(s->fd, p, k, (off_t)s->off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return w < 0 ? -errno : -EIO;
			k = (size_t)w;
		}
		s->off += k;
		p += k;
		n -= k;
	}
	return 0;
}

struct decoder {
	enum codec codec;
	bool between; /* gzip: a member ended, no byte of another yet */
	z_stream z;
	lzma_stream x;
	ZSTD_DStream *zs;
};

static int
decoder_init(struct decoder *dc)
{
	switch (dc->codec) {
	case CODEC_GZIP:
		return inflateInit2(&dc->z, 15 + 32) == Z_OK ? 0 : -ENOMEM;
	case CODEC_XZ:
		dc->x = (lzma_stream)LZMA_STREAM_INIT;
		return lzma_stream_decoder(&dc->x, UINT64_MAX, LZMA_CONCATENATED) == LZMA_OK
			       ? 0
			       : -ENOMEM;
	case CODEC_ZSTD:
		dc->zs = ZSTD_createDStream();
		return dc->zs && !ZSTD_isError(ZSTD_initDStream(dc->zs)) ? 0 : -ENOMEM;
	default:
		return 0;
	}
}

static void
decoder_end(struct decoder *dc)
{
	if (dc->codec == CODEC_GZIP)
		inflateEnd(&dc->z);
	else if (dc->codec == CODEC_XZ)
		lzma_end(&dc->x);
	else if (dc->codec == CODEC_ZSTD)
		ZSTD_freeDStream(dc->zs);
}

/* One step: consumes some of in (advancing *in_used), produces *out_len bytes; *done at the end
 * of the stream. -EBADMSG on corrupt data. */
static int
decoder_step(struct decoder *dc, const uint8_t *in, size_t in_len, size_t *in_used, bool eof,
	     uint8_t *out, size_t *out_len, bool *done)
{
	int rc;

	switch (dc->codec) {
	case CODEC_GZIP:
		if (dc->between && in_len == 0 && eof)
			return *in_used = *out_len = 0, *done = true, 0;
		dc->between = false;
		dc->z.next_in = (Bytef *)in, dc->z.avail_in = (uInt)in_len;
		dc->z.next_out = out, dc->z.avail_out = CHUNK;
		rc = inflate(&dc->z, Z_NO_FLUSH);
		*in_used = in_len - dc->z.avail_in, *out_len = CHUNK - dc->z.avail_out;
		/* concatenated gzip members: go on with the next one */
		if (rc == Z_STREAM_END && (dc->z.avail_in > 0 || !eof)) {
			dc->between = true;
			return inflateReset(&dc->z) == Z_OK ? 0 : -EBADMSG;
		}
		*done = rc == Z_STREAM_END;
		return rc == Z_OK || rc == Z_STREAM_END || (rc == Z_BUF_ERROR && !eof) ? 0
										       : -EBADMSG;
	case CODEC_XZ:
		dc->x.next_in = in, dc->x.avail_in = in_len;
		dc->x.next_out = out, dc->x.avail_out = CHUNK;
		rc = (int)lzma_code(&dc->x, eof ? LZMA_FINISH : LZMA_RUN);
		*in_used = in_len - dc->x.avail_in, *out_len = CHUNK - dc->x.avail_out;
		*done = rc == LZMA_STREAM_END;
		return rc == LZMA_OK || rc == LZMA_STREAM_END ? 0 : -EBADMSG;
	case CODEC_ZSTD: {
		ZSTD_inBuffer ib = {in, in_len, 0};
		ZSTD_outBuffer ob = {out, CHUNK, 0};
		size_t zr = ZSTD_decompressStream(dc->zs, &ob, &ib);
		*in_used = ib.pos, *out_len = ob.pos;
		*done = zr == 0 && eof && ib.pos == in_len;
		return ZSTD_isError(zr) ? -EBADMSG : 0;
	}
	default:
		memcpy(out, in, in_len < CHUNK ? in_len : CHUNK);
		*in_used = *out_len = in_len < CHUNK ? in_len : CHUNK;
		*done = eof && *in_used == in_len;
		return 0;
	}
}

struct pump {
	struct decoder dc;
	uint8_t *in, *out;
	size_t in_len, in_pos;
	bool eof, done;
};

/* Reads more input when what was read is used up. */
static int
pump_fill(struct pump *pu, int src)
{
	if (pu->in_pos < pu->in_len || pu->eof)
		return 0;
	ssize_t n;
	while ((n = read(src, pu->in, CHUNK)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return -errno;
	pu->in_len = (size_t)n, pu->in_pos = 0;
	pu->eof = n == 0;
	return 0;
}

static int
pump_run(struct pump *pu, int src, struct sparse *dst)
{
	size_t used, produced;
	unsigned idle = 0;
	int r = 0;

	while (r == 0 && !pu->done) {
		if ((r = pump_fill(pu, src)) < 0)
			break;
		r = decoder_step(&pu->dc, pu->in + pu->in_pos, pu->in_len - pu->in_pos, &used,
				 pu->eof, pu->out, &produced, &pu->done);
		pu->in_pos += used;
		if (r == 0 && produced)
			r = sparse_write(dst, pu->out, produced);
		/* no progress with all input read: a truncated stream */
		idle = used || produced ? 0 : idle + 1;
		if (r == 0 && pu->eof && pu->in_pos == pu->in_len && idle > 1)
			r = pu->dc.codec == CODEC_NONE ? (pu->done = true, 0) : -EBADMSG;
	}
	return r;
}

/* Decompresses the file src into dst (sparse), at most max bytes; ret_size gets its size. */
static int
decompress(enum codec codec, int src, int dst, uint64_t max, uint64_t *ret_size)
{
	struct pump pu = {.dc = {.codec = codec}};
	struct sparse s = {.fd = dst, .max = max};
	int r;

	if (lseek(src, 0, SEEK_SET) < 0)
		return -errno;
	pu.in = malloc(CHUNK);
	pu.out = malloc(CHUNK);
	r = pu.in && pu.out ? decoder_init(&pu.dc) : -ENOMEM;
	if (r == 0) {
		r = pump_run(&pu, src, &s);
		decoder_end(&pu.dc);
	}
	free(pu.in);
	free(pu.out);
	if (r == 0 && ftruncate(dst, (off_t)s.off) < 0)
		r = -errno;
	*ret_size = s.off;
	return r;
}

static enum codec
sniff(int fd)
{
	uint8_t m[6] = {0};

	if (pread(fd, m, sizeof(m), 0) < 2)
		return CODEC_NONE;
	if (m[0] == 0x1f && m[1] == 0x8b)
		return CODEC_GZIP;
	if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		return CODEC_ZSTD;
	if (memcmp(m,
		   "\xfd"
		   "7zXZ\0",
		   6) == 0)
		return CODEC_XZ;
	return CODEC_NONE;
}

/* The downloaded file decompressed into a new file of images/tmp (tmp gets its name). */
static int
unpack(struct daemon *d, int partial, enum codec codec, uint64_t max, uint64_t want_size, char *tmp,
       size_t size, struct err *err)
{
	cleanup_close int out = image_tmp_file(d, "pull", tmp, size, err);
	uint64_t got = 0;
	int r;

	if (out < 0)
		return out;
	r = decompress(codec, partial, out, max, &got);
	if (r == 0 && want_size && got != want_size)
		r = -EMSGSIZE;
	if (r == 0)
		return 0;
	unlink(tmp);
	if (r == -EBADMSG || r == -EFBIG || r == -EMSGSIZE)
		return err_set(err, ERR_INVALID, NULL, -r,
			       "the downloaded file is not a valid %s image%s (%llu bytes out)",
			       codec_names[codec], r == -EBADMSG ? "" : " of the announced size",
			       (unsigned long long)got);
	return err_set(err, ERR_INTERNAL, NULL, -r, "decompress: %s", strerror(-r));
}

/* ---- the registry ------------------------------------------------------------------------- */

static void
index_url(const struct daemon *d, char *buf, size_t size)
{
	const char *base = d->cfg.registry_url;
	size_t n = strlen(base);

	if (n > 5 && streq(base + n - 5, ".json"))
		snprintf(buf, size, "%s", base);
	else
		snprintf(buf, size, "%s%sindex.json", base, n && base[n - 1] == '/' ? "" : "/");
}

int
image_registry_index(struct daemon *d, struct arena *a, Sistemo__V1__RegistryIndex **ret,
		     char *ret_url, struct err *err)
{
	cleanup_strbuf struct strbuf text = {0};
	char url[PATH_MAX];
	ProtobufCMessage *msg = NULL;
	int r;

	if (!d->cfg.registry_url[0])
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "no registry: set registry_url in the config (docs/images.md)");
	index_url(d, url, sizeof(url));
	if (ret_url)
		snprintf(ret_url, PATH_MAX, "%s", url);
	if ((r = get_memory(url, PBJSON_MAX_INPUT, &text, err)) < 0)
		return err_wrap(err, "registry index");
	if ((r = pbjson_decode(&sistemo__v1__registry_index__descriptor, text.data ? text.data : "",
			       text.len, a, &msg, err)) < 0)
		return err_wrap(err, "registry index '%s'", url);
	*ret = (Sistemo__V1__RegistryIndex *)msg;
	if ((*ret)->version != 1)
		return err_set(err, ERR_INVALID, NULL, EPROTO,
			       "registry index '%s': version %u, this sistemo reads version 1", url,
			       (*ret)->version);
	return 0;
}

static bool
arch_fits(const char *arch)
{
	struct utsname u;

	if (!*arch || uname(&u) < 0)
		return true;
	return streq(arch, u.machine) || (streq(u.machine, "x86_64") && streq(arch, "amd64")) ||
	       (streq(u.machine, "aarch64") && streq(arch, "arm64"));
}

/* The entry for "name:tag" and this host, checked. */
static int
find_entry(const Sistemo__V1__RegistryIndex *idx, const char *tag, const char *url,
	   const Sistemo__V1__RegistryEntry **ret, enum codec *ret_codec, struct err *err)
{
	const char *colon = strchr(tag, ':');
	size_t n = (size_t)(colon - tag);

	*ret = NULL;
	for (size_t i = 0; i < idx->n_images && !*ret; i++) {
		const Sistemo__V1__RegistryEntry *e = idx->images[i];
		const char *t = *e->tag ? e->tag : "latest";
		if (strlen(e->name) == n && strncmp(e->name, tag, n) == 0 && streq(t, colon + 1) &&
		    arch_fits(e->arch))
			*ret = e;
	}
	if (!*ret)
		return err_set(err, ERR_NOT_FOUND, "image", ENOENT,
			       "unknown image '%s': not in the registry '%s' (%zu images; sistemo "
			       "image list --registry shows them)",
			       tag, url, idx->n_images);
	const Sistemo__V1__RegistryEntry *e = *ret;
	*ret_codec = CODEC_NONE;
	for (size_t i = 1; i < ARRAY_SIZE(codec_names); i++)
		if (streq(e->compression, codec_names[i]))
			*ret_codec = (enum codec)i;
	if (strlen(e->sha256) != 64 || strspn(e->sha256, "0123456789abcdef") != 64 || !*e->url ||
	    !e->size ||
	    (*e->compression && *ret_codec == CODEC_NONE && !streq(e->compression, "none")))
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "registry '%s': entry '%s' needs sha256 (64 lowercase hex digits), "
			       "size, url and a compression of none, gzip, zstd or xz",
			       url, tag);
	return 0;
}

/* The entry's file URL: absolute, or relative to the index. */
static int
entry_url(const char *index, const char *rel, char *buf, size_t size, struct err *err)
{
	CURLU *u = curl_url();
	char *out = NULL;
	int r = 0;

	if (!u || curl_url_set(u, CURLUPART_URL, index, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_URL, rel, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK ||
	    kit_path(buf, size, "%s", out) < 0 ||
	    (strncmp(buf, "http://", 7) != 0 && strncmp(buf, "https://", 8) != 0))
		r = err_set(err, ERR_INVALID, NULL, EINVAL, "registry: bad url '%s'", rel);
	curl_free(out);
	curl_url_cleanup(u);
	return r;
}

/* Opens (creating) images/downloads/<key>.partial, locked: one download of it at a time. */
static int
partial_open(struct daemon *d, const char *key, char *path, size_t size, struct err *err)
{
	char rel[160];

	snprintf(rel, sizeof(rel), "images/downloads/%s.partial", key);
	paths_join(&d->paths, rel, path, size);
	return kit_lock_file(path, O_APPEND, err);
}

struct fetch {
	const char *url, *sha256;
	enum codec codec;
	uint64_t size, file_size, max;
	struct image_add add;
};

/* Downloads f->url through the partial file `key`, unpacks and stores it. The partial file goes
 * when the image is stored or proves bad; it stays for a later resume when the download broke. */
static int
fetch_store(struct daemon *d, const char *key, const struct fetch *f,
	    const struct image_progress *p, struct image_info *ret, struct err *err)
{
	char partial[PATH_MAX], tmp[PATH_MAX];
	cleanup_close int fd = partial_open(d, key, partial, sizeof(partial), err);
	struct download dl = {.url = f->url, .fd = fd, .p = p, .from = 5, .to = 80};
	int r;

	if (fd < 0)
		return fd;
	dl.total = f->file_size ? f->file_size : f->codec == CODEC_NONE ? f->size : 0;
	dl.max_bytes = dl.total ? dl.total : f->max;
	image_report(p, "download", 5, "downloading '%s'", f->url);
	if ((r = download(&dl, err)) < 0)
		return r;
	enum codec codec = f->sha256 ? f->codec : sniff(fd);
	image_report(p, "unpack", 80, "%s", codec == CODEC_NONE ? "copying" : "decompressing");
	r = unpack(d, fd, codec, f->size ? f->size : f->max, f->size, tmp, sizeof(tmp), err);
	if (r == 0) {
		image_report(p, "verify", 90, "checking the sha256 digest");
		r = image_store_add(d, tmp, &f->add, ret, err);
	}
	if (r == 0 || err->code == ERR_INVALID)
		unlink(partial);
	return r;
}

static int
pull_entry(struct daemon *d, const Sistemo__V1__RegistryEntry *e, enum codec codec,
	   const char *index, const char *tag, const struct image_progress *p,
	   struct image_info *ret, struct err *err)
{
	char url[PATH_MAX], digest[80], key[96], ref[PATH_MAX + 160];
	int r = entry_url(index, e->url, url, sizeof(url), err);

	if (r < 0)
		return r;
	snprintf(ref, sizeof(ref), "%s %s", index, tag);
	snprintf(digest, sizeof(digest), "sha256:%s", e->sha256);
	/* the same bytes are in the store already: only the tag moves */
	if (store_image_get(d->store, digest, ret, err) == 0 && access(ret->path, R_OK) == 0) {
		struct image_rec rec = {.digest = digest};
		image_report(p, "verify", 90, "%s is in the store already", digest);
		return store_image_add(d->store, &rec, tag, err) < 0
			       ? -EIO
			       : store_image_get(d->store, digest, ret, err);
	}
	snprintf(key, sizeof(key), "%s-%s", e->sha256, codec_names[codec]);
	struct fetch f = {
		.url = url,
		.sha256 = e->sha256,
		.codec = codec,
		.size = e->size,
		.file_size = e->file_size,
		.max = e->size,
		.add = {.source = "registry", .source_ref = ref, .tag = tag, .sha256 = e->sha256}};
	return fetch_store(d, key, &f, p, ret, err);
}

int
image_pull(struct daemon *d, const char *ref, const struct image_progress *p,
	   struct image_info *ret, struct err *err)
{
	const Sistemo__V1__RegistryEntry *e;
	Sistemo__V1__RegistryIndex *idx;
	struct arena *a;
	char tag[160], url[PATH_MAX];
	enum codec codec = CODEC_NONE;
	int r = image_tag_normalize(ref, tag, sizeof(tag), err);

	if (r < 0)
		return r;
	if (arena_new(&a) < 0)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	image_report(p, "index", 1, "reading the registry index");
	r = image_registry_index(d, a, &idx, url, err);
	if (r == 0)
		r = find_entry(idx, tag, url, &e, &codec, err);
	if (r == 0)
		r = pull_entry(d, e, codec, url, tag, p, ret, err);
	arena_free(a);
	return r < 0 ? err_wrap(err, "pull '%s'", tag) : 0;
}

int
image_fetch_url(struct daemon *d, const char *url, const struct image_progress *p,
		struct image_info *ret, struct err *err)
{
	unsigned char sum[32];
	char key[40], partial[PATH_MAX];

	if (strlen(url) >= PATH_MAX)
		return err_set(err, ERR_INVALID, "image", ENAMETOOLONG, "URL too long");
	if (store_image_find_url(d->store, url, ret, err) == 0 && access(ret->path, R_OK) == 0) {
		image_report(p, "image", 100, "cached: %s", ret->digest);
		return 0;
	}
	mbedtls_sha256_ret((const unsigned char *)url, strlen(url), sum, 0);
	for (size_t i = 0; i < 16; i++)
		snprintf(key + 2 * i, 3, "%02x", sum[i]);
	/* nothing says a URL's file is the one a partial download began: start afresh */
	char name[48], rel[96];
	snprintf(name, sizeof(name), "url-%s", key);
	snprintf(rel, sizeof(rel), "images/downloads/%s.partial", name);
	paths_join(&d->paths, rel, partial, sizeof(partial));
	unlink(partial);
	struct fetch f = {
		.url = url, .max = URL_IMAGE_MAX, .add = {.source = "url", .source_ref = url}};
	int r = fetch_store(d, name, &f, p, ret, err);
	unlink(partial);
	if (r == 0)
		r = store_image_set_url(d->store, url, ret->digest, err);
	return r < 0 ? err_wrap(err, "image '%s'", url) : 0;
}
