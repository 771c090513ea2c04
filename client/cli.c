#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "macro.h"
#include "rpc_client.h"

/* Global flags, accepted at any level before or after the command words. */
const struct flag cli_global_flags[] = {
	{"data-dir", 0, FLAG_STRING, "DIR", "data directory of the daemon to talk to",
	 "~/.sistemo"},
	{"output", 'o', FLAG_STRING, "FORMAT", "output format: text or json", "text"},
	{"help", 'h', FLAG_BOOL, NULL, "show help for the command", NULL},
	{"version", 'v', FLAG_BOOL, NULL, "print the version (same as 'sistemo version')", NULL},
	{0},
};

static bool
name_matches(const struct cmd *c, const char *word)
{
	if (streq(c->name, word))
		return true;
	for (const char *const *a = c->aliases; a && *a; a++)
		if (streq(*a, word))
			return true;
	return false;
}

static const struct cmd *
find_sub(const struct cmd *c, const char *word)
{
	for (const struct cmd *s = c->subs; s && s->name; s++)
		if (name_matches(s, word))
			return s;
	return NULL;
}

static int
flag_index(const struct flag *flags, const char *name, char shorthand)
{
	for (int i = 0; flags && flags[i].name; i++)
		if ((name && streq(flags[i].name, name)) ||
		    (shorthand && flags[i].shorthand == shorthand))
			return i;
	return -1;
}

struct parse_state {
	struct cli *cli;
	struct cmd_args *a;
};

static int
set_global(struct parse_state *ps, int gi, const char *value, struct err *err)
{
	const char *name = cli_global_flags[gi].name;

	if (streq(name, "help"))
		ps->a->help = true;
	else if (streq(name, "version") && ps->a->cmd == &cli_root)
		ps->a->cmd = find_sub(&cli_root, "version");
	else if (streq(name, "version"))
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "--version goes alone: sistemo --version");
	else if (streq(name, "data-dir"))
		ps->cli->data_dir = value;
	else if (streq(value, "json"))
		ps->cli->output = OUTPUT_JSON;
	else if (streq(value, "text"))
		ps->cli->output = OUTPUT_TEXT;
	else
		return err_set(err, ERR_INVALID, "output", EINVAL,
			       "--output: unknown format '%s': use text or json", value);
	return 0;
}

static int
add_list_values(struct parse_state *ps, int fi, const char *value, struct err *err)
{
	struct cmd_args *a = ps->a;
	char *copy = arena_strdup(ps->cli->arena, value);

	for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (a->n_lists[fi] == ARRAY_SIZE(a->lists[fi]))
			return err_set(err, ERR_INVALID, a->cmd->flags[fi].name, E2BIG,
				       "--%s: at most %zu values", a->cmd->flags[fi].name,
				       ARRAY_SIZE(a->lists[fi]));
		a->lists[fi][a->n_lists[fi]++] = tok;
	}
	return 0;
}

/* Handles one "--name[=value]" or "-x [value]" word; *i advances past a consumed value. */
static int
parse_flag(struct parse_state *ps, int argc, char **argv, int *i, struct err *err)
{
	const char *word = argv[*i], *value = NULL;
	char name[64] = "";
	char shorthand = 0;

	if (word[1] == '-') {
		size_t n = strcspn(word + 2, "=");
		snprintf(name, sizeof(name), "%.*s", (int)n, word + 2);
		value = word[2 + n] == '=' ? word + 3 + n : NULL;
	} else {
		shorthand = word[1];
		value = word[2] ? word + 2 : NULL;
	}
	const struct flag *flags = ps->a->cmd->flags;
	int fi = flag_index(flags, shorthand ? NULL : name, shorthand);
	int gi = fi < 0 ? flag_index(cli_global_flags, shorthand ? NULL : name, shorthand) : -1;
	const struct flag *f = fi >= 0 ? &flags[fi] : gi >= 0 ? &cli_global_flags[gi] : NULL;
	if (!f)
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "unknown flag '%s' for '%s' (see '%s --help')", word, ps->a->path,
			       ps->a->path);
	if (f->type == FLAG_BOOL) {
		if (value && !streq(value, "true") && !streq(value, "false"))
			return err_set(err, ERR_INVALID, f->name, EINVAL,
				       "--%s takes no value (got '%s')", f->name, value);
		value = value && streq(value, "false") ? NULL : "1";
	} else if (!value) {
		if (*i + 1 >= argc)
			return err_set(err, ERR_INVALID, f->name, EINVAL, "--%s needs a value (%s)",
				       f->name, f->value_name ? f->value_name : "VALUE");
		value = argv[++*i];
	}
	if (gi >= 0)
		return set_global(ps, gi, value, err);
	ps->a->values[fi] = value;
	return f->type == FLAG_LIST && value ? add_list_values(ps, fi, value, err) : 0;
}

