#!/usr/bin/env bash
# Makes sure this machine can run `npm test` (which runs this script first), so that no test has to skip:
#   programs   promtool + prometheus (rules, unit tests, live dashboards), docker-compose (compose file check),
#              redis-server and PostgreSQL's initdb/pg_ctl/postgres with pg_stat_statements (tests that start
#              and kill their own servers)
#   services   PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379
# Missing programs are installed with apt-get when run as root; otherwise it fails naming the command to run.
# Services are never started here: they are shared, and whoever runs them decides how.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_HOST=127.0.0.1 REDIS_PORT=6379
MIN_NODE_MAJOR=20 MIN_NODE_MINOR=19

fail() { printf 'test prerequisites: %s\n' "$*" >&2; exit 1; }

# PostgreSQL's server programs live off PATH on Debian (/usr/lib/postgresql/<version>/bin).
pg_bindir() {
  local dir
  for dir in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")" /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

# The extension ships with the server on Debian (postgresql-<version>), separately (contrib) elsewhere.
has_pg_stat_statements() {
  local bindir=$1 sharedir control
  sharedir=$([ -x "$bindir/pg_config" ] && "$bindir/pg_config" --sharedir || true)
  for control in "$sharedir/extension/pg_stat_statements.control" /usr/share/postgresql/*/extension/pg_stat_statements.control; do
    [ -f "$control" ] && return 0
  done
  return 1
}

# Missing pieces as Debian/Ubuntu package names (one package may provide several programs).
missing_packages() {
  local packages=() bindir
  { command -v promtool && command -v prometheus; } >/dev/null || packages+=(prometheus)
  command -v docker-compose >/dev/null || packages+=(docker-compose)
  command -v redis-server >/dev/null || packages+=(redis-server)
  if ! bindir=$(pg_bindir) || ! has_pg_stat_statements "$bindir"; then packages+=(postgresql); fi
  echo "${packages[*]}"
}

node_version=$(node -p 'process.versions.node')
IFS=. read -r major minor _ <<<"$node_version"
if [ "$major" -lt "$MIN_NODE_MAJOR" ] || { [ "$major" -eq "$MIN_NODE_MAJOR" ] && [ "$minor" -lt "$MIN_NODE_MINOR" ]; }; then
  fail "Node $node_version is too old: Floodgate needs Node >= $MIN_NODE_MAJOR.$MIN_NODE_MINOR."
fi

missing=$(missing_packages)
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    fail "missing programs the tests need (promtool, prometheus, docker-compose, redis-server, PostgreSQL server). Install them, then run npm test again:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing
(or run npm test as root, which installs them)."
  fi
  command -v apt-get >/dev/null || fail "missing packages: $missing, and no apt-get to install them with: install them with your package manager."
  printf 'test prerequisites: installing %s\n' "$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Packaged daemons (prometheus, redis-server) must not start on their default ports during the install:
  # the tests start their own on free ports. policy-rc.d is Debian's switch for that; ours is removed after.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  trap 'if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  # shellcheck disable=SC2086 # one word per package
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
  missing=$(missing_packages)
  [ -z "$missing" ] || fail "apt-get install did not provide everything; still missing: $missing"
fi

# A TCP connect is enough to tell "not running" from "running"; the tests report anything subtler.
listening() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
listening "$PG_HOST" "$PG_PORT" ||
  fail "PostgreSQL is not answering on $PG_HOST:$PG_PORT. The tests need it running (user postgres, trust authentication), e.g.: pg_ctlcluster 15 main start"
listening "$REDIS_HOST" "$REDIS_PORT" ||
  fail "Redis is not answering on $REDIS_HOST:$REDIS_PORT. The tests need it running, e.g.: redis-server --daemonize yes --save '' --appendonly no"
exit 0
