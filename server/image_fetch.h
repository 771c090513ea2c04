/* Images over HTTP(S) with libcurl: downloads that resume after an interruption (a .partial
 * file in images/downloads and Range requests), decompression (gzip, zstd, xz) into a sparse
 * file, and a sha256 check before anything enters the store; the registry's index.json
 * (docs/images.md). */
#pragma once

#include "arena.h"
#include "err.h"
#include "image.h"
#include "sistemo/v1/images.pb-c.h"

struct daemon;

/* libcurl's global set-up: once, at daemon start, before any thread downloads. */
int image_fetch_init(struct err *err);

/* Fetches and parses <registry_url>/index.json (registry_url itself when it ends in .json)
 * into the arena; ret_url (may be NULL, PATH_MAX bytes) gets the index URL. ERR_PRECONDITION
 * when no registry_url is configured, ERR_UNAVAILABLE when it cannot be read, ERR_INVALID
 * when it is no index. */
int image_registry_index(struct daemon *d, struct arena *a, Sistemo__V1__RegistryIndex **ret,
			 char *ret_url, struct err *err);

/* image pull NAME[:TAG]: the index entry for this host's architecture, downloaded (resumed
 * when a .partial of it is there), decompressed, checked against its sha256 and size, then
 * stored with tag name:tag (source 'registry'). A mismatch removes the partial file: the next
 * pull starts over. */
int image_pull(struct daemon *d, const char *ref, const struct image_progress *p,
	       struct image_info *ret, struct err *err);

/* A deploy from an http(s) URL: the image cached for that URL when there is one, else the
 * file downloaded (gzip, zstd and xz recognised by their magic) into the store (source 'url',
 * untagged). */
int image_fetch_url(struct daemon *d, const char *url, const struct image_progress *p,
		    struct image_info *ret, struct err *err);
