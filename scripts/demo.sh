#!/usr/bin/env bash
# The demo in one command: installs what a fresh Debian machine lacks
# (PostgreSQL server binaries; as root, otherwise it prints the install
# line), builds Portcullis and runs `portcullis demo` in the foreground.
#
#   scripts/demo.sh [--dir DIR] [--listen ADDR] [--json]
#
# Ctrl-C stops it and removes everything it started. Setup and build output
# goes to stderr, so that with --json standard output is one JSON object.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >&2
cargo build --release --quiet -p portcullis >&2
exec target/release/portcullis demo "$@"
