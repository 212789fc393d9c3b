"""Partitioned NBFNet: leaf + halo subgraphs, restricted scoring, shared-parameter training."""

from __future__ import annotations

import math

import pytest
import torch

from gnn.data.kg import RelationalGraph, homogeneous_graph, kg_graph
from gnn.engine.nbfnet import NBFNetTrainConfig
from gnn.engine.nbfnet_partitioned import PartitionedGraph, fit_partitioned, halo_mask, leaf_queries
from gnn.eval.nbfnet import evaluate_kg, kg_ranks, rank_metrics
from gnn.eval.nbfnet_partitioned import (
    answers_inside,
    evaluate_kg_partitioned,
    evaluate_link_auc_partitioned,
    pair_scores_partitioned,
    pair_subgraph,
    restriction_ceiling,
    score_all_partitioned,
)
from gnn.models.nbfnet import NBFNet
from tests.test_gnn_nbfnet import link_config

# Path 0-1-2-3-4-5; leaves {0,1,2} and {3,4,5}.
PATH = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
HALVES = torch.tensor([0, 0, 0, 1, 1, 1])


def _pairs(leaf) -> set[tuple[int, int]]:
    g = leaf.nodes[leaf.graph.edge_index]
    return set(map(tuple, g.t().tolist()))


def _both(*edges: tuple[int, int]) -> set[tuple[int, int]]:
    return {e for u, v in edges for e in ((u, v), (v, u))}


def test_halo_mask_counts_hops_over_either_direction():
    g = RelationalGraph(
        torch.tensor([[0, 2, 3], [1, 1, 4]]), torch.zeros(3, dtype=torch.long), 6, 1
    )
    core = torch.tensor([True, False, False, False, False, False])
    assert halo_mask(g, core, 0).tolist() == core.tolist()
    assert halo_mask(g, core, 1).tolist() == [True, True, False, False, False, False]
    # 1 <- 2 is followed backwards: 2 is two hops from 0; 3, 4 and 5 are unreachable
    assert halo_mask(g, core, 2).tolist() == [True, True, True, False, False, False]
    assert halo_mask(g, core, 9).tolist() == [True, True, True, False, False, False]


def test_leaf_subgraphs_by_hand():
    g = homogeneous_graph(PATH, 6, self_loops=False)
    pg1 = PartitionedGraph(g, HALVES, halo_hops=1)
    a, b = pg1.leaves
    assert a.nodes.tolist() == [0, 1, 2, 3] and a.core.tolist() == [True, True, True, False]
    assert _pairs(a) == _both((0, 1), (1, 2), (2, 3))
    assert b.nodes.tolist() == [2, 3, 4, 5] and b.core.tolist() == [False, True, True, True]
    assert _pairs(b) == _both((2, 3), (3, 4), (4, 5))
    assert a.to_local.tolist() == [0, 1, 2, 3, -1, -1]
    assert pg1.stats() == [
        {"leaf_id": 0, "core_nodes": 3, "nodes": 4, "edges": 6},
        {"leaf_id": 1, "core_nodes": 3, "nodes": 4, "edges": 6},
    ]
    a0, b0 = PartitionedGraph(g, HALVES, halo_hops=0).leaves
    assert _pairs(a0) == _both((0, 1), (1, 2)) and _pairs(b0) == _both((3, 4), (4, 5))
    a2 = PartitionedGraph(g, HALVES, halo_hops=2).leaves[0]
    assert a2.nodes.tolist() == [0, 1, 2, 3, 4]
    assert _pairs(a2) == _both((0, 1), (1, 2), (2, 3), (3, 4))


