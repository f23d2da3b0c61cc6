#!/usr/bin/env bash
# Benchmark of the dashboards (issue 15, "Benchmark") under real load (issue 21, item 2): the
# pages are measured while the rollup job runs and live readings arrive, not on an idle database.
#
# In one run, everything on 127.0.0.1: installs what is missing (PostgreSQL 15, wrk, curl),
# builds the portal in release mode, starts a throwaway PostgreSQL cluster, migrates it, and
# generates in SQL two sites (Africa/Johannesburg, the Homeflex-structured TOU tariff of
# tests/fixtures/tariffs assigned to both):
#   Year site   BENCH_YEAR_DEVICES (10) devices x BENCH_YEAR_DAYS (365) days of 1-minute readings
#   Fleet site  BENCH_FLEET_DEVICES (100) devices x BENCH_FLEET_DAYS (30) days
# (100 devices x a year would be 52.6 M readings, ~12 GB: more than this 2-core machine builds in
# a benchmark run; set the variables for it). The readings end a minute ago, stored in arrival
# order (all meters of a minute together, as the poller writes them), with 14 quantities whose
# counters are the exact integral of the power. Then the derived data is built the way a portal
# builds it: `tau-portal rollup --from` (the energy intervals and site sums) and the hourly chart
# rollup by the portal's own job (every device marked stale from its first reading, as the
# HourlyReadings migration marks existing history), waited for until no device is left.
#
# Then, with the portal (release, Development, RUST_LOG=info, the default pool of 10) serving:
#   live readings  a bounded background loop POSTs one reading of every device per second through
#                  POST /api/ingest (the write path: late-reading notes, hourly marks), counters
#                  continuing the generated ones
#   rollup job     the portal's own, on its normal schedule (every 60 s: each device's intervals
#                  rewritten in its own transaction, then the site sums refreshed); every window
#                  is BENCH_SECONDS (60) long so that it holds at least one whole run, and the
#                  summary says how many runs each window saw (from the portal's /metrics)
# each target is loaded by wrk (BENCH_CONNECTIONS (2) connections, one thread, the session
# cookie, a Lua script for p50/p95/p99 and for counting answers other than 200) for one window:
#   the Overview and its two live updates, the site page of both sites (and the Fleet site's with
#   its devices compared over 7 days), the Cost tab, the device page (HTML) and its chart data
#   (JSON) at 24 h / 30 d / 1 y of a year device
# and the CSV export of a year of one device is timed (rows/s) against psql's COPY of the same
# rows to CSV. PostgreSQL logs every statement slower than BENCH_SLOW_MS (100) and every lock
# wait longer than 100 ms; the summary lists what happened during the measurements, so a missed
# target names its statement. Targets: every page p95 <= 100 ms, the one-year chart <= 100 ms.
#
# A measurement, not a test: it exits 0 when a target is missed (and prints NOT MET), non-zero
# only when the benchmark itself failed (a page not answering 200, a refused batch of readings).
# The machine's load average is printed with each window: on a shared machine it is part of the
# conditions.
#
# Environment: BENCH_YEAR_DEVICES, BENCH_YEAR_DAYS, BENCH_FLEET_DEVICES, BENCH_FLEET_DAYS,
# BENCH_SECONDS (per target), BENCH_CONNECTIONS, BENCH_SLOW_MS, BENCH_LIVE=0 (no live readings:
# the idle baseline), BENCH_KEEP=1 (leave the cluster running and its directory in place for
# EXPLAIN ANALYZE; the script prints how to connect), BENCH_SKIP_BUILD=1 (use
# target/release/tau-portal as is), CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

YEAR_DEVICES=${BENCH_YEAR_DEVICES:-10}
YEAR_DAYS=${BENCH_YEAR_DAYS:-365}
FLEET_DEVICES=${BENCH_FLEET_DEVICES:-100}
FLEET_DAYS=${BENCH_FLEET_DAYS:-30}
WINDOW=${BENCH_SECONDS:-60}
CONNECTIONS=${BENCH_CONNECTIONS:-2}
SLOW_MS=${BENCH_SLOW_MS:-100}
LIVE=${BENCH_LIVE:-1}
KEEP=${BENCH_KEEP:-0}
TARGET_MS=100
TIME_ZONE=Africa/Johannesburg
ADMIN_EMAIL=bench@example.com
HOURLY_TIMEOUT=1800

