# The built-in image 'debian' end to end: the real daemon in private namespaces builds it with
# debootstrap on the first deploy (progress reported), boots it under QEMU (TCG here: a minute
# or two), runs commands in it and powers it off cleanly. Prints the time of each step.
#
# The private network namespace has no route out, and the test never links it to the host's.
# debootstrap reaches the mirror through an HTTP proxy on a Unix socket instead: the proxy runs
# outside (host network), a relay inside listens on 127.0.0.1 and the daemon hands http_proxy
# down to debootstrap.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PROXY_PORT=3142

# mirror_of: the first http(s) bookworm mirror in apt's sources, as the daemon picks it.
mirror_of() {
	local f m
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		m=$(awk '/^deb[ \t]/ && / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; exit } }
			/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u ~ /^https?:\/\// { print u; exit }
			/^$/ { u = "" }' "$f")
		[ -n "$m" ] && { echo "${m%/}"; return; }
	done
	echo http://deb.debian.org/debian
}

# The proxy (outside) and the relay (inside): python3, one thread per connection, GET with an
# absolute URI and CONNECT on ports 80 and 443 only; each exits with its parent, or after 20
# minutes at most.
proxy_py() {
	cat <<'EOF'
import os, socket, sys, threading, time
def watchdog(parent):
    for _ in range(1200):
        if os.getppid() != parent:
            break
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watchdog, args=(os.getppid(),), daemon=True).start()
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def splice(a, b):
    threading.Thread(target=pipe, args=(b, a), daemon=True).start()
    pipe(a, b)
def upstream(host, port):
    if port not in (80, 443):
        raise OSError("port %d refused" % port)
    s = socket.create_connection((host, port), timeout=30)
    s.settimeout(300)
    return s
def proxy(c):
    f = c.makefile("rb")
    method, target, version = f.readline(8192).decode("latin-1").split()
    headers = []
    while True:
        h = f.readline(8192)
        if h in (b"\r\n", b"\n", b""):
            break
        if h.split(b":")[0].lower() not in (b"connection", b"proxy-connection", b"keep-alive"):
            headers.append(h)
    if method == "CONNECT":
        host, port = target.rsplit(":", 1)
        up = upstream(host, int(port))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        hostport, _, path = target.split("://", 1)[1].partition("/")
        host, _, port = hostport.partition(":")
        up = upstream(host, int(port or 80))
        up.sendall(("%s /%s %s\r\n" % (method, path, version)).encode() + b"".join(headers) +
                   b"Connection: close\r\n\r\n")
    splice(c, up)
def relay(c):
    u = socket.socket(socket.AF_UNIX)
    u.connect(sys.argv[2])
    splice(c, u)
def handle(fn, c):
    try:
        fn(c)
    except Exception:
        pass
    finally:
        c.close()
if sys.argv[1] == "proxy":
    srv, fn = socket.socket(socket.AF_UNIX), proxy
    srv.bind(sys.argv[2])
else:
    srv, fn = socket.socket(), relay
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[3])))
srv.listen(64)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(fn, c), daemon=True).start()
EOF
}

if [ -z "${SISTEMO_IN_NS:-}" ]; then
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
	command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] ||
		{ echo "SKIP: needs debootstrap (ci/install.sh)"; exit 77; }
	command -v python3 >/dev/null || { echo "SKIP: needs python3 (the test's HTTP proxy)"; exit 77; }
	MIRROR=$(mirror_of)
	timeout 10 wget -q --spider "$MIRROR/dists/bookworm/InRelease" ||
		{ echo "SKIP: the Debian mirror '$MIRROR' is not reachable"; exit 77; }
	DEBIAN_SOCK_DIR=$(mktemp -d /tmp/sistemo-it-proxy.XXXXXX)
	python3 -c "$(proxy_py)" proxy "$DEBIAN_SOCK_DIR/proxy.sock" >"$DEBIAN_SOCK_DIR/proxy.log" 2>&1 &
	export DEBIAN_PROXY_PID=$! DEBIAN_SOCK_DIR
	for _ in $(seq 1 50); do [ -S "$DEBIAN_SOCK_DIR/proxy.sock" ] && break; sleep 0.1; done
