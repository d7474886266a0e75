#!/usr/bin/env bash
# Audit benchmarks (issue 10), run by hand, not by the test suite.
#
#   bench/audit.sh [--no-build] [--portcullis-bin PATH] [--duration S]
#                  [--clients "8 32"] [--rounds N] [--keep]
#                  [--protocols "simple extended prepared"]
#                  [--modes "off queued strict"]
#
# Measures pgbench -S (scale 10) through three Portcullis instances on one
# throwaway PostgreSQL cluster: audit off ([audit] enabled = false), the
# target in `queued` mode and in `strict` mode (each statement forwarded
# once its record is committed; group commit). Within each of --rounds
# rounds the three run in turn (the order rotates); medians and the ratios
# to audit off are reported, with the records each store holds at the end.
# The store's own rate and search speed are measured by
#   cargo test --release -p portcullis-audit --test throughput -- --ignored --nocapture
# Environment: PGBIN (PostgreSQL bin dir), BENCH_TMPDIR (default /tmp).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=1 PBIN="" DURATION=10 CLIENTS="8 32" ROUNDS=3 KEEP=0 PROTOCOLS="simple extended prepared" MODES="off queued strict"
die() { echo "bench/audit: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        --portcullis-bin) PBIN=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --clients) CLIENTS=${2:?}; shift 2 ;;
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --protocols) PROTOCOLS=${2:?}; shift 2 ;;
        --modes) MODES=${2:?}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
log() { echo "bench/audit: $*"; }

if [ -z "${PGBIN:-}" ]; then
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
fi
for b in initdb pg_ctl psql pgbench; do [ -x "$PGBIN/$b" ] || die "$PGBIN/$b not found (set PGBIN)"; done
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGPASSFILE
export PGSSLMODE=disable PGGSSENCMODE=disable PGCONNECT_TIMEOUT=10

if [ "$BUILD" = 1 ]; then
    log "cargo build --release -p portcullis"
    (cd "$REPO" && cargo build --release -p portcullis) >/dev/null 2>&1 || die "build failed"
