#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the README's test command, and what CI
# runs (.ci/run). As root on Debian 12. Steps:
#   1. dependencies (ci/install.sh)
#   2. formatting (clang-format) and lint (clang-tidy) of our C
#   3. -Werror build + every test (unit, integration)
#   4. AddressSanitizer + UBSan build + every test again
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash ci/install.sh

echo "== clang-format"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find server client test -name '*.[ch]')
clang-format --dry-run -Werror $files

echo "== build (-Werror)"
bash ci/build.sh build -DSISTEMO_WERROR=ON

echo "== clang-tidy"
# clang-tidy exits non-zero on its findings: read what it printed, not its status (with
# pipefail, its status used to send the check down the `|| true` branch, findings or not)
tidy=$(clang-tidy -p build --quiet $(echo "$files" | grep '\.c$') 2>/dev/null || true)
if grep -E "warning:|error:" <<<"$tidy"; then
	echo "clang-tidy found problems"
	exit 1
fi

echo "== tests"
(cd build && ctest --output-on-failure -j2)

echo "== build and tests under AddressSanitizer + UBSan"
bash ci/build.sh build-asan -DSISTEMO_WERROR=ON -DSISTEMO_SANITIZE=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	ctest --output-on-failure -j2)

echo "== all tests passed in $(( $(date +%s) - start )) s"
