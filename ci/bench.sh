#!/usr/bin/env bash
# Builds and runs the benchmarks, each inside a private network + mount namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/build.sh build >/dev/null
unshare --net --mount --propagation private --fork build/test/bench_rpc build/sistemo "${1:-20000}"
