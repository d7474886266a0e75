#!/usr/bin/env bash
# Approval latency: from the approving API call to the held statement's
# completion in the client's session, with the SQLite control-plane store
# (one proxy) and with a PostgreSQL store shared by two proxies (held on one,
# approved through the other, woken by LISTEN/NOTIFY), and what the dry run
# of a held data change adds before the client's notice. Run by hand (not a
# test); the test bed's PostgreSQL runs everything.
#
#   bench/approvals.sh [ROUNDS]     (default 50 approvals per setup)
set -euo pipefail
cd "$(dirname "$0")/.."
APPROVAL_ROUNDS="${1:-50}" cargo test --release -p portcullis --test e2e \
  approvals::approval_latency_benchmark -- --ignored --nocapture 2>&1 |
  grep -E "approvals, approve call|test result"
# What the dry run of a held data change adds before the client's notice.
APPROVAL_ROUNDS="${1:-50}" cargo test --release -p portcullis --test e2e \
  approvals_dry_run::dry_run_benchmark -- --ignored --nocapture 2>&1 |
  grep -E "holds, statement sent|test result"
