"""Connected components against networkx and GraphX; label propagation by hand and vs GraphX.

Both algorithms act on each connected component independently, so every test runs once on a
disjoint union of small cases and checks each case's vertices separately (fewer Spark jobs).
"""

from __future__ import annotations

import random

import networkx as nx
import pytest

from pipelines.partition.graph_algos import (
    NotConvergedError,
    connected_components,
    label_propagation,
)
from tests.graphx_reference import graphx_connected_components, graphx_label_propagation


def _edges(spark, pairs):
    return spark.createDataFrame(list(pairs), "src long, dst long")


def _vertices(spark, ids):
    return spark.createDataFrame([(int(i),) for i in ids], "id long")


def _networkx_components(pairs, isolated=()) -> dict[int, int]:
    g = nx.Graph()
    g.add_nodes_from(isolated)
    g.add_edges_from(pairs)
    return {v: min(c) for c in nx.connected_components(g) for v in c}


def _as_dict(df, value: str) -> dict[int, int]:
    rows = df.collect()
    assert len(rows) == len({r.id for r in rows}), "one row per vertex"
    return {r.id: r[value] for r in rows}


def _pick(result: dict[int, int], ids) -> dict[int, int]:
    return {i: result[i] for i in ids}


# ---------------------------------------------------------------- connected components

TWO_COMPONENTS = [(1, 2), (2, 3), (11, 10)]
ISOLATED = [20, 21]
PATH_ORDER = [35, 33, 38, 31, 39, 30, 37, 32, 36, 34, 42, 41]  # the minimum sits mid-path
PATH = list(zip(PATH_ORDER, PATH_ORDER[1:], strict=False))
K5 = [(u, v) for u in range(50, 55) for v in range(50, 55) if u < v]
K4_REVERSED = [(v, u) for u in range(60, 64) for v in range(60, 64) if u < v]
NOISE = [(50, 51), (51, 50), (52, 52), (70, 70)]  # duplicates, self-loops, a lone self-loop


def test_cc_small_cases_match_hand_results_and_networkx(spark):
    pairs = TWO_COMPONENTS + PATH + K5 + K4_REVERSED + NOISE
    ids = {v for p in pairs for v in p} | set(ISOLATED)
    got = _as_dict(
        connected_components(_edges(spark, pairs), vertices=_vertices(spark, ids)), "component"
    )
    assert _pick(got, [1, 2, 3, 10, 11, 20, 21]) == {
        1: 1,
        2: 1,
        3: 1,
        10: 10,
        11: 10,
        20: 20,
        21: 21,
    }
    assert _pick(got, PATH_ORDER) == dict.fromkeys(PATH_ORDER, 30)
    assert _pick(got, range(50, 55)) == dict.fromkeys(range(50, 55), 50)
    assert _pick(got, range(60, 64)) == dict.fromkeys(range(60, 64), 60)
    assert got[70] == 70
    assert got == _networkx_components([p for p in pairs if p[0] != p[1]], ISOLATED + [70])


def test_cc_random_graph_matches_networkx_and_graphx(spark, tmp_path):
    g = nx.gnm_random_graph(80, 70, seed=3)
    relabel = dict(zip(g.nodes, random.Random(1).sample(range(1000, 100_000), 80), strict=True))
    pairs = [(relabel[u], relabel[v]) for u, v in g.edges]
    isolated = [relabel[v] for v in g.nodes if g.degree(v) == 0]
    vertices = _vertices(spark, relabel.values())
    cc = connected_components(
        _edges(spark, pairs), vertices=vertices, checkpoint_interval=1, checkpoint="reliable"
    )
    got = _as_dict(cc, "component")
    expected = _networkx_components(pairs, isolated)
    assert got == expected
    assert len(set(expected.values())) > 5  # several components, not a trivial case
    reference = graphx_connected_components(spark, pairs, tmp_path / "edges.txt")
    assert _pick(got, reference) == reference


def test_cc_max_iter_exhausted_raises_and_star_forest_needs_no_round(spark):
    with pytest.raises(NotConvergedError, match="max_iter=0"):
        connected_components(_edges(spark, [(1, 2), (2, 3)]), max_iter=0)
    stars = connected_components(_edges(spark, [(1, 5), (1, 6), (2, 7)]), max_iter=0)
    assert _as_dict(stars, "component") == {1: 1, 5: 1, 6: 1, 2: 2, 7: 2}


# ---------------------------------------------------------------- label propagation

