#include "kit_modules.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

#define MODULES_MAX 65536
#define DEPTH_MAX 64

struct mod {
	char *path; /* into db.buf */
	char *deps; /* space-separated paths, into db.buf */
	char name[64];
	int state; /* 0 unseen, 1 on the current path, 2 emitted */
};

struct db {
	char *buf;
	struct mod *mods;
	size_t n;
	char **out; /* NULL-terminated result */
	size_t n_out;
};

int
kit_modules_name(const char *path, char *buf, size_t size)
{
	const char *base = strrchr(path, '/');
	size_t n;

	base = base ? base + 1 : path;
	n = strcspn(base, ".");
	if (n == 0 || n >= size || strncmp(base + n, ".ko", 3) != 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		buf[i] = base[i] == '-' ? '_' : base[i];
	buf[n] = '\0';
	return 0;
}

static void
db_free(struct db *db)
{
	free(db->buf);
	free(db->mods);
	kit_modules_free(db->out);
}

/* Splits "path: dep dep..." lines; lines that do not name a .ko are skipped. */
static int
db_parse(struct db *db, const char *text)
{
	size_t lines = 1;
	char *line, *rest;

	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	if (lines > MODULES_MAX)
		return -E2BIG;
	db->buf = strdup(text);
	db->mods = calloc(lines, sizeof(*db->mods));
	db->out = calloc(lines + 1, sizeof(*db->out));
	if (!db->buf || !db->mods || !db->out)
		return -ENOMEM;
	rest = db->buf;
	while ((line = strsep(&rest, "\n"))) {
		struct mod *m = &db->mods[db->n];
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		m->path = line;
		m->deps = colon + 1;
		if (kit_modules_name(line, m->name, sizeof(m->name)) == 0)
			db->n++;
	}
	return 0;
}

/* The index of the module whose path (by_path) or name is key, or -1. */
static long
db_find(const struct db *db, const char *key, bool by_path)
{
	for (size_t i = 0; i < db->n; i++)
		if (streq(by_path ? db->mods[i].path : db->mods[i].name, key))
			return (long)i;
	return -1;
}

static bool
compressed(const char *path)
{
	size_t n = strlen(path);

	return n < 3 || strcmp(path + n - 3, ".ko") != 0;
}

/* Emits module i after everything it depends on (depth-first, post-order). */
static int
db_visit(struct db *db, size_t i, int depth, struct err *err)
{
	struct mod *m = &db->mods[i];
	char *save = NULL;

	if (m->state == 2)
		return 0;
	if (m->state == 1 || depth > DEPTH_MAX)
		return err_set(err, ERR_INVALID, NULL, ELOOP,
			       "modules.dep: dependency cycle at '%s'", m->path);
	if (compressed(m->path))
		return err_set(err, ERR_UNIMPLEMENTED, NULL, ENOTSUP,
			       "kernel module '%s' is compressed: not supported", m->path);
	m->state = 1;
	for (char *dep = strtok_r(m->deps, " \t\r", &save); dep;
	     dep = strtok_r(NULL, " \t\r", &save)) {
		long j = db_find(db, dep, true);
		if (j < 0)
			return err_set(err, ERR_INVALID, NULL, ENOENT,
				       "modules.dep: '%s' needs '%s', which it does not list",
				       m->path, dep);
		int r = db_visit(db, (size_t)j, depth + 1, err);
		if (r < 0)
			return r;
	}
	m->state = 2;
	if (!(db->out[db->n_out] = strdup(m->path)))
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	db->n_out++;
	return 0;
}

/* True when modules.builtin (one path per line) lists the module name. */
static bool
builtin_has(const char *builtin_text, const char *name)
{
	char line[512], mod[64];

	for (const char *p = builtin_text; p && *p;) {
		size_t n = strcspn(p, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		if (kit_modules_name(line, mod, sizeof(mod)) == 0 && streq(mod, name))
			return true;
		p += n + (p[n] == '\n');
	}
	return false;
}

static int
want(struct db *db, const char *builtin_text, const char *wanted, bool required, struct err *err)
{
	char name[64];
	long i;

	if (snprintf(name, sizeof(name), "%s", wanted) >= (int)sizeof(name))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "module name '%s' too long", wanted);
	for (char *p = name; *p; p++)
		*p = *p == '-' ? '_' : *p;
	i = db_find(db, name, false);
	if (i >= 0)
		return db_visit(db, (size_t)i, 0, err);
	if (!required || builtin_has(builtin_text, name))
		return 0;
	return err_set(err, ERR_NOT_FOUND, NULL, ENOENT,
		       "kernel module '%s' is neither in modules.dep nor built in", name);
}

int
kit_modules_resolve(const char *dep_text, const char *builtin_text, const char *const *required,
		    const char *const *optional, char ***ret, struct err *err)
{
	struct db db = {0};
	int r = db_parse(&db, dep_text);

	if (r < 0) {
		db_free(&db);
		return err_set(err, ERR_INVALID, NULL, -r, "modules.dep: %s", strerror(-r));
	}
	for (size_t i = 0; r == 0 && required && required[i]; i++)
		r = want(&db, builtin_text, required[i], true, err);
	for (size_t i = 0; r == 0 && optional && optional[i]; i++)
		r = want(&db, builtin_text, optional[i], false, err);
	if (r == 0)
		*ret = TAKE_PTR(db.out);
	db_free(&db);
	return r;
}

void
kit_modules_free(char **list)
{
	for (size_t i = 0; list && list[i]; i++)
		free(list[i]);
	free(list);
}
