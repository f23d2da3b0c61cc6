# shellcheck shell=bash
# What every benchmark script shares. Sourced from the project root; defines functions and
# sources scripts/lib/pg.sh (and through it ensure.sh) and scripts/lib/proc.sh.
#
#   phase TEXT                    prints a "==> TEXT" heading
#   die TEXT                      prints "error: TEXT" and exits 1
#   bench_release_build [ARGS…]   cargo build --release of tau-portal (plus ARGS, e.g.
#                                 `--example bench_bill`), or with BENCH_SKIP_BUILD=1 only a check
#                                 that the binaries exist; sets TARGET_DIR (the target directory) and
#                                 BIN (target/release/tau-portal)
#   bench_show_logs FILE…         prints the last 20 lines of each non-empty FILE to stderr
#                                 (a failed run's cleanup: what the servers said)

# shellcheck source=scripts/lib/pg.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"
# shellcheck source=scripts/lib/proc.sh
source "$(dirname "${BASH_SOURCE[0]}")/proc.sh"

phase() { printf '\n==> %s\n' "$*"; }

die() {
    echo "error: $*" >&2
    exit 1
}

bench_release_build() {
    TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
    BIN=$TARGET_DIR/release/tau-portal
    if [[ ${BENCH_SKIP_BUILD:-} == 1 ]]; then
        phase "build: skipped (BENCH_SKIP_BUILD=1), using $BIN"
        [[ -x $BIN ]] || die "$BIN does not exist; run without BENCH_SKIP_BUILD=1"
    else
        phase "build (release)"
        cargo build --release --locked --bin tau-portal "$@"
    fi
}

bench_show_logs() {
    local log
    for log in "$@"; do
        if [[ -s $log ]]; then
            echo "--- last lines of $(basename "$log") ---" >&2
            tail -n 20 "$log" >&2 || true
        fi
    done
}
