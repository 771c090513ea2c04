/* Shared pieces of the command implementations (cmd_*.c): stub access and reply printing. */
#pragma once

#include "cli.h"
#include "output.h"
#include "rpc_client.h"
#include "sistemo/v1/images.pb-c.h"
#include "sistemo/v1/machines.pb-c.h"
#include "sistemo/v1/networks.pb-c.h"
#include "sistemo/v1/system.pb-c.h"
#include "sistemo/v1/volumes.pb-c.h"

#define SVC_MACHINES(c) rpc_client_service((c), &sistemo__v1__machines__descriptor)
#define SVC_NETWORKS(c) rpc_client_service((c), &sistemo__v1__networks__descriptor)
#define SVC_VOLUMES(c) rpc_client_service((c), &sistemo__v1__volumes__descriptor)
#define SVC_IMAGES(c) rpc_client_service((c), &sistemo__v1__images__descriptor)
#define SVC_SYSTEM(c) rpc_client_service((c), &sistemo__v1__system__descriptor)

/* Calls a generated stub: STUB(c, sistemo__v1__system__info, SVC_SYSTEM, Sistemo__V1__SystemInfo,
 * &req, &out). On failure out stays NULL and rpc_client_error(c) says why. */
#define STUB(c, fn, svc, type, req, outp) fn(svc(c), (req), (type##_Closure)rpc_take, (outp))

/* Frees a reply message from a stub (accepts NULL). */
void cmd_free(void *msg);

/* Prints a reply: JSON with -o json, otherwise `text` (may be NULL: then a short summary). */
int cmd_print(struct cli *cli, const ProtobufCMessage *msg,
	      void (*text)(struct cli *cli, const ProtobufCMessage *m));

/* Ends a command after a stub call: prints the reply (or the error), frees it, returns the exit
 * status. */
int cmd_finish(struct cli *cli, struct rpc_client *c, void *msg,
	       void (*text)(struct cli *cli, const ProtobufCMessage *m));

/* Asks "prompt [y/N]"; -o json answers yes, a non-terminal stdin answers no. */
bool cmd_confirm(struct cli *cli, bool yes_flag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Formats a unix time in ms as "2026-11-23 15:04:05" (local time); 0 -> "-". */
void cmd_time(int64_t ms, char *buf, size_t size);

/* Subcommands of each group, {0}-terminated (cmd_*.c). */
extern const struct cmd machine_cmds[], network_cmds[], volume_cmds[], image_cmds[], system_cmds[],
	service_cmds[], admin_cmds[], kernel_cmds[], machine_volume_cmds[];

/* Top-level commands (cmd_system.c). */
int run_up(struct cli *cli, const struct cmd_args *a);
int run_install(struct cli *cli, const struct cmd_args *a);
int run_version(struct cli *cli, const struct cmd_args *a);
int run_doctor(struct cli *cli, const struct cmd_args *a);
int run_config(struct cli *cli, const struct cmd_args *a);
int run_history(struct cli *cli, const struct cmd_args *a);
int run_completion(struct cli *cli, const struct cmd_args *a);
int run_ssh_key(struct cli *cli, const struct cmd_args *a);
int run_complete_hidden(struct cli *cli, const struct cmd_args *a);
