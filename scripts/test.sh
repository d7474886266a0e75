#!/usr/bin/env bash
# The project's one test command (used by CI through .ci/run):
#
#   scripts/test.sh [EXTRA ARGS FOR cargo test]
#
# 1. scripts/setup.sh             system packages (installs them as root)
# 2. cargo fmt --all -- --check
# 3. cargo clippy --workspace --all-targets -- -D warnings   (skipped if clippy is not installed)
# 4. cargo test --workspace --no-fail-fast   all crates: unit, integration, doc tests
#
# Every step runs even if an earlier one failed (so one CI log shows all
# problems), except that a failing setup stops everything. Exits non-zero if
# any step failed; the last line is always a one-line verdict.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

# Debian keeps initdb/pg_ctl/postgres outside PATH; make the newest server
# version visible to integration tests that spawn a throwaway cluster.
if ! command -v initdb >/dev/null 2>&1; then
    pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$pgbin" ] && export PATH="$PATH:$pgbin"
fi

start_all=$SECONDS
failed=()
passed=()
skipped=()

step() { # step NAME CMD...
    local name=$1; shift
    local t0=$SECONDS rc
    echo
    echo "==> [$name] $*"
    "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "==> [$name] ok ($((SECONDS - t0))s)"
        passed+=("$name")
    else
        echo "==> [$name] FAILED with exit code $rc ($((SECONDS - t0))s)"
        failed+=("$name")
    fi
    return "$rc"
}

verdict() {
    local total=$((SECONDS - start_all))
    echo
    if [ "${#failed[@]}" -eq 0 ]; then
        echo "test.sh: PASSED (${passed[*]:-nothing}${skipped:+; skipped: ${skipped[*]}}) in ${total}s"
        exit 0
    else
        echo "test.sh: FAILED: ${failed[*]} (passed: ${passed[*]:-none}${skipped:+; skipped: ${skipped[*]}}) in ${total}s"
        exit 1
    fi
}

step setup scripts/setup.sh || verdict

step fmt cargo fmt --all -- --check

if cargo clippy --version >/dev/null 2>&1; then
    step clippy cargo clippy --workspace --all-targets -- -D warnings
else
    echo
    echo "==> [clippy] SKIPPED: the clippy component is not installed (rustup component add clippy)"
    skipped+=(clippy)
fi

step test cargo test --workspace --no-fail-fast "$@"

verdict
