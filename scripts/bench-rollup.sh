#!/usr/bin/env bash
# Benchmark of the energy rollup rebuild (issue 7, "Benchmark"; target: >= 1 million readings/s).
#
# In one run, on 127.0.0.1: builds the portal in release mode, starts a throwaway PostgreSQL
# cluster (scripts/lib/pg.sh, the fast settings of scripts/test.sh), migrates it, creates one site
# and BENCH_DEVICES devices (default 100), and generates BENCH_DAYS days (default 30) of 1-minute
# readings per device with generate_series (import/export, reactive import/export and VAh
# counters, PTotal, STotal; one device's import counter wraps, one is reset). Then, twice each, alternately:
#   copy     psql: COPY (SELECT <the 9 columns a rebuild reads>) TO STDOUT (FORMAT binary) into
#            /dev/null: what reading the rows out of PostgreSQL costs at all, the baseline
#   rebuild  tau-portal rollup --from <first day>: every device's 15-minute intervals from scratch
#            (intervals and watermarks emptied first), which reads the same rows and also
#            computes and writes the intervals
# and prints readings/s of the best rebuild, the best copy, and the ratio, so the figure means
# something on any machine. A measurement, not a test: it exits 0 when the target is missed.
#
# BENCH_ORDER chooses the physical order the same readings are stored in: arrival (all meters of
# a minute together, as the poller writes them; the default), by-device (each device's readings
# together, as a per-device bulk load, a backfill or a parallel load per device leaves them), or
# shuffled (uniformly random: the worst case).
#
# Environment: BENCH_DEVICES, BENCH_DAYS, BENCH_ORDER (arrival | by-device | shuffled), BENCH_SKIP_BUILD=1
# (use target/release/tau-portal as is), CARGO_TARGET_DIR (default target/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

DEVICES=${BENCH_DEVICES:-100}
DAYS=${BENCH_DAYS:-30}
ORDER=${BENCH_ORDER:-arrival}
RUNS=2
TARGET=1000000

[[ $DEVICES =~ ^[1-9][0-9]*$ ]] || die "BENCH_DEVICES must be a positive whole number, got '$DEVICES'"
[[ $DAYS =~ ^[1-9][0-9]*$ ]] || die "BENCH_DAYS must be a positive whole number, got '$DAYS'"
# The readings end a day before today: a rebuild rolls up to the present, so readings stamped in
# the future (a fixed start date plus BENCH_DAYS=365) would be left out of it.
START=$(date -u -d "today - $((DAYS + 1)) days" +%F)
case $ORDER in
    arrival) ORDER_BY='m, d."Id"' ;;
    by-device) ORDER_BY='d."Id", m' ;;
    shuffled) ORDER_BY='random()' ;;
    *) die "BENCH_ORDER must be arrival, by-device or shuffled, got '$ORDER'" ;;
esac

phase "tools"
ensure_system_packages postgres

bench_release_build

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-bench-rollup.XXXXXX")
chmod 711 "$WORK"
PG_BASE=$WORK/pg
cleanup() {
    local rc=$?
    set +e
    pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1
    if [[ $rc -ne 0 && -s $WORK/rollup.log ]]; then tail -n 20 "$WORK/rollup.log" >&2; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

phase "PostgreSQL (throwaway cluster)"
pg_cluster_init "$PG_BASE"
pg_cluster_start_on_free_port "$PG_BASE" -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c shared_buffers=512MB -c work_mem=64MB
psql_db() { pg_psql "$PG_BASE" "$PG_CLUSTER_PORT" -d postgres "$@"; }
ENV=(
    Application__Environment=Development
    Application__DataDirectory="$WORK"
    DATABASE_URL="postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/postgres"
    Authentication__DefaultAdminPassword=bench-only-not-a-secret
    RUST_LOG=info
)
timeout -k 5 120 env "${ENV[@]}" "$BIN" migrate </dev/null >"$WORK/migrate.log" 2>&1 || die "tau-portal migrate failed"

phase "generate $DAYS days of 1-minute readings for $DEVICES devices, stored in $ORDER order"
psql_db -q -v devices="$DEVICES" -v days="$DAYS" -v start="$START" -v order_by="$ORDER_BY" <<'SQL'
INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ('Bench site', 'UTC');
INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
SELECT 1, format('bench-%s', lpad(n::text, 3, '0')), format('Bench meter %s', n), 'generic', 'push'
FROM generate_series(0, :devices - 1) n;
-- Load in W: a daily hump per device; counters are the running sum of load/60 Wh (closed form).
INSERT INTO monitoring."PowerMeasurements"
    ("DeviceId", "Time", "PTotal", "STotal", "EnergyImportWh", "EnergyExportWh", "ReactiveImportVarh",
     "ReactiveExportVarh", "ApparentVAh")
SELECT d."Id", t,
       1000 * (d."Id" % 7 + 1) * (1.2 + sin(m / 229.0)),
       1100 * (d."Id" % 7 + 1) * (1.2 + sin(m / 229.0)),
       CASE WHEN d."Id" = 1 THEN mod((99999000000 + 1000 * (d."Id" % 7 + 1) * (1.2 * m - 229 * cos(m / 229.0) + 229) / 60)::numeric, 100000000000)::float8
            WHEN d."Id" = 2 AND m >= 20000 THEN 1000 * (d."Id" % 7 + 1) * (1.2 * (m - 20000)) / 60
            ELSE 5e6 * d."Id" + 1000 * (d."Id" % 7 + 1) * (1.2 * m - 229 * cos(m / 229.0) + 229) / 60 END,
       0,
       400 * (d."Id" % 7 + 1) * (1.2 * m - 229 * cos(m / 229.0) + 229) / 60,
       0,
       1100 * (d."Id" % 7 + 1) * (1.2 * m - 229 * cos(m / 229.0) + 229) / 60
FROM monitoring."Devices" d,
     generate_series(0, :days * 1440 - 1) m,
     LATERAL (SELECT timestamptz :'start' + m * interval '1 minute' AS t) x
ORDER BY :order_by;
VACUUM ANALYZE monitoring."PowerMeasurements";
CHECKPOINT;
SQL
ROWS=$(psql_db -At -c 'SELECT count(*) FROM monitoring."PowerMeasurements"')
echo "$ROWS readings"

now() { date +%s.%N; }
best_copy=
best_rebuild=
COPY_SQL='COPY (SELECT "DeviceId", "Time", "EnergyImportWh", "EnergyExportWh", "ReactiveImportVarh",
                       "ReactiveExportVarh", "ApparentVAh", "PTotal", "STotal"
                FROM monitoring."PowerMeasurements") TO STDOUT (FORMAT binary)'
