# Images end to end: the real daemon in private namespaces builds an image from a busybox tree
# (dropbear added), serves it from a registry on 127.0.0.1 of the test's own network namespace,
# pulls it (interrupted, then resumed with Range), rejects a wrong digest, imports an ext4 file,
# builds from an OCI archive (two layers, a whiteout) whose entrypoint the guest runs, refuses
# malicious tarballs, and refuses to delete an image a machine uses.
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (ci/install.sh)"
command -v python3 >/dev/null || skip "needs python3"
[ -e /dev/net/tun ] || skip "needs /dev/net/tun"
[ -x /bin/busybox ] || skip "needs busybox-static"
ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1 ||
	skip "needs the cloud kernel package file (ci/install.sh downloads it)"

PORT=8701
REG="$TEST_DIR/registry"
SERVER_PID=
mkdir -p "$SISTEMO_DATA_DIR" "$REG"
printf 'registry_url: http://127.0.0.1:%s/\n' "$PORT" >"$SISTEMO_DATA_DIR/config.yml"

# A static file server with Range support; with CUT it dies after sending CUT bytes of a file.
cat >"$TEST_DIR/serve.py" <<'EOF'
import http.server, os, sys
root, port, cut = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = open(os.path.join(root, "requests.log"), "a")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404); return
        size, start, rng = os.path.getsize(path), 0, self.headers.get("Range")
        log.write("%s %s\n" % (self.path, rng)); log.flush()
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= size:
                self.send_response(416); self.end_headers(); return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start)); self.end_headers()
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                if cut and not path.endswith(".json") and sent + len(chunk) > cut:
                    self.wfile.write(chunk[:cut - sent]); self.wfile.flush(); os._exit(0)
                self.wfile.write(chunk); sent += len(chunk)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF

serve() {
	python3 "$TEST_DIR/serve.py" "$REG" "$PORT" "$1" &
	SERVER_PID=$!
	for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
	fail "the registry server did not start"
}
unserve() {
	[ -n "$SERVER_PID" ] || return 0
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}
on_exit() {
	local rc=$?
	unserve
	(exit $rc) || cleanup
	cleanup
}
trap on_exit EXIT

# wait_for_exec MACHINE CMD EXPECTED: the command's output, at most 60 tries a second apart
wait_for_exec() {
	for _ in $(seq 60); do
		run sistemo machine exec "$1" -- sh -c "$2"
		[ "$RC" -eq 0 ] && [ "$OUT" = "$3" ] && return 0
		sleep 1
	done
	fail "$1: '$2' gave '$OUT' (rc $RC, $ERR), expected '$3'"
}

# busybox tree: the applets as links, root's account, the mount points
make_tree() {
	local t=$1 a
	mkdir -p "$t"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,run,tmp,var/log}
	cp /bin/busybox "$t/bin/busybox"
	for a in $(/bin/busybox --list-full); do
		[ "$a" = bin/busybox ] || [ -e "$t/$a" ] || ln -s /bin/busybox "$t/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$t/etc/passwd"
	printf 'root:x:0:\n' >"$t/etc/group"
	printf 'root:*:19000:0:99999:7:::\n' >"$t/etc/shadow"
	chmod 0700 "$t/root"
}

start_daemon

# --- build from a tree: no SSH server in it, so dropbear is added --------------------------
make_tree "$TEST_DIR/tree"
run sistemo image build base --from "$TEST_DIR/tree"
expect_rc 0 "build from a tree"
expect_in "$OUT" "Image 'base' built: sha256:" "build output"
expect_in "$OUT" "dropbear (added by sistemo)" "dropbear added"
expect_in "$ERR" "adding the host's dropbear" "build progress"
run sistemo image show base -o json
FILE=$(jq -r .path <<<"$OUT")
DIGEST=$(jq -r .digest <<<"$OUT")
expect_eq "$(jq -r .source <<<"$OUT")" build "source"
expect_eq "sha256:$(sha256sum "$FILE" | cut -d' ' -f1)" "$DIGEST" "digest is the file's sha256"
expect_eq "$(find "$SISTEMO_DATA_DIR/images/tmp" -mindepth 1 | wc -l)" 0 "no build leftovers"
ok "image build --from DIR: dropbear added, stored by digest ($DIGEST)"

