#include "kit_scripts.h"

#include "macro.h"

#define SH_LIB                                                                                     \
	"# cmdline_get KEY: the value of KEY= on the kernel command line, \"\" when absent\n"      \
	"cmdline_get() {\n"                                                                        \
	"\tfor arg in $(cat /proc/cmdline); do\n"                                                  \
	"\t\tcase $arg in\n"                                                                       \
	"\t\t\"$1\"=*) echo \"${arg#*=}\"; return 0 ;;\n"                                          \
	"\t\tesac\n"                                                                               \
	"\tdone\n"                                                                                 \
	"\techo \"\"\n"                                                                            \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# parse_ip <client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>\n"        \
	"parse_ip() {\n"                                                                           \
	"\toldifs=$IFS\n"                                                                          \
	"\tIFS=:\n"                                                                                \
	"\tset -- $1\n"                                                                            \
	"\tIFS=$oldifs\n"                                                                          \
	"\tip_addr=${1:-}\n"                                                                       \
	"\tip_gw=${3:-}\n"                                                                         \
	"\tip_mask=${4:-}\n"                                                                       \
	"\tip_dev=${6:-eth0}\n"                                                                    \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# prefix_of 255.255.255.0 -> 24\n"                                                        \
	"prefix_of() {\n"                                                                          \
	"\tbits=0\n"                                                                               \
	"\toldifs=$IFS\n"                                                                          \
	"\tIFS=.\n"                                                                                \
	"\tset -- $1\n"                                                                            \
	"\tIFS=$oldifs\n"                                                                          \
	"\tfor octet in \"$@\"; do\n"                                                              \
	"\t\tcase $octet in\n"                                                                     \
	"\t\t255) bits=$((bits + 8)) ;;\n"                                                         \
	"\t\t254) bits=$((bits + 7)) ;;\n"                                                         \
	"\t\t252) bits=$((bits + 6)) ;;\n"                                                         \
	"\t\t248) bits=$((bits + 5)) ;;\n"                                                         \
	"\t\t240) bits=$((bits + 4)) ;;\n"                                                         \
	"\t\t224) bits=$((bits + 3)) ;;\n"                                                         \
	"\t\t192) bits=$((bits + 2)) ;;\n"                                                         \
	"\t\t128) bits=$((bits + 1)) ;;\n"                                                         \
	"\t\tesac\n"                                                                               \
	"\tdone\n"                                                                                 \
	"\techo \"$bits\"\n"                                                                       \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# net_up: the ip= device up with its address and default route (idempotent)\n"            \
	"net_up() {\n"                                                                             \
	"\t[ -n \"$ip_addr\" ] || return 0\n"                                                      \
	"\tprefix=$(prefix_of \"$ip_mask\")\n"                                                     \
	"\t[ \"$prefix\" -gt 0 ] || prefix=24\n"                                                   \
	"\tip link set lo up 2>/dev/null\n"                                                        \
	"\tip link set \"$ip_dev\" up || return 1\n"                                               \
	"\tif ! ip -4 addr show dev \"$ip_dev\" | grep -q \"inet $ip_addr/\"; then\n"              \
	"\t\tip addr add \"$ip_addr/$prefix\" dev \"$ip_dev\" || return 1\n"                       \
	"\tfi\n"                                                                                   \
	"\tif [ -n \"$ip_gw\" ]; then\n"                                                           \
	"\t\tip route replace default via \"$ip_gw\" dev \"$ip_dev\" || return 1\n"                \
	"\tfi\n"                                                                                   \
	"}\n"

const char kit_script_sh_lib[] = SH_LIB;

