#!/usr/bin/env bash
# Measure pgreplica's online initial copy and verify against a plain
# pg_dump | psql of the same tables, on two throwaway PostgreSQL clusters.
#
# Usage: bash scripts/bench-sync.sh [options]
#   --scale N      pgbench scale factor (N x 100,000 accounts)   default 50
#   --workers N    pgreplica sync --workers                      default 4
#   --runs N       rounds of (pg_dump | psql, sync), order alternating  default 3
#   --quick        a smoke test: --scale 2 --runs 1
#   -h, --help     this text
# Environment: SCALE, WORKERS, RUNS (defaults for the options above) and
# PG_BINDIR (the server binaries).
#
# Two clusters are made with initdb in a temporary directory (as the postgres
# user when root), each listening only on a unix socket there, with default
# settings otherwise; they are removed on exit. The origin gets pgbench data
# (pgbench -i -s N, pgbench_history with a primary key). Then, on the other
# cluster, each run into a new empty database:
#   - pg_dump -t <the four tables> | psql      (plain format, one stream)
#   - pgreplica sync --schema                   (capture installed, tables
#     created, copied at one snapshot, indexes built after the copy)
# in rounds whose order alternates; before every run the capture schema is
# removed from the origin, both clusters are checkpointed and the OS page
# cache is flushed (sync), so no run pays for the previous one's writes.
# Then pgreplica verify of pgbench_accounts (equal tables: one hash scan on
# each server, in parallel). Rates are the origin's table data
# (pg_relation_size, without indexes) and rows divided by the median
# wall-clock time. Prints a markdown table and writes the same as JSON to
# bench-results/sync.json.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

SCALE="${SCALE:-50}"
WORKERS="${WORKERS:-4}"
RUNS="${RUNS:-3}"

while (($#)); do
    opt="$1" val=""
    case "$opt" in
        --*=*) val="${opt#*=}" opt="${opt%%=*}" ;;
        --scale | --workers | --runs)
            (($# >= 2)) || die "$opt needs a value"
            val="$2"
            shift
            ;;
    esac
    case "$opt" in
        --scale) SCALE="$val" ;;
        --workers) WORKERS="$val" ;;
        --runs) RUNS="$val" ;;
        --quick) SCALE=2 RUNS=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
for v in SCALE WORKERS RUNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

cd "$REPO_ROOT"
ensure_go

# --- Binaries ------------------------------------------------------------------

BIN="$(pg_bindir)" || die "PostgreSQL server binaries not found; install them" \
    "(Debian: apt-get install -y postgresql postgresql-contrib) or set PG_BINDIR"
client() {
    if [[ -x "$BIN/$1" ]]; then
        printf '%s\n' "$BIN/$1"
    else
        command -v "$1" || die "$1 not found (Debian: apt-get install -y postgresql-client)"
    fi
}
PSQL="$(client psql)"
PGBENCH="$(client pgbench)"
PGDUMP="$(client pg_dump)"
if is_root; then
    id -u postgres >/dev/null 2>&1 ||
        die "running as root needs a postgres OS user to run the server (useradd -r postgres)"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pgreplica-bench-sync-XXXXXX")"
STARTED=()

