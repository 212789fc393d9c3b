#!/usr/bin/env bash
# Build what spark-submit ships to a cluster, into DIST (default dist/):
#
#   graphpipe-pyfiles.zip           the project's packages for --py-files (pipelines.core.packaging)
#   graphpipe-<version>-py3-none-any.whl
#                                   the project as a wheel (pip wheel --no-deps), to install into
#                                   the cluster's Python environment or an image
#   graphframes-*.jar               the GraphFrames JARs of .cache/jars (make jars), for
#                                   spark-submit --jars (GraphFrames is JVM code: graphframes-py
#                                   alone fails with ClassNotFoundException)
#   graphpipe-env.tar.gz            only with PACK_ENV=1: the Python environment packed by
#                                   venv-pack, for --archives graphpipe-env.tar.gz#environment
#                                   with PYSPARK_PYTHON=./environment/bin/python
#
#   scripts/package.sh [DIST]
#
# Environment: GRAPHPIPE_PYTHON (default .venv/bin/python), GRAPHPIPE_JARS_DIR (where the JARs
# are; default .cache/jars, as in pipelines/core/session.py), PACK_ENV=1 to pack an environment,
# PACK_VENV (the venv to pack; default: the venv of GRAPHPIPE_PYTHON), PACK_FORMAT (tar.gz; tar
# packs faster and bigger; both work with --archives). venv-pack packs
# site-packages and the venv's scripts, not the interpreter: the executors need the same Python
# (3.11) at the same path as the base interpreter of the packed venv (pyspark's documented
# venv-pack recipe). The project venv is 7.9 GB (torch + CUDA libraries), hence optional.
# The editable install of graphpipe is left out of the pack (it points at this checkout): the
# code travels in the --py-files zip, or install the wheel into PACK_VENV before packing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dist="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
py="${GRAPHPIPE_PYTHON:-$root/.venv/bin/python}"
cd "$root"

started=$SECONDS
zip="$("$py" -c 'import sys; from pipelines.core.packaging import build_pyfiles_zip
print(build_pyfiles_zip(sys.argv[1]))' "$dist")"
echo "py-files zip: $zip ($(du -h "$zip" | cut -f1))" >&2

# Build isolation fetches the build-system requirements (setuptools, wheel) from the index.
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
"$py" -m pip wheel -q --no-deps -w "$build" "$root" >&2
wheel="$(ls "$build"/graphpipe-*.whl)"
rm -f "$dist"/graphpipe-*.whl
mv "$wheel" "$dist/"
wheel="$dist/$(basename "$wheel")"
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))" >&2

# Both GraphFrames JARs (core and its GraphX fork) or none: a half set fails at run time.
jars_dir="${GRAPHPIPE_JARS_DIR:-$root/.cache/jars}"
shopt -s nullglob
core=("$jars_dir"/graphframes-spark4_2.13-*.jar)
graphx=("$jars_dir"/graphframes-graphx-spark4_2.13-*.jar)
shopt -u nullglob
if [ ${#core[@]} -ne 1 ] || [ ${#graphx[@]} -ne 1 ]; then
  echo "GraphFrames JARs missing or ambiguous in $jars_dir: run make jars" >&2
  exit 1
fi
rm -f "$dist"/graphframes-*.jar
cp "${core[0]}" "${graphx[0]}" "$dist/"
echo "jars: $(basename "${core[0]}") $(basename "${graphx[0]}")" >&2

if [ "${PACK_ENV:-0}" = "1" ]; then
  venv="${PACK_VENV:-$("$py" -c 'import sys; print(sys.prefix)')}"
  # venv-pack goes into a tool folder of its own, not into the venv it packs.
  tools="$root/.cache/venv-pack-0.2.0"
  [ -f "$tools/venv_pack/__init__.py" ] \
    || "$py" -m pip install -q --target "$tools" venv-pack==0.2.0 >&2
  out="$dist/graphpipe-env.${PACK_FORMAT:-tar.gz}"
  rm -f "$out"
  t0=$SECONDS
  # The editable install's files name this checkout; leave them out (see above).
  PYTHONPATH="$tools" nice -n 10 "$py" -m venv_pack --quiet -p "$venv" -o "$out" \
    --exclude '*__editable__*graphpipe*' --exclude '*graphpipe-*.dist-info*' >&2
  echo "packed env: $out ($(du -h "$out" | cut -f1), $((SECONDS - t0)) s)" >&2
fi
echo "package done in $((SECONDS - started)) s" >&2
ls -1 "$dist"/graphframes-*.jar "$dist"/graphpipe-*
