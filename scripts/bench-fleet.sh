#!/usr/bin/env bash
# Benchmark of the fleet aggregator (issue 16, "Benchmark"), everything on 127.0.0.1, one
# throwaway PostgreSQL cluster with two databases (a customer's and the Admin's):
#
# 1. Catch-up after an outage: BENCH_DEVICES devices x BENCH_MINUTES 1-minute readings (default
#    100 x 1 day = 144,000) queued on a Client portal, which then starts with the push on. Timed:
#    from its start until the Admin holds every row (the Client logs "Fleet push caught up"; the
#    Admin's row count is checked). Baseline in the same run: psql \copy of the same rows (CSV,
#    exported from the Admin) into fleet."PowerMeasurements". Alternately, twice each; the best
#    of each counts. Target: push >= 0.5 x COPY (DESIGN.md section 8).
# 2. Fan-in: BENCH_CUSTOMERS customers (200, one load process, one token each) with 20 devices
#    each, all pushing at once: every customer sends BENCH_PUSHES pushes of one minute of its 20
#    devices (as a Client with FleetIngest__IntervalSeconds=60 does, back to back here), through
#    the real wire format (gzip JSON, POST /api/fleet/ingest). Reported: rows/s, the latency of a
#    push (p50, p99), the Admin's CPU seconds and peak RSS.
#
# A measurement, not a test: it exits 0 when the target is missed (and prints TARGET MISSED),
# non-zero only when the benchmark itself failed (a refused batch, a wrong row count).
#
# Environment: BENCH_DEVICES (100), BENCH_MINUTES (1440), BENCH_CUSTOMERS (200), BENCH_PUSHES
# (15), BENCH_SKIP_BUILD=1 to use target/release/tau-portal as is, CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

DEVICES=${BENCH_DEVICES:-100}
MINUTES=${BENCH_MINUTES:-1440}
CUSTOMERS=${BENCH_CUSTOMERS:-200}
PUSHES=${BENCH_PUSHES:-15}
RUNS=2
TARGET_RATIO=0.5
TIMEOUT=1800
for v in DEVICES MINUTES CUSTOMERS PUSHES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive whole number, got '${!v}'"
done
ROWS=$((DEVICES * MINUTES))

phase "tools"
ensure_system_packages postgres
ensure_apt_packages curl:curl python3:python3
CPUS=$(nproc)
bench_release_build

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-bench-fleet.XXXXXX")
chmod 711 "$WORK"
PG_BASE=$WORK/pg
ADMIN_PID=
CLIENT_PID=
status=0
cleanup() {
    local rc=$?
    [[ $status -ne 0 ]] || status=$rc
    set +e
    if [[ -n $CLIENT_PID ]]; then stop_process "$CLIENT_PID"; fi
    if [[ -n $ADMIN_PID ]]; then stop_process "$ADMIN_PID"; fi
    pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1
    if [[ $status -ne 0 ]]; then
        bench_show_logs "$WORK/admin.log" "$WORK/client.log" "$PG_BASE/postgres.log"
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

phase "PostgreSQL 15 (throwaway cluster), databases tau_client and tau_admin"
pg_cluster_init "$PG_BASE"
pg_cluster_start_on_free_port "$PG_BASE" \
    -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
psql_db() { pg_psql "$PG_BASE" "$PG_CLUSTER_PORT" -d "$1" "${@:2}"; }
psql_db postgres -q -c 'CREATE DATABASE tau_client' -c 'CREATE DATABASE tau_admin'
url() { echo "postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/$1"; }
ADMIN_PASSWORD=$(bench_password)
ADMIN_PORT=$(tau_free_port)
CLIENT_PORT=$(tau_free_port)
mkdir -p "$WORK/admin-data" "$WORK/client-data"
ADMIN_ENV=(
    Application__RunMode=Admin
    Application__Environment=Development
    Application__ListenAddress="127.0.0.1:$ADMIN_PORT"
    Application__DataDirectory="$WORK/admin-data"
    Application__MetricsAddress=off
    DATABASE_URL="$(url tau_admin)"
    Database__MaxConnections=16
    Authentication__DefaultAdminPassword="$ADMIN_PASSWORD"
    RUST_LOG=warn
)
TOKEN=$(bench_token taufleet_)
CLIENT_ENV=(
    Application__Environment=Development
    Application__ListenAddress="127.0.0.1:$CLIENT_PORT"
    Application__DataDirectory="$WORK/client-data"
    Application__MetricsAddress=off
    DATABASE_URL="$(url tau_client)"
    Authentication__DefaultAdminPassword="$ADMIN_PASSWORD"
    FleetIngest__Enabled=true
    FleetIngest__Url="http://127.0.0.1:$ADMIN_PORT"
    FleetIngest__Token="$TOKEN"
    FleetIngest__IntervalSeconds=60
    FleetIngest__BatchSize=5000
    RUST_LOG=warn,tau_acuvim_portal::fleet=info
)

phase "schemas (tau-portal migrate, both modes), $DEVICES devices x $MINUTES readings on the Client"
timeout -k 5 120 env "${CLIENT_ENV[@]}" "$BIN" migrate </dev/null >"$WORK/migrate.log" 2>&1 || die "migrate (Client)"
timeout -k 5 120 env "${ADMIN_ENV[@]}" "$BIN" migrate </dev/null >>"$WORK/migrate.log" 2>&1 || die "migrate (Admin)"
psql_db tau_client -q -v devices="$DEVICES" -v minutes="$MINUTES" <<'SQL'
INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ('Bench site', 'UTC');
INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
SELECT 1, format('bench-%s', lpad(n::text, 3, '0')), format('Bench meter %s', n), 'generic', 'push'
FROM generate_series(0, :devices - 1) n;
-- One day of 1-minute readings per device, ending now, with realistic values in 14 quantities.
INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "Frequency", "V1", "V2", "V3", "I1", "I2", "I3",
    "PTotal", "QTotal", "STotal", "PFTotal", "EnergyImportWh", "EnergyExportWh", "ApparentVAh")
