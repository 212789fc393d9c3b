"""NBFNet: message and aggregate functions, Bellman-Ford reach, ranking, data, training."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
import torch

if not torch.cuda.is_available():  # Triton's interpreter runs the kernels on CPU tensors
    os.environ.setdefault("TRITON_INTERPRET", "1")

from gnn.data.kg import (
    RelationalGraph,
    add_inverse_relations,
    cora_link_split,
    homogeneous_graph,
    kg_graph,
    load_cora_edges,
    load_fb15k237,
)
from gnn.engine.nbfnet import NBFNetTrainConfig, NegativeSampler, fit_nbfnet, nbfnet_loss
from gnn.eval.nbfnet import AnswerFilter, evaluate_kg, filtered_ranks
from gnn.layers.nbf_conv import GeneralizedRelationalConv, PassContext
from gnn.layers.relational_aggregate import GraphIndex, message, relational_aggregate
from gnn.models.nbfnet import NBFNet, remove_easy_edges

BACKENDS = ["naive", "torch", "triton"]
# the Triton backend runs on CUDA where there is a GPU, else interpreted on CPU
TRITON_DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _dev(backend: str) -> torch.device:
    return TRITON_DEV if backend == "triton" else torch.device("cpu")


# ---------------------------------------------------------------- MESSAGE
def test_message_distmult_transe_hand_values() -> None:
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    w = torch.tensor([[2.0, 0.5, -1.0, 4.0]])
    assert torch.equal(message(x, w, "distmult", dim=4), torch.tensor([[2.0, -1.0, -3.0, 2.0]]))
    assert torch.equal(message(x, w, "transe", dim=4), torch.tensor([[3.0, -1.5, 2.0, 4.5]]))


def test_message_rotate_is_complex_multiplication() -> None:
    # two queries of dim 4: [re0, re1, im0, im1] per query block
    x = torch.tensor([[1.0, 0.0, 0.0, 2.0, 3.0, 1.0, 0.0, -1.0]])
    w = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]])
    # query 0: (1+0i)*(0+1i) = i ; (0+2i)*(1+0i) = 2i
    # query 1: (3+0i)*(1+0i) = 3 ; (1-1i)*(0+1i) = 1+i
    want = torch.tensor([[0.0, 0.0, 1.0, 2.0, 3.0, 1.0, 0.0, 1.0]])
    assert torch.equal(message(x, w, "rotate", dim=4), want)


# ---------------------------------------------------------------- AGGREGATE
def _tiny_graph() -> tuple[torch.Tensor, torch.Tensor]:
    # 3 nodes; edges (src -> dst, rel): 0->1 r0, 2->1 r1, 1->2 r0, 0->2 r1, 2->2 r0
    ei = torch.tensor([[0, 2, 1, 0, 2], [1, 1, 2, 2, 2]])
    et = torch.tensor([0, 1, 0, 1, 0])
    return ei, et


def _loop_reference(x, w, ei, et, keep, kind):
    n, c = x.shape
    s = torch.zeros(n, c)
    q = torch.zeros(n, c)
    mx = torch.full((n, c), -math.inf)
    mn = torch.full((n, c), math.inf)
    for e in range(ei.shape[1]):
        if not keep[e]:
            continue
        u, v, r = int(ei[0, e]), int(ei[1, e]), int(et[e])
        m = x[u] * w[r] if kind == "distmult" else x[u] + w[r]
        s[v] += m
        q[v] += m * m
        mx[v] = torch.maximum(mx[v], m)
        mn[v] = torch.minimum(mn[v], m)
    return s, q, mx, mn


@pytest.mark.parametrize("backend", BACKENDS)
def test_aggregate_exact_on_three_nodes(backend: str) -> None:
    ei, et = _tiny_graph()
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5]])
    w = torch.tensor([[2.0, 1.0], [-1.0, 3.0]])
    dev = _dev(backend)
    idx = GraphIndex.build(ei.to(dev), et.to(dev), 3, 2)
    out = relational_aggregate(
        x.to(dev),
        w.to(dev),
        idx,
        idx.view(None),
        kind="distmult",
        dim=2,
        with_sq=True,
        with_minmax=True,
        backend=backend,
    )
    out = type(out)(*(o.cpu() for o in out))
    # node 1 gets 0->1 r0: [2, 2] and 2->1 r1: [2, 1.5]
    # node 2 gets 1->2 r0: [6, -1], 0->2 r1: [-1, 6], 2->2 r0: [-4, 0.5]
    assert torch.equal(out.sum, torch.tensor([[0.0, 0.0], [4.0, 3.5], [1.0, 5.5]]))
    assert torch.equal(out.sq, torch.tensor([[0.0, 0.0], [8.0, 6.25], [53.0, 37.25]]))
    assert torch.equal(out.max[1:], torch.tensor([[2.0, 2.0], [6.0, 6.0]]))
    assert torch.equal(out.min[1:], torch.tensor([[2.0, 1.5], [-4.0, -1.0]]))
    assert torch.isneginf(out.max[0]).all() and torch.isposinf(out.min[0]).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["distmult", "transe"])
def test_aggregate_matches_loop_and_gradients_agree(backend: str, kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    n, r, e, c = 9, 3, 40, 6
    ei = torch.randint(0, n, (2, e), generator=gen)
    et = torch.randint(0, r, (e,), generator=gen)
    keep = torch.rand(e, generator=gen) > 0.3
    x0 = torch.randn(n, c, generator=gen)
    w0 = torch.randn(r, c, generator=gen)
    coef = torch.randn(4, n, c, generator=gen)
    want = _loop_reference(x0, w0, ei, et, keep, kind)
    grads = {}
    for be in ("naive", backend):
        dev = _dev(be)
        idx = GraphIndex.build(ei.to(dev), et.to(dev), n, r)
        x, w = x0.to(dev).requires_grad_(), w0.to(dev).requires_grad_()
        view = idx.view(keep.to(dev))
        out = relational_aggregate(
            x, w, idx, view, kind=kind, dim=c, with_sq=True, with_minmax=True, backend=be
        )
        for got, ref in zip(out, want, strict=True):
            torch.testing.assert_close(got.cpu(), ref)
        loss = sum(
            (torch.nan_to_num(o, posinf=0.0, neginf=0.0) * k.to(dev)).sum()
            for o, k in zip(out, coef, strict=True)
        )
        loss.backward()
        grads[be] = (x.grad.cpu(), w.grad.cpu())
        assert view.degree.long().tolist() == torch.bincount(ei[1][keep], minlength=n).tolist()
    torch.testing.assert_close(grads[backend][0], grads["naive"][0])
    torch.testing.assert_close(grads[backend][1], grads["naive"][1])


@pytest.mark.parametrize("aggregate", ["sum", "mean", "max", "pna"])
def test_conv_layer_matches_paper_formulas(aggregate: str) -> None:
    torch.manual_seed(0)
    ei, et = _tiny_graph()
    graph = RelationalGraph(ei, et, 3, 2)
    n, b, d = 3, 2, 4
    layer = GeneralizedRelationalConv(d, d, 2, d, aggregate=aggregate, dependent=False)
    x = torch.randn(n, b, d)
    boundary = torch.randn(n, b, d)
    query = torch.randn(b, d)
    ctx = PassContext.make(graph.index(), graph.index().view(None))
    got = layer(x, query, boundary, ctx)

    rel = layer.relation.weight  # [R, d]
    want_update = torch.zeros(n, b, d)
    deg = torch.tensor([1.0, 3.0, 4.0])  # in-degree + boundary message
    logd = deg.log()
    scale = logd / logd.mean()
    for v in range(n):
        msgs = [boundary[v]] + [
            x[int(ei[0, e])] * rel[int(et[e])] for e in range(ei.shape[1]) if int(ei[1, e]) == v
        ]
        msg = torch.stack(msgs)  # [deg, b, d]
        if aggregate == "sum":
            agg = msg.sum(0)
        elif aggregate == "mean":
            agg = msg.mean(0)
        elif aggregate == "max":
            agg = msg.max(0).values
        else:
            mean = msg.mean(0)
            std = ((msg * msg).mean(0) - mean * mean).clamp(min=1e-6).sqrt()
            agg = torch.cat([mean, msg.max(0).values, msg.min(0).values, std], dim=-1)
        if aggregate == "pna":  # the paper's Linear(12d) on [F, s F, F / s]
            w_all = layer.lin_agg.weight.view(3, d, 4 * d)
            feats = torch.cat([agg, agg * scale[v], agg / scale[v].clamp(min=1e-2)], dim=-1)
            want_update[v] = feats @ torch.cat(list(w_all), dim=1).t()
        else:
            want_update[v] = layer.lin_agg(agg)
    want = torch.relu(layer.norm(layer.lin_self(x) + want_update))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- Bellman-Ford reach
@pytest.mark.parametrize("aggregate", ["sum", "pna"])
def test_indicator_spreads_one_hop_per_layer(aggregate: str) -> None:
    # directed path 0 -> 1 -> 2 -> 3 -> 4 (no inverse edges); free relation embeddings, so the
    # query embedding enters only through the indicator on node 0
    ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    graph = RelationalGraph(ei, torch.zeros(4, dtype=torch.long), 5, 1)
    for layers in (1, 2):
        torch.manual_seed(0)
        model = NBFNet(1, dim=8, layers=layers, aggregate=aggregate, dependent=False)
        states = model.bellman_ford(graph, torch.tensor([0]), torch.tensor([0]))
        reached = []
        for v in range(5):
            model.zero_grad()
            states[v].sum().backward(retain_graph=True)
            reached.append(bool(model.query.weight.grad.abs().sum() > 0))
        assert reached == [v <= layers for v in range(5)], (layers, reached)


# ---------------------------------------------------------------- graphs
def test_inverse_relations() -> None:
    g = RelationalGraph(torch.tensor([[0, 1], [1, 2]]), torch.tensor([0, 1]), 3, 2)
    inv = add_inverse_relations(g)
    assert inv.edge_index.tolist() == [[0, 1, 1, 2], [1, 2, 0, 1]]
    assert inv.edge_type.tolist() == [0, 1, 2, 3]
    assert (inv.num_nodes, inv.num_relations) == (3, 4)
    kg = kg_graph(torch.tensor([[0, 1, 2]]), 3, 2)  # (h, r, t)
    assert kg.edge_index.tolist() == [[0, 2], [2, 0]] and kg.edge_type.tolist() == [1, 3]


def test_homogeneous_graph_both_directions_and_loops() -> None:
    g = homogeneous_graph(torch.tensor([[0, 2]]), 3)
    assert sorted(map(tuple, g.edge_index.t().tolist())) == [(0, 0), (0, 2), (1, 1), (2, 0), (2, 2)]
    assert g.num_relations == 1 and g.edge_type.sum() == 0


def test_remove_easy_edges() -> None:
    g = kg_graph(torch.tensor([[0, 0, 1], [1, 1, 0], [0, 1, 2]]), 3, 2)
    # edges: 0-0->1, 1-1->0, 0-1->2, then inverses 1-2->0, 0-3->1, 2-3->0
    one_hop = remove_easy_edges(g, torch.tensor([0]), torch.tensor([1]))
    assert one_hop.tolist() == [False, False, True, False, False, True]
    exact = remove_easy_edges(g, torch.tensor([0]), torch.tensor([1]), r_index=torch.tensor([0]))
    assert exact.tolist() == [False, True, True, False, True, True]


def test_strict_negatives_avoid_true_answers() -> None:
    g = kg_graph(torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3]]), 6, 1)
    sampler = NegativeSampler(g)
    neg = sampler.sample(
        torch.tensor([0] * 50),
        torch.tensor([0] * 50),
        torch.tensor([1] * 50),
        4,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(neg.unique().tolist()) <= {0, 4, 5}


# ---------------------------------------------------------------- ranking
def test_filtered_ranks_hand_example() -> None:
    scores = torch.tensor([[0.9, 0.5, 0.7, 0.8, 0.1], [0.2, 0.4, 0.4, 0.3, 0.0]])
    target = torch.tensor([2, 1])
    true = torch.tensor([[True, False, True, False, False], [False, True, False, False, False]])
    # row 0: node 0 (0.9) is another true answer -> filtered; node 3 (0.8) beats -> rank 2
    # row 1: node 2 ties with the answer -> counts against it -> rank 2
    assert filtered_ranks(scores, target, true).tolist() == [2, 2]


class _FixedScores(torch.nn.Module):
    """Stub model: score of node v for (h, r) is table[(h, r)][v]."""

    def __init__(self, table: dict[tuple[int, int], list[float]]) -> None:
        super().__init__()
        self.table = table

    def score_all(self, graph, h, r):
        return torch.tensor([self.table[(int(a), int(b))] for a, b in zip(h, r, strict=True)])


def test_evaluate_kg_both_directions_filtered() -> None:
    train = torch.tensor([[0, 0, 1], [0, 0, 3]])
    test = torch.tensor([[0, 0, 2]])
    graph = kg_graph(train, 4, 1)
    model = _FixedScores(
        {
            (0, 0): [0.0, 0.9, 0.5, 0.8],  # tail query (0, r, ?): 1 and 3 are filtered -> rank 1
            (2, 1): [0.3, 0.6, 0.1, 0.2],  # head query (2, r^-1, ?): node 1 beats 0 -> rank 2
        }
    )
    m = evaluate_kg(model, graph, test, filter_triples=torch.cat([train, test]), batch_size=1)
    assert m["mrr"] == pytest.approx((1.0 + 0.5) / 2)
    assert (m["hits@1"], m["hits@3"], m["queries"]) == (0.5, 1.0, 2.0)
    mask = AnswerFilter(torch.cat([train, test]), 4, 1).mask(
        torch.tensor([0, 2]), torch.tensor([0, 1]), 4
    )
    assert mask.tolist() == [[False, True, True, True], [True, False, False, False]]


# ---------------------------------------------------------------- data
def test_cora_split_sizes_disjoint_and_seeded(data_dir) -> None:
    edges, n = load_cora_edges(data_dir / "cora")
    assert (edges.shape, n) == ((5278, 2), 2708)
    s = cora_link_split(edges, n, seed=0)
    assert (len(s.train), len(s.valid), len(s.test)) == (4486, 263, 529)
    assert (len(s.valid_neg), len(s.test_neg)) == (263, 529)

    def keys(t):
        return set((t[:, 0] * n + t[:, 1]).tolist())

    parts = [keys(s.train), keys(s.valid), keys(s.test)]
    assert sum(map(len, parts)) == 5278 and len(set.union(*parts)) == 5278
    negs = keys(torch.cat([s.valid_neg, s.test_neg]))
    assert len(negs) == 263 + 529 and not negs & keys(edges)
    assert (s.valid_neg[:, 0] < s.valid_neg[:, 1]).all()
    again = cora_link_split(edges, n, seed=0)
    assert torch.equal(again.test, s.test) and torch.equal(again.test_neg, s.test_neg)
    assert not torch.equal(cora_link_split(edges, n, seed=1).test, s.test)


def test_fb15k237_counts(data_dir) -> None:
    ds = load_fb15k237(data_dir / "fb15k-237")
    assert (ds.num_entities, ds.num_relations) == (14541, 237)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (272115, 17535, 20466)


# ---------------------------------------------------------------- training
def _toy_kg() -> RelationalGraph:
    gen = torch.Generator().manual_seed(0)
    h = torch.randint(0, 30, (120,), generator=gen)
    r = torch.randint(0, 3, (120,), generator=gen)
    t = (h + r + 1) % 30  # learnable structure
    return kg_graph(torch.stack([h, r, t], 1), 30, 3)


def test_tiny_training_decreases_loss_and_is_deterministic() -> None:
    cfg = NBFNetTrainConfig(
        dim=8, layers=2, batch_size=16, epochs=3, num_negative=4, log_every=0, seed=3, threads=1
    )
    graph = _toy_kg()
    a = fit_nbfnet(graph, cfg)
    b = fit_nbfnet(graph, cfg)
    assert a.losses == b.losses and a.steps == 24
    assert sum(a.losses[-4:]) / 4 < sum(a.losses[:4]) / 4
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k])


def test_loss_self_adversarial_weights() -> None:
    logits = torch.tensor([[2.0, 0.0, math.log(3.0)]])
    bce_pos = math.log1p(math.exp(-2.0))
    bce_neg = [math.log(2.0), math.log(4.0)]
    p = [0.25, 0.75]  # softmax([0, log 3])
    want = (bce_pos + p[0] * bce_neg[0] + p[1] * bce_neg[1]) / 2.0
    assert float(nbfnet_loss(logits, 1.0)) == pytest.approx(want, rel=1e-6)
    uniform = (bce_pos + 0.5 * sum(bce_neg)) / 2.0
    assert float(nbfnet_loss(logits, 0.0)) == pytest.approx(uniform, rel=1e-6)


def test_config_validation_names_field() -> None:
    with pytest.raises(ValueError, match="aggregate"):
        NBFNetTrainConfig(aggregate="median")
    with pytest.raises(ValueError, match="batch_size"):
        NBFNetTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="message"):
        NBFNet(2, message="complex")


@pytest.mark.gpu
def test_cuda_model_triton_matches_naive() -> None:
    dev = torch.device("cuda")
    graph = _toy_kg().to(dev)
    torch.manual_seed(0)
    fused = NBFNet(graph.num_relations, dim=16, layers=3, backend="triton").to(dev)
    naive = NBFNet(graph.num_relations, dim=16, layers=3, backend="naive").to(dev)
    naive.load_state_dict(fused.state_dict())
    h = torch.tensor([0, 5, 7], device=dev)
    r = torch.tensor([0, 1, 4], device=dev)
    cand = torch.randint(0, 30, (3, 6), device=dev)
    keep = remove_easy_edges(graph, h.unsqueeze(1).expand_as(cand), cand)
    outs = []
    for model in (fused, naive):
        loss = nbfnet_loss(model(graph, h, cand, r, keep=keep), 0.5)
        loss.backward()
        outs.append((loss.detach(), [p.grad for p in model.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def link_config(**changes: Any) -> NBFNetTrainConfig:
    """A small link-task NBFNet (d = 8, 2 layers, no query-dependent relations, uniform
    negative weights, seed 0, one thread) with ``changes``."""
    base: dict[str, Any] = dict(
        task="link",
        dependent=False,
        dim=8,
        layers=2,
        log_every=0,
        adversarial_temperature=0.0,
        seed=0,
        threads=1,
    )
    return NBFNetTrainConfig(**{**base, **changes})


def test_link_training_with_negative_sources_runs_and_learns() -> None:
    ring = torch.stack([torch.arange(20), (torch.arange(20) + 1) % 20], 1)
    pairs = torch.sort(ring, dim=1).values
    graph = homogeneous_graph(pairs, 20)
    cfg = link_config(batch_size=5, epochs=3, num_negative=3, negative_sources=1.0)
    res = fit_nbfnet(graph, cfg)
    assert res.steps == 12 and res.queries == 60
    assert sum(res.losses[-3:]) < sum(res.losses[:3])
    with pytest.raises(ValueError, match="negative_sources"):
        NBFNetTrainConfig(task="kg", negative_sources=1.0)


def test_triples_folder_without_dicts_crlf_and_unknown_entity(tmp_path):
    from gnn.data.kg import load_triples_dir

    (tmp_path / "train.txt").write_bytes(b"a\tr1\tb\r\nb\tr2\tc\r\n")
    (tmp_path / "valid.txt").write_text("c\tr1\ta\n")
    (tmp_path / "test.txt").write_text("a\tr2\tc\n")
    ds = load_triples_dir(tmp_path)
    assert ds.entities == {"a": 0, "b": 1, "c": 2} and ds.relations == {"r1": 0, "r2": 1}
    assert ds.train.tolist() == [[0, 0, 1], [1, 1, 2]]
    assert ds.valid.tolist() == [[2, 0, 0]] and ds.test.tolist() == [[0, 1, 2]]
    (tmp_path / "entities.dict").write_text("0\ta\n1\tb\n")
    (tmp_path / "relations.dict").write_text("0\tr1\n1\tr2\n")
    with pytest.raises(ValueError, match=r"train.txt:2: unknown entity or relation"):
        load_triples_dir(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"test.txt: missing"):
        load_triples_dir(tmp_path)


def test_symmetric_pair_training_matches_the_reference_link_loss() -> None:
    from gnn.engine.nbfnet import build_model, symmetric_pair_loss

    ring = torch.stack([torch.arange(20), (torch.arange(20) + 1) % 20], 1)
    chords = torch.tensor([[0, 10], [5, 15]])
    graph = homogeneous_graph(torch.cat([ring, chords]), 20)
    cfg = link_config(batch_size=4, epochs=4, num_negative=2, symmetric=True)
    torch.manual_seed(0)
    model = build_model(graph.num_relations, cfg)
    src, ans = torch.tensor([0, 3, 5, 9]), torch.tensor([1, 4, 15, 10])
    # A symmetric pair score does not depend on the pair's direction.
    zero = torch.zeros(4, dtype=torch.long)
    torch.testing.assert_close(
        model.pair_scores(graph, src, ans, zero, symmetric=True),
        model.pair_scores(graph, ans, src, zero, symmetric=True),
    )
    # The loss: positives against K random non-edge pairs each, both directions, with every
    # pair's edges removed, reproduced by hand from the same random stream.
    sampler = NegativeSampler(graph)
    loss = symmetric_pair_loss(
        model, graph, sampler, src, ans, cfg, torch.Generator().manual_seed(7), torch.device("cpu")
    )
    gen = torch.Generator().manual_seed(7)
    xs = torch.randint(20, (8,), generator=gen)
    ys = sampler.sample(xs, torch.zeros_like(xs), xs, 1, generator=gen)[:, 0]
    edges = {tuple(e) for e in graph.edge_index.t().tolist()}
    assert all((int(x), int(y)) not in edges and x != y for x, y in zip(xs, ys, strict=True))
    h, t = torch.cat([src, xs]), torch.cat([ans, ys])
    keep = remove_easy_edges(graph, h, t)
    assert not keep[(graph.edge_index[0] == 0) & (graph.edge_index[1] == 1)].any()
    assert not keep[(graph.edge_index[0] == 1) & (graph.edge_index[1] == 0)].any()
    logits = model.pair_scores(graph, h, t, torch.zeros_like(h), symmetric=True, keep=keep)
    table = torch.cat([logits[:4, None], logits[4:].view(4, 2)], 1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        table, torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3), reduction="none"
    )
    expected = ((bce[:, 0] + 0.5 * bce[:, 1:].sum(1)) / 2).mean()
    torch.testing.assert_close(loss, expected)
    res = fit_nbfnet(graph, cfg)
    assert res.steps == 24 and res.queries == 88
    assert sum(res.losses[-4:]) < sum(res.losses[:4])
    with pytest.raises(ValueError, match="symmetric"):
        NBFNetTrainConfig(task="kg", symmetric=True)
    with pytest.raises(ValueError, match="negative_sources"):
        NBFNetTrainConfig(task="link", symmetric=True, negative_sources=1.0)


def test_two_thread_training_is_bit_identical_with_a_seed():
    # Large enough that CPU scatter / index-add sums run on both threads: without the
    # deterministic kernels torch_threads turns on, the two runs differ in the last bits.
    gen = torch.Generator().manual_seed(0)
    n, m, r = 2000, 40000, 4
    heads, rels, tails = (torch.randint(0, k, (m,), generator=gen) for k in (n, r, n))
    triples = torch.stack([heads, rels, tails], dim=1)
    graph = kg_graph(triples, n, r)
    kg = dict(task="kg", dependent=True, adversarial_temperature=0.5, num_negative=8)
    cfg = link_config(**kg, batch_size=4, dim=16, layers=3, max_steps=3, epochs=100, threads=2)
    runs = [fit_nbfnet(graph, cfg, train_triples=triples).model.state_dict() for _ in range(2)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    # the setting is scoped to the training call
    assert not torch.are_deterministic_algorithms_enabled()
