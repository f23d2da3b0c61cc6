# shellcheck shell=bash
# Installs the system tools the project scripts need, when they are missing.
# Sourced by scripts/test.sh and scripts/dev.sh; defines functions only.
#
#   ensure_system_packages [postgres] [node]   apt-get the missing pieces (root only)
#   ensure_apt_packages CMD:PKG...              apt-get PKG when command CMD is missing (root only)
#   ensure_python_venv                          python3 with the venv module (for pip-installed tools)
#   ensure_rust_components                      rustfmt + clippy through rustup
#   tau_pg_bindir                               prints the PostgreSQL 15 bin directory
#
# apt-get update runs at most once per script run, and only when something is missing.

# PostgreSQL 15 as packaged by Debian (postgresql-15); TAU_TEST_PG_BINDIR can point elsewhere.
tau_pg_bindir() {
    if [[ -n "${TAU_TEST_PG_BINDIR:-}" && -x "${TAU_TEST_PG_BINDIR}/initdb" ]]; then
        printf '%s\n' "$TAU_TEST_PG_BINDIR"
    else
        printf '%s\n' /usr/lib/postgresql/15/bin
    fi
}

_ENSURE_APT_UPDATED=0

# _ensure_apt_install PKG... : install packages non-interactively (root only).
_ensure_apt_install() {
    if [[ $EUID -ne 0 ]]; then
        echo "error: missing system packages: $* (run as root to install them automatically, or: sudo apt-get install $*)" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing system packages: $* and apt-get is not available to install them" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ $_ENSURE_APT_UPDATED -eq 0 ]]; then
        echo "==> apt-get update"
        apt-get update -q </dev/null
        _ENSURE_APT_UPDATED=1
    fi
    echo "==> apt-get install $*"
    # Without systemd, the postgresql package's postinst would start the distribution's
    # "main" cluster on port 5432 and leave it running. A policy-rc.d answering 101 tells
    # invoke-rc.d not to start services (Debian's Docker images ship exactly this file);
    # we only create it for the duration of the install when it is absent.
    local policy=/usr/sbin/policy-rc.d created_policy=0 rc=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, created by tau-portal scripts/lib/ensure.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    apt-get install -y -q --no-install-recommends "$@" </dev/null || rc=$?
    if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi
    return "$rc"
}

# ensure_system_packages [postgres] [node]
#   postgres: PostgreSQL 15 server + client binaries, runuser, and (as root) the postgres OS user
#   node:     node and npm (for the TimescaleDB test double)
ensure_system_packages() {
    local want_pg=0 want_node=0 arg
    for arg in "$@"; do
        case $arg in
            postgres) want_pg=1 ;;
            node) want_node=1 ;;
            *) echo "ensure_system_packages: unknown component '$arg'" >&2; return 2 ;;
        esac
    done

    local missing=()
    if [[ $want_pg -eq 1 ]]; then
        local bindir
        bindir=$(tau_pg_bindir)
        local b
        for b in initdb pg_ctl postgres psql pg_isready; do
            if [[ ! -x $bindir/$b ]]; then missing+=(postgresql-15); break; fi
        done
        command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
    fi
    # npm is checked separately below: NodeSource's nodejs bundles npm, Debian's does not,
    # and Debian's npm package conflicts with NodeSource's nodejs.
    if [[ $want_node -eq 1 ]] && ! command -v node >/dev/null 2>&1; then
        missing+=(nodejs)
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        _ensure_apt_install "${missing[@]}" || return 1
    fi
    if [[ $want_node -eq 1 ]] && ! command -v npm >/dev/null 2>&1; then
        _ensure_apt_install npm || return 1
    fi

    # postgresql-common creates this user; a machine with hand-installed binaries may lack it.
    # initdb refuses to run as root, so root runs the clusters as postgres.
    if [[ $want_pg -eq 1 && $EUID -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
        echo "==> creating the postgres OS user"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

# ensure_apt_packages CMD:PKG... : installs Debian package PKG for every command CMD that is not
# found (on PATH, or in /usr/sbin and /sbin, which a non-root PATH may lack), e.g.
# `ensure_apt_packages wrk:wrk nginx:nginx`.
ensure_apt_packages() {
    local missing=() spec cmd pkg
    for spec in "$@"; do
        cmd=${spec%%:*}
        pkg=${spec#*:}
        if [[ -z $cmd || -z $pkg || $spec != *:* ]]; then
            echo "ensure_apt_packages: expected CMD:PKG, got '$spec'" >&2
            return 2
        fi
        if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd && ! -x /sbin/$cmd ]]; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        _ensure_apt_install "${missing[@]}" || return 1
    fi
}

ensure_rust_components() {
    local comps=()
    cargo fmt --version >/dev/null 2>&1 || comps+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || comps+=(clippy)
    [[ ${#comps[@]} -eq 0 ]] && return 0
    if ! command -v rustup >/dev/null 2>&1; then
        echo "error: cargo ${comps[*]} missing and rustup is not available to add them" >&2
        return 1
    fi
    echo "==> rustup component add ${comps[*]}"
    rustup component add "${comps[@]}"
}

# Debian's python3 lacks the venv module until python3-venv is installed (pyenv builds have it).
ensure_python_venv() {
    command -v python3 >/dev/null 2>&1 || _ensure_apt_install python3 || return 1
    python3 -c 'import ensurepip, venv' 2>/dev/null || _ensure_apt_install python3-venv
}
