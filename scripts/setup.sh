#!/usr/bin/env bash
# Install the system packages Portcullis needs on Debian/Ubuntu.
#
#   scripts/setup.sh            # build + test dependencies
#   scripts/setup.sh --bench    # ... plus pgbouncer (bench/run.sh only)
#
# Idempotent and quiet when everything is already present. Presence is checked
# with `dpkg -s` / `command -v` / well-known paths, never by trying to install.
# As root: `apt-get update` (only if something is missing) and
# `apt-get install -y --no-install-recommends ...`. Otherwise: prints the exact
# sudo command and exits 1.
set -euo pipefail

bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# dpkg_installed PKG: true if dpkg knows PKG as installed.
dpkg_installed() {
    command -v dpkg-query >/dev/null 2>&1 || return 1
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# any_exists GLOB...: true if at least one path matching the globs exists.
any_exists() {
    local p
    for p in "$@"; do
        [ -e "$p" ] && return 0
    done
    return 1
}

missing=()
need() { missing+=("$1"); }

# PostgreSQL server (Debian ships postgres, initdb, pg_ctl and pgbench in the
# versioned server package, outside PATH).
shopt -s nullglob
dpkg_installed postgresql || any_exists /usr/lib/postgresql/*/bin/postgres || need postgresql
dpkg_installed postgresql-client || command -v psql >/dev/null 2>&1 || need postgresql-client
dpkg_installed postgresql-contrib \
    || any_exists /usr/share/postgresql/*/extension/pg_stat_statements.control || need postgresql-contrib
# clang + libclang for bindgen (pg_query).
dpkg_installed clang || command -v clang >/dev/null 2>&1 || need clang
dpkg_installed libclang-dev || any_exists /usr/lib/llvm-*/lib/libclang.so || need libclang-dev
dpkg_installed pkg-config || dpkg_installed pkgconf || command -v pkg-config >/dev/null 2>&1 || need pkg-config
command -v runuser >/dev/null 2>&1 || need util-linux
# Node.js and npm for the test bed's OpenID provider (crates/testbed/oidc).
command -v node >/dev/null 2>&1 || need nodejs
command -v npm >/dev/null 2>&1 || need npm
if [ "$bench" = 1 ]; then
    dpkg_installed pgbouncer || command -v pgbouncer >/dev/null 2>&1 || need pgbouncer
fi
shopt -u nullglob

# The OpenID provider's packages, from package-lock.json, when they are
# missing or older than the lock file.
oidc_packages() {
    local dir
    dir="$(dirname "${BASH_SOURCE[0]}")/../crates/testbed/oidc"
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "setup.sh: installing the test bed's OpenID provider (npm ci)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

if [ "${#missing[@]}" -eq 0 ]; then
    oidc_packages
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: missing packages (Debian names): ${missing[*]}" >&2
    echo "setup.sh: apt-get not found; install the equivalents with your package manager." >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: missing packages: ${missing[*]}" >&2
    echo "setup.sh: run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "setup.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
oidc_packages
echo "setup.sh: done"
