"""Partitioned NBFNet training in Spark tasks: rounds of per-leaf steps, averaged on the driver.

Every round, one ``applyInPandas`` task per leaf builds the leaf's subgraph from the partition
tables (as :func:`pipelines.kg.seam.rank_queries` does), takes Adam steps on the queries whose
source is in the leaf's core and returns its parameters; the driver averages them weighted by
query count (federated averaging, McMahan et al. 2017). See :func:`train_rounds`.

Schema:
    leaf_edges ``(leaf_id, src, rel, dst)`` (:func:`pipelines.kg.seam.leaf_triples`),
    assignment ``(node_id, leaf_id)`` -> per task ``(leaf_id, queries, loss, state)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame

from pipelines.core.schema import LEAF_ID
from pipelines.kg.seam import _leaf_rows, leaf_graph, load_model, model_bytes
from pipelines.train.seam_task import task_device, task_threads

__all__ = [
    "TRAIN_SCHEMA",
    "NBFNetRounds",
    "average_states",
    "leaf_seed",
    "train_leaf_round",
    "train_rounds",
]

TRAIN_SCHEMA = f"{LEAF_ID} long, queries long, loss double, state binary"


@dataclass(frozen=True)
class NBFNetRounds:
    """Federated-averaging training of one NBFNet over the leaves (see :func:`train_rounds`).

    Args:
        config: the :class:`gnn.engine.nbfnet.NBFNetTrainConfig` (``lr``, ``batch_size``,
            negatives, ``seed``).
        num_entities: entity count ``N``.
        num_relations: relation count ``R`` without inverses.
        rounds: rounds of per-leaf training + averaging.
        steps: optimiser steps per leaf and round.
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` (``auto``: the task's GPU when given one).
        threads: torch threads per task (0: the task's cores).
    """

    config: Any
    num_entities: int
    num_relations: int
    rounds: int = 1
    steps: int = 10
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.steps < 1:
            raise ValueError(
                f"NBFNetRounds: rounds and steps must be >= 1, got {self.rounds}, {self.steps}"
            )


def leaf_seed(seed: int, round_no: int, leaf_id: int) -> int:
    """The seed of one leaf's training in one round (a retried task draws the same batches)."""
    return ((seed * 1_000_003 + round_no) * 1_000_003 + leaf_id) % (2**63 - 1)


def train_leaf_round(
    pdf: pd.DataFrame, state: bytes, round_no: int, rounds: NBFNetRounds
) -> pd.DataFrame:
    """One leaf's round (the per-task function of :func:`train_rounds`, testable on pandas)."""
    import torch

    from gnn.engine.device import torch_threads
    from gnn.engine.nbfnet_partitioned import train_leaf_steps

    leaf_id = int(pdf[LEAF_ID].iloc[0])
    dev = torch.device(task_device(rounds.device))
    with torch_threads(task_threads(rounds.threads)):
        _, _, graph, core = leaf_graph(pdf, rounds.num_entities, rounds.num_relations)
        model = load_model(state, rounds.config, rounds.num_relations)
        seed = leaf_seed(int(rounds.config.seed), round_no, leaf_id)
        n, losses = train_leaf_steps(
            model, graph, core, rounds.config, steps=rounds.steps, seed=seed, device=dev
        )
    loss = sum(losses) / len(losses) if losses else float("nan")
    return pd.DataFrame(
        {LEAF_ID: [leaf_id], "queries": [n], "loss": [loss], "state": [model_bytes(model)]}
    )


def average_states(rows: list[tuple[int, bytes]]) -> bytes:
    """``sum_k n_k w_k / sum_k n_k`` over ``(n_k, state_k)``; leaves with ``n_k = 0`` skipped.

    Non-float entries (counters) are taken from the first leaf.
    """
    import torch

    kept = [(n, torch.load(io.BytesIO(b), map_location="cpu")) for n, b in rows if n > 0]
    if not kept:
        raise ValueError("average_states: no leaf has training queries")
    total = float(sum(n for n, _ in kept))
    first = kept[0][1]
    out = {}
    for key, value in first.items():
        if torch.is_floating_point(value):
            acc = torch.zeros_like(value, dtype=torch.float64)
            for n, sd in kept:
                acc += sd[key].double() * (n / total)
            out[key] = acc.to(value.dtype)
        else:
            out[key] = value
    buf = io.BytesIO()
    torch.save(out, buf)
    return buf.getvalue()


def _round_function(state: bytes, round_no: int, rounds: NBFNetRounds) -> Any:
    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        return train_leaf_round(pdf, state, round_no, rounds)

    return run


def train_rounds(
    leaf_edges: DataFrame,
    assignment: DataFrame,
    rounds: NBFNetRounds,
    *,
    state: bytes | None = None,
    log: Any = None,
) -> tuple[bytes, list[dict[str, float]]]:
    """Train one NBFNet on the leaves in Spark tasks, by rounds of federated averaging.

    Every round, one ``applyInPandas`` task per leaf builds the leaf's subgraph (as
    :func:`rank_queries` does), loads the current parameters, takes ``rounds.steps`` Adam steps
    on the queries whose source is in the leaf's core (:func:`gnn.engine.nbfnet_partitioned.
    train_leaf_steps`, seeded by seed, round and leaf, so a retried task returns the same
    bytes) and returns its parameters and query count; the driver averages them weighted by
    query count (McMahan et al. 2017, ``w <- sum_k n_k w_k / sum_k n_k``). Only the k parameter
    sets (one model each, no graph data) reach the driver.

    Args:
        leaf_edges: :func:`leaf_triples` rows; assignment ``(node_id, leaf_id)``.
        rounds: settings.
        state: starting parameters (default: ``build_model`` seeded by ``config.seed``).
        log: ``log(message)`` per round (default: nothing).

    Returns:
        ``(parameters as bytes, one {"round", "loss", "queries", "leaves"} per round)``.
    """
    import torch

    from gnn.engine.nbfnet import build_model

    if state is None:
        torch.manual_seed(int(rounds.config.seed))
        state = model_bytes(build_model(2 * rounds.num_relations, rounds.config))
    rows = _leaf_rows(leaf_edges, assignment).localCheckpoint()
    history = []
    for round_no in range(rounds.rounds):
        run = _round_function(state, round_no, rounds)
        out = rows.groupBy(LEAF_ID).applyInPandas(run, TRAIN_SCHEMA).collect()
        out.sort(key=lambda row: row[LEAF_ID])
        state = average_states([(int(row["queries"]), bytes(row["state"])) for row in out])
        n = sum(int(row["queries"]) for row in out)
        loss = sum(float(row["loss"]) * int(row["queries"]) for row in out if row["queries"]) / max(
            n, 1
        )
        history.append(
            {"round": round_no + 1, "loss": loss, "queries": float(n), "leaves": float(len(out))}
        )
        if log is not None:
            log(f"[nbfnet-spark] round {round_no + 1}: loss {loss:.4f} over {len(out)} leaves")
    return state, history
