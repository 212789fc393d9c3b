#!/usr/bin/env bash
# Airflow in its own environment (.venv-airflow): its pins conflict easily with the project's.
#
#   scripts/airflow_env.sh                 # create/update the venv and the SQLite metadata DB,
#                                          # then print `export K=V` lines (eval "$(...)")
#   source scripts/airflow_env.sh          # the same, exported into the current shell
#   scripts/airflow_env.sh CMD [ARGS...]   # run CMD inside that environment, e.g.
#                                          #   scripts/airflow_env.sh airflow dags test graphpipe_daily 2026-11-27
#
# Idempotent: the venv is rebuilt only when deploy/airflow/requirements.txt or constraints.txt
# change (their hash is stamped in .venv-airflow/.graphpipe-stamp); `airflow db migrate` runs only
# when the DB is missing or Airflow changed. Progress goes to stderr, the exports to stdout.
#
# Environment (all optional): AIRFLOW_PYTHON (interpreter for the venv, default python3),
# AIRFLOW_VENV (.venv-airflow), AIRFLOW_HOME (.cache/airflow), GRAPHPIPE_PYTHON (the project
# venv's python, default .venv/bin/python: its pyspark provides spark-submit, and it runs the
# Spark driver and executors), GRAPHPIPE_SPARK_MASTER (local[2]; or spark://HOST:PORT, yarn,
# k8s://https://HOST:PORT), GRAPHPIPE_RUN_ROOT, GRAPHPIPE_CONFIG, GRAPHPIPE_PYFILES.

_gp_airflow_env() {
  local root req con venv stamp want py spark_home master
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  req="$root/deploy/airflow/requirements.txt"
  con="$root/deploy/airflow/constraints.txt"
  venv="${AIRFLOW_VENV:-$root/.venv-airflow}"
  stamp="$venv/.graphpipe-stamp"
  want="$(cat "$req" "$con" | sha256sum | cut -c1-16)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$venv/bin/airflow" ]; then
    echo "airflow_env: building $venv" >&2
    rm -rf "$venv"
    "${AIRFLOW_PYTHON:-python3}" -m venv "$venv" || return 1
    printf '*\n' > "$venv/.gitignore"  # the venv ignores itself
    "$venv/bin/python" -m pip install -q --upgrade pip >&2 || return 1
    "$venv/bin/python" -m pip install -q -r "$req" -c "$con" >&2 || return 1
    echo "$want" > "$stamp"
  fi

  py="${GRAPHPIPE_PYTHON:-$root/.venv/bin/python}"
  spark_home="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" \
    || { echo "airflow_env: $py has no pyspark (run make setup)" >&2; return 1; }
  master="${GRAPHPIPE_SPARK_MASTER:-local[2]}"

  export AIRFLOW_HOME="${AIRFLOW_HOME:-$root/.cache/airflow}"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__DAGS_FOLDER="$root/deploy/airflow/dags"
  # The scheduler puts the DAGs folder on sys.path itself; a plain `python` (DagBag) does not.
  case ":${PYTHONPATH:-}:" in
    *":$AIRFLOW__CORE__DAGS_FOLDER:"*) ;;
    *) export PYTHONPATH="$AIRFLOW__CORE__DAGS_FOLDER${PYTHONPATH:+:$PYTHONPATH}" ;;
  esac
  export AIRFLOW__CORE__UNIT_TEST_MODE=False
  export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
  export AIRFLOW_CONN_GRAPHPIPE_SPARK="{\"conn_type\": \"spark\", \"host\": \"$master\"}"
  export GRAPHPIPE_ROOT="$root"
  export GRAPHPIPE_PYTHON="$py"
  export SPARK_HOME="$spark_home"
  case ":$PATH:" in
    *":$venv/bin:"*) ;;
    *) export PATH="$venv/bin:$spark_home/bin:$PATH" ;;
  esac

  mkdir -p "$AIRFLOW_HOME"
  local db_stamp="$AIRFLOW_HOME/.graphpipe-db-stamp"
  if [ "$(cat "$db_stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
    echo "airflow_env: airflow db migrate ($AIRFLOW_HOME)" >&2
    "$venv/bin/airflow" db migrate >/dev/null 2>"$AIRFLOW_HOME/db-migrate.log" \
      || { tail -n 20 "$AIRFLOW_HOME/db-migrate.log" >&2; return 1; }
    echo "$want" > "$db_stamp"
  fi
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then  # sourced: export into the caller's shell
  _gp_airflow_env
  return $?
fi

set -euo pipefail
_gp_airflow_env
if [ $# -gt 0 ]; then
  exec "$@"
fi
for var in AIRFLOW_HOME AIRFLOW__CORE__LOAD_EXAMPLES AIRFLOW__CORE__DAGS_FOLDER \
    AIRFLOW__CORE__UNIT_TEST_MODE AIRFLOW__LOGGING__LOGGING_LEVEL AIRFLOW_CONN_GRAPHPIPE_SPARK \
    PYTHONPATH GRAPHPIPE_ROOT GRAPHPIPE_PYTHON SPARK_HOME PATH; do
  printf 'export %s=%q\n' "$var" "${!var}"
done
