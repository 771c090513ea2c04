/* The built guest kernel (kit_kernel_build in kit.h): Debian's linux-source tree configured for
 * sistemo's guests and compiled with make. The pure pieces the tests look at are here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Options (without CONFIG_) built in, and options off; the build checks the final .config. */
extern const char *const kit_kernel_options_on[];
extern const char *const kit_kernel_options_off[];

/* Appended to the version: `uname -r` in a guest says "6.1.192-sistemo". */
#define KIT_KERNEL_LOCALVERSION "-sistemo"

/* Files the configured bzImage compiles (its "  CC" lines): 2197 for 6.1.192. Progress is
 * reported against it and never passes 95 %. */
#define KIT_KERNEL_CC_EXPECTED 2200u

/* The scripts/config arguments that turn the options on and off and set the local version,
 * after argv[0..n) the caller filled: ("-e", "VIRTIO_MMIO", ..., "-d", "MODULES", ...,
 * "--set-str", "LOCALVERSION", "-sistemo"), NULL-terminated. Returns the count, or -E2BIG when
 * max entries are too few. */
int kit_kernel_config_argv(const char **argv, size_t n, size_t max);

/* Checks a .config (its text): each option on is "=y", each option off is absent or "is not
 * set". Writes the failures ("VIRTIO_MMIO=y, MODULES=n") into buf and returns how many. */
size_t kit_kernel_config_missing(const char *config, char *buf, size_t size);

/* The object a kbuild "  CC      kernel/fork.o" line compiles ("kernel/fork.o"), or NULL for
 * any other line. */
const char *kit_kernel_cc_object(const char *line);

/* Percent of the whole build once n files are compiled: 8 at the start, at most 95. */
unsigned kit_kernel_compile_percent(unsigned n);

/* The line of a failed program's output worth quoting: the last one mentioning an error
 * ("error"/"Error"), else the last non-empty one; "" when there is none. */
void kit_kernel_error_line(const char *output, char *buf, size_t size);
