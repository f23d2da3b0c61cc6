#!/usr/bin/env bash
# Benchmark of the Modbus poller (issue 6, "Benchmark", raised by issue 21: 10,000 meters at a
# 1 s interval on ONE core with no missed cycles and memory flat over an hour).
#
# In one run, everything on 127.0.0.1: installs what is missing (PostgreSQL 15, curl), builds the
# portal in release mode, starts a throwaway PostgreSQL cluster, the simulator serving
# BENCH_METERS Acuvim II meters on ports BENCH_MODBUS_PORT.. (one port each, as meters with their
# own gateways), registers one Modbus device per meter polled every second, and starts the portal
# pinned to CPU 0 with `taskset` (the simulator and PostgreSQL get the other CPUs when there are
# any). After BENCH_WARMUP seconds it measures for BENCH_SECONDS and prints:
#   meters polled per second   successful polls / s (from tau_portal_polls_total)
#   readings stored per second rows added to monitoring."PowerMeasurements" / s
#   missed cycles              tau_portal_poll_missed_cycles_total during the window, and in
#                              each tenth of it (a steady trickle, or one bad moment)
#   failed polls               polls that timed out or failed during the window
#   buffered readings          tau_portal_readings_buffered at each tenth of the window: polled,
#                              not yet stored (the writes kept up: at most 2 s of readings at the end)
#   late runtime wakeups       tau_portal_runtime_late_wakeups_total during the window, and per
#                              tenth: missed cycles with late wakeups are the portal held up,
#                              without them late replies
#   CPU per 1,000 reads        the portal process's user+system CPU seconds per 1,000 polls
#   simulator / PostgreSQL CPU what the peers on the other CPUs took (when they saturate them,
#                              replies come late and polls miss their slots)
#   RSS start / end            the portal's resident memory at the start and end of the window,
#                              and every tenth of the window (flat: the mean of the second half of
#                              those samples is within 2 % of the first half's)
#   database time              the ten statements that took PostgreSQL the most time during the
#                              window (pg_stat_statements), as % of one core and calls per second
# and a `TARGET MET` or `TARGET MISSED` line. The CPU figure is the whole portal process; with
# nobody browsing, that is the poller, the write buffer and its database writes.
#
# It is a measurement, not a test: it exits 0 when the target is missed, and non-zero only when
# the benchmark itself failed (a process that did not start, no readings at all).
#
# Each meter is one TCP connection on each side and a listener in the simulator: the script
# raises its own open-file limit as far as it may and spreads the meters over as many simulator
# processes as that limit needs. The meters' ports start below the kernel's ephemeral range, from
# which the database, the portal and every outgoing connection take theirs.
#
# Environment: BENCH_METERS (default 10000), BENCH_SECONDS (default 3600), BENCH_WARMUP (default
# 300), BENCH_MODBUS_PORT (first simulator port, default 20000), BENCH_SKIP_BUILD=1 to use the
# existing target/release/tau-portal as is, CARGO_TARGET_DIR (default target/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

METERS=${BENCH_METERS:-10000}
SECONDS_MEASURED=${BENCH_SECONDS:-3600}
# Long enough for the start to be over: 10,000 connections, the first energy rollups of every
# device, and a one-off step of ~40 MB in the portal's RSS about 2.5 minutes in.
WARMUP=${BENCH_WARMUP:-300}
MODBUS_PORT=${BENCH_MODBUS_PORT:-20000}
READY_TIMEOUT=120

whole() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number, got '$2'"; }
whole BENCH_METERS "$METERS"
whole BENCH_SECONDS "$SECONDS_MEASURED"
whole BENCH_WARMUP "$WARMUP"
whole BENCH_MODBUS_PORT "$MODBUS_PORT"
((MODBUS_PORT + METERS <= 65536)) || die "ports $MODBUS_PORT + $METERS meters exceed 65535"

phase "tools"
ensure_system_packages postgres
ensure_apt_packages curl:curl taskset:util-linux
CPUS=$(nproc)
if ((CPUS > 1)); then
    PORTAL_CPUS=0
    OTHER_CPUS=1-$((CPUS - 1))
else
    PORTAL_CPUS=0
    OTHER_CPUS=0
    echo "only one CPU: the simulator and PostgreSQL share it with the portal"
