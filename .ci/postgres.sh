#!/usr/bin/env bash
# Install (if needed) and start a local PostgreSQL server, with a database for the search tests.
# Prints the URL to use as SPBENCH_TEST_POSTGRES.
set -euo pipefail
# Everything but the URL goes to stderr: tools here print notices (e.g. "Removed stale pid file.").
# The block's redirection also keeps the caller's stdout out of the server daemon, which would
# otherwise hold the pipe of `$(.ci/postgres.sh)` open forever.
{
  if ! command -v pg_ctlcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
  fi
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
  pg_ctlcluster "$version" main start 2>/dev/null || true
  for _ in $(seq 30); do pg_isready -q -h localhost && break; sleep 1; done
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='spbench'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE USER spbench PASSWORD 'spbench'\""
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='spbench'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE DATABASE spbench OWNER spbench\""
} >&2
echo "postgresql://spbench:spbench@localhost/spbench"
