#include "completion.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "macro.h"

/* Longest path of command names ("machine volume attach"); bounds the depth of the walk. */
#define PATH_SIZE 256
#define KINDS_MAX 8

enum shell { SHELL_BASH, SHELL_ZSH, SHELL_FISH };

struct gen {
	FILE *out;
	const struct cmd *root;
	const struct flag *globals; /* offered under every command */
	struct err *err;
};

/* Called for every visible command with its path of names ("" for the root); < 0 stops. */
typedef int (*node_fn)(struct gen *g, const struct cmd *c, const char *path);

/* Flags whose values are a fixed list. */
static const struct {
	const char *flag;
	const char *values;
} flag_values[] = {
	{"output", "text json"},
};

/* Global flags passed on to `__complete`: they change where the names come from. */
static const char *const forwarded_flags[] = {"data-dir"};

/* A cmd's `complete` field parsed: "machines,volumes" or "machines..." (repeat the last). */
struct kinds {
	char buf[128];
	const char *name[KINDS_MAX];
	size_t n;
	bool repeat;
};

/* The fixed parts of the scripts; the generated helpers (_sistemo_sub, _sistemo_node...) map a
 * command path and a word to what the table says. */
static const char *const bash_main[] = {
	"_sistemo()",
	"{",
	"\tlocal cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"",
	"\tlocal _sistemo_path='' _sistemo_subs _sistemo_flags _sistemo_kinds _sistemo_repeat",
	"\tlocal _sistemo_raw _sistemo_vals i w v flag kind prog name npos=0 opts=1",
	"\tlocal -a pass=() kinds=()",
	"\tCOMPREPLY=()",
	"\tfor ((i = 1; i < COMP_CWORD; i++)); do",
	"\t\tw=\"${COMP_WORDS[i]}\" v=''",
	"\t\tif ((opts)) && [[ $w == -?* ]]; then",
	"\t\t\tif [[ $w == -- ]]; then",
	"\t\t\t\topts=0",
	"\t\t\telif [[ ${COMP_WORDS[i+1]} == = ]]; then",
	"\t\t\t\tv=\"${COMP_WORDS[i+2]}\" i=$((i + 2))",
	"\t\t\telif [[ $w == *=* ]]; then",
	"\t\t\t\tv=\"${w#*=}\" w=\"${w%%=*}\"",
	"\t\t\telif _sistemo_value_flag \"$_sistemo_path\" \"$w\"; then",
	"\t\t\t\tv=\"${COMP_WORDS[i+1]}\" i=$((i + 1))",
	"\t\t\tfi",
	"\t\t\t[[ $v == '~/'* ]] && v=\"$HOME/${v:2}\"",
	"\t\t\t_sistemo_forward \"$w\" && pass+=(\"$w\" \"$v\")",
	"\t\t\tcontinue",
	"\t\tfi",
	"\t\t((npos == 0)) && _sistemo_sub \"$_sistemo_path\" \"$w\" && continue",
	"\t\tnpos=$((npos + 1))",
	"\t\t_sistemo_node \"$_sistemo_path\"",
	"\t\t((_sistemo_raw)) && opts=0",
	"\tdone",
	"\t_sistemo_node \"$_sistemo_path\"",
	"\tflag=\"$prev\"",
	"\t[[ $cur == = ]] && cur=''",
	"\t[[ $prev == = ]] && flag=\"${COMP_WORDS[COMP_CWORD-2]}\"",
	"\tif ((opts)) && [[ $flag == -?* ]] &&",
	"\t\t_sistemo_value_flag \"$_sistemo_path\" \"$flag\"; then",
	"\t\t_sistemo_values \"$flag\" && COMPREPLY=($(compgen -W \"$_sistemo_vals\" -- \"$cur\"))",
	"\t\treturn 0",
	"\tfi",
	"\tif ((opts)) && [[ $cur == -* ]]; then",
	"\t\tCOMPREPLY=($(compgen -W \"$_sistemo_flags\" -- \"$cur\"))",
	"\t\treturn 0",
	"\tfi",
	"\tif ((npos == 0)) && [[ -n $_sistemo_subs ]]; then",
	"\t\tCOMPREPLY=($(compgen -W \"$_sistemo_subs\" -- \"$cur\"))",
	"\t\treturn 0",
	"\tfi",
	"\tkinds=($_sistemo_kinds)",
	"\tkind=\"${kinds[npos]}\"",
	"\tif [[ -z $kind ]] && ((_sistemo_repeat && ${#kinds[@]} > 0)); then",
	"\t\tkind=\"${kinds[${#kinds[@]}-1]}\"",
	"\tfi",
	"\t[[ -n $kind ]] || return 0",
	"\tcompopt +o default 2>/dev/null",
	"\tprog=\"${COMP_WORDS[0]}\"",
	"\t[[ $prog == '~/'* ]] && prog=\"$HOME/${prog:2}\"",
	"\t# The names come from the program itself; they are matched, never evaluated.",
	"\twhile IFS= read -r name; do",
	"\t\t[[ $name == \"$cur\"* ]] && COMPREPLY+=(\"$name\")",
	"\tdone < <(\"$prog\" \"${pass[@]}\" __complete \"$kind\" 2>/dev/null)",
	"\treturn 0",
	"}",
	"",
	NULL,
};

