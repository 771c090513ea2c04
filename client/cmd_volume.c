/* volume commands. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "macro.h"
#include "units.h"

static void
volume_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__Volume *v = (const void *)m;
	char size[32], used[32];

	(void)cli;
	units_format_mb(v->size_mb, size, sizeof(size));
	units_format_mb(v->used_mb, used, sizeof(used));
	output_kv(stdout, 10, "ID:", "%s", v->id);
	output_kv(stdout, 10, "Name:", "%s", v->name);
	output_kv(stdout, 10, "Size:", "%s", size);
	output_kv(stdout, 10, "Used:", "%s", used);
	output_kv(stdout, 10, "Role:", "%s", v->role);
	output_kv(stdout, 10, "Status:", "%s",
		  output_enum(&sistemo__v1__volume_state__descriptor, v->state));
	output_kv(stdout, 10, "Machine:", "%s", v->machine);
	output_kv(stdout, 10, "Path:", "%s", v->path);
}

static void
list_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__ListVolumesReply *r = (const void *)m;
	static const char *const headers[] = {"NAME",   "SIZE",        "USED", "ROLE",
					      "STATUS", "ATTACHED TO", NULL};
	struct table *t = table_new(headers);

	(void)cli;
	for (size_t i = 0; i < r->n_volumes; i++) {
		const Sistemo__V1__Volume *v = r->volumes[i];
		char size[32], used[32];
		units_format_mb(v->size_mb, size, sizeof(size));
		units_format_mb(v->used_mb, used, sizeof(used));
		const char *cells[] = {
			v->name,
			size,
			used,
			v->role,
			output_enum(&sistemo__v1__volume_state__descriptor, v->state),
			v->machine};
		table_add(t, cells);
	}
	table_print(t, stdout, "no volumes (create one: sistemo volume create data --size 10G)");
	table_free(t);
}

/* "volume create NAME --size 10G", or the older "volume create 10G [--name NAME]": a lone
 * argument that reads as a size is the size. */
static int
create_args(const struct cmd_args *a, Sistemo__V1__CreateVolumeRequest *req, struct err *err)
{
	const char *pos = a->n_pos ? a->pos[0] : NULL, *size = cli_flag(a, "size");
	const char *name = cli_flag(a, "name");
	struct err probe = {0};

	if (pos && !size && units_parse_size_mb("size", pos, &req->size_mb, &probe) == 0) {
		req->name = (char *)(name ?: "");
		return 0;
	}
	if (pos && name && strcmp(pos, name) != 0)
		return err_set(err, ERR_INVALID, "name", EINVAL,
			       "two names given: '%s' and --name '%s'", pos, name);
	req->name = (char *)(pos ?: name ?: "");
	if (!size)
		return err_set(err, ERR_INVALID, "size", EINVAL,
			       "volume create needs a size: sistemo volume create %s --size 10G",
			       *req->name ? req->name : "NAME");
	return units_parse_size_mb("size", size, &req->size_mb, err);
}

static int
run_create(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__CreateVolumeRequest req = SISTEMO__V1__CREATE_VOLUME_REQUEST__INIT;
	Sistemo__V1__Volume *r = NULL;

	if (create_args(a, &req, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__volumes__create, SVC_VOLUMES, Sistemo__V1__Volume, &req, &r);
	return cmd_finish(cli, c, r, volume_text);
}

static int
run_list(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ListVolumesRequest req = SISTEMO__V1__LIST_VOLUMES_REQUEST__INIT;
	Sistemo__V1__ListVolumesReply *r = NULL;

	(void)a;
	STUB(c, sistemo__v1__volumes__list, SVC_VOLUMES, Sistemo__V1__ListVolumesReply, &req, &r);
	return cmd_finish(cli, c, r, list_text);
}

/* show and delete take one volume. */
static int
run_ref(struct cli *cli, const struct cmd_args *a, bool del)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__VolumeRef req = SISTEMO__V1__VOLUME_REF__INIT;
	Sistemo__V1__Volume *r = NULL;

	req.volume = a->pos[0];
	if (del && !cmd_confirm(cli, cli_flag_set(a, "yes"), "delete volume '%s' and its data?",
				req.volume))
		return 6;
	if (del)
		STUB(c, sistemo__v1__volumes__delete, SVC_VOLUMES, Sistemo__V1__Volume, &req, &r);
	else
		STUB(c, sistemo__v1__volumes__get, SVC_VOLUMES, Sistemo__V1__Volume, &req, &r);
	return cmd_finish(cli, c, r, volume_text);
}

static int
run_show(struct cli *cli, const struct cmd_args *a)
{
	return run_ref(cli, a, false);
}

static int
run_delete(struct cli *cli, const struct cmd_args *a)
{
	return run_ref(cli, a, true);
}

