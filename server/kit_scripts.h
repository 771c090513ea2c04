/* What the guest kit puts into a machine, as text: the initramfs /init, /sbin/sistemo-init
 * (docs/guest.md), the systemd ready unit and the tiny image's /etc. POSIX sh throughout
 * (busybox sh and dash). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Shell functions both scripts use: cmdline_get KEY, parse_ip VALUE (sets ip_addr, ip_gw,
 * ip_mask, ip_dev), prefix_of NETMASK, net_up. Exposed for the unit tests. */
extern const char kit_script_sh_lib[];

/* The initramfs /init: modules from /lib/modules/load.order, eth0 from ip=, switch_root. */
extern const char kit_script_initramfs_init[];

/* /sbin/sistemo-init, run as PID 1 of every machine; `sistemo-init power-button` waits for
 * the ACPI power button and powers off. */
extern const char kit_script_sistemo_init[];

/* /etc/systemd/system/sistemo-ready.service for systemd images. */
extern const char kit_systemd_ready_unit[];

/* /etc/systemd/system/sistemo-power-button.service: `sistemo-init power-button`. */
extern const char kit_systemd_power_unit[];

struct kit_file {
	const char *path; /* relative to the image root */
	mode_t mode;
	const char *data;
};

/* The tiny image's own files (/etc, the power-button action, the shutdown script). */
extern const struct kit_file kit_tiny_files[];
extern const size_t kit_tiny_files_count;