static const char *const zsh_main[] = {
	"_sistemo()",
	"{",
	"\tlocal _sistemo_path='' _sistemo_kinds _sistemo_repeat _sistemo_raw _sistemo_vals",
	"\tlocal cur=\"${words[CURRENT]}\" prev=\"${words[CURRENT-1]}\" w v kind prog",
	"\tlocal -a _sistemo_subdescs _sistemo_flagdescs pass kinds names",
	"\tinteger i=2 npos=0 opts=1",
	"\twhile (( i < CURRENT )); do",
	"\t\tw=\"${words[i]}\" v=''",
	"\t\tif (( opts )) && [[ $w == -?* ]]; then",
	"\t\t\tif [[ $w == -- ]]; then",
	"\t\t\t\topts=0",
	"\t\t\telif [[ $w == *=* ]]; then",
	"\t\t\t\tv=\"${w#*=}\" w=\"${w%%=*}\"",
	"\t\t\telif _sistemo_value_flag \"$_sistemo_path\" \"$w\"; then",
	"\t\t\t\ti+=1",
	"\t\t\t\tv=\"${words[i]}\"",
	"\t\t\tfi",
	"\t\t\t[[ $v == '~/'* ]] && v=\"$HOME/${v:2}\"",
	"\t\t\t_sistemo_forward \"$w\" && pass+=(\"$w\" \"$v\")",
	"\t\telif (( npos == 0 )) && _sistemo_sub \"$_sistemo_path\" \"$w\"; then",
	"\t\t\t:",
	"\t\telse",
	"\t\t\tnpos+=1",
	"\t\t\t_sistemo_node \"$_sistemo_path\"",
	"\t\t\t(( _sistemo_raw )) && opts=0",
	"\t\tfi",
	"\t\ti+=1",
	"\tdone",
	"\t_sistemo_node \"$_sistemo_path\"",
	"\tif (( opts )) && [[ $cur == -?*=* ]]; then",
	"\t\tw=\"${cur%%=*}\"",
	"\t\tcompset -P '*='",
	"\t\tif _sistemo_values \"$w\"; then compadd -- ${=_sistemo_vals}; else _files; fi",
	"\t\treturn",
	"\tfi",
	"\tif (( opts )) && [[ $prev == -?* ]] &&",
	"\t\t_sistemo_value_flag \"$_sistemo_path\" \"$prev\"; then",
	"\t\tif _sistemo_values \"$prev\"; then compadd -- ${=_sistemo_vals}; else _files; fi",
	"\t\treturn",
	"\tfi",
	"\tif (( opts )) && [[ $cur == -* ]]; then",
	"\t\t_describe -t options 'option' _sistemo_flagdescs",
	"\t\treturn",
	"\tfi",
	"\tif (( npos == 0 && ${#_sistemo_subdescs} )); then",
	"\t\t_describe -t commands 'command' _sistemo_subdescs",
	"\t\treturn",
	"\tfi",
	"\tkinds=(${=_sistemo_kinds})",
	"\tkind=\"${kinds[npos+1]}\"",
	"\tif [[ -z $kind ]] && (( _sistemo_repeat && ${#kinds} )); then",
	"\t\tkind=\"${kinds[-1]}\"",
	"\tfi",
	"\tif [[ -z $kind ]]; then",
	"\t\t_files",
	"\t\treturn",
	"\tfi",
	"\tprog=\"${words[1]}\"",
	"\t[[ $prog == '~/'* ]] && prog=\"$HOME/${prog:2}\"",
	"\tnames=(${(f)\"$(\"$prog\" \"${pass[@]}\" __complete \"$kind\" 2>/dev/null)\"})",
	"\tcompadd -a names",
	"}",
	"",
	NULL,
};

