/* The CLI's command table and argument parser: commands, aliases, flags, positional arguments,
 * help with examples, and the shared state (output format, daemon connection). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "err.h"
#include "paths.h"

enum flag_type {
	FLAG_BOOL,   /* --yes */
	FLAG_STRING, /* --name web */
	FLAG_LIST,   /* repeatable and comma-separated: --expose 80 --expose 53:53/udp */
};

struct flag {
	const char *name; /* long name without dashes */
	char shorthand;   /* 'y' or 0 */
	enum flag_type type;
	const char *value_name; /* "NAME", "SIZE" */
	const char *help;
	const char *def; /* default shown in help, or NULL */
};

struct cli;
struct cmd;

/* What the parser found for one command line. */
struct cmd_args {
	const struct cmd *cmd;
	const char *values[16];    /* per flag of cmd->flags, NULL when absent ("1" for bools) */
	const char *lists[16][32]; /* FLAG_LIST values, split on commas */
	size_t n_lists[16];
	char *const *pos; /* positional arguments */
	size_t n_pos;
	char *pos_store[64];
	char path[256]; /* the words of the command found: "sistemo machine deploy" */
	bool help;      /* --help was given */
};

struct cmd {
	const char *name;
	const char *const *aliases; /* NULL or NULL-terminated */
	const char *usage;          /* argument synopsis: "<machine> [--port SPEC]" */
	const char *summary;        /* one line */
	const char *description;    /* paragraphs, or NULL */
	const char *examples;       /* lines of commands, or NULL */
	const struct flag *flags;   /* NULL or terminated by {0} */
	unsigned min_args, max_args;
	bool raw_args; /* after the first positional, everything is positional */
	bool local;    /* runs without the daemon (or connects on its own) */
	bool hidden;
	int (*run)(struct cli *cli, const struct cmd_args *a);
	const struct cmd *subs; /* NULL or terminated by {0} */
	const char *complete;   /* what positionals complete to: "machines", "networks", ... */
};

enum output_format { OUTPUT_TEXT, OUTPUT_JSON };

struct cli {
	const char *prog;     /* "sistemo" */
	const char *data_dir; /* --data-dir or NULL */
	enum output_format output;
	struct paths paths;
	struct rpc_client *client; /* connected on first use */
	struct arena *arena;       /* parsed values and built requests; freed at exit */
	bool stdout_tty;
};

/* The root of the command table (commands.c). */
extern const struct cmd cli_root;

/* The global flags, accepted at every level (--data-dir, -o/--output, -h/--help,
 * -v/--version); {0}-terminated. */
extern const struct flag cli_global_flags[];

/* Parses argv against the table into a: the command found, its flags and positionals; the
 * global flags land in cli (which must have an arena). Checks the count of positionals unless
 * help was asked. Returns 0 or negative errno with err naming the bad word. */
int cli_parse(struct cli *cli, int argc, char **argv, struct cmd_args *a, struct err *err);

/* Parses argv against the table, runs the command; returns the process exit status. */
int cli_main(int argc, char **argv);

/* Value of a flag by long name (NULL when absent), its list, and whether a bool is set. */
const char *cli_flag(const struct cmd_args *a, const char *name);
bool cli_flag_set(const struct cmd_args *a, const char *name);
size_t cli_flag_list(const struct cmd_args *a, const char *name, const char *const **ret);

/* Connects to the daemon on first use; NULL (with err set) when it cannot be reached. The CLI
 * connects before running any command not marked `local`, so those find cli->client set. */
struct rpc_client *cli_client(struct cli *cli, struct err *err);

/* Prints the error to stderr ("sistemo: message") and returns its exit status. */
int cli_fail(struct cli *cli, const struct err *err);

/* Prints help for cmd (with the path of parent names in `path`) to f. */
void cli_help(const struct cmd *cmd, const char *path, FILE *f);
