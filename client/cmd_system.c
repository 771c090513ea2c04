/* Top-level and system commands: up, install, version, doctor, config, history, completion,
 * ssh-key, system info, kernel build, service, admin. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "completion.h"
#include "config.h"
#include "daemon.h"
#include "kit.h"
#include "ssh.h"
#include "macro.h"
#include "service.h"
#include "units.h"
#include "watch.h"

int
run_up(struct cli *cli, const struct cmd_args *a)
{
	struct daemon_options o = {
		.data_dir = cli->data_dir,
		.detach = cli_flag_set(a, "detach"),
		.log_file = cli_flag(a, "log-file"),
	};
	return daemon_main(&o);
}

static void
install_progress(void *ud, const char *step, const char *message)
{
	(void)ud;
	fprintf(stderr, "%s: %s\n", step, message);
}

/* The built-in image "tiny", built once (again with --upgrade). */
static int
install_tiny(struct cli *cli, bool force, struct err *err)
{
	char path[PATH_MAX];
	struct stat st;

	if (paths_join(&cli->paths, "images/tiny.ext4", path, sizeof(path)) < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "data dir too long");
	if (!force && stat(path, &st) == 0)
		return 0;
	return kit_image_build("tiny", path, install_progress, NULL, err);
}

int
run_install(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct kit_kernel k;
	struct stat st;
	char ssh_dir[PATH_MAX], image[PATH_MAX];
	bool force = cli_flag_set(a, "upgrade");

	if (geteuid() != 0)
		return err_set(&err, ERR_PERMISSION, NULL, EPERM,
			       "install must run as root (the daemon owns the data dir)"),
		       cli_fail(cli, &err);
	if (paths_init(&cli->paths, cli->data_dir, &err) < 0 ||
	    paths_create_tree(&cli->paths, &err) < 0 ||
	    paths_join(&cli->paths, "ssh", ssh_dir, sizeof(ssh_dir)) < 0 ||
	    ssh_key_ensure(ssh_dir, &err) < 0 ||
	    kit_install(cli->paths.data_dir, force, install_progress, NULL, &err) < 0 ||
	    install_tiny(cli, force, &err) < 0 ||
	    kit_kernel_find(cli->paths.data_dir, &k, &err) < 0)
		return cli_fail(cli, &err);
	printf("data directory: %s\n", cli->paths.data_dir);
	printf("guest kernel:   %s%s%s\n", k.kernel, *k.initrd ? " + " : " (built)",
	       *k.initrd ? k.initrd : "");
	bool debian = paths_join(&cli->paths, "images/debian.ext4", image, sizeof(image)) == 0 &&
		      stat(image, &st) == 0;
	printf("images:         tiny%s\n",
	       debian ? ", debian" : " (debian is built on its first deploy)");
	printf("ssh key:        %s/sistemo_key.pub\n", ssh_dir);
	return 0;
}

int
run_version(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli_client(cli, &err);
	Sistemo__V1__Empty req = SISTEMO__V1__EMPTY__INIT;
	Sistemo__V1__SystemInfo *info = NULL;

	(void)a;
	if (c)
		STUB(c, sistemo__v1__system__info, SVC_SYSTEM, Sistemo__V1__SystemInfo, &req,
		     &info);
	const char *dv = info ? info->version : "";
	const char *why = info ? "" : c ? rpc_client_error(c)->msg : err.msg;
	if (cli->output == OUTPUT_JSON)
		printf("{\n  \"client\": \"%s\",\n  \"daemon\": \"%s\"\n}\n", SISTEMO_VERSION, dv);
	else
		printf("sistemo %s\ndaemon  %s\n", SISTEMO_VERSION, info ? dv : why);
	cmd_free(info);
	return 0;
}

static void
doctor_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__DoctorReply *r = (const void *)m;
	char color[64];

	for (size_t i = 0; i < r->n_checks; i++) {
		const Sistemo__V1__Check *k = r->checks[i];
		const char *st = output_enum(&sistemo__v1__check_status__descriptor, k->status);
		printf("%-14s %-4s  %s\n", k->name,
		       output_state_color(st, cli->stdout_tty, color, sizeof(color)), k->detail);
		if (*k->hint)
			printf("%-14s       -> %s\n", "", k->hint);
	}
}

