/* service (systemd unit) and admin commands. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "macro.h"
#include "service.h"

static int
run_service_install(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return err_set(&err, ERR_INTERNAL, NULL, errno, "find this binary: %s",
			       strerror(errno)),
		       cli_fail(cli, &err);
	exe[n] = '\0';
	if (paths_init(&cli->paths, cli->data_dir, &err) < 0 ||
	    service_install(exe, cli->paths.data_dir, !cli_flag_set(a, "no-start"), &err) < 0)
		return cli_fail(cli, &err);
	printf("sistemo service installed%s\n",
	       cli_flag_set(a, "no-start") ? " (not started)" : " and started");
	return 0;
}

static int
run_service_uninstall(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};

	(void)a;
	if (service_uninstall(&err) < 0)
		return cli_fail(cli, &err);
	printf("sistemo service removed\n");
	return 0;
}

static int
run_service_status(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};

	(void)a;
	int r = service_status(&err);
	return r < 0 ? cli_fail(cli, &err) : r;
}

static int
run_service_logs(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};

	if (paths_init(&cli->paths, cli->data_dir, &err) < 0)
		return cli_fail(cli, &err);
	int r = service_logs(!cli_flag_set(a, "no-follow"), cli->paths.data_dir, &err);
	return r < 0 ? cli_fail(cli, &err) : r;
}

static const struct flag install_flags[] = {
	{"no-start", 0, FLAG_BOOL, NULL, "only write the unit file", NULL},
	{0},
};
static const struct flag logs_flags[] = {
	{"no-follow", 0, FLAG_BOOL, NULL, "print and exit instead of following", NULL},
	{0},
};

const struct cmd service_cmds[] = {
	{.name = "install",
	 .local = true,
	 .examples = "  sistemo service install\n  sistemo service install --no-start\n",
	 .flags = install_flags,
	 .summary = "Write /etc/systemd/system/sistemo.service, enable and start it",
	 .run = run_service_install},
	{.name = "uninstall",
	 .local = true,
	 .examples = "  sistemo service uninstall\n",
	 .summary = "Stop, disable and remove the unit",
	 .run = run_service_uninstall},
	{.name = "status",
	 .local = true,
	 .examples = "  sistemo service status\n",
	 .summary = "systemctl status sistemo",
	 .run = run_service_status},
	{.name = "logs",
	 .local = true,
	 .examples = "  sistemo service logs\n  sistemo service logs --no-follow\n",
	 .flags = logs_flags,
	 .summary = "Follow the daemon's journal",
	 .run = run_service_logs},
	{0},
};

static int
run_reset_password(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ResetPasswordRequest req = SISTEMO__V1__RESET_PASSWORD_REQUEST__INIT;
	Sistemo__V1__Empty *r = NULL;
	char *pw = NULL;

	if (isatty(0))
		pw = getpass("New password (8-72 characters): ");
	req.username = (char *)(cli_flag(a, "username") ?: "admin");
	req.password = pw ? pw : "";
	STUB(c, sistemo__v1__system__reset_password, SVC_SYSTEM, Sistemo__V1__Empty, &req, &r);
	return cmd_finish(cli, c, r, NULL);
}

static const struct flag reset_flags[] = {
	{"username", 'u', FLAG_STRING, "NAME", "the account", "admin"},
	{0},
};

const struct cmd admin_cmds[] = {
	{.name = "reset-password",
	 .examples = "  sistemo admin reset-password\n  sistemo admin reset-password -u ops\n",
	 .flags = reset_flags,
	 .summary = "Set a new dashboard password (asked without echo)",
	 .run = run_reset_password},
	{0},
};
