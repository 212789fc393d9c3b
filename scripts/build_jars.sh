#!/usr/bin/env bash
# The GraphFrames JARs for Spark 4 / Scala 2.13 into .cache/jars, at the version pinned with
# graphframes-py (GRAPHFRAMES_VERSION). Spark gets them through spark.jars
# (pipelines/core/session.py) and clusters through spark-submit --jars (scripts/package.sh).
#
#   1. the released io.graphframes:graphframes-spark4_2.13 + graphframes-graphx-spark4_2.13
#      from Maven Central (the first choice where Central serves them);
#   2. otherwise compiled from the vendored source GRAPHFRAMES_SRC (default
#      ../shared/vendor/graphframes-<version>-src.tar.gz, see its README) with pyspark's own Scala
#      compiler and the JDK's javac/jar, no sbt: graphx (.scala, then .java), then core (scala +
#      scala-spark-4 + java) against it. The archive's sha256 is verified first.
#
# A stamp file records where the JARs came from (maven, or the source archive's sha256): a second
# run with the JARs and the stamp in place does nothing. Anything that fails fails the script.
#
# Environment: GRAPHFRAMES_VERSION (required), GRAPHFRAMES_SRC, GRAPHFRAMES_SRC_SHA256,
# GRAPHPIPE_PYTHON (the Python whose pyspark supplies the compiler; default .venv/bin/python),
# JARS_DEST (default .cache/jars), SKIP_MAVEN=1 (go straight to the source build).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version="${GRAPHFRAMES_VERSION:?}"
src="${GRAPHFRAMES_SRC:-../shared/vendor/graphframes-$version-src.tar.gz}"
want_sha="${GRAPHFRAMES_SRC_SHA256:-70c7e1576183572266d484e6bdef5a2299a22dacaf0a9dc92cadfb3de14f028c}"
py="${GRAPHPIPE_PYTHON:-$root/.venv/bin/python}"
dest="${JARS_DEST:-.cache/jars}"
core_jar="$dest/graphframes-spark4_2.13-$version.jar"
graphx_jar="$dest/graphframes-graphx-spark4_2.13-$version.jar"
stamp="$dest/graphframes-$version.stamp"
mkdir -p "$dest"
rm -f "$dest/UNAVAILABLE" "$dest"/mvn-*.log  # left by the former fetch-only script

if [ -s "$core_jar" ] && [ -s "$graphx_jar" ] && [ -f "$stamp" ] \
    && { [ "$(cat "$stamp")" = "maven" ] || [ "$(cat "$stamp")" = "source $want_sha" ]; }; then
  echo "GraphFrames $version JARs up to date in $dest ($(cat "$stamp"))"
  exit 0
fi
rm -f "$stamp" "$dest"/graphframes*.jar

fetch() {  # $1 = artifact id; quiet unless it succeeds
  mvn -q -U org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="io.graphframes:$1:$version" -DoutputDirectory="$dest" >"$dest/.mvn-$1.log" 2>&1
}
if [ "${SKIP_MAVEN:-0}" != "1" ] && command -v mvn >/dev/null \
    && fetch graphframes-graphx-spark4_2.13 && fetch graphframes-spark4_2.13; then
  rm -f "$dest"/.mvn-*.log
  echo maven >"$stamp"
  echo "GraphFrames $version JARs from Maven Central in $dest"
  exit 0
fi
rm -f "$dest"/graphframes*.jar
echo "io.graphframes:*:$version not served by Maven here: building from $src" >&2

fail() { echo "build_jars.sh: $*" >&2; exit 1; }
[ -f "$src" ] || fail "GraphFrames source archive $src not found (set GRAPHFRAMES_SRC)"
got_sha="$(sha256sum "$src" | cut -d' ' -f1)"
[ "$got_sha" = "$want_sha" ] || fail "$src: sha256 $got_sha, expected $want_sha"
spark_jars="$("$py" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
[ -d "$spark_jars" ] || fail "no pyspark jars folder ($spark_jars): run make setup first"
compiler="$(ls "$spark_jars"/scala-compiler-2.13.*.jar "$spark_jars"/scala-library-2.13.*.jar \
  "$spark_jars"/scala-reflect-2.13.*.jar | paste -sd:)"
classpath="$(ls "$spark_jars"/*.jar | paste -sd:)"

started=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar xzf "$src" -C "$work"
top="$work/graphframes-$version"

# compile MODULE SOURCE_DIRS...: Scala (with the module's Java sources parsed alongside), then
# Java, into $work/MODULE; earlier modules' classes are on the classpath.
compile() {
  local module="$1" out="$work/classes-$1" cp="$classpath${extra_cp:-}"
  shift
  mkdir -p "$out"
  find "$@" -name '*.scala' -o -name '*.java' | sort >"$work/$module.sources"
  java -Xss16m -Xmx2g -cp "$compiler" scala.tools.nsc.Main -Xsource:3 -release 17 -nowarn \
    -classpath "$cp" -d "$out" "@$work/$module.sources"
  find "$@" -name '*.java' | sort >"$work/$module.java"
  if [ -s "$work/$module.java" ]; then
    javac -nowarn --release 17 -encoding UTF-8 -cp "$out:$cp" -d "$out" "@$work/$module.java" \
      >"$work/javac.log" 2>&1 || { cat "$work/javac.log" >&2; fail "javac failed for $module"; }
  fi
  mkdir -p "$out/META-INF"
  cp "$top/LICENSE" "$top/NOTICE" "$out/META-INF/"
}
compile graphx "$top/graphx/src/main/scala" "$top/graphx/src/main/java"
extra_cp=":$work/classes-graphx"
compile core "$top/core/src/main/scala" "$top/core/src/main/scala-spark-4" "$top/core/src/main/java"
jar cf "$graphx_jar.tmp" -C "$work/classes-graphx" .
jar cf "$core_jar.tmp" -C "$work/classes-core" .
mv "$graphx_jar.tmp" "$graphx_jar"
mv "$core_jar.tmp" "$core_jar"
echo "source $want_sha" >"$stamp"
echo "GraphFrames $version JARs built from $src in $((SECONDS - started)) s:" \
  "$(du -h "$graphx_jar" | cut -f1) + $(du -h "$core_jar" | cut -f1) in $dest"
