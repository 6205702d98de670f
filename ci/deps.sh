# ci/deps.sh - sourced by the ci scripts: installs missing Debian packages.
#
# pp_ensure_packages PKG...   installs the named packages that are not yet
# installed (apt-get, after one `apt-get update`).  On a system without
# dpkg/apt-get it only says which packages the build expects.

pp_ensure_packages() {
  local missing=() pkg
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "ci: not a Debian system; make sure these are installed: $*" >&2
    return 0
  fi
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "ci: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ -z "${PP_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    export PP_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The packages every build needs.
PP_BUILD_PACKAGES=(build-essential cmake pkg-config libapr1-dev libcmocka-dev)
