#!/usr/bin/env bash
# Brings up the PostgreSQL and Redis the tests use (127.0.0.1:5432 trust auth, database `test`;
# 127.0.0.1:6379), installing them from Debian's packages first on a machine that lacks them;
# also installs the headless Chromium and chromedriver the web app's end-to-end tests drive, and
# docker-compose, whose `config` the deployment tests run on the compose files.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_ctlcluster >/dev/null || ! command -v redis-server >/dev/null; then
  echo "installing postgresql and redis-server (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing chromium and chromium-driver (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# `docker-compose config` checks the compose files in the tests (no Docker engine needed); a
# Compose v2 plugin, where there is one, is used instead
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
  echo "installing docker-compose (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi

pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  hba=/etc/postgresql/$pg_version/main/pg_hba.conf
  # trust on loopback only: these are throwaway test servers on this machine
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
fi
for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
pg_isready -h 127.0.0.1 -p 5432
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
redis-cli -h 127.0.0.1 -p 6379 ping
