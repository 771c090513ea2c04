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
if ! [[ "$ROUNDS" =~ ^[0-9]+$ ]] || [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 20 ]; then
	echo "usage: deploy.sh [ROUNDS 1..20]" >&2
	exit 2
fi
# shellcheck source=../integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
command -v debugfs >/dev/null || skip "needs debugfs (e2fsprogs)"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"

READY_SEC=120 # one boot, launch to marker; TCG boots take ~10-15 s here
HAND="$TEST_DIR/hand"
GOLDEN="$TEST_DIR/golden.ext4"
HAND_PID='' TAIL_PID='' HAND_NS='' HAND_CG='' LAST_MS=0 LAST_CPU=0
LIMIT_DIR='' LIMIT_DESC=none
declare -a HAND_ARGV LIMIT_FILES WALL_MS BOOT_MS HAND_MS LIM_MS WALL_CPU HAND_CPU LIM_CPU

# Ours first, by PID (the by-hand VMM, its console reader, netns, cgroup); then lib.sh's
# cleanup (the daemon, its VMMs, the data dir).
bench_cleanup() {
	local rc=$?
	set +e # a failing step here must not end the cleanup
	hand_stop
	(exit $rc) # cleanup reads the status from $?
	cleanup
}
trap bench_cleanup EXIT

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# CPU time (user + system, ms) a process has used: what a boot costs, whatever else the
# machine is running at the same time (wall times here swing with the load of the host).
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%d", ($12 + $13) * 1000 / hz}' "/proc/$1/stat"; }

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
			[ -f "$mnt$path/cpu.max" ] || continue
			q=$(cat "$mnt$path/cpu.max")
			[[ "$q" == max* ]] && continue
			LIMIT_DIR=$mnt$path LIMIT_FILES=("cpu.max=$q") LIMIT_DESC="cpu.max '$q' in $path"
			return
		elif [[ ",$ctrls," == *,cpu,* ]]; then
			mnt=$(findmnt -rn -t cgroup -o TARGET,OPTIONS | awk '$2 ~ /(^|,)cpu(,|$)/ {print $1; exit}')
			[ -f "$mnt$path/cpu.cfs_quota_us" ] || continue
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
		HAND_ARGV[i]=$arg
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
	local r=$1 t0 t1 st
	t0=$(now_ms)
	sistemo machine deploy tiny --name "bench-$r" --memory 256M --vcpus 1 >/dev/null 2>>"$TEST_DIR/cli.log" ||
		cli_fail "deploy bench-$r"
	t1=$(now_ms)
	WALL_MS+=($((t1 - t0)))
	st=$(sistemo machine status "bench-$r" -o json)
	BOOT_MS+=("$(jq -r .boot_ms <<<"$st")")
	WALL_CPU+=("$(cpu_ms "$(jq -r .pid <<<"$st")")")
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
	TAIL_PID='' HAND_PID='' HAND_NS='' HAND_CG=''
}

# hand_round ROUND [limited]: the launch -> ready time in ms, in LAST_MS; the VMM's CPU time
# by then in LAST_CPU.
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
	LAST_CPU=$(cpu_ms "$HAND_PID")
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
		1) hand_round "$r" && HAND_MS+=("$LAST_MS") HAND_CPU+=("$LAST_CPU") ;;
		2) hand_round "$r" l && LIM_MS+=("$LAST_MS") LIM_CPU+=("$LAST_CPU") ;;
		esac
	done
}

