/* The daemon's settings: <data dir>/config.yml overlaid on defaults, then environment variables
 * (env > config.yml > default), validated key by key from one table. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CONFIG_KEY_COUNT 21
#define CONFIG_WARNINGS_MAX 16
#define CONFIG_WARNING_SIZE 512

/* Field names are exactly the YAML keys. The fields ending in '_' are private bookkeeping:
 * read them through the functions below. */
struct config {
	unsigned port;
	char host_interface[16];
	char bridge_subnet[32];
	unsigned max_vcpus;
	uint64_t max_memory_mb;
	uint64_t max_storage_mb;
	uint64_t min_disk_free_mb;
	uint64_t default_bandwidth_mbps;
	uint64_t default_upload_mbps;
	uint64_t default_iops;
	uint64_t default_disk_bw_mbps;
	unsigned reconciler_interval_sec;
	unsigned ssh_timeout_sec;
	bool block_smtp;
	unsigned rate_limit_rps;
	unsigned rate_limit_burst;
	char vmm[16];
	char registry_url[512];
	char log_level[8];
	char remote_listen[256];
	char gateway_listen[64];

	unsigned char source_[CONFIG_KEY_COUNT]; /* where each value came from, table order */
	unsigned line_[CONFIG_KEY_COUNT];        /* its line in config.yml, 0 if not there */
	size_t n_warnings_;
	char warnings_[CONFIG_WARNINGS_MAX][CONFIG_WARNING_SIZE];
};

/* Fills every key with its default; no warnings. */
void config_defaults(struct config *c);

/* Defaults, then the YAML file at path (missing file or NULL path: skipped), then the
 * environment (PORT, BRIDGE_SUBNET...: each key in upper case; an empty variable counts as
 * unset). Returns 0 or negative errno with err naming the key (err->field), its value and
 * what is allowed. Unknown keys do not fail: they become warnings for the caller to log. */
int config_load(struct config *c, const char *path, struct err *err);

/* Warnings from the last config_load (unknown keys), in file order; at most
 * CONFIG_WARNINGS_MAX, the last one saying when more were left out. */
size_t config_warning_count(const struct config *c);
const char *config_warning(const struct config *c, size_t i);

/* Calls fn for every key in table order with its current value rendered as text, its source
 * ("default", "config.yml" or "env") and a one-line help; stops and returns fn's negative
 * return, else 0. The strings live only for the call. */
int config_foreach(const struct config *c,
		   int (*fn)(void *userdata, const char *key, const char *value, const char *source,
			     const char *help),
		   void *userdata);

/* Renders the effective config as YAML that config_load reads back: every key, one
 * "key: value  # source" line each, strings double-quoted. Returns the length or -ENOSPC. */
int config_render_yaml(const struct config *c, char *buf, size_t size);

/* Parses an IPv4 CIDR "a.b.c.d/n" into network address (host order) and prefix; rejects host
 * bits and prefixes outside [min_prefix,max_prefix]. Returns 0 or -EINVAL. Used by config and,
 * later, networks. */
int config_parse_cidr(const char *s, unsigned min_prefix, unsigned max_prefix, uint32_t *ret_addr,
		      unsigned *ret_prefix);
