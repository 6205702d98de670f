#!/usr/bin/env bash
# Cross-build procpool's Windows dependencies (APR 1.7.2, CMocka 1.1.5) with
# mingw-w64 on Debian, from Debian's source packages plus our patches.
#
#   bash ci/build-win-deps.sh [PREFIX]
#
# PREFIX   install prefix; default $PROCPOOL_WINDEPS, else
#          <repo>/build-windeps/prefix. Pass it to CMake as
#          -DCMAKE_TOOLCHAIN_FILE=ci/mingw-w64.cmake -DWINDEPS=PREFIX.
# Environment:
#   PROCPOOL_WINDEPS       default PREFIX (see above)
#   PROCPOOL_WINDEPS_WORK  scratch folder (sources, builds, logs, private apt
#                          state); default <repo>/build-windeps/work
#   PROCPOOL_WINDEPS_JOBS  parallel build jobs, 1 or 2 (default 2)
#
# Installs missing tools with apt-get (mingw-w64, wine, wine64, cmake, ...).
# Idempotent: PREFIX/.procpool-windeps.stamp records a checksum of this
# script, the toolchain file, the patches and the compiler version; when it
# matches, the script exits at once ("reusing ...").
#
# Result (PREFIX):
#   include/apr*.h                    APR headers (directly in include/)
#   lib/libapr-1.a                    APR static (consumer: -DAPR_DECLARE_STATIC)
#   lib/libapr-1.dll.a, bin/libapr-1.dll, lib/libaprapp-1.a, lib/liblibaprapp-1.a
#   include/cmocka.h, lib/libcmocka-static.a, lib/cmocka.dll.a, bin/cmocka.dll
#   lib/cmake/cmocka/cmocka-config.cmake, lib/pkgconfig/cmocka.pc
# Static consumer link: libapr-1.a libcmocka-static.a -lws2_32 -lmswsock
#   -lrpcrt4 -ladvapi32 -lshell32 (+ -lbcrypt if you call BCrypt*).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
PREFIX="${1:-${PROCPOOL_WINDEPS:-$repo/build-windeps/prefix}}"
WORK="${PROCPOOL_WINDEPS_WORK:-$repo/build-windeps/work}"
JOBS="${PROCPOOL_WINDEPS_JOBS:-2}"
case "$JOBS" in 1 | 2) ;; *) JOBS=2 ;; esac   # shared 2-core machines: never more

TOOLCHAIN="$here/mingw-w64.cmake"
APR_PATCH="$here/patches/apr-1.7.2-mingw.patch"
CMOCKA_PATCH="$here/patches/cmocka-1.1.5-mingw.patch"

APR_VERSION=1.7.2
APR_TARBALL="apr_${APR_VERSION}.orig.tar.bz2"
APR_SHA256=75e77cc86776c030c0a5c408dfbd0bf2a0b75eed5351e52d5439fa1e5509a43e
CMOCKA_VERSION=1.1.5
CMOCKA_TARBALL="cmocka_${CMOCKA_VERSION}.orig.tar.xz"
CMOCKA_SHA256=f0ccd8242d55e2fd74b16ba518359151f6f8383ff8aef4976e48393f77bba8b6

MINGW=x86_64-w64-mingw32
STAMP_NAME=.procpool-windeps.stamp
OWNER_NAME=.procpool-windeps.owner