def test_outward_halo_edges_drop_the_edges_among_the_outermost_halo_nodes():
    # core {0, 1}; 2, 3 one hop out (edge 2-3 between them); 4, 5 two hops out (edge 4-5)
    edges = torch.tensor([[0, 2], [1, 3], [2, 3], [3, 4], [3, 5], [4, 5]])
    g = homogeneous_graph(edges, 6, self_loops=False)
    cut = torch.tensor([0, 0, 1, 1, 1, 1])
    ind1, out1 = (
        PartitionedGraph(g, cut, halo_hops=1, halo_edges=e).leaves for e in ("induced", "outward")
    )
    assert ind1[0].nodes.tolist() == out1[0].nodes.tolist() == [0, 1, 2, 3]
    assert _pairs(ind1[0]) == _both((0, 2), (1, 3), (2, 3))
    assert _pairs(out1[0]) == _both((0, 2), (1, 3))
    # leaf 1's halo {0, 1} has no edge between its nodes: the two rules agree
    assert _pairs(out1[1]) == _pairs(ind1[1]) == _both(*edges.tolist())
    out2 = PartitionedGraph(g, cut, halo_hops=2, halo_edges="outward").leaves[0]
    assert out2.nodes.tolist() == list(range(6))
    assert _pairs(out2) == _both((0, 2), (1, 3), (2, 3), (3, 4), (3, 5))
    out0 = PartitionedGraph(g, cut, halo_hops=0, halo_edges="outward").leaves[1]
    assert _pairs(out0) == _both((2, 3), (3, 4), (3, 5), (4, 5))
    # edge ids index the global graph (edges then reverses): leaf 0 keeps 0-2 and 1-3
    assert sorted(out1[0].edge_ids.tolist()) == [0, 1, 6, 7]
    with pytest.raises(ValueError, match="halo_edges"):
        PartitionedGraph(g, cut, halo_edges="all")


def test_relations_and_edge_ids_follow_the_global_graph():
    trip = torch.tensor([[0, 0, 1], [1, 1, 2], [3, 0, 2], [3, 1, 4]])
    g = kg_graph(trip, 5, 2)  # edges 0..3 originals, 4..7 inverses (relations 2, 3)
    pg = PartitionedGraph(g, torch.tensor([7, 7, 7, 3, 3]), halo_hops=0)
    big, small = pg.leaves  # distinct ids ascending: 3 then 7
    assert (big.leaf_id, small.leaf_id) == (3, 7)
    assert pg.node_leaf.tolist() == [1, 1, 1, 0, 0]
    assert big.edge_ids.tolist() == [3, 7]
    assert small.edge_ids.tolist() == [0, 1, 4, 5]
    assert small.graph.edge_type.tolist() == [0, 1, 2, 3]
    assert small.graph.edge_index.tolist() == [[0, 1, 1, 2], [1, 2, 0, 1]]


def test_leaf_queries_use_local_ids_and_drop_answers_outside():
    pg = PartitionedGraph(homogeneous_graph(PATH, 6, self_loops=False), HALVES, halo_hops=1)
    src, ans = torch.tensor([0, 0, 4, 5]), torch.tensor([1, 5, 2, 0])
    (s0, r0, a0), (s1, r1, a1) = leaf_queries(pg, src, torch.zeros(4, dtype=torch.long), ans)
    assert (s0.tolist(), a0.tolist()) == ([0], [1])
    assert (s1.tolist(), a1.tolist()) == ([2], [0])  # 4 -> 2 in leaf {2,3,4,5}
    assert r0.tolist() == [0] and r1.tolist() == [0]


def _model(num_relations: int, seed: int = 0) -> NBFNet:
    torch.manual_seed(seed)
    return NBFNet(num_relations, dim=4, layers=2, dependent=False).eval()


def test_scores_outside_the_subgraph_are_lowest_and_inside_match_the_leaf_graph():
    g = homogeneous_graph(PATH, 6)
    pg = PartitionedGraph(g, HALVES, halo_hops=1)
    model = _model(1)
    h, r = torch.tensor([0, 5]), torch.zeros(2, dtype=torch.long)
    s = score_all_partitioned(model, pg, h, r)
    assert torch.isinf(s[0, 4:]).all() and torch.isinf(s[1, :2]).all()
    with torch.no_grad():
        ref0 = model.score_all(pg.leaves[0].graph, torch.tensor([0]), r[:1])[0]
        ref1 = model.score_all(pg.leaves[1].graph, torch.tensor([3]), r[:1])[0]
    torch.testing.assert_close(s[0, :4], ref0)
    torch.testing.assert_close(s[1, 2:], ref1)
    p = pair_scores_partitioned(
        model,
        pg,
        torch.tensor([0, 0, 4]),
        torch.tensor([5, 2, 3]),
        torch.zeros(3, dtype=torch.long),
        symmetric=True,
    )
    with torch.no_grad():
        ref = model.pair_scores(
            pg.leaves[1].graph,
            torch.tensor([2]),
            torch.tensor([1]),
            torch.zeros(1, dtype=torch.long),
            symmetric=True,
        )
    assert p[0] == float("-inf") and math.isfinite(float(p[1]))
    torch.testing.assert_close(p[2:], ref)