for v in YEAR_DEVICES YEAR_DAYS FLEET_DEVICES FLEET_DAYS WINDOW CONNECTIONS SLOW_MS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive whole number, got '${!v}'"
done
((YEAR_DAYS >= FLEET_DAYS)) || die "BENCH_YEAR_DAYS ($YEAR_DAYS) must be at least BENCH_FLEET_DAYS ($FLEET_DAYS)"
[[ $LIVE == 0 || $LIVE == 1 ]] || die "BENCH_LIVE must be 0 or 1, got '$LIVE'"

phase "tools"
ensure_system_packages postgres
ensure_apt_packages wrk:wrk curl:curl
echo "wrk: $(wrk -v 2>&1 | head -n 1 || true)"
CPUS=$(nproc)
bench_release_build

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-bench-pages.XXXXXX")
chmod 711 "$WORK" # the postgres user must reach the cluster directory below it
PG_BASE=$WORK/pg
PORTAL_PID=
LIVE_PID=
status=0
cleanup() {
    local rc=$?
    [[ $status -ne 0 ]] || status=$rc
    set +e
    touch "$WORK/live.stop"
    if [[ -n $LIVE_PID ]]; then stop_process "$LIVE_PID"; fi
    if [[ -n $PORTAL_PID ]]; then stop_process "$PORTAL_PID"; fi
    if [[ $status -ne 0 ]]; then
        bench_show_logs "$WORK/migrate.log" "$WORK/rollup.log" "$WORK/portal.log" "$WORK/live.log" "$PG_BASE/postgres.log"
    fi
    if [[ $KEEP == 1 ]]; then
        echo "BENCH_KEEP=1: PostgreSQL still runs; connect with:"
        echo "  $(tau_pg_bindir)/psql -h $PG_BASE -p ${PG_CLUSTER_PORT:-?} -U postgres postgres"
        echo "  stop it with: $(tau_pg_bindir)/pg_ctl -D $PG_BASE/data stop (as the cluster's owner), then rm -rf $WORK"
    else
        pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

phase "PostgreSQL 15 (throwaway cluster)"
pg_cluster_init "$PG_BASE"
# The fast settings of the other benchmarks, and a log of what is slow or waits on a lock.
pg_cluster_start_on_free_port "$PG_BASE" -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c shared_buffers=512MB -c log_min_duration_statement="$SLOW_MS" -c log_lock_waits=on -c deadlock_timeout=100ms
psql_db() { pg_psql "$PG_BASE" "$PG_CLUSTER_PORT" -d postgres "$@"; }
ADMIN_PASSWORD=$(bench_password)
PORTAL_PORT=$(tau_free_port)
METRICS_PORT=$(tau_free_port)
PORTAL=http://127.0.0.1:$PORTAL_PORT
mkdir -p "$WORK/data"
PORTAL_ENV=(
    Application__Environment=Development
    Application__ListenAddress="127.0.0.1:$PORTAL_PORT"
    Application__MetricsAddress="127.0.0.1:$METRICS_PORT"
    Application__DataDirectory="$WORK/data"
    DATABASE_URL="postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/postgres"
    Authentication__DefaultAdminEmail="$ADMIN_EMAIL"
    Authentication__DefaultAdminPassword="$ADMIN_PASSWORD"
    RUST_LOG=info
)
timeout -k 5 120 env "${PORTAL_ENV[@]}" "$BIN" migrate </dev/null >"$WORK/migrate.log" 2>&1 || die "tau-portal migrate failed"

# The readings end at the last whole minute; each site's start is that many days before.
END_EPOCH=$(($(date +%s) / 60 * 60))
START_DATE=$(date -u -d "@$((END_EPOCH - YEAR_DAYS * 86400))" +%Y-%m-%d)
phase "generate: Year site $YEAR_DEVICES x $YEAR_DAYS days, Fleet site $FLEET_DEVICES x $FLEET_DAYS days of 1-minute readings"
API_KEY=$(bench_token tau_)
cp tests/fixtures/tariffs/homeflex-illustrative.json "$WORK/tariff.json"
chmod 644 "$WORK/tariff.json"
t0=$SECONDS
psql_db -q -v year_devices="$YEAR_DEVICES" -v year_days="$YEAR_DAYS" -v fleet_devices="$FLEET_DEVICES" \
    -v fleet_days="$FLEET_DAYS" -v end_epoch="$END_EPOCH" -v tz="$TIME_ZONE" \
    -v tariff="$(tr -d '\n' <"$WORK/tariff.json")" -v key_prefix="${API_KEY:0:12}" \
    -v key_hash="$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)" <<'SQL'
BEGIN;
INSERT INTO monitoring."Sites" ("Name", "TimeZone", "Notes") VALUES
    ('Year site', :'tz', 'scripts/bench-pages.sh'), ('Fleet site', :'tz', 'scripts/bench-pages.sh');
INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
SELECT s."Id", format('%s-%s', k.prefix, lpad(n::text, 3, '0')), format('%s meter %s', k.label, n), 'generic', 'push'
FROM (VALUES ('Year site', 'year', 'Year', :year_devices), ('Fleet site', 'fleet', 'Fleet', :fleet_devices))
         AS k(site, prefix, label, devices)
JOIN monitoring."Sites" s ON s."Name" = k.site
CROSS JOIN LATERAL generate_series(0, k.devices - 1) n
ORDER BY s."Id", n;
INSERT INTO portal."Municipalities" ("Name", "Country", "Currency", "VatPercent", "Holidays")
VALUES ('Eskom Direct', 'South Africa', 'ZAR', 15, '{2026-06-16,2026-12-16,2026-12-25,2026-12-26}');
INSERT INTO portal."Tariffs" ("MunicipalityId", "Name", "Definition")
SELECT m."Id", :'tariff'::jsonb ->> 'name', :'tariff'::jsonb FROM portal."Municipalities" m;
INSERT INTO portal."SiteTariffs" ("SiteId", "EffectiveFrom", "TariffId")
SELECT s."Id", '2026-04-01', t."Id" FROM monitoring."Sites" s, portal."Tariffs" t;
INSERT INTO identity."ApiKeys" ("Name", "Prefix", "KeyHash", "CreatedBy")
VALUES ('bench-pages', :'key_prefix', decode(:'key_hash', 'hex'), 'scripts/bench-pages.sh');
-- m: minutes since the device's site started. Load in W: a slow hump per device; the import
-- counter is the exact running integral of it in Wh (closed form), apparent energy 1.1 times
-- that; the live loop below continues the same functions.
CREATE TEMP TABLE bench_devices AS
SELECT d."Id" AS id, 1000.0 * (d."Id" % 7 + 1) AS peak,
       ((:year_days - CASE WHEN d."ExternalId" LIKE 'year-%' THEN :year_days ELSE :fleet_days END) * 1440) AS offset_minutes
FROM monitoring."Devices" d;
-- A day of all devices at a time, in time order: the physical order the poller leaves. (psql
-- does not expand variables inside the function body: they reach it as settings.)
SET LOCAL bench.days = :'year_days';
SET LOCAL bench.end_epoch = :'end_epoch';
DO $$
DECLARE
    n_days int := current_setting('bench.days')::int;
    t0 timestamptz := to_timestamp(current_setting('bench.end_epoch')::bigint) - make_interval(days => n_days);
BEGIN
    FOR k IN 0 .. n_days - 1 LOOP
        INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "Frequency", "V1", "V2", "V3",
            "I1", "I2", "I3", "PTotal", "QTotal", "STotal", "PFTotal", "EnergyImportWh", "EnergyExportWh", "ApparentVAh")
        SELECT d.id, t0 + g * interval '1 minute',
               50 + 0.03 * sin(m / 11.0), 230 + 2 * sin(m / 37.0), 230 + 2 * sin(m / 37.0 + 2.1), 230 + 2 * sin(m / 37.0 + 4.2),
               w / 690, w / 690 * 1.02, w / 690 * 0.98, w, 0.45 * w, 1.1 * w, 1 / 1.1,
               5e6 * d.id + e, 0, 6e6 * d.id + 1.1 * e
        FROM generate_series(k * 1440, k * 1440 + 1439) g
        CROSS JOIN bench_devices d
        CROSS JOIN LATERAL (SELECT g - d.offset_minutes AS m) mm
        CROSS JOIN LATERAL (SELECT d.peak * (1.2 + sin(m / 229.0)) AS w,
                                   d.peak * (1.2 * m - 229 * cos(m / 229.0) + 229) / 60 AS e) v
        WHERE m >= 0
        ORDER BY g, d.id;
    END LOOP;
