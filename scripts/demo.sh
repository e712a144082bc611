#!/usr/bin/env bash
# See pgreplica work: two throwaway local PostgreSQL clusters, a sample shop
# schema with data, capture installed, an online copy, a gentle write load,
# and the replication monitor. Quitting stops and removes everything.
#
# Usage: bash scripts/demo.sh [pgreplica demo flags]
#   bash scripts/demo.sh                 # the TUI monitor (in a terminal)
#   bash scripts/demo.sh --no-tui        # headless: progress lines, then a check
#
# Installs the PostgreSQL server binaries with apt-get when they are missing
# and we are root; otherwise says how to install them.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
fi

cd "$REPO_ROOT"
ensure_go
ensure_postgres
goflags="$(go env GOFLAGS)"
[[ "$goflags" == *-buildvcs* ]] || export GOFLAGS="${goflags:+$goflags }-buildvcs=false"
if [[ $# -eq 0 && ! -t 1 ]]; then
    set -- --no-tui
fi
exec go run ./cmd/pgreplica demo "$@"