# --- the registry: index.json, a gzip'd image, a wrong digest -----------------------------
SHA=${DIGEST#sha256:}
SIZE=$(stat -c %s "$FILE")
gzip -c "$FILE" >"$REG/base.ext4.gz"
GZSIZE=$(stat -c %s "$REG/base.ext4.gz")
cat >"$REG/index.json" <<EOF
{"version": 1, "images": [
 {"name": "base", "tag": "v1", "description": "busybox and dropbear", "size": $SIZE,
  "sha256": "$SHA", "compression": "gzip", "url": "base.ext4.gz", "file_size": $GZSIZE},
 {"name": "bad", "size": $SIZE, "sha256": "$(printf '0%.0s' $(seq 64))", "compression": "gzip",
  "url": "/base.ext4.gz"}
]}
EOF
run sistemo image delete base -y
expect_rc 0 "delete the built image"
expect_eq "$(db 'SELECT count(*) FROM image')" 0 "store empty"

# a server that dies mid-download: the pull fails, the partial file stays
serve $((GZSIZE / 3))
run sistemo image pull base:v1
expect_rc 3 "interrupted pull"
expect_in "$ERR" "the next pull resumes it" "interrupted pull error"
unserve
PARTIAL=$(ls "$SISTEMO_DATA_DIR"/images/downloads/*.partial)
[ "$(stat -c %s "$PARTIAL")" -gt 0 ] || fail "no partial download kept"
expect_eq "$(db 'SELECT count(*) FROM image')" 0 "nothing stored by an interrupted pull"
ok "an interrupted pull keeps its partial file ($(stat -c %s "$PARTIAL") of $GZSIZE bytes)"

serve 0
: >"$REG/requests.log"
HAVE=$(stat -c %s "$PARTIAL")
run sistemo image pull base:v1
expect_rc 0 "resumed pull"
expect_in "$OUT" "Image 'base:v1' pulled: $DIGEST" "pull output"
grep -qx "/base.ext4.gz bytes=$HAVE-" "$REG/requests.log" ||
	fail "the pull did not resume at byte $HAVE: $(cat "$REG/requests.log")"
[ ! -e "$PARTIAL" ] || fail "partial file left after the pull"
expect_eq "$(db "SELECT source FROM image WHERE digest = '$DIGEST'")" registry "pulled source"
ok "the pull resumes with a Range request and checks the digest"

run sistemo image pull bad
expect_rc 2 "wrong digest"
expect_in "$ERR" "sha256 mismatch" "mismatch named"
expect_eq "$(db 'SELECT count(*) FROM image')" 1 "nothing stored by a bad pull"
expect_eq "$(db "SELECT count(*) FROM image_tag WHERE tag = 'bad:latest'")" 0 "no bad tag"
expect_eq "$(find "$SISTEMO_DATA_DIR/images/tmp" "$SISTEMO_DATA_DIR/images/downloads" -type f | wc -l)" 0 "no file left"
run sistemo image pull nosuch
expect_rc 4 "unknown registry image"
run sistemo image list --registry
expect_in "$OUT" "base:v1" "registry listing"
expect_in "$OUT" "(cached)" "cached entry marked"
ok "a wrong sha256 is rejected and leaves nothing; unknown names are not found"

# --- deploy the pulled image; deleting it is refused while the machine exists ----------------
run sistemo machine deploy base:v1 --name pulled --memory 256M --vcpus 1
expect_rc 0 "deploy the pulled image"
run sistemo machine exec pulled -- sh -c 'echo hi from $(hostname)'
expect_eq "$OUT" "hi from pulled" "exec in the pulled image"
expect_eq "$(db "SELECT image_digest FROM machine WHERE name = 'pulled'")" "$DIGEST" "machine records the digest"
run sistemo image delete base:v1 -y
expect_rc 6 "delete while used"
expect_in "$ERR" "used by 1 machine ('pulled')" "delete refusal names the machine"
run sistemo image list -o json
expect_eq "$(jq -r '.images[0].used_by[0]' <<<"$OUT")" pulled "used_by"
ok "the pulled image deploys, answers exec, and cannot be deleted while used"

# --- deploy from a URL: downloaded (gzip recognised), recorded, the machine's digest -------
: >"$REG/requests.log"
run sistemo machine deploy "http://127.0.0.1:$PORT/base.ext4.gz" --name fromurl --memory 256M --vcpus 1
expect_rc 0 "deploy from a URL"
run sistemo machine exec fromurl -- cat /etc/passwd
expect_in "$OUT" "root:x:0:0" "exec in the URL image"
expect_eq "$(db "SELECT digest FROM image_url WHERE url = 'http://127.0.0.1:$PORT/base.ext4.gz'")" "$DIGEST" "URL cached by digest"
expect_eq "$(db "SELECT image_digest FROM machine WHERE name = 'fromurl'")" "$DIGEST" "URL machine digest"
run sistemo machine delete fromurl -y
expect_rc 0 "delete the URL machine"
ok "deploy from an http URL downloads, decompresses and records the image by digest"

# --- import an ext4 file --------------------------------------------------------------------
truncate -s 32M "$TEST_DIR/plain.ext4"
mkfs.ext4 -q -F "$TEST_DIR/plain.ext4"
run sistemo image import "$TEST_DIR/plain.ext4" --name plain:v2
expect_rc 0 "import"
run sistemo image import /etc/hostname
expect_rc 2 "import of a non-ext4 file"
run sistemo image list -o json
expect_eq "$(jq -r '.images[] | select(.tags[0] == "plain:v2") | .source' <<<"$OUT")" import "imported"
expect_eq "$(jq -r '.images[] | select(.tags[0] == "plain:v2") | .digest' <<<"$OUT")" \
	"sha256:$(sha256sum "$TEST_DIR/plain.ext4" | cut -d' ' -f1)" "import digest"
run sistemo image delete plain:v2 -y
expect_rc 0 "delete an unused image"
ok "image import checks the ext4 magic and stores the file by digest"

# --- malicious tarballs: refused, nothing written outside -------------------------------------
python3 - "$TEST_DIR" <<'EOF'
import io, sys, tarfile
d = sys.argv[1]
def add(t, name, data=b"x", **kw):
    i = tarfile.TarInfo(name); i.size = len(data)
    for k, v in kw.items(): setattr(i, k, v)
    t.addfile(i, io.BytesIO(data) if i.type == tarfile.REGTYPE else None)
with tarfile.open(d + "/dotdot.tar", "w") as t:
    add(t, "ok"); add(t, "../../escaped-dotdot")
with tarfile.open(d + "/symlink.tar", "w") as t:
    add(t, "evil", type=tarfile.SYMTYPE, linkname=d + "/outside"); add(t, "evil/escaped-link")
EOF
mkdir -p "$TEST_DIR/outside"
for bad in dotdot symlink; do
	run sistemo image build "evil-$bad" --from "$TEST_DIR/$bad.tar"
	expect_rc 2 "malicious tarball $bad"
	expect_in "$ERR" "$bad.tar" "the error names the archive"
done
[ -z "$(ls -A "$TEST_DIR/outside")" ] || fail "a tarball wrote through a symlink"
[ ! -e "$TEST_DIR/../escaped-dotdot" ] && [ ! -e "$SISTEMO_DATA_DIR/images/escaped-dotdot" ] ||
	fail "a tarball wrote outside its tree"
expect_eq "$(db "SELECT count(*) FROM image_tag WHERE tag LIKE 'evil%'")" 0 "no evil image"
expect_eq "$(find "$SISTEMO_DATA_DIR/images/tmp" -mindepth 1 | wc -l)" 0 "no build leftovers"
ok "malicious tarballs (.., symlink escape) are refused and write nothing outside"

# --- an OCI (docker save) archive: two layers, a whiteout, an entrypoint ------------------
python3 - "$TEST_DIR" <<'EOF'
import io, json, os, sys, tarfile
d = sys.argv[1]
def layer(build):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        build(t)
    return b.getvalue()
def add(t, name, data=b"", mode=0o644):
    i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode
    t.addfile(i, io.BytesIO(data))
def base(t):
    t.add(d + "/tree", arcname=".")
    add(t, "etc/removed-by-layer2", b"gone\n")
app = b'#!/bin/sh\necho "$GREETING $1 $(pwd) $(cat /etc/removed-by-layer2 2>/dev/null || echo whited-out)" >/tmp/marker\nexec sleep 100000\n'
def top(t):
    add(t, "etc/.wh.removed-by-layer2")
    add(t, "srv/app.sh", app, 0o755)
config = {"architecture": "amd64", "os": "linux",
          "config": {"Entrypoint": ["/bin/sh", "/srv/app.sh"], "Cmd": ["world"],
                     "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"],
                     "WorkingDir": "/srv"},
          "rootfs": {"type": "layers", "diff_ids": []}}
manifest = [{"Config": "config.json", "RepoTags": ["app:latest"],
             "Layers": ["l1/layer.tar", "l2/layer.tar"]}]
with tarfile.open(d + "/app.tar", "w") as t:
    for name, data in [("manifest.json", json.dumps(manifest).encode()),
                       ("config.json", json.dumps(config).encode()),
                       ("l1/layer.tar", layer(base)), ("l2/layer.tar", layer(top))]:
        add(t, name, data)
EOF
run sistemo image build app --from "$TEST_DIR/app.tar"
expect_rc 0 "build from an OCI archive"
run sistemo image show app -o json
expect_eq "$(jq -c .entrypoint <<<"$OUT")" '["/bin/sh","/srv/app.sh"]' "entrypoint in the metadata"
expect_eq "$(jq -r .workdir <<<"$OUT")" /srv "workdir in the metadata"
run sistemo machine deploy app --name app --memory 256M --vcpus 1
expect_rc 0 "deploy the OCI image"
wait_for_exec app 'cat /tmp/marker' "hello world /srv whited-out"
run sistemo machine exec app -- sh -c 'cat /etc/sistemo/entrypoint | tail -n1'
expect_eq "$OUT" "exec '/bin/sh' '/srv/app.sh' 'world'" "entrypoint script"
ok "an OCI archive builds (whiteout applied), and the guest runs its entrypoint with env and workdir"

finish