fi

. "$HERE/lib.sh"

RELAY_PID=
stop_proxies() {
	local p
	for p in $RELAY_PID $DEBIAN_PROXY_PID; do kill "$p" 2>/dev/null || true; done
	for p in $RELAY_PID $DEBIAN_PROXY_PID; do timeout 5 tail --pid="$p" -f /dev/null || true; done
	rm -rf "$DEBIAN_SOCK_DIR"
}
# lib.sh's cleanup reads the exit status from $?: hand it over (without set -e tripping on it)
trap 'rc=$?; set +e; stop_proxies; (exit $rc); cleanup' EXIT

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"

[ -S "$DEBIAN_SOCK_DIR/proxy.sock" ] || fail "the HTTP proxy did not start"
python3 -c "$(proxy_py)" relay "$DEBIAN_SOCK_DIR/proxy.sock" "$PROXY_PORT" >"$TEST_DIR/relay.log" 2>&1 &
RELAY_PID=$!
for _ in $(seq 1 50); do grep -q listening "$TEST_DIR/relay.log" && break; sleep 0.1; done
export http_proxy=http://127.0.0.1:$PROXY_PORT https_proxy=http://127.0.0.1:$PROXY_PORT

mkdir -p "$SISTEMO_DATA_DIR"
# the daemon allows 3 x ssh_timeout_sec for a boot under TCG (180 s by default); this host may
# be busy with other tests
printf 'ssh_timeout_sec: 100\n' >"$SISTEMO_DATA_DIR/config.yml"
start_daemon
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - $1)); }

# --- deploy: the first one builds the image -------------------------------------------------
# While debootstrap's second stage configures the base system (the packages' own scripts run,
# proc and sys are mounted in its tree), it must run in PID, mount and network namespaces of its
# own, inside the tree (pivot_root), and no mount of it be visible here.
isolation() {
	local pid
	pid=$(pgrep -o -f "debootstrap --second-stage" || true)
	[ -n "$pid" ] || { echo "no debootstrap process"; return; }
	[ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || echo "debootstrap shares our PID namespace"
	[ "$(readlink "/proc/$pid/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] || echo "debootstrap shares our mount namespace"
	[ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] || echo "debootstrap shares our network namespace"
	[ -d "/proc/$pid/root/debootstrap" ] || echo "debootstrap's root is not the image tree"
	[ -d "/proc/$pid/root/$SISTEMO_DATA_DIR" ] && echo "debootstrap sees the host's tree"
	grep -q "/\.image-" /proc/self/mountinfo && echo "a mount of debootstrap is visible outside"
	grep -q "^NSpid:.*[0-9][[:space:]]1$" "/proc/$pid/status" || echo "debootstrap is not PID 1 of its namespace"
	echo checked
}
# progress lines ("step: message") stamped with the seconds since the deploy began
stamp() {
	while IFS= read -r l; do
		echo "[+$(elapsed "$T0")s] $l"
		case $l in "image: configuring the base system (10)") isolation >"$TEST_DIR/isolation" ;; esac
	done
}
{
	sistemo machine deploy debian --name deb --memory 512M 2>&1 >"$TEST_DIR/deploy.out"
	echo $? >"$TEST_DIR/deploy.rc"
} | stamp | tee "$TEST_DIR/progress"
DEPLOY_S=$(elapsed "$T0")
OUT=$(cat "$TEST_DIR/deploy.out")
RC=$(cat "$TEST_DIR/deploy.rc")
ERR=$(tail -n 1 "$TEST_DIR/progress")
console_tail() { tail -n "${1:-30}" "$SISTEMO_DATA_DIR"/vms/*/console.log 2>/dev/null | cut -c1-160 || true; }
[ "$RC" -eq 0 ] || console_tail
expect_rc 0 "deploy debian"
expect_in "$OUT" "Machine 'deb' is running" "deploy output"
grep -q "image: downloading packages" "$TEST_DIR/progress" || fail "no debootstrap progress reported"
expect_eq "$(cat "$TEST_DIR/isolation" 2>/dev/null)" checked "debootstrap isolated"
BUILD_S=$(sed -n 's/^\[+\([0-9]*\)s\] disk: .*/\1/p' "$TEST_DIR/progress" | head -n1)
# the built image is in the store (docs/images.md), tagged debian:latest
IMG=$(jq -r .path <<<"$(sistemo image show debian -o json)")
[ -f "$IMG" ] || fail "no store file for debian: '$IMG'"
expect_eq "$(jq -r .source <<<"$(sistemo image show debian -o json)")" builtin "debian source"
ls -a "$SISTEMO_DATA_DIR/images/tmp" | grep -q '^\.image-' && fail "staging tree left behind"
BOOT_MS=$(jq -r .boot_ms <<<"$(sistemo machine status deb -o json)")
ok "deploy builds the image on first use (build ${BUILD_S:-?} s, boot $((BOOT_MS / 1000)) s, deploy ${DEPLOY_S} s)"

# --- what the image holds and does ----------------------------------------------------------
ID=$(jq -r .id <<<"$(sistemo machine status deb -o json)")
debugfs -R "ls /etc/ssh" "$IMG" 2>/dev/null | grep -q ssh_host_ && fail "the image carries SSH host keys"
expect_eq "$(debugfs -R 'stat /etc/machine-id' "$IMG" 2>/dev/null | sed -n 's/.*Size: \([0-9]*\).*/\1/p' | head -n1)" 0 "empty machine-id in the image"
T1=$(date +%s)
# the daemon gives exec's SSH connection 5 s: a guest still busy booting under TCG may miss it
for try in 1 2 3; do
	run sistemo machine exec deb -- systemctl is-system-running --wait
	case $ERR in *"timed out"*) echo "exec attempt $try: $ERR" ;; *) break ;; esac