SELECT d."Id", t, 50 + random() * 0.1 - 0.05, 230 + random() * 8 - 4, 230 + random() * 8 - 4, 230 + random() * 8 - 4,
       40 + random() * 20, 40 + random() * 20, 40 + random() * 20, 27000 + random() * 9000, 6000 + random() * 900,
       29000 + random() * 9000, 0.9 + random() * 0.08, 1e6 * d."Id" + k * 500.0, 0, 1.2e6 * d."Id" + k * 550.0
FROM monitoring."Devices" d,
     generate_series(1, :minutes) AS k,
     LATERAL (SELECT date_trunc('minute', now()) - make_interval(mins => :minutes - k) AS t) AS tt;
SQL
printf -v TOKEN_HASH '%s' "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)"
psql_db tau_admin -q -v hash="$TOKEN_HASH" <<'SQL'
INSERT INTO fleet."Customers" ("Code", "Name", "TokenHash", "TokenPrefix", "CreatedBy")
VALUES ('BEN0001', 'Bench customer', decode(:'hash', 'hex'), 'taufleet_', 'scripts/bench-fleet.sh');
SQL

wait_ready() { # URL PID NAME
    local deadline=$((SECONDS + 120))
    until curl -fsS -o /dev/null --max-time 2 "$1/health/ready" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || die "the $3 exited before it was ready"
        ((SECONDS < deadline)) || die "the $3 was not ready within 120 s"
        sleep 0.1
    done
}
admin_rows() { psql_db tau_admin -At -c 'SELECT count(*) FROM fleet."PowerMeasurements"'; }

phase "Admin portal (release, RunMode=Admin, plain PostgreSQL)"
env "${ADMIN_ENV[@]}" "$BIN" serve </dev/null >"$WORK/admin.log" 2>&1 &
ADMIN_PID=$!
wait_ready "http://127.0.0.1:$ADMIN_PORT" "$ADMIN_PID" "Admin portal"

