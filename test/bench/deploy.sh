#!/usr/bin/env bash
# Deploy -> ready: `sistemo machine deploy tiny` through the real daemon (record, disk clone,
# inject, netns, boot, wait for the guest's ready marker) versus the identical QEMU command
# launched by hand: the argv read from the daemon's own VMM (/proc/<pid>/cmdline), the same
# kernel, initrd and cmdline, a copy of that machine's root disk and a netns/TAP built with `ip`
# as Sistemo does, timed from launch to the `sistemo: ready` line on its console. Rounds
# alternate the two sides so that machine noise falls on both alike.
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

READY_SEC=120 # one boot, launch to marker; TCG boots take ~10 s here
HAND="$TEST_DIR/hand"
GOLDEN="$TEST_DIR/golden.ext4"
HAND_PID= TAIL_PID= HAND_NS=
declare -a HAND_ARGV WALL_MS BOOT_MS HAND_MS

# Our own processes and namespace first, by PID; then lib.sh's cleanup (daemon, its VMMs, dir).
bench_cleanup() {
	local rc=$?
	hand_stop
	(exit $rc)
	cleanup
}
trap bench_cleanup EXIT

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# --- the seed: one deploy through the daemon builds the kit and gives the exact VMM argv ------
seed() {
	local st pid id run_dir arg
	sistemo machine deploy tiny --name seed --memory 256M --vcpus 1 >/dev/null ||
		fail "seed deploy"
	st=$(sistemo machine status seed -o json)
	pid=$(jq -r .pid <<<"$st") id=$(jq -r .id <<<"$st")
	run_dir="$SISTEMO_DATA_DIR/vms/$id"
	mapfile -d '' HAND_ARGV <"/proc/$pid/cmdline"
	[ "${#HAND_ARGV[@]}" -gt 10 ] || fail "cannot read the VMM argv of pid $pid"
	# Same command, our own files: the run dir becomes ours, and the QMP socket the daemon
	# passes as an inherited fd becomes a path QEMU listens on itself.
	for i in "${!HAND_ARGV[@]}"; do
		arg=${HAND_ARGV[$i]//$run_dir/$HAND}
		[[ "$arg" == socket,id=qmp,fd=* ]] && arg="socket,id=qmp,path=$HAND/qmp.sock,server=on,wait=off"
		HAND_ARGV[$i]=$arg
	done
	sistemo machine stop seed >/dev/null || fail "seed stop"
	cp --sparse=always "$run_dir/rootfs.ext4" "$GOLDEN"
	# The seed booted once and made its SSH host key; every by-hand boot makes its own again,
	# as each daemon deploy does.
	debugfs -w -R "rm /etc/dropbear/dropbear_ed25519_host_key" "$GOLDEN" >/dev/null 2>&1
	debugfs -R "stat /etc/dropbear/dropbear_ed25519_host_key" "$GOLDEN" 2>&1 |
		grep -q "not found" || fail "the seed's host key is still in the by-hand disk"
	sistemo machine delete seed -y >/dev/null || fail "seed delete"
}

# --- the daemon's side -------------------------------------------------------------------------
daemon_round() {
	local r=$1 t0 t1
	t0=$(now_ms)
	sistemo machine deploy tiny --name "bench-$r" --memory 256M --vcpus 1 >/dev/null ||
		fail "deploy bench-$r"
	t1=$(now_ms)
	WALL_MS+=($((t1 - t0)))
	BOOT_MS+=("$(jq -r .boot_ms <<<"$(sistemo machine status "bench-$r" -o json)")")
	sistemo machine delete "bench-$r" -y >/dev/null || fail "delete bench-$r"
}

# --- by hand --------------------------------------------------------------------------------
# Sistemo's VMNetwork.Create with `ip`, with the link names the QEMU argv expects (tap0).
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

# Stops what hand_round started, by PID (SIGKILL: its disk is thrown away), and its netns.
hand_stop() {
	if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; wait "$TAIL_PID" 2>/dev/null || true; fi
	if [ -n "$HAND_PID" ]; then kill -KILL "$HAND_PID" 2>/dev/null || true; wait "$HAND_PID" 2>/dev/null || true; fi
	if [ -n "$HAND_NS" ]; then ip netns del "$HAND_NS" 2>/dev/null || true; fi
	TAIL_PID= HAND_PID= HAND_NS=
}

hand_round() {
	local r=$1 t0 t1 fd
	rm -rf "$HAND" && mkdir -p "$HAND"
	cp --sparse=always "$GOLDEN" "$HAND/rootfs.ext4"
	: >"$HAND/console.log"
	HAND_NS="ns-hand$r"
	hand_plumb "$HAND_NS" "vo-hand$r" "vi-hand$r"
	# tail -F follows the console with inotify: the marker is seen as soon as it is written.
	exec {fd}< <(exec timeout "$READY_SEC" tail -n +1 -F "$HAND/console.log" 2>/dev/null)
	TAIL_PID=$!
	t0=$(now_ms)
	ip netns exec "$HAND_NS" "${HAND_ARGV[@]}" </dev/null >/dev/null 2>"$HAND/vmm.log" &
	HAND_PID=$!
	grep -q -m1 "sistemo: ready" <&"$fd" || {
		tail -n 5 "$HAND/console.log" "$HAND/vmm.log"
		fail "by-hand round $r: no ready marker within ${READY_SEC}s"
	}
	t1=$(now_ms)
	exec {fd}<&-
	HAND_MS+=($((t1 - t0)))
	hand_stop
}

# --- report -------------------------------------------------------------------------------
# median and min/max of the arguments
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%d %d %d", v[int((NR+1)/2)], v[1], v[NR]}'; }

report() {
	local -a over w b h o
	for i in "${!WALL_MS[@]}"; do over+=($((WALL_MS[i] - BOOT_MS[i]))); done
	read -ra w <<<"$(stats "${WALL_MS[@]}")"
	read -ra b <<<"$(stats "${BOOT_MS[@]}")"
	read -ra h <<<"$(stats "${HAND_MS[@]}")"
	read -ra o <<<"$(stats "${over[@]}")"
	echo "deploy -> ready, 'tiny' (256M, 1 vCPU, $(grep -q -- '-accel kvm' <<<"${HAND_ARGV[*]}" && echo KVM || echo TCG)), $ROUNDS rounds each, alternating"
	printf '%-48s %9s %9s %9s\n' "" "median ms" "min ms" "max ms"
	printf '%-48s %9d %9d %9d\n' "sistemo machine deploy (wall)" "${w[@]}"
	printf '%-48s %9d %9d %9d\n' "  of which boot_ms (VMM start -> ready)" "${b[@]}"
	printf '%-48s %9d %9d %9d\n' "  daemon overhead (wall - boot_ms)" "${o[@]}"
	printf '%-48s %9d %9d %9d\n' "same QEMU by hand (launch -> ready)" "${h[@]}"
	echo "per round (wall/boot/hand ms): $(for i in "${!WALL_MS[@]}"; do printf '%s/%s/%s ' "${WALL_MS[i]}" "${BOOT_MS[i]}" "${HAND_MS[i]}"; done)"
	awk -v w="${w[0]}" -v b="${b[0]}" -v h="${h[0]}" 'BEGIN {
		printf "ratio deploy wall / by hand:  %.3fx (median)\n", w / h
		printf "ratio boot_ms / by hand:      %.3fx (median)\n", b / h
		printf "target deploy wall <= 1.10x by hand (median): %.3fx %s\n", w / h,
			w / h <= 1.10 ? "PASS" : "MISS" }'
}

start_daemon
echo "seeding: kit, image and the VMM command line (one deploy, untimed)..." >&2
seed
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then daemon_round "$r"; hand_round "$r"; else hand_round "$r"; daemon_round "$r"; fi
	echo "round $r/$ROUNDS: deploy ${WALL_MS[-1]} ms (boot ${BOOT_MS[-1]}), by hand ${HAND_MS[-1]} ms" >&2
done
report
