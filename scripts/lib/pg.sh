# shellcheck shell=bash
# Private PostgreSQL clusters for scripts/test.sh (throwaway) and scripts/dev.sh (persistent).
# Sourced; defines functions only. Needs tau_pg_bindir from ensure.sh.
#
# A cluster lives in one base directory BASE:
#   BASE/data          the data directory (initdb -D)
#   BASE/postgres.log  the server log (pg_ctl -l)
#   BASE/.s.PGSQL.N    the Unix socket (-k BASE); psql -h BASE -p N -U postgres
# When running as root, BASE belongs to the postgres OS user and every pg_* binary runs
# as postgres, because initdb and postgres refuse to run as root.
#
#   tau_free_port                       prints a free TCP port on 127.0.0.1
#   tau_port_is_free PORT               true when nothing holds PORT on 127.0.0.1
#   pg_cluster_init BASE                initdb once (no-op when BASE/data is a cluster)
#   pg_cluster_start BASE PORT [-c name=value ...]
#   pg_cluster_start_on_free_port BASE [-c ...]  sets PG_CLUSTER_PORT; retries port races
#   pg_cluster_stop BASE [MODE]         pg_ctl stop (MODE: smart|fast|immediate; default fast)
#   pg_cluster_is_running BASE
#   pg_cluster_port BASE                port of the running cluster (from postmaster.pid)
#   pg_psql BASE PORT [psql args...]    psql as postgres through the socket

# shellcheck source=scripts/lib/ensure.sh
source "$(dirname "${BASH_SOURCE[0]}")/ensure.sh"

tau_port_is_free() {
    local port=$1
    if command -v python3 >/dev/null 2>&1; then
        # A bind test also catches ports bound but not (yet) listening.
        python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$port" 2>/dev/null
    else
        # Connection refused = nobody listening.
        ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

tau_free_port() {
    local port
    if command -v python3 >/dev/null 2>&1 &&
        port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) && [[ $port =~ ^[0-9]+$ ]]; then
        printf '%s\n' "$port"
        return 0
    fi
    local i
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 30000))
        if tau_port_is_free "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    echo "error: no free TCP port found on 127.0.0.1" >&2
    return 1
}

# Runs a command as the cluster owner: postgres when we are root, ourselves otherwise.
# cd / first: postgres may not be allowed to read the caller's working directory.
_pg_as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

pg_cluster_init() {
    local base=$1 bindir
    bindir=$(tau_pg_bindir)
    base=$(realpath -m "$base")
    mkdir -p "$base"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$base"; fi
    chmod 700 "$base"
    if [[ -f $base/data/PG_VERSION ]]; then
        return 0
    fi
    # --no-instructions: initdb's "you can now start the server using ..." is misleading here.
    _pg_as_owner "$bindir/initdb" -D "$base/data" -U postgres --auth=trust -E UTF8 --locale=C \
        --no-instructions >"$base/initdb.log" 2>&1 || {
        echo "error: initdb failed:" >&2
        cat "$base/initdb.log" >&2
        return 1
    }
}

pg_cluster_start() {
    local base=$1 port=$2 bindir
    shift 2
    bindir=$(tau_pg_bindir)
    base=$(realpath -m "$base")
    # pg_ctl hands -o to /bin/sh: quote the socket directory for paths with spaces.
    local opts="-p $port -k '$base' -c listen_addresses=127.0.0.1"
    local o
    for o in "$@"; do opts+=" $o"; done
    _pg_as_owner "$bindir/pg_ctl" -D "$base/data" -l "$base/postgres.log" -w -t 60 -s \
        -o "$opts" start
}

# Throwaway clusters take an OS-assigned free port; another process can grab it between the
# probe and postgres' bind, so retry a few times on a fresh port.
pg_cluster_start_on_free_port() {
    local base=$1 attempt port
    shift
    for attempt in 1 2 3; do
        port=$(tau_free_port) || return 1
        if pg_cluster_start "$base" "$port" "$@"; then
            # shellcheck disable=SC2034 # read by the caller
            PG_CLUSTER_PORT=$port
            return 0
        fi
        echo "warning: PostgreSQL did not start on port $port (attempt $attempt/3)" >&2
        pg_cluster_stop "$base" immediate >/dev/null 2>&1 || true
    done
    echo "error: PostgreSQL failed to start; log tail ($base/postgres.log):" >&2
    tail -n 30 "$base/postgres.log" >&2 || true
    return 1
}

pg_cluster_is_running() {
    local base=$1 bindir
    bindir=$(tau_pg_bindir)
    [[ -f $base/data/PG_VERSION ]] || return 1
    _pg_as_owner "$bindir/pg_ctl" -D "$(realpath -m "$base")/data" status >/dev/null 2>&1
}

pg_cluster_stop() {
    local base=$1 mode=${2:-fast} bindir
    bindir=$(tau_pg_bindir)
    pg_cluster_is_running "$base" || return 0
    _pg_as_owner "$bindir/pg_ctl" -D "$(realpath -m "$base")/data" -m "$mode" -w -t 60 -s stop
}

# Line 4 of postmaster.pid is the port the running postmaster listens on.
pg_cluster_port() {
    sed -n 4p "$1/data/postmaster.pid" 2>/dev/null
}

pg_psql() {
    local base=$1 port=$2 bindir
    shift 2
    bindir=$(tau_pg_bindir)
    "$bindir/psql" -X -v ON_ERROR_STOP=1 -h "$(realpath -m "$base")" -p "$port" -U postgres "$@"
}