END
$$;
COMMIT;
SQL
ROWS=$(psql_db -At -c 'SELECT count(*) FROM monitoring."PowerMeasurements"')
echo "$ROWS readings in $((SECONDS - t0)) s, $(psql_db -At -c "SELECT pg_size_pretty(pg_total_relation_size('monitoring.\"PowerMeasurements\"'))")"
read -r YEAR_SITE FLEET_SITE < <(psql_db -At -F' ' -c \
    "SELECT (SELECT \"Id\" FROM monitoring.\"Sites\" WHERE \"Name\" = 'Year site'), (SELECT \"Id\" FROM monitoring.\"Sites\" WHERE \"Name\" = 'Fleet site')")
YEAR_DEVICE=$(psql_db -At -c "SELECT \"Id\" FROM monitoring.\"Devices\" WHERE \"ExternalId\" = 'year-000'")
# externalId, site start (epoch), peak W, device id: what the live loop continues from.
psql_db -At -F' ' -v end_epoch="$END_EPOCH" -v year_days="$YEAR_DAYS" -v fleet_days="$FLEET_DAYS" >"$WORK/devices.txt" <<'SQL'
SELECT "ExternalId", :end_epoch - 86400 * CASE WHEN "ExternalId" LIKE 'year-%' THEN :year_days ELSE :fleet_days END,
       1000 * ("Id" % 7 + 1), "Id"
