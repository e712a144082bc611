#!/usr/bin/env bash
# Run pgreplica's checks: go vet, then the Go tests with the race detector.
#
# Usage: bash scripts/test.sh [go test flags] [packages]
#   bash scripts/test.sh                          # every package (./...)
#   bash scripts/test.sh -run TestX               # one test, every package
#   bash scripts/test.sh -run TestX ./core/pgtest/
#
# Arguments are passed to `go test -race -count=1 -timeout 40m`; when they
# name no package, ./... is added. `go vet` always checks ./...
#
# The tests start throwaway PostgreSQL clusters, so they need the server
# binaries (initdb, pg_ctl) and, for the TUI end-to-end test, tmux. When they
# are missing and we are root (CI), they are installed with apt-get; otherwise
# the script says how to install them and exits 1. Runs from any directory.
# Environment: PG_BINDIR (server binaries), GOFLAGS (kept; -buildvcs=false is
# added unless it sets -buildvcs).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
fi

cd "$REPO_ROOT"
ensure_go

# --- System dependencies -----------------------------------------------------

ensure_postgres tmux

# --- Go ----------------------------------------------------------------------

goflags="$(go env GOFLAGS)"
if [[ "$goflags" != *-buildvcs* ]]; then
    # Builds inside a checkout with odd VCS state (no commits, foreign owner)
    # fail to stamp VCS info; the tests do not need it.
    goflags="${goflags:+$goflags }-buildvcs=false"
fi
export GOFLAGS="$goflags"

# has_package_arg ARG...: whether the go test arguments name a package.
# Package patterns are told from flag values by position: a word right after
# a flag that takes a separate value (-run X) is that flag's value.
has_package_arg() {
    local arg prev=""
    local value_flags=" -run -skip -bench -benchtime -count -cpu -parallel -timeout
        -coverprofile -coverpkg -covermode -cpuprofile -memprofile -memprofilerate
        -blockprofile -blockprofilerate -mutexprofile -mutexprofilefraction -trace
        -outputdir -o -exec -tags -p -ldflags -gcflags -asmflags -mod -modfile
        -fuzz -fuzztime -list -shuffle -vet "
    value_flags="${value_flags//$'\n'/ }"
    for arg in "$@"; do
        [[ "$arg" == "-args" ]] && break
        if [[ -n "$prev" && "$value_flags" == *" ${prev/#--/-} "* ]]; then
            prev=""  # this word is the previous flag's value
            continue
        fi
        case "$arg" in
            ./* | ../* | /* | . | .. | pgreplica | pgreplica/* | all) return 0 ;;
        esac
        prev="$arg"
    done
    return 1
}

test_args=()
if (($#)) && has_package_arg "$@"; then
    test_args=("$@")
else
    # Insert ./... before any -args (what follows it goes to the test binary).
    added=""
    for arg in "$@"; do
        if [[ "$arg" == "-args" && -z "$added" ]]; then
            test_args+=(./...)
            added=1
        fi
        test_args+=("$arg")
    done
    [[ -n "$added" ]] || test_args+=(./...)
fi

start=$SECONDS
log "go: $(go version | cut -d' ' -f3-), GOFLAGS=$GOFLAGS, PG_BINDIR=${PG_BINDIR:-$(pg_bindir || echo '?')}"

log "go vet ./..."
vet_rc=0
go vet ./... || vet_rc=$?

log "go test -race -count=1 -timeout 40m ${test_args[*]}"
test_rc=0
go test -race -count=1 -timeout 40m "${test_args[@]}" || test_rc=$?

elapsed=$((SECONDS - start))
vet_word=ok
((vet_rc == 0)) || vet_word="FAILED ($vet_rc)"
test_word=ok
((test_rc == 0)) || test_word="FAILED ($test_rc)"
if ((vet_rc == 0 && test_rc == 0)); then
    echo "$PROG: PASS: go vet $vet_word, go test $test_word (${elapsed}s)"
else
    echo "$PROG: FAIL: go vet $vet_word, go test $test_word (${elapsed}s)"
fi
((test_rc != 0)) && exit "$test_rc"
exit "$vet_rc"
