#!/usr/bin/env bash
# Builds and runs the benchmarks in sequence, each inside its own private network + mount
# namespace (docs/benchmarks.md): rpc (no-op RPC round trip), plumbing (per-machine netns + veth
# + bridge + TAP), nft (exposed ports as map elements), dnat (the data path through DNAT: first
# connection, throughput against direct and socat), deploy (deploy -> ready against the same QEMU
# command by hand).
# Usage: ci/bench.sh [RPC_ROUNDS]; PLUMBING_MACHINES (50) and DEPLOY_ROUNDS (9) in the
# environment. A benchmark that cannot run here (exit 77: no QEMU, no kernel package) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/build.sh build >/dev/null

skippable() {
	local rc=0
	"$@" || rc=$?
	[ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || exit "$rc"
}

echo "== rpc"
unshare --net --mount --propagation private --fork build/test/bench_rpc build/sistemo "${1:-20000}"
echo "== plumbing"
# it also isolates itself (test/integration/it.h), which needs no namespace around it
skippable unshare --net --mount --propagation private --fork \
	build/test/bench_plumbing "${PLUMBING_MACHINES:-50}"
echo "== nft"
# exposed ports as map elements against `nft -f` per change, as Sistemo does
skippable unshare --net --mount --propagation private --fork build/test/bench_nft 20
echo "== dnat"
# first connection and bulk throughput through the DNAT of exposed ports, guests as namespaces
skippable unshare --net --mount --propagation private --fork build/test/bench_dnat
echo "== deploy"
# it re-executes itself under unshare, like the integration tests
export SISTEMO_BIN="$PWD/build/sistemo"
skippable bash test/bench/deploy.sh "${DEPLOY_ROUNDS:-9}"
