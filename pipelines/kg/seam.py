"""Partitioned NBFNet in Spark tasks: training by averaging over leaves, leaf + halo inference.

Training (:func:`pipelines.kg.seam_train.train_rounds`): rounds of one task per leaf training
the shared parameters on the leaf's own queries, averaged on the driver weighted by query count
(federated averaging). Inference (:func:`rank_queries`, this module), described here:

NBFNet (Zhu et al., NeurIPS 2021) scores the tails of a query ``(s, r, ?)`` with ``T``
Bellman-Ford steps ``h_v^{(t)} = AGG({MSG(h_x^{(t-1)}, w_q(x, r', v)) : (x, r', v) in E} ∪
{h_v^{(0)}})`` from the boundary condition ``h_v^{(0)} = 1[v = s] q_r`` (Eq. 2-3), so a query's
cost grows with the edges it propagates over. Here, as in :mod:`gnn.engine.nbfnet_partitioned`,
a query runs on the subgraph of the leaf that owns ``s``: the leaf's core nodes, its 1-hop halo
and the edges the partitioner ships with the leaf (internal + cut edges: the ``outward`` rule);
candidates outside it score ``-inf``. One Spark task per leaf (``applyInPandas`` grouped by
leaf) builds that subgraph from the partition tables, loads the shared parameters and returns
one filtered rank per query, so the ranks equal
:func:`gnn.eval.nbfnet_partitioned.evaluate_kg_partitioned`'s on the same leaves.

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

from pipelines.core.config import PipelineConfig
from pipelines.core.schema import DST, LEAF_ID, NODE_ID, REL, SRC
from pipelines.partition.output import internal_and_halo_edges
from pipelines.train.seam_task import task_device, task_threads

QUERY_ID = "query_id"
ANSWER = "answer"
RANK = "rank"
INSIDE = "inside"
_KIND, _KNOWN = "_kind", "_known"
_EDGE, _NODE, _QUERY = 0, 1, 2
_UNUSED = -1  # the value of a column a row kind does not use (see _leaf_rows)
RANK_SCHEMA = f"{QUERY_ID} long, {RANK} long, {INSIDE} boolean"


@dataclass(frozen=True)
class NBFNetScoring:
    """What every leaf task needs besides its rows.

    Args:
        state: the shared parameters, ``torch.save(model.state_dict())`` bytes.
        config: the :class:`gnn.engine.nbfnet.NBFNetTrainConfig` the model was built with.
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


def train_config(cfg: PipelineConfig) -> Any:
    """The :class:`gnn.engine.nbfnet.NBFNetTrainConfig` of the ``nbfnet`` section."""
    from gnn.engine.nbfnet import NBFNetTrainConfig

    n = cfg.nbfnet
    return NBFNetTrainConfig(
        task="kg",
        dim=n.dim,
        layers=n.layers,
        batch_size=n.batch_size,
        lr=n.lr,
        num_negative=n.num_negative,
        adversarial_temperature=n.adversarial_temperature,
        seed=cfg.run.seed,
    )


def leaf_triples(triples: DataFrame, assignment: DataFrame, halo_edges: DataFrame) -> DataFrame:
    """Every leaf's edges: its internal triples plus the halo (cut) triples shipped with it.

    Schema: -> ``(leaf_id long, src long, rel long, dst long)``.
    """
    return internal_and_halo_edges(triples, assignment, halo_edges, (SRC, REL, DST))


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
        queries: ``(query_id, src, rel, answer)``; ``rel >= R`` asks for heads; any 64-bit
            ``query_id`` comes back exactly.
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
            F.col(LEAF_ID).cast("long").alias(LEAF_ID), F.lit(_QUERY).alias(_KIND), SRC, REL,
            F.col(ANSWER).alias(DST), QUERY_ID, _KNOWN,
        )
    )  # fmt: skip
    rows = _leaf_rows(leaf_edges, assignment).unionByName(qs)

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        return rank_leaf_queries(pdf, scoring)

    return rows.groupBy(LEAF_ID).applyInPandas(run, RANK_SCHEMA)


