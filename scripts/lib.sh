# shellcheck shell=bash
# Shared helpers for the scripts in scripts/. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets REPO_ROOT and defines small functions; it changes no state itself.

# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROG="$(basename "$0")"

# log MESSAGE...: a progress line on stderr.
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# die MESSAGE...: an error line on stderr, then exit 1.
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ensure_go: put /usr/local/go/bin on PATH when `go` is not found.
ensure_go() {
    if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
        PATH="/usr/local/go/bin:$PATH"
        export PATH
    fi
    command -v go >/dev/null 2>&1 ||
        die "Go not found (looked on PATH and in /usr/local/go/bin); install Go from https://go.dev/dl/"
}

# pg_newest_bindir: the newest /usr/lib/postgresql/*/bin holding initdb, or
# nothing (status 1).
pg_newest_bindir() {
    local d best=""
    while IFS= read -r d; do
        [[ -x "$d/initdb" ]] && best="$d"
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
    [[ -n "$best" ]] && printf '%s\n' "$best"
}

# pg_bindir: the directory of the PostgreSQL server binaries, searched like
# core/pgtest does: $PG_BINDIR, the initdb on PATH, the newest
# /usr/lib/postgresql/*/bin. Prints nothing (status 1) when none is found.
pg_bindir() {
    local p
    if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/initdb" ]]; then
        printf '%s\n' "$PG_BINDIR"
        return 0
    fi
    if p="$(command -v initdb 2>/dev/null)"; then
        p="$(readlink -f "$p")"
        if [[ -x "$(dirname "$p")/pg_ctl" ]]; then
            dirname "$p"
            return 0
        fi
    fi
    pg_newest_bindir
}

# APT_UPDATED is set once `apt-get update` has run in this process.
APT_UPDATED=""

# apt_install PACKAGE...: install Debian packages (root only), noninteractively.
apt_install() {
    if [[ -z "$APT_UPDATED" ]]; then
        log "running apt-get update"
        apt-get update >&2
        APT_UPDATED=1
    fi
    log "installing with apt-get: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}

# ensure_postgres_user: create the `postgres` OS user when root and missing
# (PostgreSQL refuses to run as root; the tests and benchmarks run it as
# postgres).
ensure_postgres_user() {
    id -u postgres >/dev/null 2>&1 && return 0
    is_root || return 0
    log "creating the postgres OS user"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
}

# as_pg COMMAND...: run a command as postgres when root, else as ourselves.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# free_port: print a TCP port that nothing on this machine listens on.
free_port() {
    local port
    for port in $(seq 25432 25532) $(shuf -i 30000-60000 -n 50); do
        if command -v ss >/dev/null 2>&1; then
            ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && continue
        else
            # No ss (iproute2): try to connect; a refusal means it is free.
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        fi
        printf '%s\n' "$port"
        return 0
    done
    return 1
}

# ensure_postgres [EXTRA_PACKAGE...]: make the PostgreSQL server binaries
# (and any extra packages, e.g. tmux) available: installed with apt-get when
# root, else a clear message and exit 1. Exports PG_BINDIR when initdb is not
# on PATH.
have_initdb() {
    [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/initdb" ]] ||
        command -v initdb >/dev/null 2>&1 ||
        pg_newest_bindir >/dev/null
}

ensure_postgres() {
    local missing=() installing_pg="" pkg
    if ! have_initdb; then
        missing+=(postgresql postgresql-contrib)
        installing_pg=1
    fi
    for pkg in "$@"; do
        command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if ! is_root; then
            {
                echo "$PROG: missing: ${missing[*]}"
                [[ -n "$installing_pg" ]] &&
                    echo "  PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH" \
                        "nor in /usr/lib/postgresql/*/bin (or set PG_BINDIR to their directory)."
                echo "  Install them, e.g. on Debian/Ubuntu:"
                echo "    sudo apt-get install -y ${missing[*]}"
            } >&2
            exit 1
        fi
        apt_install "${missing[@]}"
        if [[ -n "$installing_pg" ]]; then
            # The package creates and starts a default cluster; pgreplica
            # starts its own, so stop it to save resources.
            log "stopping the default PostgreSQL service started by the package"
            service postgresql stop >&2 || true
        fi
        have_initdb || die "PostgreSQL was installed but initdb is still not found"
    fi
    ensure_postgres_user
    if ! command -v initdb >/dev/null 2>&1 && [[ -z "${PG_BINDIR:-}" || ! -x "$PG_BINDIR/initdb" ]]; then
        PG_BINDIR="$(pg_newest_bindir)"
        export PG_BINDIR
    fi
}
