#!/usr/bin/env bash
# Measure the origin overhead of pgreplica's capture triggers with pgbench
# (TPC-B-like) on a throwaway PostgreSQL cluster.
#
# Usage: bash scripts/bench-capture.sh [options]
#   --runs N       pairs of runs (one plain, one with capture)   default 3
#   --seconds S    length of each run in seconds                 default 30
#   --scale N      pgbench scale factor (N x 100,000 accounts)   default 10
#   --clients N    pgbench clients (-c); threads are -j 2        default 4
#   --quick        a smoke test: --runs 2 --seconds 5 --scale 2
#   -h, --help     this text
# Environment: RUNS, SECONDS_PER_RUN, SCALE, CLIENTS, THREADS (defaults for
# the options above) and PG_BINDIR (the server binaries).
#
# The cluster is made with initdb in a temporary directory (as the postgres
# user when root), listens only on a unix socket there, keeps the default
# settings otherwise and is removed on exit. pgbench_history gets a primary
# key so that all four tables can be captured. Runs alternate plain, capture,
# plain, capture...; before each, the triggers of the previous run are
# removed, the event log and pgbench_history are emptied, and the pgbench
# tables are vacuumed and checkpointed (pgbench itself runs with -n).
# Prints each run's TPS and a markdown table of the medians and the ratio
# capture/plain; writes the same as JSON to bench-results/capture.json.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

RUNS="${RUNS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-30}"
SCALE="${SCALE:-10}"
CLIENTS="${CLIENTS:-4}"
THREADS="${THREADS:-2}"

while (($#)); do
    opt="$1" val=""
    case "$opt" in
        --*=*) val="${opt#*=}" opt="${opt%%=*}" ;;
        --runs | --seconds | --scale | --clients)
            (($# >= 2)) || die "$opt needs a value"
            val="$2"
            shift
            ;;
    esac
    case "$opt" in
        --runs) RUNS="$val" ;;
        --seconds) SECONDS_PER_RUN="$val" ;;
        --scale) SCALE="$val" ;;
        --clients) CLIENTS="$val" ;;
        --quick) RUNS=2 SECONDS_PER_RUN=5 SCALE=2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
for v in RUNS SECONDS_PER_RUN SCALE CLIENTS THREADS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
((THREADS <= CLIENTS)) || THREADS="$CLIENTS"

cd "$REPO_ROOT"
[[ -f sql/origin.sql ]] || die "sql/origin.sql not found in $REPO_ROOT"

# --- Binaries ------------------------------------------------------------------

BIN="$(pg_bindir)" || die "PostgreSQL server binaries not found; install them" \
    "(Debian: apt-get install -y postgresql postgresql-contrib) or set PG_BINDIR"
# Client programs of the same version as the server when they are there.
client() {
    if [[ -x "$BIN/$1" ]]; then
        printf '%s\n' "$BIN/$1"
    else
        command -v "$1" || die "$1 not found (Debian: apt-get install -y postgresql-client)"
    fi
}
PSQL="$(client psql)"
PGBENCH="$(client pgbench)"
if is_root; then
    id -u postgres >/dev/null 2>&1 ||
        die "running as root needs a postgres OS user to run the server (useradd -r postgres)"
fi

# --- Throwaway cluster ---------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pgreplica-bench-XXXXXX")"
DATA="$WORK/data"
STARTED=""
PGBENCH_PID=""

