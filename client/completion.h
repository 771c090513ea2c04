/* `sistemo completion bash|zsh|fish`: shell completion scripts generated from the command table
 * (commands, aliases, flags, nested subcommands; hidden commands are left out). */
#pragma once

#include <stdio.h>

#include "cli.h"
#include "err.h"

/* Writes the completion script for `shell` ("bash", "zsh" or "fish") of the table under root
 * (root->name is the program) to out. The root's flags are the global ones, offered under every
 * command; a root without flags gets the parser's: --data-dir, -o/--output and -h/--help.
 *
 * A command's `complete` field names what its positionals complete to, as a comma-separated
 * list, one kind per position: "machines" (the first positional only), "machines,volumes"
 * (first and second), "machines..." (every positional). The script gets the names by running
 * `<prog> [--data-dir DIR] __complete <kind>`, which prints one name per line (stderr is
 * silenced). Values of -o/--output complete to "text json".
 *
 * ERR_INVALID for an unknown shell; ERR_INTERNAL for a name the table should not contain
 * (only letters, digits, '-', '_' and '.') or a write error. */
int completion_write(const struct cmd *root, const char *shell, FILE *out, struct err *err);
