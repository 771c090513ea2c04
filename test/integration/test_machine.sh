# Real machines end to end: the real daemon in private namespaces deploys 'tiny' guests under
# QEMU (KVM when usable, TCG otherwise) and drives their whole lifecycle through the CLI.
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"

mkdir -p "$SISTEMO_DATA_DIR"
# a fast reconciler, so the test sees it act
printf 'reconciler_interval_sec: 1\n' >"$SISTEMO_DATA_DIR/config.yml"
start_daemon

# --- bad input: clear errors and nothing created -------------------------------------------
run sistemo machine deploy nosuchimage --name x
expect_rc 4 "unknown image"
expect_in "$ERR" "unknown image 'nosuchimage'" "unknown image named"
run sistemo machine deploy tiny --name 'Bad_Name'
expect_rc 2 "bad name"
run sistemo machine deploy tiny --vcpus 65
expect_rc 2 "too many vcpus"
expect_eq "$(db 'SELECT count(*) FROM machine')" 0 "nothing created by bad deploys"
ok "bad deploys are refused and leave nothing"

# --- deploy -------------------------------------------------------------------------------
run sistemo machine deploy tiny --name web --memory 256M --vcpus 1
expect_rc 0 "deploy web"
expect_in "$OUT" "Machine 'web' is running: IP 10.200.0.2" "deploy output"
run sistemo machine status web -o json
expect_eq "$(jq -r .state <<<"$OUT")" running "state"
expect_eq "$(jq -r .ip <<<"$OUT")" 10.200.0.2 "first IP"
expect_eq "$(jq -r .driver <<<"$OUT")" qemu "driver"
expect_eq "$(jq -r .mac <<<"$OUT")" 52:54:0a:c8:00:02 "MAC derived from the IP"
PID=$(jq -r .pid <<<"$OUT")
NS=$(jq -r .namespace <<<"$OUT")
kill -0 "$PID" || fail "VMM $PID not running"
ip netns list | grep -q "$NS" || fail "namespace $NS missing"
run sistemo machine deploy tiny --name web
expect_rc 5 "duplicate name"
WID=$(jq -r .id <<<"$(sistemo machine status web -o json)")
if [ -d "/sys/fs/cgroup/cpu/sistemo/$WID" ]; then
	expect_eq "$(cat "/sys/fs/cgroup/cpu/sistemo/$WID/cpu.cfs_quota_us")" 100000 "cpu quota (v1)"
	expect_eq "$(cat "/sys/fs/cgroup/memory/sistemo/$WID/memory.limit_in_bytes")" $(((256 + 256) << 20)) "memory limit (v1)"
	grep -qx "$PID" "/sys/fs/cgroup/memory/sistemo/$WID/cgroup.procs" || fail "VMM not in its memory group"
	grep -qx "$PID" "/sys/fs/cgroup/cpu/sistemo/$WID/cgroup.procs" || fail "VMM not in its cpu group"
elif [ -d "/sys/fs/cgroup/sistemo/$WID" ]; then
	expect_eq "$(cat "/sys/fs/cgroup/sistemo/$WID/cpu.max")" "100000 100000" "cpu quota (v2)"
	grep -qx "$PID" "/sys/fs/cgroup/sistemo/$WID/cgroup.procs" || fail "VMM not in its group"
else
	fail "no cgroup for machine $WID"
fi
ok "deploy boots a real guest (boot $(jq -r .boot_ms <<<"$(sistemo machine status web -o json)") ms)"

# --- exec ---------------------------------------------------------------------------------
run sistemo machine exec web -- sh -c 'echo out; echo err >&2; exit 3'
expect_rc 3 "exec exit code"
expect_eq "$OUT" out "exec stdout"
expect_eq "$ERR" err "exec stderr"
run sistemo machine exec web 'hostname; cat /etc/hostname'
expect_eq "$OUT" "web
web" "hostname set by the sistemo init"
run sistemo machine exec web uname -a
expect_rc 0 "uname"
expect_in "$OUT" Linux "uname output"
OUT=$(echo piped-input | "$SISTEMO_BIN" --data-dir "$SISTEMO_DATA_DIR" machine exec web cat)
expect_eq "$OUT" piped-input "stdin reaches the command"
run sistemo -o json machine exec web -- sh -c 'echo hi; exit 2'
expect_eq "$(jq -r .exit_code <<<"$OUT")" 2 "json exit code"
ok "exec: stdout, stderr, exit code, stdin, json"

# --- ssh: an interactive shell on a pseudo-terminal ------------------------------------------
set +e
OUT=$(printf 'stty size; tty; exit 7\n' |
	timeout 60 script -qec "$SISTEMO_BIN --data-dir $SISTEMO_DATA_DIR machine ssh web" /dev/null)
RC=$?
set -e
expect_rc 7 "ssh exit status"
expect_in "$OUT" "/dev/pts/" "ssh has a pseudo-terminal"
ok "ssh: interactive shell on a PTY, exit status passed through"

# --- logs -----------------------------------------------------------------------------------
run sistemo machine logs web
expect_in "$OUT" "sistemo: ready" "console log"
ok "logs"

# --- a second machine reaches the first over the bridge -----------------------------------
run sistemo machine deploy tiny --name db --memory 256M --vcpus 1
expect_rc 0 "deploy db"
run sistemo machine exec db ping -c 1 -W 3 10.200.0.2
expect_rc 0 "db pings web"
ok "two machines reach each other over the default bridge"

