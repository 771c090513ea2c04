/* image commands. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "macro.h"
#include "pbjson.h"
#include "units.h"

static void
list_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__ListImagesReply *r = (const void *)m;
	static const char *const headers[] = {"NAME",    "DIGEST",  "SIZE", "SOURCE",
					      "CREATED", "USED BY", NULL};
	struct table *t = table_new(headers);

	(void)cli;
	for (size_t i = 0; i < r->n_images; i++) {
		const Sistemo__V1__Image *x = r->images[i];
		char size[32], when[32], digest[20];
		units_format_mb(x->size_bytes >> 20, size, sizeof(size));
		cmd_time(x->created_unix_ms, when, sizeof(when));
		snprintf(digest, sizeof(digest), "%.19s", x->digest);
		const char *cells[] = {
			x->n_tags ? x->tags[0] : "-",      digest, size, x->source, when,
			x->n_used_by ? x->used_by[0] : "-"};
		table_add(t, cells);
	}
	table_print(t, stdout, "no images");
	table_free(t);
}

static int
run_list(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ListImagesRequest req = SISTEMO__V1__LIST_IMAGES_REQUEST__INIT;
	Sistemo__V1__ListImagesReply *r = NULL;

	req.registry = cli_flag_set(a, "registry");
	STUB(c, sistemo__v1__images__list, SVC_IMAGES, Sistemo__V1__ListImagesReply, &req, &r);
	return cmd_finish(cli, c, r, list_text);
}

static int
run_show(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ImageRef req = SISTEMO__V1__IMAGE_REF__INIT;
	Sistemo__V1__Image *r = NULL;

	req.image = a->pos[0];
	STUB(c, sistemo__v1__images__get, SVC_IMAGES, Sistemo__V1__Image, &req, &r);
	return cmd_finish(cli, c, r, NULL);
}

static int
run_delete(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ImageRef req = SISTEMO__V1__IMAGE_REF__INIT;
	Sistemo__V1__Image *r = NULL;

	req.image = a->pos[0];
	if (!cmd_confirm(cli, cli_flag_set(a, "yes"), "delete image '%s'?", req.image))
		return 6;
	STUB(c, sistemo__v1__images__delete, SVC_IMAGES, Sistemo__V1__Image, &req, &r);
	return cmd_finish(cli, c, r, NULL);
}

static int
run_pull(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__PullImageRequest req = SISTEMO__V1__PULL_IMAGE_REQUEST__INIT;
	Sistemo__V1__Operation *op = NULL;

	req.image = a->pos[0];
	STUB(c, sistemo__v1__images__pull, SVC_IMAGES, Sistemo__V1__Operation, &req, &op);
	return cmd_finish(cli, c, op, NULL);
}

static int
run_import(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ImportImageRequest req = SISTEMO__V1__IMPORT_IMAGE_REQUEST__INIT;
	Sistemo__V1__Operation *op = NULL;

	req.path = a->pos[0];
	req.name = (char *)(cli_flag(a, "name") ?: "");
	STUB(c, sistemo__v1__images__import, SVC_IMAGES, Sistemo__V1__Operation, &req, &op);
	return cmd_finish(cli, c, op, NULL);
}

static int
build_source(const char *s, Sistemo__V1__BuildSource *ret, struct err *err)
{
	int v;

	if (pbjson_enum_parse(&sistemo__v1__build_source__descriptor, s, &v) < 0)
		return err_set(err, ERR_INVALID, "type", EINVAL,
			       "--type: unknown source type '%s': use auto, dir, tarball or oci",
			       s);
	*ret = (Sistemo__V1__BuildSource)v;
	return 0;
}

static int
build_request(const struct cmd_args *a, Sistemo__V1__BuildImageRequest *req, struct err *err)
{
	const char *const *pkgs;

	req->name = a->pos[0];
	req->from = (char *)(cli_flag(a, "from") ?: "");
	req->release = (char *)(cli_flag(a, "release") ?: "");
	req->n_packages = cli_flag_list(a, "packages", &pkgs);
	req->packages = (char **)pkgs;
	if (streq(req->name, "debian") && !*req->from)
		req->source = SISTEMO__V1__BUILD_SOURCE__BUILD_SOURCE_DEBIAN;
	else if (!*req->from)
		return err_set(err, ERR_INVALID, "from", EINVAL,
			       "image build '%s' needs --from DIR|TARBALL|OCI-ARCHIVE (only "
			       "'debian' builds without one)",
			       req->name);
	if (cli_flag(a, "type") && build_source(cli_flag(a, "type"), &req->source, err) < 0)
		return -EINVAL;
	if (cli_flag(a, "size") &&
	    units_parse_size_mb("size", cli_flag(a, "size"), &req->size_mb, err) < 0)
		return -EINVAL;
	return 0;
}

static int
run_build(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__BuildImageRequest req = SISTEMO__V1__BUILD_IMAGE_REQUEST__INIT;
	Sistemo__V1__Operation *op = NULL;

	if (build_request(a, &req, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__images__build, SVC_IMAGES, Sistemo__V1__Operation, &req, &op);
	return cmd_finish(cli, c, op, NULL);
}

static const char *const a_ls[] = {"ls", NULL};
static const char *const a_rm[] = {"rm", "remove", NULL};
static const char *const a_show[] = {"info", "inspect", NULL};

static const struct flag list_flags[] = {
	{"registry", 'r', FLAG_BOOL, NULL, "also list what the registry offers", NULL},
	{0},
};
static const struct flag yes_flags[] = {
	{"yes", 'y', FLAG_BOOL, NULL, "do not ask for confirmation", NULL},
	{0},
};
static const struct flag import_flags[] = {
	{"name", 0, FLAG_STRING, "NAME", "tag for the imported image", "the file name"},
	{0},
};
static const struct flag build_flags[] = {
	{"from", 0, FLAG_STRING, "PATH",
	 "a root tree, a rootfs tarball or an OCI/docker-save "
	 "archive",
	 NULL},
	{"type", 0, FLAG_STRING, "TYPE", "auto, dir, tarball or oci", "auto"},
	{"release", 0, FLAG_STRING, "NAME", "Debian release for 'image build debian'", "bookworm"},
	{"packages", 0, FLAG_LIST, "PKG,...", "extra Debian packages", NULL},
	{"size", 0, FLAG_STRING, "SIZE", "filesystem size", "the tree plus headroom"},
	{0},
};

const struct cmd image_cmds[] = {
	{.name = "list",
	 .examples = "  sistemo image list\n  sistemo image ls --registry\n",
	 .aliases = a_ls,
	 .flags = list_flags,
	 .summary = "List images",
	 .run = run_list},
	{.name = "show",
	 .examples = "  sistemo image show debian\n",
	 .aliases = a_show,
	 .usage = "<image>",
	 .min_args = 1,
	 .max_args = 1,
	 .complete = "images",
	 .summary = "Show an image",
	 .run = run_show},
	{.name = "pull",
	 .usage = "<name[:tag]>",
	 .min_args = 1,
	 .max_args = 1,
	 .summary = "Download an image from the registry",
	 .run = run_pull,
	 .examples = "  sistemo image pull debian\n"},
	{.name = "import",
	 .examples = "  sistemo image import ./rootfs.ext4 --name myapp\n",
	 .usage = "<file.ext4>",
	 .min_args = 1,
	 .max_args = 1,
	 .flags = import_flags,
	 .summary = "Add an ext4 image file to the store",
	 .run = run_import},
	{.name = "build",
	 .usage = "<name> [--from PATH]",
	 .min_args = 1,
	 .max_args = 1,
	 .flags = build_flags,
	 .summary = "Build an image from a tree, tarball, OCI archive or "
		    "Debian",
	 .run = run_build,
	 .examples = "  sistemo image build myapp --from ./rootfs\n"
		     "  sistemo image build myapp --from app.tar\n"
		     "  sistemo image build debian --release bookworm --packages curl,nginx\n"},
	{.name = "delete",
	 .examples = "  sistemo image delete myapp -y\n",
	 .aliases = a_rm,
	 .usage = "<image>",
	 .min_args = 1,
	 .max_args = 1,
	 .flags = yes_flags,
	 .complete = "images",
	 .summary = "Delete an image (refused while machines use it)",
	 .run = run_delete},
	{0},
};
