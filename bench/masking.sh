#!/usr/bin/env bash
# Masking benchmarks (issue 9), run by hand, not by the test suite.
#
#   bench/masking.sh [--no-build] [--portcullis-bin PATH] [--rows N] [--reps N]
#                    [--duration S] [--clients N] [--rounds N] [--keep]
#                    [--protocols "simple extended prepared"]
#
# Measures, against one throwaway PostgreSQL cluster:
#   1. A result of N rows (default 1,000,000) streamed to psql (FETCH_COUNT=0),
#      median of --reps runs, MB/s of psql output:
#        masked:  id + three classified columns (email, phone, ssn), masked
#                 by Portcullis with its defaults;
#        plain:   id + two text columns nothing classifies (scanned by the
#                 content detectors; no row is rewritten);
#      direct and through Portcullis, and the ratio.
#   2. pgbench -S (simple, extended, prepared) with --clients clients for
#      --duration seconds, through Portcullis with masking on (the default)
#      and with [masking] enabled = false; the two run in turn within each
#      of --rounds rounds (which goes first alternates from round to round)
#      and the medians are reported with their ratio.
# Environment: PGBIN (PostgreSQL bin dir), BENCH_TMPDIR (default /tmp).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=1 PBIN="" ROWS=1000000 REPS=5 DURATION=10 CLIENTS=8 ROUNDS=3 KEEP=0 PROTOCOLS="simple extended prepared"
die() { echo "bench/masking: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        --portcullis-bin) PBIN=${2:?}; shift 2 ;;
        --rows) ROWS=${2:?}; shift 2 ;;
        --reps) REPS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --clients) CLIENTS=${2:?}; shift 2 ;;
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --protocols) PROTOCOLS=${2:?}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
log() { echo "bench/masking: $*"; }

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
WORK="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/portcullis-masking.XXXXXX")"
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
PGPORT="$(port)"; ON_PORT="$(port)"; OFF_PORT="$(port)"
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

log "data: $ROWS people, pgbench -i -s 10"
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U bench -d bench <<EOF
CREATE TABLE people (id int PRIMARY KEY, email text, phone text, ssn text, city text, note text);
INSERT INTO people
SELECT i, 'person' || i || '@example.com', '+1 415 555 ' || lpad((i % 10000)::text, 4, '0'),
       (100 + i % 500)::text || '-' || lpad((1 + i % 98)::text, 2, '0') || '-' || lpad((1 + i % 9998)::text, 4, '0'),
       'Springfield', md5(i::text)
FROM generate_series(1, $ROWS) i;
ANALYZE people;
EOF
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
start_portcullis on "$ON_PORT" "[audit]
path = \"on-audit.db\""
ON_PID="${PIDS[-1]}"
start_portcullis off "$OFF_PORT" "[masking]
enabled = false
[audit]
path = \"off-audit.db\""

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# ------------------------------------------------------------- 1. streaming
stream() { # stream PORT SQL -> "bytes ns"
    local t0 t1 bytes
    t0="$(date +%s%N)"
    bytes="$("$PGBIN/psql" -X -At -v FETCH_COUNT=0 -h 127.0.0.1 -p "$1" -U bench -d bench -c "$2" | wc -c)"
    t1="$(date +%s%N)"
    echo "$bytes $((t1 - t0))"
}
cpu_ms() { # utime+stime of PID in ms
    local s; s="$(cat "/proc/$1/stat")"; s="${s##*) }"
    # shellcheck disable=SC2086
    set -- $s
    echo $(( (${12} + ${13}) * 1000 / $(getconf CLK_TCK) ))
}
declare -A MBPS CPUMS
for kind in masked plain; do
    case $kind in
        masked) SQL="SELECT id, email, phone, ssn FROM people" ;;
        plain) SQL="SELECT id, city, note FROM people" ;;
    esac
    for target in direct portcullis; do
        p=$PGPORT; [ $target = portcullis ] && p=$ON_PORT
        rates=""
        c0="$(cpu_ms "$ON_PID")"
        for _ in $(seq "$REPS"); do
            read -r bytes ns < <(stream "$p" "$SQL")
            rates+="$(awk -v b="$bytes" -v n="$ns" 'BEGIN {printf "%.1f ", b / (n / 1e9) / 1e6}')"
        done
        CPUMS[$kind,$target]=$(( ($(cpu_ms "$ON_PID") - c0) / REPS ))
        MBPS[$kind,$target]="$(echo "$rates" | median)"
        log "$kind via $target: MB/s $rates(median ${MBPS[$kind,$target]}); Portcullis CPU ${CPUMS[$kind,$target]} ms per run"
    done
done
# The masked run really masked, the plain one sent what is stored.
sample_on="$("$PGBIN/psql" -X -At -h 127.0.0.1 -p "$ON_PORT" -U bench -d bench -c "SELECT email FROM people WHERE id = 7")"
[ "$sample_on" != "person7@example.com" ] || die "masking did not mask (got $sample_on)"

# ------------------------------------------------------------- 2. pgbench -S
declare -A TPS
for proto in $PROTOCOLS; do
    for t in on off; do TPS[$proto,$t]=""; done
    for round in $(seq "$ROUNDS"); do
        order="on off"; [ $((round % 2)) = 0 ] && order="off on"
        for t in $order; do
            p=$ON_PORT; [ $t = off ] && p=$OFF_PORT
            tps="$("$PGBIN/pgbench" -n -S -M "$proto" -c "$CLIENTS" -j 2 -T "$DURATION" \
                -h 127.0.0.1 -p "$p" -U bench bench 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}')"
            TPS[$proto,$t]+="$tps "
        done
    done
    log "pgbench -S $proto: on ${TPS[$proto,on]}/ off ${TPS[$proto,off]}"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
echo
echo "## Masking ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$REPO" rev-parse --short HEAD), $(nproc) CPUs)"
echo
echo "| $ROWS-row result to psql | direct MB/s | Portcullis MB/s | ratio | Portcullis CPU per result |"
echo "|---|---|---|---|---|"
echo "| 3 masked columns (email, phone, ssn) | ${MBPS[masked,direct]} | ${MBPS[masked,portcullis]} | $(ratio "${MBPS[masked,portcullis]}" "${MBPS[masked,direct]}") | ${CPUMS[masked,portcullis]} ms |"
echo "| nothing sensitive | ${MBPS[plain,direct]} | ${MBPS[plain,portcullis]} | $(ratio "${MBPS[plain,portcullis]}" "${MBPS[plain,direct]}") | ${CPUMS[plain,portcullis]} ms |"
echo
echo "| pgbench -S, $CLIENTS clients, ${DURATION}s, median of $ROUNDS | masking on tps | masking off tps | on/off |"
echo "|---|---|---|---|"
for proto in $PROTOCOLS; do
    on="$(echo "${TPS[$proto,on]}" | median)"
    off="$(echo "${TPS[$proto,off]}" | median)"
    echo "| $proto | $on | $off | $(ratio "$on" "$off") |"
done
