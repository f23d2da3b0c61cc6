#!/usr/bin/env bash
# Benchmark of a site's bill (issue 7, "Benchmark"; target: under 100 ms): one site with 100
# devices and one month (June 2026, Africa/Johannesburg) of 15-minute energy intervals
# (100 x 2 880 = 288 000 rows of monitoring."EnergyIntervals", inserted with generate_series),
# the Homeflex-structured TOU tariff (tests/fixtures/tariffs/homeflex-illustrative.json: TOU,
# fixed, kVA demand, export, VAT) assigned to the site.
#
# In one run, everything on 127.0.0.1: builds the portal and examples/bench_bill.rs in release
# mode, starts a throwaway PostgreSQL cluster (the fast settings of scripts/test.sh), migrates it
# (tau-portal migrate), inserts the data with psql, then runs bench_bill, which times on one
# connection pool, first the site rollup's refresh of the whole month (what the rollup job does
# in the background: the devices' rows summed per interval into monitoring."SiteEnergyIntervals"),
# then, after a warm-up, BENCH_RUNS times each:
#   bill   what the Cost tab does: load the site's tariff history, device count and its 2 880
#          site intervals, then the cost engine
#   SUM    the baseline: a plain SELECT sum("ImportWh") over the same rows
# and prints the medians and their ratio. The rows' energy must equal the bill's (a check line).
#
# It is a measurement, not a test: it exits 0 when the target is missed (and says so on a
# `TARGET MISSED` line), and non-zero only when the benchmark itself failed.
#
# Environment: BENCH_RUNS (default 20), BENCH_SKIP_BUILD=1 to use the existing release binaries,
# CARGO_TARGET_DIR (default target/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

RUNS=${BENCH_RUNS:-20}
DEVICES=100
TARGET_MS=100

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive whole number, got '$RUNS'"

phase "tools"
ensure_system_packages postgres

