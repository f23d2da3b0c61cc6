#!/usr/bin/env bash
# Benchmark of the forwardAuth gate, GET /api/auth/check (the request Traefik makes for every
# request of an embedded Grafana dashboard), against a static nginx `return 200` as the baseline
# of what this machine can serve at all.
#
# In one run, everything on 127.0.0.1: installs what is missing (wrk, nginx, curl, PostgreSQL 15),
# builds the portal in release mode, starts a throwaway PostgreSQL cluster, the portal
# (Development mode, at the deployed default RUST_LOG=info) and an nginx instance, signs in with
# curl to get a session cookie, then runs wrk against both (a short warm-up, then the measured
# run) in two setups, and prints req/s, p99 latency, the ratio portal/nginx and PASS / TARGET
# MISSED against the targets (ratio >= 0.5, portal p99 < 5 ms) for each:
#   unpinned  wrk -t2 and both servers anywhere on the machine's cores (they compete with wrk);
#   pinned    the servers on CPU 0 and wrk -t1 on CPU 1 (taskset), so the load generator does not
#             take the server's core; only on a machine with at least 2 CPUs.
# Everything it started is stopped on any exit.
#
# It is a measurement, not a test: it exits 0 when a target is missed (and says so on a
# `TARGET MISSED:` line), and non-zero only when the benchmark itself could not run or its
# figures would be meaningless (e.g. the session did not hold and wrk measured 401s).
#
# Fairness: wrk, nginx and the portal share the machine's cores. The portal runs on Tokio's
# multi-threaded runtime (one worker per core), so nginx gets `worker_processes` = the number
# of cores too, and `keepalive_requests` is raised so that nginx, like the portal, keeps wrk's
# connections open for the whole run.
#
# Environment: BENCH_DURATION (seconds of the measured run, default 10), BENCH_CONNECTIONS
# (default 64), BENCH_SETUPS (default "unpinned pinned"), BENCH_SKIP_BUILD=1 to use the existing
# target/release/tau-portal as is, CARGO_TARGET_DIR (default target/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
SETUPS=${BENCH_SETUPS:-unpinned pinned}
THREADS=2
WARMUP_SECONDS=2
TARGET_RATIO=0.5
TARGET_P99_MS=5
ADMIN_EMAIL=bench@example.com

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "BENCH_DURATION must be a positive number of seconds, got '$DURATION'"
if [[ ! $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || ((CONNECTIONS < THREADS)); then
    die "BENCH_CONNECTIONS must be a whole number >= $THREADS, got '$CONNECTIONS'"
fi

phase "tools"
ensure_system_packages postgres
ensure_apt_packages wrk:wrk nginx:nginx curl:curl taskset:util-linux
NGINX=$(command -v nginx || true)
[[ -n $NGINX ]] || NGINX=/usr/sbin/nginx
CPUS=$(nproc)
# The portal is measured with as many nginx workers as it has runtime threads.
NGINX_WORKERS=$CPUS
echo "wrk: $(wrk -v 2>&1 | head -n 1 || true)"
echo "nginx: $("$NGINX" -v 2>&1)"

bench_release_build

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tau-bench.XXXXXX")
# The postgres user (cluster) and nginx's workers (nobody, when we are root) traverse it.
chmod 755 "$WORK"
PG_BASE=$WORK/pg
PORTAL_PID=
NGINX_PID=
status=0

cleanup() {
    local rc=$?
    [[ $status -ne 0 ]] || status=$rc
    if [[ -n $NGINX_PID ]]; then stop_process "$NGINX_PID"; fi
    if [[ -n $PORTAL_PID ]]; then stop_process "$PORTAL_PID"; fi
    pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1 || true
    if [[ $status -ne 0 && $status -ne 130 ]]; then
        bench_show_logs "$WORK/portal.log" "$WORK/nginx/error.log" "$PG_BASE/postgres.log"
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

phase "PostgreSQL 15 (throwaway cluster)"
pg_cluster_init "$PG_BASE"
pg_cluster_start_on_free_port "$PG_BASE" -c fsync=off -c synchronous_commit=off -c full_page_writes=off
echo "listening on 127.0.0.1:${PG_CLUSTER_PORT}"

phase "portal (release, Development, RUST_LOG=info)"
ADMIN_PASSWORD=$(bench_password)
PORTAL_PORT=$(tau_free_port)
PORTAL=http://127.0.0.1:$PORTAL_PORT
mkdir -p "$WORK/data"
env Application__Environment=Development \
    Application__ListenAddress="127.0.0.1:$PORTAL_PORT" \
    Application__DataDirectory="$WORK/data" \
    DATABASE_URL="postgres://postgres@127.0.0.1:${PG_CLUSTER_PORT}/postgres" \
    Authentication__DefaultAdminEmail="$ADMIN_EMAIL" \
    Authentication__DefaultAdminPassword="$ADMIN_PASSWORD" \
    RUST_LOG=info \
    "$BIN" serve >"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!
bench_wait_http "$PORTAL/health" "$PORTAL_PID" "the portal" 120
echo "listening on $PORTAL"

phase "sign in as $ADMIN_EMAIL"
SESSION=$(bench_sign_in "$PORTAL" "$ADMIN_EMAIL" "$ADMIN_PASSWORD" "$WORK/cookies.txt")
COOKIE="Cookie: tau_session=$SESSION"
code=$(curl -sS -D "$WORK/check-headers.txt" -o /dev/null -w '%{http_code}' -H "$COOKIE" "$PORTAL/api/auth/check")
[[ $code == 200 ]] || die "GET /api/auth/check with the session answered $code, expected 200"
USER_HEADER=$(tr -d '\r' <"$WORK/check-headers.txt" | sed -n 's/^[Xx]-[Ww][Ee][Bb][Aa][Uu][Tt][Hh]-[Uu][Ss][Ee][Rr]: *//p')
[[ -n $USER_HEADER ]] || die "GET /api/auth/check answered 200 without an X-WEBAUTH-USER header"
echo "GET /api/auth/check -> 200, X-WEBAUTH-USER: $USER_HEADER"

phase "nginx baseline (worker_processes $NGINX_WORKERS, return 200)"
NGINX_PORT=$(tau_free_port)
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<NGINX_CONF
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    # The default (1000) would make nginx close every wrk connection after 1000 requests; the
    # portal never does.
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            default_type text/plain;
            return 200 "ok";
        }
    }
}
NGINX_CONF
# -e: the error log before the configuration is read (else the compiled-in /var/log/nginx).
"$NGINX" -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
NGINX_URL=http://127.0.0.1:$NGINX_PORT/
bench_wait_http "$NGINX_URL" "$NGINX_PID" "nginx" 30
echo "listening on $NGINX_URL"

