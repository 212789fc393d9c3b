"""Partitioned NBFNet inference in Spark tasks equals the torch-side partitioned evaluation."""

from __future__ import annotations

import pytest
import torch

from gnn.data.kg import kg_graph
from gnn.engine.nbfnet import NBFNetTrainConfig, build_model
from gnn.engine.nbfnet_partitioned import PartitionedGraph
from gnn.eval.nbfnet import AnswerFilter, filtered_ranks
from gnn.eval.nbfnet_partitioned import evaluate_kg_partitioned
from pipelines.kg.seam import (
    NBFNetScoring,
    leaf_triples,
    model_bytes,
    mrr_and_hits,
    rank_queries,
)

N, R = 12, 2


def _kg() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 12-ring with 'next' (r0) and 'skip' (r1) edges, two test triples, one pendant node."""
    triples = [(i, 0, (i + 1) % 11) for i in range(11)] + [(i, 1, (i + 2) % 11) for i in range(11)]
    test = torch.tensor([[0, 0, 1], [5, 1, 7], [10, 0, 11]])  # node 11: only in the test split
    train = torch.tensor([t for t in triples if t not in {(0, 0, 1), (5, 1, 7)}])
    assignment = torch.tensor([0] * 6 + [1] * 6)
    return train, test, assignment


def _cfg() -> NBFNetTrainConfig:
    return NBFNetTrainConfig(task="kg", dim=8, layers=2, dependent=True, seed=0)


def _frames(spark, train, test, assignment):
    def df(t: torch.Tensor, cols: str):
        return spark.createDataFrame([tuple(map(int, row)) for row in t.tolist()], cols)

    tri = df(train[:, [0, 1, 2]], "src long, rel long, dst long")
    assign = spark.createDataFrame(
        [(i, int(a)) for i, a in enumerate(assignment.tolist())], "node_id long, leaf_id int"
    )
    # the partitioner's h = 1 halo edges: every cut triple once per side
    cut = [
        (int(assignment[h]), h, r, t) for h, r, t in train.tolist()
        if assignment[h] != assignment[t]
    ] + [
        (int(assignment[t]), h, r, t) for h, r, t in train.tolist()
        if assignment[h] != assignment[t]
    ]  # fmt: skip
    halo = spark.createDataFrame(cut, "leaf_id int, src long, rel long, dst long")
    h, r, t = test.t().tolist()
    queries = spark.createDataFrame(
        [(2 * i, a, b, c) for i, (a, b, c) in enumerate(zip(h, r, t, strict=True))]
        + [(2 * i + 1, c, b + R, a) for i, (a, b, c) in enumerate(zip(h, r, t, strict=True))],
        "query_id long, src long, rel long, answer long",
    )
    known = df(torch.cat([train, test]), "src long, rel long, dst long")
    return tri, assign, halo, queries, known


def test_spark_ranks_equal_the_torch_partitioned_ranks(spark) -> None:
    train, test, assignment = _kg()
    graph = kg_graph(train, N, R)
    torch.manual_seed(0)
    model = build_model(2 * R, _cfg()).eval()
    pg = PartitionedGraph(graph, assignment, halo_hops=1)  # outward halo edges, as Spark ships
    # torch side, per query: tails then heads, as the query ids above
    h, r, t = test.t()
    src = torch.stack([h, t], 1).flatten()
    rel = torch.stack([r, r + R], 1).flatten()
    ans = torch.stack([t, h], 1).flatten()
    filt = AnswerFilter(torch.cat([train, test]), N, R)
    expected = []
    with torch.no_grad():
        for s, q, a in zip(src.tolist(), rel.tolist(), ans.tolist(), strict=True):
            leaf = pg.leaves[int(pg.node_leaf[s])]
            scores = torch.full((1, N), float("-inf"))
            scores[:, leaf.nodes] = model.score_all(
                leaf.graph, leaf.to_local[torch.tensor([s])], torch.tensor([q])
            )
            mask = filt.mask(torch.tensor([s]), torch.tensor([q]), N)
            expected.append(int(filtered_ranks(scores, torch.tensor([a]), mask)))

    tri, assign, halo, queries, known = _frames(spark, train, test, assignment)
    scoring = NBFNetScoring(model_bytes(model), _cfg(), N, R, batch_size=2, device="cpu")
    ranks = rank_queries(leaf_triples(tri, assign, halo), assign, queries, known, scoring)
    rows = {r["query_id"]: (r["rank"], r["inside"]) for r in ranks.collect()}
    assert [rows[i][0] for i in range(len(expected))] == expected
    # (10, r0, 11): node 11 has no training edge and lives in leaf 1; 10 is in leaf 1 too
    inside = [rows[i][1] for i in range(len(expected))]
    assert inside == [
        bool(pg.leaves[int(pg.node_leaf[s])].to_local[a] >= 0)
        for s, a in zip(src.tolist(), ans.tolist(), strict=True)
    ]
    # (5, skip, 7): 7 is two hops from 5 once the test edge is removed, outside leaf 0 + halo,
    # so it scores -inf and ranks behind every candidate that is not a known answer
    assert inside == [True, True, False, True, True, True]
    assert expected[2] == N  # the other 11 entities (none a known answer) tie or beat it
    metrics = mrr_and_hits(ranks)
    ref = evaluate_kg_partitioned(model, pg, test, filter_triples=torch.cat([train, test]))
    for key in ("mrr", "mr", "hits@1", "hits@3", "hits@10", "coverage", "queries"):
        assert metrics[key] == pytest.approx(ref[key], abs=1e-9), key


def test_query_ids_above_2_pow_53_come_back_exactly(spark) -> None:
    # query ids once shared a pandas float64 column with the edge rows: 2^62 + 1 and 2^62 + 2
    # would have come back equal
    train, test, assignment = _kg()
    torch.manual_seed(0)
    model = build_model(2 * R, _cfg()).eval()
    tri, assign, halo, queries, known = _frames(spark, train, test, assignment)
    scoring = NBFNetScoring(model_bytes(model), _cfg(), N, R, batch_size=2, device="cpu")
    edges = leaf_triples(tri, assign, halo)
    small = {
        r["query_id"]: r["rank"]
        for r in rank_queries(edges, assign, queries, known, scoring).collect()
    }
    big = 2**62 + 1
    shifted = queries.withColumn("query_id", queries["query_id"] + big)
    ranks = {
        r["query_id"]: r["rank"]
        for r in rank_queries(edges, assign, shifted, known, scoring).collect()
    }
    assert ranks == {big + i: rank for i, rank in small.items()}
    assert len(ranks) == 6


def test_a_query_whose_source_has_no_leaf_fails_naming_it(spark) -> None:
    train, test, assignment = _kg()
    torch.manual_seed(0)
    model = build_model(2 * R, _cfg())
    tri, assign, halo, _, known = _frames(spark, train, test, assignment)
    queries = spark.createDataFrame(
        [(0, 99, 0, 1)], "query_id long, src long, rel long, answer long"
    )
    scoring = NBFNetScoring(model_bytes(model), _cfg(), 100, R, device="cpu")
    with pytest.raises(Exception, match="source 99 is not in the assignment"):
        rank_queries(leaf_triples(tri, assign, halo), assign, queries, known, scoring).collect()
    with pytest.raises(ValueError, match="batch_size"):
        NBFNetScoring(b"", _cfg(), N, R, batch_size=0)


def test_train_rounds_average_the_leaf_updates_by_query_count(spark) -> None:
    import io

    from pipelines.kg.seam import LEAF_ID, _leaf_rows
    from pipelines.kg.seam_train import (
        NBFNetRounds,
        average_states,
        train_leaf_round,
        train_rounds,
    )

    train, test, assignment = _kg()
    tri, assign, halo, _, _ = _frames(spark, train, test, assignment)
    edges = leaf_triples(tri, assign, halo)
    cfg = NBFNetTrainConfig(
        task="kg", dim=8, layers=2, dependent=True, seed=0, batch_size=4, num_negative=4, lr=0.01
    )
    rounds = NBFNetRounds(cfg, N, R, rounds=1, steps=3, device="cpu", threads=1)
    torch.manual_seed(0)
    start = model_bytes(build_model(2 * R, cfg))
    state, history = train_rounds(edges, assign, rounds, state=start)
    # the same round by hand, on pandas frames: each leaf's function, then the weighted mean
    pdf = _leaf_rows(edges, assign).toPandas()
    leaf_out = [train_leaf_round(g, start, 0, rounds) for _, g in pdf.groupby(LEAF_ID)]
    counts = [int(o["queries"].iloc[0]) for o in leaf_out]
    # leaf 0 owns the tail queries of the triples leaving 0..5 and the head queries of those
    # entering them: 2 * 11 train triples in all, every one owned by the leaf of each endpoint
    assert sum(counts) == 2 * len(train)
    states = [torch.load(io.BytesIO(bytes(o["state"].iloc[0]))) for o in leaf_out]
    got = torch.load(io.BytesIO(state))
    for key, value in got.items():
        if torch.is_floating_point(value):
            want = (
                counts[0] * states[0][key].double() + counts[1] * states[1][key].double()
            ) / sum(counts)
            torch.testing.assert_close(value.double(), want, rtol=1e-6, atol=1e-6)
    assert history[0]["queries"] == sum(counts) and history[0]["leaves"] == 2
    first = torch.load(io.BytesIO(start))
    assert any(not torch.equal(first[k], got[k]) for k in got)  # the round moved the weights
    # a retried task (same seed, round, leaf) returns the same parameters
    again = train_leaf_round(next(iter(pdf.groupby(LEAF_ID)))[1], start, 0, rounds)
    for key, value in torch.load(io.BytesIO(bytes(again["state"].iloc[0]))).items():
        assert torch.equal(value, states[0][key])
    # two rounds on Spark are deterministic end to end
    two = NBFNetRounds(cfg, N, R, rounds=2, steps=3, device="cpu", threads=1)
    a, hist = train_rounds(edges, assign, two, state=start)
    b, _ = train_rounds(edges, assign, two, state=start)
    sa, sb = torch.load(io.BytesIO(a)), torch.load(io.BytesIO(b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and len(hist) == 2
    with pytest.raises(ValueError, match="no leaf has training queries"):
        average_states([(0, start)])
    with pytest.raises(ValueError, match="rounds and steps"):
        NBFNetRounds(cfg, N, R, rounds=0)