const char kit_script_initramfs_init[] =
	"#!/bin/sh\n"
	"# initramfs /init (sistemo, docs/guest.md): loads the virtio modules, configures the\n"
	"# network from ip=, mounts the root disk and switch_roots to init=.\n"
	"set -u\n"
	"set -f\n"
	"PATH=/sbin:/bin:/usr/sbin:/usr/bin\n"
	"export PATH\n"
	"\n" SH_LIB "\n"
	"die() {\n"
	"\techo \"initramfs: $*; powering off\" >/dev/console\n"
	"\tsleep 1\n"
	"\tpoweroff -f\n"
	"\texit 1\n"
	"}\n"
	"\n"
	"# wait_for TEST PATH: until [ TEST PATH ] holds, at most 500 x 10 ms (drivers probe "
	"while\n"
	"# insmod runs, so this normally passes at once)\n"
	"wait_for() {\n"
	"\tn=0\n"
	"\twhile ! [ \"$1\" \"$2\" ]; do\n"
	"\t\tn=$((n + 1))\n"
	"\t\t[ \"$n\" -le 500 ] || return 1\n"
	"\t\tsleep 0.01\n"
	"\tdone\n"
	"}\n"
	"\n"
	"mount -t proc proc /proc || die \"cannot mount /proc\"\n"
	"mount -t sysfs sysfs /sys || die \"cannot mount /sys\"\n"
	"mount -t devtmpfs devtmpfs /dev || die \"cannot mount /dev\"\n"
	"while read -r mod; do\n"
	"\t[ -n \"$mod\" ] || continue\n"
	"\tinsmod \"/lib/modules/$mod\" || echo \"initramfs: insmod $mod failed\" >/dev/console\n"
	"done </lib/modules/load.order\n"
	"\n"
	"root=$(cmdline_get root)\n"
	"root=${root:-/dev/vda}\n"
	"fstype=$(cmdline_get rootfstype)\n"
	"fstype=${fstype:-ext4}\n"
	"init=$(cmdline_get init)\n"
	"init=${init:-/sbin/init}\n"
	"mode=rw\n"
	"for arg in $(cat /proc/cmdline); do\n"
	"\t[ \"$arg\" = ro ] && mode=ro\n"
	"done\n"
	"parse_ip \"$(cmdline_get ip)\"\n"
	"\n"
	"case $root in\n"
	"/dev/*) ;;\n"
	"*) die \"root=$root: only /dev/ paths are supported\" ;;\n"
	"esac\n"
	"wait_for -b \"$root\" || die \"no root disk $root\"\n"
	"if [ -n \"$ip_addr\" ]; then\n"
	"\twait_for -e \"/sys/class/net/$ip_dev\" || die \"no network device $ip_dev\"\n"
	"\tnet_up || die \"cannot configure $ip_dev\"\n"
	"fi\n"
	"mount -t \"$fstype\" -o \"$mode\" \"$root\" /newroot || die \"cannot mount $root\"\n"
	"[ -e \"/newroot$init\" ] || [ -L \"/newroot$init\" ] || die \"no $init on $root\"\n"
	"for d in dev proc sys; do\n"
	"\tif [ -d \"/newroot/$d\" ]; then\n"
	"\t\tmount --move \"/$d\" \"/newroot/$d\"\n"
	"\telse\n"
	"\t\tumount \"/$d\"\n"
	"\tfi\n"
	"done\n"
	"exec switch_root /newroot \"$init\"\n";

