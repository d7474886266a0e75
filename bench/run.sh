#!/usr/bin/env bash
# Portcullis benchmark: PostgreSQL direct vs Portcullis vs pgbouncer (session
# mode), all over plaintext TCP on 127.0.0.1, everything in one run on this
# machine. Run by hand (not a test); takes ~8 min with the defaults.
#
#   bench/run.sh [--duration S] [--quick] [--out FILE] [options]
#
#   --duration S          seconds per pgbench run (default 15)
#   --quick               5 s runs, clients 1 and 8 only, 3 streaming repetitions
#   --out FILE            also write the report (markdown) to FILE
#   --clients "1 8 32"    client counts for the pgbench matrix
#   --scale N             pgbench scale factor (default 10)
#   --reps N              repetitions of each 1M-row streaming run (default 5)
#   --rounds N            run the pgbench matrix N times, the three targets in
#                         turn within each round, and report each cell's median
#                         tps and CPU (default 1; this VM's runs move by 10-20 %,
#                         so use 3 or more to compare figures a few % apart)
#   --idle-conns N        idle connections for the RSS test (default 1000)
#   --portcullis-bin PATH use this binary instead of building one
#   --no-build            do not run `cargo build --release -p portcullis`
#   --keep                keep the temp dir (logs, configs) instead of removing it
#   --upstream tcp|unix   how both proxies reach PostgreSQL: TCP 127.0.0.1 (default)
#                         or its Unix socket (a proxy on the database host)
#   --extra-config FILE   append FILE to Portcullis' configuration (a [[limit]]
#                         for subjects = ["bench"], say, to measure a limited
#                         identity's path)
#
# Measures:
#   1. pgbench -S (select only) with --protocol simple/extended/prepared at each
#      client count, and an ORM-shaped script (a join with ORDER BY/LIMIT, an
#      UPDATE by id, an INSERT ... RETURNING, a SELECT by email; literals that
#      change every time, simple protocol) at each client count;
#      client count (-j 2), tps for direct / Portcullis / pgbouncer and ratios;
#      proxy CPU (utime+stime from /proc/PID/stat) per transaction.
#   2. A 1,000,000-row result streamed to psql (COPY TO STDOUT, and a plain
#      SELECT with FETCH_COUNT=0), median of N runs, MB/s (1 MB = 10^6 bytes of
#      psql output).
#   3. A DDL-heavy script in the style of PostgreSQL's regression suite
#      (CREATE/ALTER/INSERT/SELECT/DROP in a row, one statement per query, as
#      psql -f sends them), wall time per target, median of N runs.
#   4. Portcullis RSS when idle and with N idle client connections.
#
# Creates a throwaway cluster (initdb as `postgres` when run as root), a bench
# role with a random password, pgbouncer and Portcullis configs in a temp dir;
# stops every process and removes the dir on exit, including on Ctrl-C.
# If Portcullis cannot be built or does not accept connections within 10 s,
# its rows are skipped with a message and the rest still runs.
# Environment: PGBIN (PostgreSQL bin dir), BENCH_TMPDIR (default /tmp),
# RUST_LOG is passed through to Portcullis.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DURATION=15
DURATION_SET=0
QUICK=0
OUT=""
CLIENTS="1 8 32"
CLIENTS_SET=0
SCALE=10
REPS=5
REPS_SET=0
ROUNDS=1
IDLE_CONNS=1000
IDLE_SLEEP=15
PBIN=""
BUILD=1
KEEP=0
UPSTREAM=tcp
EXTRA_CONFIG=""

die() { echo "bench: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) is_uint "${2:-}" || die "--duration needs a positive integer"; DURATION=$2; DURATION_SET=1; shift 2 ;;
        --duration=*) DURATION=${1#*=}; is_uint "$DURATION" || die "bad --duration"; DURATION_SET=1; shift ;;
        --quick) QUICK=1; shift ;;
        --out) [ -n "${2:-}" ] || die "--out needs a file"; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --clients) [ -n "${2:-}" ] || die "--clients needs a list"; CLIENTS=$2; CLIENTS_SET=1; shift 2 ;;
        --scale) is_uint "${2:-}" || die "--scale needs a positive integer"; SCALE=$2; shift 2 ;;
        --reps) is_uint "${2:-}" || die "--reps needs a positive integer"; REPS=$2; REPS_SET=1; shift 2 ;;
        --rounds) is_uint "${2:-}" || die "--rounds needs a positive integer"; ROUNDS=$2; shift 2 ;;
        --idle-conns) is_uint "${2:-}" || die "--idle-conns needs a positive integer"; IDLE_CONNS=$2; shift 2 ;;
        --portcullis-bin) [ -n "${2:-}" ] || die "--portcullis-bin needs a path"; PBIN=$2; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --upstream) case "${2:-}" in tcp|unix) UPSTREAM=$2 ;; *) die "--upstream needs tcp or unix" ;; esac; shift 2 ;;
        --extra-config) [ -r "${2:-}" ] || die "--extra-config needs a readable file"; EXTRA_CONFIG=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    [ "$DURATION_SET" = 1 ] || DURATION=5
    [ "$CLIENTS_SET" = 1 ] || CLIENTS="1 8"
    [ "$REPS_SET" = 1 ] || REPS=3
