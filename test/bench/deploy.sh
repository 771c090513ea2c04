#!/usr/bin/env bash
# Deploy -> ready: `sistemo machine deploy tiny` through the real daemon (record, disk clone,
# inject, netns, boot, wait for the guest's ready marker) versus the identical QEMU command
# launched by hand: the argv read from the daemon's own VMM (/proc/<pid>/cmdline), the same
# kernel, initrd and cmdline, a copy of that machine's root disk, a netns/TAP built with `ip`,
# timed from launch to the `sistemo: ready` line on its console. When the daemon puts its VMM
# under a CPU limit (cgroup), a third side runs the by-hand command under the same limit, which
# separates the cost of the limit from the daemon's own overhead. Rounds alternate the sides so
# that machine noise falls on all alike.
# Target: deploy wall <= 1.1x the by-hand launch -> ready (median).
#
# Usage: SISTEMO_BIN=build/sistemo bash test/bench/deploy.sh [ROUNDS]   (as root; it re-executes
# itself in private network and mount namespaces, with its own data dir, like the integration
# tests; ci/bench.sh runs it)
ROUNDS=${1:-5}
. "$(dirname "$0")/../integration/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
command -v debugfs >/dev/null || skip "needs debugfs (e2fsprogs)"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"
[[ "$ROUNDS" =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] ||
	{ echo "usage: deploy.sh [ROUNDS 1..20]" >&2; exit 2; }

READY_SEC=120 # one boot, launch to marker; TCG boots take ~10-15 s here
HAND="$TEST_DIR/hand"
GOLDEN="$TEST_DIR/golden.ext4"
HAND_PID= TAIL_PID= HAND_NS= HAND_CG= LAST_MS=0
LIMIT_DIR= LIMIT_DESC=none
declare -a HAND_ARGV LIMIT_FILES WALL_MS BOOT_MS HAND_MS LIM_MS

# Ours first, by PID (the by-hand VMM, its console reader, netns, cgroup); then lib.sh's
# cleanup (the daemon, its VMMs, the data dir).
bench_cleanup() {
	local rc=$?
	hand_stop
	(exit $rc)
	cleanup
}
trap bench_cleanup EXIT

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

cli_fail() {
	tail -n 5 "$TEST_DIR/cli.log" >&2
	fail "$@"
}

# --- the CPU limit the daemon put its VMM under ----------------------------------------------
# Sets LIMIT_DIR (the VMM's cgroup directory) and LIMIT_FILES (file=value, in write order) when
# the VMM is in a cgroup with a CPU quota: v2 cpu.max, or v1 cpu.cfs_period_us + quota.
cpu_limit_of() {
	local pid=$1 ctrls path mnt q p
	while IFS=: read -r _ ctrls path; do
		if [ -z "$ctrls" ]; then
			mnt=$(findmnt -rn -t cgroup2 -o TARGET | head -n1)
			[ -n "$mnt" ] && [ -f "$mnt$path/cpu.max" ] || continue
			q=$(cat "$mnt$path/cpu.max")
			[[ "$q" == max* ]] && continue
			LIMIT_DIR=$mnt$path LIMIT_FILES=("cpu.max=$q") LIMIT_DESC="cpu.max '$q' in $path"
			return
		elif [[ ",$ctrls," == *,cpu,* ]]; then
			mnt=$(findmnt -rn -t cgroup -o TARGET,OPTIONS | awk '$2 ~ /(^|,)cpu(,|$)/ {print $1; exit}')
			[ -n "$mnt" ] && [ -f "$mnt$path/cpu.cfs_quota_us" ] || continue
			q=$(cat "$mnt$path/cpu.cfs_quota_us") p=$(cat "$mnt$path/cpu.cfs_period_us")
			[ "$q" -gt 0 ] || continue
			LIMIT_DIR=$mnt$path LIMIT_FILES=("cpu.cfs_period_us=$p" "cpu.cfs_quota_us=$q")
			LIMIT_DESC="cfs quota $q us per $p us (cgroup v1) in $path"
			return
		fi
	done <"/proc/$pid/cgroup"
}

# --- the seed: one deploy through the daemon builds the kit and gives the exact VMM argv ------
seed() {
	local st pid id run_dir arg
	sistemo machine deploy tiny --name seed --memory 256M --vcpus 1 >/dev/null 2>>"$TEST_DIR/cli.log" ||
		cli_fail "seed deploy"
	st=$(sistemo machine status seed -o json)
	pid=$(jq -r .pid <<<"$st") id=$(jq -r .id <<<"$st")
	run_dir="$SISTEMO_DATA_DIR/vms/$id"
	mapfile -d '' HAND_ARGV <"/proc/$pid/cmdline"
	[ "${#HAND_ARGV[@]}" -gt 10 ] || fail "cannot read the VMM argv of pid $pid"
	cpu_limit_of "$pid"
	# Same command, our own files: the run dir becomes ours, and the QMP socket the daemon
	# passes as an inherited fd becomes a path QEMU listens on itself.
	for i in "${!HAND_ARGV[@]}"; do
		arg=${HAND_ARGV[$i]//$run_dir/$HAND}
		[[ "$arg" == socket,id=qmp,fd=* ]] && arg="socket,id=qmp,path=$HAND/qmp.sock,server=on,wait=off"
		HAND_ARGV[$i]=$arg
	done
	sistemo machine stop seed >/dev/null 2>>"$TEST_DIR/cli.log" || cli_fail "seed stop"
	cp --sparse=always "$run_dir/rootfs.ext4" "$GOLDEN"
	# The seed booted once and made its SSH host key; every by-hand boot makes its own again,
	# as each daemon deploy does.
	debugfs -w -R "rm /etc/dropbear/dropbear_ed25519_host_key" "$GOLDEN" >/dev/null 2>&1
	debugfs -R "stat /etc/dropbear/dropbear_ed25519_host_key" "$GOLDEN" 2>&1 |
		grep -q "not found" || fail "the seed's host key is still in the by-hand disk"
	sistemo machine delete seed -y >/dev/null 2>>"$TEST_DIR/cli.log" || cli_fail "seed delete"
}

# --- the daemon's side -------------------------------------------------------------------------
daemon_round() {
	local r=$1 t0 t1
	t0=$(now_ms)
	sistemo machine deploy tiny --name "bench-$r" --memory 256M --vcpus 1 >/dev/null 2>>"$TEST_DIR/cli.log" ||
		cli_fail "deploy bench-$r"
	t1=$(now_ms)
	WALL_MS+=($((t1 - t0)))
	BOOT_MS+=("$(jq -r .boot_ms <<<"$(sistemo machine status "bench-$r" -o json)")")
	sistemo machine delete "bench-$r" -y >/dev/null 2>>"$TEST_DIR/cli.log" || cli_fail "delete bench-$r"
}

# --- by hand --------------------------------------------------------------------------------
# The machine's topology with `ip`, as Sistemo's VMNetwork.Create builds it, with the names the
# QEMU argv expects (tap0) and the daemon uses (eth0, br0), on the daemon's host bridge.
hand_plumb() {
	local ns=$1 vo=$2 vi=$3
	ip netns add "$ns"
	ip link add "$vo" type veth peer name "$vi"
	ip link set "$vo" master sistemo0
	ip link set "$vo" up
	ip link set "$vi" netns "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" link add br0 type bridge
	ip -n "$ns" link set br0 up
	ip -n "$ns" link set "$vi" name eth0
	ip -n "$ns" link set eth0 master br0 up
	ip -n "$ns" tuntap add tap0 mode tap
	ip -n "$ns" link set tap0 master br0 up
}

# A sibling of the daemon's VMM cgroup with the same CPU limit.
hand_cgroup() {
	local kv
	HAND_CG="$(dirname "$LIMIT_DIR")/bench-hand-$$"
	mkdir "$HAND_CG"
	for kv in "${LIMIT_FILES[@]}"; do echo "${kv#*=}" >"$HAND_CG/${kv%%=*}"; done
}

# Stops what hand_round started, by PID (SIGKILL: its disk is thrown away), its netns, cgroup.
hand_stop() {
	if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; wait "$TAIL_PID" 2>/dev/null || true; fi
	if [ -n "$HAND_PID" ]; then kill -KILL "$HAND_PID" 2>/dev/null || true; wait "$HAND_PID" 2>/dev/null || true; fi
	if [ -n "$HAND_NS" ]; then ip netns del "$HAND_NS" 2>/dev/null || true; fi
	if [ -n "$HAND_CG" ]; then rmdir "$HAND_CG" 2>/dev/null || true; fi
	TAIL_PID= HAND_PID= HAND_NS= HAND_CG=
}

# hand_round ROUND [limited]: the launch -> ready time in ms, in LAST_MS.
hand_round() {
	local r=$1 limited=${2:-} t0 t1 fd
	rm -rf "$HAND" && mkdir -p "$HAND"
	cp --sparse=always "$GOLDEN" "$HAND/rootfs.ext4"
	: >"$HAND/console.log"
	HAND_NS="ns-hand$r$limited"
	hand_plumb "$HAND_NS" "vo-hand$r$limited" "vi-hand$r$limited"
	[ -z "$limited" ] || hand_cgroup
	# tail -F follows the console with inotify: the marker is seen as soon as it is written.
	exec {fd}< <(exec timeout "$READY_SEC" tail -n +1 -F "$HAND/console.log" 2>/dev/null)
	TAIL_PID=$!
	t0=$(now_ms)
	# the cgroup is joined before exec, as the daemon's spawn does
	bash -c '[ -z "$1" ] || echo $$ >"$1/cgroup.procs"; shift; exec "$@"' _ "$HAND_CG" \
		ip netns exec "$HAND_NS" "${HAND_ARGV[@]}" </dev/null >/dev/null 2>"$HAND/vmm.log" &
	HAND_PID=$!
	grep -q -m1 "sistemo: ready" <&"$fd" || {
		tail -n 5 "$HAND/console.log" "$HAND/vmm.log" >&2
		fail "by-hand round $r: no ready marker within ${READY_SEC}s"
	}
	t1=$(now_ms)
	exec {fd}<&-
	hand_stop
	LAST_MS=$((t1 - t0))
}

# One round: the sides in an order that rotates from round to round.
round() {
	local r=$1 n=2 k side
	[ -z "$LIMIT_DIR" ] || n=3
	for k in $(seq 0 $((n - 1))); do
		side=$(((r + k) % n))
		case $side in
		0) daemon_round "$r" ;;
		1) hand_round "$r" && HAND_MS+=("$LAST_MS") ;;
		2) hand_round "$r" l && LIM_MS+=("$LAST_MS") ;;
		esac
	done
}

