"""GraphFrames itself: exact outputs on a small graph, and equality with our algorithms.

The JARs come from ``make jars`` (scripts/build_jars.sh: Maven Central, else built from the
vendored 0.11.0 source) and reach Spark through ``spark.jars``; without them these tests fail,
they are never skipped. Vertex ids are longs and the session runs Spark 4's default ANSI mode
(with string ids some GraphFrames algorithms fail with ``CAST_INVALID_INPUT`` under ANSI).
The GraphX routines GraphFrames delegates to are also checked in test_graph_algos.py.
"""

from __future__ import annotations

import pytest
from pyspark.testing import assertDataFrameEqual

from pipelines.core.session import JARS_DIR, graphframes_available
from pipelines.partition.graph_algos import connected_components, label_propagation

CLIQUES = [(u, v) for c in (range(4), range(4, 8)) for u in c for v in c if u < v] + [(3, 4)]
PATH = [(40, 41), (41, 42), (42, 43)]
HUB = [(2000, leaf) for leaf in [133, 148, *range(150, 160)]]  # 12 tied labels, see below
EDGES = CLIQUES + PATH + HUB
IDS = sorted({v for e in EDGES for v in e} | {8})  # 8 has no edge


@pytest.fixture(scope="module")
def graph(spark):
    assert graphframes_available(), f"GraphFrames JARs missing in {JARS_DIR}: run make jars"
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    from graphframes import GraphFrame

    vertices = spark.createDataFrame([(i, f"v{i}") for i in IDS], "id long, name string")
    edges = spark.createDataFrame(EDGES, "src long, dst long")
    return GraphFrame(vertices, edges)


def _by_id(df, column: str) -> dict[int, int]:
    return {r.id: r[column] for r in df.select("id", column).collect()}


COMPONENTS = {
    **dict.fromkeys(range(8), 0),
    8: 8,
    **dict.fromkeys(range(40, 44), 40),
    **dict.fromkeys([2000, 133, 148, *range(150, 160)], 133),
}


@pytest.mark.parametrize("algorithm", ["graphframes", "two_phase", "graphx"])
def test_connected_components_exact_and_equal_to_ours(spark, graph, algorithm):
    theirs = graph.connectedComponents(algorithm=algorithm)
    assert set(theirs.columns) == {"id", "name", "component"}  # vertex columns are kept
    assert _by_id(theirs, "component") == COMPONENTS
    ours = connected_components(graph.edges, vertices=graph.vertices)
    assertDataFrameEqual(theirs.select("id", "component"), ours)


def test_randomized_contraction_finds_the_same_components(spark, graph):
    """Its component ids are hashes, not minimum ids: the same partition of the vertices."""
    got = _by_id(graph.connectedComponents(algorithm="randomized_contraction"), "component")
    assert _groups(got) == _groups(COMPONENTS)


def _groups(component_of: dict[int, int]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for vertex, component in sorted(component_of.items()):
        groups.setdefault(component, []).append(vertex)
    return sorted(groups.values())


def test_label_propagation_exact_and_equal_to_ours(spark, graph):
    one = graph.labelPropagation(maxIter=1)
    assert set(one.columns) == {"id", "name", "label"}
    got = _by_id(one, "label")
    # Hand-computed round 1 (see test_graph_algos.py): ties follow GraphX's HashMap order;
    # the hub hears 12 labels, so its map has 32 buckets and 133 (bucket 5) comes first.
    assert [got[i] for i in range(9)] == [1, 0, 0, 0, 3, 4, 4, 4, 8]
    assert [got[i] for i in range(40, 44)] == [41, 40, 41, 42]
    assert got[2000] == 133 and got[133] == 2000
    two = _by_id(graph.labelPropagation(maxIter=2), "label")
    assert [two[i] for i in range(9)] == [0, 0, 0, 0, 4, 4, 4, 4, 8]
    assert [two[i] for i in range(40, 44)] == [40, 41, 40, 41]
    for max_iter, theirs in ((1, one), (2, graph.labelPropagation(maxIter=2))):
        ours = label_propagation(graph.vertices, graph.edges, max_iter=max_iter)
        assertDataFrameEqual(theirs.select("id", "label"), ours)