def test_answers_outside_the_subgraph_rank_behind_every_non_answer():
    train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 4], [4, 0, 5]])
    g = kg_graph(train, 6, 1)
    pg = PartitionedGraph(g, HALVES, halo_hops=1)
    test = torch.tensor([[0, 0, 5]])
    m = evaluate_kg_partitioned(_model(2), pg, test, filter_triples=torch.cat([train, test]))
    # tail (0, r, ?): 5 outside {0,1,2,3}; 1 is a true answer (filtered) -> others 0,2,3,4
    # head (5, r^-1, ?): 0 outside {2,3,4,5}; 4 is a true answer -> others 1,2,3,5
    assert m["mr"] == 5.0 and m["mrr"] == 0.2 and m["hits@10"] == 1.0 and m["hits@3"] == 0.0
    assert m["coverage"] == 0.0 and m["queries"] == 2.0


def test_restriction_ceiling_by_hand():
    train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 4], [4, 0, 5]])
    g = kg_graph(train, 6, 1)
    pg = PartitionedGraph(g, HALVES, halo_hops=1)  # leaf + halo: {0,1,2,3} and {2,3,4,5}
    test = torch.tensor([[0, 0, 5], [1, 0, 3]])
    # (0, r, ?) -> 5: outside {0,1,2,3}; (5, r^-1, ?) -> 0: outside {2,3,4,5};
    # (1, r, ?) -> 3: inside {0,1,2,3};   (3, r^-1, ?) -> 1: outside {2,3,4,5}
    assert answers_inside(pg, test).tolist() == [False, False, True, False]
    c = restriction_ceiling(pg, test, torch.tensor([2, 4, 1, 5]))
    mrr = (1 / 2 + 1 / 4 + 1 + 1 / 5) / 4
    assert c["ceiling_mrr"] == pytest.approx(1 / 4)  # only the third query is kept
    assert c["ceiling_loss"] == pytest.approx(1 - (1 / 4) / mrr)
    assert c["coverage"] == 0.25 and c["covered_mrr"] == 1.0
    assert c["uncovered_mrr"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 5) / 3)
    # the coverage agrees with the partitioned evaluation's, and kg_ranks with evaluate_kg
    every = torch.cat([train, test])
    model = _model(2)
    part = evaluate_kg_partitioned(model, pg, test, filter_triples=every)
    assert part["coverage"] == c["coverage"]
    ranks, _ = kg_ranks(model, g, test, filter_triples=every, batch_size=3)
    full = evaluate_kg(model, g, test, filter_triples=every, batch_size=1)
    assert rank_metrics(ranks) == {k: full[k] for k in ("mrr", "mr", "hits@1", "hits@3", "hits@10")}
    assert restriction_ceiling(pg, test, ranks)["ceiling_mrr"] <= full["mrr"]


def test_link_auc_counts_pairs_outside_the_subgraph_as_lowest():
    pg = PartitionedGraph(homogeneous_graph(PATH, 6), HALVES, halo_hops=1)
    pos, neg = torch.tensor([[0, 2], [3, 5]]), torch.tensor([[0, 5], [5, 0]])
    m = evaluate_link_auc_partitioned(_model(1), pg, pos, neg)
    assert m["auroc"] == 1.0 and m["ap"] == 1.0
    assert m["coverage_pos"] == 1.0 and m["coverage_neg"] == 0.0
    assert m["queries"] == 8.0 and m["passes"] == 4.0