done
EXEC_S=$(elapsed "$T1")
if [ "$OUT" != running ]; then
	echo "is-system-running: '$OUT' (rc $RC, $ERR)"
	sistemo machine exec deb -- systemctl --failed --no-pager || true
	sistemo machine exec deb -- systemctl list-jobs --no-pager || true
	console_tail
fi
expect_eq "$OUT" running "systemctl is-system-running"
run sistemo machine exec deb -- sh -c 'hostname; ls /etc/ssh/ | grep -c "^ssh_host_.*_key$"; cat /etc/machine-id'
expect_rc 0 "exec"
expect_in "$OUT" "deb" "hostname"
MID=$(sed -n 3p <<<"$OUT")
[ "${#MID}" -eq 32 ] || fail "no machine-id made at boot: '$MID'"
expect_eq "$(sed -n 2p <<<"$OUT")" 2 "host keys made for this machine (ed25519, ecdsa)"
run sistemo machine exec deb -- systemctl is-enabled apt-daily.timer fstrim.timer e2scrub_all.timer
expect_eq "$(sort -u <<<"$OUT")" masked "timers masked"
ok "systemd is running, with its own host keys and machine-id (exec ${EXEC_S} s)"

# --- stop: a clean power-off ----------------------------------------------------------------
T1=$(date +%s)
run sistemo machine stop deb
STOP_S=$(elapsed "$T1")
expect_rc 0 "stop"
grep -q "reboot: Power down" "$SISTEMO_DATA_DIR/vms/$ID/console.log" ||
	fail "the guest did not power off cleanly"
ok "stop powers the guest off cleanly (${STOP_S} s)"

run sistemo machine delete deb -y
expect_rc 0 "delete"

# --- image build debian: a release and extra packages, into the store -----------------------
T1=$(date +%s)
run sistemo image build mydeb --type debian --release bookworm --packages curl,less
BUILD2_S=$(elapsed "$T1")
expect_rc 0 "image build debian"
expect_in "$OUT" "Image 'mydeb' built: sha256:" "build output"
expect_in "$ERR" "debootstrap" "debootstrap progress"
run sistemo image show mydeb -o json
expect_eq "$(jq -r .source <<<"$OUT")" build "build source"
expect_eq "$(jq -r .ssh <<<"$OUT")" openssh "OpenSSH found in the tree"
expect_eq "$(jq -r .source_ref <<<"$OUT")" "debootstrap bookworm" "build source_ref"
IMG2=$(jq -r .path <<<"$OUT")
debugfs -R "stat /usr/bin/curl" "$IMG2" 2>/dev/null | grep -q "Type: regular" || fail "no curl in the built image"
debugfs -R "ls /etc/ssh" "$IMG2" 2>/dev/null | grep -q ssh_host_ && fail "the built image carries SSH host keys"
ls -a "$SISTEMO_DATA_DIR/images/tmp" | grep -q '^build-' && fail "build tree left behind"
ok "image build debian --packages: curl in, OpenSSH found, no host keys (${BUILD2_S} s)"