fi
# Each meter is one TCP connection on each side, and the simulator also holds a listener per
# meter: raise the open-file limit as far as allowed (the hard limit too, where the process may),
# and spread the meters over as many simulator processes as that limit needs.
ulimit -Hn $((2 * METERS + 1024)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FILES=$(ulimit -n)
((FILES > METERS + 256)) || die "open-file limit $FILES is too low for the portal's $METERS connections"
PER_SIMULATOR=$(((FILES - 256) / 2))
((PER_SIMULATOR < METERS)) || PER_SIMULATOR=$METERS

bench_release_build

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-bench-poller.XXXXXX")
chmod 711 "$WORK" # the postgres user must reach the cluster directory below it
PG_BASE=$WORK/pg
PORTAL_PID=
SIMULATOR_PIDS=()
status=0

cleanup() {
    local rc=$?
    [[ $status -ne 0 ]] || status=$rc
    set +e
    if [[ -n $PORTAL_PID ]]; then stop_process "$PORTAL_PID"; fi
    for pid in "${SIMULATOR_PIDS[@]}"; do stop_process "$pid"; done
    pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1
    if [[ $status -ne 0 ]]; then
        bench_show_logs "$WORK"/simulator-*.log "$WORK/migrate.log" "$WORK/portal.log" "$PG_BASE/postgres.log"
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

psql_db() { pg_psql "$PG_BASE" "$PG_CLUSTER_PORT" -d postgres "$@"; }

phase "PostgreSQL 15 (throwaway cluster, on CPUs $OTHER_CPUS)"
pg_cluster_init "$PG_BASE"
# The settings of scripts/test.sh: durability is pointless for a throwaway cluster. Buffers
# and WAL sized for 10,000 readings a second, as such a database would be: with the default
# 128 MB of shared buffers the hot pages (each meter's rightmost leaf of the readings' primary
# key, ~80 MB for 10,000 meters, and the table's tail) no longer fitted after ~15 minutes, and
# the backends spent most of a core writing out evicted pages themselves.
pg_cluster_start_on_free_port "$PG_BASE" \
    -c max_connections=100 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c shared_buffers=1GB -c max_wal_size=8GB \
    -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all
# Backends forked from now on inherit the postmaster's CPUs, and its lower priority: the
# simulator stands in for meters, which answer within milliseconds however busy the database
# is, so on the CPUs they share the simulator goes first (the write buffer absorbs a database
# that falls behind for a moment; a lasting backlog would show as rising memory).
POSTMASTER=$(sed -n 1p "$PG_BASE/data/postmaster.pid")
taskset -p -c "$OTHER_CPUS" "$POSTMASTER" >/dev/null
renice -n 10 -p "$POSTMASTER" >/dev/null
echo "listening on 127.0.0.1:${PG_CLUSTER_PORT}"

phase "simulator: $METERS meters on 127.0.0.1:$MODBUS_PORT-$((MODBUS_PORT + METERS - 1)) (CPUs $OTHER_CPUS, up to $PER_SIMULATOR per process)"
for ((first = 0; first < METERS; first += PER_SIMULATOR)); do
    count=$((METERS - first < PER_SIMULATOR ? METERS - first : PER_SIMULATOR))
    taskset -c "$OTHER_CPUS" "$BIN" simulate --meters "$count" --listen 127.0.0.1 --port "$((MODBUS_PORT + first))" \
        </dev/null >"$WORK/simulator-$first.log" 2>&1 &
    SIMULATOR_PIDS+=($!)
done
listed() { cat "$WORK"/simulator-*.log | grep -c '127.0.0.1:' || true; }
deadline=$((SECONDS + READY_TIMEOUT))
until (($(listed) >= METERS)); do
    for pid in "${SIMULATOR_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a simulator exited"; done
    ((SECONDS < deadline)) || die "the simulators did not list $METERS meters within ${READY_TIMEOUT}s"
    sleep 0.2
done

PORTAL_PORT=$(tau_free_port)
METRICS_PORT=$(tau_free_port)
mkdir -p "$WORK/data"
PORTAL_ENV=(
    Application__Environment=Development
    Application__ListenAddress="127.0.0.1:$PORTAL_PORT"
    Application__MetricsAddress="127.0.0.1:$METRICS_PORT"
    Application__DataDirectory="$WORK/data"
    DATABASE_URL="postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/postgres"
    Authentication__DefaultAdminPassword="$(bench_password)"
    RUST_LOG=warn
)

phase "schema (tau-portal migrate), one site, $METERS Modbus devices polled every second"
timeout -k 5 120 env "${PORTAL_ENV[@]}" "$BIN" migrate </dev/null \
    >"$WORK/migrate.log" 2>&1 || die "tau-portal migrate failed"
psql_db -q -v meters="$METERS" -v port="$MODBUS_PORT" <<'SQL'
BEGIN;
INSERT INTO monitoring."Sites" ("Name", "TimeZone", "Notes") VALUES ('Bench site', 'UTC', 'scripts/bench-poller.sh');
INSERT INTO monitoring."Devices"
    ("SiteId", "ExternalId", "Name", "Model", "Source", "ModbusHost", "ModbusPort", "ModbusUnitId", "PollIntervalSeconds")
SELECT s."Id", format('meter-%s', lpad(n::text, 4, '0')), format('Meter %s', n), 'acuvim-ii', 'modbus-tcp',
       '127.0.0.1', :port + n, 1, 1
FROM monitoring."Sites" s, generate_series(0, :meters - 1) n;
COMMIT;
SQL

phase "portal (pinned to CPU $PORTAL_CPUS)"
taskset -c "$PORTAL_CPUS" env "${PORTAL_ENV[@]}" "$BIN" serve </dev/null >"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS "http://127.0.0.1:$PORTAL_PORT/health" >/dev/null 2>&1; do
    kill -0 "$PORTAL_PID" 2>/dev/null || die "the portal exited"
    ((SECONDS < deadline)) || die "the portal did not answer /health within ${READY_TIMEOUT}s"
    sleep 0.2
done

# A counter's total so far (over its labels), from a /metrics page on stdin.
counter_sum() { awk -v name="$1" '$1 == name || index($1, name "{") == 1 { s += $NF } END { print s + 0 }'; }

# CPU ticks of a process (user + system), with its exited children's when $2 is "tree" (the
# postmaster: backends that come and go), plus its live children's.
cpu_ticks() {
    local pid=$1 ticks child
    ticks=$(awk -v tree="${2:-}" '{ print $14 + $15 + (tree == "tree" ? $16 + $17 : 0) }' "/proc/$pid/stat")
    if [[ ${2:-} == tree ]]; then
        for child in $(pgrep -P "$pid"); do
            ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
        done
    fi
    echo "$ticks"
}
simulator_ticks() {
    local sum=0 pid
    for pid in "${SIMULATOR_PIDS[@]}"; do sum=$((sum + $(cpu_ticks "$pid"))); done
    echo "$sum"
}

# One sample: wall clock, portal CPU ticks, RSS (kB), successful and failed polls, missed
# cycles, stored readings, simulator and PostgreSQL CPU ticks, the runtime's late wakeups.
sample() {
    local metrics cpu rss readings
    metrics=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics")
    cpu=$(cpu_ticks "$PORTAL_PID")
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PORTAL_PID/status")
    readings=$(psql_db -At -c 'SELECT count(*) FROM monitoring."PowerMeasurements"')
    printf '%s %s %s %s %s %s %s %s %s %s\n' "$(date +%s.%N)" "$cpu" "$rss" \
        "$(awk '/^tau_portal_polls_total\{.*result="ok"/ { s += $NF } END { print s + 0 }' <<<"$metrics")" \
        "$(awk '/^tau_portal_polls_total\{.*result="failed"/ { s += $NF } END { print s + 0 }' <<<"$metrics")" \
        "$(counter_sum tau_portal_poll_missed_cycles_total <<<"$metrics")" \
        "$readings" "$(simulator_ticks)" "$(cpu_ticks "$POSTMASTER" tree)" \
        "$(counter_sum tau_portal_runtime_late_wakeups_total <<<"$metrics")"
}

phase "warm-up: ${WARMUP}s"
psql_db -q -c 'CREATE EXTENSION pg_stat_statements'
sleep "$WARMUP"
START=$(sample)
psql_db -q -At -c 'SELECT pg_stat_statements_reset()' >/dev/null
phase "measuring: ${SECONDS_MEASURED}s"
# RSS every tenth of the window, to tell growth that levels off from a leak, and the missed
# cycles and the runtime's late wakeups so far, to tell a steady trickle from one bad moment and
# a held-up portal from late replies.
RSS_SERIES=()
MISSED_SERIES=()
LATE_SERIES=()
BUFFERED_SERIES=()
for ((i = 1; i <= 10; i++)); do
    sleep "$(awk -v s="$SECONDS_MEASURED" 'BEGIN { print s / 10 }')"
    RSS_SERIES+=("$(awk '/^VmRSS:/ { print $2 }' "/proc/$PORTAL_PID/status")")
    page=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics")
    MISSED_SERIES+=("$(counter_sum tau_portal_poll_missed_cycles_total <<<"$page")")
    LATE_SERIES+=("$(counter_sum tau_portal_runtime_late_wakeups_total <<<"$page")")
    BUFFERED_SERIES+=("$(counter_sum tau_portal_readings_buffered <<<"$page")")
done
END=$(sample)
# Where PostgreSQL's time went during the window (it shares its CPUs with the simulator, so a
# busy database shows as late replies): the statements that took the most, per second.
DB_TOP=$(psql_db -At -F ' | ' -v window="$SECONDS_MEASURED" <<'SQL'
SELECT to_char(total_exec_time / 1000 / :window * 100, 'FM990.0') || ' %',
       to_char(calls::float8 / :window, 'FM999990.0') || ' calls/s',
       left(regexp_replace(query, '\s+', ' ', 'g'), 100)
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 10
SQL
)

read -r t0 cpu0 rss0 ok0 failed0 missed0 rows0 sim0 pg0 late0 <<<"$START"
read -r t1 cpu1 rss1 ok1 failed1 missed1 rows1 sim1 pg1 late1 <<<"$END"
TICK=$(getconf CLK_TCK)
((ok1 > ok0)) || die "no successful polls during the window"

phase "result"
awk -v m="$METERS" -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v tick="$TICK" \
    -v r0="$rss0" -v r1="$rss1" -v ok0="$ok0" -v ok1="$ok1" -v f0="$failed0" -v f1="$failed1" \
    -v mi0="$missed0" -v mi1="$missed1" -v w0="$rows0" -v w1="$rows1" \
    -v s0="$sim0" -v s1="$sim1" -v p0="$pg0" -v p1="$pg1" \
    -v series="${RSS_SERIES[*]}" -v missed_series="${MISSED_SERIES[*]}" \
    -v late_series="${LATE_SERIES[*]}" -v buffered_series="${BUFFERED_SERIES[*]}" -v la0="$late0" -v la1="$late1" -v db_top="$DB_TOP" -v others="$OTHER_CPUS" '
# The differences of a series of counter totals (space-separated) from `start` on.
function per_tenth(series, start,    v, k, i, out) {
    k = split(series, v, " ")
    for (i = 1; i <= k; i++) out = out sprintf("%d ", v[i] - (i > 1 ? v[i - 1] : start))
    return out
}
BEGIN {
    dt = t1 - t0; polls = ok1 - ok0; cpu = (c1 - c0) / tick
    rate = polls / dt; missed = mi1 - mi0; failed = f1 - f0
    printf "meters                      %d at a 1 s interval, %.1f s measured\n", m, dt
    printf "meters polled per second    %.1f  (%.3f x the %d wanted)\n", rate, rate / m, m
    printf "readings stored per second  %.1f\n", (w1 - w0) / dt
    printf "missed cycles               %d\n", missed
    printf "failed polls                %d\n", failed
    printf "portal CPU                  %.2f s = %.1f %% of one core\n", cpu, 100 * cpu / dt
    printf "CPU per 1,000 reads         %.3f s\n", 1000 * cpu / polls
    printf "simulator / PostgreSQL CPU  %.1f %% / %.1f %% of one core (CPUs %s)\n", \
        100 * (s1 - s0) / tick / dt, 100 * (p1 - p0) / tick / dt, others
    printf "RSS start / end             %.1f MB / %.1f MB (%+.1f %%)\n", r0 / 1024, r1 / 1024, 100 * (r1 - r0) / r0
    n = split(series, rss, " ")
    printf "RSS every %.0f s (MB)        ", dt / 10
    for (i = 1; i <= n; i++) printf "%.1f ", rss[i] / 1024
    printf "\n"
    printf "missed cycles per tenth     %s\n", per_tenth(missed_series, mi0)
    printf "late runtime wakeups        %d (>= 250 ms late), per tenth: %s\n", la1 - la0, per_tenth(late_series, la0)
    # Readings polled but not yet stored: a writer that keeps up holds about one second of them.
    nb = split(buffered_series, buffered, " ")
    printf "buffered readings per tenth %s\n", buffered_series
    kept_up = buffered[nb] <= 2 * m
    # Flat: the second half of the samples averages no more than the first half (RSS moves
    # up and down as the allocator reuses memory; a leak shows as a rising mean).
    for (i = 1; i <= n; i++) if (i <= n / 2) a += rss[i]; else b += rss[i]
    a /= n / 2; b /= n - n / 2
    flat = b <= a * 1.02
    printf "RSS mean, 2nd vs 1st half   %+.1f %%\n", 100 * (b - a) / a
    ok = rate >= 0.99 * m && missed == 0 && failed == 0 && flat && kept_up
    printf "database time, top statements (%% of one core during the window | calls | statement)\n"
    printf "%s\n", db_top
    printf "%s: %d meters at 1 s on one core, no missed cycles, the writes kept up, flat memory (mean RSS of the 2nd half within 2 %% of the 1st)\n", \
        ok ? "TARGET MET" : "TARGET MISSED", m
}'