fi
[ -n "$PBIN" ] || PBIN="$REPO/target/release/portcullis"
[ -x "$PBIN" ] || die "$PBIN not found"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
WORK="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/portcullis-audit.XXXXXX")"
chmod 755 "$WORK"
mkdir -p "$WORK/data" "$WORK/sock" "$WORK/log"
chmod 700 "$WORK/data"
[ "$IS_ROOT" = 1 ] && chown postgres: "$WORK/data" "$WORK/sock" "$WORK/log"
as_pg() { if [ "$IS_ROOT" = 1 ]; then (cd "$WORK" && runuser -u postgres -- "$@"); else (cd "$WORK" && "$@"); fi; }
PIDS=()
PG_STARTED=0
cleanup() {
    local rc=$? p
    trap - EXIT
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ "$PG_STARTED" = 1 ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT

port() { echo $((20000 + RANDOM % 12000)); }
PGPORT="$(port)"; OFF_PORT="$(port)"; QUEUED_PORT="$(port)"; STRICT_PORT="$(port)"
log "PostgreSQL on 127.0.0.1:$PGPORT"
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >"$WORK/log/initdb.log" 2>&1 || die "initdb failed"
cat >>"$WORK/data/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
password_encryption = 'scram-sha-256'
EOF
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$WORK/data/pg_hba.conf"
PG_STARTED=1
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/log/postgres.log" -w -t 60 start >/dev/null || die "PostgreSQL did not start"
admin() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$PGPORT" -U postgres "$@"; }
PW="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)"
export PGPASSWORD="$PW"
admin -d postgres -c "CREATE ROLE bench LOGIN PASSWORD '$PW'" -c "CREATE DATABASE bench OWNER bench" >/dev/null
SCRAM="$(admin -d postgres -At -c "select rolpassword from pg_authid where rolname = 'bench'")"

"$PGBIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$PGPORT" -U bench bench >"$WORK/log/pgbench-init.log" 2>&1 || die "pgbench -i failed"

start_portcullis() { # start_portcullis NAME PORT EXTRA
    cat >"$WORK/$1.toml" <<EOF
[[listener]]
name = "bench"
listen = "127.0.0.1:$2"
allow_plaintext = true
max_connections = 1000

[[target]]
name = "bench"
environment = "development"
host = "127.0.0.1"
port = $PGPORT
user = "bench"
password_env = "BENCH_PG_PASSWORD"
$4

[[user]]
name = "bench"
scram = "$SCRAM"
$3
EOF
    BENCH_PG_PASSWORD="$PW" "$PBIN" run --config "$WORK/$1.toml" >"$WORK/log/$1.log" 2>&1 &
    PIDS+=($!)
    local i
    for i in $(seq 40); do
        "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$2" -U bench -d bench -c 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    tail -n 20 "$WORK/log/$1.log" >&2
    die "Portcullis ($1) did not start"
}
start_portcullis off "$OFF_PORT" "[audit]
enabled = false" ""
declare -A PID
PID[off]="${PIDS[-1]}"
start_portcullis queued "$QUEUED_PORT" "[audit]
path = \"queued.db\"" 'audit = "queued"'
start_portcullis strict "$STRICT_PORT" "[audit]
path = \"strict.db\"" 'audit = "strict"'
PID[strict]="${PIDS[-1]}"
PID[queued]="${PIDS[-2]}"
cpu_ms() { # utime+stime of PID in ms
    local s; s="$(cat "/proc/$1/stat")"; s="${s##*) }"
    # shellcheck disable=SC2086
    set -- $s
    echo $(( (${12} + ${13}) * 1000 / $(getconf CLK_TCK) ))
}

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

declare -A TPS CPU
for c in $CLIENTS; do
    for proto in $PROTOCOLS; do
        for m in off queued strict; do TPS[$c,$proto,$m]=""; CPU[$c,$proto,$m]=""; done
        for round in $(seq "$ROUNDS"); do
            case $((round % 3)) in
                1) order="off queued strict" ;;
                2) order="queued strict off" ;;
                0) order="strict off queued" ;;
            esac
            for m in $order; do
                # --modes runs a subset (to profile one mode alone).
                case " $MODES " in *" $m "*) ;; *) continue ;; esac
                case $m in off) p=$OFF_PORT ;; queued) p=$QUEUED_PORT ;; strict) p=$STRICT_PORT ;; esac
                out="$WORK/log/pgbench-$c-$proto-$m-$round"
                c0="$(cpu_ms "${PID[$m]}")"
                "$PGBIN/pgbench" -n -S -M "$proto" -c "$c" -j 2 -T "$DURATION" \
                    -h 127.0.0.1 -p "$p" -U bench bench >"$out" 2>&1 || {
                    log "pgbench failed ($m, $c clients, $proto):"; tail -n 5 "$out" >&2; }
                tps="$(awk '/^tps/ {printf "%.0f", $3}' "$out")"
                TPS[$c,$proto,$m]+="$tps "
                txs="$(awk '/number of transactions actually processed/ {print $NF}' "$out" | cut -d/ -f1)"
                CPU[$c,$proto,$m]+="$(awk -v ms="$(( $(cpu_ms "${PID[$m]}") - c0 ))" -v n="${txs:-0}" 'BEGIN { if (n > 0) printf "%.1f", ms * 1000 / n; else printf "-" }') "
            done
        done
        log "$c clients, $proto: off ${TPS[$c,$proto,off]}/ queued ${TPS[$c,$proto,queued]}/ strict ${TPS[$c,$proto,strict]}"
    done
done

records() { # records DB -> records in the store (its recorded head: seqs have no gaps)
    python3 -c "import sqlite3,sys; c=sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); print(c.execute('select value from audit_meta where key = ?', ('head_size',)).fetchone()[0])" "$WORK/$1" 2>/dev/null || echo "-"
}
echo
echo "## Audit ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$REPO" rev-parse --short HEAD), $(nproc) CPUs)"
echo
echo "| pgbench -S, ${DURATION}s, median of $ROUNDS | clients | audit off tps | queued tps | queued/off | strict tps | strict/off | Portcullis CPU µs/tx off / queued / strict |"
echo "|---|---|---|---|---|---|---|---|"
for c in $CLIENTS; do
    for proto in $PROTOCOLS; do
        off="$(echo "${TPS[$c,$proto,off]}" | median)"
        q="$(echo "${TPS[$c,$proto,queued]}" | median)"
        s="$(echo "${TPS[$c,$proto,strict]}" | median)"
        cpu="$(echo "${CPU[$c,$proto,off]}" | median) / $(echo "${CPU[$c,$proto,queued]}" | median) / $(echo "${CPU[$c,$proto,strict]}" | median)"
        echo "| $proto | $c | $off | $q | $(ratio "$q" "$off") | $s | $(ratio "$s" "$off") | $cpu |"
    done
done
echo
echo "Records in the stores at the end: queued $(records queued.db), strict $(records strict.db)."
