#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests and local serving: start | stop | env | status.
#
#   eval "$(scripts/postgres.sh start)"   # inits and starts a cluster (binaries: see below)
#   psql -c 'select 1'                     # PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE set
#   scripts/postgres.sh stop               # stops the server (PG_CLEAN=1 also deletes the cluster)
#
# The cluster lives in $PG_DIR (default: <repo>/.cache/pg), listens on 127.0.0.1 only, on a free
# port chosen at first start (kept in $PG_DIR/port), with password (scram) authentication for
# the role $PG_ROLE (default graphpipe; password generated into $PG_DIR/password, mode 600).
# When run as root the server runs as the `postgres` user (created as a system user if absent),
# since PostgreSQL refuses to run as root; $PG_DIR must then be reachable by that user.
# Only `start` prints export lines (stdout); progress goes to stderr.
# Binaries: $PG_BIN if set; else the PostgreSQL bundled in the project's pgserver wheel (a dev
# dependency, `make setup`), which has the pgvector extension; else Debian's (`postgresql`,
# installed if missing; it has no pgvector, so serving tables fall back to real[]).
set -euo pipefail

cmd=${1:-}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_DIR=${PG_DIR:-$repo/.cache/pg}
PG_ROLE=${PG_ROLE:-graphpipe}
PG_DB=${PG_DB:-graphpipe}
DATA=$PG_DIR/data
SOCK=$PG_DIR/sock
LOG=$PG_DIR/server.log

say() { echo "postgres.sh: $*" >&2; }

# The bin folder of pgserver's bundled PostgreSQL in the project's Python (no import: a lookup).
pgserver_bin() {
  local py=${GRAPHPIPE_PYTHON:-$repo/.venv/bin/python} d
  [[ -x $py ]] || return 1
  d=$("$py" -c 'import importlib.util as u, pathlib as p; s = u.find_spec("pgserver")
print(p.Path(s.origin).parent / "pginstall" / "bin" if s and s.origin else "")' 2>/dev/null) || return 1
  [[ -n $d && -x $d/pg_ctl && -x $d/initdb && -x $d/postgres ]] && echo "$d"
}

find_bin() {
  local d
  if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return 0; fi
  if d=$(pgserver_bin); then echo "$d"; return 0; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x $d/pg_ctl && -x $d/initdb && -x $d/postgres ]]; then echo "$d"; return 0; fi
  done
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  return 1
}

install_server() {
  say "PostgreSQL binaries not found: installing Debian package postgresql"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
}

BIN=$(find_bin || true)
if [[ -z $BIN && $cmd == start ]]; then
  install_server
  BIN=$(find_bin) || { say "no PostgreSQL server binaries after install"; exit 1; }
fi

# as_server CMD...: run CMD as the server's (non-root) user.
if [[ $(id -u) -eq 0 ]]; then
  RUN_AS=${PG_OS_USER:-postgres}
  as_server() { runuser -u "$RUN_AS" -- "$@"; }
else
  RUN_AS=$(id -un)
  as_server() { "$@"; }
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

print_env() {
  echo "export PGHOST=127.0.0.1"
  echo "export PGPORT=$(cat "$PG_DIR/port")"
  echo "export PGUSER=$PG_ROLE"
  echo "export PGPASSWORD=$(cat "$PG_DIR/password")"
  echo "export PGDATABASE=$PG_DB"
}

running() { [[ -n $BIN && -f $DATA/PG_VERSION ]] && as_server "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

init_cluster() {
  if [[ $(id -u) -eq 0 ]] && ! id "$RUN_AS" >/dev/null 2>&1; then
    say "creating system user $RUN_AS"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS"
  fi
  mkdir -p "$PG_DIR" "$SOCK"
  chmod 700 "$PG_DIR"
  [[ -f $PG_DIR/password ]] || python3 -c 'import secrets; print(secrets.token_hex(16))' >"$PG_DIR/password"
  chmod 600 "$PG_DIR/password"
  [[ -f $PG_DIR/port ]] || free_port >"$PG_DIR/port"
  if [[ $(id -u) -eq 0 ]]; then chown -R "$RUN_AS" "$PG_DIR"; fi
  if ! as_server test -w "$PG_DIR"; then
    say "$RUN_AS cannot write $PG_DIR (a parent folder not searchable?): set PG_DIR elsewhere"
    exit 1
  fi
  local major
  major=$("$BIN/postgres" --version | sed -E 's/.* ([0-9]+)[.].*/\1/')
  if [[ -f $DATA/PG_VERSION && $(cat "$DATA/PG_VERSION") != "$major" ]]; then
    say "$DATA holds a PostgreSQL $(cat "$DATA/PG_VERSION") cluster but $BIN is $major:"
    say "  set PG_BIN to that version's bin folder, or PG_CLEAN=1 $0 stop to delete the cluster"
    exit 1
  fi
  if [[ ! -f $DATA/PG_VERSION ]]; then
    say "initdb in $DATA (as $RUN_AS)"
    as_server "$BIN/initdb" -D "$DATA" -U "$PG_ROLE" --pwfile="$PG_DIR/password" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
}

case $cmd in
  start)
    init_cluster
    if ! running; then
      port=$(cat "$PG_DIR/port")
      say "starting $("$BIN/postgres" --version) on 127.0.0.1:$port"
      as_server "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
        -o "-p $port -k $SOCK -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null \
        || { say "server failed to start; log:"; tail -20 "$LOG" >&2; exit 1; }
    fi
    eval "$(print_env)"
    psql=psql
    [[ -x $BIN/psql ]] && psql=$BIN/psql
    if ! "$psql" -d postgres -Atqc "select 1 from pg_database where datname = '$PG_DB'" | grep -q 1; then
      "$psql" -d postgres -qc "create database $PG_DB" >/dev/null
    fi
    print_env
    ;;
  stop)
    if running; then
      as_server "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
      say "stopped"
    fi
    if [[ ${PG_CLEAN:-0} == 1 ]]; then rm -rf "$PG_DIR"; fi
    ;;
  env)
    [[ -f $PG_DIR/port ]] || { say "no cluster in $PG_DIR: run start"; exit 1; }
    print_env
    ;;
  status)
    if running; then echo running; else echo stopped; exit 3; fi
    ;;
  *)
    echo "usage: $0 start|stop|env|status   (PG_DIR, PG_ROLE, PG_DB, PG_OS_USER, PG_CLEAN)" >&2
    exit 2
    ;;
esac
