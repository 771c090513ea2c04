# The walking skeleton end to end: the real daemon in private namespaces, the real CLI over
# the socket, and the database read back.
. "$(dirname "$0")/lib.sh"

# --- the daemon is down ---------------------------------------------------------------
run sistemo machine list
expect_rc 3 "list without a daemon"
expect_in "$ERR" "cannot reach the sistemo daemon at $SISTEMO_DATA_DIR/run/sistemo.sock: is it running? (sistemo up)" "daemon down message"
ok "a clear error when the daemon is down"

# --- bad config refuses to start, naming key, value and what is allowed ----------------
mkdir -p "$SISTEMO_DATA_DIR"
printf 'max_vcpus: lots\nfrobnicate: 1\n' >"$SISTEMO_DATA_DIR/config.yml"
run sistemo up --detach --log-file "$TEST_DIR/bad.log"
expect_rc 1 "up with a bad config"
expect_in "$ERR" "'max_vcpus' is 'lots'" "bad value named"
expect_in "$ERR" "from 1 to 256" "allowed range named"
ok "a bad config value stops the daemon with a clear message"

# --- unknown key: a warning, and the daemon starts --------------------------------------
printf 'bridge_subnet: 10.210.0.0/16\nfrobnicate: 1\n' >"$SISTEMO_DATA_DIR/config.yml"
start_daemon
grep -q "unknown key 'frobnicate'" "$TEST_DIR/daemon.log" || fail "no warning for an unknown key"
ok "unknown config key logged as a warning"

# --- socket ownership and mode --------------------------------------------------------
expect_eq "$(stat -c '%U:%G %a' "$SISTEMO_DATA_DIR/run/sistemo.sock")" "root:root 660" "socket"
ok "socket is root-owned, mode 0660"

# --- a second daemon on the same data dir refuses --------------------------------------
run sistemo up
expect_rc 3 "second daemon"
expect_in "$ERR" "another sistemo daemon (pid $DAEMON_PID) is already running" "second daemon"
[ -S "$SISTEMO_DATA_DIR/run/sistemo.sock" ] || fail "second daemon removed the first one's socket"
run sistemo version
expect_rc 0 "version after a refused second daemon"
ok "a second daemon refuses and leaves the first one alone"

# --- version, system info, doctor ------------------------------------------------------
run sistemo version -o json
expect_rc 0 "version"
expect_eq "$(jq -r .client <<<"$OUT")" "$(jq -r .daemon <<<"$OUT")" "client and daemon versions"
run sistemo system info -o json
expect_rc 0 "system info"
expect_eq "$(jq -r .data_dir <<<"$OUT")" "$SISTEMO_DATA_DIR" "info data dir"
expect_eq "$(jq -r .bridge_subnet <<<"$OUT")" "10.210.0.0/16" "info subnet from config"
expect_eq "$(jq -r '[.drivers[].name] | join(",")' <<<"$OUT")" "qemu,firecracker" "drivers"
if [ ! -e /dev/kvm ]; then
	expect_eq "$(jq -r '.drivers[] | select(.name=="firecracker") | .available' <<<"$OUT")" false "fc without kvm"
	[ -n "$(jq -r '.drivers[] | select(.name=="firecracker") | .reason' <<<"$OUT")" ] || fail "no reason why firecracker cannot run"
fi
run sistemo system info
expect_in "$OUT" "Drivers:" "info text"
ok "version and system info"

run sistemo doctor -o json
expect_in "$(jq -r '[.checks[].name] | join(",")' <<<"$OUT")" "daemon,data-dir,database,config,kvm,qemu,firecracker" "doctor checks"
expect_eq "$(jq -r '.checks[] | select(.name=="config") | .status' <<<"$OUT")" warn "doctor sees the config warning"
run sistemo doctor
expect_in "$OUT" "database" "doctor text"
ok "doctor reports its checks"

