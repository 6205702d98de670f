#!/usr/bin/env bash
# ci/demo.sh - builds procpool and runs the main demo: word frequencies of a
# 1 GiB text corpus counted over a pool of worker processes, compared with
# the same work run in one process.
#
#   ci/demo.sh [wordfreq options]     e.g.  ci/demo.sh --size=256M
#
# Installs what is missing (Debian: apt-get), configures a Release build in
# build-demo/ and runs examples/wordfreq with the given options.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/ci/deps.sh"
pp_ensure_packages "${PP_BUILD_PACKAGES[@]}"

build=${PROCPOOL_DEMO_BUILD_DIR:-$repo/build-demo}
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release \
      -DPROCPOOL_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target wordfreq >/dev/null
exec "$build/examples/wordfreq/wordfreq" "$@"