# --- a Debian-based tree without an SSH server: openssh-server added by apt ------------------
# The tree: mydeb's, with OpenSSH purged, as a rootfs tarball. The host's apt-get downloads the
# packages (the proxy above); the tree's dpkg installs them in a jail with no network.
T1=$(date +%s)
NOSSH=$TEST_DIR/nossh
mkdir -p "$NOSSH"
debugfs -R "rdump / $NOSSH" "$IMG2" >/dev/null 2>&1 || true
[ -x "$NOSSH/usr/bin/dpkg" ] || fail "could not unpack mydeb's tree with debugfs rdump"
dpkg --root="$NOSSH" --force-depends --purge openssh-server openssh-sftp-server >"$TEST_DIR/purge.log" 2>&1 ||
	{ cat "$TEST_DIR/purge.log"; fail "dpkg --purge openssh-server in the test tree"; }
[ -e "$NOSSH/usr/sbin/sshd" ] && fail "sshd still in the test tree"
tar -C "$NOSSH" -czf "$TEST_DIR/nossh.tar.gz" .
rm -rf "$NOSSH"
run sistemo image build nossh --from "$TEST_DIR/nossh.tar.gz"
expect_rc 0 "image build --from a Debian tarball without sshd"
expect_in "$ERR" "adding openssh-server with apt" "apt progress"
expect_in "$ERR" "own namespaces, no network" "dpkg jailed"
run sistemo image show nossh -o json
expect_eq "$(jq -r .ssh <<<"$OUT")" "openssh (added by sistemo)" "OpenSSH added"
IMG3=$(jq -r .path <<<"$OUT")
debugfs -R "stat /usr/sbin/sshd" "$IMG3" 2>/dev/null | grep -q "Type: regular" || fail "no sshd in the built image"
debugfs -R "ls /etc/ssh" "$IMG3" 2>/dev/null | grep -q ssh_host_ && fail "the built image carries SSH host keys"
debugfs -R "stat /usr/sbin/policy-rc.d" "$IMG3" 2>/dev/null | grep -q "Type:" && fail "policy-rc.d left in the image"
debugfs -R "ls /var/cache" "$IMG3" 2>/dev/null | grep -q sistemo-debs && fail "downloaded packages left in the image"
ls -a "$SISTEMO_DATA_DIR/images/tmp" | grep -q '^build-' && fail "build tree left behind"
[ "$(db "SELECT count(*) FROM audit WHERE action = 'image.build' AND success = 1")" -ge 2 ] ||
	fail "image builds not audited"
run sistemo machine deploy nossh --name nossh --memory 512M
expect_rc 0 "deploy the image with the added OpenSSH"
run sistemo machine exec nossh -- dpkg -s openssh-server
[ "$RC" -eq 0 ] || { echo "exec: $ERR"; console_tail 60; }
expect_rc 0 "dpkg -s openssh-server in the guest"
expect_in "$OUT" "Status: install ok installed" "openssh-server installed in the guest"
run sistemo machine delete nossh -y
expect_rc 0 "delete nossh"
ok "image build --from a Debian tree without sshd: openssh-server added by apt, boots, answers exec ($(elapsed "$T1") s)"
echo "times: image build ${BUILD_S:-?} s, image build --packages ${BUILD2_S} s, boot $((BOOT_MS / 1000)) s, deploy ${DEPLOY_S} s," \
	"exec ${EXEC_S} s, stop ${STOP_S} s, total $(elapsed "$T0") s"
finish
