/* Shell completion scripts generated from a small command table: their content, their syntax
 * (bash -n, and zsh -n / fish -n where installed) and what they complete, run in each shell
 * against a stand-in program that answers `__complete`. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "completion.h"
#include "macro.h"

/* --- the table ------------------------------------------------------------------------------- */

static const struct flag root_flags[] = {
	{.name = "data-dir", .type = FLAG_STRING, .value_name = "DIR", .help = "data directory"},
	{.name = "output", .shorthand = 'o', .type = FLAG_STRING, .help = "output: text or json"},
	{0},
};
static const struct flag deploy_flags[] = {
	{.name = "name", .type = FLAG_STRING, .help = "machine's name"},
	{.name = "memory", .type = FLAG_STRING, .help = "memory, e.g. 512M or 2G"},
	{.name = "expose", .type = FLAG_LIST, .help = "publish a port: it's HOST:MACHINE"},
	{.name = "yes", .shorthand = 'y', .type = FLAG_BOOL, .help = "don't ask \\ confirm"},
	{0},
};
static const struct flag yes_flags[] = {
	{.name = "yes", .shorthand = 'y', .type = FLAG_BOOL, .help = "do not ask"},
	{0},
};
static const char *const vm_aliases[] = {"vm", NULL};
static const char *const ls_aliases[] = {"ls", NULL};
static const char *const rm_aliases[] = {"rm", "remove", NULL};

static const struct cmd machine_volume_cmds[] = {
	{.name = "attach",
	 .summary = "Attach a volume",
	 .max_args = 2,
	 .complete = "machines,volumes"},
	{0},
};
static const struct cmd machine_cmds[] = {
	{.name = "list", .aliases = ls_aliases, .summary = "List machines"},
	{.name = "deploy",
	 .summary = "Deploy: a machine from an image",
	 .flags = deploy_flags,
	 .max_args = 1,
	 .complete = "images"},
	{.name = "delete",
	 .aliases = rm_aliases,
	 .summary = "Delete machines",
	 .flags = yes_flags,
	 .max_args = 16,
	 .complete = "machines..."},
	{.name = "exec",
	 .summary = "Run a command",
	 .max_args = 32,
	 .raw_args = true,
	 .complete = "machines"},
	{.name = "volume", .summary = "Machine volumes", .subs = machine_volume_cmds},
	{.name = "debug", .summary = "Hidden", .hidden = true},
	{0},
};
static const struct cmd network_cmds[] = {
	{.name = "list", .aliases = ls_aliases, .summary = "List networks"},
	{.name = "delete", .summary = "Delete a network", .max_args = 1, .complete = "networks"},
	{0},
};
static const struct cmd volume_cmds[] = {
	{.name = "list", .aliases = ls_aliases, .summary = "List volumes"},
	{.name = "resize", .summary = "Grow a volume", .max_args = 2, .complete = "volumes"},
	{0},
};
static const struct cmd secret_cmds[] = {
	{.name = "inner", .summary = "Hidden too"},
	{0},
};
static const struct cmd top_cmds[] = {
	{.name = "machine",
	 .aliases = vm_aliases,
	 .summary = "Manage machines",
	 .subs = machine_cmds},
	{.name = "network", .summary = "Manage networks", .subs = network_cmds},
	{.name = "volume", .summary = "Manage volumes", .subs = volume_cmds},
	{.name = "completion", .summary = "Print a completion script", .max_args = 1},
	{.name = "__complete", .summary = "Names for completion", .hidden = true, .max_args = 1},
	{.name = "secret", .summary = "Hidden group", .hidden = true, .subs = secret_cmds},
	{0},
};
static const struct cmd test_root = {
	.name = "sistemo",
	.summary = "microVM manager",
	.flags = root_flags,
	.subs = top_cmds,
};

/* --- fixture: a directory with the scripts and a stand-in `sistemo` ------------------------- */

struct fixture {
	char dir[64];
	char prog[128];
	char script[128];
};

static const char fake_prog[] = "#!/bin/sh\n"
				"pre=\n"
				"if [ \"$1\" = --data-dir ]; then pre=\"$2-\"; shift 2; fi\n"
				"[ \"$1\" = __complete ] || exit 1\n"
				"echo 'noise on stderr' >&2\n"
				"case \"$2\" in\n"
				"machines) printf '%sweb\\n%sdb\\n' \"$pre\" \"$pre\" ;;\n"
				"volumes) printf '%sdata\\n' \"$pre\" ;;\n"
				"networks) printf 'backend\\n' ;;\n"
				"esac\n";