int
run_doctor(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__Empty req = SISTEMO__V1__EMPTY__INIT;
	Sistemo__V1__DoctorReply *r = NULL;
	int failed = 0;

	(void)a;
	STUB(c, sistemo__v1__system__doctor, SVC_SYSTEM, Sistemo__V1__DoctorReply, &req, &r);
	if (!r)
		return cli_fail(cli, rpc_client_error(c));
	for (size_t i = 0; i < r->n_checks; i++)
		failed += r->checks[i]->status == SISTEMO__V1__CHECK_STATUS__CHECK_STATUS_FAIL;
	cmd_print(cli, &r->base, doctor_text);
	cmd_free(r);
	return failed ? 1 : 0;
}

static void
config_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__ConfigReply *r = (const void *)m;

	(void)cli;
	printf("# %s\n", r->path);
	for (size_t i = 0; i < r->n_entries; i++) {
		const Sistemo__V1__ConfigEntry *e = r->entries[i];
		char line[1024];
		snprintf(line, sizeof(line), "%s: %s", e->key, *e->value ? e->value : "\"\"");
		printf("%-44s # %s\n", line, e->source);
	}
	for (size_t i = 0; i < r->n_warnings; i++)
		fprintf(stderr, "warning: %s\n", r->warnings[i]);
}

/* Without a daemon, read the same file the daemon would. */
static int
config_local(struct cli *cli)
{
	struct config cfg;
	struct err err = {0};
	static char buf[16384];

	if (paths_init(&cli->paths, cli->data_dir, &err) < 0 ||
	    config_load(&cfg, cli->paths.config, &err) < 0)
		return cli_fail(cli, &err);
	if (config_render_yaml(&cfg, buf, sizeof(buf)) < 0)
		return 1;
	printf("# %s (daemon not running: read directly)\n%s", cli->paths.config, buf);
	return 0;
}

int
run_config(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli_client(cli, &err);
	Sistemo__V1__Empty req = SISTEMO__V1__EMPTY__INIT;
	Sistemo__V1__ConfigReply *r = NULL;

	(void)a;
	if (!c)
		return cli->output == OUTPUT_JSON ? cli_fail(cli, &err) : config_local(cli);
	STUB(c, sistemo__v1__system__config, SVC_SYSTEM, Sistemo__V1__ConfigReply, &req, &r);
	return cmd_finish(cli, c, r, config_text);
}

static void
history_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__HistoryReply *r = (const void *)m;
	static const char *const headers[] = {"TIME",   "ACTOR",  "ACTION", "TARGET",
					      "RESULT", "DETAIL", NULL};
	struct table *t = table_new(headers);

	(void)cli;
	for (size_t i = 0; i < r->n_entries; i++) {
		const Sistemo__V1__AuditEntry *e = r->entries[i];
		char when[32];
		cmd_time(e->time_unix_ms, when, sizeof(when));
		const char *cells[] = {
			when,     e->actor, e->action, e->target_name, e->success ? "ok" : "failed",
			e->detail};
		table_add(t, cells);
	}
	table_print(t, stdout, "no history yet");
	table_free(t);
}

int
run_history(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__HistoryRequest req = SISTEMO__V1__HISTORY_REQUEST__INIT;
	Sistemo__V1__HistoryReply *r = NULL;
	unsigned limit = 20;

	if (cli_flag(a, "limit") &&
	    units_parse_uint("limit", cli_flag(a, "limit"), 1, 1000, &limit, &err) < 0)
		return cli_fail(cli, &err);
	req.limit = limit;
	req.action = (char *)(cli_flag(a, "action") ?: "");
	req.target = (char *)(cli_flag(a, "target") ?: "");
	STUB(c, sistemo__v1__system__history, SVC_SYSTEM, Sistemo__V1__HistoryReply, &req, &r);
	return cmd_finish(cli, c, r, history_text);
}

int
run_completion(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};

	if (completion_write(&cli_root, a->pos[0], stdout, &err) < 0)
		return cli_fail(cli, &err);
	return 0;
}

int
run_ssh_key(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__Empty req = SISTEMO__V1__EMPTY__INIT;
	Sistemo__V1__SshKeyReply *r = NULL;

	(void)a;
	STUB(c, sistemo__v1__system__ssh_key, SVC_SYSTEM, Sistemo__V1__SshKeyReply, &req, &r);
	if (r && cli->output == OUTPUT_TEXT) {
		printf("%s\n", r->public_key);
		cmd_free(r);
		return 0;
	}
	return cmd_finish(cli, c, r, NULL);
}

