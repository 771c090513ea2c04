# Volumes end to end: the real daemon in private namespaces creates, grows, attaches, detaches
# and deletes volumes, and real 'tiny' guests under QEMU (KVM when usable, TCG otherwise) find
# their data volumes mounted at /mnt/NAME, keep them across machines, and boot from a kept root
# disk.
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
command -v mkfs.ext4 >/dev/null || skip "needs e2fsprogs"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"

mkdir -p "$SISTEMO_DATA_DIR"
printf 'reconciler_interval_sec: 1\nmax_storage_mb: 8192\n' >"$SISTEMO_DATA_DIR/config.yml"
start_daemon

vol() { sistemo volume show "$1" -o json; }
mstatus() { sistemo machine status "$1" -o json; }

# --- create, list, bad input -----------------------------------------------------------------
run sistemo volume create 'Bad Name' --size 1G
expect_rc 2 "bad name"
expect_in "$ERR" "invalid volume name" "bad name message"
run sistemo volume create data
expect_rc 2 "no size"
expect_in "$ERR" "needs a size" "no size message"
run sistemo volume create huge --size 10G
expect_rc 2 "above max_storage_mb"
expect_in "$ERR" "max_storage_mb" "size bound message"
run sistemo volume create data --size 1G
expect_rc 0 "create data"
run sistemo volume create data --size 1G
expect_rc 5 "duplicate name"
expect_in "$ERR" "a volume named 'data' already exists" "duplicate message"
run sistemo volume create 1G --name logs
expect_rc 0 "create logs (the older form: size first, --name)"
run sistemo volume create extra -s 512M
expect_rc 0 "create extra"
run sistemo volume list -o json
expect_eq "$(jq -r '[.volumes[].name] | join(",")' <<<"$OUT")" "data,extra,logs" "list by name"
V=$(jq -c '.volumes[] | select(.name == "data")' <<<"$OUT")
expect_eq "$(jq -r .size_mb <<<"$V")" 1024 "size_mb"
expect_eq "$(jq -r .role <<<"$V")" data "role"
expect_eq "$(jq -r .state <<<"$V")" online "state"
expect_eq "$(jq -r '.machine // ""' <<<"$V")" "" "attached to nothing"
DATA_ID=$(jq -r .id <<<"$V")
DATA_FILE=$(jq -r .path <<<"$V")
expect_eq "$DATA_FILE" "$SISTEMO_DATA_DIR/volumes/$DATA_ID.ext4" "the file under volumes/"
USED=$(jq -r '.used_mb // 0' <<<"$V")
[ "$USED" -ge 0 ] && [ "$USED" -lt 8 ] || fail "a fresh volume uses $USED MB"
[ "$(du -m "$DATA_FILE" | cut -f1)" -lt 100 ] || fail "the file is not sparse"
expect_eq "$(dumpe2fs -h "$DATA_FILE" 2>/dev/null | sed -n 's/^Filesystem volume name: *//p')" data "ext4 label"
expect_eq "$(dumpe2fs -h "$DATA_FILE" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')" "$DATA_ID" "ext4 UUID"
run sistemo volume list
expect_in "$OUT" "ATTACHED TO" "table header"
ok "create (both forms), list -o json fields, sparse ext4 with label and UUID, bad input refused"

# --- only sistemo volumes can be attached ----------------------------------------------------
truncate -s 64M "$TEST_DIR/host.ext4"
run sistemo machine deploy tiny --name bad --attach "$TEST_DIR/host.ext4"
expect_rc 2 "deploy --attach with a host path"
expect_in "$ERR" "is not a sistemo volume" "host path refused"
run sistemo machine deploy tiny --name bad --attach /dev/sda
expect_rc 2 "deploy --attach with a device"
run sistemo machine deploy tiny --name bad --attach nosuch
expect_rc 4 "deploy --attach with an unknown volume"
run sistemo machine deploy tiny --name bad --attach data,data
expect_rc 2 "a volume twice"
expect_eq "$(db 'SELECT count(*) FROM machine')" 0 "nothing created by bad deploys"
ok "host paths, devices, unknown and repeated volumes are refused before anything is made"

# --- deploy with --attach: mounted at /mnt/NAME --------------------------------------------
run sistemo machine deploy tiny --name web --memory 256M --vcpus 1 --attach data,logs
expect_rc 0 "deploy web --attach data,logs"
run mstatus web
expect_eq "$(jq -r '[.volumes[] | "\(.name):\(.role):\(.guest_path)"] | join(" ")' <<<"$OUT")" \
	"web-root:root:/ data:data:/mnt/data logs:data:/mnt/logs" "machine status volumes"
