#!/usr/bin/env bash
# tests/consumer/run.sh - builds tests/consumer, a project that uses
# procpool, every way a user can (issue 10), and runs its program (a
# starmap over a few tuples):
#
#   1. `cmake --install` of a procpool build into a fresh prefix, then
#      find_package(procpool 0.x CONFIG) (shared and static targets), and a
#      plain cc command line with `pkg-config --cflags --libs procpool`
#      (and --static against libprocpool.a);
#   2. CPack's .tar.gz and .deb of the same build; the .deb unpacked with
#      `dpkg -x` into a temporary folder and consumed from there
#      (find_package and pkg-config: both must be relocatable);
#   3. procpool as a subproject (FetchContent of this source tree), built
#      with -Wpadded, which warns in procpool's sources: the build passes
#      because a subproject build has no -Werror, and procpool must leave
#      its parent's settings alone.
#
#   tests/consumer/run.sh BUILD_DIR [WORK_DIR]
#
# BUILD_DIR is a configured and built procpool (ci/test.sh passes its
# release build).  WORK_DIR (default: a temporary folder, removed at the
# end) holds the prefix, the packages and the consumer builds.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [WORK_DIR]}" && pwd)
if [ -n "${2:-}" ]; then
  work=$2
  rm -rf "$work"
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
cc=${CC:-cc}
say() { printf -- '--- consumer: %s (%ds)\n' "$*" "$SECONDS"; }
quiet() { # runs a command, shows its output only when it fails
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "consumer: failed: $*" >&2
    return 1
  fi
}

# ---- 1. install, find_package, pkg-config ----
prefix=$work/prefix
say "cmake --install $build --prefix $prefix"
quiet cmake --install "$build" --prefix "$prefix"
version=$(sed -n 's/^Version: //p' "$prefix"/lib*/pkgconfig/procpool.pc)
minor=${version%.*}
next_minor=${minor%.*}.$(( ${minor#*.} + 1 ))
vfile=$(echo "$prefix"/lib*/cmake/procpool/procpoolConfigVersion.cmake)
for want in "$minor" "$version" "$next_minor" "$version.1"; do
  got=$(cmake -DFILE="$vfile" -DWANT="$want" -P "$here/version.cmake" 2>&1)
  echo "version $version, find_package(procpool $got)"
  case $want:$got in
  "$minor:$minor: compatible" | "$version:$version: compatible") ;;
  "$next_minor:$next_minor: refused" | "$version.1:$version.1: refused") ;;
  *) echo "consumer: procpoolConfigVersion.cmake is wrong" >&2; exit 1 ;;
  esac
done

# consume DIR: builds tests/consumer against the procpool under DIR (an
# install prefix) with find_package and with pkg-config, runs all four.
consume() {
  local root=$1 name=$2 pcdir libdir cflags libs slibs
  say "$name: find_package(procpool $minor CONFIG), CMAKE_PREFIX_PATH=$root"
  cmake -S "$here" -B "$work/$name-cmake" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$root" | grep 'procpool'
  quiet cmake --build "$work/$name-cmake" -j2
  "$work/$name-cmake/consumer"
  "$work/$name-cmake/consumer_static"

  pcdir=$(dirname "$(echo "$root"/lib*/pkgconfig/procpool.pc)")
  export PKG_CONFIG_PATH=$pcdir
  libdir=$(pkg-config --variable=libdir procpool)
  cflags=$(pkg-config --cflags procpool)
  libs=$(pkg-config --libs procpool)
  say "$name: $cc consumer.c $cflags $libs"
  # shellcheck disable=SC2086 # the words are the flags
  $cc -O2 -o "$work/$name-pc" "$here/consumer.c" $cflags $libs \
      -Wl,-rpath,"$libdir"
  "$work/$name-pc"
  slibs=$(pkg-config --static --libs procpool)
  slibs=${slibs/-lprocpool/-l:libprocpool.a}
  say "$name: $cc consumer.c $cflags $slibs"
  # shellcheck disable=SC2086
  $cc -O2 -o "$work/$name-pc-static" "$here/consumer.c" $cflags $slibs
  if ldd "$work/$name-pc-static" | grep -q libprocpool; then
    echo "consumer: the --static program still loads libprocpool.so" >&2
    exit 1
  fi
  "$work/$name-pc-static"
  # The worker host finds libprocpool.so relative to itself ($ORIGIN).
  host=$(realpath "$(pkg-config --variable=worker_host procpool)")
  found=$(ldd "$host" | sed -n 's/^.*libprocpool\.so[.0-9]* => \(.*\) (0x.*$/\1/p')
  if [ -z "$found" ] || [ "$(realpath "$(dirname "$found")")" != "$(realpath "$libdir")" ]; then
    ldd "$host" >&2
    echo "consumer: $host does not find libprocpool.so in $libdir" >&2
    exit 1
  fi
  echo "worker host: $host, loads $(realpath "$found")"
  unset PKG_CONFIG_PATH
}
consume "$prefix" install

# ---- 2. CPack: .tar.gz and .deb, the .deb unpacked and consumed ----
say "cpack (TGZ, DEB)"
quiet cpack --config "$build/CPackConfig.cmake" -B "$work/packages"
ls "$work/packages"/*.tar.gz "$work/packages"/*.deb
tar -tzf "$work"/packages/*.tar.gz | grep -E 'procpool\.pc|procpoolConfig\.cmake|libexec/procpool-worker$'
dpkg-deb --field "$work"/packages/*.deb Package Version Depends
dpkg -x "$work"/packages/*.deb "$work/deb"
consume "$work/deb/usr" deb

# ---- 3. a subproject, with a flag that warns in procpool's sources ----
say "subproject (FetchContent of $repo), CMAKE_C_FLAGS=-Wpadded"
cmake -S "$here" -B "$work/sub" -DPROCPOOL_SOURCE_DIR="$repo" \
      -DCONSUMER_EXPECT_NO_BUILD_TYPE=ON -DCMAKE_C_FLAGS=-Wpadded >/dev/null
flags=$work/sub/_deps/procpool-build/CMakeFiles/procpool.dir/flags.make
if grep -q -- '-Werror' "$flags"; then
  echo "consumer: a subproject build of procpool has -Werror" >&2
  exit 1
fi
cmake --build "$work/sub" -j2 --target consumer consumer_static \
      >"$work/sub.log" 2>&1 || {
  cat "$work/sub.log" >&2
  echo "consumer: the subproject build failed" >&2
  exit 1
}
warnings=$(grep -c 'warning:' "$work/sub.log" || true)
echo "subproject build: passed with $warnings warnings, no -Werror"
if [ "$warnings" -eq 0 ]; then
  echo "consumer: -Wpadded gave no warning; the check proves nothing" >&2
  exit 1
fi
"$work/sub/consumer"
"$work/sub/consumer_static"
say "all passed"
