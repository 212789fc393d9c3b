"""Partitioned NBFNet inference inside Spark tasks: every query on its source's leaf + halo.

NBFNet (Zhu et al., NeurIPS 2021) scores the tails of a query ``(s, r, ?)`` with ``T``
Bellman-Ford steps ``h_v^{(t)} = AGG({MSG(h_x^{(t-1)}, w_q(x, r', v)) : (x, r', v) in E} ∪
{h_v^{(0)}})`` from the boundary condition ``h_v^{(0)} = 1[v = s] q_r`` (Eq. 2-3), so a query's
cost grows with the edges it propagates over. Here, as in :mod:`gnn.nbfnet_partitioned`, a query
runs on the subgraph of the leaf that owns ``s``: the leaf's core nodes, its 1-hop halo and the
edges the partitioner ships with the leaf (internal + cut edges: the ``outward`` rule);
candidates outside it score ``-inf``. One Spark task per leaf (``applyInPandas`` grouped by
leaf) builds that subgraph from the partition tables, loads the shared parameters and returns
one filtered rank per query, so the ranks equal
:func:`gnn.nbfnet_partitioned.evaluate_kg_partitioned`'s on the same leaves.

Schema:
    triples ``(src, rel, dst)`` (training graph, relation ids without inverses), assignment
    ``(node_id, leaf_id)``, halo_edges ``(leaf_id, src, dst, rel)``, queries
    ``(query_id, src, rel, answer)`` with ``rel`` in ``[0, 2R)`` (``r + R``: the inverse, i.e.
    a head query), known ``(src, rel, dst)``: every true triple (train + valid + test) for the
    filtered ranking -> ``(query_id, rank, inside)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.bridge import task_device, task_threads
from pipelines.schema import DST, LEAF_ID, NODE_ID, REL, SRC

QUERY_ID = "query_id"
ANSWER = "answer"
RANK = "rank"
INSIDE = "inside"
_KIND, _KNOWN = "_kind", "_known"
_EDGE, _NODE, _QUERY = 0, 1, 2
RANK_SCHEMA = f"{QUERY_ID} long, {RANK} long, {INSIDE} boolean"


@dataclass(frozen=True)
class NBFNetScoring:
    """What every leaf task needs besides its rows.

    Args:
        state: the shared parameters, ``torch.save(model.state_dict())`` bytes.
        config: the :class:`gnn.nbfnet_train.NBFNetTrainConfig` the model was built with.
        num_entities: entity count ``N`` (global ids ``0..N-1``): ranks are over all of them.
        num_relations: relation count ``R`` without inverses.
        batch_size: queries per Bellman-Ford pass.
        device: ``auto`` (the task's GPU when Spark gave it one) | ``cpu`` | ``cuda[:N]``.
        threads: torch threads (0: the task's cores).
    """

    state: bytes
    config: Any
    num_entities: int
    num_relations: int
    batch_size: int = 32
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.num_entities < 1 or self.num_relations < 1:
            raise ValueError("NBFNetScoring: num_entities and num_relations must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"NBFNetScoring.batch_size: must be >= 1, got {self.batch_size}")


def model_bytes(model: Any) -> bytes:
    """``model.state_dict()`` as bytes (CPU tensors) for :class:`NBFNetScoring`."""
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def leaf_triples(triples: DataFrame, assignment: DataFrame, halo_edges: DataFrame) -> DataFrame:
    """Every leaf's edges: its internal triples plus the halo (cut) triples shipped with it.

    Schema: -> ``(leaf_id long, src long, rel long, dst long)``.
    """
    ls = assignment.select(F.col(NODE_ID).alias(SRC), F.col(LEAF_ID).alias("_ls"))
    ld = assignment.select(F.col(NODE_ID).alias(DST), F.col(LEAF_ID).alias("_ld"))
    internal = (
        triples.join(ls, SRC)
        .join(ld, DST)
        .where(F.col("_ls") == F.col("_ld"))
        .select(F.col("_ls").alias(LEAF_ID), SRC, REL, DST)
    )
    cols = [F.col(c).cast("long").alias(c) for c in (LEAF_ID, SRC, REL, DST)]
    return internal.unionByName(halo_edges.select(LEAF_ID, SRC, REL, DST)).select(*cols)


def rank_queries(
    leaf_edges: DataFrame,
    assignment: DataFrame,
    queries: DataFrame,
    known: DataFrame,
    scoring: NBFNetScoring,
) -> DataFrame:
    """Filtered rank of every query's answer, each scored on its source's leaf + halo.

    Args:
        leaf_edges: :func:`leaf_triples` rows.
        assignment: ``(node_id, leaf_id)`` of every node.
        queries: ``(query_id, src, rel, answer)``; ``rel >= R`` asks for heads.
        known: ``(src, rel, dst)`` true triples (relations ``< R``) filtered out of the ranking.
        scoring: model and sizes.

    Returns:
        ``(query_id, rank, inside)``: ``rank`` is ``1 + #{c not a known answer, c != answer :
        s_c >= s_answer}`` over all ``N`` entities (outside the leaf ``s_c = -inf``, so an answer
        outside its query's subgraph ranks behind every non-answer); ``inside`` says whether the
        answer lies in the subgraph. A query whose source has no leaf raises in its task.
    """
    r = scoring.num_relations
    inverse = known.select(
        F.col(DST).alias(SRC), (F.col(REL) + F.lit(r)).alias(REL), F.col(SRC).alias(DST)
    )
    filters = (
        known.select(SRC, REL, DST)
        .unionByName(inverse)
        .groupBy(SRC, REL)
        .agg(F.collect_list(DST).alias(_KNOWN))
    )
    qs = (
        queries.join(filters, [SRC, REL], "left")
        .join(assignment.select(F.col(NODE_ID).alias(SRC), LEAF_ID), SRC, "left")
        .select(
            LEAF_ID, F.lit(_QUERY).alias(_KIND), SRC, REL, F.col(ANSWER).alias(DST),
            QUERY_ID, _KNOWN,
        )
    )  # fmt: skip
    empty = F.lit(None).cast("array<long>")
    edges = leaf_edges.select(
        LEAF_ID, F.lit(_EDGE).alias(_KIND), SRC, REL, DST,
        F.lit(None).cast("long").alias(QUERY_ID), empty.alias(_KNOWN),
    )  # fmt: skip
    nodes = assignment.select(
        LEAF_ID, F.lit(_NODE).alias(_KIND), F.col(NODE_ID).alias(SRC),
        F.lit(None).cast("long").alias(REL), F.lit(None).cast("long").alias(DST),
        F.lit(None).cast("long").alias(QUERY_ID), empty.alias(_KNOWN),
    )  # fmt: skip
    rows = edges.unionByName(nodes).unionByName(qs)

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        return rank_leaf_queries(pdf, scoring)

    return rows.groupBy(LEAF_ID).applyInPandas(run, RANK_SCHEMA)


def rank_leaf_queries(pdf: pd.DataFrame, scoring: NBFNetScoring) -> pd.DataFrame:
    """The per-leaf function of :func:`rank_queries` (testable on a pandas frame).

    Rows: ``_kind`` 0 = edge ``(src, rel, dst)``, 1 = core node ``src``, 2 = query
    ``(src, rel, dst = answer, query_id, _known)``; all of one leaf.
    """
    import torch

    from gnn.device import torch_threads
    from gnn.kg import kg_graph
    from gnn.nbfnet_eval import filtered_ranks
    from gnn.nbfnet_train import build_model

    kind = pdf[_KIND].to_numpy()
    q = pdf[kind == _QUERY]
    if q.empty:
        return pd.DataFrame({QUERY_ID: [], RANK: [], INSIDE: []}).astype(
            {QUERY_ID: "int64", RANK: "int64", INSIDE: "bool"}
        )
    if q[LEAF_ID].isna().any():
        bad = q[q[LEAF_ID].isna()][SRC].iloc[0]
        raise ValueError(f"queries: source {bad} is not in the assignment (no leaf)")
    e = pdf[kind == _EDGE]
    core = pdf[kind == _NODE][SRC].to_numpy(dtype="int64")
    dev = torch.device(task_device(scoring.device))
    with torch_threads(task_threads(scoring.threads)):
        src = torch.as_tensor(e[SRC].to_numpy(dtype="int64"))
        dst = torch.as_tensor(e[DST].to_numpy(dtype="int64"))
        rel = torch.as_tensor(e[REL].to_numpy(dtype="int64"))
        nodes = torch.unique(torch.cat([torch.as_tensor(core), src, dst]))  # sorted global ids
        to_local = torch.full((scoring.num_entities,), -1, dtype=torch.long)
        to_local[nodes] = torch.arange(len(nodes))
        triples = torch.stack([to_local[src], rel, to_local[dst]], dim=1)
        graph = kg_graph(triples, len(nodes), scoring.num_relations).to(dev)
        model = build_model(2 * scoring.num_relations, scoring.config)
        model.load_state_dict(torch.load(io.BytesIO(scoring.state), map_location="cpu"))
        model.to(dev).eval()
        qsrc = torch.as_tensor(q[SRC].to_numpy(dtype="int64"))
        qrel = torch.as_tensor(q[REL].to_numpy(dtype="int64"))
        qans = torch.as_tensor(q[DST].to_numpy(dtype="int64"))
        known = list(q[_KNOWN])
        ranks = torch.empty(len(q), dtype=torch.long)
        n, step = scoring.num_entities, scoring.batch_size
        with torch.no_grad():
            for lo in range(0, len(q), step):
                sl = slice(lo, lo + step)
                local = model.score_all(graph, to_local[qsrc[sl]].to(dev), qrel[sl].to(dev))
                scores = torch.full((len(qsrc[sl]), n), float("-inf"))
                scores[:, nodes] = local.float().cpu()
                mask = torch.zeros(len(qsrc[sl]), n, dtype=torch.bool)
                for i, ans in enumerate(known[sl]):
                    if ans is not None and len(ans):
                        mask[i, torch.as_tensor(list(ans), dtype=torch.long)] = True
                ranks[sl] = filtered_ranks(scores, qans[sl], mask)
    return pd.DataFrame(
        {
            QUERY_ID: q[QUERY_ID].to_numpy(dtype="int64"),
            RANK: ranks.numpy(),
            INSIDE: (to_local[qans] >= 0).numpy(),
        }
    )


def mrr_and_hits(ranks: DataFrame) -> dict[str, float]:
    """MRR, MR, Hits@1/3/10 and coverage of :func:`rank_queries`'s rows (one Spark aggregate)."""
    rk = F.col(RANK).cast("double")
    row = ranks.agg(
        F.avg(1.0 / rk).alias("mrr"),
        F.avg(rk).alias("mr"),
        *[F.avg((rk <= k).cast("double")).alias(f"hits@{k}") for k in (1, 3, 10)],
        F.avg(F.col(INSIDE).cast("double")).alias("coverage"),
        F.count(F.lit(1)).alias("queries"),
    ).first()
    assert row is not None
    return {k: float(v) if v is not None else float("nan") for k, v in row.asDict().items()}