WEB_ID=$(jq -r .id <<<"$OUT")
run sistemo machine status web
expect_in "$OUT" "data (data, 1G) /mnt/data" "status text lists the volumes"
V=$(vol web-root)
expect_eq "$(jq -r .role <<<"$V"),$(jq -r .state <<<"$V"),$(jq -r .machine <<<"$V")" "root,attached,web" "root volume row"
expect_eq "$(jq -r .path <<<"$V")" "$SISTEMO_DATA_DIR/vms/$WEB_ID/rootfs.ext4" "root volume file"
expect_eq "$(jq -r .size_mb <<<"$V")" 2048 "root volume size = storage"
run sistemo machine exec web -- sh -c 'grep -E " /mnt/(data|logs) " /proc/mounts | cut -d" " -f1-3'
expect_eq "$OUT" "/dev/vdb /mnt/data ext4
/dev/vdc /mnt/logs ext4" "mounted in attach order"
run sistemo machine exec web -- sh -c 'echo kept-across-machines > /mnt/data/hello.txt && echo on-root > /root/marker && sync'
expect_rc 0 "write into /mnt/data"
ok "deploy --attach: root disk recorded as web-root, data volumes at /mnt/data and /mnt/logs"

# --- refused while running or attached --------------------------------------------------------
run sistemo volume attach extra web
expect_rc 6 "attach to a running machine"
expect_in "$ERR" "stop it first" "attach refusal says to stop"
expect_in "$ERR" "has no hotplug of virtio-mmio devices" "attach refusal says why"
run sistemo volume detach data web
expect_rc 6 "detach from a running machine"
expect_in "$ERR" "stop it first" "detach refusal"
run sistemo machine volume attach web extra
expect_rc 6 "machine volume attach to a running machine"
run sistemo volume resize data --size 2G
expect_rc 6 "resize while its machine runs"
expect_in "$ERR" "stop machine 'web' first: the guest cannot grow a disk online with this driver" "resize refusal"
run sistemo volume delete data -y
expect_rc 6 "delete while attached"
expect_in "$ERR" "attached to machine 'web'" "delete refusal names the machine"
run sistemo volume delete web-root -y
expect_rc 6 "delete a root disk"
expect_in "$ERR" "root disk of machine 'web'" "root delete refusal"
run sistemo volume attach data web
expect_rc 5 "attach twice"
ok "attach, detach, resize and delete are refused with reasons while attached or running"

# --- machine delete: data volumes survive, detached -------------------------------------------
run sistemo machine delete web -y
expect_rc 0 "delete web"
expect_eq "$(jq -r .state <<<"$(vol data)"),$(jq -r '.machine // ""' <<<"$(vol data)")" "online," "data detached"
run sistemo volume show web-root
expect_rc 4 "the root volume went with the machine"
[ -e "$SISTEMO_DATA_DIR/vms/$WEB_ID" ] && fail "run dir left"
[ -f "$DATA_FILE" ] || fail "data file gone"
ok "machine delete releases data volumes and removes the root volume"

# --- resize a detached volume -----------------------------------------------------------------
run sistemo volume resize data --size 512M
expect_rc 2 "shrink"
expect_in "$ERR" "shrinking is not supported" "shrink refusal"
run sistemo volume resize data --size 2G
expect_rc 0 "grow data to 2G"
expect_eq "$(jq -r .size_mb <<<"$(vol data)")" 2048 "size after resize"
expect_eq "$(stat -c %s "$DATA_FILE")" $((2048 << 20)) "file size after resize"
ok "resize grows a detached volume (shrinking refused)"

# --- a new machine sees the data and the bigger filesystem -------------------------------------
run sistemo machine deploy tiny --name web2 --memory 256M --vcpus 1 --attach data
expect_rc 0 "deploy web2 --attach data"
run sistemo machine exec web2 cat /mnt/data/hello.txt
expect_eq "$OUT" kept-across-machines "the file written by the first machine"
run sistemo machine exec web2 -- sh -c "df -m /mnt/data | awk 'NR==2 {print \$2}'"
[ "$OUT" -gt 1900 ] && [ "$OUT" -le 2048 ] || fail "df -m /mnt/data: $OUT MB, expected about 2 GB"
ok "a new machine reads the data back; df -m sees the grown filesystem (${OUT} MB)"

