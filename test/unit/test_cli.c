/* The CLI's argument parser against the real command table: commands and aliases, flags in
 * every form, repeatable lists, raw arguments, and the errors for bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cli.h"
#include "macro.h"

struct fixture {
	struct cli cli;
	struct cmd_args a;
	struct err err;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_int_equal(arena_new(&f->cli.arena), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	arena_free(f->cli.arena);
	free(f);
	return 0;
}

/* Parses a NULL-terminated word list (argv[0] is added). */
static int
parse(struct fixture *f, ...)
{
	char *argv[32] = {"sistemo"};
	int argc = 1;
	va_list ap;

	va_start(ap, f);
	for (char *w; (w = va_arg(ap, char *)) && argc < 31;)
		argv[argc++] = w;
	va_end(ap);
	err_clear(&f->err);
	return cli_parse(&f->cli, argc, argv, &f->a, &f->err);
}

static void
deploy_with_flags(void **state)
{
	struct fixture *f = *state;
	const char *const *v;

	assert_int_equal(parse(f, "machine", "deploy", "tiny", "--name", "web", "-p", "80",
			       "--expose=53:53/udp,8080:80", "--memory", "1G", NULL),
			 0);
	assert_string_equal(f->a.cmd->name, "deploy");
	assert_string_equal(f->a.path, "sistemo machine deploy");
	assert_int_equal(f->a.n_pos, 1);
	assert_string_equal(f->a.pos[0], "tiny");
	assert_string_equal(cli_flag(&f->a, "name"), "web");
	assert_string_equal(cli_flag(&f->a, "memory"), "1G");
	assert_null(cli_flag(&f->a, "network"));
	assert_int_equal(cli_flag_list(&f->a, "expose", &v), 3);
	assert_string_equal(v[0], "80");
	assert_string_equal(v[1], "53:53/udp");
	assert_string_equal(v[2], "8080:80");
}

static void
aliases(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(parse(f, "vm", "ls", NULL), 0);
	assert_string_equal(f->a.cmd->name, "list");
	assert_string_equal(f->a.path, "sistemo machine list");
	assert_int_equal(parse(f, "machine", "rm", "web", "-y", NULL), 0);
	assert_string_equal(f->a.cmd->name, "delete");
	assert_true(cli_flag_set(&f->a, "yes"));
	assert_int_equal(parse(f, "vm", "show", "web", NULL), 0);
	assert_string_equal(f->a.cmd->name, "status");
	assert_int_equal(parse(f, "daemon", NULL), 0);
	assert_string_equal(f->a.cmd->name, "up");
	assert_int_equal(parse(f, "volume", "add", "10G", NULL), 0);
	assert_string_equal(f->a.cmd->name, "create");
}

static void
global_flags_anywhere(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(parse(f, "-o", "json", "--data-dir", "/srv/s", "machine", "list", NULL),
			 0);
	assert_int_equal(f->cli.output, OUTPUT_JSON);
	assert_string_equal(f->cli.data_dir, "/srv/s");
	f->cli.output = OUTPUT_TEXT;
	assert_int_equal(parse(f, "machine", "list", "-ojson", NULL), 0);
	assert_int_equal(f->cli.output, OUTPUT_JSON);
	assert_int_equal(parse(f, "machine", "list", "--output=text", NULL), 0);
	assert_int_equal(f->cli.output, OUTPUT_TEXT);
	assert_int_equal(parse(f, "--version", NULL), 0);
	assert_string_equal(f->a.cmd->name, "version");
	assert_int_equal(parse(f, "machine", "deploy", "--help", NULL), 0);
	assert_true(f->a.help);
}

static void
exec_takes_raw_arguments(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(parse(f, "machine", "exec", "web", "ls", "-la", "/", NULL), 0);
	assert_int_equal(f->a.n_pos, 4);
	assert_string_equal(f->a.pos[2], "-la");
	assert_int_equal(parse(f, "machine", "exec", "web", "--", "grep", "--count", "x", NULL), 0);
	assert_int_equal(f->a.n_pos, 4);
	assert_string_equal(f->a.pos[1], "grep");
	assert_string_equal(f->a.pos[2], "--count");
	/* flags before the first positional are still exec's own */
	assert_int_equal(parse(f, "machine", "exec", "-t", "5", "web", "uptime", NULL), 0);
	assert_string_equal(cli_flag(&f->a, "timeout"), "5");
	assert_int_equal(f->a.n_pos, 2);
}

static void
errors_name_the_word(void **state)
{
	struct fixture *f = *state;

	assert_true(parse(f, "machine", "deploy", "--bogus", NULL) < 0);
	assert_int_equal(f->err.code, ERR_INVALID);
	assert_non_null(strstr(f->err.msg, "unknown flag '--bogus' for 'sistemo machine deploy'"));
	assert_true(parse(f, "machine", "deploy", "--name", NULL) < 0);
	assert_non_null(strstr(f->err.msg, "--name needs a value"));
	assert_true(parse(f, "machine", "delete", "web", "--yes=please", NULL) < 0);
	assert_non_null(strstr(f->err.msg, "--yes takes no value"));
	assert_true(parse(f, "-o", "yaml", "machine", "list", NULL) < 0);
	assert_non_null(strstr(f->err.msg, "unknown format 'yaml': use text or json"));
	assert_true(parse(f, "machine", "frob", NULL) < 0);
	assert_non_null(strstr(f->err.msg, "unknown command 'frob' for 'sistemo machine'"));
	assert_true(parse(f, "machine", "status", NULL) < 0);
	assert_non_null(strstr(f->err.msg, "needs an argument"));
	assert_true(parse(f, "machine", "status", "a", "b", NULL) < 0);
	assert_non_null(strstr(f->err.msg, "'b' is extra"));
	assert_true(parse(f, "machine", "list", "--version", NULL) < 0);
}

static void
list_values_are_bounded(void **state)
{
	struct fixture *f = *state;
	char many[32 * 3 + 8] = "";

	for (int i = 0; i < 33; i++)
		strcat(many, i ? ",80" : "80");
	assert_true(parse(f, "machine", "deploy", "tiny", "--expose", many, NULL) < 0);
	assert_non_null(strstr(f->err.msg, "at most 32 values"));
}

/* Every command in the table has a summary, and every leaf has a runner. */
static void
table_is_complete(void **state)
{
	const struct cmd *stack[64] = {&cli_root};
	size_t n = 1, leaves = 0, missing = 0;

	(void)state;
	while (n > 0) {
		const struct cmd *c = stack[--n];
		assert_non_null(c->summary);
		if (!c->subs) {
			assert_non_null(c->run);
			if (!c->hidden && !c->examples) {
				print_error("'%s' has no examples in its help\n", c->name);
				missing++;
			}
			leaves++;
		}
		for (const struct cmd *s = c->subs; s && s->name; s++) {
			assert_true(n < ARRAY_SIZE(stack));
			stack[n++] = s;
		}
	}
	assert_true(leaves > 50);
	assert_int_equal(missing, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(deploy_with_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(aliases, setup, teardown),
		cmocka_unit_test_setup_teardown(global_flags_anywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(exec_takes_raw_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(errors_name_the_word, setup, teardown),
		cmocka_unit_test_setup_teardown(list_values_are_bounded, setup, teardown),
		cmocka_unit_test(table_is_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
