#!/usr/bin/env bash
# User-space instructions per transaction of a proxy, counted by callgrind.
#
# Throughput and CPU time on a shared 2-core VM move by 10-20 % from one
# run to the next; instruction counts do not (repeat runs agree within
# 1 %). Use this to compare two builds of Portcullis, or Portcullis with
# pgbouncer, on the work each does per transaction in user space. It says
# nothing about system time (sockets, wake-ups, context switches): that is
# what bench/run.sh measures.
#
# Usage:
#   bench/instructions.sh --port PORT [--workload W] [--clients N] -- COMMAND...
#
#   --port PORT      where COMMAND listens once started
#   --workload W     simple | extended | prepared (pgbench -S -M W), or a
#                    pgbench script file (run with -n -f); default simple
#   --clients N      pgbench clients (default 8)
#   COMMAND...       the proxy's command line, e.g.
#                    target/release/portcullis run --config bench.toml
#                    pgbouncer pgbouncer.ini
#
# pgbench connects with the usual libpq variables (PGHOST, PGUSER,
# PGPASSWORD, PGDATABASE); the proxy must reach a database initialised
# with pgbench -i (and the script's tables, for a script). COMMAND runs
# under valgrind, so it starts slowly and runs about 50 times slower.
#
# Method: warm up (200 transactions per client), zero the counters, run
# 500 per client and dump, zero, run 2500 per client and dump; the
# difference of the two dumps over 2000 transactions per client cancels
# what does not grow with transactions (connection setup, SCRAM).
set -euo pipefail

PORT= WORKLOAD=simple CLIENTS=8
while [ $# -gt 0 ]; do
    case "$1" in
        --port) PORT=$2; shift 2 ;;
        --workload) WORKLOAD=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "instructions: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$PORT" ] && [ $# -gt 0 ] || { echo "instructions: need --port and a command (see --help)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "instructions: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

OUT=$(mktemp -d)
chmod 777 "$OUT" # the command may drop privileges (pgbouncer runs as postgres)
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$@" >"$OUT/log" 2>&1 &
VG=$!
trap 'kill $VG 2>/dev/null; wait $VG 2>/dev/null; rm -rf "$OUT"' EXIT

for _ in $(seq 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 $VG 2>/dev/null || { cat "$OUT/log" >&2; exit 1; }
    sleep 0.5
done

case "$WORKLOAD" in
    simple|extended|prepared) ARGS=(-S -M "$WORKLOAD") ;;
    *) ARGS=(-n -f "$WORKLOAD") ;;
esac
bench() { pgbench "${ARGS[@]}" -c "$CLIENTS" -j 2 -t "$1" -h 127.0.0.1 -p "$PORT" >/dev/null 2>&1; }
# callgrind_control finds the process by the command line it runs.
ctl() { callgrind_control "$1" "$VG" >/dev/null 2>&1 || callgrind_control "$1" >/dev/null; }
total() { grep -hE '^(summary|totals):' $(ls -t "$OUT"/cg.out.* | head -1) | head -1 | awk '{print $2}'; }

bench 200
ctl -z; bench 500; ctl -d; sleep 0.5; A=$(total)
ctl -z; bench 2500; ctl -d; sleep 0.5; B=$(total)
echo "$WORKLOAD clients=$CLIENTS instructions/tx=$(( (B - A) / (CLIENTS * 2000) ))"