fi
for c in $CLIENTS; do is_uint "$c" || die "bad client count: $c"; done
if [ -n "$OUT" ]; then
    case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
    : >"$OUT" || die "cannot write $OUT"
fi

# ---------------------------------------------------------------- environment

"$REPO/scripts/setup.sh" --bench || die "scripts/setup.sh --bench failed"

if [ -z "${PGBIN:-}" ]; then
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$PGBIN" ] || PGBIN="$(dirname "$(command -v initdb || echo /nonexistent/initdb)")"
fi
for b in initdb pg_ctl psql pgbench; do
    [ -x "$PGBIN/$b" ] || die "$PGBIN/$b not found (set PGBIN)"
done
PGBOUNCER="$(command -v pgbouncer)" || die "pgbouncer not found"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Never pick up the caller's connection settings; no TLS/GSS anywhere.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS PGPASSFILE PGAPPNAME
export PGSSLMODE=disable PGGSSENCMODE=disable PGCONNECT_TIMEOUT=10

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((2 * IDLE_CONNS + 200)) ]; then
    echo "bench: warning: open-file limit is $NOFILE; the ${IDLE_CONNS}-connection test may fail" >&2
fi

CLK_TCK="$(getconf CLK_TCK)"

# ------------------------------------------------------------ temp dir, cleanup

