#!/usr/bin/env bash
# spark-submit a graphpipe job to a standalone, YARN or Kubernetes cluster (see README.md).
#
#   deploy/spark-submit/submit.sh standalone spark://HOST:7077 ingest --config C --run-dir R
#   deploy/spark-submit/submit.sh yarn yarn train --config config.yaml --run-dir hdfs:///runs/x
#   deploy/spark-submit/submit.sh k8s k8s://https://HOST:6443 train --config ... --run-dir ...
#
# The third argument is the job: jobs/<job>.py. Everything after it goes to the job.
# Artifacts come from DIST (default dist/, built by scripts/package.sh = make package).
#
# Environment (all optional):
#   DIST                 folder with graphpipe-pyfiles.zip, the GraphFrames JARs graphframes-*.jar
#                        (standalone/YARN: --jars; k8s: the image has them in $SPARK_HOME/jars)
#                        and graphpipe-env.tar.gz
#   PYSPARK_PYTHON       standalone: the executors' Python (default: this checkout's .venv,
#                        which must exist at the same path on every worker)
#   PACKED_ENV=1         standalone/YARN: ship DIST/graphpipe-env.tar.gz with --archives and run
#                        the executors on ./environment/bin/python (PACK_ENV=1 make package)
#   IMAGE                k8s: container image with Python 3.11 and the graphpipe wheel installed
#                        under /opt/graphpipe (default graphpipe:0.1.0)
#   NAMESPACE            k8s namespace (default default)
#   DRIVER_MEMORY (2g) EXECUTOR_MEMORY (4g) EXECUTOR_CORES (2) NUM_EXECUTORS (2, YARN/K8s)
#   TOTAL_EXECUTOR_CORES standalone only (default: all the cluster offers)
#   GPUS_PER_EXECUTOR    GPUs per executor (default 0: no GPU settings at all)
#   GPUS_PER_TASK        GPU share per task (default 1/EXECUTOR_CORES: the cores share the GPUs)
#   FILES                YARN: comma-separated files for the containers' working directory
#                        (e.g. the job config: FILES=cfg.yaml, then --config cfg.yaml)
#   EXTRA_CONF           more "--conf k=v" pairs, space separated
#   DRY_RUN=1            print the spark-submit command (one argument per line) instead
set -euo pipefail

usage() { echo "usage: $0 standalone|yarn|k8s MASTER JOB [JOB ARGS...]" >&2; exit 2; }
[ $# -ge 3 ] || usage
mode="$1" master="$2" job="$3"
shift 3
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dist="${DIST:-$root/dist}"
pyfiles="$dist/graphpipe-pyfiles.zip"
# The GraphFrames JARs (core + GraphX), comma-separated; the bare pattern when DIST has none.
jars="$(shopt -s nullglob; files=("$dist"/graphframes-*.jar); IFS=,; echo "${files[*]}")"
jars="${jars:-$dist/graphframes-*.jar}"
envpack="$dist/graphpipe-env.tar.gz"
discovery="$here/getGpusResources.sh"
executor_cores="${EXECUTOR_CORES:-2}"
gpus="${GPUS_PER_EXECUTOR:-0}"

args=(--master "$master" --name "graphpipe-$job")
args+=(--driver-memory "${DRIVER_MEMORY:-2g}" --executor-memory "${EXECUTOR_MEMORY:-4g}")
args+=(--executor-cores "$executor_cores")
args+=(--conf spark.ui.showConsoleProgress=false)
# Spark sets OMP_NUM_THREADS=1 in Python workers; torch takes its threads from the task's cores.
args+=(--conf spark.python.worker.reuse=true)

if [ "$gpus" != "0" ]; then
  task_share="${GPUS_PER_TASK:-$(awk -v g="$gpus" -v c="$executor_cores" 'BEGIN { print g / c }')}"
  args+=(--conf "spark.executor.resource.gpu.amount=$gpus")
  args+=(--conf "spark.task.resource.gpu.amount=$task_share")
fi

python_for_packed=./environment/bin/python
case "$mode" in
  standalone)
    args+=(--deploy-mode client --py-files "$pyfiles" --jars "$jars")
    [ -n "${TOTAL_EXECUTOR_CORES:-}" ] && args+=(--total-executor-cores "$TOTAL_EXECUTOR_CORES")
    if [ "${PACKED_ENV:-0}" = "1" ]; then
      args+=(--archives "$envpack#environment")
      args+=(--conf "spark.pyspark.python=$python_for_packed")
    else
      executor_python="${PYSPARK_PYTHON:-$root/.venv/bin/python}"
      args+=(--conf "spark.pyspark.python=$executor_python")
    fi
    # The driver runs here (client mode), on this checkout's Python.
    args+=(--conf "spark.pyspark.driver.python=${PYSPARK_DRIVER_PYTHON:-$root/.venv/bin/python}")
    if [ "$gpus" != "0" ]; then
      # The worker discovers its GPUs (spark.worker.resource.gpu.* in SPARK_WORKER_OPTS, see
      # README); the executor script is used when the worker offers none.
      args+=(--conf "spark.executor.resource.gpu.discoveryScript=$discovery")
    fi
    app="$root/jobs/$job.py"
    ;;
  yarn)
    args+=(--deploy-mode cluster --num-executors "${NUM_EXECUTORS:-2}")
    args+=(--py-files "$pyfiles" --jars "$jars" --archives "$envpack#environment")
    args+=(--conf "spark.yarn.appMasterEnv.PYSPARK_PYTHON=$python_for_packed")
    args+=(--conf "spark.executorEnv.PYSPARK_PYTHON=$python_for_packed")
    files="${FILES:-}"
    if [ "$gpus" != "0" ]; then
      # Spark maps spark.executor.resource.gpu.amount to YARN's yarn.io/gpu resource.
      files="${files:+$files,}$discovery"
      args+=(--conf spark.executor.resource.gpu.discoveryScript=./getGpusResources.sh)
    fi
    [ -n "$files" ] && args+=(--files "$files")
    app="$root/jobs/$job.py"
    ;;
  k8s)
    image="${IMAGE:-graphpipe:0.1.0}"
    args+=(--deploy-mode cluster --num-executors "${NUM_EXECUTORS:-2}")
    args+=(--conf "spark.kubernetes.container.image=$image")
    args+=(--conf "spark.kubernetes.namespace=${NAMESPACE:-default}")
    args+=(--conf spark.pyspark.python=python3)
    if [ "$gpus" != "0" ]; then
      args+=(--conf spark.executor.resource.gpu.vendor=nvidia.com)
      args+=(--conf spark.executor.resource.gpu.discoveryScript=/opt/graphpipe/deploy/spark-submit/getGpusResources.sh)
    fi
    app="local:///opt/graphpipe/jobs/$job.py"
    ;;
  *)
    usage
    ;;
esac
for pair in ${EXTRA_CONF:-}; do
  args+=(--conf "$pair")
done

if [ "${DRY_RUN:-0}" = "1" ]; then
  printf '%s\n' spark-submit "${args[@]}" "$app" "$@"
  exit 0
fi
if [ "$mode" != "k8s" ] && { [ ! -f "$pyfiles" ] || [ ! -f "${jars%%,*}" ]; }; then
  echo "$pyfiles or $dist/graphframes-*.jar is missing: run scripts/package.sh (make package)" >&2
  exit 2
fi
exec "${SPARK_SUBMIT:-spark-submit}" "${args[@]}" "$app" "$@"