static void
print_names(const ProtobufCMessage *m)
{
	if (m->descriptor == &sistemo__v1__list_machines_reply__descriptor) {
		const Sistemo__V1__ListMachinesReply *r = (const void *)m;
		for (size_t i = 0; i < r->n_machines; i++)
			printf("%s\n", r->machines[i]->name);
	} else if (m->descriptor == &sistemo__v1__list_networks_reply__descriptor) {
		const Sistemo__V1__ListNetworksReply *r = (const void *)m;
		for (size_t i = 0; i < r->n_networks; i++)
			printf("%s\n", r->networks[i]->name);
	} else if (m->descriptor == &sistemo__v1__list_volumes_reply__descriptor) {
		const Sistemo__V1__ListVolumesReply *r = (const void *)m;
		for (size_t i = 0; i < r->n_volumes; i++)
			printf("%s\n", r->volumes[i]->name);
	} else if (m->descriptor == &sistemo__v1__list_images_reply__descriptor) {
		const Sistemo__V1__ListImagesReply *r = (const void *)m;
		for (size_t i = 0; i < r->n_images; i++)
			for (size_t t = 0; t < r->images[i]->n_tags; t++)
				printf("%s\n", r->images[i]->tags[t]);
	}
}

/* The list reply holding the names of one kind, or NULL (quietly) when unavailable. */
static ProtobufCMessage *
list_kind(struct rpc_client *c, const char *kind)
{
	ProtobufCMessage *out = NULL;

	if (streq(kind, "machines")) {
		Sistemo__V1__ListMachinesRequest req = SISTEMO__V1__LIST_MACHINES_REQUEST__INIT;
		STUB(c, sistemo__v1__machines__list, SVC_MACHINES, Sistemo__V1__ListMachinesReply,
		     &req, (Sistemo__V1__ListMachinesReply **)&out);
	} else if (streq(kind, "networks")) {
		Sistemo__V1__ListNetworksRequest req = SISTEMO__V1__LIST_NETWORKS_REQUEST__INIT;
		STUB(c, sistemo__v1__networks__list, SVC_NETWORKS, Sistemo__V1__ListNetworksReply,
		     &req, (Sistemo__V1__ListNetworksReply **)&out);
	} else if (streq(kind, "volumes")) {
		Sistemo__V1__ListVolumesRequest req = SISTEMO__V1__LIST_VOLUMES_REQUEST__INIT;
		STUB(c, sistemo__v1__volumes__list, SVC_VOLUMES, Sistemo__V1__ListVolumesReply,
		     &req, (Sistemo__V1__ListVolumesReply **)&out);
	} else if (streq(kind, "images")) {
		Sistemo__V1__ListImagesRequest req = SISTEMO__V1__LIST_IMAGES_REQUEST__INIT;
		STUB(c, sistemo__v1__images__list, SVC_IMAGES, Sistemo__V1__ListImagesReply, &req,
		     (Sistemo__V1__ListImagesReply **)&out);
	}
	return out;
}

int
run_complete_hidden(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli_client(cli, &err);
	ProtobufCMessage *out;

	if (!c)
		return 0; /* completion stays quiet */
	if ((out = list_kind(c, a->pos[0])))
		print_names(out);
	cmd_free(out);
	return 0;
}

static void
info_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__SystemInfo *i = (const void *)m;
	char started[32];

	(void)cli;
	cmd_time(i->started_unix_ms, started, sizeof(started));
	output_kv(stdout, 16, "Version:", "%s", i->version);
	output_kv(stdout, 16, "Data dir:", "%s", i->data_dir);
	output_kv(stdout, 16, "Socket:", "%s", i->socket);
	output_kv(stdout, 16, "Daemon pid:", "%lld (since %s)", (long long)i->pid, started);
	output_kv(stdout, 16, "Schema:", "version %u", i->schema_version);
	output_kv(stdout, 16, "Host:", "%s, kernel %s, %u CPUs, %llu MiB", i->hostname,
		  i->host_kernel, i->host_cpus, (unsigned long long)i->host_memory_mb);
	output_kv(stdout, 16, "KVM:", "%s", i->kvm ? "yes" : "no");
	output_kv(stdout, 16, "VMM (config):", "%s", i->vmm);
	for (size_t k = 0; k < i->n_drivers; k++) {
		const Sistemo__V1__VmmDriver *d = i->drivers[k];
		output_kv(stdout, 16, k == 0 ? "Drivers:" : "", "%-12s %-13s %s%s", d->name,
			  d->available ? "available" : "unavailable", d->reason,
			  d->is_default ? "  [default]" : "");
	}
	output_kv(stdout, 16, "Bridge:", "%s %s", i->bridge, i->bridge_subnet);
	output_kv(stdout, 16, "Machines:", "%u (%u running)", i->machines_total,
		  i->machines_running);
}

