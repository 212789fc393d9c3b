#!/usr/bin/env bash
# A throwaway Spark standalone cluster on 127.0.0.1: one master and one worker (2 cores, 2g),
# run from the pyspark installed in the venv (its sbin/ has spark-daemon.sh but, in the pip
# package, no start-master.sh / start-worker.sh, so the daemons are started the same way those
# scripts do it). Ports are picked free at start; pids, logs, conf and work dirs live in DIR.
#
#   scripts/cluster.sh start DIR   # prints the master URL (spark://127.0.0.1:PORT) once a
#                                  # worker is ALIVE in the master's /json/ status
#   scripts/cluster.sh stop DIR    # stops the worker and the master started in DIR, waits
#   scripts/cluster.sh status DIR  # prints the master's JSON status
#
# Environment: GRAPHPIPE_PYTHON (default .venv/bin/python), CLUSTER_WORKER_CORES (2),
# CLUSTER_WORKER_MEMORY (2g), CLUSTER_START_TIMEOUT seconds (90).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action="$1"
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${GRAPHPIPE_PYTHON:-$root/.venv/bin/python}"

SPARK_HOME="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME
export SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1
export SPARK_PID_DIR="$dir/pids" SPARK_LOG_DIR="$dir/logs" SPARK_CONF_DIR="$dir/conf"
export SPARK_WORKER_DIR="$dir/work" SPARK_IDENT_STRING="graphpipe"
export PYSPARK_PYTHON="$py"
daemon="$SPARK_HOME/sbin/spark-daemon.sh"
master_class=org.apache.spark.deploy.master.Master
worker_class=org.apache.spark.deploy.worker.Worker

pid_of() { cat "$SPARK_PID_DIR/spark-$SPARK_IDENT_STRING-$1-1.pid" 2>/dev/null || true; }

is_java() { [ -n "$1" ] && [[ "$(ps -p "$1" -o comm= 2>/dev/null)" =~ java ]]; }

stop_one() {  # SIGTERM the daemon from our pid file, wait up to 15 s, then SIGKILL
  local pid
  pid="$(pid_of "$1")"
  if is_java "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do is_java "$pid" || break; sleep 0.5; done
    if is_java "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    echo "stopped $1 (pid $pid)" >&2
  fi
  rm -f "$SPARK_PID_DIR/spark-$SPARK_IDENT_STRING-$1-1.pid"
}

master_json() {  # the master's status page as JSON on stdout
  "$py" - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2) as r:
    print(r.read().decode())
EOF
}

alive_workers() {
  master_json "$1" 2>/dev/null | "$py" -c '
import json, sys
status = json.load(sys.stdin)
print(sum(w.get("state") == "ALIVE" for w in status.get("workers", [])))' 2>/dev/null || echo 0
}

case "$action" in
  start)
    if is_java "$(pid_of $master_class)" || is_java "$(pid_of $worker_class)"; then
      echo "a cluster is already running from $dir; stop it first" >&2
      exit 1
    fi
    mkdir -p "$SPARK_PID_DIR" "$SPARK_LOG_DIR" "$SPARK_CONF_DIR" "$SPARK_WORKER_DIR"
    read -r master_port master_ui worker_ui < <("$py" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()')
    url="spark://127.0.0.1:$master_port"
    "$daemon" start "$master_class" 1 --host 127.0.0.1 --port "$master_port" \
      --webui-port "$master_ui" >&2
    "$daemon" start "$worker_class" 1 --host 127.0.0.1 --webui-port "$worker_ui" \
      --cores "${CLUSTER_WORKER_CORES:-2}" --memory "${CLUSTER_WORKER_MEMORY:-2g}" \
      --work-dir "$SPARK_WORKER_DIR" "$url" >&2
    deadline=$((SECONDS + ${CLUSTER_START_TIMEOUT:-90}))
    until [ "$(alive_workers "$master_ui")" -ge 1 ]; do
      if [ $SECONDS -ge $deadline ] || ! is_java "$(pid_of $master_class)" \
          || ! is_java "$(pid_of $worker_class)"; then
        echo "cluster did not come up; last log lines:" >&2
        tail -n 20 "$SPARK_LOG_DIR"/*.out >&2 || true
        stop_one "$worker_class"
        stop_one "$master_class"
        exit 1
      fi
      sleep 0.5
    done
    echo "$url" > "$dir/master_url"
    echo "$master_ui" > "$dir/master_webui_port"
    echo "$url"
    ;;
  stop)
    stop_one "$worker_class"
    stop_one "$master_class"
    ;;
  status)
    master_json "$(cat "$dir/master_webui_port")"
    ;;
  *)
    usage
    ;;
esac
