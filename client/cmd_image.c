/* image commands. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "macro.h"
#include "pbjson.h"
#include "units.h"
#include "watch.h"

/* "tiny:latest, tiny:v1" -> "tiny, tiny:v1": the default tag is not written. */
static void
tags_text(const Sistemo__V1__Image *x, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < x->n_tags && o < size; i++) {
		size_t n = strlen(x->tags[i]);
		bool latest = n > 7 && streq(x->tags[i] + n - 7, ":latest");
		o += (size_t)snprintf(buf + o, size - o, "%s%.*s", i ? ", " : "",
				      (int)(latest ? n - 7 : n), x->tags[i]);
	}
	if (!x->n_tags)
		snprintf(buf, size, "-");
}

static void
registry_text(const Sistemo__V1__ListImagesReply *r)
{
	static const char *const headers[] = {"REGISTRY", "SIZE", "DIGEST", "", NULL};
	struct table *t;

	if (r->registry_error && *r->registry_error) {
		printf("\nregistry: %s\n", r->registry_error);
		return;
	}
	t = table_new(headers);
	for (size_t i = 0; i < r->n_registry; i++) {
		const Sistemo__V1__RegistryImage *x = r->registry[i];
		char name[160], size[32], digest[20];
		snprintf(name, sizeof(name), "%s:%s", x->name, x->tag);
		units_format_mb(x->size_bytes >> 20, size, sizeof(size));
		snprintf(digest, sizeof(digest), "%.19s", x->digest);
		const char *cells[] = {name, size, digest,
				       x->cached ? "(cached)" : "sistemo image pull"};
		table_add(t, cells);
	}
	printf("\n");
	table_print(t, stdout, "the registry lists no images");
	table_free(t);
}

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
		char size[32], when[32], digest[20], tags[512], used[32];
		units_format_mb((x->size_bytes + (1 << 20) - 1) >> 20, size, sizeof(size));
		cmd_time(x->created_unix_ms, when, sizeof(when));
		snprintf(digest, sizeof(digest), "%.19s", x->digest);
		tags_text(x, tags, sizeof(tags));
		snprintf(used, sizeof(used), "%zu machine%s", x->n_used_by,
			 x->n_used_by == 1 ? "" : "s");
		const char *cells[] = {tags, digest, size, x->source, when, used};
		table_add(t, cells);
	}
	table_print(t, stdout, "no images");
	table_free(t);
	if (r->n_registry || (r->registry_error && *r->registry_error))
		registry_text(r);
}

static void
join_words(char **w, size_t n, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? " " : "", w[i]);
}

static void
show_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__Image *x = (const void *)m;
	char tags[512], when[32], users[512], cmd[1024], ep[1024], env[1024];

	(void)cli;
	tags_text(x, tags, sizeof(tags));
	cmd_time(x->created_unix_ms, when, sizeof(when));
	join_words(x->used_by, x->n_used_by, users, sizeof(users));
	join_words(x->entrypoint, x->n_entrypoint, ep, sizeof(ep));
	join_words(x->cmd, x->n_cmd, cmd, sizeof(cmd));
	join_words(x->env, x->n_env, env, sizeof(env));
	output_kv(stdout, 12, "Name:", "%s", tags);
	output_kv(stdout, 12, "Digest:", "%s", x->digest);
	output_kv(stdout, 12, "Size:", "%.1f MiB", (double)x->size_bytes / (1 << 20));
	output_kv(stdout, 12, "Source:", "%s%s%s", x->source, *x->source_ref ? " " : "",
		  x->source_ref);
	output_kv(stdout, 12, "Created:", "%s", when);
	output_kv(stdout, 12, "File:", "%s", x->path);
	output_kv(stdout, 12, "SSH:", "%s", *x->ssh ? x->ssh : x->has_ssh ? "yes" : "unknown");
	output_kv(stdout, 12, "Used by:", "%s", *users ? users : "-");
	if (x->n_entrypoint || x->n_cmd) {
		output_kv(stdout, 12, "Entrypoint:", "%s", *ep ? ep : "-");
		output_kv(stdout, 12, "Cmd:", "%s", *cmd ? cmd : "-");
		output_kv(stdout, 12, "Env:", "%s", *env ? env : "-");
		output_kv(stdout, 12, "Workdir:", "%s", *x->workdir ? x->workdir : "/");
	}
}