WORK="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/portcullis-bench.XXXXXX")"
chmod 755 "$WORK"
mkdir -p "$WORK/data" "$WORK/sock" "$WORK/log" "$WORK/pgbouncer"
chmod 700 "$WORK/data"
if [ "$IS_ROOT" = 1 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' OS user (apt-get install postgresql creates it)"
    chown postgres: "$WORK/data" "$WORK/sock" "$WORK/log" "$WORK/pgbouncer"
fi

PG_STARTED=0
PORTCULLIS_PID=""
BG_PIDS=()

# as_pg CMD...: run as the postgres OS user when root (initdb/postgres/pgbouncer refuse root).
as_pg() {
    if [ "$IS_ROOT" = 1 ]; then
        (cd "$WORK" && runuser -u postgres -- "$@")
    else
        (cd "$WORK" && "$@")
    fi
}

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    local pid
    for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
    stop_pid "$PORTCULLIS_PID"
    if [ -s "$WORK/pgbouncer/pgbouncer.pid" ]; then
        stop_pid "$(cat "$WORK/pgbouncer/pgbouncer.pid")"
    fi
    if [ "$PG_STARTED" = 1 ]; then
        as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1
        if [ -s "$WORK/data/postmaster.pid" ]; then
            stop_pid "$(head -n 1 "$WORK/data/postmaster.pid")"
        fi
    fi
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then
        echo "bench: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "bench: interrupted" >&2; exit 130' INT
trap 'echo "bench: terminated" >&2; exit 143' TERM

# ----------------------------------------------------------------- helpers

USED_PORTS=" "
port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
free_port() { # free_port VAR: a free TCP port below the ephemeral range
    local p i
    for i in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        port_in_use "$p" && continue
        USED_PORTS+="$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    die "no free TCP port found"
}

cpu_ticks() { # utime+stime (fields 14, 15 of /proc/PID/stat), in clock ticks
    local s
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return 0; }
    s="${s##*) }" # drop "pid (comm) "; $1 is now field 3
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

psql_admin() {
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$PGPORT" -U postgres -d postgres "$@"
}
can_connect() { # can_connect PORT
    "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$1" -U bench -d bench -c 'select 1' >/dev/null 2>&1
}
wait_connect() { # wait_connect PORT SECONDS [PID]
    local port=$1 deadline=$((SECONDS + $2)) pid=${3:-}
    while [ $SECONDS -lt $deadline ]; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        can_connect "$port" && return 0
        sleep 0.25
    done
    return 1
}
fmt_ratio() { # fmt_ratio A B -> A/B with 2 decimals, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else printf "-" }'
}
log() { echo "bench: $*"; }

# ----------------------------------------------------------------- machine

CPU_MODEL="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
[ -n "$CPU_MODEL" ] || CPU_MODEL="$(uname -m)"
MEM_TOTAL="$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
NPROC="$(nproc)"
DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
GIT_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then GIT_REV="$GIT_REV-dirty"; fi
PG_VERSION="$("$PGBIN/postgres" --version 2>/dev/null | awk '{print $3}')"
PGB_VERSION="$("$PGBOUNCER" --version 2>/dev/null | awk 'NR == 1 {print $2}')"

LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
log "$DATE; $NPROC CPUs ($CPU_MODEL), $MEM_TOTAL RAM; PostgreSQL $PG_VERSION, pgbouncer $PGB_VERSION"
if awk -v l="${LOADAVG%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    echo "bench: warning: load average is $LOADAVG before starting; other work on this machine skews the numbers" >&2
fi
log "pgbench -S, ${DURATION}s per run, clients: $CLIENTS, scale $SCALE; work dir $WORK"

# ----------------------------------------------------------------- portcullis build

PSKIP="" # non-empty: reason Portcullis rows are skipped
if [ "$BUILD" = 1 ]; then
    log "building: cargo build --release -p portcullis"
    t0=$SECONDS
    if (cd "$REPO" && cargo build --release -p portcullis) >"$WORK/log/build.log" 2>&1; then
        PBIN="$REPO/target/release/portcullis"
        log "  built in $((SECONDS - t0))s"
    else
        PSKIP="\`cargo build --release -p portcullis\` failed"
        echo "bench: $PSKIP; last lines:" >&2
        grep -E '^(error|warning: build failed)' "$WORK/log/build.log" | head -n 10 | sed 's/^/    /' >&2 || true
    fi
elif [ -z "$PBIN" ]; then
    PBIN="$REPO/target/release/portcullis"
fi
if [ -z "$PSKIP" ] && [ ! -x "$PBIN" ]; then
    PSKIP="$PBIN not found"
fi
if [ -z "$PSKIP" ]; then
    case "$PBIN" in /*) ;; *) PBIN="$PWD/$PBIN" ;; esac
fi

# ----------------------------------------------------------------- PostgreSQL

free_port PGPORT
free_port PGB_PORT
free_port P_PORT

log "initdb + start PostgreSQL on 127.0.0.1:$PGPORT"
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/data/postgresql.conf" <<EOF

# --- bench/run.sh ---
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
max_connections = 1200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = off
password_encryption = 'scram-sha-256'
logging_collector = off
EOF
cat >"$WORK/data/pg_hba.conf" <<EOF
local all all trust
host  all all 127.0.0.1/32 scram-sha-256
EOF
PG_STARTED=1
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/log/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$WORK/log/postgres.log" >&2; die "PostgreSQL did not start"; }

BENCH_PW="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)"
export PGPASSWORD="$BENCH_PW"
psql_admin -c "CREATE ROLE bench LOGIN PASSWORD '$BENCH_PW'" -c "CREATE DATABASE bench OWNER bench" >/dev/null
PG_SCRAM="$(psql_admin -At -c "select rolpassword from pg_authid where rolname = 'bench'")"
[[ "$PG_SCRAM" == SCRAM-SHA-256\$* ]] || die "unexpected verifier in pg_authid: $PG_SCRAM"

log "pgbench -i -s $SCALE"
t0=$SECONDS
"$PGBIN/pgbench" -i -s "$SCALE" -q -h "$WORK/sock" -p "$PGPORT" -U bench bench >"$WORK/log/pgbench-init.log" 2>&1 \
    || { tail -n 20 "$WORK/log/pgbench-init.log" >&2; die "pgbench -i failed"; }
# The ORM-shaped workload: users and their orders, and a script whose
# literals change every time (so no two texts repeat).
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$PGPORT" -U bench bench >"$WORK/log/orm-init.log" 2>&1 <<'SQL' \
    || { tail -n 20 "$WORK/log/orm-init.log" >&2; die "ORM schema failed"; }
CREATE TABLE orm_users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, name text NOT NULL);
CREATE TABLE orm_orders (id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES orm_users,
  total numeric(12,2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO orm_users (email, name) SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series(1, 10000) g;
INSERT INTO orm_orders (user_id, total, status) SELECT 1 + g % 10000, g % 500, 'paid' FROM generate_series(1, 50000) g;
CREATE INDEX ON orm_orders (user_id, created_at);
VACUUM ANALYZE;
SQL
cat >"$WORK/orm.sql" <<'SQL'
\set uid random(1, 10000)
\set oid random(1, 50000)
\set amt random(1, 1000)
SELECT o.id, o.total, o.status, u.email FROM orm_orders o JOIN orm_users u ON u.id = o.user_id WHERE o.user_id = :uid ORDER BY o.created_at DESC LIMIT 10;
UPDATE orm_orders SET status = 'seen' WHERE id = :oid;
INSERT INTO orm_orders (user_id, total, status) VALUES (:uid, :amt, 'new') RETURNING id, created_at;
SELECT id, name FROM orm_users WHERE email = 'user:uid@example.com';
SQL
log "  done in $((SECONDS - t0))s"
can_connect "$PGPORT" || die "cannot connect to PostgreSQL over TCP with SCRAM"

# ----------------------------------------------------------------- pgbouncer

# Both proxies reach PostgreSQL the same way.
if [ "$UPSTREAM" = unix ]; then UP_HOST="$WORK/sock"; else UP_HOST=127.0.0.1; fi

PGB_DIR="$WORK/pgbouncer"
cat >"$PGB_DIR/pgbouncer.ini" <<EOF
[databases]
bench = host=$UP_HOST port=$PGPORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
pool_mode = session
max_client_conn = 2000
default_pool_size = 100
client_tls_sslmode = disable
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
EOF
# SCRAM verifier copied from pg_authid: pgbouncer authenticates the client and
# then reuses the client's proof for the server login (SCRAM pass-through).
printf '"bench" "%s"\n' "$PG_SCRAM" >"$PGB_DIR/userlist.txt"
chmod 600 "$PGB_DIR/userlist.txt" "$PGB_DIR/pgbouncer.ini"
[ "$IS_ROOT" = 1 ] && chown postgres: "$PGB_DIR"/*

log "starting pgbouncer on 127.0.0.1:$PGB_PORT (session mode)"
as_pg "$PGBOUNCER" -d -q "$PGB_DIR/pgbouncer.ini" \
    || { tail -n 20 "$PGB_DIR/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
PGB_PID=""
for _ in $(seq 50); do
    [ -s "$PGB_DIR/pgbouncer.pid" ] && break
    sleep 0.1
done
PGB_PID="$(cat "$PGB_DIR/pgbouncer.pid" 2>/dev/null || true)"
[ -n "$PGB_PID" ] || die "pgbouncer wrote no pid file"
wait_connect "$PGB_PORT" 10 "$PGB_PID" || { tail -n 20 "$PGB_DIR/pgbouncer.log" >&2; die "cannot connect through pgbouncer"; }

# ----------------------------------------------------------------- Portcullis

P_SCRAM_SRC=""
RSS_FRESH=""
portcullis_alive() {
    [ -z "$PSKIP" ] && [ -n "$PORTCULLIS_PID" ] && kill -0 "$PORTCULLIS_PID" 2>/dev/null
}
portcullis_died() { # mark Portcullis as gone (once) and show its log
    if [ -z "$PSKIP" ]; then
        PSKIP="Portcullis exited during the benchmark"
        echo "bench: $PSKIP; last lines of its log:" >&2
        tail -n 20 "$WORK/log/portcullis.log" >&2 || true
    fi
}

if [ -z "$PSKIP" ]; then
    P_SCRAM="$(printf '%s' "$BENCH_PW" | "$PBIN" passwd --stdin 2>/dev/null | tail -n 1 || true)"
    if [[ "$P_SCRAM" == SCRAM-SHA-256\$* ]]; then
        P_SCRAM_SRC="portcullis passwd"
    else
        P_SCRAM="$PG_SCRAM" # same format; used until `portcullis passwd` works
        P_SCRAM_SRC="pg_authid (portcullis passwd gave no verifier)"
    fi
    cat >"$WORK/portcullis.toml" <<EOF
[server]
log_format = "human"

[[listener]]
name = "bench"
listen = "127.0.0.1:$P_PORT"
allow_plaintext = true
max_connections = 5000

[[target]]
name = "bench"
environment = "development"
host = "$UP_HOST"
port = $PGPORT
database = "bench"
user = "bench"
password_env = "BENCH_PG_PASSWORD"
sslmode = "disable"

[[user]]
name = "bench"
scram = "$P_SCRAM"
EOF
    if [ -n "$EXTRA_CONFIG" ]; then
        { echo; cat "$EXTRA_CONFIG"; } >>"$WORK/portcullis.toml"
    fi
    log "starting Portcullis on 127.0.0.1:$P_PORT ($PBIN)"
    BENCH_PG_PASSWORD="$BENCH_PW" "$PBIN" run --config "$WORK/portcullis.toml" >"$WORK/log/portcullis.log" 2>&1 &
    PORTCULLIS_PID=$!
    if wait_connect "$P_PORT" 10 "$PORTCULLIS_PID"; then
        RSS_FRESH="$(rss_kb "$PORTCULLIS_PID")"
    else
        if kill -0 "$PORTCULLIS_PID" 2>/dev/null; then
            PSKIP="\`portcullis run\` did not accept a connection within 10 s"
        else
            PSKIP="\`portcullis run\` exited"
        fi
        if [ -s "$WORK/log/portcullis.log" ]; then
            echo "bench: last lines of the Portcullis log:" >&2
            tail -n 15 "$WORK/log/portcullis.log" | sed 's/^/    /' >&2 || true
        else
            echo "bench: (the Portcullis log is empty)" >&2
        fi
        stop_pid "$PORTCULLIS_PID"
        PORTCULLIS_PID=""
    fi
fi
if [ -n "$PSKIP" ]; then
    log "SKIPPING Portcullis rows: $PSKIP"
fi

# ----------------------------------------------------------------- 1. pgbench matrix

declare -A TPS CPU_US TPS_R CPU_R
R_TPS="" R_TX=""
run_pgbench() { # run_pgbench PORT PROTO CLIENTS [SCRIPT] -> R_TPS, R_TX (-S without SCRIPT)
    local port=$1 proto=$2 clients=$3 script=${4:-} out
    local jobs=$((clients < 2 ? clients : 2))
    local workload=(-S)
    [ -n "$script" ] && workload=(-f "$script")
    R_TPS="" R_TX=""
    if ! out="$("$PGBIN/pgbench" -n "${workload[@]}" -M "$proto" -c "$clients" -j "$jobs" -T "$DURATION" \
        -h 127.0.0.1 -p "$port" -U bench bench 2>&1)"; then
        echo "$out" | tail -n 5 | sed 's/^/    /' >&2
        return 1
    fi
    R_TPS="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1)"
    R_TX="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out" | head -n 1)"
    [ -n "$R_TPS" ] && [ -n "$R_TX" ]
}
# measure TARGET PORT PROTO CLIENTS [PID]: one cell; with PID also CPU us/tx of that process.
# PROTO "orm" runs the ORM script in the simple protocol.
measure() {
    local target=$1 port=$2 proto=$3 clients=$4 pid=${5:-} key="$3,$4,$1" c0=0 c1=0
    local mode=$proto script=""
    [ "$proto" = orm ] && { mode=simple; script="$WORK/orm.sql"; }
    [ -n "$pid" ] && c0="$(cpu_ticks "$pid")"
    local tps="fail" cpu=""
    if run_pgbench "$port" "$mode" "$clients" "$script"; then
        tps="$(printf '%.0f' "$R_TPS")"
        if [ -n "$pid" ]; then
            c1="$(cpu_ticks "$pid")"
            cpu="$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$R_TX" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
        fi
    fi
    TPS_R[$key]="${TPS_R[$key]:-} $tps"
    [ -n "$cpu" ] && CPU_R[$key]="${CPU_R[$key]:-} $cpu"
    printf '  %-9s c=%-3s %-10s tps=%-8s%s\n' "$proto" "$clients" "$target" "$tps" \
        "${cpu:+  proxy CPU $cpu us/tx}"
}
# median "V1 V2 ..." FORMAT -> the median (mean of the middle two for an even
# count), or "fail" if any run failed
median() {
    case " $1 " in *" fail "*) echo fail; return ;; esac
    tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g |
        awk -v f="$2" '{ a[NR] = $1 } END { if (NR == 0) exit; m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf f, m }'
}

log "warm-up"
run_pgbench "$PGPORT" simple 2 >/dev/null || die "pgbench against PostgreSQL failed"
portcullis_alive && { run_pgbench "$P_PORT" simple 2 >/dev/null || true; }
run_pgbench "$PGB_PORT" simple 2 >/dev/null || true

log "pgbench -S matrix and the ORM script"
BENCH_T0=$SECONDS
for proto in simple extended prepared orm; do
    for c in $CLIENTS; do
        for _ in $(seq "$ROUNDS"); do
            measure direct "$PGPORT" "$proto" "$c"
            if portcullis_alive; then
                measure portcullis "$P_PORT" "$proto" "$c" "$PORTCULLIS_PID"
                kill -0 "$PORTCULLIS_PID" 2>/dev/null || portcullis_died
            fi
            measure pgbouncer "$PGB_PORT" "$proto" "$c" "$PGB_PID"
        done
        for target in direct portcullis pgbouncer; do
            key="$proto,$c,$target"
            [ -n "${TPS_R[$key]:-}" ] && TPS[$key]="$(median "${TPS_R[$key]}" '%.0f')"
            [ -n "${CPU_R[$key]:-}" ] && CPU_US[$key]="$(median "${CPU_R[$key]}" '%.1f')"
        done
    done
done
log "  matrix done in $((SECONDS - BENCH_T0))s"

# ----------------------------------------------------------------- 2. streaming

STREAM_SQL="select i, md5(i::text), now() from generate_series(1, 1000000) i"
declare -A S_BYTES S_TIMES S_CPU
stream_once() { # stream_once MODE PORT -> prints "bytes nanoseconds"
    local mode=$1 port=$2 t0 t1 bytes
    t0="$(date +%s%N)"
    if [ "$mode" = copy ]; then
        bytes="$("$PGBIN/psql" -X -At -h 127.0.0.1 -p "$port" -U bench -d bench \
            -c "COPY ($STREAM_SQL) TO STDOUT" | wc -c)" || return 1
    else
        bytes="$("$PGBIN/psql" -X -At -v FETCH_COUNT=0 -h 127.0.0.1 -p "$port" -U bench -d bench \
            -c "$STREAM_SQL" | wc -c)" || return 1
    fi
    t1="$(date +%s%N)"
    echo "$bytes $((t1 - t0))"
}
stream_targets="direct"
portcullis_alive && stream_targets+=" portcullis"
stream_targets+=" pgbouncer"
port_of() { case "$1" in direct) echo "$PGPORT" ;; portcullis) echo "$P_PORT" ;; pgbouncer) echo "$PGB_PORT" ;; esac; }
pid_of() { case "$1" in portcullis) echo "$PORTCULLIS_PID" ;; pgbouncer) echo "$PGB_PID" ;; *) echo "" ;; esac; }

log "streaming 1,000,000 rows to psql, $REPS repetitions per mode and target"
for mode in copy select; do
    for t in $stream_targets; do S_TIMES[$mode,$t]=""; S_CPU[$mode,$t]=0; done
    for rep in $(seq "$REPS"); do
        for t in $stream_targets; do
            [ "$t" = portcullis ] && ! portcullis_alive && continue
            pid="$(pid_of "$t")"
            c0=0
            [ -n "$pid" ] && c0="$(cpu_ticks "$pid")"
            if r="$(stream_once "$mode" "$(port_of "$t")")"; then
                S_BYTES[$mode,$t]="${r% *}"
                S_TIMES[$mode,$t]+="${r#* } "
                [ -n "$pid" ] && S_CPU[$mode,$t]=$((${S_CPU[$mode,$t]} + $(cpu_ticks "$pid") - c0))
            else
                echo "    $mode via $t failed" >&2
            fi
            [ "$t" = portcullis ] && { kill -0 "$PORTCULLIS_PID" 2>/dev/null || portcullis_died; }
        done
    done
    for t in $stream_targets; do
        printf '  %-6s %-10s times(ms): %s\n' "$mode" "$t" \
            "$(for x in ${S_TIMES[$mode,$t]}; do printf '%d ' $((x / 1000000)); done)"
    done
done

# stream_stat MODE TARGET -> "median_MBps best_MBps median_ms cpu_ms_per_run" or "- - - -"
stream_stat() {
    local mode=$1 t=$2
    local times="${S_TIMES[$mode,$t]:-}" bytes="${S_BYTES[$mode,$t]:-0}" n
    n="$(wc -w <<<"$times")"
    if [ "$n" -eq 0 ]; then echo "- - - -"; return; fi
    printf '%s\n' $times | sort -n | awk -v b="$bytes" -v n="$n" -v cpu="${S_CPU[$mode,$t]:-0}" -v hz="$CLK_TCK" -v haspid="$(pid_of "$t")" '
        { v[NR] = $1 }
        END {
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            cpums = (haspid != "") ? sprintf("%.0f", cpu / hz * 1000 / n) : "-"
            printf "%.1f %.1f %.0f %s\n", b / 1e6 / (med / 1e9), b / 1e6 / (v[1] / 1e9), med / 1e6, cpums
        }'
}

# ----------------------------------------------------------------- 2b. DDL-heavy

# 100 rounds of a small migration: every statement changes the schema or
# uses what the one before created, as test suites and migrations do.
DDL_ROUNDS=100
{
    echo "SET client_min_messages = warning;"
    for i in $(seq "$DDL_ROUNDS"); do
        echo "CREATE TABLE ddl_$i (id int PRIMARY KEY, v text);"
        echo "ALTER TABLE ddl_$i ADD COLUMN w int DEFAULT $i;"
        echo "CREATE INDEX ddl_${i}_v ON ddl_$i (v);"
        echo "INSERT INTO ddl_$i (id, v) VALUES ($i, 'x$i');"
        echo "CREATE VIEW ddl_${i}_view AS SELECT id, v, w FROM ddl_$i;"
        echo "SELECT count(*) FROM ddl_${i}_view WHERE w = $i;"
        echo "DROP VIEW ddl_${i}_view;"
        echo "DROP TABLE ddl_$i;"
    done
} >"$WORK/ddl.sql"
DDL_STATEMENTS=$((DDL_ROUNDS * 8 + 1))
declare -A D_TIMES
ddl_once() { # ddl_once PORT -> nanoseconds
    local port=$1 t0 t1
    t0="$(date +%s%N)"
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U bench -d bench \
        -f "$WORK/ddl.sql" >/dev/null 2>>"$WORK/log/ddl.log" || return 1
    t1="$(date +%s%N)"
    echo $((t1 - t0))
}
log "DDL-heavy script ($DDL_STATEMENTS statements), $REPS repetitions per target"
for t in $stream_targets; do D_TIMES[$t]=""; done
for rep in $(seq "$REPS"); do
    for t in $stream_targets; do
        [ "$t" = portcullis ] && ! portcullis_alive && continue
        if r="$(ddl_once "$(port_of "$t")")"; then
            D_TIMES[$t]+="$r "
        else
            echo "    DDL script via $t failed (see $WORK/log/ddl.log)" >&2
        fi
    done
done
ddl_median_ms() { # ddl_median_ms TARGET -> median ms or "-"
    local times="${D_TIMES[$1]:-}" n
    n="$(wc -w <<<"$times")"
    [ "$n" -eq 0 ] && { echo "-"; return; }
    printf '%s\n' $times | sort -n | awk -v n="$n" '{ v[NR] = $1 } END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf "%.0f\n", m / 1e6 }'
}
for t in $stream_targets; do
    printf '  ddl    %-10s median %s ms\n' "$t" "$(ddl_median_ms "$t")"
done

# ----------------------------------------------------------------- 3. RSS, idle connections

RSS_IDLE="" RSS_CONNS="" RSS_N="" RSS_UP="" RSS_CONNECT_S="" RSS_FDS=""
established_to() { # ESTABLISHED TCP connections with local port $1 (the accepting side)
    local hex
    hex="$(printf '%04X' "$1")"
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null \
        | awk -v p=":$hex" '$4 == "01" && substr($2, length($2) - 4) == p { n++ } END { print n + 0 }'
}
upstream_sessions() {
    psql_admin -At -c "select count(*) from pg_stat_activity where usename = 'bench' and backend_type = 'client backend'" 2>/dev/null || echo 0
}
if portcullis_alive; then
    log "RSS: opening $IDLE_CONNS idle connections through Portcullis"
    RSS_IDLE="$(rss_kb "$PORTCULLIS_PID")"
    UP0="$(upstream_sessions)" # e.g. pgbouncer's idle server connections
    printf '\\sleep %s s\nSELECT 1;\n' "$IDLE_SLEEP" >"$WORK/idle.sql"
    chmod 644 "$WORK/idle.sql"
    "$PGBIN/pgbench" -n -c "$IDLE_CONNS" -j 2 -T $((IDLE_SLEEP + 5)) -f "$WORK/idle.sql" \
        -h 127.0.0.1 -p "$P_PORT" -U bench bench >"$WORK/log/pgbench-idle.log" 2>&1 &
    IDLE_PID=$!
    BG_PIDS+=("$IDLE_PID")
    t0=$SECONDS
    nc=0 nu=0 last_nu=-1 stable=0
    while [ $((SECONDS - t0)) -lt 120 ] && kill -0 "$IDLE_PID" 2>/dev/null; do
        nc="$(established_to "$P_PORT")"
        nu=$(($(upstream_sessions) - UP0))
        if [ "$nc" -ge "$IDLE_CONNS" ]; then
            [ "$nu" -ge "$IDLE_CONNS" ] && break
            # upstream sessions opened lazily: accept once the count is stable for 3 s
            if [ "$nu" -eq "$last_nu" ]; then stable=$((stable + 1)); else stable=0; fi
            [ "$stable" -ge 6 ] && break
        fi
        last_nu=$nu
        sleep 0.5
    done
    if [ "$nc" -ge "$IDLE_CONNS" ]; then
        RSS_CONNECT_S=$((SECONDS - t0))
        sleep 1
        RSS_CONNS=0
        for _ in 1 2 3; do
            r="$(rss_kb "$PORTCULLIS_PID")"
            [ "${r:-0}" -gt "$RSS_CONNS" ] && RSS_CONNS=$r
            sleep 1
        done
        RSS_N=$nc
        RSS_UP=$nu
        RSS_FDS="$(ls "/proc/$PORTCULLIS_PID/fd" 2>/dev/null | wc -l)"
        log "  $nc client connections, $nu upstream sessions after ${RSS_CONNECT_S}s; VmRSS $((RSS_CONNS / 1024)) MB; $RSS_FDS fds"
    else
        echo "bench: only $nc of $IDLE_CONNS client connections came up ($nu upstream); last lines of the pgbench log:" >&2
        tail -n 5 "$WORK/log/pgbench-idle.log" | sed 's/^/    /' >&2
        RSS_N=$nc
    fi
    wait "$IDLE_PID" 2>/dev/null || true
    BG_PIDS=()
    kill -0 "$PORTCULLIS_PID" 2>/dev/null || portcullis_died
fi

# ----------------------------------------------------------------- report

REPORT="$WORK/report.md"
mb() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.1f", k / 1024; else printf "-" }'; }
{
    echo "## Portcullis benchmark, $DATE"
    echo
    echo "- Machine: $NPROC CPUs, $CPU_MODEL, $MEM_TOTAL RAM, Linux $(uname -r); load average at start $LOADAVG"
    echo "- PostgreSQL $PG_VERSION (fsync=off, shared_buffers=256MB), pgbouncer $PGB_VERSION (session mode, pool 100), Portcullis $GIT_REV"
    echo "- Everything on this one machine; clients reach PostgreSQL and the proxies over plaintext TCP 127.0.0.1"
    echo "  with SCRAM-SHA-256; the proxies reach PostgreSQL over $( [ "$UPSTREAM" = unix ] && echo "its Unix socket" || echo "TCP 127.0.0.1 (SCRAM)" );"
    echo "  pgbench, proxies and PostgreSQL share the $NPROC CPUs, so proxy CPU cost shows up as lower tps."
    echo "- pgbench -S (select only), scale $SCALE, -j 2 (-j 1 at 1 client), ${DURATION}s per run$( [ "$ROUNDS" -gt 1 ] && echo ", median of $ROUNDS rounds (the three targets in turn within each round)" )"
    if [ -n "$PSKIP" ]; then
        echo "- **Portcullis skipped: $PSKIP**"
    fi
    echo
    echo "### pgbench -S and the ORM script, tps"
    echo
    echo "| protocol | clients | direct | Portcullis | pgbouncer | Portcullis/direct | Portcullis/pgbouncer | Portcullis CPU µs/tx | pgbouncer CPU µs/tx |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for proto in simple extended prepared orm; do
        for c in $CLIENTS; do
            d="${TPS[$proto,$c,direct]:--}"
            p="${TPS[$proto,$c,portcullis]:--}"
            b="${TPS[$proto,$c,pgbouncer]:--}"
            echo "| $proto | $c | $d | $p | $b | $(fmt_ratio "$p" "$d") | $(fmt_ratio "$p" "$b") | ${CPU_US[$proto,$c,portcullis]:--} | ${CPU_US[$proto,$c,pgbouncer]:--} |"
        done
    done
    echo
    echo "CPU µs/tx: the proxy process's utime+stime (/proc/PID/stat) over the run divided by transactions."
    echo "orm: the ORM-shaped script (4 statements per transaction: a join with ORDER BY/LIMIT, an UPDATE by id, an INSERT ... RETURNING, a SELECT by email; literals change every time), simple protocol."
    echo
    echo "### 1,000,000-row result streamed to psql (median of $REPS)"
    echo
    echo "\`$STREAM_SQL\`; copy = \`COPY (...) TO STDOUT\`, select = plain SELECT with FETCH_COUNT=0; output piped to \`wc -c\`. MB = 10^6 bytes of psql output."
    echo
    echo "| mode | output MB | direct MB/s | Portcullis MB/s | pgbouncer MB/s | Portcullis/direct | Portcullis/pgbouncer | direct ms | Portcullis ms | Portcullis CPU ms/run | pgbouncer CPU ms/run |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for mode in copy select; do
        read -r dm _ dms _ <<<"$(stream_stat "$mode" direct)"
        read -r pm _ pms pcpu <<<"$(stream_stat "$mode" portcullis)"
        read -r bm _ _ bcpu <<<"$(stream_stat "$mode" pgbouncer)"
        out_mb="$(awk -v b="${S_BYTES[$mode,direct]:-}" 'BEGIN { if (b != "") printf "%.1f", b / 1e6; else printf "-" }')"
        echo "| $mode | $out_mb | $dm | $pm | $bm | $(fmt_ratio "$pm" "$dm") | $(fmt_ratio "$pm" "$bm") | $dms | $pms | $pcpu | $bcpu |"
    done
    echo
    echo "### DDL-heavy script (median of $REPS)"
    echo
    echo "$DDL_STATEMENTS statements ($DDL_ROUNDS rounds of CREATE TABLE, ALTER TABLE ADD COLUMN, CREATE INDEX, INSERT, CREATE VIEW, SELECT, DROP VIEW, DROP TABLE) sent by \`psql -f\`, one per query."
    echo
    echo "| direct ms | Portcullis ms | pgbouncer ms | Portcullis/direct | pgbouncer/direct |"
    echo "|---:|---:|---:|---:|---:|"
    dd="$(ddl_median_ms direct)"; dp="$(ddl_median_ms portcullis)"; db="$(ddl_median_ms pgbouncer)"
    echo "| $dd | $dp | $db | $(fmt_ratio "$dp" "$dd") | $(fmt_ratio "$db" "$dd") |"
    echo
    echo "### Portcullis memory (VmRSS)"
    echo
    if [ -n "$PSKIP" ] && [ -z "$RSS_IDLE" ]; then
        echo "Skipped: $PSKIP"
    else
        echo "| state | RSS MB |"
        echo "|---|---:|"
        echo "| just started | $(mb "$RSS_FRESH") |"
        echo "| idle, after the runs above | $(mb "$RSS_IDLE") |"
        if [ -n "$RSS_CONNS" ]; then
            echo "| $RSS_N idle client connections ($RSS_UP upstream sessions) | $(mb "$RSS_CONNS") |"
            echo
            echo "Per connection: $(awk -v a="$RSS_CONNS" -v b="$RSS_IDLE" -v n="$RSS_N" 'BEGIN { printf "%.1f", (a - b) / n }') KB;"
            echo "all $RSS_N connected after ${RSS_CONNECT_S}s; the proxy held $RSS_FDS file descriptors."
        else
            echo "| $IDLE_CONNS idle client connections | failed (${RSS_N:-0} came up) |"
        fi
    fi
    [ -n "$P_SCRAM_SRC" ] && { echo; echo "Portcullis user verifier from: $P_SCRAM_SRC."; }
} >"$REPORT"

echo
cat "$REPORT"
if [ -n "$OUT" ]; then
    cp "$REPORT" "$OUT"
    log "report written to $OUT"
fi