COLS='"DeviceId","Time","Frequency","V1","V2","V3","I1","I2","I3","PTotal","QTotal","STotal","PFTotal","EnergyImportWh","EnergyExportWh","ApparentVAh","CustomerId"'
reset_admin() {
    psql_db tau_admin -q -c 'TRUNCATE fleet."PowerMeasurements", fleet."HourlyStale"' \
        -c 'DELETE FROM fleet."IngestEvents"' -c 'CHECKPOINT'
}
reset_client() {
    psql_db tau_client -q -c 'DELETE FROM monitoring."FleetPositions"' -c 'DELETE FROM monitoring."FleetOutbox"' \
        -c 'DELETE FROM monitoring."FleetLateReadings"'
}
now_s() { date +%s.%N; }
BEST_PUSH=
BEST_COPY=
declare -a RESULTS=()
for ((run = 1; run <= RUNS; run++)); do
    phase "catch-up run $run/$RUNS: the Client pushes $ROWS queued readings"
    reset_admin
    reset_client
    : >"$WORK/client.log"
    t0=$(now_s)
    env "${CLIENT_ENV[@]}" "$BIN" serve </dev/null >"$WORK/client.log" 2>&1 &
    CLIENT_PID=$!
    deadline=$((SECONDS + TIMEOUT))
    until grep -q 'Fleet push caught up' "$WORK/client.log" && [[ $(admin_rows) == "$ROWS" ]]; do
        kill -0 "$CLIENT_PID" 2>/dev/null || die "the Client exited during the catch-up"
        ((SECONDS < deadline)) || die "the catch-up did not finish within $TIMEOUT s"
        sleep 0.05
    done
    t1=$(now_s)
    stop_process "$CLIENT_PID"
    CLIENT_PID=
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    batches=$(grep -c 'Fleet batch sent' "$WORK/client.log" || true)
    RESULTS+=("$(printf '    push  run %d: %7.3f s %8.0f rows/s (%s batches, Client start included)' "$run" "$s" \
        "$(awk -v n="$ROWS" -v s="$s" 'BEGIN { print n / s }')" "$batches")")
    echo "${RESULTS[-1]}"
    if [[ -z $BEST_PUSH ]] || awk -v a="$s" -v b="$BEST_PUSH" 'BEGIN { exit !(a < b) }'; then BEST_PUSH=$s; fi

    phase "COPY run $run/$RUNS: psql \\copy of the same $ROWS rows into fleet.\"PowerMeasurements\""
    psql_db tau_admin -q -c "\\copy (SELECT $COLS FROM fleet.\"PowerMeasurements\") TO '$WORK/rows.csv' WITH (FORMAT csv)"
    reset_admin
    t0=$(now_s)
    psql_db tau_admin -q -c "\\copy fleet.\"PowerMeasurements\" ($COLS) FROM '$WORK/rows.csv' WITH (FORMAT csv)"
    t1=$(now_s)
    [[ $(admin_rows) == "$ROWS" ]] || die "COPY run $run: wrong row count"
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    RESULTS+=("$(printf '    COPY  run %d: %7.3f s %8.0f rows/s' "$run" "$s" "$(awk -v n="$ROWS" -v s="$s" 'BEGIN { print n / s }')")")
    echo "${RESULTS[-1]}"
    if [[ -z $BEST_COPY ]] || awk -v a="$s" -v b="$BEST_COPY" 'BEGIN { exit !(a < b) }'; then BEST_COPY=$s; fi
done
RATIO=$(awk -v c="$BEST_COPY" -v p="$BEST_PUSH" 'BEGIN { printf "%.2f", c / p }')

phase "fan-in: $CUSTOMERS customers x 20 devices, $PUSHES pushes each, all at once"
reset_admin
cat >"$WORK/fanin.py" <<'PYTHON'
"""The fan-in load of scripts/bench-fleet.sh: CUSTOMERS customers, one thread and one token
each, register (SQL, on stdin), then push sites, devices and PUSHES minutes of 20 devices through
the wire format of src/fleet/wire.rs. Prints: rows seconds p50_ms p99_ms."""
import gzip, http.client, json, random, sys, threading, time, uuid

port, customers, pushes = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
COLUMNS = ["frequency", "v1", "v2", "v3", "i1", "i2", "i3", "pTotal", "qTotal", "sTotal", "pfTotal", "energyImportWh"]
tokens = [l.strip() for l in open(sys.argv[4]) if l.strip()]
assert len(tokens) == customers

def body(kind, **lists):
    doc = {"version": 1, "batchId": str(uuid.uuid4()), "type": kind}
    doc.update(lists)
    return gzip.compress(json.dumps(doc).encode(), 1)