bench_release_build --example bench_bill
BENCH=$TARGET_DIR/release/examples/bench_bill
[[ -x $BENCH ]] || die "$BENCH does not exist; run without BENCH_SKIP_BUILD=1"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-bench-bill.XXXXXX")
chmod 711 "$WORK" # the postgres user must reach the cluster directory below it
PG_BASE=$WORK/pg
status=0
cleanup() {
    local rc=$?
    [[ $status -ne 0 ]] || status=$rc
    set +e
    pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1
    if [[ $status -ne 0 ]]; then
        bench_show_logs "$WORK/migrate.log" "$PG_BASE/postgres.log"
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

psql_db() { pg_psql "$PG_BASE" "$PG_CLUSTER_PORT" -d postgres "$@"; }

phase "PostgreSQL 15 (throwaway cluster)"
pg_cluster_init "$PG_BASE"
pg_cluster_start_on_free_port "$PG_BASE" -c fsync=off -c synchronous_commit=off -c full_page_writes=off
DATABASE_URL="postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/postgres"
export DATABASE_URL

phase "schema (tau-portal migrate), site, $DEVICES devices, one month of 15-minute intervals, tariff"
mkdir -p "$WORK/data"
timeout -k 5 120 env Application__Environment=Development Application__DataDirectory="$WORK/data" \
    Application__MetricsAddress=off DATABASE_URL="$DATABASE_URL" RUST_LOG=warn "$BIN" migrate </dev/null \
    >"$WORK/migrate.log" 2>&1 || die "tau-portal migrate failed"
cp tests/fixtures/tariffs/homeflex-illustrative.json "$WORK/tariff.json"
chmod 644 "$WORK/tariff.json"
psql_db -q -v devices="$DEVICES" -v tariff="$(tr -d '\n' <"$WORK/tariff.json")" <<'SQL'
BEGIN;
INSERT INTO monitoring."Sites" ("Name", "TimeZone", "Notes")
VALUES ('Bench site', 'Africa/Johannesburg', 'scripts/bench-bill.sh');
INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
SELECT s."Id", format('bench-%s', lpad(n::text, 3, '0')), format('Bench meter %s', n), 'generic', 'push'
FROM monitoring."Sites" s, generate_series(0, :devices - 1) n;
-- A daily load shape per device: base + daytime hump, some export at noon on weekends.
INSERT INTO monitoring."EnergyIntervals"
    ("DeviceId", "Start", "ImportWh", "ExportWh", "ApparentVAh", "MaxW", "MaxVA", "Samples")
SELECT d."Id", t, w, x, w / 0.9, w * 4.4, w * 4.9, 15
FROM monitoring."Devices" d,
     generate_series('2026-06-01 00:00+02'::timestamptz, '2026-06-30 23:45+02', '15 minutes') t,
     LATERAL (SELECT extract(hour FROM t AT TIME ZONE 'Africa/Johannesburg') AS h,
                     extract(isodow FROM t AT TIME ZONE 'Africa/Johannesburg') AS dow) l,
     LATERAL (SELECT round((500 + (d."Id" % 7) * 40 + 900 * greatest(0, sin(pi() * (l.h - 6) / 14)))::numeric, 1)::float8 AS w,
                     CASE WHEN l.dow >= 6 AND l.h BETWEEN 11 AND 13 THEN 150.0 ELSE 0 END AS x) e;
-- Written by SQL, not by the rollup's writers: queue the site's sums as those do.
INSERT INTO monitoring."SiteEnergyStale" ("SiteId", "From") SELECT "Id", '-infinity' FROM monitoring."Sites";
INSERT INTO portal."Municipalities" ("Name", "Country", "Currency", "VatPercent", "Holidays")
VALUES ('Eskom Direct', 'South Africa', 'ZAR', 15, '{2026-06-16}');
INSERT INTO portal."Tariffs" ("MunicipalityId", "Name", "Definition")
SELECT m."Id", :'tariff'::jsonb ->> 'name', :'tariff'::jsonb FROM portal."Municipalities" m;
INSERT INTO portal."SiteTariffs" ("SiteId", "EffectiveFrom", "TariffId")
SELECT s."Id", '2026-04-01', t."Id" FROM monitoring."Sites" s, portal."Tariffs" t;
COMMIT;
VACUUM ANALYZE;
SQL
ROWS=$(psql_db -At -c 'SELECT count(*) FROM monitoring."EnergyIntervals"')
SITE=$(psql_db -At -c 'SELECT "Id" FROM monitoring."Sites"')
echo "$ROWS interval rows for $DEVICES devices"

phase "bill vs SUM, $RUNS runs each after a warm-up"
OUT=$("$BENCH" "$SITE" 2026-06 "$RUNS")
echo "$OUT"
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$OUT"; }
BILL=$(field bill_ms_median)
[[ -n $BILL ]] || die "bench_bill printed no timing"

phase "summary"
printf '  %s, %s CPUs, %s rows (%s devices x 2 880 intervals), all on 127.0.0.1\n' \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$(nproc)" "$ROWS" "$DEVICES"
printf '  %-40s %8s ms (median of %s)\n' "bill (load + engine)" "$BILL" "$RUNS"
printf '  %-40s %8s ms\n' "  of which the engine" "$(field engine_ms_median)"
printf '  %-40s %8s ms\n' "baseline: SELECT sum(ImportWh)" "$(field sum_ms_median)"
printf '  %-40s %8s\n' "ratio bill/SUM" "$(field ratio)"
printf '  %-40s %8s ms (the rollup job does this in the background)\n' "site rollup refresh, whole month" "$(field refresh_ms)"
if awk -v b="$BILL" -v t="$TARGET_MS" 'BEGIN { exit !(b < t) }'; then
    echo "TARGET MET: bill $BILL ms < $TARGET_MS ms"
else
    echo "TARGET MISSED: bill $BILL ms >= $TARGET_MS ms"
fi