FROM monitoring."Devices" ORDER BY "Id";
SQL
DEVICES=$(wc -l <"$WORK/devices.txt")

phase "derived data: tau-portal rollup --from $START_DATE (energy intervals, site sums)"
t0=$SECONDS
timeout -k 5 3600 env "${PORTAL_ENV[@]}" "$BIN" rollup --from "$START_DATE" </dev/null >"$WORK/rollup.log" 2>&1 ||
    die "tau-portal rollup failed"
echo "$(psql_db -At -c 'SELECT count(*) FROM monitoring."EnergyIntervals"') device intervals in $((SECONDS - t0)) s"
# Stored by SQL, not by the write path: mark every device for the hourly job as the
# HourlyReadings migration marks the history it finds.
psql_db -q -c 'INSERT INTO monitoring."HourlyStale" ("DeviceId", "From")
               SELECT "DeviceId", min("Time") FROM monitoring."PowerMeasurements" GROUP BY 1
               ON CONFLICT ("DeviceId") DO UPDATE SET "From" = EXCLUDED."From"'

phase "portal (release, Development, RUST_LOG=info) and its hourly job's catch-up"
env "${PORTAL_ENV[@]}" "$BIN" serve </dev/null >"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!
bench_wait_http "$PORTAL/health/ready" "$PORTAL_PID" "the portal" 120
t0=$SECONDS
until [[ $(psql_db -At -c 'SELECT count(*) FROM monitoring."HourlyStale"') == 0 ]]; do
    kill -0 "$PORTAL_PID" 2>/dev/null || die "the portal exited during the hourly catch-up"
    ((SECONDS - t0 < HOURLY_TIMEOUT)) || die "the hourly rollup did not catch up within $HOURLY_TIMEOUT s"
    sleep 1
done
echo "$(psql_db -At -c 'SELECT count(*) FROM monitoring."HourlyReadings"') device hours in $((SECONDS - t0)) s"
psql_db -q -c 'VACUUM ANALYZE' -c 'CHECKPOINT'

phase "sign in as $ADMIN_EMAIL"
SESSION=$(bench_sign_in "$PORTAL" "$ADMIN_EMAIL" "$ADMIN_PASSWORD" "$WORK/cookies.txt")
COOKIE="Cookie: tau_session=$SESSION"

# ---------------------------------------------------------------- live readings
# gen_batch EPOCH: one reading per device at EPOCH as an ingest body, the generator's functions
# continued (m: minutes since the site's start, fractional).
gen_batch() {
    awk -v t="$1" -v iso="$(date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ)" '
        BEGIN { printf "{\"measurements\":[" }
        {
            m = (t - $2) / 60; p = $3; id = $4
            w = p * (1.2 + sin(m / 229.0)); e = p * (1.2 * m - 229 * cos(m / 229.0) + 229) / 60
            printf "%s{\"externalId\":\"%s\",\"time\":\"%s\",\"frequency\":%.3f,\"v1\":%.2f,\"v2\":%.2f,\"v3\":%.2f,", \
                (NR > 1 ? "," : ""), $1, iso, 50 + 0.03 * sin(m / 11.0), 230 + 2 * sin(m / 37.0), \
                230 + 2 * sin(m / 37.0 + 2.1), 230 + 2 * sin(m / 37.0 + 4.2)
            printf "\"i1\":%.3f,\"i2\":%.3f,\"i3\":%.3f,\"pTotal\":%.1f,\"qTotal\":%.1f,\"sTotal\":%.1f,\"pfTotal\":%.4f,", \
                w / 690, w / 690 * 1.02, w / 690 * 0.98, w, 0.45 * w, 1.1 * w, 1 / 1.1
            printf "\"energyImportWh\":%.3f,\"energyExportWh\":0,\"apparentVAh\":%.3f}", 5e6 * id + e, 6e6 * id + 1.1 * e
        }
        END { printf "]}" }' "$WORK/devices.txt"
}

