# The built kernel (`sistemo kernel build`) boots a 'tiny' machine under QEMU without an
# initramfs: the kernel mounts the virtio root disk and configures eth0 from ip= itself, exec
# works, and the ACPI power button powers it off cleanly. The kernel takes 15 min to build, so
# the test uses one built before: $SISTEMO_TEST_KERNEL_DIR or /var/cache/sistemo/kernel, holding
# bzImage-sistemo; without one it skips.
. "$(dirname "$0")/lib.sh"

KERNEL_DIR=${SISTEMO_TEST_KERNEL_DIR:-/var/cache/sistemo/kernel}
[ -r "$KERNEL_DIR/bzImage-sistemo" ] ||
	skip "no built kernel: run 'sistemo kernel build' once (15 min), or set SISTEMO_TEST_KERNEL_DIR"
command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"

mkdir -p "$SISTEMO_DATA_DIR/kernel"
cp "$KERNEL_DIR/bzImage-sistemo" "$SISTEMO_DATA_DIR/kernel/"
start_daemon

# --- deploy on the built kernel -------------------------------------------------------------
run sistemo machine deploy tiny --name kb --memory 256M --vcpus 1
expect_rc 0 "deploy on the built kernel"
expect_in "$OUT" "Machine 'kb' is running" "deploy output"
run sistemo machine status kb -o json
expect_eq "$(jq -r .state <<<"$OUT")" running "state"
ID=$(jq -r .id <<<"$OUT")
PID=$(jq -r .pid <<<"$OUT")
BOOT_MS=$(jq -r .boot_ms <<<"$OUT")
CONSOLE="$SISTEMO_DATA_DIR/vms/$ID/console.log"
kill -0 "$PID" || fail "VMM $PID not running"
ARGS=$(tr '\0' ' ' <"/proc/$PID/cmdline")
expect_in "$ARGS" "$SISTEMO_DATA_DIR/kernel/bzImage-sistemo" "QEMU boots the built kernel"
case "$ARGS" in *-initrd*) fail "QEMU was given an initrd: $ARGS" ;; esac
ok "deploy boots the built kernel (boot $BOOT_MS ms)"

# --- no initramfs: the kernel itself mounted the root and configured eth0 --------------------
run sistemo machine exec kb cat /proc/cmdline
expect_rc 0 "exec cat /proc/cmdline"
expect_in "$OUT" "root=/dev/vda" "kernel command line"
case "$OUT" in *initrd*) fail "an initrd on the command line: $OUT" ;; esac
grep -q "Unpacking initramfs" "$CONSOLE" && fail "the console shows an initramfs being unpacked"
grep -q "IP-Config: Complete" "$CONSOLE" || fail "the kernel did not configure eth0 from ip= (IP_PNP)"
grep -q "initramfs:" "$CONSOLE" && fail "the initramfs /init ran"
run sistemo machine exec kb uname -r
expect_in "$OUT" "-sistemo" "uname -r names the built kernel"
KVER=$OUT
run sistemo machine exec kb sh -c 'ls /dev/input/event* && test ! -e /lib/modules'
expect_rc 0 "the power button is an input event device and no modules exist (rc $RC: $OUT)"
ok "no initramfs: kernel $KVER mounted /dev/vda and configured eth0 itself"

# --- the ACPI power button powers it off; delete leaves nothing -----------------------------
run sistemo machine stop kb
expect_rc 0 "stop"
kill -0 "$PID" 2>/dev/null && fail "VMM still running after stop"
grep -q "reboot: Power down" "$CONSOLE" || fail "the guest did not power off cleanly"
ok "stop: the power button powers the guest off (reboot: Power down)"

run sistemo machine delete kb -y
expect_rc 0 "delete"
expect_eq "$(db 'SELECT count(*) FROM machine')" 0 "no machine rows"
expect_eq "$(ls "$SISTEMO_DATA_DIR/vms")" "" "no machine files"
pgrep -f "$SISTEMO_DATA_DIR/vms" && fail "a VMM is still running"
ok "delete leaves nothing"

finish