static int
file_write(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -1;
	fputs(text, f);
	if (fclose(f) != 0)
		return -1;
	return chmod(path, mode);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/test_completion.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->prog, sizeof(f->prog), "%s/sistemo", f->dir);
	snprintf(f->script, sizeof(f->script), "%s/script", f->dir);
	if (file_write(f->prog, fake_prog, 0755) < 0)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->prog);
	unlink(f->script);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* --- helpers --------------------------------------------------------------------------------- */

/* Generates the script for shell into f->script; returns its text (caller frees). */
static char *
script_write(struct fixture *f, const char *shell)
{
	char *text = NULL;
	size_t len = 0;
	struct err err = {0};
	FILE *mem = open_memstream(&text, &len);

	assert_non_null(mem);
	assert_int_equal(completion_write(&test_root, shell, mem, &err), 0);
	assert_int_equal(err.code, ERR_OK);
	fclose(mem);
	assert_int_equal(file_write(f->script, text, 0644), 0);
	return text;
}

static bool
have(const char *prog)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs cmd and returns its output lines (cut at a tab), sorted and joined by spaces. */
static void
run_sorted(const char *cmd, char *out, size_t size)
{
	char line[256], *lines[64];
	size_t n = 0;
	FILE *p = popen(cmd, "r");

	assert_non_null(p);
	while (n < ARRAY_SIZE(lines) && fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\t\n")] = '\0';
		if (*line)
			lines[n++] = strdup(line);
	}
	assert_int_not_equal(pclose(p), -1); /* a completion function's status means nothing */
	qsort(lines, n, sizeof(lines[0]), cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? " " : "", lines[i]);
		free(lines[i]);
	}
}

/* The words after the program, as one string of single-quoted shell arguments. */
static void
words_quote(const char *const *words, char *out, size_t size)
{
	out[0] = '\0';
	for (; *words; words++)
		snprintf(out + strlen(out), size - strlen(out), " '%s'", *words);
}

/* One completion: the words typed so far (the last one is being completed) and what each
 * shell offers, sorted. NULL for zsh or fish means the same as bash. */
struct probe {
	const char *words[8];
	const char *bash, *zsh, *fish;
};

/* Where nothing else fits, bash (through `complete -o default`) and fish offer the files of the
 * working directory, the fixture's; zsh calls _files. Bash's fallback is readline's, after the
 * function returns, so the probe sees an empty reply. */
#define FILES "script sistemo"

static const struct probe probes[] = {
	{.words = {""}, .bash = "completion machine network vm volume"},
	{.words = {"ma"}, .bash = "machine"},
	{.words = {"vm", "l"}, .bash = "list ls"},
	{.words = {"machine", ""}, .bash = "delete deploy exec list ls remove rm volume"},
	{.words = {"machine", "deploy", "--"},
	 .bash = "--data-dir --expose --memory --name --output --yes"},
	{.words = {"network", "--"}, .bash = "--data-dir --output"},
	{.words = {"-o", ""}, .bash = "json text"},
	{.words = {"--output", "j"}, .bash = "json"},
	{.words = {"machine", "delete", ""}, .bash = "db web"},
	{.words = {"vm", "rm", "web", "d"}, .bash = "db"},
	{.words = {"--data-dir", "/x", "machine", "rm", ""}, .bash = "/x-db /x-web"},
	{.words = {"machine", "exec", "w"}, .bash = "web"},
	{.words = {"machine", "exec", "web", ""}, .bash = "", .zsh = "_files", .fish = FILES},
	{.words = {"machine", "exec", "web", "-"}, .bash = "", .zsh = "_files"},
	{.words = {"machine", "volume", "attach", "web", ""}, .bash = "data"},
	{.words = {"machine", "volume", "attach", "--", "web", ""}, .bash = "data"},
	{.words = {"volume", "resize", ""}, .bash = "data"},
	{.words = {"volume", "resize", "data", ""}, .bash = "", .zsh = "_files", .fish = FILES},
	{.words = {"network", "delete", "b"}, .bash = "backend"},
	{.words = {"__"}, .bash = ""},
	{.words = {"secret", ""}, .bash = "", .zsh = "_files", .fish = FILES},
	{.words = {"machine", "deploy", "--name", ""}, .bash = "", .zsh = "_files", .fish = FILES},
	{.words = {"machine", "deploy", "--name", "x", "--y"}, .bash = "--yes"},
};

/* --- content --------------------------------------------------------------------------------- */