static int
run_system_info(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__Empty req = SISTEMO__V1__EMPTY__INIT;
	Sistemo__V1__SystemInfo *r = NULL;

	(void)a;
	STUB(c, sistemo__v1__system__info, SVC_SYSTEM, Sistemo__V1__SystemInfo, &req, &r);
	return cmd_finish(cli, c, r, info_text);
}

const struct cmd system_cmds[] = {
	{.name = "info",
	 .summary = "Show the daemon, the host and the VMM drivers",
	 .run = run_system_info,
	 .examples = "  sistemo system info\n  sistemo system info -o json\n"},
	{0},
};

/* Prints where the built kernel is, its size and how long the build took. */
static int
kernel_build_outcome(struct cli *cli, const Sistemo__V1__Operation *op)
{
	const Sistemo__V1__Status *st = op->status;
	struct err err = {0};
	char rel[160], path[PATH_MAX];

	if (op->state != SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_DONE)
		return err_set(&err, st ? (enum err_code)st->code : ERR_INTERNAL, NULL, EIO, "%s",
			       st ? st->message : "the kernel build failed"),
		       cli_fail(cli, &err);
	Sistemo__V1__Image *img = sistemo__v1__image__unpack(NULL, op->result.len, op->result.data);
	if (!img)
		return err_set(&err, ERR_INTERNAL, NULL, EBADMSG, "no image in the result"),
		       cli_fail(cli, &err);
	long long ms = (long long)(op->finished_unix_ms - op->created_unix_ms);
	snprintf(rel, sizeof(rel), "kernel/%s", op->target);
	paths_join(&cli->paths, rel, path, sizeof(path));
	if (cli->output == OUTPUT_JSON)
		output_json(&img->base);
	else if (img->created_unix_ms < op->created_unix_ms)
		printf("Kernel already built: %s (%.1f MiB); --force rebuilds it\n", path,
		       (double)img->size_bytes / (1 << 20));
	else
		printf("Kernel built in %lldm%02llds: %s (%.1f MiB, %s)\n", ms / 60000,
		       ms / 1000 % 60, path, (double)img->size_bytes / (1 << 20), img->digest);
	cmd_free(img);
	return 0;
}

/* Starts the build and follows it to the end (about 15 min on 2 cores). */
static int
run_kernel_build(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__KernelBuildRequest req = SISTEMO__V1__KERNEL_BUILD_REQUEST__INIT;
	Sistemo__V1__Operation *op = NULL;
	struct err err = {0};

	req.force = cli_flag_set(a, "force");
	STUB(c, sistemo__v1__images__build_kernel, SVC_IMAGES, Sistemo__V1__Operation, &req, &op);
	if (!op)
		return cli_fail(cli, rpc_client_error(c));
	Sistemo__V1__Operation *end = watch_operation(cli, op, &err);
	cmd_free(op);
	if (!end)
		return cli_fail(cli, &err);
	int status = kernel_build_outcome(cli, end);
	cmd_free(end);
	return status;
}

static const struct flag kernel_build_flags[] = {
	{"force", 0, FLAG_BOOL, NULL, "rebuild even when a built kernel is present", NULL},
	{0},
};

const struct cmd kernel_cmds[] = {
	{.name = "build",
	 .examples = "  sistemo kernel build\n  sistemo kernel build --force\n",
	 .summary = "Build a guest kernel with virtio-mmio, ext4 and IP_PNP "
		    "built in (about 15 min on 2 cores)",
	 .flags = kernel_build_flags,
	 .run = run_kernel_build},
	{0},
};
