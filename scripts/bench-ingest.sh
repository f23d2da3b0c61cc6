#!/usr/bin/env bash
# Benchmark of the ingest API (POST /api/ingest) against `psql \copy` of the same rows into the
# same table, monitoring."PowerMeasurements" (issue 5, "Benchmark"; target: ingest >= 0.8 x COPY).
#
# In one run, everything on 127.0.0.1: installs what is missing (PostgreSQL 15, curl), builds the
# portal in release mode, starts a throwaway PostgreSQL cluster (the fast settings of
# scripts/test.sh), migrates it, creates one site, 100 push devices (bench-000..bench-099) and an
# API key directly with psql, starts the portal (Development, RUST_LOG=warn), then generates
# BENCH_ROWS readings (1-minute spacing, distinct (device, time) pairs, 12 quantities with
# realistic values) as JSON batch bodies and as ONE CSV holding the same rows.
#
# Measured, alternately and twice each (the better run of each counts; both are printed), on an
# emptied table (TRUNCATE + CHECKPOINT before every run):
#   COPY    psql \copy of the CSV; wall clock around the psql process
#   ingest  BENCH_CLIENTS keep-alive HTTP clients (python3 threads) POSTing the batch bodies,
#           read from disk into memory before the clock starts; every answer must be 200 with
#           accepted == rows of the batch
# After every run the table must hold exactly BENCH_ROWS rows. Each run also reports the CPU
# seconds the portal, PostgreSQL (all its processes) and the client (psql or python3) used, and
# how busy the machine's CPUs were, to show where the time goes.
#
# It is a measurement, not a test: it exits 0 when the target is missed (and says so on a
# `TARGET MISSED` line), and non-zero only when the benchmark itself failed (a refused batch, a
# wrong row count, a process that did not start).
#
# Environment: BENCH_ROWS (default 1000000), BENCH_BATCH (rows per request, default 5000, at most
# 10000), BENCH_CLIENTS (concurrent HTTP clients, default 4), BENCH_SKIP_BUILD=1 to use the
# existing target/release/tau-portal as is, CARGO_TARGET_DIR (default target/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

ROWS=${BENCH_ROWS:-1000000}
BATCH=${BENCH_BATCH:-5000}
CLIENTS=${BENCH_CLIENTS:-4}
DEVICES=100
RUNS=2
TARGET_RATIO=0.8
MAX_BATCH=10000 # src/ingest/api.rs MAX_ROWS
READY_TIMEOUT=120
COPY_TIMEOUT=1800
INGEST_TIMEOUT=1800

