# shellcheck shell=bash
# warden's set-up on Debian 12, in one place: sourced by scripts/demo, scripts/test and
# .ci/run. It checks (and as root installs) the Debian packages, configures with Ninja and
# builds. Functions only; nothing runs when it is sourced.
#
# Knobs (environment): WARDEN_BUILD_DIR (default build/), WARDEN_JOBS (default nproc).

WARDEN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDEN_BUILD_DIR="${WARDEN_BUILD_DIR:-$WARDEN_ROOT/build}"
WARDEN_JOBS="${WARDEN_JOBS:-$(nproc 2>/dev/null || echo 2)}"

# The packages verified on Debian 12: compiler, build tools, and warden's dependencies.
# libunwind8: the runtime library only; warden dlopens it for fast spawn-stack captures.
WARDEN_PACKAGES=(cmake ninja-build g++ libboost1.81-dev libboost-stacktrace1.81-dev
    libspdlog-dev doctest-dev libbenchmark-dev libunwind8 libgtest-dev libgmock-dev catch2)

warden_say() {
    printf '[warden] %s\n' "$*"
}

warden_package_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

# warden_require_packages PKG...: returns 0 once every package is installed. As root,
# installs the missing ones with apt-get; otherwise prints the exact command and returns 1.
warden_require_packages() {
    if ! command -v dpkg-query >/dev/null; then
        warden_say "dpkg-query not found: these scripts set up Debian 12 (bookworm) only."
        warden_say "Elsewhere install the equivalents of: $*"
        return 1
    fi
    local pkg
    local -a missing=()
    for pkg in "$@"; do
        warden_package_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        warden_say "Debian packages present: $*"
        return 0
    fi
    warden_say "missing Debian packages: ${missing[*]}"
    # libboost1.81-dev and libboost1.74-dev (what libboost-all-dev pulls in) conflict: apt
    # resolves it by removing the 1.74 headers. Say so before it happens.
    if [[ " ${missing[*]} " == *" libboost1.81-dev "* ]] && warden_package_installed libboost1.74-dev; then
        warden_say "note: libboost1.81-dev conflicts with the installed libboost1.74-dev;"
        warden_say "      apt-get removes the Boost 1.74 headers (and packages that need them,"
        warden_say "      such as libboost-dev or libboost-all-dev) to install Boost 1.81."
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        warden_say "not root, so nothing is installed. Run (then run this command again):"
        printf '  sudo apt-get update\n'
        printf '  sudo apt-get install -y --no-install-recommends %s\n' "${missing[*]}"
        return 1
    fi
    warden_say "installing as root: apt-get install -y --no-install-recommends ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# warden_configure DIR [CMAKE_ARGS...]: Ninja, RelWithDebInfo (-g: spawn stacks show file:line).
warden_configure() {
    local dir="$1"
    shift
    local -a fresh=()
    # A directory configured earlier with another generator cannot be reused as it is.
    if [[ -f "$dir/CMakeCache.txt" ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$dir/CMakeCache.txt"; then
        warden_say "$dir was configured with another generator: reconfiguring it from scratch"
        fresh=(--fresh)
    fi
    warden_say "configuring $dir"
    cmake "${fresh[@]}" -S "$WARDEN_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
}

# warden_build DIR TARGET...  (TARGET "all" builds everything)
warden_build() {
    local dir="$1"
    shift
    warden_say "building $* in $dir with -j$WARDEN_JOBS"
    cmake --build "$dir" -j "$WARDEN_JOBS" --target "$@"
}

# warden_prepare: packages, then configure $WARDEN_BUILD_DIR.
warden_prepare() {
    warden_require_packages "${WARDEN_PACKAGES[@]}"
    warden_configure "$WARDEN_BUILD_DIR"
}

# warden_setup TARGET...: warden_prepare, then build TARGET in $WARDEN_BUILD_DIR.
warden_setup() {
    warden_prepare
    warden_build "$WARDEN_BUILD_DIR" "$@"
}
