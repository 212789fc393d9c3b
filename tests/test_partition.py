"""Partitioning: exact small cases, invariants on random graphs, determinism, awkward graphs."""

from __future__ import annotations

import random
from collections import defaultdict

import networkx as nx
import numpy as np
import pytest
from pyspark.sql import functions as F

from pipelines.core.config import ConfigError, PartitionConfig
from pipelines.partition.common import Checkpointer
from pipelines.partition.hash_start import balanced_hash_split
from pipelines.partition.initial import InitialParams, initial_partition
from pipelines.partition.moves import (
    leaf_capacity,
    pair_allowances,
    repair_flows,
    tighten_allowances,
)
from pipelines.partition.output import leaf_paths
from pipelines.partition.stage import (
    PartitionError,
    PartitionSettings,
    partition_graph,
    partition_interactions,
)

# Small-graph settings: few rounds and starts keep each Spark run short; max_direct_edges = 0
# keeps these graphs on the Spark coarsening + refinement path (by default a graph this small is
# partitioned whole in one task: DIRECT).
FAST = {
    "iterations_per_level": 3,
    "coarsening_iterations": 2,
    "initial_tries": 2,
    "max_direct_edges": 0,
}
DIRECT = {**FAST, "max_direct_edges": 4_000_000}


# --------------------------------------------------------------------------- pure python / numpy
def test_pair_allowances_match_swaps_and_share_free_capacity() -> None:
    loads, cap = [100, 90, 80], [105, 105, 105]
    totals = {(0, 1): 30, (1, 0): 10, (0, 2): 8, (2, 0): 8, (1, 2): 50}
    # (0,1) pushes into leaf 1: the 10 swapped back plus leaf 1's free 15 (one pusher).
    # (0,2)/(2,0) are even swaps; (1,2) may add leaf 2's whole free capacity 25.
    assert pair_allowances(loads, cap, totals) == {
        (0, 1): 25,
        (1, 0): 10,
        (0, 2): 8,
        (2, 0): 8,
        (1, 2): 25,
    }
    # Two pushers into the same leaf share its free capacity.
    assert pair_allowances([0, 90, 100], [100] * 3, {(1, 0): 80, (2, 0): 80}) == {
        (1, 0): 50,
        (2, 0): 50,
    }


def test_repair_drops_flows_into_overfull_leaves_until_feasible() -> None:
    # Leaf 1 would reach 100 + 10 + 3 - 4 = 109 > 105: both pairs into it go; leaf 0 then ends
    # at 100 - 0 + 4 = 104 <= 105.
    assert repair_flows([100, 100, 100], [105] * 3, {(0, 1): 10, (2, 1): 3, (1, 0): 4}) == {(1, 0)}
    # A leaf already above capacity may keep flows that do not make it heavier.
    assert repair_flows([120, 50], [105, 105], {(0, 1): 10, (1, 0): 5}) == {(0, 1), (1, 0)}


def test_tighten_allowances_when_a_heavy_node_blocks_the_larger_side() -> None:
    # A hub of weight 20,000 (leaf 1) wants leaf 0; 13,300 of spokes want leaf 1. The hub does
    # not fit its allowance 15,289, so the spokes would overfill leaf 1 (free 11): cut to 11.
    loads, cap = [19_011, 20_989], [21_000, 21_000]
    allow = pair_allowances(loads, cap, {(0, 1): 13_300, (1, 0): 20_000})
    assert allow == {(0, 1): 13_300, (1, 0): 15_289}
    flows = {(0, 1): 13_300, (1, 0): 0}
    assert tighten_allowances(loads, cap, allow, flows) == {(0, 1): 11, (1, 0): 15_289}
    assert tighten_allowances(loads, cap, allow, {(0, 1): 11}) is None


def test_leaf_capacity() -> None:
    assert leaf_capacity(100, 3, 0.05) == 35  # floor(1.05 * 100 / 3)
    assert leaf_capacity(10, 4, 0.0) == 3  # never below ceil(mean)