# run_wrk NAME URL [wrk args...]: a warm-up, then the measured run, with $WRK (the wrk command
# of the setup); its output goes to $WORK/wrk-NAME.txt and to the screen. timeout bounds wrk
# should it ever hang.
run_wrk() {
    local name=$1 url=$2
    shift 2
    phase "wrk: $name (warm-up ${WARMUP_SECONDS}s, then ${DURATION}s): ${WRK[*]}"
    IDLE_BEFORE[$name]=$(cpu_idle_percent 2>/dev/null || echo unknown)
    timeout -k 5 $((WARMUP_SECONDS + 30)) \
        "${WRK[@]}" -c"$CONNECTIONS" -d"${WARMUP_SECONDS}s" "$@" "$url" >/dev/null
    timeout -k 5 $((DURATION + 30)) \
        "${WRK[@]}" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" >"$WORK/wrk-$name.txt"
    sed 's/^/    /' "$WORK/wrk-$name.txt"
}

# pin_servers CPUS: moves every thread of the portal and of nginx's master and workers to CPUS.
pin_servers() {
    local pid
    for pid in "$PORTAL_PID" "$NGINX_PID" $(pgrep -P "$NGINX_PID"); do
        taskset -a -p -c "$1" "$pid" >/dev/null
    done
}

# wrk_rps FILE / wrk_p99_ms FILE / wrk_non2xx FILE: figures from wrk's report. Latencies are
# printed with a unit (us, ms, s, m, h); p99 is converted to milliseconds.
wrk_rps() { awk '$1 == "Requests/sec:" { print $2 }' "$1"; }
wrk_p99_ms() {
    awk '$1 == "99%" {
        v = $2; n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) { exit 1 }
        printf "%.3f\n", n * f
    }' "$1"
}
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF }' "$1"; }