t0_us = (int(time.time()) // 60 - pushes - 5) * 60_000_000
inventory, minutes = [], []
for c in range(customers):
    rnd = random.Random(c)
    sites = [{"id": 1, "name": "Site", "address": "", "timeZone": "UTC"}]
    devices = [{"id": d, "siteId": 1, "externalId": "m%d" % d, "name": "Meter %d" % d, "model": "generic", "enabled": True}
               for d in range(1, 21)]
    inventory.append([body("sites", sites=sites), body("devices", devices=devices)])
    minutes.append([body("measurements", measurements={"columns": COLUMNS, "rows": [
        [d, t0_us + m * 60_000_000, 50.0, 230.1, 229.8, 231.0, 41.2, 40.9, 42.3, 28000.5 + rnd.random() * 100, 6100.0,
         29500.0, 0.95, 1e6 + m * 466.7]
        for d in range(1, 21)]}) for m in range(pushes)])

latencies, failures = [], []
lock = threading.Lock()
start = threading.Barrier(customers + 1)

def post(conn, token, data):
    conn.request("POST", "/api/fleet/ingest", body=data, headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    resp = conn.getresponse()
    answer = resp.read()
    if resp.status != 200:
        raise RuntimeError("HTTP %d: %s" % (resp.status, answer[:300]))
    return json.loads(answer)

def customer(c):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for data in inventory[c]:
            post(conn, tokens[c], data)
        start.wait()
        for data in minutes[c]:
            t = time.perf_counter()
            receipt = post(conn, tokens[c], data)
            dt = time.perf_counter() - t
            if receipt["accepted"] != 20:
                raise RuntimeError("accepted %s of 20" % receipt["accepted"])
            with lock:
                latencies.append(dt)
    except Exception as e:  # noqa: BLE001 - every failure voids the run
        failures.append(str(e))
        try:
            start.abort()
        except threading.BrokenBarrierError:
            pass

threads = [threading.Thread(target=customer, args=(c,)) for c in range(customers)]
for t in threads:
    t.start()
try:
    start.wait()
except threading.BrokenBarrierError:
    pass
t0 = time.perf_counter()
for t in threads:
    t.join()
seconds = time.perf_counter() - t0
if failures:
    sys.exit("fan-in failed: " + failures[0])
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
print("%d %.3f %.1f %.1f" % (len(latencies) * 20, seconds, q(0.50), q(0.99)))
PYTHON
# One token per customer, registered the way the Customers page stores them (SHA-256).
for ((c = 0; c < CUSTOMERS; c++)); do
    bench_token taufleet_
done >"$WORK/tokens.txt"
python3 - "$WORK/tokens.txt" >"$WORK/customers.sql" <<'PYTHON'
import hashlib, sys
rows = []
for i, t in enumerate(l.strip() for l in open(sys.argv[1]) if l.strip()):
    code = "FAN%04d" % i
    rows.append("('%s', 'Fan-in %d', '\\x%s', 'taufleet_', 'bench')" % (code, i, hashlib.sha256(t.encode()).hexdigest()))
print('INSERT INTO fleet."Customers" ("Code", "Name", "TokenHash", "TokenPrefix", "CreatedBy") VALUES')
print(",\n".join(rows) + ";")
PYTHON
psql_db tau_admin -q -f "$WORK/customers.sql"
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
cpu0=$(cpu_of "$ADMIN_PID")
read -r fan_rows fan_s p50 p99 < <(timeout -k 5 "$TIMEOUT" python3 "$WORK/fanin.py" "$ADMIN_PORT" "$CUSTOMERS" "$PUSHES" "$WORK/tokens.txt") ||
    die "the fan-in failed"
cpu1=$(cpu_of "$ADMIN_PID")
ADMIN_CPU=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$TICK" 'BEGIN { printf "%.1f", (b - a) / t }')
ADMIN_RSS=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$ADMIN_PID/status")
expected=$((CUSTOMERS * 20 * PUSHES))
[[ $(admin_rows) == "$expected" && $fan_rows == "$expected" ]] || die "fan-in: expected $expected rows on the Admin"
FAN_RATE=$(awk -v n="$fan_rows" -v s="$fan_s" 'BEGIN { printf "%.0f", n / s }')
PUSH_RATE=$(awk -v n="$fan_rows" -v s="$fan_s" 'BEGIN { printf "%.0f", n / 20 / s }')

phase "summary"
printf '  %s, %s CPUs, all on 127.0.0.1, plain PostgreSQL 15\n' \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$CPUS"
printf '%s\n' "${RESULTS[@]}"
printf '  %-44s %10.0f rows/s  (best of %d, %s rows)\n' "catch-up push (Client -> Admin, gzip JSON)" \
    "$(awk -v n="$ROWS" -v s="$BEST_PUSH" 'BEGIN { print n / s }')" "$RUNS" "$ROWS"
printf '  %-44s %10.0f rows/s  (best of %d)\n' "COPY (psql \\copy into fleet.PowerMeasurements)" \
    "$(awk -v n="$ROWS" -v s="$BEST_COPY" 'BEGIN { print n / s }')" "$RUNS"
printf '  %-44s %10s\n' "ratio push/COPY" "$RATIO"
printf '  fan-in: %s customers x 20 devices, %s pushes each: %s rows/s (%s pushes/s), push latency p50 %s ms, p99 %s ms; Admin CPU %s s over %s s, peak RSS %s MB\n' \
    "$CUSTOMERS" "$PUSHES" "$FAN_RATE" "$PUSH_RATE" "$p50" "$p99" "$ADMIN_CPU" "$fan_s" "$ADMIN_RSS"
if awk -v r="$RATIO" -v t="$TARGET_RATIO" 'BEGIN { exit !(r >= t) }'; then
    echo "TARGET MET: ratio push/COPY $RATIO >= $TARGET_RATIO"
else
    echo "TARGET MISSED: ratio push/COPY $RATIO < $TARGET_RATIO"
fi