static void
path_append(struct parse_state *ps, const char *name)
{
	size_t n = strlen(ps->a->path);

	snprintf(ps->a->path + n, sizeof(ps->a->path) - n, "%s%s", n ? " " : "", name);
}

static int
parse(struct parse_state *ps, int argc, char **argv, struct err *err)
{
	bool raw = false, dashdash = false;

	for (int i = 1; i < argc; i++) {
		const char *w = argv[i];
		if (!dashdash && streq(w, "--")) { /* the first "--" ends the flags, and goes */
			dashdash = raw = true;
			continue;
		}
		if (!raw && w[0] == '-' && w[1] != '\0') {
			if (parse_flag(ps, argc, argv, &i, err) < 0)
				return -EINVAL;
			continue;
		}
		const struct cmd *sub = !raw && ps->a->n_pos == 0 ? find_sub(ps->a->cmd, w) : NULL;
		if (sub) {
			ps->a->cmd = sub;
			path_append(ps, sub->name);
			continue;
		}
		if (ps->a->n_pos == ARRAY_SIZE(ps->a->pos_store))
			return err_set(err, ERR_INVALID, NULL, E2BIG,
				       "too many arguments (at most %zu)",
				       ARRAY_SIZE(ps->a->pos_store));
		ps->a->pos_store[ps->a->n_pos++] = argv[i];
		raw = raw || ps->a->cmd->raw_args;
	}
	return 0;
}

const char *
cli_flag(const struct cmd_args *a, const char *name)
{
	int i = flag_index(a->cmd->flags, name, 0);

	return i >= 0 ? a->values[i] : NULL;
}

bool
cli_flag_set(const struct cmd_args *a, const char *name)
{
	return cli_flag(a, name) != NULL;
}

size_t
cli_flag_list(const struct cmd_args *a, const char *name, const char *const **ret)
{
	int i = flag_index(a->cmd->flags, name, 0);

	if (i < 0)
		return 0;
	*ret = a->lists[i];
	return a->n_lists[i];
}

struct rpc_client *
cli_client(struct cli *cli, struct err *err)
{
	if (cli->client)
		return cli->client;
	if (paths_init(&cli->paths, cli->data_dir, err) < 0)
		return NULL;
	if (rpc_client_open(cli->paths.url, &cli->client, err) < 0)
		return NULL;
	return cli->client;
}

int
cli_fail(struct cli *cli, const struct err *err)
{
	fprintf(stderr, "%s: %s\n", cli->prog, err->msg[0] ? err->msg : err_code_name(err->code));
	return err_exit_status(err->code);
}

static void
help_flags(const struct flag *flags, const char *title, FILE *f)
{
	if (!flags || !flags[0].name)
		return;
	fprintf(f, "\n%s:\n", title);
	for (const struct flag *fl = flags; fl->name; fl++) {
		char left[64];
		if (fl->shorthand)
			snprintf(left, sizeof(left), "-%c, --%s %s", fl->shorthand, fl->name,
				 fl->value_name ? fl->value_name : "");
		else
			snprintf(left, sizeof(left), "    --%s %s", fl->name,
				 fl->value_name ? fl->value_name : "");
		fprintf(f, "  %-30s %s%s%s%s%s\n", left, fl->help, fl->def ? " (default " : "",
			fl->def ? fl->def : "", fl->def ? ")" : "",
			fl->type == FLAG_LIST ? " [repeatable]" : "");
	}
}