#define SISTEMO_INIT_MOUNTS                                                                        \
	"say() {\n"                                                                                \
	"\techo \"sistemo-init: $*\" >/dev/console 2>/dev/null || echo \"sistemo-init: $*\"\n"     \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"mounted() {\n"                                                                            \
	"\tgrep -q \"^[^ ]* $1 \" /proc/mounts 2>/dev/null\n"                                      \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"mount_api() {\n"                                                                          \
	"\t[ -e /proc/self ] || mount -t proc -o nosuid,nodev,noexec proc /proc ||\n"              \
	"\t\tsay \"cannot mount /proc\"\n"                                                         \
	"\tmounted /sys || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys ||\n"                  \
	"\t\tsay \"cannot mount /sys\"\n"                                                          \
	"\tmounted /dev || mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev ||\n"               \
	"\t\tsay \"cannot mount /dev\"\n"                                                          \
	"\tmkdir -p /dev/pts /dev/shm\n"                                                           \
	"\tmounted /dev/pts ||\n"                                                                  \
	"\t\tmount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=000 devpts /dev/pts ||\n"    \
	"\t\tsay \"cannot mount /dev/pts\"\n"                                                      \
	"\tmounted /dev/shm || mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm ||\n"       \
	"\t\tsay \"cannot mount /dev/shm\"\n"                                                      \
	"\tmkdir -p /run\n"                                                                        \
	"\tmounted /run || mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run ||\n"               \
	"\t\tsay \"cannot mount /run\"\n"                                                          \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# hostname, /etc/hostname, /etc/hosts and /etc/resolv.conf from sistemo.name= and ip=\n"  \
	"name_machine() {\n"                                                                       \
	"\tname=$(cmdline_get sistemo.name)\n"                                                     \
	"\tcase $name in\n"                                                                        \
	"\t'' | *[!A-Za-z0-9.-]*) say \"no valid sistemo.name, hostname kept\"; name= ;;\n"        \
	"\tesac\n"                                                                                 \
	"\tif [ -n \"$name\" ]; then\n"                                                            \
	"\t\thostname \"$name\" 2>/dev/null || echo \"$name\" >/proc/sys/kernel/hostname\n"        \
	"\t\trm -f /etc/hostname\n"                                                                \
	"\t\techo \"$name\" >/etc/hostname\n"                                                      \
	"\tfi\n"                                                                                   \
	"\trm -f /etc/hosts\n"                                                                     \
	"\techo \"127.0.0.1 localhost\" >/etc/hosts\n"                                             \
	"\techo \"::1 localhost ip6-localhost ip6-loopback\" >>/etc/hosts\n"                       \
	"\tif [ -n \"$ip_addr\" ] && [ -n \"$name\" ]; then\n"                                     \
	"\t\techo \"$ip_addr $name\" >>/etc/hosts\n"                                               \
	"\tfi\n"                                                                                   \
	"\tif [ -n \"$ip_gw\" ]; then\n"                                                           \
	"\t\trm -f /etc/resolv.conf\n"                                                             \
	"\t\techo \"nameserver $ip_gw\" >/etc/resolv.conf\n"                                       \
	"\tfi\n"                                                                                   \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# the initramfs or the kernel configured eth0 already: check, and fix what is missing\n"  \
	"ensure_net() {\n"                                                                         \
	"\t[ -n \"$ip_addr\" ] || return 0\n"                                                      \
	"\tif [ ! -e \"/sys/class/net/$ip_dev\" ]; then\n"                                         \
	"\t\tsay \"no network device $ip_dev\"\n"                                                  \
	"\telif ! command -v ip >/dev/null 2>&1; then\n"                                           \
	"\t\tsay \"no ip command: $ip_dev left as it is\"\n"                                       \
	"\telse\n"                                                                                 \
	"\t\tnet_up || say \"cannot configure $ip_dev\"\n"                                         \
	"\tfi\n"                                                                                   \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# sistemo.volumes=NAME:vdb,NAME:vdc: each data volume (ext4) mounted at /mnt/NAME\n"      \
	"mount_volumes() {\n"                                                                      \
	"\tvols=$(cmdline_get sistemo.volumes)\n"                                                  \
	"\t[ -n \"$vols\" ] || return 0\n"                                                         \
	"\toldifs=$IFS\n"                                                                          \
	"\tIFS=,\n"                                                                                \
	"\tset -- $vols\n"                                                                         \
	"\tIFS=$oldifs\n"                                                                          \
	"\tfor vol in \"$@\"; do\n"                                                                \
	"\t\tvol_name=${vol%%:*}\n"                                                                \
	"\t\tvol_dev=${vol#*:}\n"                                                                  \
	"\t\tcase $vol_name in\n"                                                                  \
	"\t\t'' | *[!a-z0-9_-]*) say \"bad volume name '$vol_name': skipped\"; continue ;;\n"      \
	"\t\tesac\n"                                                                               \
	"\t\tcase $vol_dev in\n"                                                                   \
	"\t\tvd[b-z]) ;;\n"                                                                        \
	"\t\t*) say \"bad device '$vol_dev' for volume $vol_name: skipped\"; continue ;;\n"        \
	"\t\tesac\n"                                                                               \
	"\t\tmounted \"/mnt/$vol_name\" && continue\n"                                             \
	"\t\tmkdir -p \"/mnt/$vol_name\" &&\n"                                                     \
	"\t\t\tmount -t ext4 \"/dev/$vol_dev\" \"/mnt/$vol_name\" ||\n"                            \
	"\t\t\tsay \"cannot mount volume $vol_name (/dev/$vol_dev) at /mnt/$vol_name\"\n"          \
	"\tdone\n"                                                                                 \
	"}\n"