log() { printf '[windeps] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

T_START=$(now)
TIMINGS=()
# step NAME LOGFILE CMD...: run CMD with its output in LOGFILE, print the time.
step() {
    local name="$1" logf="$2" t0 t1 rc
    shift 2
    log "$name ..."
    t0=$(now)
    set +e
    (set -e; "$@") >"$logf" 2>&1   # errexit also inside shell functions
    rc=$?
    set -e
    t1=$(now)
    if [ "$rc" -ne 0 ]; then
        log "$name FAILED (exit $rc) after $(secs "$t0" "$t1") s; last lines of $logf:"
        tail -n 40 "$logf" >&2 || true
        exit "$rc"
    fi
    TIMINGS+=("$(printf '%-28s %6s s' "$name" "$(secs "$t0" "$t1")")")
    log "$name done in $(secs "$t0" "$t1") s"
}

# ---------------------------------------------------------------- tools
# command -> Debian package. Only what is missing is installed.
ensure_tools() {
    local -a missing=()
    local spec cmd pkg
    for spec in \
        "$MINGW-gcc:mingw-w64" "$MINGW-windres:mingw-w64" \
        "wine:wine" "wineboot:wine" "wineserver:wine" "/usr/lib/wine/wine64:wine64" \
        "cmake:cmake" "make:make" "cc:gcc" "patch:patch" \
        "bzip2:bzip2" "xz:xz-utils" "dpkg-source:dpkg-dev" "sha256sum:coreutils"; do
        cmd="${spec%%:*}" pkg="${spec#*:}"
        if [[ "$cmd" == /* ]]; then
            [ -x "$cmd" ] && continue
        else
            command -v "$cmd" >/dev/null 2>&1 && continue
        fi
        [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get"
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    mkdir -p "$WORK/logs"
    step "apt-get update" "$WORK/logs/apt-update.log" apt-get update
    step "apt-get install" "$WORK/logs/apt-install.log" \
        env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_tools
command -v "$MINGW-gcc" >/dev/null || die "$MINGW-gcc still missing"

# ---------------------------------------------------------------- reuse?
for f in "$TOOLCHAIN" "$APR_PATCH" "$CMOCKA_PATCH"; do
    [ -f "$f" ] || die "missing $f"
done
STAMP_VALUE="$(
    {
        echo "apr $APR_VERSION $APR_SHA256 cmocka $CMOCKA_VERSION $CMOCKA_SHA256"
        "$MINGW-gcc" --version | head -n 1
        sha256sum "$here/build-win-deps.sh" "$TOOLCHAIN" "$APR_PATCH" "$CMOCKA_PATCH" | awk '{ print $1 }'
    } | sha256sum | awk '{ print $1 }'
)"
if [ -f "$PREFIX/$STAMP_NAME" ] && [ "$(cat "$PREFIX/$STAMP_NAME")" = "$STAMP_VALUE" ] &&
    [ -f "$PREFIX/lib/libapr-1.a" ] && [ -f "$PREFIX/lib/libcmocka-static.a" ]; then
    log "reusing $PREFIX (stamp ${STAMP_VALUE:0:12} matches) in $(secs "$T_START" "$(now)") s"
    exit 0
fi

# ---------------------------------------------------------------- build
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
mkdir -p "$(dirname "$PREFIX")"
PREFIX="$(cd "$(dirname "$PREFIX")" && pwd)/$(basename "$PREFIX")"
log "building into $PREFIX (work folder $WORK, -j$JOBS)"

# One build at a time per work folder.
exec 9>"$WORK/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

LOGS="$WORK/logs"
rm -rf "$WORK/src" "$WORK/build"
mkdir -p "$LOGS" "$WORK/src" "$WORK/build" "$WORK/dl"

# --- sources: Debian source packages through a private apt configuration, so
# that the system's apt lists, cache and sources stay untouched.
APT="$WORK/apt"
write_private_sources() {
    local out="$APT/etc/sources.list.d/deb-src.sources"
    : >"$out"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # deb822: the same stanzas (URIs, Suites, Components, Signed-By, ...)
        # with Types: deb-src.
        sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$out"
    fi
    if [ -f /etc/apt/sources.list ]; then
        grep -E '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list |
            sed -E 's/^[[:space:]]*deb[[:space:]]/deb-src /' >"$APT/etc/sources.list" || true
    fi
    if ! grep -qE '^(Types: deb-src|deb-src )' "$out" "$APT/etc/sources.list" 2>/dev/null; then
        local codename
        codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
        log "no Debian entry in the system's apt sources; using deb.debian.org $codename"
        cat >"$out" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
}
fetch_sources() {
    rm -rf "$APT"
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/etc/sources.list.d"
    : >"$APT/etc/sources.list"
    write_private_sources
    local -a opts=(
        -o "Dir::State::Lists=$APT/lists"
        -o "Dir::Cache=$APT/cache"
        -o "Dir::Etc::SourceList=$APT/etc/sources.list"
        -o "Dir::Etc::SourceParts=$APT/etc/sources.list.d"
        -o "APT::Sandbox::User=root"
    )
    echo "== private sources"; cat "$APT/etc/sources.list" "$APT/etc/sources.list.d/"*
    apt-get "${opts[@]}" update
    (cd "$WORK/dl" && apt-get "${opts[@]}" source --download-only apr cmocka)
}
verify_sources() {
    local f sum
    for f in "$APR_TARBALL:$APR_SHA256" "$CMOCKA_TARBALL:$CMOCKA_SHA256"; do
        [ -f "$WORK/dl/${f%%:*}" ] || { echo "missing $WORK/dl/${f%%:*}"; ls -l "$WORK/dl"; return 1; }
        sum="$(sha256sum "$WORK/dl/${f%%:*}" | awk '{ print $1 }')"
        if [ "$sum" != "${f#*:}" ]; then
            echo "sha256 mismatch for ${f%%:*}: got $sum, want ${f#*:}"
            return 1
        fi
        echo "ok ${f%%:*} $sum"
    done
}
if verify_sources >/dev/null 2>&1; then
    log "sources already downloaded and verified in $WORK/dl"
else
    rm -rf "$WORK/dl" && mkdir -p "$WORK/dl"
    step "fetch sources (apt-get)" "$LOGS/fetch.log" fetch_sources
    step "verify sha256" "$LOGS/verify.log" verify_sources
fi

extract_and_patch() {
    tar -C "$WORK/src" -xjf "$WORK/dl/$APR_TARBALL"
    tar -C "$WORK/src" -xJf "$WORK/dl/$CMOCKA_TARBALL"
    (cd "$WORK/src/apr-$APR_VERSION" && patch -p1 --forward --batch <"$APR_PATCH")
    (cd "$WORK/src/cmocka-$CMOCKA_VERSION" && patch -p1 --forward --batch <"$CMOCKA_PATCH")
}
step "extract + patch" "$LOGS/patch.log" extract_and_patch

APR_SRC="$WORK/src/apr-$APR_VERSION"
CMOCKA_SRC="$WORK/src/cmocka-$CMOCKA_VERSION"
GEN_TEST_CHAR="$WORK/build/gen_test_char_host"

# gen_test_char runs at build time: build it for the host, as the Windows
# build would (-DWIN32 selects the Windows shell-escape table).
step "host gen_test_char" "$LOGS/gen_test_char.log" \
    cc -DWIN32 -O2 -o "$GEN_TEST_CHAR" "$APR_SRC/tools/gen_test_char.c"

# Own the prefix: wipe it only if an earlier run of this script made it.
if [ -e "$PREFIX" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
    if [ -f "$PREFIX/$OWNER_NAME" ]; then
        rm -rf "$PREFIX"
    else
        log "warning: $PREFIX is not empty and was not made by this script; installing over it"
    fi
fi
mkdir -p "$PREFIX"
echo "made by ci/build-win-deps.sh; may be deleted and rebuilt by it" >"$PREFIX/$OWNER_NAME"

CMAKE_COMMON=(
    -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN"
    -DWINDEPS="$PREFIX"
    -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_INSTALL_PREFIX="$PREFIX"
)

step "APR configure" "$LOGS/apr-configure.log" \
    cmake -S "$APR_SRC" -B "$WORK/build/apr" "${CMAKE_COMMON[@]}" \
    -DAPR_HAVE_IPV6=ON -DINSTALL_PDB=OFF -DMIN_WINDOWS_VER=Vista \
    -DAPR_GEN_TEST_CHAR="$GEN_TEST_CHAR" \
    -DCMAKE_C_FLAGS="-Wno-error=incompatible-pointer-types"
# (about 10 -Wincompatible-pointer-types warnings per library with gcc 12;
# gcc >= 14 makes them errors unless told otherwise, hence the flag.)
# All targets: libapr-1.a (static) and libapr-1.dll (+ libaprapp). The DLL
# roughly doubles the compile time (each source is built twice) but keeps the
# DLL variant available and lets the plain `cmake --install` work.
step "APR build" "$LOGS/apr-build.log" cmake --build "$WORK/build/apr" -j "$JOBS"
step "APR install" "$LOGS/apr-install.log" cmake --install "$WORK/build/apr"

step "CMocka configure" "$LOGS/cmocka-configure.log" \
    cmake -S "$CMOCKA_SRC" -B "$WORK/build/cmocka" "${CMAKE_COMMON[@]}" \
    -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
step "CMocka build" "$LOGS/cmocka-build.log" cmake --build "$WORK/build/cmocka" -j "$JOBS"
step "CMocka install" "$LOGS/cmocka-install.log" cmake --install "$WORK/build/cmocka"

for f in lib/libapr-1.a include/apr.h include/apr_general.h lib/libcmocka-static.a \
    include/cmocka.h lib/cmake/cmocka/cmocka-config.cmake; do
    [ -f "$PREFIX/$f" ] || die "expected $PREFIX/$f after install"
done
if grep -q "warning:" "$LOGS/apr-build.log"; then
    log "note: APR build: $(grep -c 'warning:' "$LOGS/apr-build.log") compiler warnings (expected: -Wincompatible-pointer-types), see $LOGS/apr-build.log"
fi

echo "$STAMP_VALUE" >"$PREFIX/$STAMP_NAME"

log "timings:"
for t in "${TIMINGS[@]}"; do log "  $t"; done
log "  $(printf '%-28s %6s s' total "$(secs "$T_START" "$(now)")")"
log "installed into $PREFIX"