# --- report -------------------------------------------------------------------------------
# Reads "wall boot hand limited wall_cpu hand_cpu limited_cpu" per round (ms; limited 0: not
# measured); prints medians, min/max,
# and the ratios both of the medians and, paired round by round, the median of the per-round
# ratios (the sides of one round ran within a minute of each other: slow drift of the machine's
# load cancels out there).
summarize() {
	awk -v label="$1" -v limit="$2" '
	function sort(a, n,   i, j, t) {
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	}
	function med(a, n,   c, i) { for (i = 1; i <= n; i++) c[i] = a[i]; sort(c, n); return (c[int((n + 1) / 2)] + c[int(n / 2) + 1]) / 2 }
	function lo(a, n,   c, i) { for (i = 1; i <= n; i++) c[i] = a[i]; sort(c, n); return c[1] }
	function hi(a, n,   c, i) { for (i = 1; i <= n; i++) c[i] = a[i]; sort(c, n); return c[n] }
	function row(name, a) { printf "%-50s %9d %9d %9d\n", name, med(a, n), lo(a, n), hi(a, n) }
	{ n++; w[n] = $1; b[n] = $2; h[n] = $3; l[n] = $4; o[n] = $1 - $2; rh[n] = $1 / $3; rb[n] = $2 / $3
	  if ($4 > 0) { rl[n] = $1 / $4; rbl[n] = $2 / $4 }
	  wc[n] = $5; hc[n] = $6; lc[n] = $7
	  printf "round %d: deploy %d ms (boot %d), by hand %d ms%s; VMM CPU %d / %d%s ms\n", n, $1, $2, $3,
		($4 > 0 ? ", limited " $4 " ms" : ""), $5, $6, ($4 > 0 ? " / " $7 : "") }
	END {
		print label
		print "daemon VMM CPU limit: " limit
		printf "%-50s %9s %9s %9s\n", "", "median ms", "min ms", "max ms"
		row("sistemo machine deploy (wall)", w)
		row("  boot_ms it reports (VMM start -> ready)", b)
		row("  daemon overhead (wall - boot_ms)", o)
		row("same QEMU command by hand (launch -> ready)", h)
		if (l[1] > 0) row("same, by hand, under the daemon CPU limit", l)
		row("VMM CPU time to ready: the daemon VMM", wc)
		row("VMM CPU time to ready: by hand", hc)
		if (l[1] > 0) row("VMM CPU time to ready: by hand, CPU limit", lc)
		printf "%-44s %8s %10s\n", "ratio", "medians", "paired"
		printf "%-44s %7.3fx %9.3fx\n", "deploy wall / by hand", med(w, n) / med(h, n), med(rh, n)
		printf "%-44s %7.3fx %9.3fx\n", "boot_ms / by hand", med(b, n) / med(h, n), med(rb, n)
		if (l[1] > 0) {
			printf "%-44s %7.3fx %9.3fx\n", "deploy wall / by hand, same CPU limit", med(w, n) / med(l, n), med(rl, n)
			printf "%-44s %7.3fx %9.3fx\n", "boot_ms / by hand, same CPU limit", med(b, n) / med(l, n), med(rbl, n)
		}
		printf "%-44s %7.3fx\n", "VMM CPU to ready, daemon VMM / by hand", med(wc, n) / med(hc, n)
		printf "daemon overhead: %d ms median, %.1f%% of the deploy\n", med(o, n), 100 * med(o, n) / med(w, n)
		printf "target deploy wall <= 1.10x by hand (paired median): %.3fx %s\n", med(rh, n),
			med(rh, n) <= 1.10 ? "PASS" : "MISS"
	}'
}

report() {
	local accel=TCG
	grep -q -- 'kvm' <<<"${HAND_ARGV[*]}" && accel=KVM
	for i in "${!WALL_MS[@]}"; do
		echo "${WALL_MS[i]} ${BOOT_MS[i]} ${HAND_MS[i]} ${LIM_MS[i]:-0}" \
			"${WALL_CPU[i]} ${HAND_CPU[i]} ${LIM_CPU[i]:-0}"
	done | summarize "deploy -> ready, 'tiny' (256M, 1 vCPU, $accel), $ROUNDS rounds per side, order rotating" "$LIMIT_DESC"
}

start_daemon
echo "seeding: kit, image and the VMM command line (one deploy, untimed)..." >&2
seed
for r in $(seq 1 "$ROUNDS"); do
	round "$r"
	echo "round $r/$ROUNDS done (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done
report
