#!/usr/bin/env bash
# ci/docs.sh - builds the API reference from include/procpool.h with Doxygen
# (docs/Doxyfile, with docs/design.md as its main page) and fails on any
# warning: an undocumented public symbol is one.
#
#   ci/docs.sh [BUILD_DIR]
#
# The HTML goes to BUILD_DIR/docs/html (BUILD_DIR defaults to
# $PROCPOOL_BUILD_DIR, else build-ci/); Doxygen's messages to
# BUILD_DIR/docs/doxygen.log.  Installs doxygen if it is missing (Debian:
# apt-get, ci/deps.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/ci/deps.sh"
pp_ensure_packages doxygen
command -v doxygen >/dev/null 2>&1 || { echo "docs: doxygen not found" >&2; exit 1; }

build=${1:-${PROCPOOL_BUILD_DIR:-$repo/build-ci}}
out="$build/docs"
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/doxygen.log"
version=$(sed -nE 's/^#define PP_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)$/\2/p' \
            "$repo/include/procpool.h" | paste -sd.)

start=$(date +%s%N)
rc=0
(cd "$repo" && PP_DOCS_OUT="$out" PP_DOCS_VERSION="$version" \
   doxygen docs/Doxyfile) >"$log" 2>&1 || rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
# WARN_AS_ERROR = FAIL_ON_WARNINGS makes doxygen exit non-zero on a
# warning; QUIET = YES leaves nothing else in the log, so any line fails too.
if [ "$rc" -ne 0 ] || [ -s "$log" ]; then
  sed "s|$repo/||" "$log" >&2
  echo "docs: doxygen $(doxygen --version) failed (status $rc, $(wc -l <"$log") lines above)" >&2
  exit 1
fi
echo "docs: API reference for procpool $version in $out/html/index.html" \
     "(doxygen $(doxygen --version), ${ms} ms, no warnings)"
