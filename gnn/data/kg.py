"""Relational graphs for NBFNet: the graph type, inverse relations, FB15k-237 and Cora loaders.

Pure PyTorch / standard library (no pyspark). Triples are ``[M, 3]`` long tensors in
``(head, relation, tail)`` column order everywhere in ``gnn``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "KGDataset",
    "LinkSplit",
    "RelationalGraph",
    "add_inverse_relations",
    "cora_link_split",
    "homogeneous_graph",
    "kg_graph",
    "load_cora_edges",
    "load_fb15k237",
]


@dataclass
class RelationalGraph:
    """A directed multi-relational graph.

    Attributes:
        edge_index: ``[2, E]`` long, rows (source, destination).
        edge_type: ``[E]`` long relation ids in ``[0, num_relations)``.
        num_nodes: number of nodes.
        num_relations: number of relation types (inverse ones included once added).
    """

    edge_index: Tensor
    edge_type: Tensor
    num_nodes: int
    num_relations: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.edge_index.dim() != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, E], got {tuple(self.edge_index.shape)}")
        if self.edge_type.shape != (self.edge_index.shape[1],):
            raise ValueError("edge_type must be [E] matching edge_index")

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str) -> RelationalGraph:
        """Copy to ``device`` (the CSR index cache is rebuilt there on first use)."""
        return RelationalGraph(
            self.edge_index.to(device),
            self.edge_type.to(device),
            self.num_nodes,
            self.num_relations,
        )

    def index(self):  # -> gnn.layers.relational_aggregate.GraphIndex
        """The graph's CSR views, built on first call and cached on this object."""
        from gnn.layers.relational_aggregate import GraphIndex

        if "index" not in self._cache:
            self._cache["index"] = GraphIndex.build(
                self.edge_index, self.edge_type, self.num_nodes, self.num_relations
            )
        return self._cache["index"]


def add_inverse_relations(graph: RelationalGraph) -> RelationalGraph:
    """Append ``(v -> u, r + R)`` for every edge ``(u -> v, r)`` (NBFNet Sec. 3.3).

    Returns:
        A graph with ``2E`` edges and ``2R`` relations; the first ``E`` edges are the originals.
    """
    ei, et, r = graph.edge_index, graph.edge_type, graph.num_relations
    return RelationalGraph(
        torch.cat([ei, ei.flip(0)], dim=1), torch.cat([et, et + r]), graph.num_nodes, 2 * r
    )


def kg_graph(
    triples: Tensor, num_entities: int, num_relations: int, *, inverse: bool = True
) -> RelationalGraph:
    """Graph of ``(h, r, t)`` triples, with inverse relations added by default.

    Shapes:
        triples: ``[M, 3]`` long (head, relation, tail).
    """
    g = RelationalGraph(
        torch.stack([triples[:, 0], triples[:, 2]]),
        triples[:, 1].clone(),
        num_entities,
        num_relations,
    )
    return add_inverse_relations(g) if inverse else g


def homogeneous_graph(edges: Tensor, num_nodes: int, *, self_loops: bool = True) -> RelationalGraph:
    """Undirected single-relation graph: both directions of each edge carry relation 0.

    An undirected relation is its own inverse, so no second relation is added; self-loops
    (relation 0) are added as in NBFNet's homogeneous-graph setting.

    Shapes:
        edges: ``[M, 2]`` long undirected pairs.
    """
    ei = torch.cat([edges.t(), edges.t().flip(0)], dim=1)
    if self_loops:
        loop = torch.arange(num_nodes).unsqueeze(0).expand(2, -1)
        ei = torch.cat([ei, loop], dim=1)
    return RelationalGraph(
        ei.contiguous(), torch.zeros(ei.shape[1], dtype=torch.long), num_nodes, 1
    )


@dataclass(frozen=True)
class KGDataset:
    """A knowledge graph split into triples ``[M, 3]`` (head, relation, tail)."""

    train: Tensor
    valid: Tensor
    test: Tensor
    entities: dict[str, int]
    relations: dict[str, int]

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)


