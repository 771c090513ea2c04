/* `sistemo service`: runs the daemon under systemd. Writes the unit to $SISTEMO_SYSTEMD_DIR
 * (tests) or /etc/systemd/system and drives systemctl and journalctl, spawned without a shell. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* The unit text for the daemon at `binary` (absolute, from /proc/self/exe) serving the absolute
 * `data_dir`. ERR_INVALID for a relative path or a control character in one. */
int service_unit_render(const char *binary, const char *data_dir, char *buf, size_t size,
			struct err *err);

/* Writes <unit dir>/sistemo.service atomically (mode 0644); with `start`, then runs
 * daemon-reload, enable, and restart (when active) or start. Needs root, unless
 * $SISTEMO_SYSTEMD_DIR is set and `start` is false. Without systemd the unit is still written
 * and ERR_PRECONDITION says to run 'sistemo up --detach' instead. */
int service_install(const char *binary, const char *data_dir, bool start, struct err *err);

/* Stops and disables the service (when systemd runs), removes the unit and reloads systemd.
 * ERR_NOT_FOUND when no unit is installed. Needs root unless $SISTEMO_SYSTEMD_DIR is set. */
int service_uninstall(struct err *err);

/* `systemctl status sistemo --no-pager`: returns its exit status (0 active, 3 inactive...). */
int service_status(struct err *err);

/* `journalctl -u sistemo [-f] --no-pager`: returns its exit status. Without journalctl,
 * ERR_PRECONDITION points at <data_dir>/sistemo.log, the log of a detached daemon. */
int service_logs(bool follow, const char *data_dir, struct err *err);