#define SISTEMO_INIT_SERVICES                                                                      \
	"# each machine makes its own host keys (images carry none); no RSA: 30 s under TCG\n"     \
	"host_keys() {\n"                                                                          \
	"\tif [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null 2>&1; then\n"              \
	"\t\tmkdir -p /etc/ssh\n"                                                                  \
	"\t\tfor type in ed25519 ecdsa; do\n"                                                      \
	"\t\t\tkey=/etc/ssh/ssh_host_${type}_key\n"                                                \
	"\t\t\t[ -s \"$key\" ] && continue\n"                                                      \
	"\t\t\trm -f \"$key\" \"$key.pub\"\n"                                                      \
	"\t\t\tssh-keygen -q -t \"$type\" -N '' -f \"$key\" </dev/null ||\n"                       \
	"\t\t\t\tsay \"ssh-keygen -t $type failed\"\n"                                             \
	"\t\tdone\n"                                                                               \
	"\tfi\n"                                                                                   \
	"\tif command -v dropbear >/dev/null 2>&1 && command -v dropbearkey >/dev/null 2>&1; "     \
	"then\n"                                                                                   \
	"\t\tkey=/etc/dropbear/dropbear_ed25519_host_key\n"                                        \
	"\t\tmkdir -p /etc/dropbear\n"                                                             \
	"\t\t[ -s \"$key\" ] || dropbearkey -t ed25519 -f \"$key\" >/dev/null 2>&1 ||\n"           \
	"\t\t\tsay \"dropbearkey failed\"\n"                                                       \
	"\tfi\n"                                                                                   \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"start_sshd() {\n"                                                                         \
	"\tif [ -x /usr/sbin/sshd ]; then\n"                                                       \
	"\t\tmkdir -p /run/sshd\n"                                                                 \
	"\t\t/usr/sbin/sshd\n"                                                                     \
	"\telif command -v dropbear >/dev/null 2>&1; then\n"                                       \
	"\t\tmkdir -p /var/run\n"                                                                  \
	"\t\tdropbear -R -s\n"                                                                     \
	"\telse\n"                                                                                 \
	"\t\tsay \"no sshd in the image\"\n"                                                       \
	"\t\treturn 1\n"                                                                           \
	"\tfi\n"                                                                                   \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# port 22 (0016) in state LISTEN (0A), IPv4 or IPv6; at most 200 x 50 ms\n"               \
	"wait_sshd() {\n"                                                                          \
	"\tn=0\n"                                                                                  \
	"\twhile ! grep -qE '^ *[0-9]+: [0-9A-F]+:0016 [0-9A-F]+:[0-9A-F]+ 0A ' \\\n"              \
	"\t\t/proc/net/tcp /proc/net/tcp6 2>/dev/null; do\n"                                       \
	"\t\tn=$((n + 1))\n"                                                                       \
	"\t\t[ \"$n\" -le 200 ] || return 1\n"                                                     \
	"\t\tsleep 0.05\n"                                                                         \
	"\tdone\n"                                                                                 \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# the ACPI power button: busybox acpid runs /etc/acpi/PWRF/00000080; elsewhere a "        \
	"watcher\n"                                                                                \
	"start_power_button() {\n"                                                                 \
	"\tif [ ! -e /dev/input/event0 ]; then\n"                                                  \
	"\t\tsay \"no input device: the power button is ignored\"\n"                               \
	"\t\treturn 1\n"                                                                           \
	"\tfi\n"                                                                                   \
	"\tif ! busybox --list 2>/dev/null | grep -qx acpid; then\n"                               \
	"\t\t\"$0\" power-button </dev/null >/dev/null 2>&1 &\n"                                   \
	"\t\treturn 0\n"                                                                           \
	"\tfi\n"                                                                                   \
	"\taction=/etc/acpi/PWRF/00000080\n"                                                       \
	"\tif [ ! -e \"$action\" ]; then\n"                                                        \
	"\t\tmkdir -p /etc/acpi/PWRF\n"                                                            \
	"\t\tprintf '#!/bin/sh\\nexec poweroff\\n' >\"$action\"\n"                                 \
	"\t\tchmod 0755 \"$action\"\n"                                                             \
	"\tfi\n"                                                                                   \
	"\tmkdir -p /var/log\n"                                                                    \
	"\tbusybox acpid\n"                                                                        \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# power_button_watch: powers off at the first event of the input device named \"Power\n"  \
	"# Button\" (sistemo-power-button.service on systemd images: logind needs D-Bus)\n"        \
	"power_button_watch() {\n"                                                                 \
	"\tdev=\n"                                                                                 \
	"\tset +f\n"                                                                               \
	"\tfor d in /sys/class/input/event*; do\n"                                                 \
	"\t\tif [ \"$(cat \"$d/device/name\" 2>/dev/null)\" = \"Power Button\" ]; then\n"          \
	"\t\t\tdev=/dev/input/${d##*/}\n"                                                          \
	"\t\tfi\n"                                                                                 \
	"\tdone\n"                                                                                 \
	"\tset -f\n"                                                                               \
	"\tif [ -z \"$dev\" ]; then\n"                                                             \
	"\t\tsay \"no power button input device\"\n"                                               \
	"\t\treturn 1\n"                                                                           \
	"\tfi\n"                                                                                   \
	"\t# evdev reads whole events: a 1-byte read is EINVAL\n"                                  \
	"\tdd if=\"$dev\" of=/dev/null bs=4096 count=1 2>/dev/null || return 1\n"                  \
	"\tsay \"power button: powering off\"\n"                                                   \
	"\tpoweroff || kill -USR2 1\n"                                                             \
	"}\n"