static void
test_unknown_shell(void **state)
{
	struct err err = {0};
	char buf[16];
	FILE *mem = fmemopen(buf, sizeof(buf), "w");

	(void)state;
	assert_true(completion_write(&test_root, "tcsh", mem, &err) < 0);
	assert_int_equal(err.code, ERR_INVALID);
	assert_string_equal(err.msg, "unknown shell 'tcsh': use bash, zsh or fish");
	fclose(mem);
}

static void
test_unsafe_table(void **state)
{
	static const struct cmd bad_subs[] = {{.name = "a'b"}, {0}};
	static const struct cmd bad_root = {.name = "sistemo", .subs = bad_subs};
	static const struct cmd bad_kind_subs[] = {{.name = "x", .complete = "$(evil)"}, {0}};
	static const struct cmd bad_kind = {.name = "sistemo", .subs = bad_kind_subs};
	struct err err = {0};
	FILE *null = fopen("/dev/null", "we");

	(void)state;
	assert_true(completion_write(&bad_root, "bash", null, &err) < 0);
	assert_int_equal(err.code, ERR_INTERNAL);
	assert_non_null(strstr(err.msg, "'a'b'"));
	err_clear(&err);
	assert_true(completion_write(&bad_kind, "fish", null, &err) < 0);
	assert_int_equal(err.code, ERR_INTERNAL);
	fclose(null);
}

static void
test_bash_content(void **state)
{
	static const char *const wanted[] = {
		"sistemo completion bash > /etc/bash_completion.d/sistemo\n",
		"source <(sistemo completion bash)",
		"_sistemo()\n{\n",
		"complete -o default -F _sistemo sistemo\n",
		"'/machine'|'/vm') _sistemo_path='machine' ;;",
		"'machine/delete'|'machine/rm'|'machine/remove') _sistemo_path='machine delete' ;;",
		"'machine volume/attach') _sistemo_path='machine volume attach' ;;",
		"_sistemo_subs='machine vm network volume completion'",
		"_sistemo_flags='--data-dir --output -o'",
		"_sistemo_flags+=' --name --memory --expose --yes -y'",
		"'machine deploy/--name') return 0 ;;",
		"*/--output|*/-o) return 0 ;;",
		"--output|-o) _sistemo_vals='text json' ;;",
		"--data-dir) return 0 ;;",
		"_sistemo_kinds='machines'\n\t\t_sistemo_repeat=1\n",
		"_sistemo_kinds='machines volumes'",
		"_sistemo_raw=1",
		"__complete \"$kind\" 2>/dev/null",
	};
	struct fixture *f = *state;
	char *text = script_write(f, "bash");

	for (size_t i = 0; i < ARRAY_SIZE(wanted); i++)
		if (!strstr(text, wanted[i]))
			fail_msg("bash script lacks: %s", wanted[i]);
	assert_null(strstr(text, "secret"));
	assert_null(strstr(text, "inner"));
	assert_null(strstr(text, "debug"));
	assert_null(strstr(text, "'/__complete'"));
	assert_int_equal(strncmp(text, "# bash completion for sistemo", 29), 0);
	free(text);
}

static void
test_zsh_fish_content(void **state)
{
	struct fixture *f = *state;
	char *zsh = script_write(f, "zsh"), *fish = script_write(f, "fish");

	assert_int_equal(strncmp(zsh, "#compdef sistemo\n# zsh completion", 33), 0);
	assert_non_null(strstr(zsh, "compdef _sistemo sistemo\n"));
	assert_non_null(strstr(zsh, "'deploy:Deploy: a machine from an image'"));
	assert_non_null(strstr(zsh, "'--expose:publish a port: it'\\''s HOST:MACHINE'"));
	assert_null(strstr(zsh, "secret"));
	assert_int_equal(strncmp(fish, "# fish completion for sistemo", 29), 0);
	assert_non_null(strstr(fish, "~/.config/fish/completions/sistemo.fish"));
	assert_non_null(strstr(fish, "complete -c sistemo -f -n '__sistemo_sub_at \"\"' -a 'vm' "
				     "-d 'Manage machines'\n"));
	assert_non_null(strstr(fish, "-n '__sistemo_pos \"machine delete\" 0 more' "
				     "-a '(__sistemo_dynamic machines)'"));
	assert_non_null(strstr(fish, "-s o -l output -x -a 'text json'"));
	assert_non_null(strstr(fish, "-d 'don\\'t ask \\\\ confirm'"));
	assert_null(strstr(fish, "secret"));
	free(zsh);
	free(fish);
}

