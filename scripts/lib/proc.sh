# shellcheck shell=bash
# Process helpers shared by the benchmark scripts. Sourced; defines functions only.

# stop_process PID: SIGTERM, then wait up to 15 s for it to exit, then SIGKILL.
stop_process() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