# live_loop LIMIT: a batch of every device each second, at most LIMIT batches or until
# $WORK/live.stop exists; counts answers in $WORK/live.counts ("sent failed").
live_loop() {
    local limit=$1 i sent=0 failed=0 t answer wait_ns
    for ((i = 0; i < limit; i++)); do
        [[ ! -e $WORK/live.stop ]] || break
        t=$(date +%s)
        gen_batch "$t" >"$WORK/live.json"
        answer=$(curl -sS --max-time 10 -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
            --data-binary "@$WORK/live.json" "$PORTAL/api/ingest" 2>>"$WORK/live.log" || true)
        if [[ $answer == *"\"accepted\":$DEVICES,"* ]]; then
            sent=$((sent + 1))
        else
            failed=$((failed + 1))
            printf '%s %s\n' "$(date -u +%T)" "${answer:0:300}" >>"$WORK/live.log"
        fi
        echo "$sent $failed" >"$WORK/live.counts"
        # Until the next whole second (pacing a load, not synchronising).
        wait_ns=$(((t + 1) * 1000000000 - $(date +%s%N)))
        if ((wait_ns > 0)); then sleep "$(printf '%d.%09d' $((wait_ns / 1000000000)) $((wait_ns % 1000000000)))"; fi
    done
}

# ---------------------------------------------------------------- measurement
cat >"$WORK/report.lua" <<'LUA'
-- wrk: latency percentiles and the answers that were not 200 (a redirect to the sign-in page
-- would otherwise count as a fast success).
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) not_ok = 0 end
function response(status, headers, body) if status ~= 200 then not_ok = not_ok + 1 end end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("not_ok") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d seconds=%.3f not_ok=%d socket_errors=%d p50=%.2f p95=%.2f p99=%.2f max=%.2f\n",
    summary.requests, summary.duration / 1e6, bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
LUA

metric() { # NAME-WITH-LABELS: its value on the portal's /metrics (0 when absent)
    curl -fsS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
        awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? 0 : v) }'
}
RUNS_METRIC='tau_portal_rollup_runs_total{outcome="ok"}'
DURATION_METRIC=tau_portal_rollup_last_run_duration_seconds
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

TARGETS=(
    "Overview|/"
    "Overview live update (power, health)|/api/live/overview"
    "Overview live update (energy, cost)|/api/live/overview/energy"
    "Site page, Year site ($YEAR_DEVICES devices)|/sites/$YEAR_SITE"
    "Site page, Fleet site ($FLEET_DEVICES devices)|/sites/$FLEET_SITE"
    "Site page, Fleet site, devices compared over 7 d|/sites/$FLEET_SITE?compare=7d"
    "Cost tab, Fleet site|/sites/$FLEET_SITE/cost"
    "Device page 24 h (HTML)|/devices/$YEAR_DEVICE?range=24h"
    "Device page 30 d (HTML)|/devices/$YEAR_DEVICE?range=30d"
    "Device page 1 y (HTML)|/devices/$YEAR_DEVICE?range=1y"
    "Device chart data 24 h (JSON)|/devices/$YEAR_DEVICE/series?q=p&range=24h"
    "Device chart data 30 d (JSON)|/devices/$YEAR_DEVICE/series?q=p&range=30d"
    "Device chart data 1 y (JSON)|/devices/$YEAR_DEVICE/series?q=p&range=1y"
)