# --- report -------------------------------------------------------------------------------
# median, min and max of the arguments
stats() {
	printf '%s\n' "$@" | sort -n |
		awk '{v[NR]=$1} END {printf "%d %d %d", (v[int((NR+1)/2)] + v[int(NR/2)+1]) / 2, v[1], v[NR]}'
}

row() { printf '%-52s %9d %9d %9d\n' "$1" $2; }

report() {
	local -a over
	local w b h l=0 o accel=TCG
	for i in "${!WALL_MS[@]}"; do over+=($((WALL_MS[i] - BOOT_MS[i]))); done
	w=$(stats "${WALL_MS[@]}") b=$(stats "${BOOT_MS[@]}") h=$(stats "${HAND_MS[@]}")
	o=$(stats "${over[@]}")
	grep -q -- 'kvm' <<<"${HAND_ARGV[*]}" && accel=KVM
	echo "deploy -> ready, 'tiny' (256M, 1 vCPU, $accel), $ROUNDS rounds per side, order rotating"
	echo "daemon's VMM CPU limit: $LIMIT_DESC"
	printf '%-52s %9s %9s %9s\n' "" "median ms" "min ms" "max ms"
	row "sistemo machine deploy (wall)" "$w"
	row "  boot_ms it reports (VMM start -> ready)" "$b"
	row "  daemon overhead (wall - boot_ms)" "$o"
	row "same QEMU command by hand (launch -> ready)" "$h"
	if [ -n "$LIMIT_DIR" ]; then
		l=$(stats "${LIM_MS[@]}")
		row "same, by hand, under the daemon's CPU limit" "$l"
	fi
	for i in "${!WALL_MS[@]}"; do
		echo "round $((i + 1)) ms: deploy ${WALL_MS[i]} (boot ${BOOT_MS[i]}), by hand ${HAND_MS[i]}${LIM_MS[i]:+, limited ${LIM_MS[i]}}"
	done
	awk -v w="${w%% *}" -v b="${b%% *}" -v h="${h%% *}" -v l="${l%% *}" -v o="${o%% *}" 'BEGIN {
		printf "ratio deploy wall / by hand:                 %.3fx (median)\n", w / h
		printf "ratio boot_ms / by hand:                     %.3fx (median)\n", b / h
		if (l > 0) {
			printf "ratio deploy wall / by hand, same CPU limit: %.3fx (median)\n", w / l
			printf "ratio boot_ms / by hand, same CPU limit:     %.3fx (median)\n", b / l
		}
		printf "daemon overhead:                             %d ms, %.1f%% of the deploy (median)\n", o, 100 * o / w
		printf "target deploy wall <= 1.10x by hand (median): %.3fx %s\n", w / h,
			w / h <= 1.10 ? "PASS" : "MISS" }'
}

start_daemon
echo "seeding: kit, image and the VMM command line (one deploy, untimed)..." >&2
seed
for r in $(seq 1 "$ROUNDS"); do
	round "$r"
	i=$((r - 1))
	echo "round $r/$ROUNDS: deploy ${WALL_MS[i]} ms (boot ${BOOT_MS[i]}), by hand ${HAND_MS[i]} ms${LIM_MS[i]:+, limited ${LIM_MS[i]} ms}" >&2
done
report
