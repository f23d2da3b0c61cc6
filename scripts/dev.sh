#!/usr/bin/env bash
# Brings the portal up locally on an embedded default (README "Quick start"):
# a persistent private PostgreSQL 15 cluster in .local/pg, a generated admin password in
# .local/admin-password, the portal's data directory in .local/data, and the portal itself in
# Development mode at http://127.0.0.1:${TAU_DEV_PORT:-8080}. Ctrl-C stops the portal and the
# cluster; the data stays for the next run (delete .local/ to start over).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/pg.sh
source scripts/lib/pg.sh

LOCAL=$ROOT/.local
PG_BASE=$LOCAL/pg
PORTAL_PORT=${TAU_DEV_PORT:-8080}
ADMIN_EMAIL=admin@example.com
DATABASE=power_monitoring

ensure_system_packages postgres

mkdir -p "$LOCAL/data"
chmod 755 "$LOCAL"
pg_cluster_init "$PG_BASE"
if pg_cluster_is_running "$PG_BASE"; then
    PG_PORT=$(pg_cluster_port "$PG_BASE")
else
    PG_PORT=${TAU_DEV_PG_PORT:-54329}
    if ! tau_port_is_free "$PG_PORT"; then
        PG_PORT=$(tau_free_port)
        echo "Port ${TAU_DEV_PG_PORT:-54329} is taken; the local PostgreSQL uses $PG_PORT instead."
    fi
    pg_cluster_start "$PG_BASE" "$PG_PORT"
fi
if [[ -z $(pg_psql "$PG_BASE" "$PG_PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") ]]; then
    pg_psql "$PG_BASE" "$PG_PORT" -d postgres -qc "CREATE DATABASE $DATABASE"
fi

# One password for the life of .local/, readable by the owner only.
if [[ ! -s $LOCAL/admin-password ]]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$LOCAL/admin-password")
fi

cargo build --locked --bin tau-portal
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/tau-portal

cat <<BANNER

  Tau Acuvim Portal is starting at  http://127.0.0.1:${PORTAL_PORT}
  Sign in as                        ${ADMIN_EMAIL}
  Password                          $(cat "$LOCAL/admin-password")
  Database                          postgres://postgres@127.0.0.1:${PG_PORT}/${DATABASE}
  Stop with Ctrl-C (stops the portal and the local PostgreSQL).

BANNER

PORTAL_PID=
stop() {
    if [[ -n $PORTAL_PID ]]; then
        kill -TERM "$PORTAL_PID" 2>/dev/null || true
        wait "$PORTAL_PID" 2>/dev/null || true
    fi
    pg_cluster_stop "$PG_BASE" fast || true
}
trap stop EXIT
trap 'exit 130' INT TERM

Application__Environment=Development \
Application__ListenAddress=127.0.0.1:${PORTAL_PORT} \
Application__PublicUrl=http://127.0.0.1:${PORTAL_PORT} \
Application__DataDirectory=$LOCAL/data \
Database__ConnectionString="Host=127.0.0.1;Port=${PG_PORT};Database=${DATABASE};Username=postgres" \
Authentication__DefaultAdminEmail=$ADMIN_EMAIL \
Authentication__DefaultAdminPassword_FILE=$LOCAL/admin-password \
    "$BIN" serve &
PORTAL_PID=$!
wait "$PORTAL_PID"
