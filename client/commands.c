/* The root of the command table: Sistemo's command surface. Groups keep their subcommands in
 * cmd_<group>.c; the top-level commands run from cmd_system.c. */
#include "cmd.h"

static const char *const machine_aliases[] = {"vm", NULL};
static const char *const up_aliases[] = {"daemon", NULL};

static const struct flag up_flags[] = {
	{"detach", 'd', FLAG_BOOL, NULL, "run in the background; return once the daemon listens",
	 NULL},
	{"log-file", 0, FLAG_STRING, "PATH", "log file when detached", "<data dir>/sistemo.log"},
	{0},
};

static const struct flag install_flags[] = {
	{"upgrade", 0, FLAG_BOOL, NULL, "rebuild the guest kit even when present", NULL},
	{0},
};

static const struct flag history_flags[] = {
	{"limit", 'n', FLAG_STRING, "N", "entries to show (1-1000)", "20"},
	{"action", 0, FLAG_STRING, "ACTION", "only this action, e.g. machine.deploy", NULL},
	{"target", 0, FLAG_STRING, "NAME", "only entries about this name or id", NULL},
	{0},
};

static const struct cmd root_subs[] = {
	{.name = "up",
	 .local = true,
	 .aliases = up_aliases,
	 .summary = "Run the sistemo daemon (as root)",
	 .description = "Runs the daemon in the foreground (systemd: 'sistemo service install'),\n"
			"or in the background with --detach. One daemon per data directory.",
	 .examples = "  sistemo up\n  sistemo up --detach --data-dir /srv/sistemo\n",
	 .flags = up_flags,
	 .run = run_up},
	{.name = "install",
	 .local = true,
	 .summary = "Prepare the data directory and the guest kit",
	 .flags = install_flags,
	 .run = run_install,
	 .examples = "  sistemo install\n"},
	{.name = "version",
	 .local = true,
	 .examples = "  sistemo version\n  sistemo --version -o json\n",
	 .summary = "Print the CLI and daemon versions",
	 .run = run_version},
	{.name = "doctor",
	 .examples = "  sistemo doctor\n  sistemo doctor -o json\n",
	 .summary = "Check that this host can run machines",
	 .run = run_doctor,
	 .description = "Asks the daemon to check KVM, VMM binaries, the data directory, the\n"
			"database, config, disk and memory. Exits non-zero if a check fails."},
	{.name = "config",
	 .local = true,
	 .examples = "  sistemo config\n  sistemo config -o json\n",
	 .summary = "Print the effective configuration (config.yml + env)",
	 .run = run_config},
	{.name = "history",
	 .summary = "Show the audit history of changes",
	 .flags = history_flags,
	 .run = run_history,
	 .examples = "  sistemo history --limit 50\n  sistemo history --action machine.deploy\n"},
	{.name = "completion",
	 .local = true,
	 .usage = "bash|zsh|fish",
	 .min_args = 1,
	 .max_args = 1,
	 .summary = "Print a shell completion script",
	 .run = run_completion,
	 .examples = "  source <(sistemo completion bash)\n"
		     "  sistemo completion zsh > \"${fpath[1]}/_sistemo\"\n"
		     "  sistemo completion fish > ~/.config/fish/completions/sistemo.fish\n"},
	{.name = "ssh-key",
	 .examples = "  sistemo ssh-key >> ~/.ssh/authorized_keys\n",
	 .summary = "Print the public SSH key sistemo puts in machines",
	 .run = run_ssh_key},
	{.name = "machine",
	 .aliases = machine_aliases,
	 .summary = "Deploy and manage machines",
	 .subs = machine_cmds},
	{.name = "network",
	 .summary = "Manage networks, exposed ports and rules",
	 .subs = network_cmds},
	{.name = "volume", .summary = "Manage persistent volumes", .subs = volume_cmds},
	{.name = "image",
	 .summary = "Manage images: list, pull, build, import",
	 .subs = image_cmds},
	{.name = "system", .summary = "Daemon and host information", .subs = system_cmds},
	{.name = "kernel", .summary = "Build the guest kernel", .subs = kernel_cmds},
	{.name = "service",
	 .summary = "Install the daemon as a systemd service",
	 .subs = service_cmds},
	{.name = "admin", .summary = "Dashboard administrator account", .subs = admin_cmds},
	{.name = "__complete",
	 .local = true,
	 .usage = "machines|networks|volumes|images",
	 .min_args = 1,
	 .max_args = 1,
	 .hidden = true,
	 .summary = "List names for shell completion",
	 .run = run_complete_hidden},
	{0},
};

const struct cmd cli_root = {
	.name = "sistemo",
	.summary = "sistemo runs lightweight virtual machines on this host",
	.description = "One binary: 'sistemo up' runs the root daemon; every other command is a\n"
		       "client that talks to it over its socket (<data dir>/run/sistemo.sock).",
	.examples = "  sistemo up --detach\n"
		    "  sistemo machine deploy debian --name web --expose 80\n"
		    "  sistemo machine list -o json\n",
	.subs = root_subs,
};
