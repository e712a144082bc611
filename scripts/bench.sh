#!/usr/bin/env bash
# Benchmark pgreplica against native logical replication (and Slony-I) on
# two throwaway PostgreSQL clusters of this machine.
#
# Usage: bash scripts/bench.sh [options]
#   --quick          a smoke test (scale 1, a few seconds per scenario, small
#                    backlogs, 1 run): proves the bench works, measures nothing
#   --with-slony     also measure Slony-I; installs postgresql-<major>-slony1-2
#                    and slony1-2-bin with apt-get when missing (root)
#   --runs N         interleaved runs per figure (default 3)
#   --profile DIR    instead of the scenarios: apply both backlogs once with the
#                    engine in-process under the CPU profiler, pg_stat_statements
#                    on both servers; writes pprof files and tops to DIR
#   -h, --help       this text
# Other options are passed to the Go program (scripts/bench): --scale N,
# --seconds N, --tpcb-txns N, --inserts N, --insert-txn-rows N,
# --lag-seconds N, --durability off,on, --oldtxn-minutes N (default 2; 5
# for the issue's figure), --oldtxn-tps N,
# --scenarios overhead,apply,lag,oldtxn,multimaster, --out FILE, --keep.
#
# Scenarios (docs/performance.md): 1. origin overhead (pgbench TPC-B, scale
# 10, 4 clients, 30 s; TPS with no replication, pgreplica capture alone,
# capture + applier, native logical replication, Slony-I), with fsync = off
# and again with fsync = on (--durability); 2. apply rate (200,000 TPC-B
# transactions and 1,000,000 inserted rows built with the applier stopped,
# then timed to catch up), with fsync = off and on; 3. lag at a steady 200
# TPS (p50/p95/p99); 4. pgreplica's peak RSS, CPU and event log size;
# 5. an old open writing transaction: CPU of pgreplica's reading session on
# the origin per minute at 300 TPS, with and without a session that holds
# a writing transaction open for the whole run; 6. multimaster: pgbench on
# node a of a 2-node multi-master set, without capture and with capture (row
# versions) and the engine applying to node b: the node's TPS ratio.
# A full run takes about 100 minutes (--durability off: about 50).
# Prints a markdown table; writes bench-results/bench.json.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

args=()
slony=""
while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --with-slony) slony=1; args+=("$1") ;;
        *) args+=("$1") ;;
    esac
    shift
done

cd "$REPO_ROOT"
ensure_go
BIN="$(pg_bindir)" || {
    is_root || die "PostgreSQL server binaries not found; install them" \
        "(Debian: apt-get install -y postgresql postgresql-contrib) or set PG_BINDIR"
    apt_install postgresql postgresql-contrib
    BIN="$(pg_bindir)" || die "PostgreSQL server binaries not found after installing them"
}
export PG_BINDIR="$BIN"
ensure_postgres_user
if [[ ! -x "$BIN/pgbench" ]] && ! command -v pgbench >/dev/null 2>&1; then
    is_root || die "pgbench not found (Debian: apt-get install -y postgresql-contrib)"
    apt_install postgresql-contrib
fi

if [[ -n "$slony" ]] && ! { command -v slonik && command -v slon; } >/dev/null 2>&1; then
    major="$(basename "$(dirname "$BIN")")"
    is_root || die "Slony-I not found; install postgresql-$major-slony1-2 and slony1-2-bin"
    apt_install "postgresql-$major-slony1-2" slony1-2-bin
fi
if [[ -n "$slony" ]]; then
    major="$(basename "$(dirname "$BIN")")"
    [[ -n "$(ls "/usr/lib/postgresql/$major/lib/"slony1_funcs*.so 2>/dev/null)" ]] || {
        is_root || die "the Slony-I server module for PostgreSQL $major is missing (postgresql-$major-slony1-2)"
        apt_install "postgresql-$major-slony1-2"
    }
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/pgreplica-bench-bin-XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "building pgreplica and the bench"
go build -o "$work/pgreplica" ./cmd/pgreplica
go build -o "$work/bench" ./scripts/bench
mkdir -p bench-results
"$work/bench" --pgreplica "$work/pgreplica" ${args[@]+"${args[@]}"}
