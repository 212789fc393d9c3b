"""LightGCN model, adjacency, loss, sampler and training loop (tiny graphs, exact values)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bench.lightgcn_files import load_lightgcn_file
from gnn.data.sampling import BPRSampler
from gnn.engine.device import select_device
from gnn.engine.lightgcn import LightGCNTrainConfig, fit_lightgcn
from gnn.eval.metrics import recall_ndcg_at_k
from gnn.losses import bpr_loss, embedding_l2, lightgcn_bpr_loss
from gnn.models.lightgcn import LightGCN, build_norm_adj, lightgcn_propagate

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
R2 = 1.0 / math.sqrt(2.0)

# Users u0, u1; items i0, i1; interactions (u0,i0), (u0,i1), (u1,i0) and a duplicate (u0,i0).
# Degrees: u0 = 2, u1 = 1, i0 = 2, i1 = 1. Nodes: u0=0, u1=1, i0=2, i1=3.
TINY_USERS = np.array([0, 0, 1, 0])
TINY_ITEMS = np.array([0, 1, 0, 0])


def tiny_dense_expected() -> torch.Tensor:
    a = torch.zeros(4, 4)
    a[0, 2] = a[2, 0] = 1.0 / math.sqrt(2 * 2)  # u0-i0
    a[0, 3] = a[3, 0] = 1.0 / math.sqrt(2 * 1)  # u0-i1
    a[1, 2] = a[2, 1] = 1.0 / math.sqrt(1 * 2)  # u1-i0
    return a


@pytest.mark.parametrize("device", DEVICES)
def test_norm_adj_entries(device: str) -> None:
    adj = build_norm_adj(TINY_USERS, TINY_ITEMS, 2, 2, device)
    assert adj.layout == torch.sparse_csr
    assert adj.shape == (4, 4)
    assert adj.crow_indices().dtype == torch.int32
    assert adj.crow_indices().tolist() == [0, 2, 3, 5, 6]
    assert adj.col_indices().tolist() == [2, 3, 2, 0, 1, 0]
    torch.testing.assert_close(adj.to_dense().cpu(), tiny_dense_expected(), rtol=0, atol=1e-7)


def test_norm_adj_isolated_nodes_and_validation() -> None:
    adj = build_norm_adj(TINY_USERS, TINY_ITEMS, 3, 3)  # user 2 and item 2 have no interactions
    dense = adj.to_dense()
    assert dense.shape == (6, 6)
    assert dense[2].abs().sum() == 0 and dense[5].abs().sum() == 0
    assert dense[0, 3] == pytest.approx(0.5)  # item i0 is node 3 now
    with pytest.raises(ValueError, match="item id out of range"):
        build_norm_adj(np.array([0]), np.array([2]), 1, 2)
    with pytest.raises(ValueError, match="user id out of range"):
        build_norm_adj(np.array([-1]), np.array([0]), 1, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_one_and_two_layer_propagation_by_hand(device: str) -> None:
    adj = build_norm_adj(TINY_USERS, TINY_ITEMS, 2, 2, device)
    ego = torch.tensor([[1.0], [2.0], [3.0], [4.0]], device=device)  # u0, u1, i0, i1
    # A E0: u0 = 0.5*3 + 4/sqrt2, u1 = 3/sqrt2, i0 = 0.5*1 + 2/sqrt2, i1 = 1/sqrt2.
    ae = [1.5 + 4 * R2, 3 * R2, 0.5 + 2 * R2, R2]
    one = lightgcn_propagate(adj, ego, 1).cpu().squeeze(1)
    expected_one = torch.tensor([(e + a) / 2 for e, a in zip([1, 2, 3, 4], ae, strict=True)])
    torch.testing.assert_close(one, expected_one)
    # A^2 E0: u0 = 0.5*ae[i0] + ae[i1]/sqrt2, u1 = ae[i0]/sqrt2,
    #         i0 = 0.5*ae[u0] + ae[u1]/sqrt2, i1 = ae[u0]/sqrt2.
    aae = [0.5 * ae[2] + R2 * ae[3], R2 * ae[2], 0.5 * ae[0] + R2 * ae[1], R2 * ae[0]]
    two = lightgcn_propagate(adj, ego, 2).cpu().squeeze(1)
    expected_two = torch.tensor(
        [(e + a + b) / 3 for e, a, b in zip([1, 2, 3, 4], ae, aae, strict=True)]
    )
    torch.testing.assert_close(two, expected_two)
    assert torch.equal(lightgcn_propagate(adj, ego, 0), ego)


@pytest.mark.parametrize("device", DEVICES)
def test_propagation_gradient_matches_dense_autograd(device: str) -> None:
    gen = torch.Generator().manual_seed(3)
    users = torch.randint(0, 6, (25,), generator=gen)
    items = torch.randint(0, 9, (25,), generator=gen)
    adj = build_norm_adj(users, items, 6, 9, device)
    ego = torch.randn(15, 4, generator=gen).to(device).requires_grad_()
    weight = torch.randn(15, 4, generator=gen).to(device)
    (lightgcn_propagate(adj, ego, 3) * weight).sum().backward()

    dense = adj.to_dense()
    ref_ego = ego.detach().clone().requires_grad_()
    h, acc = ref_ego, ref_ego
    for _ in range(3):
        h = dense @ h
        acc = acc + h
    ((acc / 4) * weight).sum().backward()
    assert ego.grad is not None and ref_ego.grad is not None
    torch.testing.assert_close(ego.grad, ref_ego.grad, rtol=1e-5, atol=1e-6)


def test_model_api_and_seeded_init() -> None:
    model = LightGCN(2, 2, dim=3, layers=1, seed=7)
    adj = LightGCN.build_norm_adj(TINY_USERS, TINY_ITEMS, 2, 2, "cpu")
    user_emb, item_emb = model.propagate(adj)
    assert user_emb.shape == (2, 3) and item_emb.shape == (2, 3)
    full = lightgcn_propagate(adj, model.embedding, 1)
    torch.testing.assert_close(torch.cat([user_emb, item_emb]), full)
    assert torch.equal(LightGCN(2, 2, dim=3, seed=7).embedding, model.embedding)
    assert not torch.equal(LightGCN(2, 2, dim=3, seed=8).embedding, model.embedding)
    with pytest.raises(ValueError, match="dim"):
        LightGCN(2, 2, dim=0)


def test_bpr_loss_values() -> None:
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 0.0])
    # mean(-ln sigma(2 - 1), -ln sigma(0)) = mean(ln(1 + e^-1), ln 2)
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)

    u = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 1.0]])
    n = torch.tensor([[0.0, 1.0]])
    total, bpr, l2 = lightgcn_bpr_loss(u, p, n, u, p, n, reg=0.1)
    assert bpr.item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)  # y_ui=1, y_uj=0
    assert l2.item() == pytest.approx(0.5 * (1 + 2 + 1) / 1)
    assert total.item() == pytest.approx(bpr.item() + 0.1 * 2.0, rel=1e-6)
    assert embedding_l2(torch.ones(4, 2), batch_size=4).item() == pytest.approx(1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["user", "edge"])
def test_sampler_range_exclusion_and_determinism(device: str, mode: str) -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 21), 8)  # user 0 has no interactions
    items = np.concatenate([rng.choice(10, size=8, replace=False) for _ in range(20)])
    sampler = BPRSampler(users, items, 10, device=device, mode=mode)

    def run(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator(device=device).manual_seed(seed)
        batches = list(sampler.epoch(32, generator=gen))
        assert [len(b[0]) for b in batches] == [32] * 5
        return [torch.cat(t) for t in zip(*batches, strict=True)]

    u, p, n = run(5)
    assert u.numel() == len(users)
    assert int(n.min()) >= 0 and int(n.max()) < 10
    assert int(u.min()) >= 1 and int(u.max()) <= 20
    assert bool(sampler.is_positive(u, p).all())  # positives are training interactions
    if mode == "edge":  # every interaction exactly once per epoch
        got = sorted(zip(u.tolist(), p.tolist(), strict=True))
        assert got == sorted(zip(users.tolist(), items.tolist(), strict=True))
    # 8 of 10 items are positives: uniform draws would collide ~80% of the time
    assert not bool(sampler.is_positive(u, n).any())
    u2, p2, n2 = run(5)
    assert torch.equal(u, u2) and torch.equal(p, p2) and torch.equal(n, n2)
    assert not torch.equal(n, run(6)[2])

    plain = BPRSampler(users, items, 10, device=device, exclude_positives=False)
    gen = torch.Generator(device=device).manual_seed(1)
    neg = plain.negatives(torch.as_tensor(users, device=device), generator=gen)
    assert int(neg.min()) >= 0 and int(neg.max()) < 10
    assert bool(plain.is_positive(torch.as_tensor(users, device=device), neg).any())
    with pytest.raises(ValueError, match="mode"):
        BPRSampler(users, items, 10, mode="item")


def test_user_mode_weighs_users_equally() -> None:
    # user 0 has 1 interaction, user 1 has 9: edge mode gives them 10% / 90% of the triples,
    # user mode about 50% / 50%, with user 1's positives drawn uniformly.
    users = np.array([0] + [1] * 9)
    items = np.array([0] + list(range(1, 10)))
    sampler = BPRSampler(users, items, 12, mode="user")
    gen = torch.Generator().manual_seed(0)
    draws = [
        torch.cat(t)
        for t in zip(*(next(sampler.epoch(10, generator=gen)) for _ in range(400)), strict=True)
    ]
    u, p = draws[0], draws[1]
    assert abs(float((u == 0).double().mean()) - 0.5) < 0.05
    assert bool((p[u == 0] == 0).all())
    share = torch.bincount(p[u == 1], minlength=10)[1:].double() / int((u == 1).sum())
    assert bool(((share - 1 / 9).abs() < 0.04).all()), share


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_draws_each_non_positive_uniformly(device: str) -> None:
    # user 0: positives {1, 3, 4} of 6 items -> non-positives {0, 2, 5};
    # user 1: positive on every item -> uniform fallback; user 2: positive {0} -> {1..5}.
    users = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 2])
    items = np.array([4, 1, 3, 0, 1, 2, 3, 4, 5, 0])
    sampler = BPRSampler(users, items, 6, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    draws = 3000
    for user, allowed in ((0, [0, 2, 5]), (1, list(range(6))), (2, [1, 2, 3, 4, 5])):
        query = torch.full((draws,), user, dtype=torch.long, device=device)
        neg = sampler.negatives(query, generator=gen).cpu()
        counts = torch.bincount(neg, minlength=6)
        assert sorted(torch.nonzero(counts).squeeze(1).tolist()) == allowed
        share = counts[allowed].double() / draws
        assert bool(((share - 1 / len(allowed)).abs() < 0.05).all()), share


def clustered_graph(seed: int = 0) -> tuple[np.ndarray, ...]:
    """5 clusters of 40 users x 20 items; each user: 10 train + 4 test items of its cluster."""
    rng = np.random.default_rng(seed)
    tr_u, tr_i, te_u, te_i = [], [], [], []
    for u in range(200):
        c = u % 5
        chosen = rng.choice(np.arange(c * 20, c * 20 + 20), size=14, replace=False)
        tr_u += [u] * 10
        tr_i += chosen[:10].tolist()
        te_u += [u] * 4
        te_i += chosen[10:].tolist()
    return tuple(np.array(a, dtype=np.int64) for a in (tr_u, tr_i, te_u, te_i))


@pytest.mark.parametrize("device", DEVICES)
def test_short_training_beats_random_and_is_deterministic(device: str) -> None:
    tr_u, tr_i, te_u, te_i = clustered_graph()
    cfg = LightGCNTrainConfig(
        epochs=20, batch_size=256, lr=0.01, dim=16, layers=2, seed=3, eval_every=10, threads=1
    )
    lines: list[str] = []
    result = fit_lightgcn(
        tr_u,
        tr_i,
        200,
        100,
        cfg,
        device=device,
        test_users=te_u,
        test_items=te_i,
        log=lines.append,
    )
    untrained = fit_lightgcn(
        tr_u, tr_i, 200, 100, cfg.replace(epochs=0), device=device, log=lambda *a: None
    )
    base = recall_ndcg_at_k(untrained.user_emb, untrained.item_emb, tr_u, tr_i, te_u, te_i)
    final = recall_ndcg_at_k(result.user_emb, result.item_emb, tr_u, tr_i, te_u, te_i)
    assert result.epochs == 20 and len(result.losses) == 20 and len(result.epoch_seconds) == 20
    assert result.losses[-1] < result.losses[0]
    assert [h["epoch"] for h in result.history] == [10.0, 20.0]
    assert result.history[-1]["recall@20"] == pytest.approx(final["recall@20"])
    assert final["recall@20"] > base["recall@20"] + 0.3
    assert final["ndcg@20"] > base["ndcg@20"] + 0.3
    assert result.user_emb.device.type == "cpu" and result.user_emb.dtype == torch.float32
    assert result.user_emb.shape == (200, 16) and result.item_emb.shape == (100, 16)
    assert set(result.state_dict) == {"embedding"}
    assert any(line.startswith("eval epoch") for line in lines)
    if device == "cpu":
        again = fit_lightgcn(tr_u, tr_i, 200, 100, cfg, device=device, log=lambda *a: None)
        assert again.losses == result.losses
        assert torch.equal(again.user_emb, result.user_emb)
        other = fit_lightgcn(
            tr_u, tr_i, 200, 100, cfg.replace(seed=4), device=device, log=lambda *a: None
        )
        assert other.losses != result.losses


@pytest.mark.gpu
def test_cuda_graph_training_matches_eager() -> None:
    tr_u, tr_i, _, _ = clustered_graph()
    # 2000 interactions / 256: 7 full batches (3 warm-up, capture, replays) + 1 eager remainder
    cfg = LightGCNTrainConfig(epochs=3, batch_size=256, lr=0.01, dim=16, layers=2, seed=3)
    lines: list[str] = []
    graphed = fit_lightgcn(tr_u, tr_i, 200, 100, cfg, device="cuda", log=lines.append)
    eager = fit_lightgcn(
        tr_u, tr_i, 200, 100, cfg.replace(cuda_graphs=False), device="cuda", log=lambda *a: None
    )
    assert "cuda graph: replaying" in lines
    np.testing.assert_allclose(graphed.losses, eager.losses, rtol=1e-4)
    torch.testing.assert_close(graphed.user_emb, eager.user_emb, rtol=1e-3, atol=1e-5)


def test_time_budget_stops_training() -> None:
    tr_u, tr_i, _, _ = clustered_graph()
    cfg = LightGCNTrainConfig(epochs=50, batch_size=64, dim=8, time_budget_seconds=1e-9)
    lines: list[str] = []
    result = fit_lightgcn(tr_u, tr_i, 200, 100, cfg, log=lines.append)
    assert result.epochs == 0 and result.losses == []
    assert any("time budget" in line for line in lines)


def test_lr_schedule() -> None:
    constant = LightGCNTrainConfig(lr=0.5, epochs=4)
    assert [constant.lr_at(e) for e in (1, 4)] == [0.5, 0.5]
    cosine = LightGCNTrainConfig(lr=1.0, epochs=4, lr_schedule="cosine", lr_min_ratio=0.2)
    # progress (e - 1) / 4: lr = 0.2 + 0.4 * (1 + cos(pi * progress))
    expected = [0.2 + 0.4 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert [cosine.lr_at(e) for e in (1, 2, 3, 4)] == pytest.approx(expected)
    timed = cosine.replace(time_budget_seconds=100.0)
    assert timed.lr_at(1, elapsed=50.0) == pytest.approx(0.6)  # the budget is closer
    assert timed.lr_at(3, elapsed=10.0) == pytest.approx(0.6)  # the epochs are closer
    assert timed.lr_at(4, elapsed=500.0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="lr_schedule"):
        LightGCNTrainConfig(lr_schedule="step")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"LightGCNTrainConfig\.batch_size"):
        LightGCNTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"LightGCNTrainConfig\.lr"):
        LightGCNTrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match=r"LightGCNTrainConfig\.time_budget_seconds"):
        LightGCNTrainConfig(time_budget_seconds=-5)
    paper = LightGCNTrainConfig.paper()
    assert (paper.dim, paper.layers, paper.lr, paper.batch_size, paper.reg) == (
        64,
        3,
        1e-3,
        2048,
        1e-4,
    )
    with pytest.raises(AttributeError):
        paper.lr = 0.1  # type: ignore[misc]
    recipe = LightGCNTrainConfig.cpu_recipe(seed=2)
    assert (recipe.batch_size, recipe.lr, recipe.lr_schedule, recipe.seed) == (
        65536,
        0.02,
        "cosine",
        2,
    )


def _bench_argv(tmp_path, *, epochs: int) -> list[str]:
    """bench.lightgcn arguments on the clustered graph, written as LightGCN files."""
    tr_u, tr_i, te_u, te_i = clustered_graph()
    for name, users, items in (("train.txt", tr_u, tr_i), ("test.txt", te_u, te_i)):
        lines = [" ".join(map(str, [u, *items[users == u].tolist()])) for u in np.unique(users)]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    argv = ["--train", str(tmp_path / "train.txt"), "--test", str(tmp_path / "test.txt")]
    return [
        *argv,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--epochs",
        str(epochs),
        "--batch-size",
        "512",
    ]


def test_bench_main_prints_table_and_json(tmp_path, capsys) -> None:
    from bench.lightgcn import main

    argv = _bench_argv(tmp_path, epochs=2)
    assert main([*argv, "--eval-every", "1", "--dim", "8", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "| epoch | train s | recall@20 | ndcg@20 |" in out
    summary = json.loads(out[-1])
    assert set(summary) == {
        "recall@20",
        "ndcg@20",
        "epochs",
        "seconds",
        "epoch_seconds",
        "pyg_epoch_seconds",
        "epoch_time_ratio",
    }
    assert summary["epochs"] == 2 and 0.0 <= summary["recall@20"] <= 1.0
    assert summary["pyg_epoch_seconds"] is None and summary["epoch_time_ratio"] is None


def test_bench_compare_pyg_trains_through_the_same_loop(tmp_path, capsys, monkeypatch) -> None:
    """--compare-pyg times a PyG-style model through train_bpr (a stand-in for PyG here)."""
    import sys
    import types

    from bench.lightgcn import main

    class StandInLightGCN(torch.nn.Module):
        def __init__(self, num_nodes: int, dim: int, layers: int) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(num_nodes, dim)

        def get_embedding(self, edge_index: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(self.embedding.weight)
            out = out.index_add(0, edge_index[1], self.embedding.weight[edge_index[0]])
            return self.embedding.weight + 0.1 * out

    models = types.ModuleType("torch_geometric.nn.models")
    models.LightGCN = StandInLightGCN  # type: ignore[attr-defined]
    for name in ("torch_geometric", "torch_geometric.nn"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "torch_geometric.nn.models", models)
    argv = _bench_argv(tmp_path, epochs=1)
    assert main([*argv, "--dim", "8", "--compare-pyg", "--pyg-epochs", "3", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert sum(line.startswith("pyg epoch") for line in out) == 3
    assert any(line.startswith("pyg lightgcn: ") for line in out)
    summary = json.loads(out[-1])
    assert summary["pyg_epoch_seconds"] > 0 and summary["epoch_time_ratio"] > 0


def test_load_lightgcn_file(tmp_path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("0 5 7\n1\n\n2 3\n")
    users, items = load_lightgcn_file(path)
    assert users.tolist() == [0, 0, 2] and items.tolist() == [5, 7, 3]
    assert users.dtype == np.int64 and items.dtype == np.int64
    path.write_text("0 5 x\n")
    with pytest.raises(ValueError, match=":1:"):
        load_lightgcn_file(path)


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    with pytest.raises(ValueError):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda:0")


def test_torch_threads_sets_and_restores():
    from gnn.engine.device import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0: leave torch's setting alone
        assert torch.get_num_threads() == before
    try:
        with torch_threads(1):
            raise KeyError("boom")
    except KeyError:
        pass
    assert torch.get_num_threads() == before
