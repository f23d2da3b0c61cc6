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
#   bench_password                prints 64 random hex characters (a seeded admin's password: no
#                                 shell, URL or form escaping concerns)
#   bench_token PREFIX            prints PREFIX + 256 random bits in URL-safe base64 without
#                                 padding, the form of the portal's API keys (tau_) and fleet
#                                 tokens (taufleet_); its SHA-256 is what the portal stores
#   bench_wait_http URL PID WHAT SECONDS
#                                 polls URL until it answers 2xx; dies when PID exits first or
#                                 the deadline passes (WHAT names the server in the message)
#   bench_sign_in URL EMAIL PASSWORD JAR
#                                 signs in to the portal at URL with curl (GET /login for the
#                                 CSRF field, POST /login), keeps the cookies in JAR and prints
#                                 the tau_session cookie's value; dies when the portal refuses

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

bench_password() {
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

bench_token() {
    printf '%s%s\n' "$1" "$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
}

bench_wait_http() {
    local url=$1 pid=$2 what=$3 deadline=$((SECONDS + $4))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before it answered $url"
        ((SECONDS < deadline)) || die "$what did not answer $url within $4 s"
        sleep 0.1
    done
}

bench_sign_in() {
    local url=$1 email=$2 password=$3 jar=$4 page csrf code session
    page=$(curl -fsS -c "$jar" -b "$jar" "$url/login") || die "GET /login failed"
    csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n 1)
    [[ -n $csrf ]] || die "GET /login: no csrf field in the sign-in page"
    code=$(curl -sS -c "$jar" -b "$jar" -o /dev/null -w '%{http_code}' \
        --data-urlencode "csrf=$csrf" --data-urlencode "email=$email" \
        --data-urlencode "password=$password" --data-urlencode "next=/" "$url/login")
    [[ $code == 303 ]] || die "POST /login answered $code, expected 303"
    # Netscape cookie jar: name in field 6, value in field 7 (HttpOnly lines start with #HttpOnly_).
    session=$(awk -F'\t' '$6 == "tau_session" { v = $7 } END { print v }' "$jar")
    [[ -n $session ]] || die "POST /login answered 303 but set no tau_session cookie"
    printf '%s\n' "$session"
}