#define SISTEMO_INIT_PID1                                                                          \
	"power_off() {\n"                                                                          \
	"\tsay \"powering off\"\n"                                                                 \
	"\tkill -TERM -1 2>/dev/null\n"                                                            \
	"\tsleep 1\n"                                                                              \
	"\tkill -KILL -1 2>/dev/null\n"                                                            \
	"\tsync\n"                                                                                 \
	"\tumount -a -r 2>/dev/null\n"                                                             \
	"\tmount -o remount,ro / 2>/dev/null\n"                                                    \
	"\tpoweroff -f\n"                                                                          \
	"\techo o >/proc/sysrq-trigger\n"                                                          \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# no init of its own: stay PID 1, reap orphans, power off on poweroff/reboot/C-A-D\n"     \
	"stay_pid1() {\n"                                                                          \
	"\techo 0 >/proc/sys/kernel/ctrl-alt-del 2>/dev/null\n"                                    \
	"\ttrap power_off TERM USR1 USR2 INT\n"                                                    \
	"\twhile :; do\n"                                                                          \
	"\t\tsleep 3600 &\n"                                                                       \
	"\t\twait $!\n"                                                                            \
	"\tdone\n"                                                                                 \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"# the image's OCI command (docs/images.md), once the machine is ready: in the "           \
	"background,\n"                                                                            \
	"# its output in /var/log/sistemo-entrypoint.log, its exit status in\n"                    \
	"# /run/sistemo-entrypoint.status; sistemo-init stays PID 1 and reaps it\n"                \
	"run_entrypoint() {\n"                                                                     \
	"\t[ -f /etc/sistemo/entrypoint ] || return 1\n"                                           \
	"\tsay \"starting the image's entrypoint\"\n"                                              \
	"\tmkdir -p /var/log\n"                                                                    \
	"\t(\n"                                                                                    \
	"\t\t/bin/sh /etc/sistemo/entrypoint </dev/null >>/var/log/sistemo-entrypoint.log 2>&1\n"  \
	"\t\tstatus=$?\n"                                                                          \
	"\t\techo \"$status\" >/run/sistemo-entrypoint.status\n"                                   \
	"\t\tsay \"the entrypoint exited with status $status\"\n"                                  \
	"\t) &\n"                                                                                  \
	"}\n"                                                                                      \
	"\n"                                                                                       \
	"hand_over() {\n"                                                                          \
	"\tself=$(readlink -f \"$0\" 2>/dev/null || echo \"$0\")\n"                                \
	"\ttarget=$(readlink -f /sbin/init 2>/dev/null || echo)\n"                                 \
	"\tif [ -n \"$target\" ] && [ -x \"$target\" ] && [ \"$target\" != \"$self\" ]; then\n"    \
	"\t\texec /sbin/init\n"                                                                    \
	"\tfi\n"                                                                                   \
	"\tstay_pid1\n"                                                                            \
	"}\n"