static void
test_default_globals(void **state)
{
	static const struct cmd bare_root = {.name = "sistemo", .subs = top_cmds};
	char *text = NULL;
	size_t len = 0;
	struct err err = {0};
	FILE *mem = open_memstream(&text, &len);

	(void)state;
	assert_int_equal(completion_write(&bare_root, "bash", mem, &err), 0);
	fclose(mem);
	assert_non_null(
		strstr(text, "_sistemo_flags='--data-dir --output -o --help -h --version -v'"));
	assert_non_null(strstr(text, "--output|-o) _sistemo_vals='text json' ;;"));
	assert_non_null(strstr(text, "--data-dir) return 0 ;;"));
	free(text);
}

/* --- syntax and behaviour in each shell ------------------------------------------------------ */

static void
syntax_check(struct fixture *f, const char *shell)
{
	char cmd[256];

	if (!have(shell))
		skip();
	free(script_write(f, shell));
	snprintf(cmd, sizeof(cmd), "%s -n '%s'", shell, f->script);
	assert_int_equal(system(cmd), 0);
}

static void
test_bash_syntax(void **state)
{
	syntax_check(*state, "bash");
}

static void
test_zsh_syntax(void **state)
{
	syntax_check(*state, "zsh");
}

static void
test_fish_syntax(void **state)
{
	syntax_check(*state, "fish");
}

static void
probe_bash(struct fixture *f, const struct probe *p, char *out, size_t size)
{
	char cmd[1024], words[512];

	words_quote(p->words, words, sizeof(words));
	snprintf(cmd, sizeof(cmd),
		 "bash --norc -c 'source \"$0\"; COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); "
		 "_sistemo; printf \"%%s\\n\" \"${COMPREPLY[@]}\"' '%s' '%s'%s",
		 f->script, f->prog, words);
	run_sorted(cmd, out, size);
}

/* zsh's completion builtins replaced by stand-ins that print what would be offered. */
static const char zsh_stubs[] =
	"compadd() { local -a c; if [[ $1 == -a ]]; then c=(\"${(@P)2}\"); else shift; c=(\"$@\");"
	" fi; for x in $c; do [[ $x == ${PREFIX}* ]] && print -r -- $x; done; };"
	"_describe() { local -a c; c=(\"${(@P)4}\"); for x in $c; do x=${x%%:*};"
	" [[ $x == ${PREFIX}* ]] && print -r -- $x; done; };"
	"_files() { print _files; }; compset() { PREFIX=${PREFIX#*=}; }; compdef() { :; };";

static void
probe_zsh(struct fixture *f, const struct probe *p, char *out, size_t size)
{
	char cmd[2048], words[512];

	words_quote(p->words, words, sizeof(words));
	snprintf(cmd, sizeof(cmd),
		 "zsh -f -c '%s source \"$0\"; words=(\"$@\"); CURRENT=$#; "
		 "PREFIX=${words[CURRENT]}; _sistemo' '%s' '%s'%s",
		 zsh_stubs, f->script, f->prog, words);
	run_sorted(cmd, out, size);
}

static void
probe_fish(struct fixture *f, const struct probe *p, char *out, size_t size)
{
	char cmd[1024], line[512] = "";

	for (size_t i = 0; p->words[i]; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s", p->words[i]);
	snprintf(
		cmd, sizeof(cmd),
		"cd '%s' && fish --no-config -c 'source $argv[1]; complete -C$argv[2]' '%s' '%s%s'",
		f->dir, f->script, f->prog, line);
	run_sorted(cmd, out, size);
}

static void
probes_run(struct fixture *f, const char *shell,
	   void (*probe)(struct fixture *, const struct probe *, char *, size_t))
{
	char got[1024];

	if (!have(shell))
		skip();
	free(script_write(f, shell));
	for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
		const struct probe *p = &probes[i];
		const char *want = streq(shell, "zsh") && p->zsh     ? p->zsh
				   : streq(shell, "fish") && p->fish ? p->fish
								     : p->bash;
		probe(f, p, got, sizeof(got));
		if (!streq(got, want))
			fail_msg("%s, probe %zu (... '%s'): got '%s', want '%s'", shell, i,
				 p->words[0], got, want);
	}
}

static void
test_bash_completes(void **state)
{
	probes_run(*state, "bash", probe_bash);
}

static void
test_zsh_completes(void **state)
{
	probes_run(*state, "zsh", probe_zsh);
}

static void
test_fish_completes(void **state)
{
	probes_run(*state, "fish", probe_fish);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_shell),
		cmocka_unit_test(test_unsafe_table),
		cmocka_unit_test(test_default_globals),
		cmocka_unit_test_setup_teardown(test_bash_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zsh_fish_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bash_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zsh_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fish_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bash_completes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zsh_completes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fish_completes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