static const char *const fish_main[] = {
	"# Where the command line stands: command path, positionals after it, whether options are",
	"# still read, and the flags that __complete must see too.",
	"# Every condition asks, so the answer is kept for the same words.",
	"function __sistemo_state",
	"\tset -l words (commandline -opc)",
	"\tset -l key (string join ' ' -- (string escape -- $words))",
	"\tset -q __sistemo_key; and test \"$key\" = \"$__sistemo_key\"; and return",
	"\tset -g __sistemo_key $key",
	"\tset -g __sistemo_path ''",
	"\tset -g __sistemo_npos 0",
	"\tset -g __sistemo_opts 1",
	"\tset -g __sistemo_pass",
	"\tset -e words[1]",
	"\tset -l pending",
	"\tset -l next",
	"\tfor w in $words",
	"\t\tif set -q pending[1]",
	"\t\t\t__sistemo_forward $pending; and set -a __sistemo_pass $pending $w",
	"\t\t\tset pending",
	"\t\t\tcontinue",
	"\t\tend",
	"\t\tif test $__sistemo_opts = 1; and string match -qr -- '^-.' $w",
	"\t\t\tif string match -q -- '--' $w",
	"\t\t\t\tset __sistemo_opts 0",
	"\t\t\telse if string match -q -- '*=*' $w",
	"\t\t\t\tset -l kv (string split -m 1 = -- $w)",
	"\t\t\t\t__sistemo_forward $kv[1]; and set -a __sistemo_pass $kv",
	"\t\t\telse if __sistemo_value_flag \"$__sistemo_path\" $w",
	"\t\t\t\tset pending $w",
	"\t\t\tend",
	"\t\t\tcontinue",
	"\t\tend",
	"\t\tif test $__sistemo_npos = 0",
	"\t\t\tset next (__sistemo_sub \"$__sistemo_path\" $w)",
	"\t\t\tif set -q next[1]",
	"\t\t\t\tset __sistemo_path $next",
	"\t\t\t\tcontinue",
	"\t\t\tend",
	"\t\tend",
	"\t\tset __sistemo_npos (math $__sistemo_npos + 1)",
	"\t\t__sistemo_raw \"$__sistemo_path\"; and set __sistemo_opts 0",
	"\tend",
	"end",
	"",
	"function __sistemo_sub_at",
	"\t__sistemo_state",
	"\ttest \"$__sistemo_path\" = \"$argv[1]\"; and test $__sistemo_npos = 0",
	"end",
	"",
	"function __sistemo_flag_at",
	"\t__sistemo_state",
	"\ttest \"$__sistemo_path\" = \"$argv[1]\"; and test $__sistemo_opts = 1",
	"end",
	"",
	"function __sistemo_opts_on",
	"\t__sistemo_state",
	"\ttest $__sistemo_opts = 1",
	"end",
	"",
	"# __sistemo_pos PATH N [more]: completing positional N (or any after it) of PATH.",
	"function __sistemo_pos",
	"\t__sistemo_state",
	"\ttest \"$__sistemo_path\" = \"$argv[1]\"; or return 1",
	"\tif set -q argv[3]",
	"\t\ttest $__sistemo_npos -ge $argv[2]",
	"\telse",
	"\t\ttest $__sistemo_npos = $argv[2]",
	"\tend",
	"end",
	"",
	"function __sistemo_dynamic",
	"\t__sistemo_state",
	"\tset -l prog (commandline -opc)[1]",
	"\tset prog (string replace -r '^~/' \"$HOME/\" -- $prog)",
	"\tcommand -q -- $prog; or return 0",
	"\t$prog $__sistemo_pass __complete $argv[1] 2>/dev/null",
	"end",
	NULL,
};

