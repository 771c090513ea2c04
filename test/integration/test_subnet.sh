# A custom bridge_subnet for the default network: the bridge's gateway, the machines' addresses
# and their kernel's ip= all derive from it. And a machine in mode none boots without a NIC.
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"

mkdir -p "$SISTEMO_DATA_DIR"
printf 'bridge_subnet: 10.99.0.0/24\n' >"$SISTEMO_DATA_DIR/config.yml"
start_daemon

ip -br addr show sistemo0 | grep -q '10.99.0.1/24' || fail "sistemo0 has no 10.99.0.1/24"
expect_eq "$(sistemo network list -o json | jq -r '.networks[0].subnet + " " + .networks[0].gateway')" \
	"10.99.0.0/24 10.99.0.1" "default network from bridge_subnet"
run sistemo machine deploy tiny --name a --memory 256M --vcpus 1
expect_rc 0 "deploy"
expect_in "$OUT" "IP 10.99.0.2" "first address of the subnet"
run sistemo machine exec a -- sh -c 'cat /proc/cmdline; ip route'
expect_in "$OUT" "ip=10.99.0.2::10.99.0.1:255.255.255.0:a:eth0:off" "kernel ip= from the subnet"
expect_in "$OUT" "default via 10.99.0.1" "the guest's route via the gateway"
run sistemo network create other --subnet 10.99.0.128/25
expect_rc 5 "a named network inside the default subnet"
ok "bridge_subnet 10.99.0.0/24: gateway, machine IP and boot args derive from it"

run sistemo machine deploy tiny --name quiet --memory 256M --vcpus 1 --network-mode none
expect_rc 0 "deploy with mode none"
QPID=$(sistemo machine status quiet -o json | jq -r .pid)
tr '\0' ' ' <"/proc/$QPID/cmdline" | grep -q 'netdev' && fail "mode none: the VMM has a NIC"
run sistemo machine exec quiet true
expect_rc 6 "exec into a machine without network"
expect_in "$ERR" "has no network (mode none)" "why exec is refused"
run sistemo machine logs quiet
expect_in "$OUT" "sistemo: ready" "it booted all the same"
ok "mode none: no NIC, exec refused with the reason, the console shows the boot"

finish
