#!/usr/bin/env bash
# Brings the portal up locally on an embedded default (README "Quick start"):
# a persistent private PostgreSQL 15 cluster in .local/pg, a generated admin password in
# .local/admin-password, the portal's data directory in .local/data, three simulated Acuvim II
# meters behind one Modbus TCP port (`tau-portal simulate`), a demo site with those meters
# (registered only while the database has no site yet), and the portal itself in Development
# mode at http://127.0.0.1:${TAU_DEV_PORT:-8080}, polling the meters every 5 s. Ctrl-C stops
# everything; the data stays for the next run (delete .local/ to start over).
#
# Environment: TAU_DEV_PORT (portal, default 8080), TAU_DEV_PG_PORT (PostgreSQL, default 54329;
# when something else holds it, a free port is used instead), TAU_DEV_MODBUS_PORT (simulator,
# default 5020), TAU_DEV_METRICS_PORT (the portal's Prometheus /metrics, default 9091: 9090 is
# Prometheus's own port; a free port is used when something else holds it),
# TAU_DEV_DIR (instead of .local/, e.g. for a test), TAU_DEV_BIN (run this tau-portal binary
# instead of building one; the test suite passes its own), CARGO_TARGET_DIR, RUST_LOG.
# Every listener binds 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/pg.sh
source scripts/lib/pg.sh # also sources scripts/lib/ensure.sh

LOCAL=${TAU_DEV_DIR:-$ROOT/.local}
PG_BASE=$LOCAL/pg
PORTAL_PORT=${TAU_DEV_PORT:-8080}
WANTED_PG_PORT=${TAU_DEV_PG_PORT:-54329}
MODBUS_PORT=${TAU_DEV_MODBUS_PORT:-5020}
WANTED_METRICS_PORT=${TAU_DEV_METRICS_PORT:-9091}
ADMIN_EMAIL=admin@example.com
ADMIN_PASSWORD_FILE=$LOCAL/admin-password
DATABASE=power_monitoring
BIN=${TAU_DEV_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/tau-portal}

PORTAL_PID=""
SIMULATOR_PID=""
PG_STARTED=0

# Runs on every exit: Ctrl-C, SIGTERM, the portal exiting by itself, or a failed step.
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $PORTAL_PID ]] && kill -0 "$PORTAL_PID" 2>/dev/null; then
        echo "stopping the portal"
        kill -TERM "$PORTAL_PID" 2>/dev/null
        # The portal shuts down gracefully on SIGTERM; don't hang forever if it does not.
        local deadline=$((SECONDS + 30))
        while kill -0 "$PORTAL_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL "$PORTAL_PID" 2>/dev/null
    fi
    [[ -n $PORTAL_PID ]] && wait "$PORTAL_PID" 2>/dev/null
    if [[ -n $SIMULATOR_PID ]] && kill -0 "$SIMULATOR_PID" 2>/dev/null; then
        echo "stopping the meter simulator"
        kill -TERM "$SIMULATOR_PID" 2>/dev/null
        wait "$SIMULATOR_PID" 2>/dev/null
    fi
    if ((PG_STARTED)); then
        echo "stopping the local PostgreSQL"
        pg_cluster_stop "$PG_BASE" fast
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- system packages and the portal's port -----------------------------------------------------
ensure_system_packages postgres
if [[ -z ${TAU_DEV_BIN:-} ]] && ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found: install a Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi
if ! tau_port_is_free "$PORTAL_PORT"; then
    echo "error: port $PORTAL_PORT on 127.0.0.1 is in use; set TAU_DEV_PORT to another port" >&2
    exit 1
fi
if ! tau_port_is_free "$MODBUS_PORT"; then
    echo "error: port $MODBUS_PORT on 127.0.0.1 is in use; set TAU_DEV_MODBUS_PORT to another port" >&2
    exit 1
fi
# Only scrapers read the metrics port, and the banner prints it: a taken one is not worth failing.
METRICS_PORT=$WANTED_METRICS_PORT
if ! tau_port_is_free "$METRICS_PORT"; then
    METRICS_PORT=$(tau_free_port)
    echo "port $WANTED_METRICS_PORT is in use by something else; the portal's metrics use $METRICS_PORT instead"
fi

# --- the local PostgreSQL cluster ----------------------------------------------------------------
mkdir -p "$LOCAL/data"
chmod 755 "$LOCAL" # the postgres OS user must reach .local/pg (when we run as root)
pg_cluster_init "$PG_BASE"
# The cluster is stopped on exit, but one left over by a killed run is simply reused.
PG_STARTED=1
if pg_cluster_is_running "$PG_BASE"; then
    PG_PORT=$(pg_cluster_port "$PG_BASE")
    echo "local PostgreSQL already running on 127.0.0.1:$PG_PORT"