TWO_CLIQUES = [(u, v) for c in (range(4), range(4, 8)) for u in c for v in c if u < v] + [(3, 4)]
LPA_PATH = [(40, 41), (41, 42), (42, 43)]
LOOPS_AND_DUPLICATES = [(100, 100), (100, 101), (102, 100), (103, 104), (104, 103), (103, 105)]
TIE_PATH = [(17, 200), (200, 3)]
HUB_11 = [(1000, leaf) for leaf in [5 + 64, 20 + 64, *range(22 + 64, 31 + 64)]]
HUB_12 = [(2000, leaf) for leaf in [5 + 128, 20 + 128, *range(22 + 128, 32 + 128)]]
LPA_CASES = TWO_CLIQUES + LPA_PATH + LOOPS_AND_DUPLICATES + TIE_PATH + HUB_11 + HUB_12
LPA_IDS = sorted({v for p in LPA_CASES for v in p} | {8})  # 8: a vertex without edges


def _lpa(spark, pairs, ids, **kw) -> dict[int, int]:
    return _as_dict(label_propagation(_vertices(spark, ids), _edges(spark, pairs), **kw), "label")


def test_lpa_one_round_by_hand(spark):
    got = _lpa(spark, LPA_CASES, LPA_IDS, max_iter=1)
    # Cliques: 0 hears {1,2,3}: tie -> 1; 1, 2, 3 hear 0 among ties -> 0; 4 hears {3,5,6,7}
    # -> 3; 5, 6, 7 hear 4 among ties -> 4; 8 has no edge and keeps its id.
    assert _pick(got, range(9)) == dict(enumerate([1, 0, 0, 0, 3, 4, 4, 4, 8]))
    # Path 40-41-42-43: 40 <- {41}; 41 <- {40, 42}: 40; 42 <- {41, 43}: 41; 43 <- {42}.
    assert _pick(got, range(40, 44)) == {40: 41, 41: 40, 42: 41, 43: 42}
    # 100 hears {100 twice (self-loop), 101, 102}: keeps 100; 103 hears {104 twice, 105}: 104.
    assert got[100] == 100 and got[103] == 104
    # GraphX ties follow its HashMap scan: 200 hears 17 and 3; bucket 17 & 15 = 1 comes before
    # 3 & 15 = 3, so 17 (the "min" rule would give 3). Hub 1000 hears 11 labels (16 buckets):
    # 84 (bucket 4) first; hub 2000 hears 12 labels, the map grows to 32 buckets: 133 (5) first.
    assert got[200] == 17 and got[1000] == 84 and got[2000] == 133


def test_lpa_min_tie_break(spark):
    got = _lpa(
        spark, TIE_PATH + HUB_11 + HUB_12, [3, 17, 200, 1000, 2000], max_iter=1, tie_break="min"
    )
    assert got == {3: 200, 17: 200, 200: 3, 1000: 69, 2000: 133}


def test_lpa_later_rounds_by_hand(spark):
    ids = [*range(9), 40, 41, 42, 43]
    pairs = TWO_CLIQUES + LPA_PATH
    two = _lpa(spark, pairs, ids, max_iter=2)
    # Cliques, round 2: 1 hears {1,0,0} -> 0; 3 hears {1,0,0,3} -> 0; 4 hears {0,4,4,4} -> 4.
    assert _pick(two, range(9)) == dict(enumerate([0, 0, 0, 0, 4, 4, 4, 4, 8]))
    # Path, round 2: 40 <- {40}; 41 <- {41, 41}; 42 <- {40, 42}: 40; 43 <- {41}.
    assert _pick(two, range(40, 44)) == {40: 40, 41: 41, 42: 40, 43: 41}
    three = _lpa(spark, pairs, ids, max_iter=3, checkpoint_interval=1)
    assert _pick(three, range(9)) == _pick(two, range(9))  # a fixed point
    assert _pick(three, range(40, 44)) == {40: 41, 41: 40, 42: 41, 43: 40}  # oscillates
    assert _lpa(spark, pairs, ids, max_iter=0) == {i: i for i in ids}


def test_lpa_matches_graphx_on_random_multigraphs(spark, tmp_path):
    rnd = random.Random(0)
    small = list(range(40))  # ids below and above 16
    large = [rnd.randrange(-(2**40), 2**40) for _ in range(40)]  # hashes fold 64 -> 32 bits
    pairs = []
    for ids in (small, large):
        pairs += [(rnd.choice(ids), rnd.choice(ids)) for _ in range(80)]
        pairs += [(ids[0], leaf) for leaf in ids[1:21]]  # a hub hearing more than 12 labels
    reference = graphx_label_propagation(spark, pairs, 3, tmp_path / "edges.txt")
    got = _lpa(spark, pairs, small + large, max_iter=3)
    assert _pick(got, reference) == reference
    assert set(got) == set(small + large)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(max_iter=-1), "max_iter"),
        (dict(max_iter=1, tie_break="max"), "tie_break"),
        (dict(max_iter=1, checkpoint_interval=0), "checkpoint_interval"),
        (dict(max_iter=1, checkpoint="disk"), "checkpoint"),
    ],
)
def test_lpa_rejects_bad_arguments(spark, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        label_propagation(_vertices(spark, [1]), _edges(spark, [(1, 1)]), **kwargs)