phase "warm-up: every target once (each must answer 200)"
for target in "${TARGETS[@]}"; do
    path=${target#*|}
    code=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' --max-time 60 -H "$COOKIE" "$PORTAL$path")
    [[ $code == 200\ * ]] || die "GET $path answered ${code%% *}, expected 200"
    printf '  %-52s %s s\n' "${target%%|*}" "${code#* }"
done

LOAD_START=$(loadavg)
if [[ $LIVE == 1 ]]; then
    phase "live readings: $DEVICES devices every second through POST /api/ingest (background, bounded)"
    live_loop $((${#TARGETS[@]} * (WINDOW + 30) + 1200)) &
    LIVE_PID=$!
    # The first batches land before the first window.
    deadline=$((SECONDS + 30))
    until [[ -s $WORK/live.counts ]] && (($(cut -d' ' -f1 "$WORK/live.counts") >= 3)); do
        kill -0 "$LIVE_PID" 2>/dev/null || die "the live readings loop ended early"
        ((SECONDS < deadline)) || die "no live batch was accepted within 30 s: $(tail -n 3 "$WORK/live.log" 2>/dev/null)"
        sleep 0.2
    done
fi
PG_LOG_FROM=$(stat -c %s "$PG_BASE/postgres.log")

declare -a RESULTS=()
MISSED=0
for target in "${TARGETS[@]}"; do
    name=${target%%|*}
    path=${target#*|}
    phase "$name: GET $path, wrk -t1 -c$CONNECTIONS -d${WINDOW}s"
    runs0=$(metric "$RUNS_METRIC")
    load0=$(loadavg)
    timeout -k 5 $((WINDOW + 60)) wrk -t1 -c"$CONNECTIONS" -d"${WINDOW}s" --timeout 30s -s "$WORK/report.lua" \
        -H "$COOKIE" "$PORTAL$path" >"$WORK/wrk.txt"
    line=$(grep '^RESULT ' "$WORK/wrk.txt") || die "wrk printed no result for $path: $(cat "$WORK/wrk.txt")"
    runs=$(awk -v a="$runs0" -v b="$(metric "$RUNS_METRIC")" 'BEGIN { print b - a }')
    last_run=$(metric "$DURATION_METRIC")
    [[ $(field not_ok "$line") == 0 ]] || die "$(field not_ok "$line") answers to $path were not 200: the figures are void"
    requests=$(field requests "$line")
    ((requests > 0)) || die "wrk completed no request of $path"
    p95=$(field p95 "$line")
    if awk -v p="$p95" -v t="$TARGET_MS" 'BEGIN { exit !(p <= t) }'; then verdict=met; else
        verdict="NOT MET"
        MISSED=$((MISSED + 1))
    fi
    RESULTS+=("$(printf '  %-46s %6s %7.1f %8s %8s %8s %8s  %s run(s), last %.1f s  load %s  %s' "$name" "$requests" \
        "$(awk -v n="$requests" -v s="$(field seconds "$line")" 'BEGIN { print n / s }')" "$(field p50 "$line")" \
        "$p95" "$(field p99 "$line")" "$(field max "$line")" "$runs" "$last_run" "${load0%% *}" "$verdict")")
    echo "${RESULTS[-1]}"
    if [[ $LIVE == 1 && $runs == 0 ]]; then
        echo "  warning: no rollup run completed during this window (BENCH_SECONDS=$WINDOW is shorter than the job's period?)"
    fi
done

phase "CSV export: a year of device year-000, twice, against psql COPY of the same rows to CSV"
CSV_PATH="/devices/$YEAR_DEVICE/readings.csv?range=1y"
declare -a CSV_LINES=()
BEST_CSV=0
for run in 1 2; do
    out=$(curl -sS -o "$WORK/export.csv" -w '%{http_code} %{time_total}' --max-time 900 -H "$COOKIE" "$PORTAL$CSV_PATH")
    [[ $out == 200\ * ]] || die "GET $CSV_PATH answered ${out%% *}"
    csv_rows=$(($(wc -l <"$WORK/export.csv") - 1))
    rate=$(awk -v n="$csv_rows" -v s="${out#* }" 'BEGIN { printf "%.0f", n / s }')
    CSV_LINES+=("$(printf '    export run %d: %s rows in %s s, %s rows/s, %s MB' "$run" "$csv_rows" "${out#* }" "$rate" \
        "$(($(stat -c %s "$WORK/export.csv") >> 20))")")
    echo "${CSV_LINES[-1]}"
    ((rate > BEST_CSV)) && BEST_CSV=$rate
done
# The same device and range start as the export (a year of local days back), every column.
CSV_FROM=$(head -n 2 "$WORK/export.csv" | tail -n 1 | cut -d, -f1)
BEST_COPY=0
for run in 1 2; do
    t0=$(date +%s.%N)
    copy_rows=$(psql_db -c "COPY (SELECT * FROM monitoring.\"PowerMeasurements\" WHERE \"DeviceId\" = $YEAR_DEVICE
                             AND \"Time\" >= '$CSV_FROM' ORDER BY \"Time\") TO STDOUT (FORMAT csv)" | wc -l)
    s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
    rate=$(awk -v n="$copy_rows" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
    CSV_LINES+=("$(printf '    COPY   run %d: %s rows in %s s, %s rows/s' "$run" "$copy_rows" "$s" "$rate")")
    echo "${CSV_LINES[-1]}"
    ((rate > BEST_COPY)) && BEST_COPY=$rate
done
LOAD_END=$(loadavg)

if [[ -n $LIVE_PID ]]; then
    touch "$WORK/live.stop"
    wait "$LIVE_PID" || true
    LIVE_PID=
    read -r live_sent live_failed <"$WORK/live.counts"
    ((live_failed == 0)) || die "$live_failed live batches were refused: $(tail -n 3 "$WORK/live.log")"
fi

phase "what PostgreSQL logged during the measurements"
tail -c +$((PG_LOG_FROM + 1)) "$PG_BASE/postgres.log" >"$WORK/pg-window.log"
LOCK_WAITS=$(grep -c 'still waiting for' "$WORK/pg-window.log" || true)
SLOW=$(grep -c 'LOG:  duration: ' "$WORK/pg-window.log" || true)
echo "  lock waits over 100 ms: $LOCK_WAITS"
grep 'still waiting for' "$WORK/pg-window.log" | head -n 5 | cut -c1-220 | sed 's/^/    /' || true
echo "  statements slower than $SLOW_MS ms: $SLOW; the slowest:"
grep -o 'duration: [0-9.]* ms .*' "$WORK/pg-window.log" | sort -t' ' -k2,2 -g -r | head -n 8 | cut -c1-220 |
    sed 's/^/    /' || true
echo "  slower than $SLOW_MS ms, by statement (count, first words):"
grep -o 'duration: [0-9.]* ms .*' "$WORK/pg-window.log" | sed 's/^duration: [0-9.]* ms *[a-z]* [^:]*: *//' |
    cut -c1-90 | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/    /' || true

phase "summary"
printf '  %s, %s CPUs, PostgreSQL 15 (fsync off), all on 127.0.0.1; %s readings: Year site %s x %s days, Fleet site %s x %s days (%s)\n' \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$CPUS" "$ROWS" "$YEAR_DEVICES" \
    "$YEAR_DAYS" "$FLEET_DEVICES" "$FLEET_DAYS" "$TIME_ZONE"
if [[ $LIVE == 1 ]]; then
    printf '  under load: %s live batches of %s readings (one a second) accepted, 0 refused; the rollup job on its 60 s schedule\n' \
        "$live_sent" "$DEVICES"
else
    echo "  BENCH_LIVE=0: no live readings (the rollup job still runs on its schedule)"
fi
printf '  wrk -t1 -c%s -d%ss per target; load average (1/5/15 min) %s at the start, %s at the end\n' \
    "$CONNECTIONS" "$WINDOW" "$LOAD_START" "$LOAD_END"
printf '  %-46s %6s %7s %8s %8s %8s %8s  %s\n' "target" "reqs" "req/s" "p50 ms" "p95 ms" "p99 ms" "max ms" \
    "rollup runs in the window, load (1 min), p95 <= $TARGET_MS ms"
printf '%s\n' "${RESULTS[@]}"
printf '  CSV export of a year of one device: %s rows/s (best of 2), psql COPY to CSV %s rows/s: %s x\n' "$BEST_CSV" \
    "$BEST_COPY" "$(awk -v a="$BEST_CSV" -v b="$BEST_COPY" 'BEGIN { printf "%.2f", a / b }')"
printf '%s\n' "${CSV_LINES[@]}"
echo "  PostgreSQL during the measurements: $LOCK_WAITS lock waits over 100 ms, $SLOW statements over $SLOW_MS ms"
if ((MISSED == 0)); then
    echo "TARGET MET: every page and chart p95 <= $TARGET_MS ms with the rollup job running and readings arriving"
else
    echo "TARGET NOT MET: $MISSED of ${#TARGETS[@]} targets over $TARGET_MS ms p95 (see above)"
fi