/* Follows an image operation (pull, import, build) and prints the image it made. */
static int
finish_op(struct cli *cli, Sistemo__V1__Operation *op, const char *verb)
{
	struct err err = {0};

	if (!op)
		return cli_fail(cli, rpc_client_error(cli->client));
	Sistemo__V1__Operation *end = watch_operation(cli, op, &err);
	cmd_free(op);
	if (!end)
		return cli_fail(cli, &err);
	const Sistemo__V1__Status *st = end->status;
	if (end->state != SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_DONE) {
		err_set(&err, st ? (enum err_code)st->code : ERR_INTERNAL, NULL, EIO, "%s '%s': %s",
			end->kind, end->target, st ? st->message : "failed");
		cmd_free(end);
		return cli_fail(cli, &err);
	}
	Sistemo__V1__Image *img =
		sistemo__v1__image__unpack(NULL, end->result.len, end->result.data);
	cmd_free(end);
	if (!img)
		return err_set(&err, ERR_INTERNAL, NULL, EBADMSG, "no image in the result"),
		       cli_fail(cli, &err);
	char tags[512];
	tags_text(img, tags, sizeof(tags));
	if (cli->output == OUTPUT_JSON)
		output_json(&img->base);
	else
		printf("Image '%s' %s: %s (%.1f MiB%s%s)\n", tags, verb, img->digest,
		       (double)img->size_bytes / (1 << 20), *img->ssh ? ", SSH: " : "", img->ssh);
	cmd_free(img);
	return 0;
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
	return cmd_finish(cli, c, r, show_text);
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
	if (r && cli->output != OUTPUT_JSON) {
		printf("Image '%s' deleted\n", req.image);
		cmd_free(r);
		return 0;
	}
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
	return finish_op(cli, op, "pulled");
}

static int
run_import(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ImportImageRequest req = SISTEMO__V1__IMPORT_IMAGE_REQUEST__INIT;
	Sistemo__V1__Operation *op = NULL;

	char path[PATH_MAX];
	/* the daemon has another working directory */
	req.path = realpath(a->pos[0], path) ? path : a->pos[0];
	req.name = (char *)(cli_flag(a, "name") ?: "");
	STUB(c, sistemo__v1__images__import, SVC_IMAGES, Sistemo__V1__Operation, &req, &op);
	return finish_op(cli, op, "imported");
}

static int
build_source(const char *s, Sistemo__V1__BuildSource *ret, struct err *err)
{
	int v;

	if (pbjson_enum_parse(&sistemo__v1__build_source__descriptor, s, &v) < 0)
		return err_set(
			err, ERR_INVALID, "type", EINVAL,
			"--type: unknown source type '%s': use auto, dir, tarball, oci or debian",
			s);
	*ret = (Sistemo__V1__BuildSource)v;
	return 0;
}

/* from_abs (PATH_MAX bytes) backs req->from made absolute. */
static int
build_request(const struct cmd_args *a, Sistemo__V1__BuildImageRequest *req, char *from_abs,
	      struct err *err)
{
	const char *const *pkgs;

	req->name = a->pos[0];
	req->from = (char *)(cli_flag(a, "from") ?: "");
	if (*req->from && realpath(req->from, from_abs))
		req->from = from_abs;
	req->release = (char *)(cli_flag(a, "release") ?: "");
	req->n_packages = cli_flag_list(a, "packages", &pkgs);
	req->packages = (char **)pkgs;
	if (cli_flag(a, "type") && build_source(cli_flag(a, "type"), &req->source, err) < 0)
		return -EINVAL;
	if (streq(req->name, "debian") && !*req->from && !cli_flag(a, "type"))
		req->source = SISTEMO__V1__BUILD_SOURCE__BUILD_SOURCE_DEBIAN;
	else if (!*req->from && req->source != SISTEMO__V1__BUILD_SOURCE__BUILD_SOURCE_DEBIAN)
		return err_set(err, ERR_INVALID, "from", EINVAL,
			       "image build '%s' needs --from DIR|TARBALL|OCI-ARCHIVE (or --type "
			       "debian)",
			       req->name);
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

	char from_abs[PATH_MAX];

	if (build_request(a, &req, from_abs, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__images__build, SVC_IMAGES, Sistemo__V1__Operation, &req, &op);
	return finish_op(cli, op, "built");
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
	{"type", 0, FLAG_STRING, "TYPE", "auto, dir, tarball, oci or debian", "auto"},
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