def rank_leaf_queries(pdf: pd.DataFrame, scoring: NBFNetScoring) -> pd.DataFrame:
    """The per-leaf function of :func:`rank_queries` (testable on a pandas frame).

    Rows: ``_kind`` 0 = edge ``(src, rel, dst)``, 1 = core node ``src``, 2 = query
    ``(src, rel, dst = answer, query_id, _known)``; all of one leaf.
    """
    import torch

    from gnn.engine.device import torch_threads
    from gnn.eval.nbfnet import filtered_ranks

    kind = pdf[_KIND].to_numpy()
    q = pdf[kind == _QUERY]
    if q.empty:
        return pd.DataFrame({QUERY_ID: [], RANK: [], INSIDE: []}).astype(
            {QUERY_ID: "int64", RANK: "int64", INSIDE: "bool"}
        )
    if q[LEAF_ID].isna().any():
        bad = q[q[LEAF_ID].isna()][SRC].iloc[0]
        raise ValueError(f"queries: source {bad} is not in the assignment (no leaf)")
    dev = torch.device(task_device(scoring.device))
    with torch_threads(task_threads(scoring.threads)):
        nodes, to_local, graph, _ = leaf_graph(pdf, scoring.num_entities, scoring.num_relations)
        graph = graph.to(dev)
        model = load_model(scoring.state, scoring.config, scoring.num_relations)
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


def leaf_graph(pdf: pd.DataFrame, num_entities: int, num_relations: int) -> tuple[Any, ...]:
    """A leaf's relational graph from its edge (``_kind`` 0) and core-node (1) rows.

    Local ids follow the sorted global ids of the core nodes and the edges' endpoints; inverse
    relations are added (``r + R``), as in :func:`gnn.data.kg.kg_graph`.

    Returns:
        ``(nodes [n] global ids, to_local [num_entities] (-1 outside), graph, core [n] bool)``.
    """
    import torch

    from gnn.data.kg import kg_graph

    kind = pdf[_KIND].to_numpy()
    # rows reach a task in any order: sort the edges so that the graph, and the training
    # queries drawn by index from it, depend on the leaf's content only (a retried task, or
    # another shuffle, trains identically)
    e = pdf[kind == _EDGE].sort_values([SRC, REL, DST], kind="stable")
    core = torch.as_tensor(pdf[kind == _NODE][SRC].to_numpy(dtype="int64"))
    src = torch.as_tensor(e[SRC].to_numpy(dtype="int64"))
    dst = torch.as_tensor(e[DST].to_numpy(dtype="int64"))
    rel = torch.as_tensor(e[REL].to_numpy(dtype="int64"))
    nodes = torch.unique(torch.cat([core, src, dst]))  # sorted global ids
    to_local = torch.full((num_entities,), -1, dtype=torch.long)
    to_local[nodes] = torch.arange(len(nodes))
    triples = torch.stack([to_local[src], rel, to_local[dst]], dim=1)
    graph = kg_graph(triples, len(nodes), num_relations)
    is_core = torch.zeros(len(nodes), dtype=torch.bool)
    is_core[to_local[core]] = True
    return nodes, to_local, graph, is_core


def load_model(state: bytes, config: Any, num_relations: int) -> Any:
    """The NBFNet of ``config`` (``2 R`` relations with inverses) with ``state``'s weights."""
    import torch

    from gnn.engine.nbfnet import build_model

    model = build_model(2 * num_relations, config)
    model.load_state_dict(torch.load(io.BytesIO(state), map_location="cpu"))
    return model


def _leaf_rows(leaf_edges: DataFrame, assignment: DataFrame) -> DataFrame:
    """Edge and core-node rows of every leaf in the layout :func:`leaf_graph` reads.

    The columns these rows do not use hold ``-1``, not null: a long column with a null reaches
    pandas as float64, which would round query ids (and entity ids) at or above ``2^53``.
    """
    empty = F.lit(None).cast("array<long>")
    unused = F.lit(_UNUSED).cast("long")
    edges = leaf_edges.select(
        LEAF_ID, F.lit(_EDGE).alias(_KIND), SRC, REL, DST, unused.alias(QUERY_ID),
        empty.alias(_KNOWN),
    )  # fmt: skip
    nodes = assignment.select(
        F.col(LEAF_ID).cast("long").alias(LEAF_ID), F.lit(_NODE).alias(_KIND),
        F.col(NODE_ID).alias(SRC), unused.alias(REL), unused.alias(DST), unused.alias(QUERY_ID),
        empty.alias(_KNOWN),
    )  # fmt: skip
    return edges.unionByName(nodes)


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
