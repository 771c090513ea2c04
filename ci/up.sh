#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running daemon with a first machine: installs what is
# needed, builds, installs the binary to /usr/local/bin, prepares the data dir and the guest kit,
# starts the daemon (a systemd service where systemd runs, detached otherwise) and deploys the
# machine 'first' from the built-in image 'tiny'. As root. Run again: it changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install.sh
bash ci/build.sh build
cmake --install build >/dev/null
echo "installed /usr/local/bin/sistemo"
sistemo install
if sistemo system info >/dev/null 2>&1; then
	echo "the sistemo daemon is already running"
elif [ -d /run/systemd/system ]; then
	sistemo service install
	# systemd returns before the socket listens: wait for it, bounded
	for _ in $(seq 1 100); do sistemo system info >/dev/null 2>&1 && break; sleep 0.1; done
else
	sistemo up --detach
fi
sistemo system info
if ! sistemo machine status first >/dev/null 2>&1; then
	sistemo machine deploy tiny --name first
fi
sistemo machine exec first uname -a
sistemo machine list