for ((run = 1; run <= RUNS; run++)); do
    t0=$(now)
    psql_db -c "$COPY_SQL" >/dev/null
    s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
    printf '  copy    run %d: %7.3f s %10.0f readings/s\n' "$run" "$s" "$(awk -v n="$ROWS" -v s="$s" 'BEGIN { print n / s }')"
    if [[ -z $best_copy ]] || awk -v a="$s" -v b="$best_copy" 'BEGIN { exit !(a < b) }'; then best_copy=$s; fi

    psql_db -q -c 'TRUNCATE monitoring."EnergyIntervals", monitoring."EnergyWatermarks"' -c CHECKPOINT
    t0=$(now)
    env "${ENV[@]}" "$BIN" rollup --from "$START" </dev/null >"$WORK/rollup.log" 2>&1 || die "tau-portal rollup failed"
    s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
    read_rows=$(grep 'Rebuilt the energy intervals' "$WORK/rollup.log" | sed -n 's/.*"readings":\([0-9]*\).*/\1/p' | tail -1)
    [[ $read_rows == "$ROWS" ]] || die "the rollup read ${read_rows:-?} readings, expected $ROWS"
    printf '  rebuild run %d: %7.3f s %10.0f readings/s (whole process: connect, migrate check, rollup)\n' \
        "$run" "$s" "$(awk -v n="$ROWS" -v s="$s" 'BEGIN { print n / s }')"
    if [[ -z $best_rebuild ]] || awk -v a="$s" -v b="$best_rebuild" 'BEGIN { exit !(a < b) }'; then best_rebuild=$s; fi
done
INTERVALS=$(psql_db -At -c 'SELECT count(*) FROM monitoring."EnergyIntervals"')
RESETS=$(psql_db -At -c 'SELECT count(*) FROM monitoring."EnergyIntervals" WHERE "CounterReset"')

phase "summary"
printf '  %s, %s CPUs, %s devices x %s days of 1-minute readings = %s readings (%s order) -> %s intervals (%s flagged reset)\n' \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$(nproc)" "$DEVICES" "$DAYS" \
    "$ROWS" "$ORDER" "$INTERVALS" "$RESETS"
REBUILD_RATE=$(awk -v n="$ROWS" -v s="$best_rebuild" 'BEGIN { printf "%.0f", n / s }')
COPY_RATE=$(awk -v n="$ROWS" -v s="$best_copy" 'BEGIN { printf "%.0f", n / s }')
printf '  %-40s %12s readings/s (best of %d)\n' "copy (psql binary COPY of the columns)" "$COPY_RATE" "$RUNS"
printf '  %-40s %12s readings/s (best of %d)\n' "rebuild (tau-portal rollup)" "$REBUILD_RATE" "$RUNS"
printf '  %-40s %12s\n' "ratio rebuild/copy" "$(awk -v a="$REBUILD_RATE" -v b="$COPY_RATE" 'BEGIN { printf "%.2f", a / b }')"
if ((REBUILD_RATE >= TARGET)); then
    echo "TARGET MET: $REBUILD_RATE readings/s >= $TARGET"
else
    echo "TARGET MISSED: $REBUILD_RATE readings/s < $TARGET"
fi
