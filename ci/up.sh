#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running daemon: installs what is needed, builds,
# installs the binary to /usr/local/bin, prepares the data dir, and starts the daemon (as a
# systemd service where systemd runs, detached otherwise). As root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install.sh
bash ci/build.sh build
cmake --install build >/dev/null
echo "installed /usr/local/bin/sistemo"
sistemo install
if [ -d /run/systemd/system ]; then
	sistemo service install
else
	sistemo up --detach
fi
sistemo system info