cleanup() {
    local rc=$?
    [[ -z "$PGBENCH_PID" ]] || kill "$PGBENCH_PID" 2>/dev/null || true
    if [[ -n "$STARTED" ]]; then
        (cd "$WORK" && as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop) >/dev/null 2>&1 || true
    fi
    if ((rc != 0 && rc != 130 && rc != 143)) && [[ -f "$WORK/server.log" ]]; then
        log "server log (last lines):"
        tail -n 20 "$WORK/server.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

is_root && chown postgres: "$WORK"
PORT="$(free_port)" || die "no free port found"

log "initdb in $WORK with $BIN"
# cd: the postgres user may not be able to enter the caller's directory.
(cd "$WORK" && as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C --no-sync) \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$DATA/postgresql.conf" <<EOF

# bench-capture.sh: a private server reachable only through its socket.
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
EOF
STARTED=1
(cd "$WORK" && as_pg "$BIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w start) >/dev/null ||
    die "the server did not start"

export PGHOST="$WORK" PGPORT="$PORT" PGUSER=postgres PGDATABASE=bench
unset PGSERVICE PGOPTIONS PGPASSWORD PGSSLMODE
sql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$@"; }
sql -d postgres -c 'CREATE DATABASE bench'
PG_VERSION="$(sql -At -c 'SHOW server_version')"

log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log" >&2; die "pgbench -i failed"; }
sql -c 'ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY'
sql -1 -f sql/origin.sql

TABLES="ARRAY['pgbench_accounts','pgbench_branches','pgbench_tellers','pgbench_history']::regclass[]"

capture_on() {
    local out
    out="$(sql -At -c "SELECT pgreplica.add_table(t) FROM unnest($TABLES) t")"
    [[ "$(grep -c '^created trigger on ' <<<"$out")" -eq 4 ]] ||
        die "add_table did not create 4 triggers:"$'\n'"$out"
}

capture_off() {
    sql -At -c "SELECT pgreplica.remove_table(t) FROM unnest($TABLES) t" >/dev/null
}

trigger_count() {
    sql -At -c "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgreplica%'"
}

# Start every run from the same state: no events, an empty history, fresh
# visibility maps and statistics, nothing dirty in shared buffers.
reset_tables() {
    sql <<'SQL'
TRUNCATE pgreplica.log_0, pgreplica.log_1, pgreplica.log_2;
TRUNCATE pgbench_history;
VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
CHECKPOINT;
SQL
}

# run_pgbench MODE N: one timed run; sets TPS and TXNS.
run_pgbench() {
    local out="$WORK/run-$1-$2.log"
    # In the background so that a TERM stops the script at once (see cleanup).
    "$PGBENCH" -n -c "$CLIENTS" -j "$THREADS" -T "$SECONDS_PER_RUN" >"$out" 2>&1 &
    PGBENCH_PID=$!
    wait "$PGBENCH_PID" || { cat "$out" >&2; die "pgbench run failed"; }
    PGBENCH_PID=""
    TPS="$(sed -nE 's/^tps = ([0-9.]+) \((without initial connection time|excluding connections establishing)\).*/\1/p' "$out")"
    TXNS="$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$out")"
    [[ -n "$TPS" && -n "$TXNS" ]] || { cat "$out" >&2; die "could not read tps from pgbench"; }
}

# median NUMBER...: the median (mean of the middle two for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- Runs ----------------------------------------------------------------------------

log "PostgreSQL $PG_VERSION, scale $SCALE, $CLIENTS clients, $THREADS threads," \
    "$RUNS pairs of ${SECONDS_PER_RUN}s runs (about $((RUNS * 2 * (SECONDS_PER_RUN + 3)))s)"
plain=() capture=() events=()
for ((i = 1; i <= RUNS; i++)); do
    for mode in plain capture; do
        capture_off
        reset_tables
        if [[ "$mode" == capture ]]; then
            capture_on
        else
            [[ "$(trigger_count)" -eq 0 ]] || die "triggers left on the tables for a plain run"
        fi
        run_pgbench "$mode" "$i"
        if [[ "$mode" == capture ]]; then
            n="$(sql -At -c 'SELECT count(*) FROM pgreplica.log')"
            ((n > 0)) || die "the capture run logged no events"
            capture+=("$TPS")
            events+=("$n")
            printf 'run %d/%d capture: %10.1f tps  (%d txns, %d events, %.2f events/txn)\n' \
                "$i" "$RUNS" "$TPS" "$TXNS" "$n" "$(awk -v e="$n" -v t="$TXNS" 'BEGIN { print e / t }')"
        else
            plain+=("$TPS")
            printf 'run %d/%d plain:   %10.1f tps  (%d txns)\n' "$i" "$RUNS" "$TPS" "$TXNS"
        fi
    done
done
capture_off

# --- Report ----------------------------------------------------------------------------

med_plain="$(median "${plain[@]}")"
med_capture="$(median "${capture[@]}")"
ratio="$(awk -v c="$med_capture" -v p="$med_plain" 'BEGIN { printf "%.3f", c / p }')"
overhead="$(awk -v r="$ratio" 'BEGIN { printf "%.1f", (1 - r) * 100 }')"

echo
echo "pgbench TPC-B, PostgreSQL $PG_VERSION, scale $SCALE, -c $CLIENTS -j $THREADS -T $SECONDS_PER_RUN, $(nproc) CPUs"
echo
echo "| run | plain TPS | capture TPS | capture/plain |"
echo "|---|---:|---:|---:|"
for ((i = 0; i < RUNS; i++)); do
    printf '| %d | %.1f | %.1f | %.3f |\n' "$((i + 1))" "${plain[i]}" "${capture[i]}" \
        "$(awk -v c="${capture[i]}" -v p="${plain[i]}" 'BEGIN { print c / p }')"
done
printf '| **median** | **%s** | **%s** | **%s** |\n' "$med_plain" "$med_capture" "$ratio"
echo
echo "capture overhead: ${overhead}% of plain throughput"

json_list() { local IFS=,; printf '[%s]' "$*"; }
mkdir -p bench-results
cat >bench-results/capture.json <<EOF
{
  "benchmark": "pgbench tpcb-like, capture triggers on all four tables",
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "postgres_version": "$PG_VERSION",
  "cpus": $(nproc),
  "scale": $SCALE,
  "clients": $CLIENTS,
  "threads": $THREADS,
  "seconds_per_run": $SECONDS_PER_RUN,
  "pairs": $RUNS,
  "plain_tps": $(json_list "${plain[@]}"),
  "capture_tps": $(json_list "${capture[@]}"),
  "capture_events": $(json_list "${events[@]}"),
  "median_plain_tps": $med_plain,
  "median_capture_tps": $med_capture,
  "ratio_capture_over_plain": $ratio,
  "overhead_percent": $overhead
}
EOF
log "wrote bench-results/capture.json"