static int
run_resize(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__ResizeVolumeRequest req = SISTEMO__V1__RESIZE_VOLUME_REQUEST__INIT;
	Sistemo__V1__Volume *r = NULL;
	const char *size = a->n_pos > 1 ? a->pos[1] : cli_flag(a, "size");

	req.volume = a->pos[0];
	if (!size)
		return err_set(&err, ERR_INVALID, "size", EINVAL,
			       "volume resize needs the new size (e.g. --size 20G)"),
		       cli_fail(cli, &err);
	if (units_parse_size_mb("size", size, &req.size_mb, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__volumes__resize, SVC_VOLUMES, Sistemo__V1__Volume, &req, &r);
	return cmd_finish(cli, c, r, volume_text);
}

static int
run_attach_detach(struct cli *cli, const struct cmd_args *a, bool attach)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__AttachRequest req = SISTEMO__V1__ATTACH_REQUEST__INIT;
	Sistemo__V1__Volume *r = NULL;

	req.volume = a->pos[0];
	req.machine = a->pos[1];
	if (attach)
		STUB(c, sistemo__v1__volumes__attach, SVC_VOLUMES, Sistemo__V1__Volume, &req, &r);
	else
		STUB(c, sistemo__v1__volumes__detach, SVC_VOLUMES, Sistemo__V1__Volume, &req, &r);
	return cmd_finish(cli, c, r, volume_text);
}

static int
run_attach(struct cli *cli, const struct cmd_args *a)
{
	return run_attach_detach(cli, a, true);
}

static int
run_detach(struct cli *cli, const struct cmd_args *a)
{
	return run_attach_detach(cli, a, false);
}

static const char *const a_create[] = {"add", NULL};
static const char *const a_ls[] = {"ls", NULL};
static const char *const a_show[] = {"info", "get", NULL};
static const char *const a_rm[] = {"rm", "remove", NULL};

static const struct flag create_flags[] = {
	{"name", 0, FLAG_STRING, "NAME", "volume name, instead of the argument",
	 "the first 8 characters of its id"},
	{"size", 's', FLAG_STRING, "SIZE", "size: MB or with M/G/T", NULL},
	{0},
};
static const struct flag resize_flags[] = {
	{"size", 's', FLAG_STRING, "SIZE", "new size (grow only)", NULL},
	{0},
};
static const struct flag delete_flags[] = {
	{"yes", 'y', FLAG_BOOL, NULL, "do not ask for confirmation", NULL},
	{0},
};

const struct cmd volume_cmds[] = {
	{.name = "create",
	 .aliases = a_create,
	 .usage = "<name> --size SIZE",
	 .max_args = 1,
	 .flags = create_flags,
	 .summary = "Create a data volume (an ext4 filesystem)",
	 .run = run_create,
	 .description = "Names: 1 to 63 of a-z, 0-9, '-' and '_'. The older form 'volume create\n"
			"SIZE --name NAME' works too. In a machine it is mounted at /mnt/NAME.",
	 .examples = "  sistemo volume create data --size 10G\n"
		     "  sistemo volume create 10G --name data\n"},
	{.name = "list",
	 .examples = "  sistemo volume list\n  sistemo volume ls -o json\n",
	 .aliases = a_ls,
	 .summary = "List volumes",
	 .run = run_list},
	{.name = "show",
	 .examples = "  sistemo volume show data\n",
	 .aliases = a_show,
	 .usage = "<volume>",
	 .min_args = 1,
	 .max_args = 1,
	 .complete = "volumes",
	 .summary = "Show a volume",
	 .run = run_show},
	{.name = "delete",
	 .examples = "  sistemo volume delete data -y\n",
	 .aliases = a_rm,
	 .usage = "<volume>",
	 .min_args = 1,
	 .max_args = 1,
	 .flags = delete_flags,
	 .complete = "volumes",
	 .summary = "Delete a volume (refused while attached)",
	 .run = run_delete},
	{.name = "resize",
	 .usage = "<volume> <size>",
	 .min_args = 1,
	 .max_args = 2,
	 .flags = resize_flags,
	 .complete = "volumes",
	 .summary = "Grow a volume and its filesystem (its machine stopped)",
	 .run = run_resize,
	 .examples = "  sistemo volume resize data --size 20G\n  sistemo volume resize data 20G\n"},
	{.name = "attach",
	 .examples = "  sistemo volume attach data db\n",
	 .usage = "<volume> <machine>",
	 .min_args = 2,
	 .max_args = 2,
	 .complete = "volumes,machines",
	 .summary = "Attach a volume to a stopped machine (mounted at /mnt/NAME)",
	 .run = run_attach},
	{.name = "detach",
	 .examples = "  sistemo volume detach data db\n",
	 .usage = "<volume> <machine>",
	 .min_args = 2,
	 .max_args = 2,
	 .complete = "volumes,machines",
	 .summary = "Detach a volume from a stopped machine",
	 .run = run_detach},
	{0},
};