# --- config ---------------------------------------------------------------------------
run sistemo config -o json
expect_rc 0 "config"
expect_eq "$(jq -r '.entries[] | select(.key=="bridge_subnet") | .source' <<<"$OUT")" config.yml "config source"
expect_eq "$(jq -r '.entries[] | select(.key=="vmm") | .value' <<<"$OUT")" auto "config default"
run sistemo config
expect_in "$OUT" "bridge_subnet: 10.210.0.0/16" "config text"
ok "config shows effective values and their sources"

# --- machine list (empty), network list (default from config) ---------------------------
run sistemo machine list -o json
expect_eq "$(jq -c .machines <<<"$OUT")" "[]" "empty machine list"
run sistemo vm ls
expect_in "$OUT" "no machines" "empty list text"
run sistemo network list -o json
expect_eq "$(jq -r '.networks[0] | "\(.name) \(.subnet) \(.gateway) \(.bridge)"' <<<"$OUT")" "default 10.210.0.0/16 10.210.0.1 sistemo0" "default network"
run sistemo machine status nope
expect_rc 4 "status of a missing machine"
expect_in "$ERR" "machine 'nope' not found" "not found message"
ok "machine list, network list and not-found"

# --- later capabilities answer UNIMPLEMENTED and are audited ---------------------------
run sistemo machine terminal web
expect_rc 9 "terminal (not yet)"
expect_in "$ERR" "it comes with the dashboard" "unimplemented names the capability"
run sistemo machine volume attach web data
expect_rc 4 "attach to a missing machine"
run sistemo machine deploy tiny --memory 12X
expect_rc 2 "bad size"
expect_in "$ERR" "'12X'" "bad size named"
run sistemo network delete nosuch
expect_rc 4 "delete a missing network"

# --- history: every mutating call audited with the caller ------------------------------
run sistemo history -o json
expect_rc 0 "history"
expect_eq "$(jq -r '.entries[0].action' <<<"$OUT")" network.delete "newest first"
expect_eq "$(jq -r '.entries[1].action' <<<"$OUT")" machine.attach_volume "attach audited"
expect_eq "$(jq -r '.entries[1].actor' <<<"$OUT")" uid:0 "actor is the peer uid"
expect_eq "$(jq -r '.entries[1].target_name' <<<"$OUT")" web "target"
expect_eq "$(jq -r '.entries[1].success' <<<"$OUT")" false "outcome"
expect_eq "$(db "SELECT count(*) FROM audit WHERE action='machine.attach_volume' AND success=0")" 1 "audit row in the database"
expect_eq "$(db "PRAGMA journal_mode")" wal "database in WAL mode"
expect_eq "$(db "PRAGMA user_version")" "$(jq -r .schema_version <<<"$(sistemo system info -o json)")" "schema version"
run sistemo history --action machine.attach_volume
expect_in "$OUT" "machine.attach_volume" "history filter"
ok "mutating calls audited (who, what, target, outcome) and read back from SQLite"

# --- completion -------------------------------------------------------------------------
run sistemo completion bash
expect_rc 0 "completion bash"
bash -n <<<"$OUT" || fail "bash completion has a syntax error"
run sistemo completion tcsh
expect_rc 2 "unknown shell"
ok "completion"

# --- help and usage errors ----------------------------------------------------------------
run sistemo machine --help
expect_in "$OUT" "deploy" "machine help"
run sistemo machine deploy --bogus
expect_rc 2 "unknown flag"
expect_in "$ERR" "unknown flag '--bogus'" "unknown flag named"
ok "help and usage errors"

# --- SIGTERM: clean shutdown -------------------------------------------------------------
stop_daemon
[ ! -e "$SISTEMO_DATA_DIR/run/sistemo.sock" ] || fail "socket left after SIGTERM"
grep -q "shutting down" "$TEST_DIR/daemon.log" || fail "no shutdown in the log"
ok "SIGTERM shuts down cleanly and removes the socket"

finish