static bool
word_safe(const char *s)
{
	if (!s || !*s || *s == '-')
		return false;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

static int
kinds_parse(const char *spec, struct kinds *k)
{
	char *save = NULL;
	size_t len = strlen(spec);

	*k = (struct kinds){0};
	if (len >= sizeof(k->buf))
		return -EINVAL;
	memcpy(k->buf, spec, len + 1);
	if (len > 3 && streq(k->buf + len - 3, "...")) {
		k->buf[len - 3] = '\0';
		k->repeat = true;
	}
	for (char *t = strtok_r(k->buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (k->n == KINDS_MAX || !word_safe(t))
			return -EINVAL;
		k->name[k->n++] = t;
	}
	return k->n > 0 ? 0 : -EINVAL;
}

/* The names a command answers to: its name (i == 0), then its aliases; NULL past the end. */
static const char *
cmd_name_at(const struct cmd *c, size_t i)
{
	if (i == 0)
		return c->name;
	for (size_t j = 0; c->aliases && c->aliases[j]; j++)
		if (j == i - 1)
			return c->aliases[j];
	return NULL;
}

static bool
cmd_visible_subs(const struct cmd *c)
{
	for (const struct cmd *s = c->subs; s && s->name; s++)
		if (!s->hidden)
			return true;
	return false;
}

/* The flags offered at c: the root's are the global ones. */
static const struct flag *
node_flags(const struct gen *g, const struct cmd *c)
{
	return c == g->root ? g->globals : c->flags;
}

static const char *
flag_values_get(const struct flag *f)
{
	for (size_t i = 0; i < ARRAY_SIZE(flag_values); i++)
		if (streq(f->name, flag_values[i].flag))
			return flag_values[i].values;
	return NULL;
}

static bool
flag_forwarded(const struct flag *f)
{
	for (size_t i = 0; i < ARRAY_SIZE(forwarded_flags); i++)
		if (streq(f->name, forwarded_flags[i]))
			return true;
	return false;
}

static int
table_fail(struct gen *g, const char *path, const char *what)
{
	return err_set(g->err, ERR_INTERNAL, NULL, EINVAL,
		       "command table: '%s' under '%s' cannot be completed: use letters, digits, "
		       "'-', '_' and '.'",
		       what ? what : "(null)", path);
}

/* Names, flags and kinds end up unquoted in case patterns and word lists: keep them plain. */
static int
node_check(struct gen *g, const struct cmd *c, const char *path)
{
	struct kinds k;

	for (size_t i = 0; cmd_name_at(c, i); i++)
		if (!word_safe(cmd_name_at(c, i)))
			return table_fail(g, path, cmd_name_at(c, i));
	for (const struct flag *f = node_flags(g, c); f && f->name; f++) {
		bool short_ok = (f->shorthand >= 'a' && f->shorthand <= 'z') ||
				(f->shorthand >= 'A' && f->shorthand <= 'Z') ||
				(f->shorthand >= '0' && f->shorthand <= '9') || f->shorthand == 0;
		if (!word_safe(f->name) || !short_ok)
			return table_fail(g, path, f->name);
	}
	if (c->complete && kinds_parse(c->complete, &k) < 0)
		return table_fail(g, path, c->complete);
	return 0;
}

/* Calls fn for c and every visible command under it, depth first. */
static int
walk(struct gen *g, const struct cmd *c, char *path, node_fn fn)
{
	size_t len = strlen(path);
	int r = fn(g, c, path);

	for (const struct cmd *s = c->subs; r >= 0 && s && s->name; s++) {
		if (s->hidden)
			continue;
		int n = snprintf(path + len, PATH_SIZE - len, "%s%s", len ? " " : "",
				 s->name ? s->name : "");
		if (n < 0 || (size_t)n >= PATH_SIZE - len) {
			path[len] = '\0';
			return err_set(g->err, ERR_INTERNAL, NULL, ENAMETOOLONG,
				       "command table: '%s' is nested too deep", path);
		}
		r = walk(g, s, path, fn);
		path[len] = '\0';
	}
	return r;
}

static int
walk_root(struct gen *g, node_fn fn)
{
	char path[PATH_SIZE] = "";

	return walk(g, g->root, path, fn);
}

/* Writes s for a single-quoted string of the shell: control characters become spaces. */
static void
put_quoted(FILE *out, const char *s, enum shell sh)
{
	for (; s && *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			fputc(' ', out);
		else if (*s == '\'' && sh == SHELL_FISH)
			fputs("\\'", out);
		else if (*s == '\\') /* fish unescapes it; so does zsh's _describe */
			fputs("\\\\", out);
		else if (*s == '\'')
			fputs("'\\''", out);
		else
			fputc(*s, out);
	}
}

static void
put_lines(FILE *out, const char *const *lines)
{
	for (; *lines; lines++) {
		fputs(*lines, out);
		fputc('\n', out);
	}
}

/* --- bash and zsh: helpers both shells read -------------------------------------------------- */

/* 'path/name'|'path/alias') _sistemo_path='path name' ;;  (one arm per subcommand) */
static int
sh_sub_arm(struct gen *g, const struct cmd *c, const char *path)
{
	for (const struct cmd *s = c->subs; s && s->name; s++) {
		if (s->hidden)
			continue;
		fputc('\t', g->out);
		for (size_t i = 0; cmd_name_at(s, i); i++)
			fprintf(g->out, "%s'%s/%s'", i ? "|" : "", path, cmd_name_at(s, i));
		fprintf(g->out, ") _sistemo_path='%s%s%s' ;;\n", path, *path ? " " : "", s->name);
	}
	return 0;
}

/* The case patterns of flag f of c: the root's flags hold under every path. */
static void
sh_flag_patterns(struct gen *g, const struct cmd *c, const char *path, const struct flag *f)
{
	if (c == g->root)
		fprintf(g->out, "*/--%s", f->name);
	else
		fprintf(g->out, "'%s/--%s'", path, f->name);
	if (f->shorthand && c == g->root)
		fprintf(g->out, "|*/-%c", f->shorthand);
	else if (f->shorthand)
		fprintf(g->out, "|'%s/-%c'", path, f->shorthand);
}

static int
sh_value_arm(struct gen *g, const struct cmd *c, const char *path)
{
	for (const struct flag *f = node_flags(g, c); f && f->name; f++) {
		if (f->type == FLAG_BOOL)
			continue;
		fputc('\t', g->out);
		sh_flag_patterns(g, c, path, f);
		fputs(") return 0 ;;\n", g->out);
	}
	return 0;
}

static int
sh_values_arm(struct gen *g, const struct cmd *c, const char *path)
{
	(void)path;
	for (const struct flag *f = node_flags(g, c); f && f->name; f++) {
		if (f->type == FLAG_BOOL || !flag_values_get(f))
			continue;
		fprintf(g->out, "\t--%s", f->name);
		if (f->shorthand)
			fprintf(g->out, "|-%c", f->shorthand);
		fprintf(g->out, ") _sistemo_vals='%s' ;;\n", flag_values_get(f));
	}
	return 0;
}

static void
sh_forward_arms(struct gen *g)
{
	for (const struct flag *f = g->globals; f && f->name; f++) {
		if (f->type == FLAG_BOOL || !flag_forwarded(f))
			continue;
		fprintf(g->out, "\t--%s", f->name);
		if (f->shorthand)
			fprintf(g->out, "|-%c", f->shorthand);
		fputs(") return 0 ;;\n", g->out);
	}
}

/* Positional kinds, repeat and raw of a node: shared by the bash and zsh node arms. */
static void
sh_node_tail(struct gen *g, const struct cmd *c)
{
	struct kinds k;

	if (c->complete && kinds_parse(c->complete, &k) == 0) {
		fputs("\t\t_sistemo_kinds='", g->out);
		for (size_t i = 0; i < k.n; i++)
			fprintf(g->out, "%s%s", i ? " " : "", k.name[i]);
		fputs("'\n", g->out);
		if (k.repeat)
			fputs("\t\t_sistemo_repeat=1\n", g->out);
	}
	if (c->raw_args)
		fputs("\t\t_sistemo_raw=1\n", g->out);
}

static void
sh_helpers_write(struct gen *g)
{
	fputs("_sistemo_sub()\n{\n\tcase \"$1/$2\" in\n", g->out);
	walk_root(g, sh_sub_arm);
	fputs("\t*) return 1 ;;\n\tesac\n}\n\n", g->out);
	fputs("_sistemo_value_flag()\n{\n\tcase \"$1/$2\" in\n", g->out);
	walk_root(g, sh_value_arm);
	fputs("\tesac\n\treturn 1\n}\n\n", g->out);
	fputs("_sistemo_values()\n{\n\tcase \"$1\" in\n", g->out);
	walk_root(g, sh_values_arm);
	fputs("\t*) return 1 ;;\n\tesac\n}\n\n", g->out);
	fputs("_sistemo_forward()\n{\n\tcase \"$1\" in\n", g->out);
	sh_forward_arms(g);
	fputs("\tesac\n\treturn 1\n}\n\n", g->out);
}

/* --- bash ------------------------------------------------------------------------------------ */

static void
bash_flag_words(struct gen *g, const struct cmd *c)
{
	for (const struct flag *f = node_flags(g, c); f && f->name; f++) {
		fprintf(g->out, "%s--%s", f == node_flags(g, c) ? "" : " ", f->name);
		if (f->shorthand)
			fprintf(g->out, " -%c", f->shorthand);
	}
}

static int
bash_node_arm(struct gen *g, const struct cmd *c, const char *path)
{
	bool has_flags = c != g->root && c->flags && c->flags->name;

	if (!has_flags && !cmd_visible_subs(c) && !c->complete && !c->raw_args)
		return 0;
	fprintf(g->out, "\t'%s')\n", path);
	if (has_flags) {
		fputs("\t\t_sistemo_flags+=' ", g->out);
		bash_flag_words(g, c);
		fputs("'\n", g->out);
	}
	if (cmd_visible_subs(c)) {
		const char *sep = "";
		fputs("\t\t_sistemo_subs='", g->out);
		for (const struct cmd *s = c->subs; s && s->name; s++) {
			for (size_t i = 0; !s->hidden && cmd_name_at(s, i); i++, sep = " ")
				fprintf(g->out, "%s%s", sep, cmd_name_at(s, i));
		}
		fputs("'\n", g->out);
	}
	sh_node_tail(g, c);
	fputs("\t\t;;\n", g->out);
	return 0;
}

static void
bash_write(struct gen *g)
{
	fprintf(g->out,
		"# bash completion for %1$s, generated by '%1$s completion bash'.\n"
		"# Install for every user: %1$s completion bash > /etc/bash_completion.d/%1$s\n"
		"# or for yourself, in ~/.bashrc: source <(%1$s completion bash)\n\n",
		g->root->name);
	sh_helpers_write(g);
	fputs("_sistemo_node()\n{\n\t_sistemo_subs='' _sistemo_flags='", g->out);
	bash_flag_words(g, g->root);
	fputs("'\n\t_sistemo_kinds='' _sistemo_repeat=0 _sistemo_raw=0\n", g->out);
	fputs("\tcase \"$1\" in\n", g->out);
	walk_root(g, bash_node_arm);
	fputs("\tesac\n}\n\n", g->out);
	put_lines(g->out, bash_main);
	fprintf(g->out, "complete -o default -F _sistemo %s\n", g->root->name);
}

/* --- zsh ------------------------------------------------------------------------------------- */

/* '--name:help' '-n:help' for every flag of c. */
static void
zsh_flag_descs(struct gen *g, const struct cmd *c)
{
	for (const struct flag *f = node_flags(g, c); f && f->name; f++) {
		fprintf(g->out, " '--%s:", f->name);
		put_quoted(g->out, f->help, SHELL_ZSH);
		fputc('\'', g->out);
		if (!f->shorthand)
			continue;
		fprintf(g->out, " '-%c:", f->shorthand);
		put_quoted(g->out, f->help, SHELL_ZSH);
		fputc('\'', g->out);
	}
}

static int
zsh_node_arm(struct gen *g, const struct cmd *c, const char *path)
{
	bool has_flags = c != g->root && c->flags && c->flags->name;

	if (!has_flags && !cmd_visible_subs(c) && !c->complete && !c->raw_args)
		return 0;
	fprintf(g->out, "\t'%s')\n", path);
	if (has_flags) {
		fputs("\t\t_sistemo_flagdescs+=(", g->out);
		zsh_flag_descs(g, c);
		fputs(" )\n", g->out);
	}
	if (cmd_visible_subs(c)) {
		fputs("\t\t_sistemo_subdescs=(", g->out);
		for (const struct cmd *s = c->subs; s && s->name; s++) {
			for (size_t i = 0; !s->hidden && cmd_name_at(s, i); i++) {
				fprintf(g->out, " '%s:", cmd_name_at(s, i));
				put_quoted(g->out, s->summary, SHELL_ZSH);
				fputc('\'', g->out);
			}
		}
		fputs(" )\n", g->out);
	}
	sh_node_tail(g, c);
	fputs("\t\t;;\n", g->out);
	return 0;
}

static void
zsh_write(struct gen *g)
{
	fprintf(g->out,
		"#compdef %1$s\n"
		"# zsh completion for %1$s, generated by '%1$s completion zsh'.\n"
		"# Install: %1$s completion zsh > \"${fpath[1]}/_%1$s\" and start a new shell,\n"
		"# or in ~/.zshrc after compinit: source <(%1$s completion zsh)\n\n",
		g->root->name);
	sh_helpers_write(g);
	fputs("_sistemo_node()\n{\n\t_sistemo_subdescs=()\n\t_sistemo_flagdescs=(", g->out);
	zsh_flag_descs(g, g->root);
	fputs(" )\n\t_sistemo_kinds='' _sistemo_repeat=0 _sistemo_raw=0\n", g->out);
	fputs("\tcase \"$1\" in\n", g->out);
	walk_root(g, zsh_node_arm);
	fputs("\tesac\n}\n\n", g->out);
	put_lines(g->out, zsh_main);
	fprintf(g->out,
		"if [ \"$funcstack[1]\" = \"_sistemo\" ]; then\n\t_sistemo \"$@\"\n"
		"else\n\tcompdef _sistemo %s\nfi\n",
		g->root->name);
}

/* --- fish ------------------------------------------------------------------------------------ */

static int
fish_sub_case(struct gen *g, const struct cmd *c, const char *path)
{
	for (const struct cmd *s = c->subs; s && s->name; s++) {
		if (s->hidden)
			continue;
		fputs("\tcase", g->out);
		for (size_t i = 0; cmd_name_at(s, i); i++)
			fprintf(g->out, " '%s/%s'", path, cmd_name_at(s, i));
		fprintf(g->out, "\n\t\techo '%s%s%s'\n", path, *path ? " " : "", s->name);
	}
	return 0;
}

static int
fish_value_case(struct gen *g, const struct cmd *c, const char *path)
{
	const char *prefix = c == g->root ? "*" : path;

	for (const struct flag *f = node_flags(g, c); f && f->name; f++) {
		if (f->type == FLAG_BOOL)
			continue;
		fprintf(g->out, "\tcase '%s/--%s'", prefix, f->name);
		if (f->shorthand)
			fprintf(g->out, " '%s/-%c'", prefix, f->shorthand);
		fputs("\n\t\treturn 0\n", g->out);
	}
	return 0;
}

static int
fish_raw_case(struct gen *g, const struct cmd *c, const char *path)
{
	if (c->raw_args)
		fprintf(g->out, "\tcase '%s'\n\t\treturn 0\n", path);
	return 0;
}

static void
fish_forward_cases(struct gen *g)
{
	for (const struct flag *f = g->globals; f && f->name; f++) {
		if (f->type == FLAG_BOOL || !flag_forwarded(f))
			continue;
		fprintf(g->out, "\tcase --%s", f->name);
		if (f->shorthand)
			fprintf(g->out, " -%c", f->shorthand);
		fputs("\n\t\treturn 0\n", g->out);
	}
}

/* One switch function: `function NAME` + `switch EXPR` + the cases + `end`, then `return 1`. */
static void
fish_switch_write(struct gen *g, const char *name, const char *expr, node_fn fn)
{
	fprintf(g->out, "function %s\n\tswitch %s\n", name, expr);
	if (fn)
		walk_root(g, fn);
	else
		fish_forward_cases(g);
	fputs("\tend\n\treturn 1\nend\n\n", g->out);
}

static void
fish_flag_line(struct gen *g, const struct cmd *c, const char *path, const struct flag *f)
{
	const char *values = flag_values_get(f);

	fprintf(g->out, "complete -c %s", g->root->name);
	if (c == g->root)
		fputs(" -n __sistemo_opts_on", g->out);
	else
		fprintf(g->out, " -n '__sistemo_flag_at \"%s\"'", path);
	if (f->shorthand)
		fprintf(g->out, " -s %c", f->shorthand);
	fprintf(g->out, " -l %s", f->name);
	if (f->type != FLAG_BOOL && values)
		fprintf(g->out, " -x -a '%s'", values);
	else if (f->type != FLAG_BOOL)
		fputs(" -r", g->out);
	fputs(" -d '", g->out);
	put_quoted(g->out, f->help, SHELL_FISH);
	fputs("'\n", g->out);
}

static void
fish_sub_lines(struct gen *g, const struct cmd *c, const char *path)
{
	for (const struct cmd *s = c->subs; s && s->name; s++) {
		for (size_t i = 0; !s->hidden && cmd_name_at(s, i); i++) {
			fprintf(g->out,
				"complete -c %s -f -n '__sistemo_sub_at \"%s\"' -a '%s' -d '",
				g->root->name, path, cmd_name_at(s, i));
			put_quoted(g->out, s->summary, SHELL_FISH);
			fputs("'\n", g->out);
		}
	}
}

static int
fish_node_lines(struct gen *g, const struct cmd *c, const char *path)
{
	struct kinds k = {0};

	fish_sub_lines(g, c, path);
	for (const struct flag *f = node_flags(g, c); f && f->name; f++)
		fish_flag_line(g, c, path, f);
	if (c->complete && kinds_parse(c->complete, &k) < 0)
		k.n = 0;
	for (size_t i = 0; i < k.n; i++)
		fprintf(g->out,
			"complete -c %s -f -n '__sistemo_pos \"%s\" %zu%s' "
			"-a '(__sistemo_dynamic %s)'\n",
			g->root->name, path, i, k.repeat && i + 1 == k.n ? " more" : "", k.name[i]);
	/* Leaves without positionals complete nothing rather than file names. */
	if (!cmd_visible_subs(c) && k.n == 0 && c->max_args == 0)
		fprintf(g->out, "complete -c %s -f -n '__sistemo_sub_at \"%s\"'\n", g->root->name,
			path);
	return 0;
}

static void
fish_write(struct gen *g)
{
	fprintf(g->out,
		"# fish completion for %1$s, generated by '%1$s completion fish'.\n"
		"# Install: %1$s completion fish > ~/.config/fish/completions/%1$s.fish\n\n",
		g->root->name);
	fish_switch_write(g, "__sistemo_sub", "\"$argv[1]/$argv[2]\"", fish_sub_case);
	fish_switch_write(g, "__sistemo_value_flag", "\"$argv[1]/$argv[2]\"", fish_value_case);
	fish_switch_write(g, "__sistemo_raw", "\"$argv[1]\"", fish_raw_case);
	fish_switch_write(g, "__sistemo_forward", "\"$argv[1]\"", NULL);
	put_lines(g->out, fish_main);
	fputc('\n', g->out);
	walk_root(g, fish_node_lines);
}

/* --- entry ----------------------------------------------------------------------------------- */

int
completion_write(const struct cmd *root, const char *shell, FILE *out, struct err *err)
{
	static const char *const names[] = {
		[SHELL_BASH] = "bash", [SHELL_ZSH] = "zsh", [SHELL_FISH] = "fish"};
	static void (*const writers[])(struct gen *) = {bash_write, zsh_write, fish_write};
	struct gen g = {.out = out, .root = root, .globals = root->flags, .err = err};
	size_t sh = 0;

	while (sh < ARRAY_SIZE(names) && !(shell && streq(shell, names[sh])))
		sh++;
	if (sh == ARRAY_SIZE(names))
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "unknown shell '%s': use bash, zsh or fish", shell ? shell : "");
	if (!g.globals)
		g.globals = cli_global_flags;
	if (walk_root(&g, node_check) < 0)
		return -EINVAL;
	writers[sh](&g);
	if (fflush(out) != 0 || ferror(out))
		return err_set(err, ERR_INTERNAL, NULL, errno, "write the completion script: %s",
			       strerror(errno));
	return 0;
}
