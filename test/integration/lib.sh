# Integration harness: sourced by test_*.sh. Each test re-executes itself inside a private
# network + mount namespace (unshare), with its own temporary data dir, starts the real daemon
# there, drives the real CLI and reads the database back. Nothing touches the host's root
# network namespace; every process started is stopped by PID.
set -euo pipefail

: "${SISTEMO_BIN:?SISTEMO_BIN must point at the built sistemo binary}"
SKIP=77
PASSED=0
FAILED=0

skip() { echo "SKIP: $*"; exit $SKIP; }

# Re-exec inside fresh namespaces unless we are already there.
if [ -z "${SISTEMO_IN_NS:-}" ]; then
	[ "$(id -u)" -eq 0 ] || skip "needs root (network and mount namespaces)"
	command -v unshare >/dev/null || skip "needs unshare (util-linux)"
	unshare --net --mount --fork true 2>/dev/null || skip "cannot create namespaces here"
	export SISTEMO_IN_NS=1
	exec unshare --net --mount --propagation private --fork bash "$0" "$@"
fi

# Namespaces the daemon names under /run/netns stay in this mount namespace.
mkdir -p /run/netns
mount -t tmpfs -o mode=0755 tmpfs /run/netns
ip link set lo up

TEST_DIR=$(mktemp -d /tmp/sistemo-it.XXXXXX)
export SISTEMO_DATA_DIR="$TEST_DIR/data"
DAEMON_PID=

sistemo() { "$SISTEMO_BIN" --data-dir "$SISTEMO_DATA_DIR" "$@"; }
db() { sqlite3 -batch -noheader "$SISTEMO_DATA_DIR/sistemo.db" "$@"; }

start_daemon() {
	sistemo up --detach --log-file "$TEST_DIR/daemon.log" >"$TEST_DIR/up.out"
	DAEMON_PID=$(head -n1 "$SISTEMO_DATA_DIR/run/daemon.lock")
	[ -S "$SISTEMO_DATA_DIR/run/sistemo.sock" ] || fail "no socket after 'up --detach'"
}

# Stops the daemon by PID and waits on its lock (released when it exits), bounded.
stop_daemon() {
	[ -n "$DAEMON_PID" ] || return 0
	kill -TERM "$DAEMON_PID" 2>/dev/null || true
	timeout 20 flock "$SISTEMO_DATA_DIR/run/daemon.lock" true ||
		{ kill -KILL "$DAEMON_PID" 2>/dev/null || true; }
	DAEMON_PID=
}

# VMMs outlive a daemon on purpose; a test stops its own by PID, then removes the cgroups the
# daemon made for its machines (the host's cgroup tree is shared with the test).
kill_vmms() {
	local p id
	for p in $(pgrep -f "$SISTEMO_DATA_DIR/vms/" || true); do kill -9 "$p" 2>/dev/null || true; done
	for id in $(ls "$SISTEMO_DATA_DIR/vms" 2>/dev/null); do
		for p in /sys/fs/cgroup/*/sistemo/"$id" /sys/fs/cgroup/sistemo/"$id"; do
			[ -d "$p" ] || continue
			for _ in 1 2 3 4 5; do rmdir "$p" 2>/dev/null && break; sleep 0.2; done
		done
	done
	return 0
}

cleanup() {
	local rc=$?
	stop_daemon
	kill_vmms
	if [ $rc -ne 0 ] && [ -f "$TEST_DIR/daemon.log" ]; then
		echo "--- daemon log ---"; tail -n 40 "$TEST_DIR/daemon.log"
	fi
	rm -rf "$TEST_DIR"
	exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); exit 1; }
ok() { echo "ok - $*"; PASSED=$((PASSED + 1)); }

# run CMD...: captures stdout, stderr and the exit status in OUT, ERR, RC.
run() {
	set +e
	OUT=$("$@" 2>"$TEST_DIR/stderr"); RC=$?
	set -e
	ERR=$(cat "$TEST_DIR/stderr")
}

expect_rc() { [ "$RC" -eq "$1" ] || fail "$2: exit status $RC, expected $1 (stderr: $ERR)"; }
expect_in() { case "$1" in *"$2"*) ;; *) fail "$3: '$2' not in: $1" ;; esac; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"; }

finish() { echo "$PASSED passed, $FAILED failed"; }
