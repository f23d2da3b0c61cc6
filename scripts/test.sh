#!/usr/bin/env bash
# The project's one test command (README "Quick start"; .ci/run calls exactly this).
#
# On a fresh machine it installs what is missing, starts a private throwaway PostgreSQL 15
# cluster and, when ../shared/tools/timescale-pglite exists, a real TimescaleDB; then runs
# rustfmt, clippy and the tests; and stops both servers whatever happens. Extra arguments go to
# the test runner (e.g. `scripts/test.sh startup::`).
#
# Environment: CARGO_TARGET_DIR (default target/), TAU_SKIP_TIMESCALE=1 to skip the
# TimescaleDB leg on purpose, TAU_TEST_THREADS (default 4).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/pg.sh
source scripts/lib/pg.sh

phase() { printf '\n==> %s\n' "$*"; }

ensure_system_packages postgres node
ensure_rust_components

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-test.XXXXXX")
chmod 755 "$WORK"
PG_BASE=$WORK/pg
PGLITE_PID=
status=0

cleanup() {
    local rc=$?
    [[ $status -ne 0 ]] || status=$rc
    if [[ -n $PGLITE_PID ]]; then
        kill "$PGLITE_PID" 2>/dev/null || true
        wait "$PGLITE_PID" 2>/dev/null || true
    fi
    pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1 || true
    if [[ $status -ne 0 && -f $PG_BASE/postgres.log ]]; then
        echo "--- last lines of the PostgreSQL log ($status) ---"
        tail -n 20 "$PG_BASE/postgres.log" || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

phase "PostgreSQL 15 (private cluster)"
pg_cluster_init "$PG_BASE"
pg_cluster_start_on_free_port "$PG_BASE" -c max_connections=300 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c shared_buffers=128MB
export DATABASE_URL="postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/postgres"
TAU_TEST_PG_BINDIR=$(tau_pg_bindir)
export TAU_TEST_PG_BINDIR
echo "listening on 127.0.0.1:${PG_CLUSTER_PORT}"

phase "TimescaleDB (timescale-pglite)"
PGLITE_SRC=$ROOT/../shared/tools/timescale-pglite
if [[ ${TAU_SKIP_TIMESCALE:-} == 1 ]]; then
    echo "SKIPPED: TimescaleDB leg (TAU_SKIP_TIMESCALE=1)"
elif [[ ! -d $PGLITE_SRC ]]; then
    echo "SKIPPED: TimescaleDB leg ($PGLITE_SRC does not exist)"
else
    # The shared folder is read-only: install into the build cache, once per package.json.
    PGLITE_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/timescale-pglite
    mkdir -p "$PGLITE_DIR"
    if ! cmp -s "$PGLITE_SRC/package.json" "$PGLITE_DIR/package.json" || [[ ! -d $PGLITE_DIR/node_modules ]]; then
        cp "$PGLITE_SRC/package.json" "$PGLITE_DIR/"
        (cd "$PGLITE_DIR" && npm install --no-audit --no-fund --loglevel=error)
    fi
    cp "$PGLITE_SRC/server.mjs" "$PGLITE_DIR/"
    PGLITE_PORT=$(tau_free_port)
    PGLITE_PORT=$PGLITE_PORT node "$PGLITE_DIR/server.mjs" >"$WORK/pglite.log" 2>&1 &
    PGLITE_PID=$!
    deadline=$((SECONDS + 60))
    until grep -q "listening on" "$WORK/pglite.log" 2>/dev/null; do
        if ! kill -0 "$PGLITE_PID" 2>/dev/null || ((SECONDS > deadline)); then
            echo "error: the TimescaleDB test server did not start:" >&2
            cat "$WORK/pglite.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    export TAU_TEST_TIMESCALE_URL="postgres://postgres:x@127.0.0.1:${PGLITE_PORT}/postgres?sslmode=disable"
    echo "listening on 127.0.0.1:${PGLITE_PORT}"
fi

phase "fmt"
cargo fmt --all --check

phase "clippy"
cargo clippy --all-targets --locked -- -D warnings

phase "tests"
threads=${TAU_TEST_THREADS:-4}
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast --test-threads "$threads" "$@"
else
    cargo test --locked -- --test-threads "$threads" "$@"
fi