const char kit_script_sistemo_init[] =
	"#!/bin/sh\n"
	"# /sbin/sistemo-init: PID 1 of a sistemo machine (docs/guest.md). Mounts, names the\n"
	"# machine and checks eth0; then hands over to systemd, or starts sshd and a power-button\n"
	"# handler, prints the ready marker and hands over to the image's own init.\n"
	"set -u\n"
	"set -f\n"
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
	"export PATH\n"
	"umask 022\n"
	"\n" SH_LIB "\n" SISTEMO_INIT_MOUNTS "\n" SISTEMO_INIT_SERVICES "\n" SISTEMO_INIT_PID1 "\n"
	"if [ \"${1:-}\" = power-button ]; then\n"
	"\tpower_button_watch\n"
	"\texit\n"
	"fi\n"
	"if [ \"$$\" != 1 ]; then\n"
	"\techo \"sistemo-init: must run as PID 1\" >&2\n"
	"\texit 1\n"
	"fi\n"
	"mount_api\n"
	"parse_ip \"$(cmdline_get ip)\"\n"
	"name_machine\n"
	"mount_volumes\n"
	"ensure_net\n"
	"host_keys\n"
	"case $(readlink -f /sbin/init 2>/dev/null) in\n"
	"*/systemd) exec /sbin/init ;;\n"
	"esac\n"
	"if start_sshd && wait_sshd; then\n"
	"\tstart_power_button\n"
	"\techo \"sistemo: ready\" >/dev/console\n"
	"else\n"
	"\tsay \"sshd is not listening on port 22: not ready\"\n"
	"\tstart_power_button\n"
	"fi\n"
	"if run_entrypoint; then\n"
	"\tstay_pid1\n"
	"fi\n"
	"hand_over\n";

const char kit_systemd_power_unit[] =
	"# Injected by sistemo: powers off on the ACPI power button (QMP system_powerdown), also\n"
	"# where systemd-logind does not run (it needs D-Bus).\n"
	"[Unit]\n"
	"Description=sistemo power button\n"
	"\n"
	"[Service]\n"
	"ExecStart=/sbin/sistemo-init power-button\n"
	"\n"
	"[Install]\n"
	"WantedBy=multi-user.target\n";

const char kit_systemd_ready_unit[] =
	"# Injected by sistemo: prints the ready marker once sshd runs (docs/guest.md).\n"
	"[Unit]\n"
	"Description=sistemo ready marker on the serial console\n"
	"After=ssh.service sshd.service network.target\n"
	"\n"
	"[Service]\n"
	"Type=oneshot\n"
	"ExecStart=/bin/sh -c 'echo \"sistemo: ready\" > /dev/console'\n"
	"\n"
	"[Install]\n"
	"WantedBy=multi-user.target\n";

static const char tiny_inittab[] =
	"# busybox init, sistemo tiny image: /sbin/sistemo-init already mounted the API\n"
	"# filesystems, named the machine and started dropbear and acpid before handing over.\n"
	"::ctrlaltdel:/sbin/poweroff\n"
	"::shutdown:/etc/init.d/shutdown\n";

static const char tiny_shutdown[] =
	"#!/bin/sh\n"
	"# Run by busybox init before it kills everything and powers off: stop the daemons,\n"
	"# flush, and leave the root disk clean (read-only).\n"
	"kill -TERM -1 2>/dev/null\n"
	"n=0\n"
	"while [ \"$n\" -lt 40 ] && pidof dropbear acpid >/dev/null 2>&1; do\n"
	"\tsleep 0.05\n"
	"\tn=$((n + 1))\n"
	"done\n"
	"sync\n"
	"umount -a -r 2>/dev/null\n"
	"mount -o remount,ro / 2>/dev/null\n"
	"exit 0\n";

static const char tiny_power_button[] =
	"#!/bin/sh\n"
	"# busybox acpid runs this on an ACPI power-button press (QEMU: system_powerdown).\n"
	"exec /sbin/poweroff\n";

const struct kit_file kit_tiny_files[] = {
	{"etc/passwd", 0644, "root:x:0:0:root:/root:/bin/sh\n"},
	{"etc/group", 0644, "root:x:0:\ntty:x:5:\n"},
	/* no password: key authentication only */
	{"etc/shadow", 0600, "root:*:19000:0:99999:7:::\n"},
	{"etc/shells", 0644, "/bin/sh\n/bin/ash\n"},
	{"etc/profile", 0644,
	 "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"},
	{"etc/os-release", 0644,
	 "PRETTY_NAME=\"sistemo tiny (busybox, dropbear)\"\nNAME=\"sistemo tiny\"\n"
	 "ID=sistemo-tiny\n"},
	{"etc/hostname", 0644, "sistemo\n"},
	{"etc/inittab", 0644, tiny_inittab},
	{"etc/init.d/shutdown", 0755, tiny_shutdown},
	{"etc/acpi/PWRF/00000080", 0755, tiny_power_button},
};
const size_t kit_tiny_files_count = ARRAY_SIZE(kit_tiny_files);
