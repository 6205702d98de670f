# shellcheck shell=bash
# Headless Wine environment for running the Windows (mingw-w64) tests.
#
#   . ci/wine-env.sh [BUILD_DIR]      # sets up and starts a persistent wineserver
#   ctest --test-dir BUILD_DIR ...    # CMAKE_CROSSCOMPILING_EMULATOR=wine
#   wine_env_stop                     # wineserver -k
#
# WINEPREFIX: kept if already set, else BUILD_DIR/wineprefix (BUILD_DIR
# defaults to the current directory). Use one WINEPREFIX per concurrent job.
# A new prefix is created with `wineboot -i` (about 10 s, ~700 MB), once, so
# that tests running in parallel do not each race to create it.
# Crashes do not start winedbg (AeDebug Debugger = ""): a crashing test just
# fails, with one line of output. Note that wine truncates a process's exit
# status to 8 bits (0xC0000005 -> 5).
#
# Safe to source from a `set -euo pipefail` script: nothing here exits the
# caller; wine_env_start returns non-zero on failure.

wine_env_start() {
    local build_dir="${1:-$PWD}" t0 t1 cmd
    for cmd in wine wineboot wineserver; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            echo "wine-env: '$cmd' not found (apt-get install wine wine64, or run ci/build-win-deps.sh)" >&2
            return 1
        fi
    done

    if [ -z "${WINEPREFIX:-}" ]; then
        WINEPREFIX="$build_dir/wineprefix"
    fi
    mkdir -p "$WINEPREFIX" || return 1
    WINEPREFIX="$(cd "$WINEPREFIX" && pwd)" || return 1   # wine wants an absolute path
    export WINEPREFIX
    export WINEDEBUG="${WINEDEBUG:--all}"        # must start with -all, else the Debian wrapper nags about wine32
    export WINEDLLOVERRIDES="mscoree,mshtml="    # no Mono / Gecko install prompts
    unset DISPLAY                                # headless: no X, no Xvfb needed

    # Every wine command below runs with stdio away from the caller's: wine's
    # background processes (wineserver, services.exe, winedevice.exe, ...)
    # inherit it, and a pipe they hold open keeps ctest (which waits for EOF
    # on each test's output) or a `| tee` in CI waiting as long as they live.
    local wlog="$WINEPREFIX/.procpool-wine-env.log"
    if [ ! -f "$WINEPREFIX/.procpool-wine-ready" ]; then
        t0=$(date +%s.%N)
        if ! wineboot -i </dev/null >"$wlog" 2>&1; then
            echo "wine-env: wineboot -i failed for $WINEPREFIX:" >&2
            cat "$wlog" >&2
            return 1
        fi
        # No winedbg on unhandled exceptions (it prints ~100 lines and takes ~0.5 s per crash).
        if ! wine reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug' \
            /v Debugger /d '' /f </dev/null >>"$wlog" 2>&1; then
            echo "wine-env: could not set AeDebug Debugger in $WINEPREFIX:" >&2
            cat "$wlog" >&2
            return 1
        fi
        # Let the (non-persistent) server save the registry and exit.
        wineserver -w </dev/null >/dev/null 2>&1 || true
        : >"$WINEPREFIX/.procpool-wine-ready"
        t1=$(date +%s.%N)
        echo "wine-env: created $WINEPREFIX in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s" >&2
    fi

    # A persistent wineserver makes each test start in ~0.05 s instead of ~0.5 s.
    if _wine_env_persistent_server_running; then
        echo "wine-env: reusing the persistent wineserver of $WINEPREFIX" >&2
        return 0
    fi
    # `wineserver -p` fails (status 2) while a server still lingers (about
    # 3 s after its last client): wait for that one first, with a bound.
    if command -v timeout >/dev/null 2>&1; then
        timeout 30 wineserver -w </dev/null >/dev/null 2>&1 || true
    else
        wineserver -w </dev/null >/dev/null 2>&1 || true
    fi
    if ! wineserver -p </dev/null >/dev/null 2>&1; then
        echo "wine-env: warning: could not start a persistent wineserver (tests still run, slower)" >&2
        return 0
    fi
    # Start wine's service processes now, detached from our stdio; otherwise
    # the first test starts them, they inherit its stdout/stderr and live as
    # long as the persistent server, and ctest waits on that test forever.
    if ! wineboot </dev/null >>"$wlog" 2>&1; then
        echo "wine-env: warning: wineboot failed; see $wlog" >&2
    fi
    echo "wine-env: WINEPREFIX=$WINEPREFIX ready (persistent wineserver; wine_env_stop ends it)" >&2
    return 0
}

# True if a wineserver started with -p (forever) serves this WINEPREFIX.
_wine_env_persistent_server_running() {
    local d arg persistent
    for d in /proc/[0-9]*; do
        [ -r "$d/cmdline" ] || continue
        case "$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" in
            *wineserver*) ;;
            *) continue ;;
        esac
        persistent=0
        while IFS= read -r -d '' arg; do
            case "$arg" in -p | --persistent) persistent=1 ;; esac
        done <"$d/cmdline" 2>/dev/null
        [ "$persistent" = 1 ] || continue
        if tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qxF "WINEPREFIX=$WINEPREFIX"; then
            return 0
        fi
    done
    return 1
}

wine_env_stop() {
    if [ -n "${WINEPREFIX:-}" ] && command -v wineserver >/dev/null 2>&1; then
        wineserver -k </dev/null >/dev/null 2>&1 || true
    fi
    return 0
}

wine_env_start "$@"
