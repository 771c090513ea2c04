# Networking end to end with real 'tiny' guests: named networks and isolation (the
# production/staging example), port expose over TCP and UDP from localhost, the host's own
# address, a LAN namespace and another machine (hairpin), egress NAT to an "internet"
# namespace, the SMTP block, DNS names, policies and modes, the network tools, IP allocation,
# rules back after a daemon crash, and nothing left behind.
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
command -v nft >/dev/null || skip "needs nft to read the ruleset back (ci/install.sh)"
command -v curl >/dev/null || skip "needs curl (ci/install.sh)"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
[ -x "${SISTEMO_UDPECHO:-}" ] || skip "needs the guest UDP echo program (SISTEMO_UDPECHO)"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"

SERVERS=()
stop_servers() { for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'stop_servers; cleanup' EXIT

# --- the world around the host: an "internet" and a LAN, each a namespace of our own --------
# internet: 198.51.100.1 behind the host's 198.51.100.254; LAN: a neighbour 192.0.2.2 of the
# host's 192.0.2.1.
ip netns add internet
ip link add inet0 type veth peer name inet1 netns internet
ip addr add 198.51.100.254/24 dev inet0
ip link set inet0 up
ip -n internet addr add 198.51.100.1/24 dev inet1
ip -n internet link set inet1 up
ip -n internet link set lo up
ip netns add lan
ip link add lan0 type veth peer name lan1 netns lan
ip addr add 192.0.2.1/24 dev lan0
ip link set lan0 up
ip -n lan addr add 192.0.2.2/24 dev lan1
ip -n lan link set lan1 up
ip -n lan link set lo up
ip -n lan route add default via 192.0.2.1

mkdir -p "$TEST_DIR/www"
echo internet-page >"$TEST_DIR/www/index.html"
ip netns exec internet python3 -m http.server 80 --bind 198.51.100.1 -d "$TEST_DIR/www" \
	>"$TEST_DIR/internet-http.log" 2>&1 &
SERVERS+=($!)
ip netns exec internet python3 -m http.server 8080 --bind 198.51.100.1 -d "$TEST_DIR/www" \
	>/dev/null 2>&1 &
SERVERS+=($!)
# an SMTP port that accepts: the block must be ours, not a closed port
ip netns exec internet python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.51.100.1", 25)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"220 smtp\r\n"); c.close()' >/dev/null 2>&1 &
SERVERS+=($!)

mkdir -p "$SISTEMO_DATA_DIR"
start_daemon

gx() { timeout 60 "$SISTEMO_BIN" --data-dir "$SISTEMO_DATA_DIR" machine exec "$@"; }
# fetch http://HOST[:PORT]/ from inside a machine: the page, or "" on failure. busybox-static's
# wget crashes (Debian 12), so: nc, and a name resolved by busybox's own nslookup (a static
# glibc cannot load its DNS module).
gfetch() {
	local hp=${2#http://}
	hp=${hp%%/*}
	local host=${hp%%:*} port=80
	[ "$hp" != "$host" ] && port=${hp#*:}
	gx "$1" -- sh -c '
		h=$1
		case $h in *[!0-9.]*) h=$(nslookup "$h" 2>/dev/null | sed -n "/^Name:/,\$ s/^Address:* *//p" | head -n1) ;; esac
		[ -n "$h" ] || exit 1
		printf "GET / HTTP/1.0\r\nHost: x\r\n\r\n" | nc -w 4 "$h" "$2" | sed "1,/^\r*\$/d"' \
		sh "$host" "$port" 2>/dev/null || true
}
# curl from the test's host namespace (or another namespace via "ip netns exec NS")
hfetch() { curl -s --max-time 4 "$@" 2>/dev/null || true; }
udp_echo() { # ADDR PORT [NETNS]
	local pre=()
	[ -n "${3:-}" ] && pre=(ip netns exec "$3")
	"${pre[@]}" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"ping-udp", (sys.argv[1], int(sys.argv[2])))
try: print(s.recv(100).decode())
except OSError: print("")' "$1" "$2"
}
ports_elements() { nft -j list map inet sistemo "$1" | jq '[.nftables[] | .map? | select(.) | .elem // [] | length] | add // 0'; }

# --- bad input ------------------------------------------------------------------------------
run sistemo network create 'bad name!'
expect_rc 2 "bad network name"
expect_in "$ERR" "invalid network name" "bad name named"
run sistemo network create waytoolongname13
expect_rc 2 "long network name"
run sistemo network create x --subnet 10.5.0.7/24
expect_rc 2 "host bits"
expect_in "$ERR" "host bits" "host bits named"
run sistemo network create x --subnet 10.200.3.0/24
expect_rc 5 "overlap with default"
expect_in "$ERR" "overlaps network 'default'" "overlap named"
run sistemo network create x --subnet 192.0.2.0/25
expect_rc 5 "overlap with a host address"
expect_in "$ERR" "overlaps the host's address 192.0.2.1" "host overlap named"
run sistemo machine deploy tiny --name w --network nosuch
expect_rc 4 "unknown network"
run sistemo machine deploy tiny --name w --expose 70000
expect_rc 2 "port out of range"
expect_eq "$(db 'SELECT count(*) FROM network') $(db 'SELECT count(*) FROM machine')" "0 0" \
	"nothing created by bad input"
ok "bad network input refused, nothing created"

# --- networks ---------------------------------------------------------------------------------
run sistemo network create production
expect_rc 0 "create production"
run sistemo network create staging
expect_rc 0 "create staging"
expect_eq "$(sistemo network list -o json | jq -r '.networks[] | select(.name=="production") | .subnet')" \
	10.201.0.0/24 "first auto subnet"
expect_eq "$(sistemo network list -o json | jq -r '.networks[] | select(.name=="staging") | .bridge')" \
	br-staging "bridge name"
ip -br addr show br-production | grep -q 10.201.0.1/24 || fail "br-production has no gateway"
run sistemo network create production
expect_rc 5 "duplicate network"
ok "named networks: production 10.201.0.0/24, staging 10.202.0.0/24"

# --- machines -------------------------------------------------------------------------------
deploy() { run sistemo machine deploy tiny --memory 256M --vcpus 1 "$@"; expect_rc 0 "deploy $*"; }
deploy --name web --expose 80 --expose 5353:53/udp --expose 127.0.0.1:8443:443
expect_in "$OUT" "IP 10.200.0.2" "web's IP"
deploy --name app --network production
expect_in "$OUT" "IP 10.201.0.2" "app's IP"
deploy --name postgres --network production
expect_in "$OUT" "IP 10.201.0.3" "postgres's IP, next in order"
deploy --name staging-app --network staging
expect_in "$OUT" "IP 10.202.0.2" "staging-app's IP"
run sistemo machine deploy tiny --name web2 --expose 80
expect_rc 5 "second claim of host port 80"
expect_in "$ERR" "already exposed by machine 'web'" "holder named"
ok "four machines on three networks, IPs in order; a taken port names its holder"

# guest services: httpd on 80 and 443, a UDP echo on 53, a TCP listener for postgres
gx web -- sh -c 'mkdir -p /www && echo hello-from-web >/www/index.html && httpd -p 80 -h /www && httpd -p 443 -h /www'
gx web 'cat >/udpecho && chmod +x /udpecho' <"$SISTEMO_UDPECHO"
gx web -- sh -c 'setsid /udpecho 53 </dev/null >/dev/null 2>&1 &'
gx postgres -- sh -c 'mkdir -p /www && echo postgres-here >/www/index.html && httpd -p 5432 -h /www'

# --- expose ---------------------------------------------------------------------------------
expect_eq "$(hfetch http://127.0.0.1:80/)" hello-from-web "localhost:80"
expect_eq "$(hfetch http://192.0.2.1:80/)" hello-from-web "the host's own address"
expect_eq "$(ip netns exec lan curl -s --max-time 4 http://192.0.2.1:80/ || true)" hello-from-web "from the LAN"
expect_eq "$(gfetch app http://192.0.2.1:80/)" hello-from-web "hairpin from another machine"
expect_eq "$(hfetch http://127.0.0.1:8443/)" hello-from-web "127.0.0.1-bound port from localhost"
expect_eq "$(ip netns exec lan curl -s --max-time 3 http://192.0.2.1:8443/ || true)" "" \
	"127.0.0.1-bound port not from the LAN"
expect_eq "$(udp_echo 127.0.0.1 5353)" ping-udp "UDP echo from localhost"
expect_eq "$(udp_echo 192.0.2.1 5353 lan)" ping-udp "UDP echo from the LAN"
run sistemo machine status web
expect_in "$OUT" "host:80 → machine:80 (tcp)" "status shows the port"
expect_in "$OUT" "host:5353 → machine:53 (udp)" "status shows the UDP port"
run sistemo network ports -o json
expect_eq "$(jq '.ports | length' <<<"$OUT")" 3 "network ports lists three"
ok "expose: localhost, host address, LAN, hairpin, host-IP binding, UDP"

# --- egress, no hijack, SMTP ----------------------------------------------------------------
expect_eq "$(gfetch app http://198.51.100.1/)" internet-page "egress, and port 80 not hijacked by web's expose"
grep -q '198.51.100.254' "$TEST_DIR/internet-http.log" || fail "egress not masqueraded"
expect_eq "$(gfetch staging-app http://198.51.100.1/)" internet-page "egress from staging"
expect_eq "$(gfetch web http://198.51.100.1/)" internet-page "egress from default"
run gx app -- nc -w 3 198.51.100.1 25 </dev/null
[ "$RC" -ne 0 ] && [ -z "$OUT" ] || fail "SMTP reached the internet: $OUT"
run gx app -- nc -w 3 198.51.100.1 8080 </dev/null
expect_rc 0 "another port to the internet works"
ok "egress NATed to the internet, port 80 not hijacked, SMTP 25 dropped"

# --- isolation and DNS ----------------------------------------------------------------------
expect_eq "$(gfetch app http://postgres:5432/)" postgres-here "app reaches postgres by name"
expect_eq "$(gfetch app http://postgres.production.sistemo:5432/)" postgres-here "full DNS name"
expect_eq "$(gfetch staging-app http://10.201.0.3:5432/)" "" "staging cannot reach production"
run sistemo network ping app postgres
expect_rc 0 "ping app postgres"
run sistemo network ping staging-app postgres -o json
expect_eq "$(jq -r .received <<<"$OUT")" 0 "staging-app gets 100% loss"
run gx app -- nslookup nosuch.production.sistemo
[ "$RC" -ne 0 ] || fail "unknown name resolved"
ok "same network reachable (by name too), other networks dropped, DNS names"

# --- policies and modes ----------------------------------------------------------------------
run sistemo machine policy postgres --allow-from staging-app
expect_rc 0 "allow-from"
expect_eq "$(gfetch staging-app http://10.201.0.3:5432/)" postgres-here "an allowed source crosses isolation"
expect_eq "$(gfetch app http://10.201.0.3:5432/)" "" "a source not listed is refused"
run sistemo machine policy postgres --allow-from ''
expect_eq "$(gfetch app http://10.201.0.3:5432/)" postgres-here "policy cleared"
run sistemo machine policy app --egress-allow 198.51.100.1:80
expect_eq "$(gfetch app http://198.51.100.1/)" internet-page "allowed egress"
expect_eq "$(gfetch app http://198.51.100.1:8080/)" "" "egress not listed is dropped"
run sistemo machine policy app --egress-allow '' --network-mode isolated
expect_eq "$(gfetch app http://198.51.100.1/)" "" "isolated: no egress"
expect_eq "$(gfetch app http://postgres:5432/)" postgres-here "isolated: own network still"
run sistemo machine status app -o json
expect_eq "$(jq -r .policy.network_mode <<<"$OUT")" isolated "status shows the mode"
run sistemo machine policy app --network-mode bridge
expect_eq "$(gfetch app http://198.51.100.1/)" internet-page "bridge mode again"
ok "allow-from, egress-allow, isolated mode, changed at runtime"

# --- guests cannot reach the daemon's ports on their gateway ---------------------------------
python3 -m http.server 7777 --bind 10.200.0.1 >/dev/null 2>&1 &
SERVERS+=($!)
sleep 1
expect_eq "$(hfetch -o /dev/null -w '%{http_code}' http://10.200.0.1:7777/)" 200 "the host reaches :7777"
expect_eq "$(gfetch web http://10.200.0.1:7777/)" "" "a guest cannot reach :7777"
ok "the daemon's API and gateway ports are closed to guests"

# --- unexpose, stop/start, a crash ----------------------------------------------------------
run sistemo machine unexpose web --port 8443
expect_rc 0 "unexpose"
expect_eq "$(hfetch http://127.0.0.1:8443/)" "" "unexposed port is gone"
python3 -m http.server 9090 --bind 127.0.0.1 >/dev/null 2>&1 &
SERVERS+=($!)
sleep 1
run sistemo machine expose web --port 9090:80
expect_rc 5 "expose a port a host service listens on"
expect_in "$ERR" "in use by a service on this host" "host service named"
run sistemo machine stop web
expect_eq "$(ports_elements ports)" 0 "stopped machine's ports left the kernel"
expect_eq "$(db "SELECT count(*) FROM port_rule")" 2 "and stay in SQLite"
run sistemo machine start web
expect_in "$(sistemo machine status web -o json | jq -r .ip)" 10.200.0.2 "same IP after start"
gx web -- sh -c 'httpd -p 80 -h /www'
expect_eq "$(hfetch http://127.0.0.1:80/)" hello-from-web "port back after start"
kill -9 "$DAEMON_PID"
DAEMON_PID=
nft delete table inet sistemo
start_daemon
expect_eq "$(hfetch http://127.0.0.1:80/)" hello-from-web "rules rebuilt after kill -9 and restart"
ok "unexpose, ports follow stop/start, rebuilt from SQLite after a crash"

# --- delete: IP reused, nothing left ---------------------------------------------------------
run sistemo machine delete -y app
deploy --name app2 --network production
expect_in "$OUT" "IP 10.201.0.2" "a released IP is reused"
run sistemo network delete production
expect_rc 6 "delete a network in use"
for m in app2 postgres staging-app web; do run sistemo machine delete -y "$m"; expect_rc 0 "delete $m"; done
run sistemo network delete production
expect_rc 0 "delete production"
run sistemo network delete staging
expect_rc 0 "delete staging"
ip link show br-production >/dev/null 2>&1 && fail "br-production left behind"
expect_eq "$(ports_elements ports)" 0 "no port elements left"
nft list table inet sistemo | grep -q 'br-staging\|br-production\|10.201\|10.202' &&
	fail "rules of deleted networks left behind"
expect_eq "$(ip -br link | grep -c '^vh-' || true)" 0 "no veth host ends left"
ok "delete: IP reused, in-use network refused, no bridge, rule or element left"

finish
