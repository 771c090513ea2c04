/* Following the daemon's long operations and exec sessions from the CLI: a progress line for
 * deploys and starts, and output streamed as it comes for exec and logs. */
#pragma once

#include "cli.h"
#include "sistemo/v1/machines.pb-c.h"
#include "sistemo/v1/rpc.pb-c.h"

/* Follows the operation to its end, drawing progress on stderr (a rewritten line on a
 * terminal, one line per step otherwise, nothing with -o json). Returns the final operation
 * (caller frees) or NULL with err set. */
Sistemo__V1__Operation *watch_operation(struct cli *cli, const Sistemo__V1__Operation *op,
					struct err *err);

/* Prints the outcome of a machine operation (deploy, start, restart) and returns the exit
 * status: the machine on success, the operation's error otherwise. */
int watch_machine_result(struct cli *cli, Sistemo__V1__Operation *op, const char *verb);

/* Streams an exec session to stdout/stderr until it exits; returns the command's exit status
 * (or with -o json prints {stdout, stderr, exit_code} at the end). stdin, when it is not a
 * terminal, is sent to the command first. */
int watch_exec(struct cli *cli, const char *exec_id);

/* Runs an interactive terminal session: raw mode, keystrokes in, output out, resizes. */
int watch_terminal(struct cli *cli, const char *exec_id);

/* Prints a machine's console log; follows it while the machine runs when `follow`. */
int watch_logs(struct cli *cli, const char *machine, bool follow);