def test_pair_scope_runs_each_pair_on_the_union_of_its_two_leaves():
    path9 = torch.tensor([[i, i + 1] for i in range(8)])
    g = homogeneous_graph(path9, 9)
    thirds = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    pg = PartitionedGraph(g, thirds, halo_hops=1)
    nodes, sub = pair_subgraph(pg, 0, 1)
    assert nodes.tolist() == [0, 1, 2, 3, 4, 5, 6]  # {0..3} | {2..6}
    # outward halo edges (the default): node 6 is halo only, so its self-loop is not kept
    assert set(map(tuple, nodes[sub.edge_index].t().tolist())) == (
        _both(*[(i, i + 1) for i in range(6)]) | {(i, i) for i in range(6)}
    )
    assert pair_subgraph(pg, 2, 2)[1] is pg.leaves[2].graph
    model, zero = _model(1), torch.zeros(3, dtype=torch.long)
    h, t = torch.tensor([0, 4, 7]), torch.tensor([4, 0, 8])
    p = pair_scores_partitioned(model, pg, h, t, zero, symmetric=True, scope="pair")
    with torch.no_grad():  # (0, 4) and (4, 0): leaves 0 and 1; (7, 8): leaf 2 alone
        ref = model.pair_scores(
            sub, torch.tensor([0, 4]), torch.tensor([4, 0]), zero[:2], symmetric=True
        )
        own = model.pair_scores(
            pg.leaves[2].graph,
            pg.leaves[2].to_local[h[2:]],
            pg.leaves[2].to_local[t[2:]],
            zero[:1],
            symmetric=True,
        )
    torch.testing.assert_close(p[:2], ref)
    torch.testing.assert_close(p[2:], own)
    src = pair_scores_partitioned(model, pg, h, t, zero, symmetric=True, scope="source")
    assert src[0] == float("-inf") and torch.isfinite(p).all()  # 4 is outside 0's leaf + halo
    # two leaves: every pair's scope is the whole graph, so scores equal the full-graph ones
    halves = PartitionedGraph(homogeneous_graph(PATH, 6), HALVES, halo_hops=1)
    whole = pair_scores_partitioned(
        model,
        halves,
        torch.tensor([0, 5]),
        torch.tensor([5, 1]),
        zero[:2],
        symmetric=True,
        scope="pair",
    )
    with torch.no_grad():
        full = model.pair_scores(
            homogeneous_graph(PATH, 6),
            torch.tensor([0, 5]),
            torch.tensor([5, 1]),
            zero[:2],
            symmetric=True,
        )
    torch.testing.assert_close(whole, full)
    m = evaluate_link_auc_partitioned(
        model, halves, torch.tensor([[0, 5]]), torch.tensor([[1, 4]]), scope="pair"
    )
    assert m["coverage_pos"] == 1.0 and m["coverage_neg"] == 1.0 and m["passes"] == 4.0
    try:
        pair_scores_partitioned(model, pg, h, t, zero, scope="leaf")
    except ValueError as err:
        assert "scope" in str(err)
    else:
        raise AssertionError("unknown scope accepted")


def _cfg(**kw) -> NBFNetTrainConfig:
    """:func:`tests.test_gnn_nbfnet.link_config` at d = 4, batch 2, 2 negatives, 3 epochs
    (torch's thread count left alone)."""
    base = {"dim": 4, "batch_size": 2, "num_negative": 2, "epochs": 3, "threads": 0}
    return link_config(**{**base, **kw})


def _two_triangles() -> PartitionedGraph:
    edges = torch.tensor([[0, 1], [1, 2], [0, 2], [2, 3], [3, 4], [4, 5], [3, 5]])
    return PartitionedGraph(homogeneous_graph(edges, 6), HALVES, halo_hops=1)


def test_one_parameter_set_gets_gradients_from_every_leaf():
    pg = _two_triangles()
    seen: dict[int, set[str]] = {}
    params: set[tuple[int, ...]] = set()

    def on_step(leaf: int, model: NBFNet) -> None:
        params.add(tuple(id(p) for p in model.parameters()))
        names = {
            n
            for n, p in model.named_parameters()
            if p.grad is not None and bool(p.grad.abs().sum() > 0)
        }
        seen.setdefault(leaf, set()).update(names)

    res = fit_partitioned(pg, _cfg(), on_step=on_step, log=lambda _: None)
    every = {n for n, _ in res.model.named_parameters()}
    assert len(params) == 1
    assert sorted(seen) == [0, 1]
    # the query embedding, every layer and the MLP are shared and moved by both leaves
    for leaf in (0, 1):
        assert {n.split(".")[0] for n in seen[leaf]} == {"query", "layers", "mlp"}
    assert seen[0] == seen[1] and seen[0] <= every
    # 7 edges, one query each per epoch, all inside their leaf + halo: 4 + 3 per epoch
    assert res.queries == 21 and res.steps == 3 * (2 + 2)


def test_training_is_deterministic_with_a_seed():
    pg = _two_triangles()
    a = fit_partitioned(pg, _cfg(max_steps=5), log=lambda _: None)
    b = fit_partitioned(pg, _cfg(max_steps=5), log=lambda _: None)
    c = fit_partitioned(pg, _cfg(max_steps=5, seed=1), log=lambda _: None)
    assert a.losses == b.losses and len(a.losses) == 5
    for k, v in a.state_dict.items():
        assert torch.equal(v, b.state_dict[k])
    assert a.losses != c.losses