def _read_dict(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with path.open() as f:
        for line in f:
            idx, name = line.rstrip("\n").split("\t")
            out[name] = int(idx)
    return out


def _tsv_triples(path: Path) -> Iterator[tuple[int, str, str, str, str]]:
    """``(line number, line, head, relation, tail)`` of a tab-separated triples file."""
    with path.open() as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected head<TAB>relation<TAB>tail")
            yield n, line, parts[0], parts[1], parts[2]


def _read_triples(path: Path, ents: dict[str, int], rels: dict[str, int]) -> Tensor:
    rows = []
    for n, line, h, r, t in _tsv_triples(path):
        if h not in ents or t not in ents or r not in rels:
            raise ValueError(f"{path}:{n}: unknown entity or relation in {line.strip()!r}")
        rows.append((ents[h], rels[r], ents[t]))
    return torch.tensor(rows, dtype=torch.long)


def _dict_from_triples(paths: list[Path]) -> tuple[dict[str, int], dict[str, int]]:
    """Entity and relation ids in order of first appearance (train, then valid, then test)."""
    ents: dict[str, int] = {}
    rels: dict[str, int] = {}
    for path in paths:
        for _, _, h, r, t in _tsv_triples(path):
            ents.setdefault(h, len(ents))
            rels.setdefault(r, len(rels))
            ents.setdefault(t, len(ents))
    return ents, rels


def load_triples_dir(data_dir: str | Path) -> KGDataset:
    """Load a knowledge graph from ``train.txt``, ``valid.txt``, ``test.txt`` (tab-separated
    head, relation, tail), with ``entities.dict`` / ``relations.dict`` when present (else ids in
    order of first appearance)."""
    root = Path(data_dir)
    files = [root / f"{s}.txt" for s in ("train", "valid", "test")]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (needs train.txt, valid.txt, test.txt)")
    if (root / "entities.dict").is_file() and (root / "relations.dict").is_file():
        ents, rels = _read_dict(root / "entities.dict"), _read_dict(root / "relations.dict")
    else:
        ents, rels = _dict_from_triples(files)
    train, valid, test = (_read_triples(f, ents, rels) for f in files)
    return KGDataset(train, valid, test, ents, rels)


def load_fb15k237(data_dir: str | Path) -> KGDataset:
    """Load FB15k-237 from ``train/valid/test.txt`` with ``entities.dict``/``relations.dict``.

    Args:
        data_dir: the ``fb15k-237`` folder, or its parent.
    """
    root = Path(data_dir)
    if not (root / "train.txt").exists():
        root = root / "fb15k-237"
    return load_triples_dir(root)


def load_planetoid_edges(data_dir: str | Path, name: str) -> tuple[Tensor, int]:
    """Unique undirected edges of a Planetoid graph ``ind.NAME.graph`` (features are not read).

    Nodes without edges (CiteSeer's isolated test nodes) still count in the node range.

    Returns:
        ``(edges [M, 2] long with u < v, sorted; num_nodes)``; Cora: M = 5278, 2708 nodes.
    """
    root = Path(data_dir)
    if not (root / f"ind.{name}.graph").exists():
        root = root / name
    with (root / f"ind.{name}.graph").open("rb") as f:
        adj = pickle.load(f, encoding="latin1")
    pairs = {(min(u, v), max(u, v)) for u, nbrs in adj.items() for v in nbrs if u != v}
    num_nodes = max(max(adj), max(max(p) for p in pairs)) + 1
    return torch.tensor(sorted(pairs), dtype=torch.long), num_nodes


def load_cora_edges(data_dir: str | Path) -> tuple[Tensor, int]:
    """Planetoid Cora's undirected edges (:func:`load_planetoid_edges` with name ``cora``)."""
    return load_planetoid_edges(data_dir, "cora")


@dataclass(frozen=True)
class LinkSplit:
    """Seeded edge split of an undirected graph with sampled non-edges for evaluation.

    All pair tensors are ``[M, 2]`` long with ``u < v``.
    """

    num_nodes: int
    train: Tensor
    valid: Tensor
    test: Tensor
    valid_neg: Tensor
    test_neg: Tensor


def cora_link_split(
    edges: Tensor, num_nodes: int, *, ratios: tuple[int, int, int] = (85, 5, 10), seed: int = 0
) -> LinkSplit:
    """Split undirected edges 85/5/10 (NBFNet's setting) and sample equal-size negatives.

    Sizes follow ``int(ratio / sum * M)`` for train and valid, test takes the rest. Negatives
    are distinct non-edges of the FULL graph (no self-pairs), disjoint between valid and test.
    """
    gen = torch.Generator().manual_seed(seed)
    m = edges.shape[0]
    n_train = int(ratios[0] / sum(ratios) * m)
    n_valid = int(ratios[1] / sum(ratios) * m)
    perm = torch.randperm(m, generator=gen)
    train, valid, test = (
        edges[perm[:n_train]],
        edges[perm[n_train : n_train + n_valid]],
        edges[perm[n_train + n_valid :]],
    )
    taken = set((edges[:, 0] * num_nodes + edges[:, 1]).tolist())
    need = valid.shape[0] + test.shape[0]
    neg: list[tuple[int, int]] = []
    while len(neg) < need:
        cand = torch.randint(0, num_nodes, (2 * need, 2), generator=gen).tolist()
        for u, v in cand:
            a, b = min(u, v), max(u, v)
            if a != b and a * num_nodes + b not in taken:
                taken.add(a * num_nodes + b)
                neg.append((a, b))
                if len(neg) == need:
                    break
    negt = torch.tensor(neg, dtype=torch.long)
    return LinkSplit(num_nodes, train, valid, test, negt[: valid.shape[0]], negt[valid.shape[0] :])