else
    PG_PORT=$WANTED_PG_PORT
    if ! tau_port_is_free "$PG_PORT"; then
        PG_PORT=$(tau_free_port)
        echo "port $WANTED_PG_PORT is in use by something else; the local PostgreSQL uses $PG_PORT instead"
    fi
    echo "starting the local PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_BASE/postgres.log)"
    if ! pg_cluster_start "$PG_BASE" "$PG_PORT"; then
        echo "error: PostgreSQL did not start; log tail:" >&2
        tail -n 20 "$PG_BASE/postgres.log" >&2 || true
        exit 1
    fi
fi
if [[ -z $(pg_psql "$PG_BASE" "$PG_PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") ]]; then
    pg_psql "$PG_BASE" "$PG_PORT" -d postgres -qc "CREATE DATABASE $DATABASE"
fi

# --- the admin password: generated once, kept for the life of .local/ ----------------------------
if [[ ! -s $ADMIN_PASSWORD_FILE ]]; then
    # 18 random bytes = 24 URL-safe base64 characters.
    (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$ADMIN_PASSWORD_FILE")
fi
chmod 600 "$ADMIN_PASSWORD_FILE"

# --- build and run ---------------------------------------------------------------------------
# Dev profile: shares the build cache with scripts/test.sh.
if [[ -z ${TAU_DEV_BIN:-} ]]; then
    cargo build --locked --bin tau-portal
fi

# The portal's settings, shared by `migrate` and `serve`.
export Application__Environment=Development
export Application__ListenAddress=127.0.0.1:${PORTAL_PORT}
# Loopback like the web port (the binary's default, 0.0.0.0:9090, is for a container network).
export Application__MetricsAddress=127.0.0.1:${METRICS_PORT}
export Application__PublicUrl=http://127.0.0.1:${PORTAL_PORT}
export Application__DataDirectory=$LOCAL/data
export Database__ConnectionString="Host=127.0.0.1;Port=${PG_PORT};Database=${DATABASE};Username=postgres;Password=unused"
export Authentication__DefaultAdminEmail=$ADMIN_EMAIL
export Authentication__DefaultAdminPassword_FILE=$ADMIN_PASSWORD_FILE

# --- simulated meters, and a demo site for them on an empty database -------------------------
"$BIN" simulate --meters 3 --unit-ids --listen 127.0.0.1 --port "$MODBUS_PORT" </dev/null >"$LOCAL/simulator.log" 2>&1 &
SIMULATOR_PID=$!
"$BIN" migrate </dev/null
pg_psql "$PG_BASE" "$PG_PORT" -d "$DATABASE" -v ON_ERROR_STOP=1 -q -v modbus_port="$MODBUS_PORT" <<'SQL'
-- Only on a database without sites: the demo never touches a user's own configuration.
WITH site AS (
    INSERT INTO monitoring."Sites" ("Name", "Address", "TimeZone", "Notes")
    SELECT 'Demo plant', 'Simulated meters (scripts/dev.sh)', 'Africa/Johannesburg',
           'Three simulated Acuvim II meters behind one Modbus TCP port; delete this site when you add your own.'
    WHERE NOT EXISTS (SELECT 1 FROM monitoring."Sites")
    RETURNING "Id"
)
INSERT INTO monitoring."Devices"
    ("SiteId", "ExternalId", "Name", "Model", "Source", "ModbusHost", "ModbusPort", "ModbusUnitId", "PollIntervalSeconds")
SELECT site."Id", m.external_id, m.name, 'acuvim-ii', 'modbus-tcp', '127.0.0.1', :modbus_port, m.unit, 5
FROM site, (VALUES ('demo-incomer', 'Main incomer', 1), ('demo-hvac', 'HVAC', 2), ('demo-lighting', 'Lighting', 3))
    AS m(external_id, name, unit);
SQL

cat <<BANNER

  Tau Acuvim Portal is starting at  http://127.0.0.1:${PORTAL_PORT}
  Sign in as                        ${ADMIN_EMAIL}
  Password                          $(cat "$ADMIN_PASSWORD_FILE")
  Database                          postgres://postgres@127.0.0.1:${PG_PORT}/${DATABASE}
  Metrics (Prometheus)              http://127.0.0.1:${METRICS_PORT}/metrics
  Simulated meters                  Modbus TCP 127.0.0.1:${MODBUS_PORT}, unit ids 1-3 (log: $LOCAL/simulator.log)
  Live readings                     Sites -> Demo plant (a reading every 5 s)
  Stop with Ctrl-C (stops the portal, the simulator and the local PostgreSQL; the data stays in .local/).

BANNER

# Not exec: the EXIT trap must run afterwards to stop the cluster. The portal runs in the
# background so that a SIGTERM sent to this script is handled at once (cleanup forwards it).
"$BIN" serve </dev/null &
PORTAL_PID=$!
# Returns the portal's status when it exits by itself (set -e then exits with it); a trapped
# signal interrupts the wait and exits through cleanup, which stops the portal.
wait "$PORTAL_PID"