cleanup() {
    local rc=$? d
    for d in "${STARTED[@]}"; do
        (cd "$WORK" && as_pg "$BIN/pg_ctl" -D "$d" -m immediate -w stop) >/dev/null 2>&1 || true
    done
    if ((rc != 0 && rc != 130 && rc != 143)); then
        for d in "$WORK"/*/server.log; do
            [[ -f "$d" ]] || continue
            log "server log $d (last lines):"
            tail -n 20 "$d" >&2 || true
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building pgreplica"
GOFLAGS="${GOFLAGS:-} -buildvcs=false" go build -o "$WORK/pgreplica" ./cmd/pgreplica
is_root && chown postgres: "$WORK"

# start_cluster NAME: initdb and start a cluster in $WORK/NAME; prints its port.
start_cluster() {
    local dir="$WORK/$1" port
    mkdir -p "$dir"
    is_root && chown postgres: "$dir"
    port="$(free_port)" || die "no free port found"
    (cd "$WORK" && as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync) \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb $1 failed"; }
    cat >>"$dir/data/postgresql.conf" <<EOF

# bench-sync.sh: a private server reachable only through its socket.
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
EOF
    STARTED+=("$dir/data")
    (cd "$WORK" && as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start) >/dev/null ||
        die "the $1 server did not start"
    printf '%s\n' "$port"
}

log "initdb of two clusters in $WORK with $BIN"
OPORT="$(start_cluster origin)"
RPORT="$(start_cluster replica)"
unset PGHOST PGPORT PGDATABASE PGSERVICE PGOPTIONS PGPASSWORD PGSSLMODE
export PGUSER=postgres
osql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$WORK/origin" -p "$OPORT" -d bench "$@"; }
rsql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$WORK/replica" -p "$RPORT" "$@"; }
"$PSQL" -X -q -h "$WORK/origin" -p "$OPORT" -d postgres -c 'CREATE DATABASE bench'
PG_VERSION="$(osql -At -c 'SHOW server_version')"

log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h "$WORK/origin" -p "$OPORT" bench >"$WORK/init.log" 2>&1 ||
    { cat "$WORK/init.log" >&2; die "pgbench -i failed"; }
osql -c 'ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY' -c 'VACUUM ANALYZE'

TABLES=(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history)
joined="$(IFS=,; echo "${TABLES[*]}")"
IN_LIST="'${joined//,/\',\'}'"
BYTES="$(osql -At -c "SELECT sum(pg_relation_size(c.oid)) FROM pg_class c WHERE c.relname IN ($IN_LIST)")"
ROWS="$(osql -At -c "SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM pgbench_branches)
                         + (SELECT count(*) FROM pgbench_tellers) + (SELECT count(*) FROM pgbench_history)")"
ACC_ROWS="$(osql -At -c 'SELECT count(*) FROM pgbench_accounts')"
ACC_BYTES="$(osql -At -c "SELECT pg_relation_size('pgbench_accounts')")"
osql -c 'CHECKPOINT'

# now: seconds since the epoch with nanoseconds.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" -v d="$3" 'BEGIN { printf "%.1f", n / s / d }'; }
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# fresh DB: drop and create a database on the replica cluster, remove
# capture from the origin, checkpoint both clusters and flush the OS cache.
fresh() {
    rsql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
    osql -c 'SET client_min_messages = warning' -c 'DROP SCHEMA IF EXISTS pgreplica CASCADE'
    osql -c 'CHECKPOINT'
    rsql -d postgres -c 'CHECKPOINT'
    sync
}

cat >"$WORK/pgreplica.yaml" <<EOF
name: bench
origin:
  dsn: "host=$WORK/origin port=$OPORT user=postgres dbname=bench"
replicas:
  - name: copy
    dsn: "host=$WORK/replica port=$RPORT user=postgres dbname=sync_target"
tables:
  include: ["public.pgbench_*"]
EOF
dump_args=()
for t in "${TABLES[@]}"; do dump_args+=(-t "$t"); done

run_dump() {
    fresh dump_target
    local t0 t1
    t0="$(now)"
    "$PGDUMP" -h "$WORK/origin" -p "$OPORT" "${dump_args[@]}" bench |
        rsql -d dump_target >"$WORK/dump.log" 2>&1 || { cat "$WORK/dump.log" >&2; die "pg_dump | psql failed"; }
    t1="$(now)"
    [[ "$(rsql -d dump_target -At -c 'SELECT count(*) FROM pgbench_accounts')" == "$ACC_ROWS" ]] ||
        die "pg_dump | psql did not copy every row"
    rsql -d postgres -c 'DROP DATABASE dump_target'
    DUMP+=("$(elapsed "$t0" "$t1")")
    log "round $1: pg_dump | psql ${DUMP[-1]}s"
}

run_sync() {
    fresh sync_target
    local t0 t1
    t0="$(now)"
    "$WORK/pgreplica" -c "$WORK/pgreplica.yaml" sync --schema --yes --workers "$WORKERS" >"$WORK/sync.log" 2>&1 ||
        { cat "$WORK/sync.log" >&2; die "pgreplica sync failed"; }
    t1="$(now)"
    [[ "$(rsql -d sync_target -At -c 'SELECT count(*) FROM pgbench_accounts')" == "$ACC_ROWS" ]] ||
        die "pgreplica sync did not copy every row"
    SYNC+=("$(elapsed "$t0" "$t1")")
    log "round $1: pgreplica sync ${SYNC[-1]}s ($(grep -E 'pgbench_accounts: copied' "$WORK/sync.log" | sed 's/.*copied //'))"
}

DUMP=() SYNC=()
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then
        run_dump "$i"
        run_sync "$i"
    else
        run_sync "$i"
        run_dump "$i"
    fi
done
DUMP_S="$(median "${DUMP[@]}")"
SYNC_S="$(median "${SYNC[@]}")"

# --- pgreplica verify (of the last sync's copy) --------------------------------------

log "pgreplica verify --table pgbench_accounts"
osql -c 'CHECKPOINT'
rsql -d postgres -c 'CHECKPOINT'
t0="$(now)"
"$WORK/pgreplica" -c "$WORK/pgreplica.yaml" verify --table pgbench_accounts >"$WORK/verify.log" 2>&1 ||
    { cat "$WORK/verify.log" >&2; die "pgreplica verify did not find the copy equal"; }
t1="$(now)"
VERIFY_S="$(elapsed "$t0" "$t1")"
cat "$WORK/verify.log" >&2

# --- Report --------------------------------------------------------------------------

MB="$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')"
echo
echo "pgbench scale $SCALE: $ROWS rows, $MB MB of table data; PostgreSQL $PG_VERSION, $(nproc) CPUs; median of $RUNS runs"
echo "pg_dump | psql runs: ${DUMP[*]} s; sync runs: ${SYNC[*]} s"
echo
echo "| what | seconds | MB/s | rows/s |"
echo "|---|---:|---:|---:|"
printf '| pg_dump -t ... \\| psql | %s | %s | %s |\n' "$DUMP_S" "$(rate "$BYTES" "$DUMP_S" 1e6)" "$(rate "$ROWS" "$DUMP_S" 1)"
printf '| pgreplica sync --schema (--workers %s) | %s | %s | %s |\n' "$WORKERS" "$SYNC_S" "$(rate "$BYTES" "$SYNC_S" 1e6)" "$(rate "$ROWS" "$SYNC_S" 1)"
printf '| pgreplica verify --table pgbench_accounts | %s | %s | %s |\n' "$VERIFY_S" "$(rate "$ACC_BYTES" "$VERIFY_S" 1e6)" "$(rate "$ACC_ROWS" "$VERIFY_S" 1)"
echo
echo "sync/pg_dump time ratio: $(awk -v s="$SYNC_S" -v d="$DUMP_S" 'BEGIN { printf "%.2f", s / d }')"

mkdir -p bench-results
cat >bench-results/sync.json <<EOF
{
  "benchmark": "pgreplica sync --schema vs pg_dump | psql of the pgbench tables; verify of pgbench_accounts",
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "postgres_version": "$PG_VERSION",
  "cpus": $(nproc),
  "scale": $SCALE,
  "workers": $WORKERS,
  "runs": $RUNS,
  "pg_dump_psql_runs_seconds": [$(IFS=,; echo "${DUMP[*]}")],
  "sync_runs_seconds": [$(IFS=,; echo "${SYNC[*]}")],
  "rows": $ROWS,
  "table_bytes": $BYTES,
  "pg_dump_psql_seconds": $DUMP_S,
  "sync_seconds": $SYNC_S,
  "verify_accounts_seconds": $VERIFY_S,
  "pg_dump_psql_mb_per_s": $(rate "$BYTES" "$DUMP_S" 1e6),
  "sync_mb_per_s": $(rate "$BYTES" "$SYNC_S" 1e6),
  "sync_rows_per_s": $(rate "$ROWS" "$SYNC_S" 1),
  "pg_dump_psql_rows_per_s": $(rate "$ROWS" "$DUMP_S" 1),
  "verify_accounts_rows_per_s": $(rate "$ACC_ROWS" "$VERIFY_S" 1)
}
EOF
log "wrote bench-results/sync.json"
