"""Distill-to-delete unlearning (gnn.unlearn.d2dgn) and its evaluation helpers
(gnn.unlearn.eval)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from gnn.data.kg import RelationalGraph, homogeneous_graph
from gnn.engine.lightgcn import LightGCNTrainConfig, fit_lightgcn
from gnn.models.lightgcn import build_norm_adj, lightgcn_propagate
from gnn.models.nbfnet import NBFNet
from gnn.unlearn.d2dgn import UnlearnConfig, bernoulli_kl, embedding_distance
from gnn.unlearn.eval import (
    deleted_auroc_lightgcn,
    deleted_auroc_nbfnet,
    sample_deleted_edges,
    sample_deleted_users,
)
from gnn.unlearn.lightgcn import lightgcn_deletion, lightgcn_unlearn_loss, unlearn_lightgcn
from gnn.unlearn.nbfnet import delete_triples, nbfnet_unlearn_loss, unlearn_nbfnet

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _kl(t: float, s: float) -> float:
    p, q = _sig(t), _sig(s)
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _two_communities(num_users: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Users 2k like items 0-11, users 2k+1 items 12-23; 6 interactions each."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(num_users):
        base = 12 * (u % 2)
        users += [u] * 6
        items += list(base + rng.choice(12, 6, replace=False))
    return np.array(users), np.array(items)


# ---------------------------------------------------------------- loss terms, by hand
def test_bernoulli_kl_and_embedding_distance_hand_values() -> None:
    # p = sigma(ln 3) = 0.75 against q = 0.5: 0.75 ln 1.5 + 0.25 ln 0.5
    t = torch.tensor([math.log(3.0), 0.0])
    s = torch.tensor([0.0, 0.0])
    expected = (0.75 * math.log(1.5) + 0.25 * math.log(0.5) + 0.0) / 2
    assert float(bernoulli_kl(t, s)) == pytest.approx(expected, rel=1e-6)
    # temperature 2 divides the logits and multiplies by 4
    assert float(bernoulli_kl(t, s, temperature=2.0)) == pytest.approx(
        4 * (_kl(math.log(3.0) / 2, 0.0)) / 2, rel=1e-6
    )
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert float(embedding_distance(a, b)) == pytest.approx((5.0 + 25.0) / 2)


def test_lightgcn_loss_against_its_formula() -> None:
    # 2 users, 3 items, d = 2; rows: users 0, 1 then items 0, 1, 2
    final = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 2.0], [0.5, -1.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    destroyer = torch.tensor([[0.1, 0.0], [0.0, 0.1], [0.0, 0.1], [0.1, 0.0], [0.0, 0.0]])
    users, pos, neg = torch.tensor([0]), torch.tensor([0]), torch.tensor([[2]])
    du, di = torch.tensor([1]), torch.tensor([1])
    gone = torch.tensor([1])
    total, l_r, l_f = lightgcn_unlearn_loss(
        final,
        teacher,
        destroyer,
        2,
        (users, pos, neg),
        (du, di),
        gone,
        alpha=0.3,
        beta=0.5,
        temperature=1.0,
    )
    # retained logits: student (u0, i0) = 1, (u0, i2) = 0.5; teacher 2 and 2
    kl_r = (_kl(2.0, 1.0) + _kl(2.0, 0.5)) / 2
    # embeddings of rows u0, i0, i2: squared distances 1, 1, 4.25
    emb_r = (1.0 + 1.0 + (0.25 + 4.0)) / 3
    # deleted (u1, i1): student 2, destroyer 0; user 1's row: (0, .9) -> 0.81
    kl_f = _kl(0.0, 2.0)
    emb_f = 0.81
    assert float(l_r) == pytest.approx(kl_r + 0.5 * emb_r, rel=1e-6)
    assert float(l_f) == pytest.approx(kl_f + 0.5 * emb_f, rel=1e-6)
    assert float(total) == pytest.approx(0.3 * float(l_r) + 0.7 * float(l_f), rel=1e-6)


# ---------------------------------------------------------------- deletion requests
def test_lightgcn_deletion_users_take_all_their_edges() -> None:
    users = np.array([0, 0, 1, 2, 2, 2])
    items = np.array([0, 1, 1, 0, 1, 2])
    d = lightgcn_deletion(users, items, edges=np.array([2]), users_to_delete=np.array([2]))
    assert d.keep.tolist() == [True, True, False, False, False, False]
    assert d.deleted_users.tolist() == [2]
    assert d.num_deleted == 4
    mask = np.array([True, False, False, False, False, False])
    assert lightgcn_deletion(users, items, edges=mask).keep.tolist() == [False] + [True] * 5


def test_delete_triples_removes_both_directions() -> None:
    g = homogeneous_graph(torch.tensor([[0, 1], [1, 2], [2, 3]]), 4)
    r = delete_triples(g, torch.tensor([[1, 0, 2]]), inverse_offset=0)
    pairs = set(map(tuple, r.edge_index.t().tolist()))
    assert pairs == {(0, 1), (1, 0), (2, 3), (3, 2), (0, 0), (1, 1), (2, 2), (3, 3)}
    kg = RelationalGraph(
        torch.tensor([[0, 1, 1, 2], [1, 2, 0, 1]]), torch.tensor([0, 1, 2, 3]), 3, 4
    )  # relations 0, 1 and inverses 2, 3
    r = delete_triples(kg, torch.tensor([[0, 0, 1]]), inverse_offset=2)
    assert r.edge_index.t().tolist() == [[1, 2], [2, 1]]
    assert r.edge_type.tolist() == [1, 3]


def test_sampling_counts_and_seed() -> None:
    a = sample_deleted_edges(1000, 0.025, seed=3)
    assert len(a) == 25 and len(set(a.tolist())) == 25
    assert a.tolist() == sample_deleted_edges(1000, 0.025, seed=3).tolist()
    users = np.repeat(np.arange(200), 3)
    gone = sample_deleted_users(users, 0.05, seed=1)
    assert len(gone) == 10 and set(gone.tolist()) <= set(range(200))


# ---------------------------------------------------------------- deleted-edge AUROC
def test_deleted_auroc_lightgcn_extremes() -> None:
    # 3 users, 4 items, d = 1: item 0 scores 1 for every user, items 1-3 score 0
    user_emb = torch.ones(3, 1)
    item_emb = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    known_u, known_i = np.array([0, 1, 2]), np.array([0, 0, 1])
    # deleted edges (0, 0) and (1, 0); their non-edges are items 1-3, all below
    args = (np.array([0, 1]), np.array([0, 0]), known_u, known_i)
    assert deleted_auroc_lightgcn(user_emb, item_emb, *args, num_negative=20) == 1.0
    assert deleted_auroc_lightgcn(-user_emb, item_emb, *args, num_negative=20) == 0.0
    assert deleted_auroc_lightgcn(0 * user_emb, item_emb, *args, num_negative=20) == 0.5


def test_deleted_auroc_nbfnet_is_an_auroc_over_same_source_pairs() -> None:
    torch.manual_seed(0)
    edges = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [0, 5]])
    g = homogeneous_graph(edges, 6)
    model = NBFNet(1, dim=4, layers=2, aggregate="sum", dependent=False, backend="torch")
    deleted = torch.tensor([[0, 0, 1], [2, 0, 3]])
    value = deleted_auroc_nbfnet(model, g, deleted, g, num_negative=3, seed=0)
    # recompute: same non-edges (same sampler, seed), scores of the same passes
    from gnn.engine.nbfnet import NegativeSampler

    h, r, t = deleted.t()
    neg = NegativeSampler(g).sample(h, r, t, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s = model(g, h, torch.cat([t[:, None], neg], 1), r)
    wins = sum(float(p > q) + 0.5 * float(p == q) for p in s[:, 0] for q in s[:, 1:].reshape(-1))
    assert value == pytest.approx(wins / (2 * 6))


# ---------------------------------------------------------------- LightGCN unlearning
def _trained_toy() -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    users, items = _two_communities()
    cfg = LightGCNTrainConfig(epochs=40, batch_size=64, lr=0.05, dim=8, layers=2, seed=0, threads=1)
    res = fit_lightgcn(users, items, 40, 24, cfg, log=lambda *a: None)
    assert res.ego_emb is not None
    return users, items, res.ego_emb


@pytest.mark.parametrize("device", DEVICES)
def test_lightgcn_deleted_edge_scores_fall(device: str) -> None:
    users, items, ego = _trained_toy()
    picked = sample_deleted_edges(len(users), 0.1, seed=0)
    deletion = lightgcn_deletion(users, items, edges=picked)
    cfg = UnlearnConfig(alpha=0.5, steps=40, lr=0.01, batch_size=256, seed=0, threads=1)
    res = unlearn_lightgcn(
        ego, users, items, 40, 24, deletion, cfg, layers=2, device=device, log=lambda *a: None
    )
    with torch.no_grad():
        before = lightgcn_propagate(build_norm_adj(users, items, 40, 24), ego, 2)
    du, di = users[picked], items[picked]
    old = (before[du] * before[40 + di]).sum(1)
    assert res.user_emb is not None and res.item_emb is not None
    new = (res.user_emb[du] * res.item_emb[di]).sum(1)
    assert float(new.mean()) < float(old.mean())
    known = (np.asarray(users), np.asarray(items))
    a_old = deleted_auroc_lightgcn(before[:40], before[40:], du, di, *known)
    a_new = deleted_auroc_lightgcn(res.user_emb, res.item_emb, du, di, *known)
    assert a_new < a_old
    assert res.steps == 40 and len(res.losses) == 40
    assert res.losses[0][1] == pytest.approx(0.0, abs=1e-6)  # student == teacher at step 0


def test_lightgcn_user_deletion_pulls_users_to_destroyer_and_is_deterministic() -> None:
    users, items, ego = _trained_toy()
    deletion = lightgcn_deletion(users, items, users_to_delete=np.array([3, 8]))
    cfg = UnlearnConfig(alpha=0.5, steps=30, lr=0.02, batch_size=128, seed=5, threads=1)
    a = unlearn_lightgcn(ego, users, items, 40, 24, deletion, cfg, layers=2, log=lambda *x: None)
    b = unlearn_lightgcn(ego, users, items, 40, 24, deletion, cfg, layers=2, log=lambda *x: None)
    c = unlearn_lightgcn(
        ego, users, items, 40, 24, deletion, cfg.replace(seed=6), layers=2, log=lambda *x: None
    )
    assert a.ego_emb is not None and b.ego_emb is not None and c.ego_emb is not None
    assert torch.equal(a.ego_emb, b.ego_emb)
    assert not torch.equal(a.ego_emb, c.ego_emb)
    assert a.retained_users is not None and not np.isin([3, 8], a.retained_users).any()
    from gnn.models.lightgcn import LightGCN

    dest = LightGCN(40, 24, dim=8, layers=2, seed=6).embedding.detach()
    gap_before = (ego[[3, 8]] - dest[[3, 8]]).norm()
    gap_after = (a.ego_emb[[3, 8]] - dest[[3, 8]]).norm()
    assert float(gap_after) < 0.5 * float(gap_before)


# ---------------------------------------------------------------- NBFNet unlearning
def _nbf(seed: int) -> NBFNet:
    torch.manual_seed(seed)
    return NBFNet(1, dim=8, layers=2, aggregate="sum", dependent=False, backend="torch")


def _toy_graph() -> tuple[RelationalGraph, torch.Tensor]:
    edges = torch.tensor(
        [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 2], [4, 6]]
    )
    triples = torch.stack([edges[:, 0], torch.zeros(10, dtype=torch.long), edges[:, 1]], 1)
    return homogeneous_graph(edges, 8), triples


def test_nbfnet_gradients_reach_every_student_parameter() -> None:
    g, triples = _toy_graph()
    student, teacher, destroyer = _nbf(0), _nbf(1), _nbf(2)
    cand = torch.tensor([[1, 5, 6], [2, 7, 4]])
    total, l_r, l_f = nbfnet_unlearn_loss(
        student,
        teacher,
        destroyer,
        g,
        (torch.tensor([0, 1]), torch.tensor([0, 0]), cand),
        (torch.tensor([4]), torch.tensor([0]), torch.tensor([5])),
        alpha=0.5,
        beta=1.0,
        temperature=1.0,
    )
    total.backward()
    for name, p in student.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad.abs().sum()) > 0, name
    for p in (*teacher.parameters(), *destroyer.parameters()):
        assert p.grad is None
    assert float(l_r.detach()) > 0 and float(l_f.detach()) > 0


@pytest.mark.parametrize("device", DEVICES)
def test_nbfnet_unlearning_moves_deleted_logits_to_destroyer(device: str) -> None:
    g, triples = _toy_graph()
    teacher = _nbf(0)
    deleted = torch.tensor([4, 9])
    cfg = UnlearnConfig(
        alpha=0.2,
        steps=12,
        lr=0.02,
        batch_size=4,
        deleted_batch_size=2,
        num_negative=2,
        seed=0,
        threads=1,
    )
    res, again = (
        unlearn_nbfnet(
            teacher,
            g,
            triples,
            deleted,
            cfg,
            task="link",
            device=device,
            make_model=_nbf_unseeded,
            log=lambda *a: None,
        )
        for _ in range(2)
    )
    assert res.model is not None and again.model is not None and res.graph is not None
    for (k, v), w in zip(
        res.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        if device == "cpu":
            assert torch.equal(v, w), k
        else:  # CUDA's index_add_ adds with atomics: same to rounding, not bit for bit
            torch.testing.assert_close(v, w, rtol=1e-4, atol=1e-5, msg=k)
    # the retained graph lacks (4, 5), (5, 4), (4, 6), (6, 4)
    pairs = set(map(tuple, res.graph.edge_index.t().tolist()))
    assert not pairs & {(4, 5), (5, 4), (4, 6), (6, 4)}
    assert len(pairs) == 2 * 8 + 8
    with torch.random.fork_rng(devices=[]):  # the destroyer: make_model() under seed + 1
        torch.manual_seed(cfg.seed + 1)
        destroyer = _nbf_unseeded()
    rg = res.graph.to("cpu")
    h, t, r = triples[deleted, 0], triples[deleted, 2].unsqueeze(1), triples[deleted, 1]
    with torch.no_grad():
        target = destroyer(rg, h, t, r)
        old = teacher(rg, h, t, r)
        new = res.model.to("cpu")(rg, h, t, r)
    assert float((new - target).abs().mean()) < float((old - target).abs().mean())
    assert res.steps == 12


def _nbf_unseeded() -> NBFNet:
    return NBFNet(1, dim=8, layers=2, aggregate="sum", dependent=False, backend="torch")


def test_no_pyspark_import() -> None:
    code = (
        "import sys, gnn.unlearn.d2dgn, gnn.unlearn.eval, gnn.unlearn.nbfnet; "
        "sys.exit(any(m.split('.')[0] == 'pyspark' for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_nbfnet_triple_deletion_on_a_kg() -> None:
    from gnn.data.kg import kg_graph

    triples = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 0, 3], [3, 1, 0], [0, 1, 2], [1, 0, 3]])
    g = kg_graph(triples, 4, 2)  # relations 0, 1 and inverses 2, 3

    def make() -> NBFNet:
        return NBFNet(4, dim=8, layers=2, aggregate="sum", dependent=True, backend="torch")

    torch.manual_seed(0)
    teacher = make()
    cfg = UnlearnConfig(
        steps=3, lr=0.01, batch_size=4, deleted_batch_size=1, num_negative=2, threads=1
    )
    res = unlearn_nbfnet(
        teacher, g, triples, torch.tensor([4]), cfg, task="kg", make_model=make, log=lambda *a: None
    )
    assert res.graph is not None and res.model is not None
    kept = set(
        zip(
            res.graph.edge_index[0].tolist(),
            res.graph.edge_type.tolist(),
            res.graph.edge_index[1].tolist(),
            strict=True,
        )
    )
    assert (0, 1, 2) not in kept and (2, 3, 0) not in kept
    assert len(kept) == 2 * 6 - 2
    assert res.steps == 3 and all(math.isfinite(x) for row in res.losses for x in row)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(res.model.state_dict().values(), teacher.state_dict().values(), strict=True)
    ]
    assert any(changed)