# cpu_idle_percent: how idle the CPUs were over the next second (from /proc/stat). Anything
# else busy on the machine (a build, tests) skews both figures; the summary says so.
cpu_idle_percent() {
    local a b
    a=$(awk '$1 == "cpu" { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 1
    b=$(awk '$1 == "cpu" { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "%.0f\n", (y[2] > x[2]) ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 100
    }'
}
declare -A IDLE_BEFORE=()

# measure SETUP: both wrk runs in the current setup, then its summary.
measure() {
    local setup=$1
    run_wrk nginx "$NGINX_URL"
    run_wrk portal "$PORTAL/api/auth/check" -H "$COOKIE"

    NGINX_RPS=$(wrk_rps "$WORK/wrk-nginx.txt")
    NGINX_P99=$(wrk_p99_ms "$WORK/wrk-nginx.txt" || true)
    PORTAL_RPS=$(wrk_rps "$WORK/wrk-portal.txt")
    PORTAL_P99=$(wrk_p99_ms "$WORK/wrk-portal.txt" || true)
    for v in "$NGINX_RPS" "$NGINX_P99" "$PORTAL_RPS" "$PORTAL_P99"; do
        [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "could not read req/s and p99 from wrk's output (got '$v')"
    done
    for name in nginx portal; do
        bad=$(wrk_non2xx "$WORK/wrk-$name.txt")
        [[ -z $bad ]] || die "$bad responses from $name were not 2xx/3xx: the figures are void"
    done
    awk -v p="$PORTAL_RPS" 'BEGIN { exit !(p > 0) }' || die "wrk completed no request against the portal"
    awk -v n="$NGINX_RPS" 'BEGIN { exit !(n > 0) }' || die "wrk completed no request against nginx"
    RATIO=$(awk -v p="$PORTAL_RPS" -v n="$NGINX_RPS" 'BEGIN { printf "%.2f", p / n }')
    errors=$(grep -h 'Socket errors:' "$WORK/wrk-nginx.txt" "$WORK/wrk-portal.txt" || true)

    phase "summary: $setup"
    printf '  %s, %s CPUs, %s -c%s -d%ss --latency (after a %ss warm-up), all on 127.0.0.1, RUST_LOG=info\n' \
        "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$CPUS" \
        "${WRK[*]}" "$CONNECTIONS" "$DURATION" "$WARMUP_SECONDS"
    printf '  %-40s %12s %10s\n' "" "req/s" "p99"
    printf '  %-40s %12.2f %7.2f ms\n' "nginx return 200 ($NGINX_WORKERS workers, baseline)" "$NGINX_RPS" "$NGINX_P99"
    printf '  %-40s %12.2f %7.2f ms\n' "portal GET /api/auth/check" "$PORTAL_RPS" "$PORTAL_P99"
    printf '  %-40s %12s\n' "ratio portal/nginx" "$RATIO"
    echo "  CPU idle just before each run: nginx ${IDLE_BEFORE[nginx]}%, portal ${IDLE_BEFORE[portal]}%"
    for name in nginx portal; do
        if [[ ${IDLE_BEFORE[$name]} =~ ^[0-9]+$ ]] && ((IDLE_BEFORE[$name] < 90)); then
            echo "  warning: something else was using the CPUs before the $name run; the figures are skewed (rerun on a quiet machine)"
        fi
    done
    if [[ -n $errors ]]; then
        echo "  note: wrk reported $errors"
    fi
    if awk -v r="$RATIO" -v t="$TARGET_RATIO" 'BEGIN { exit !(r >= t) }'; then
        echo "PASS ($setup): ratio portal/nginx $RATIO >= $TARGET_RATIO"
    else
        echo "TARGET MISSED ($setup): ratio portal/nginx $RATIO < $TARGET_RATIO"
    fi
    if awk -v p="$PORTAL_P99" -v t="$TARGET_P99_MS" 'BEGIN { exit !(p < t) }'; then
        printf 'PASS (%s): portal p99 %.2f ms < %s ms\n' "$setup" "$PORTAL_P99" "$TARGET_P99_MS"
    else
        printf 'TARGET MISSED (%s): portal p99 %.2f ms >= %s ms\n' "$setup" "$PORTAL_P99" "$TARGET_P99_MS"
    fi
}

for setup in $SETUPS; do
    case $setup in
        unpinned)
            WRK=(wrk -t"$THREADS")
            pin_servers "0-$((CPUS - 1))"
            ;;
        pinned)
            if ((CPUS < 2)); then
                echo "pinned setup skipped: $CPUS CPU"
                continue
            fi
            WRK=(taskset -c 1 wrk -t1)
            pin_servers 0
            ;;
        *) die "BENCH_SETUPS: unknown setup '$setup' (unpinned, pinned)" ;;
    esac
    measure "$setup"
done