# --- stop / start keeps the IP; restart ----------------------------------------------------
run sistemo machine stop web
expect_rc 0 "stop"
kill -0 "$PID" 2>/dev/null && fail "VMM still running after stop"
ip netns list | grep -q "$NS" && fail "namespace left after stop"
grep -q "reboot: Power down" "$SISTEMO_DATA_DIR/vms/$(jq -r .id <<<"$(sistemo machine status web -o json)")/console.log" ||
	fail "the guest did not power off cleanly"
run sistemo machine start web
expect_rc 0 "start"
expect_in "$OUT" "IP 10.200.0.2" "same IP after start"
run sistemo machine restart web
expect_rc 0 "restart"
expect_in "$OUT" "IP 10.200.0.2" "same IP after restart"
run sistemo machine exec web echo after-restart
expect_eq "$OUT" after-restart "exec after restart"
ok "stop (clean power-off), start and restart keep the IP"

# --- the reconciler notices a dead VMM -----------------------------------------------------
PID=$(jq -r .pid <<<"$(sistemo machine status db -o json)")
kill -9 "$PID"
for i in $(seq 1 50); do
	[ "$(jq -r .state <<<"$(sistemo machine status db -o json)")" = stopped ] && break
	sleep 0.2
done
expect_eq "$(jq -r .state <<<"$(sistemo machine status db -o json)")" stopped "reconciled state"
ok "kill -9 of a VMM: the reconciler marks the machine stopped"

# --- kill -9 of the daemon: the running machine is adopted ---------------------------------
PID=$(jq -r .pid <<<"$(sistemo machine status web -o json)")
kill -9 "$DAEMON_PID"
timeout 20 flock "$SISTEMO_DATA_DIR/run/daemon.lock" true
DAEMON_PID=
start_daemon
kill -0 "$PID" || fail "the VMM died with the daemon"
expect_eq "$(jq -r .state <<<"$(sistemo machine status web -o json)")" running "adopted"
run sistemo machine exec web echo still-here
if [ "$OUT" != still-here ]; then
	echo "exec after restart: rc=$RC err=$ERR"; ip -br link; bridge link; ip netns list
	ping -c1 -W2 10.200.0.2 || true
	ip neigh; WNS=$(jq -r .namespace <<<"$(sistemo machine status web -o json)")
	ip -n "$WNS" -d link | grep -E "^[0-9]|state|master" | cut -c1-120
	ip netns exec "$WNS" bridge fdb show | grep -v permanent | head
	ip -s -n "$WNS" link show tap0 | head -8
	WID=$(jq -r .id <<<"$(sistemo machine status web -o json)")
	echo "--- console of web ($WID)"; tail -n 12 "$SISTEMO_DATA_DIR/vms/$WID/console.log"
	echo "--- vmm.log"; tail -n 5 "$SISTEMO_DATA_DIR/vms/$WID/vmm.log"
	ps -o pid,stat,etime,args -p "$PID" | cut -c1-150
fi
expect_eq "$OUT" still-here "exec after the daemon restart"
ok "kill -9 of the daemon: running guests are adopted and answer exec"

# --- delete leaves nothing -----------------------------------------------------------------
run sistemo machine delete web -y
expect_rc 0 "delete web"
run sistemo machine delete db -y
expect_rc 0 "delete db"
expect_eq "$(db 'SELECT count(*) FROM machine')" 0 "no machine rows"
expect_eq "$(db 'SELECT count(*) FROM ip_allocation')" 0 "no IP allocations"
expect_eq "$(ls "$SISTEMO_DATA_DIR/vms")" "" "no machine files"
expect_eq "$(ip netns list | grep -c 'sistemo-[0-9a-f]\{8\}' || true)" 0 "no machine namespaces"
expect_eq "$(ip -br link | grep -c '^vh-' || true)" 0 "no host veths"
pgrep -f "$SISTEMO_DATA_DIR/vms" && fail "a VMM is still running"
ls -d /sys/fs/cgroup/*/sistemo/"$WID" /sys/fs/cgroup/sistemo/"$WID" 2>/dev/null && fail "cgroup left"
ok "delete leaves no namespace, link, file, row or IP allocation"

# --- spare namespaces: built ahead while the daemon runs, gone with it -------------------------
# (docs/networking.md): two, each host end a port of sistemo0, down, with IPv6 off
for _ in $(seq 1 50); do [ "$(ip netns list | grep -c '^sistemo-spare')" -ge 2 ] && break; sleep 0.1; done
expect_eq "$(ip netns list | grep -c '^sistemo-spare' || true)" 2 "spare namespaces while running"
for l in $(ip -br link | awk '/^vs-/ { sub(/@.*/, "", $1); print $1 }'); do
	ip -d link show "$l" | grep -q "master sistemo0" || fail "spare host end $l is not a port of sistemo0"
	ip link show "$l" | grep -q "state DOWN" || fail "spare host end $l is up"
	expect_eq "$(cat "/proc/sys/net/ipv6/conf/$l/disable_ipv6")" 1 "IPv6 off on $l"
done
stop_daemon
expect_eq "$(ip netns list | grep -c '^sistemo-spare' || true)" 0 "spare namespaces after the daemon stopped"
for _ in $(seq 1 50); do ip -br link | grep -q '^vs-' || break; sleep 0.1; done
expect_eq "$(ip -br link | grep -c '^vs-' || true)" 0 "spare host ends after the daemon stopped"
ok "two spare namespaces wait as down ports of sistemo0 and go with the daemon"

finish