[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROWS must be a positive whole number, got '$ROWS'"
if [[ ! $BATCH =~ ^[1-9][0-9]*$ ]] || ((BATCH > MAX_BATCH)); then
    die "BENCH_BATCH must be a whole number from 1 to $MAX_BATCH, got '$BATCH'"
fi
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CLIENTS must be a positive whole number, got '$CLIENTS'"

phase "tools"
ensure_system_packages postgres
ensure_apt_packages curl:curl python3:python3
CPUS=$(nproc)

bench_release_build

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-bench-ingest.XXXXXX")
chmod 711 "$WORK" # the postgres user must reach the cluster directory below it
PG_BASE=$WORK/pg
PORTAL_PID=
status=0

cleanup() {
    local rc=$?
    [[ $status -ne 0 ]] || status=$rc
    set +e
    if [[ -n $PORTAL_PID ]]; then stop_process "$PORTAL_PID"; fi
    pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1
    if [[ $status -ne 0 ]]; then
        bench_show_logs "$WORK/migrate.log" "$WORK/portal.log" "$PG_BASE/postgres.log"
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

psql_db() { pg_psql "$PG_BASE" "$PG_CLUSTER_PORT" -d postgres "$@"; }

# The Python half: data generation, the HTTP clients, and timing with CPU accounting.
cat >"$WORK/bench.py" <<'PYTHON'
"""Helpers of scripts/bench-ingest.sh (python3 standard library only).

gen DEVICE_IDS ROWS BATCH OUTDIR         batch bodies OUTDIR/batches/*.json, OUTDIR/manifest
                                         ("file rows" lines) and OUTDIR/rows.csv, same rows
copy PORTAL_PID POSTMASTER_PID -- CMD... runs CMD (psql \\copy), prints the timing line
ingest PORTAL_PID POSTMASTER_PID URL MANIFEST CLIENTS
                                         POSTs every batch (key in $BENCH_KEY), prints the timing line

The timing line: seconds=S cpu_portal=S cpu_postgres=S cpu_client=S cpu_other=S busy=PERCENT
(CPU seconds; cpu_other: the rest of the machine, busy: how busy all CPUs were)
"""
import datetime
import http.client
import json
import math
import os
import queue
import random
import resource
import subprocess
import sys
import threading
import time
import urllib.parse

# ------------------------------------------------------------------------------ generation
# (device-independent shapes, per-device parameters; deterministic for a given row count)

def gen(ids_file, rows, batch, out):
    with open(ids_file) as f:
        devices = [line.split() for line in f if line.strip()]
    names, ids = [d[0] for d in devices], [int(d[1]) for d in devices]
    ndev = len(ids)
    rnd = random.Random(20261123)
    steps = -(-rows // ndev)
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    start = now - datetime.timedelta(minutes=steps + 10)
    stamps = [(start + datetime.timedelta(minutes=s)).strftime("%Y-%m-%dT%H:%M:%SZ") for s in range(steps)]
    # Daily load profile: a night base, a daytime hump; per minute of the day.
    profile = [0.35 + 0.65 * max(0.0, math.sin(math.pi * (m - 360) / 840)) for m in range(1440)]
    minute0 = start.hour * 60 + start.minute
    # Per device: rated phase current (A), power factor, energy counter start (Wh).
    rated = [rnd.uniform(10, 250) for _ in ids]
    pfs = [rnd.uniform(0.82, 0.98) for _ in ids]
    energy = [rnd.uniform(1e5, 5e8) for _ in ids]

    json_fmt = ('{"externalId":"%s","time":"%s","frequency":%.3f,"v1":%.2f,"v2":%.2f,"v3":%.2f,'
                '"i1":%.3f,"i2":%.3f,"i3":%.3f,"pTotal":%.1f,"qTotal":%.1f,"sTotal":%.1f,'
                '"pfTotal":%.3f,"energyImportWh":%.1f}')
    csv_fmt = "%d,%s,%.3f,%.2f,%.2f,%.2f,%.3f,%.3f,%.3f,%.1f,%.1f,%.1f,%.3f,%.1f\n"
    os.makedirs(os.path.join(out, "batches"))
    uni = rnd.uniform
    with open(os.path.join(out, "rows.csv"), "w") as csv, open(os.path.join(out, "manifest"), "w") as manifest:
        pending_json, pending_csv, nbatch = [], [], 0

        def flush():
            nonlocal pending_json, pending_csv, nbatch
            path = os.path.join(out, "batches", "%06d.json" % nbatch)
            with open(path, "w") as f:
                f.write('{"measurements":[' + ",".join(pending_json) + "]}")
            csv.write("".join(pending_csv))
            manifest.write("%s %d\n" % (path, len(pending_json)))
            pending_json, pending_csv, nbatch = [], [], nbatch + 1

        for k in range(rows):
            step, d = divmod(k, ndev)
            f = 50.0 + uni(-0.05, 0.05)
            v1, v2, v3 = 230.0 + uni(-4, 4), 230.0 + uni(-4, 4), 230.0 + uni(-4, 4)
            load = rated[d] * profile[(minute0 + step) % 1440]
            i1, i2, i3 = load * uni(0.9, 1.1), load * uni(0.9, 1.1), load * uni(0.9, 1.1)
            pf = min(0.999, pfs[d] + uni(-0.02, 0.02))
            s = v1 * i1 + v2 * i2 + v3 * i3
            p = s * pf
            q = math.sqrt(s * s - p * p)
            energy[d] += p / 60.0
            vals = (f, v1, v2, v3, i1, i2, i3, p, q, s, pf, energy[d])
            pending_json.append(json_fmt % ((names[d], stamps[step]) + vals))
            pending_csv.append(csv_fmt % ((ids[d], stamps[step]) + vals))
            if len(pending_json) == batch:
                flush()
        if pending_json:
            flush()

# ------------------------------------------------------------------------------ CPU accounting

TICK = os.sysconf("SC_CLK_TCK")

def _stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
    return int(fields[1]), [int(x) for x in fields[11:15]]

def cpu_seconds(pid, with_children):
    """CPU of PID (all threads); with_children: plus its live children and the reaped ones."""
    while True:
        _, (ut, st, cut, cst) = _stat(pid)
        total = ut + st
        if not with_children:
            return total / TICK
        total += cut + cst
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid, (child_ut, child_st, _, _) = _stat(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == pid:
                    total += child_ut + child_st
        # A child reaped during the scan is in neither sum: scan again.
        if _stat(pid)[1][2:] == [cut, cst]:
            return total / TICK

def machine_ticks():
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]
    return sum(cpu[:8]), idle

def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]

def transient_backends(postmaster):
    """Children of the postmaster serving a Unix-socket client (this script's psql calls) or
    exited and not yet reaped (zombies: their CPU time shows nowhere until they are)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid, _ = _stat(int(entry))
                if ppid != postmaster:
                    continue
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    local = b"[local]" in f.read()
                if local or _state(int(entry)) == "Z":
                    pids.append(entry)
            except (OSError, IndexError, ValueError):
                continue
    return pids

class Meter:
    """CPU seconds of the portal, of PostgreSQL (postmaster and children, live and reaped), of
    this process and its children (the client), and of the whole machine."""

    def __init__(self, portal_pid, postmaster_pid):
        self.portal, self.postmaster = portal_pid, postmaster_pid

    def sample(self):
        # A backend that exits while we read /proc would be counted neither as a live child nor
        # in the postmaster's reaped-children time: let the psql backends end and be reaped.
        deadline = time.monotonic() + 10
        while transient_backends(self.postmaster) and time.monotonic() < deadline:
            time.sleep(0.01)
        r = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (cpu_seconds(self.portal, False), cpu_seconds(self.postmaster, True),
                r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime, machine_ticks())

    @staticmethod
    def report(seconds, a, b):
        (total_a, idle_a), (total_b, idle_b) = a[3], b[3]
        cpu = [y - x for x, y in zip(a[:3], b[:3])]
        machine = (total_b - total_a - (idle_b - idle_a)) / TICK
        print("seconds=%.3f cpu_portal=%.2f cpu_postgres=%.2f cpu_client=%.2f cpu_other=%.2f busy=%.0f"
              % (seconds, cpu[0], cpu[1], cpu[2], max(0.0, machine - sum(cpu)),
                 100.0 * machine * TICK / max(1, total_b - total_a)), flush=True)

# ------------------------------------------------------------------------------ runs

def run_copy(portal_pid, postmaster_pid, cmd):
    meter = Meter(portal_pid, postmaster_pid)
    a = meter.sample()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    meter.report(seconds, a, meter.sample())

def run_ingest(portal_pid, postmaster_pid, url, manifest, clients):
    key = os.environ["BENCH_KEY"]
    target = urllib.parse.urlsplit(url)
    batches = queue.SimpleQueue()
    for line in open(manifest):
        path, rows = line.split()
        with open(path, "rb") as f:
            batches.put((path, int(rows), f.read()))
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    failures = []
    stop = threading.Event()
    start = threading.Barrier(clients + 1)
    conns = []
    for _ in range(clients):
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
        conn.connect()
        conns.append(conn)

    def client(conn):
        start.wait()
        while not stop.is_set():
            try:
                path, rows, body = batches.get_nowait()
            except queue.Empty:
                return
            try:
                conn.request("POST", target.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                answer = json.loads(data) if resp.status == 200 else None
                if resp.status != 200 or answer.get("accepted") != rows or answer.get("rejected") != 0:
                    raise RuntimeError("HTTP %d for %s (%d rows): %s" % (resp.status, path, rows, data[:2000]))
            except Exception as e:  # noqa: BLE001 - every failure voids the run
                failures.append("%s: %s" % (path, e))
                stop.set()
                return

    threads = [threading.Thread(target=client, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    meter = Meter(portal_pid, postmaster_pid)
    a = meter.sample()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    b = meter.sample()
    for conn in conns:
        conn.close()
    if failures:
        sys.exit("ingest failed: " + failures[0])
    meter.report(seconds, a, b)

def main(argv):
    if argv[0] == "gen":
        gen(argv[1], int(argv[2]), int(argv[3]), argv[4])
    elif argv[0] == "copy":
        assert argv[3] == "--"
        run_copy(int(argv[1]), int(argv[2]), argv[4:])
    elif argv[0] == "ingest":
        run_ingest(int(argv[1]), int(argv[2]), argv[3], argv[4], int(argv[5]))
    else:
        sys.exit("unknown command " + argv[0])

main(sys.argv[1:])
PYTHON

phase "PostgreSQL 15 (throwaway cluster)"
pg_cluster_init "$PG_BASE"
# The settings of scripts/test.sh: durability is pointless for a throwaway cluster.
pg_cluster_start_on_free_port "$PG_BASE" \
    -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
POSTMASTER_PID=$(sed -n 1p "$PG_BASE/data/postmaster.pid")
echo "listening on 127.0.0.1:${PG_CLUSTER_PORT} (postmaster pid $POSTMASTER_PID)"

PORTAL_PORT=$(tau_free_port)
PORTAL=http://127.0.0.1:$PORTAL_PORT
mkdir -p "$WORK/data"
# 64 hex characters: no quoting concerns.
ADMIN_PASSWORD=$(bench_password)
PORTAL_ENV=(
    Application__Environment=Development
    Application__ListenAddress="127.0.0.1:$PORTAL_PORT"
    Application__DataDirectory="$WORK/data"
    Application__MetricsAddress=off
    DATABASE_URL="postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/postgres"
    Authentication__DefaultAdminPassword="$ADMIN_PASSWORD"
    Database__MaxConnections=16
    RUST_LOG=warn
)

phase "schema (tau-portal migrate), site, $DEVICES devices, API key"
# Migrating first lets the devices exist before the portal starts: it caches the device list.
timeout -k 5 120 env "${PORTAL_ENV[@]}" "$BIN" migrate </dev/null \
    >"$WORK/migrate.log" 2>&1 || die "tau-portal migrate failed"
# tau_ + 256 random bits in URL-safe base64 without padding (43 characters), like Settings.
API_KEY=$(bench_token tau_)
KEY_HASH=$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
psql_db -q -v devices="$DEVICES" -v prefix="${API_KEY:0:12}" -v hash="$KEY_HASH" <<'SQL'
BEGIN;
INSERT INTO monitoring."Sites" ("Name", "TimeZone", "Notes")
VALUES ('Bench site', 'UTC', 'scripts/bench-ingest.sh');
INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
SELECT s."Id", format('bench-%s', lpad(n::text, 3, '0')), format('Bench meter %s', n), 'generic', 'push'
FROM monitoring."Sites" s, generate_series(0, :devices - 1) n
WHERE s."Name" = 'Bench site';
INSERT INTO identity."ApiKeys" ("Name", "Prefix", "KeyHash", "CreatedBy")
VALUES ('bench-ingest', :'prefix', decode(:'hash', 'hex'), 'scripts/bench-ingest.sh');
COMMIT;
SQL
psql_db -AtF' ' -c 'SELECT "ExternalId", "Id" FROM monitoring."Devices" ORDER BY "ExternalId"' >"$WORK/devices.txt"
[[ $(wc -l <"$WORK/devices.txt") -eq $DEVICES ]] || die "expected $DEVICES devices in the database"

phase "portal (release, Development, RUST_LOG=warn, 16 database connections)"
env "${PORTAL_ENV[@]}" "$BIN" serve </dev/null >"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null --max-time 2 "$PORTAL/health/ready" 2>/dev/null; do
    kill -0 "$PORTAL_PID" 2>/dev/null || die "the portal exited before it was ready"
    ((SECONDS < deadline)) || die "the portal was not ready within $READY_TIMEOUT s"
    sleep 0.2
done
echo "ready on $PORTAL (pid $PORTAL_PID)"

phase "generate $ROWS rows for $DEVICES devices (JSON batches of $BATCH, one CSV)"
python3 "$WORK/bench.py" gen "$WORK/devices.txt" "$ROWS" "$BATCH" "$WORK/gen"
printf '%s batch files (%s MB), CSV %s MB\n' "$(wc -l <"$WORK/gen/manifest")" \
    "$(du -sm "$WORK/gen/batches" | cut -f1)" "$(du -sm "$WORK/gen/rows.csv" | cut -f1)"

reset_table() {
    psql_db -q -c 'TRUNCATE monitoring."PowerMeasurements"' -c 'CHECKPOINT'
}
check_count() {
    local n
    n=$(psql_db -At -c 'SELECT count(*) FROM monitoring."PowerMeasurements"')
    [[ $n == "$ROWS" ]] || die "$1: the table holds $n rows, expected $ROWS"
}
# per_row LINE FIELD: CPU microseconds per row of FIELD (cpu_portal, ...) in a timing line.
per_row() { awk -v c="$(field "$2" "$1")" -v n="$ROWS" 'BEGIN { printf "%.1f", 1e6 * c / n }'; }
# field NAME LINE: the value of NAME=... in a timing line.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
rate() { awk -v n="$ROWS" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
describe() {
    printf '    %-6s run %d: %7.3f s %8s rows/s | CPU s: portal %5s, postgres %5s, client %5s, other %5s | CPUs %3s%% busy\n' \
        "$1" "$2" "$(field seconds "$3")" "$(rate "$(field seconds "$3")")" "$(field cpu_portal "$3")" \
        "$(field cpu_postgres "$3")" "$(field cpu_client "$3")" "$(field cpu_other "$3")" "$(field busy "$3")"
}
# disturbed LINE: true when other processes used more than 10% of the CPUs during the run.
disturbed() {
    awk -v o="$(field cpu_other "$1")" -v s="$(field seconds "$1")" -v n="$CPUS" 'BEGIN { exit !(o > 0.1 * s * n) }'
}

COPY_SQL="\\copy monitoring.\"PowerMeasurements\" (\"DeviceId\",\"Time\",\"Frequency\",\"V1\",\"V2\",\"V3\",\"I1\",\"I2\",\"I3\",\"PTotal\",\"QTotal\",\"STotal\",\"PFTotal\",\"EnergyImportWh\") FROM '$WORK/gen/rows.csv' WITH (FORMAT csv)"
BEST_COPY=
BEST_INGEST=
BEST_COPY_LINE=
BEST_INGEST_LINE=
DISTURBED=0
declare -a RESULTS=()
for ((run = 1; run <= RUNS; run++)); do
    phase "COPY run $run/$RUNS: psql \\copy of $ROWS rows"
    reset_table
    line=$(timeout -k 5 "$COPY_TIMEOUT" python3 "$WORK/bench.py" copy "$PORTAL_PID" "$POSTMASTER_PID" -- \
        "$(tau_pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_BASE" -p "$PG_CLUSTER_PORT" -U postgres \
        -d postgres -c "$COPY_SQL") || die "COPY run $run failed"
    check_count "COPY run $run"
    RESULTS+=("$(describe COPY "$run" "$line")")
    if disturbed "$line"; then DISTURBED=1; fi
    echo "${RESULTS[-1]}"
    s=$(field seconds "$line")
    if [[ -z $BEST_COPY ]] || awk -v a="$s" -v b="$BEST_COPY" 'BEGIN { exit !(a < b) }'; then
        BEST_COPY=$s
        BEST_COPY_LINE=$line
    fi

    phase "ingest run $run/$RUNS: $CLIENTS clients POST /api/ingest, batches of $BATCH"
    reset_table
    line=$(BENCH_KEY=$API_KEY timeout -k 5 "$INGEST_TIMEOUT" python3 "$WORK/bench.py" ingest \
        "$PORTAL_PID" "$POSTMASTER_PID" "$PORTAL/api/ingest" "$WORK/gen/manifest" "$CLIENTS") ||
        die "ingest run $run failed"
    check_count "ingest run $run"
    RESULTS+=("$(describe ingest "$run" "$line")")
    if disturbed "$line"; then DISTURBED=1; fi
    echo "${RESULTS[-1]}"
    s=$(field seconds "$line")
    if [[ -z $BEST_INGEST ]] || awk -v a="$s" -v b="$BEST_INGEST" 'BEGIN { exit !(a < b) }'; then
        BEST_INGEST=$s
        BEST_INGEST_LINE=$line
    fi
done

COPY_RATE=$(rate "$BEST_COPY")
INGEST_RATE=$(rate "$BEST_INGEST")
# ingest rows/s / COPY rows/s = COPY seconds / ingest seconds (same row count).
RATIO=$(awk -v copy_s="$BEST_COPY" -v ingest_s="$BEST_INGEST" 'BEGIN { printf "%.2f", copy_s / ingest_s }')

phase "summary"
printf '  %s, %s CPUs, %s rows for %s devices, batches of %s, %s HTTP clients, all on 127.0.0.1\n' \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$CPUS" "$ROWS" \
    "$DEVICES" "$BATCH" "$CLIENTS"
printf '%s\n' "${RESULTS[@]}"
if ((DISTURBED)); then
    echo "  warning: other processes used more than 10% of the CPUs during a run; the figures are skewed (rerun on a quiet machine)"
fi
printf '  %-36s %12s rows/s  (best of %d)\n' "COPY (psql \\copy, CSV)" "$COPY_RATE" "$RUNS"
printf '  %-36s %12s rows/s  (best of %d)\n' "ingest (POST /api/ingest, JSON)" "$INGEST_RATE" "$RUNS"
printf '  %-36s %12s\n' "ratio ingest/COPY" "$RATIO"
printf '  CPU per row (best runs): COPY postgres %s us + psql %s us; ingest portal %s us + postgres %s us + clients %s us\n' \
    "$(per_row "$BEST_COPY_LINE" cpu_postgres)" "$(per_row "$BEST_COPY_LINE" cpu_client)" \
    "$(per_row "$BEST_INGEST_LINE" cpu_portal)" "$(per_row "$BEST_INGEST_LINE" cpu_postgres)" \
    "$(per_row "$BEST_INGEST_LINE" cpu_client)"
if awk -v r="$RATIO" -v t="$TARGET_RATIO" 'BEGIN { exit !(r >= t) }'; then
    echo "TARGET MET: ratio ingest/COPY $RATIO >= $TARGET_RATIO"
else
    echo "TARGET MISSED: ratio ingest/COPY $RATIO < $TARGET_RATIO"
fi