def test_leaf_paths_follow_proportional_bisection() -> None:
    assert leaf_paths(1) == [(0, 0, [])]
    assert leaf_paths(4) == [
        (0, 2, [(1, 0), (2, 0)]),
        (1, 2, [(1, 0), (2, 1)]),
        (2, 2, [(1, 1), (2, 2)]),
        (3, 2, [(1, 1), (2, 3)]),
    ]
    assert leaf_paths(5) == [
        (0, 3, [(1, 0), (2, 0), (3, 0)]),
        (1, 3, [(1, 0), (2, 0), (3, 1)]),
        (2, 2, [(1, 0), (2, 1)]),
        (3, 2, [(1, 1), (2, 2)]),
        (4, 2, [(1, 1), (2, 3)]),
    ]


def _numpy_partition(g: nx.Graph, k: int, seed: int, shuffle: int | None = None):
    nodes = sorted(g.nodes())
    e = np.array(list(g.edges()), dtype=np.int64)
    rows = np.r_[e, e[:, ::-1]]
    if shuffle is not None:  # same graph, rows and nodes in another order
        random.Random(shuffle).shuffle(nodes)
        rows = rows[np.random.default_rng(shuffle).permutation(len(rows))]
    nodes = np.array(nodes, dtype=np.int64)
    deg = np.array([g.degree(int(n)) for n in nodes], dtype=np.int64)
    out_ids, leaf = initial_partition(
        nodes,
        deg,
        rows[:, 0],
        rows[:, 1],
        np.ones(len(rows), dtype=np.int64),
        InitialParams(num_leaves=k, tolerance=0.05, seed=seed),
    )
    return dict(zip(out_ids.tolist(), leaf.tolist(), strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_initial_partition_cuts_grid_into_quadrants(seed: int) -> None:
    g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(6, 6), ordering="sorted")
    halves = _numpy_partition(g, 2, seed)
    assert sum(halves[a] != halves[b] for a, b in g.edges()) == 6
    quarters = _numpy_partition(g, 4, seed)
    assert sum(quarters[a] != quarters[b] for a, b in g.edges()) == 12
    blocks = defaultdict(set)
    for node, leaf in quarters.items():
        blocks[leaf].add((node // 6 // 3, node % 6 // 3))  # quadrant of (row, column)
    assert sorted(len(b) for b in blocks.values()) == [1, 1, 1, 1]


def test_initial_partition_ignores_input_order() -> None:
    g = nx.gnm_random_graph(120, 400, seed=3)
    g.remove_nodes_from([n for n in list(g) if g.degree(n) == 0])
    assert _numpy_partition(g, 5, 0) == _numpy_partition(g, 5, 0, shuffle=7)


# --------------------------------------------------------------------------- Spark helpers
def _edges(spark, pairs, rel=None):
    if rel is None:
        return spark.createDataFrame([(int(a), int(b)) for a, b in pairs], "src long, dst long")
    rows = [(int(a), int(b), int(r)) for (a, b), r in zip(pairs, rel, strict=True)]
    return spark.createDataFrame(rows, "src long, dst long, rel long")


def _leaves(result) -> dict[int, int]:
    return {r["node_id"]: r["leaf_id"] for r in result.assignment.collect()}


def _stats(result) -> dict[int, dict]:
    return {r["leaf_id"]: r.asDict() for r in result.leaf_stats.collect()}


# --------------------------------------------------------------------------- exact small graphs
@pytest.mark.parametrize("path", [FAST, DIRECT], ids=["spark", "direct"])
def test_two_cliques_split_at_the_bridge(spark, tmp_path, path) -> None:
    g = nx.barbell_graph(6, 0)  # cliques 0-5 and 6-11, bridge 5-6
    result = partition_graph(
        spark,
        _edges(spark, g.edges()),
        PartitionSettings(num_leaves=2, **path),
        out_dir=tmp_path / "out",
    )
    assert result.quality["direct"] is (path is DIRECT)
    leaves = _leaves(result)
    assert {frozenset(n for n in leaves if leaves[n] == x) for x in (0, 1)} == {
        frozenset(range(6)),
        frozenset(range(6, 12)),
    }
    for row in _stats(result).values():
        assert (row["nodes"], row["internal_edges"], row["cut_edges"], row["load"]) == (
            6,
            15,
            1,
            31,
        )
        assert (row["halo_nodes"], row["halo_edges"], row["depth"]) == (1, 1, 1)
    halo = {(r["leaf_id"], r["node_id"], r["hops"]) for r in result.halo_nodes.collect()}
    assert halo == {(leaves[5], 6, 1), (leaves[6], 5, 1)}
    assert result.quality["edge_cut"] == pytest.approx(1 / 31)
    assert result.quality["balance"] == 1.0
    assert result.quality["halo_replication"] == pytest.approx(14 / 12)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "assignment",
        "halo_edges",
        "halo_nodes",
        "leaf_stats",
    ]


def test_grid_is_cut_into_quadrants(spark) -> None:
    g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(6, 6), ordering="sorted")
    settings = PartitionSettings(num_leaves=4, halo_hops=0)
    result = partition_graph(spark, _edges(spark, g.edges()), settings)
    leaves = _leaves(result)
    assert result.quality["cut_edges"] == 12
    assert result.halo_nodes.count() == result.halo_edges.count() == 0
    assert result.quality["halo_replication"] == 1.0
    quadrant_leaves = {(n // 6 // 3, n % 6 // 3): set() for n in leaves}
    for n, leaf in leaves.items():
        quadrant_leaves[(n // 6 // 3, n % 6 // 3)].add(leaf)
    assert sorted(len(v) for v in quadrant_leaves.values()) == [1, 1, 1, 1]
    assert result.quality["balance"] == 1.0
    assert result.quality["depth"] == 2


@pytest.mark.parametrize("path", [FAST, DIRECT], ids=["spark", "direct"])
def test_star_hub_leaf_filled_to_capacity(spark, path) -> None:
    # 20,000 leaves around one hub, k = 2: load 40,000, capacity floor(1.05 * 20,000) = 21,000.
    # The hub (load 20,000) cannot be split, so its leaf takes 1,000 spokes and the rest are cut.
    n = 20_000
    edges = spark.range(1, n + 1).select(
        F.lit(0).cast("long").alias("src"), F.col("id").alias("dst")
    )
    result = partition_graph(spark, edges, PartitionSettings(num_leaves=2, **path))
    assert result.quality["direct"] is (path is DIRECT)
    stats = _stats(result)
    hub_leaf = result.assignment.where("node_id = 0").first()["leaf_id"]
    assert stats[hub_leaf]["load"] == 21_000
    assert stats[hub_leaf]["nodes"] == 1_001
    assert result.quality["cut_edges"] == 19_000
    assert result.quality["balance"] == pytest.approx(1.05)


@pytest.mark.slow
def test_million_neighbour_hub(spark) -> None:
    # The hub alone (load 1e6) exceeds the capacity floor(1.05 * 2e6 / 4) = 525,000: its leaf
    # holds nothing else and every other leaf stays within capacity.
    n = 1_000_000
    edges = spark.range(1, n + 1).select(
        F.lit(0).cast("long").alias("src"), F.col("id").alias("dst")
    )
    result = partition_graph(spark, edges, PartitionSettings(num_leaves=4, **FAST))
    hub_leaf = result.assignment.where("node_id = 0").first()["leaf_id"]
    stats = _stats(result)
    assert (stats[hub_leaf]["nodes"], stats[hub_leaf]["load"]) == (1, n)
    assert all(s["load"] <= 525_000 for leaf, s in stats.items() if leaf != hub_leaf)
    assert sum(s["nodes"] for s in stats.values()) == n + 1
    assert result.quality["cut_edges"] == n


def test_direct_path_only_for_graphs_within_max_direct_edges(spark) -> None:
    # barbell(6, 0): 31 undirected edges = 62 adjacency rows
    edges = _edges(spark, nx.barbell_graph(6, 0).edges())
    for limit, direct in ((62, True), (61, False)):
        settings = PartitionSettings(num_leaves=2, **{**FAST, "max_direct_edges": limit})
        q = partition_graph(spark, edges, settings).quality
        assert (q["direct"], q["initial"], q["edge_cut"]) == (direct, "numpy", 1 / 31)
    with pytest.raises(ConfigError, match="partition.max_direct_edges"):
        PartitionSettings(max_direct_edges=-1).validate()


def test_hash_start_when_the_coarsest_graph_is_too_big(spark) -> None:
    # max_initial_edges = 0: no graph goes to the single-task partitioner; the leaves start from
    # a seeded hash split and Spark refinement must still respect the capacity.
    g = nx.barbell_graph(6, 0)
    settings = PartitionSettings(num_leaves=2, max_initial_edges=0, **FAST)
    result = partition_graph(spark, _edges(spark, g.edges()), settings)
    q = result.quality
    assert q["initial"] == "hash"
    assert sorted(_leaves(result)) == list(range(12))
    assert q["balance"] <= 1.05
    stats = _stats(result)
    assert sum(s["load"] for s in stats.values()) == 62


def test_balanced_hash_split_keeps_every_leaf_within_one_node_weight(spark, tmp_path) -> None:
    # Heavy-tailed weights (as R-MAT degrees): hash mod k would leave some leaves far above the
    # mean; the contiguous split of the seeded order must stay within one node weight of it,
    # and must not depend on how many range partitions compute the prefix sums.
    rng = np.random.default_rng(3)
    weights = (rng.pareto(1.2, 3000) * 5).astype(np.int64) + 1
    nodes = spark.createDataFrame(
        [(i, int(w)) for i, w in enumerate(weights)], "node long, vw long"
    )
    splits = []
    for parts in (1, 7):
        ck = Checkpointer(spark, str(tmp_path / f"ck{parts}"), interval=1)
        split = balanced_hash_split(nodes, 9, seed=5, stage_salt=1, ck=ck, partitions=parts)
        rows = split.collect()
        splits.append(sorted((int(r["node"]), int(r["part"]), int(r["vw"])) for r in rows))
    assert splits[0] == splits[1]
    assert [(n, w) for n, _, w in splits[0]] == list(enumerate(weights.tolist()))
    loads = np.bincount([p for _, p, _ in splits[0]], weights=weights, minlength=9)
    assert set(p for _, p, _ in splits[0]) == set(range(9))
    assert np.abs(loads - weights.sum() / 9).max() <= weights.max()
    with pytest.raises(ValueError, match="k and partitions"):
        balanced_hash_split(nodes, 0, seed=5, stage_salt=1, ck=ck, partitions=3)


# --------------------------------------------------------------------------- invariants
def _awkward_graph():
    """Random graph + a separate cycle + self-loops + duplicates, with relations; isolated nodes."""
    g = nx.gnm_random_graph(300, 900, seed=11)
    pairs = [(a, b) for a, b in g.edges()]
    pairs += [(1000 + i, 1000 + (i + 1) % 12) for i in range(12)]  # another component
    pairs += [(7, 7), (1003, 1003)]  # self-loops
    pairs += [pairs[0], (pairs[1][1], pairs[1][0])]  # duplicate and reversed duplicate
    rel = [i % 3 for i in range(len(pairs))]
    isolated = [2000, 2001, 2002]
    return pairs, rel, isolated


def _run_awkward(spark, shuffle_partitions: str):
    pairs, rel, isolated = _awkward_graph()
    kinds = spark.createDataFrame(
        [(n, "entity") for n in isolated] + [(0, "entity")], "node_id long, kind string"
    )
    settings = PartitionSettings(
        num_leaves=5,
        halo_hops=2,
        coarsest_nodes_per_leaf=24,  # 120 nodes: one or two coarsening levels on Spark
        seed=3,
        checkpoint_interval=2,
        **FAST,
    )
    old = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", shuffle_partitions)
    try:
        return partition_graph(spark, _edges(spark, pairs, rel), settings, node_kinds=kinds)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", old)


@pytest.fixture(scope="module")
def awkward(spark):
    return _run_awkward(spark, "4")


def test_invariants_on_random_graph(awkward) -> None:
    pairs, rel, isolated = _awkward_graph()
    result = awkward
    rows = result.assignment.collect()
    leaves = {r["node_id"]: r["leaf_id"] for r in rows}
    nodes = {n for p in pairs for n in p} | set(isolated)
    assert len(rows) == len(nodes) and set(leaves) == nodes  # every node exactly once
    assert set(leaves.values()) <= set(range(5))
    paths = {leaf: (depth, path) for leaf, depth, path in leaf_paths(5)}
    for r in rows:
        assert (r["depth"], [tuple(p) for p in r["path"]]) == paths[r["leaf_id"]]
    kinds = {r["node_id"]: r["kind"] for r in rows}
    assert kinds[2000] == kinds[0] == "entity" and kinds[1] == "node"
    assert result.quality["levels"] >= 1  # the Spark coarsening and refinement ran

    stats = _stats(result)
    assert sum(s["nodes"] for s in stats.values()) == len(nodes)
    internal, cut, load = defaultdict(int), defaultdict(int), defaultdict(int)
    for a, b in pairs:
        if leaves[a] == leaves[b]:
            internal[leaves[a]] += 1
        else:
            cut[leaves[a]] += 1
            cut[leaves[b]] += 1
        if a != b:
            load[leaves[a]] += 1
            load[leaves[b]] += 1
    for leaf, s in stats.items():
        assert (s["internal_edges"], s["cut_edges"], s["load"]) == (
            internal[leaf],
            cut[leaf],
            load[leaf],
        )
    assert sum(internal.values()) + sum(cut.values()) // 2 == len(pairs)
    q = result.quality
    assert q["edges"] == len(pairs) and q["nodes"] == len(nodes)
    assert q["edge_cut"] == pytest.approx(sum(cut.values()) / 2 / len(pairs))
    assert q["balance"] == pytest.approx(max(load.values()) / (sum(load.values()) / 5))
    assert q["balance"] <= 1.05


def test_halo_is_exactly_the_two_hop_boundary(awkward) -> None:
    pairs, rel, _ = _awkward_graph()
    result = awkward
    leaves = _leaves(result)
    g = nx.Graph()
    g.add_nodes_from(leaves)
    g.add_edges_from((a, b) for a, b in pairs if a != b)
    expected_nodes, expected_edges = set(), set()
    for leaf in range(5):
        members = [n for n in leaves if leaves[n] == leaf]
        dist = nx.multi_source_dijkstra_path_length(g, members, cutoff=2)
        expected_nodes |= {(leaf, n, d) for n, d in dist.items() if d > 0}
        for i, ((a, b), r) in enumerate(zip(pairs, rel, strict=True)):
            da, db = dist.get(a), dist.get(b)
            if da is not None and db is not None and max(da, db) > 0 and min(da, db) <= 1:
                expected_edges.add((leaf, a, b, r, i))
    got_nodes = {(r["leaf_id"], r["node_id"], r["hops"]) for r in result.halo_nodes.collect()}
    assert got_nodes == expected_nodes
    got_edges = sorted(
        (r["leaf_id"], r["src"], r["dst"], r["rel"]) for r in result.halo_edges.collect()
    )
    assert got_edges == sorted(e[:4] for e in expected_edges)
    stats = _stats(result)
    for leaf in range(5):
        assert stats[leaf]["halo_nodes"] == sum(1 for x in expected_nodes if x[0] == leaf)
        assert stats[leaf]["halo_edges"] == sum(1 for x in expected_edges if x[0] == leaf)


def test_deterministic_across_runs_and_shuffle_partitions(spark, awkward) -> None:
    again = _run_awkward(spark, "7")
    assert _leaves(again) == _leaves(awkward)
    assert again.quality["edge_cut"] == awkward.quality["edge_cut"]


# --------------------------------------------------------------------------- kinds of graphs
def test_bipartite_interactions_split_between_communities(spark) -> None:
    rows = [(u, i) for u in range(4) for i in range(4)] + [
        (u, i) for u in range(4, 8) for i in range(4, 8)
    ]
    rows.append((3, 4))
    interactions = spark.createDataFrame(rows, "user long, item long")
    result = partition_interactions(spark, interactions, PartitionSettings(num_leaves=2, **FAST))
    got = {(r["kind"], r["node_id"]): r["leaf_id"] for r in result.assignment.collect()}
    assert len(got) == 16
    left = {got[("user", u)] for u in range(4)} | {got[("item", i)] for i in range(4)}
    right = {got[("user", u)] for u in range(4, 8)} | {got[("item", i)] for i in range(4, 8)}
    assert len(left) == len(right) == 1 and left != right
    assert result.quality["cut_edges"] == 1
    assert result.halo_edges.columns == ["leaf_id", "user", "item"]
    assert sorted(tuple(r) for r in result.halo_edges.collect()) == sorted(
        [(got[("user", 3)], 3, 4), (got[("item", 4)], 3, 4)]
    )
    assert {(r["kind"], r["node_id"]) for r in result.halo_nodes.collect()} == {
        ("user", 3),
        ("item", 4),
    }


def test_disconnected_components_isolated_nodes_and_self_loops(spark) -> None:
    # Two 8-cycles with no edge between them, self-loops on 0, 10 and on 50 (which has no other
    # edge), isolated nodes 100 and 101. Load 32, capacity floor(1.05 * 32 / 2) = 16: each
    # cycle fills one leaf exactly, nothing is cut; nodes without edges land by hash.
    pairs = [(i, (i + 1) % 8) for i in range(8)] + [(10 + i, 10 + (i + 1) % 8) for i in range(8)]
    pairs += [(0, 0), (10, 10), (50, 50)]
    kinds = spark.createDataFrame([(100, "entity"), (101, "entity")], "node_id long, kind string")
    result = partition_graph(
        spark,
        _edges(spark, pairs),
        PartitionSettings(num_leaves=2, **{**FAST, "initial_tries": 8}),  # 2 starts can cut 4
        node_kinds=kinds,
    )
    leaves = _leaves(result)
    assert sorted(leaves) == [*range(8), *range(10, 18), 50, 100, 101]
    assert len({leaves[n] for n in range(8)}) == len({leaves[n] for n in range(10, 18)}) == 1
    assert leaves[0] != leaves[10]
    stats = _stats(result)
    assert sorted(s["load"] for s in stats.values()) == [16, 16]
    assert sum(s["nodes"] for s in stats.values()) == 19
    assert sum(s["internal_edges"] for s in stats.values()) == 19  # 16 cycle edges + 3 loops
    for leaf, s in stats.items():
        loops = sum(1 for n in (0, 10, 50) if leaves[n] == leaf)
        assert s["internal_edges"] == 8 + loops
        assert (s["cut_edges"], s["halo_nodes"], s["halo_edges"]) == (0, 0, 0)
    q = result.quality
    assert (q["cut_edges"], q["edge_cut"], q["balance"], q["halo_replication"]) == (0, 0, 1, 1)


def test_empty_graph_is_a_clear_error(spark) -> None:
    with pytest.raises(PartitionError, match="graph is empty"):
        partition_graph(spark, _edges(spark, []), PartitionSettings(num_leaves=2))


def test_too_many_leaves_is_a_clear_error(spark) -> None:
    edges = _edges(spark, [(0, 1), (1, 2)])
    with pytest.raises(
        PartitionError, match="partition.num_leaves: asks for 4 leaves.*only 3 nodes"
    ):
        partition_graph(spark, edges, PartitionSettings(num_leaves=4))
    with pytest.raises(PartitionError, match="partition.max_edges_per_leaf"):
        partition_graph(spark, edges, PartitionSettings(max_edges_per_leaf=1))


def test_settings_from_config_and_validation() -> None:
    s = PartitionSettings.from_config(
        PartitionConfig(num_leaves=8, halo_hops=2), seed=4, initial_tries=3
    )
    assert (s.num_leaves, s.halo_hops, s.seed, s.initial_tries) == (8, 2, 4, 3)
    with pytest.raises(ConfigError, match="partition.refine_active_fraction"):
        PartitionSettings(refine_active_fraction=0).validate()
    # Leaves from the edge bound: ceil(1.05 * 1000 / 100) = 11.
    assert PartitionSettings(max_edges_per_leaf=100).leaves_for(1000, 500) == 11


# --------------------------------------------------------------------------- job
def test_partition_job_reads_ingest_output_and_resumes(spark, tmp_path, capsys) -> None:
    from jobs.partition import main
    from pipelines.core.config import load_config
    from pipelines.core.stages import run_stage
    from pipelines.registry import stage_key

    run_dir = tmp_path / "run"
    g = nx.barbell_graph(4, 0)  # cliques 0-3 and 4-7, bridge 3-4
    rows = [(a, b, 0, "train") for a, b in g.edges()] + [(0, 7, 1, "test")]
    dictionary = [("node", str(n), n) for n in range(8)] + [("node", "lonely", 8)]
    dictionary.append(("relation", "r0", 0))
    sets = ["partition.num_leaves=2", "run.seed=1"]
    args = ["--run-dir", str(run_dir)] + [a for s in sets for a in ("--set", s)]

    def stand_in_ingest(out):  # tables written as the ingest stage would, keyed with this config
        spark.createDataFrame(rows, "src long, dst long, rel long, split string").write.parquet(
            str(out / "edges")
        )
        spark.createDataFrame(
            dictionary, "kind string, original_id string, node_id long"
        ).write.parquet(str(out / "dictionary"))
        return {}

    key = stage_key(load_config(None, sets), run_dir, "ingest")
    run_stage(run_dir, "ingest", key.hash, stand_in_ingest, record=key.record())
    assert main(args) == 0
    out = run_dir / "partition"
    assert sorted(p.name for p in out.iterdir()) == [
        "_STAGE.json",
        "assignment",
        "halo_edges",
        "halo_nodes",
        "leaf_stats",
    ]
    assignment = {
        r["node_id"]: r["leaf_id"] for r in spark.read.parquet(str(out / "assignment")).collect()
    }
    assert set(assignment) == set(range(9))  # node 8 has no train edge: still assigned
    assert (
        len({assignment[n] for n in range(4)}) == 1
        and len({assignment[n] for n in range(4, 8)}) == 1
    )
    halo_edges = spark.read.parquet(str(out / "halo_edges"))
    assert halo_edges.columns == ["leaf_id", "src", "dst", "rel"]
    assert sorted(tuple(r)[1:] for r in halo_edges.collect()) == [(3, 4, 0), (3, 4, 0)]
    printed = capsys.readouterr().out
    assert "edge_cut" in printed and "done in" in printed
    assert main(args) == 0
    assert "skipped (already done)" in capsys.readouterr().out
    assert main(["--run-dir", str(tmp_path / "empty")]) == 2