def _write_ring_kg(root, n: int = 24) -> None:
    """A ring of ``n`` entities with a 'next' and a 'skip' (two ahead) relation."""
    lines = [f"e{i}\tnext\te{(i + 1) % n}" for i in range(n)]
    lines += [f"e{i}\tskip\te{(i + 2) % n}" for i in range(n)]
    root.mkdir()
    (root / "train.txt").write_text("\n".join(lines[2:]) + "\n")
    (root / "valid.txt").write_text(lines[0] + "\n")
    (root / "test.txt").write_text(lines[1] + "\n")


def test_bench_reuses_the_full_checkpoint_and_runs_both_halo_edge_rules(tmp_path, capsys):
    import json

    from bench.nbfnet_partitioned import main

    data, ckpt, cache = tmp_path / "kg", tmp_path / "full.pt", tmp_path / "assignments"
    _write_ring_kg(data)
    # a cached two-leaf assignment (the bench's cache layout), so neither Spark nor pymetis runs
    cache.mkdir()
    torch.save(torch.arange(24) // 12, cache / "kg-spark-k2-s0.pt")
    argv = [
        "--triples",
        str(data),
        "--k",
        "2",
        "--halo-edges",
        "induced,outward",
        "--assignment-cache",
        str(cache),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--layers",
        "2",
        "--dim",
        "8",
        "--batch-size",
        "4",
        "--full-checkpoint",
        str(ckpt),
        "--json",
    ]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ckpt.is_file()
    assert sorted(r["halo_edges"] for r in first["results"]) == [
        "induced",
        "induced",
        "outward",
        "outward",
    ]
    by_rule = {(r["halo_edges"], r["model"]): r for r in first["results"]}
    for r in first["results"]:  # the restriction keeps at most the full model's MRR
        assert 0.0 <= r["restriction_ceiling_mrr"] <= first["full"]["mrr"]
        assert r["restriction_ceiling_loss"] == pytest.approx(
            1 - r["restriction_ceiling_mrr"] / first["full"]["mrr"]
        )
    # the outward rule keeps no more edges than the induced one
    assert (
        by_rule["outward", "full"]["mean_subgraph_edges"]
        <= by_rule["induced", "full"]["mean_subgraph_edges"]
    )
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "read from" in second
    again = json.loads(second.strip().splitlines()[-1])
    assert again["full"]["mrr"] == first["full"]["mrr"]
    assert again["full"]["train_queries"] == first["full"]["train_queries"]
    # --ceiling-only: the full model read back and the restriction's ceiling, no leaf training
    assert main([*argv, "--ceiling-only"]) == 0
    only = capsys.readouterr().out
    assert "read from" in only and "partitioned" not in only
    ceilings = json.loads(only.strip().splitlines()[-1])["ceilings"]
    assert [(c["k"], c["halo_edges"]) for c in ceilings] == [(2, "induced"), (2, "outward")]
    for c in ceilings:
        assert (
            c["restriction_ceiling_mrr"]
            == by_rule[c["halo_edges"], "partitioned"]["restriction_ceiling_mrr"]
        )
        assert c["coverage"] == by_rule[c["halo_edges"], "partitioned"]["coverage"]
    with pytest.raises(SystemExit, match="trained with"):
        main([*argv[:-1], "--dim", "4", "--json"])
    # --partitioned-queries: equal work instead of equal time, one partitioned model per cap
    outward = [a if a != "induced,outward" else "outward" for a in argv]
    assert main([*outward, "--partitioned-queries", "4,full,budget"]) == 0
    capped = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    full_queries = capped["full"]["train_queries"]
    part = {r["query_cap"]: r for r in capped["results"] if r["model"] == "partitioned"}
    assert sorted(part) == [0, 4, full_queries]
    assert part[4]["train_queries"] == 4  # one full step of batch 4
    assert part[4]["train_queries"] < part[full_queries]["train_queries"] <= full_queries
    # the full model on the leaves is evaluated once and reported beside every cap
    full_rows = [r for r in capped["results"] if r["model"] == "full"]
    assert [r["query_cap"] for r in full_rows] == [4, full_queries, 0]
    assert len({(r["mrr"], r["queries_per_second"]) for r in full_rows}) == 1
    # no cap: the one-epoch run, as without the flag
    assert part[0]["train_queries"] == by_rule["outward", "partitioned"]["train_queries"]
    for bad in ("0", "-3", "half"):
        with pytest.raises(SystemExit, match="not a positive count"):
            main([*outward, "--partitioned-queries", bad])