static void
help_subs(const struct cmd *cmd, FILE *f)
{
	fprintf(f, "\nCommands:\n");
	for (const struct cmd *s = cmd->subs; s->name; s++) {
		char names[64];
		size_t n = (size_t)snprintf(names, sizeof(names), "%s", s->name);
		for (const char *const *a = s->aliases; a && *a && n < sizeof(names); a++)
			n += (size_t)snprintf(names + n, sizeof(names) - n, ", %s", *a);
		if (!s->hidden)
			fprintf(f, "  %-30s %s\n", names, s->summary);
	}
}

void
cli_help(const struct cmd *cmd, const char *path, FILE *f)
{
	fprintf(f, "%s\n\nUsage:\n  %s%s%s%s\n", cmd->summary, path, cmd->usage ? " " : "",
		cmd->usage ? cmd->usage : "", cmd->subs ? " <command>" : "");
	if (cmd->aliases && cmd->aliases[0]) {
		fprintf(f, "\nAliases: %s", cmd->name);
		for (const char *const *a = cmd->aliases; *a; a++)
			fprintf(f, ", %s", *a);
		fprintf(f, "\n");
	}
	if (cmd->description)
		fprintf(f, "\n%s\n", cmd->description);
	if (cmd->subs)
		help_subs(cmd, f);
	help_flags(cmd->flags, "Flags", f);
	help_flags(cli_global_flags, "Global flags", f);
	if (cmd->examples)
		fprintf(f, "\nExamples:\n%s", cmd->examples);
	if (cmd->subs)
		fprintf(f, "\nRun '%s <command> --help' for more about a command.\n", path);
}

static int
check_args(struct parse_state *ps, struct err *err)
{
	const struct cmd *c = ps->a->cmd;

	if (ps->a->n_pos < c->min_args)
		return err_set(err, ERR_INVALID, NULL, EINVAL, "'%s' needs %s%s (usage: %s %s)",
			       ps->a->path, c->min_args == 1 ? "an argument" : "more arguments", "",
			       ps->a->path, c->usage ? c->usage : "");
	if (ps->a->n_pos > c->max_args && !c->raw_args)
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "'%s' takes at most %u argument%s, got %zu ('%s' is extra)",
			       ps->a->path, c->max_args, c->max_args == 1 ? "" : "s", ps->a->n_pos,
			       ps->a->pos_store[c->max_args]);
	return 0;
}

static int
check_group(struct parse_state *ps, struct err *err)
{
	const struct cmd *c = ps->a->cmd;

	if (c->run || !c->subs || ps->a->n_pos == 0)
		return 0;
	return err_set(err, ERR_INVALID, NULL, EINVAL, "unknown command '%s' for '%s'",
		       ps->a->pos_store[0], ps->a->path);
}

int
cli_parse(struct cli *cli, int argc, char **argv, struct cmd_args *a, struct err *err)
{
	struct parse_state ps = {.cli = cli, .a = a};
	int r;

	memset(a, 0, sizeof(*a));
	a->cmd = &cli_root;
	path_append(&ps, cli_root.name);
	if ((r = parse(&ps, argc, argv, err)) < 0 || (r = check_group(&ps, err)) < 0)
		return r;
	a->pos = a->pos_store;
	return a->help ? 0 : check_args(&ps, err);
}

int
cli_main(int argc, char **argv)
{
	struct cli cli = {.prog = "sistemo", .stdout_tty = isatty(1)};
	struct cmd_args a;
	struct err err = {0};
	int status;

	if (arena_new(&cli.arena) < 0)
		return 1;
	if (cli_parse(&cli, argc, argv, &a, &err) < 0) {
		status = cli_fail(&cli, &err);
		if (a.cmd->subs && !a.cmd->run) /* a group: show what it offers */
			cli_help(a.cmd, a.path, stderr);
	} else if (a.help || !a.cmd->run) {
		cli_help(a.cmd, a.path, stdout);
		status = 0;
	} else if (!a.cmd->local && !cli_client(&cli, &err)) {
		status = cli_fail(&cli, &err);
	} else {
		status = a.cmd->run(&cli, &a);
	}
	rpc_client_close(cli.client);
	arena_free(cli.arena);
	fflush(stdout);
	return status;
}
