#!/usr/bin/env bash
# Resolve io.graphframes:graphframes-spark4_2.13 (and its GraphX companion) at the version pinned
# with graphframes-py into .cache/jars. Spark gets them through spark.jars (pipelines/core/session.py).
# If the registry does not serve them, write .cache/jars/UNAVAILABLE with the reason and go on:
# the project's own Spark-native algorithms do not need GraphFrames.
set -u
version="${GRAPHFRAMES_VERSION:?}"
dest=".cache/jars"
mkdir -p "$dest"
ok=1
for artifact in graphframes-spark4_2.13 graphframes-graphx-spark4_2.13; do
  jar="$dest/$artifact-$version.jar"
  [ -s "$jar" ] && continue
  if ! mvn -q -U org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      -Dartifact="io.graphframes:$artifact:$version" -DoutputDirectory="$dest" \
      >"$dest/mvn-$artifact.log" 2>&1; then
    ok=0
    echo "io.graphframes:$artifact:$version could not be resolved from Maven Central" \
      "(see $dest/mvn-$artifact.log)" >&2
  fi
done
if [ $ok -eq 1 ]; then
  rm -f "$dest/UNAVAILABLE"
  echo "GraphFrames $version JARs in $dest"
else
  echo "io.graphframes:*:$version not served by the registry on $(date -u +%F)" > "$dest/UNAVAILABLE"
  echo "GraphFrames JARs unavailable: GraphFrames-backed tests are skipped, everything else runs." >&2
fi
exit 0