# --- attach and detach while stopped ------------------------------------------------------------
run sistemo machine stop web2
expect_rc 0 "stop web2"
run sistemo volume attach logs web2
expect_rc 0 "attach logs to stopped web2"
run sistemo machine volume detach web2 data -o json
expect_rc 0 "detach data from stopped web2 (machine volume form)"
expect_eq "$(jq -r '[.volumes[].name] | join(",")' <<<"$OUT")" "web2-root,logs" "machine reply lists its volumes"
run sistemo volume detach web2-root web2
expect_rc 6 "detach a root disk"
run sistemo machine start web2
expect_rc 0 "start web2"
run sistemo machine exec web2 -- sh -c 'grep -E " /mnt/" /proc/mounts | cut -d" " -f1-2'
expect_eq "$OUT" "/dev/vdb /mnt/logs" "after start: logs mounted, data gone"
run sistemo machine exec web2 -- sh -c 'echo on-web2-root > /root/marker && sync'
ok "attach and detach while stopped take effect at the next start"

# --- --preserve-storage keeps the root disk as a volume; deploy --volume boots it --------------
WEB2_ID=$(jq -r .id <<<"$(mstatus web2)")
run sistemo machine delete web2 --preserve-storage -y
expect_rc 0 "delete web2 --preserve-storage"
V=$(vol web2-root)
ROOT_ID=$(jq -r .id <<<"$V")
expect_eq "$(jq -r .state <<<"$V"),$(jq -r .role <<<"$V")" "online,root" "kept root disk"
expect_eq "$(jq -r .path <<<"$V")" "$SISTEMO_DATA_DIR/volumes/$ROOT_ID.ext4" "moved under volumes/"
[ -e "$SISTEMO_DATA_DIR/vms/$WEB2_ID" ] && fail "run dir left"
expect_eq "$(jq -r .state <<<"$(vol logs)")" online "logs released"
run sistemo machine deploy tiny --name web2
expect_rc 5 "a new web2 while web2-root is kept"
expect_in "$ERR" "--volume web2-root" "the refusal says how to boot it"
run sistemo machine deploy tiny --name web3 --volume web2-root
expect_rc 2 "an image and --volume"
run sistemo machine deploy --volume web2-root --name web3 --memory 256M --vcpus 1 --attach logs
expect_rc 0 "deploy --volume web2-root"
run mstatus web3
expect_eq "$(jq -r .image <<<"$OUT")" volume:web2-root "image names the volume"
expect_eq "$(jq -r .storage_mb <<<"$OUT")" 2048 "storage = the volume's size"
expect_eq "$(jq -r '[.volumes[] | "\(.name):\(.role)"] | join(",")' <<<"$OUT")" "web2-root:root,logs:data" "web3 volumes"
run sistemo machine exec web3 -- sh -c 'cat /root/marker; hostname'
expect_eq "$OUT" "on-web2-root
web3" "booted from the kept disk, named anew"
run sistemo volume delete web2-root -y
expect_rc 6 "delete the root disk of web3"
ok "--preserve-storage keeps NAME-root; deploy --volume boots it (not copied)"

# --- deleting a machine booted from a volume deletes that volume (it is its root disk) ----------
run sistemo machine delete web3 -y
expect_rc 0 "delete web3"
run sistemo volume show web2-root
expect_rc 4 "web2-root deleted with web3"
[ -e "$SISTEMO_DATA_DIR/volumes/$ROOT_ID.ext4" ] && fail "web2-root's file left"
ok "machine delete without --preserve-storage removes its root volume"

# --- delete volumes; the audit history has every change -----------------------------------------
for v in data logs extra; do
	run sistemo volume delete "$v" -y
	expect_rc 0 "delete $v"
done
expect_eq "$(db 'SELECT count(*) FROM volume')" 0 "no volume rows"
expect_eq "$(ls "$SISTEMO_DATA_DIR/volumes")" "" "no volume files"
expect_eq "$(ls "$SISTEMO_DATA_DIR/vms")" "" "no machine files"
expect_eq "$(db "SELECT count(*) FROM audit WHERE action = 'volume.create' AND success = 1")" 3 "audited creates"
[ "$(db "SELECT count(*) FROM audit WHERE action = 'volume.attach' AND success = 0")" -ge 2 ] ||
	fail "refused attaches not audited"
ok "volume delete removes file and row; every change is audited"

finish
