"""The CSR views of a relational graph that every aggregation backend walks.

Shared by :mod:`gnn.layers.relational_aggregate` (the ``naive`` and ``torch`` backends) and
:mod:`gnn.layers.relational_aggregate_triton` (the CUDA kernels), so neither imports the other's
module for its index types.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EdgeView", "GraphIndex"]

_SEGMENT = 256  # edges per relation segment in the Triton weight-gradient kernel


@dataclass(frozen=True)
class EdgeView:
    """The edges kept for one forward pass, in every order the backends need.

    Attributes:
        src, dst, typ, pos: kept edges in destination-sorted order (``pos`` is the position in
            the full destination-sorted list, used to name the extreme's edge).
        keep: ``[E]`` bool mask over the destination-sorted list, or ``None`` (all kept).
        keep_by_src / keep_by_type: the same mask in source-sorted / relation-sorted order.
        degree: ``[N]`` float in-degree over kept edges.
    """

    src: Tensor
    dst: Tensor
    typ: Tensor
    pos: Tensor
    keep: Tensor | None
    keep_by_src: Tensor | None
    keep_by_type: Tensor | None
    degree: Tensor


@dataclass(frozen=True)
class GraphIndex:
    """CSR views of a relational graph, built once per graph and reused every step.

    The canonical edge order sorts edges by destination. ``order_src`` and ``order_typ`` list
    canonical positions sorted by source and by relation; relation runs are cut into segments
    of at most 256 edges for the Triton weight-gradient kernel.
    """

    num_nodes: int
    num_relations: int
    perm: Tensor  # canonical position -> original edge id
    src: Tensor
    dst: Tensor
    typ: Tensor
    indptr_dst: Tensor
    order_src: Tensor
    indptr_src: Tensor
    dst_by_src: Tensor
    typ_by_src: Tensor
    order_typ: Tensor
    src_by_type: Tensor
    dst_by_type: Tensor
    seg_start: Tensor
    seg_end: Tensor
    seg_type: Tensor

    @staticmethod
    def build(
        edge_index: Tensor, edge_type: Tensor, num_nodes: int, num_relations: int
    ) -> GraphIndex:
        """Sort the edges three ways (stable, so ties keep input order).

        Shapes:
            edge_index: ``[2, E]`` long (source, destination); edge_type: ``[E]`` long.
        """
        src0, dst0 = edge_index[0], edge_index[1]
        perm = torch.sort(dst0, stable=True).indices
        src, dst, typ = src0[perm], dst0[perm], edge_type[perm]
        indptr_dst = _indptr(dst, num_nodes)
        order_src = torch.sort(src, stable=True).indices
        indptr_src = _indptr(src[order_src], num_nodes)
        order_typ = torch.sort(typ, stable=True).indices
        counts = torch.bincount(typ, minlength=num_relations)
        starts = torch.cumsum(counts, 0) - counts
        seg_start, seg_end, seg_type = [], [], []
        for r, (s, c) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
            for a in range(s, s + c, _SEGMENT):
                seg_start.append(a)
                seg_end.append(min(a + _SEGMENT, s + c))
                seg_type.append(r)
        dev = edge_index.device
        return GraphIndex(
            num_nodes=num_nodes,
            num_relations=num_relations,
            perm=perm,
            src=src,
            dst=dst,
            typ=typ,
            indptr_dst=indptr_dst,
            order_src=order_src,
            indptr_src=indptr_src,
            dst_by_src=dst[order_src],
            typ_by_src=typ[order_src],
            order_typ=order_typ,
            src_by_type=src[order_typ],
            dst_by_type=dst[order_typ],
            seg_start=torch.tensor(seg_start, dtype=torch.long, device=dev),
            seg_end=torch.tensor(seg_end, dtype=torch.long, device=dev),
            seg_type=torch.tensor(seg_type, dtype=torch.long, device=dev),
        )

    @property
    def num_edges(self) -> int:
        return int(self.src.numel())

    def view(self, keep: Tensor | None = None) -> EdgeView:
        """Select the kept edges.

        Args:
            keep: ``[E]`` bool over the ORIGINAL edge order (``True`` keeps), or ``None``.
        """
        n = self.num_nodes
        if keep is None:
            degree = torch.bincount(self.dst, minlength=n).float()
            pos = torch.arange(self.num_edges, device=self.src.device)
            return EdgeView(self.src, self.dst, self.typ, pos, None, None, None, degree)
        kc = keep[self.perm]
        pos = kc.nonzero().squeeze(1)
        dst = self.dst[pos]
        degree = torch.bincount(dst, minlength=n).float()
        return EdgeView(
            self.src[pos],
            dst,
            self.typ[pos],
            pos,
            kc,
            kc[self.order_src],
            kc[self.order_typ],
            degree,
        )


def _indptr(sorted_index: Tensor, n: int) -> Tensor:
    counts = torch.bincount(sorted_index, minlength=n)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
