"""NBFNet: Neural Bellman-Ford Networks for link prediction.

Zhu, Zhang, Xhonneux, Tang, "Neural Bellman-Ford Networks: A General Graph Neural Network
Framework for Link Prediction", NeurIPS 2021.

For a query ``(h, q, ?)`` the pair representation ``h_q(h, t)`` is computed for every ``t`` at
once by the generalised Bellman-Ford algorithm (Eq. 2-3): INDICATOR puts the query embedding on
``h`` (``h^0_v = 1[v = h] * q``), then ``layers`` relation-conditioned message-passing steps with a
shortcut (``h^t = h^{t-1} + conv(h^{t-1})``). The score is ``MLP([h^T_t ; q])`` (Sec. 3.3).
Batches of queries run together: node states are ``[N, B, d]``, memory ``O(B N d)``.

Head queries ``(?, q, t)`` are tail queries ``(t, q^{-1}, ?)`` on a graph with inverse
relations (:func:`gnn.data.kg.add_inverse_relations`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gnn.data.kg import RelationalGraph
from gnn.layers.nbf_conv import AGGREGATES, GeneralizedRelationalConv, PassContext
from gnn.layers.relational_aggregate import MESSAGES

__all__ = ["NBFNet", "remove_easy_edges"]


class NBFNet(nn.Module):
    """Neural Bellman-Ford Network.

    Args:
        num_relations: relation types of the graph it runs on (inverse relations included).
        dim: state width (the paper uses 32).
        layers: Bellman-Ford iterations (the paper uses 6).
        message: MESSAGE function, one of ``distmult``, ``transe``, ``rotate``.
        aggregate: AGGREGATE function, one of ``sum``, ``mean``, ``max``, ``pna``.
        short_cut: residual connection between layers.
        layer_norm: LayerNorm in every layer.
        dependent: relation vectors projected from the query relation (KGs); ``False`` gives
            free per-layer relation embeddings (homogeneous graphs).
        mlp_layers: layers of the scoring MLP (hidden width ``2 * dim``).
        backend: aggregation backend (``auto``: Triton on CUDA, chunked torch on CPU).
    """

    def __init__(
        self,
        num_relations: int,
        *,
        dim: int = 32,
        layers: int = 6,
        message: str = "distmult",
        aggregate: str = "pna",
        short_cut: bool = True,
        layer_norm: bool = True,
        dependent: bool = True,
        mlp_layers: int = 2,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if message not in MESSAGES:
            raise ValueError(f"message: unknown {message!r}; expected one of {MESSAGES}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate: unknown {aggregate!r}; expected one of {AGGREGATES}")
        if num_relations < 1 or dim < 1 or layers < 1 or mlp_layers < 1:
            raise ValueError("num_relations, dim, layers and mlp_layers must be positive")
        self.num_relations, self.dim, self.short_cut = num_relations, dim, short_cut
        self.query = nn.Embedding(num_relations, dim)
        self.layers = nn.ModuleList(
            GeneralizedRelationalConv(
                dim,
                dim,
                num_relations,
                dim,
                message=message,
                aggregate=aggregate,
                layer_norm=layer_norm,
                dependent=dependent,
                backend=backend,
            )
            for _ in range(layers)
        )
        feat = 2 * dim
        mlp: list[nn.Module] = []
        for _ in range(mlp_layers - 1):
            mlp += [nn.Linear(feat, feat), nn.ReLU()]
        mlp.append(nn.Linear(feat, 1))
        self.mlp = nn.Sequential(*mlp)

    def bellman_ford(
        self,
        graph: RelationalGraph,
        h_index: Tensor,
        r_index: Tensor,
        *,
        keep: Tensor | None = None,
    ) -> Tensor:
        """Node representations for a batch of queries ``(h_b, r_b, ?)``.

        Args:
            graph: the graph to propagate on.
            h_index: source nodes ``[B]``.
            r_index: query relations ``[B]``.
            keep: ``[E]`` bool edge mask (``False`` drops an edge for this pass), or ``None``.

        Returns:
            ``[N, B, dim]`` final states ``h^T``.

        Shapes:
            h_index, r_index: ``[B]`` -> ``[N, B, dim]``.
        """
        n, b, d = graph.num_nodes, h_index.shape[0], self.dim
        index = graph.index()
        ctx = PassContext.make(index, index.view(keep))
        query = self.query(r_index)
        ar = torch.arange(b, device=h_index.device)
        boundary = query.new_zeros(n * b, d).index_add(0, h_index * b + ar, query).view(n, b, d)
        x = boundary
        for layer in self.layers:
            out = layer(x, query, boundary, ctx)
            x = out + x if self.short_cut else out
        return x

    def score_states(self, states: Tensor, t_index: Tensor, r_index: Tensor) -> Tensor:
        """MLP scores of candidate tails ``t_index[b, k]`` from Bellman-Ford states.

        Shapes:
            states: ``[N, B, dim]``; t_index: ``[B, K]``; r_index: ``[B]`` -> ``[B, K]``.
        """
        b, k = t_index.shape
        ar = torch.arange(b, device=t_index.device).unsqueeze(1)
        feat = states[t_index, ar]
        query = self.query(r_index).unsqueeze(1).expand(b, k, self.dim)
        return self.mlp(torch.cat([feat, query], dim=-1)).squeeze(-1)

    def forward(
        self,
        graph: RelationalGraph,
        h_index: Tensor,
        t_index: Tensor,
        r_index: Tensor,
        *,
        keep: Tensor | None = None,
    ) -> Tensor:
        """Scores of ``(h_b, r_b, t_bk)``: one Bellman-Ford pass per row ``b``.

        Shapes:
            h_index, r_index: ``[B]``; t_index: ``[B, K]`` -> ``[B, K]`` logits.
        """
        states = self.bellman_ford(graph, h_index, r_index, keep=keep)
        return self.score_states(states, t_index, r_index)

    def pair_scores(
        self,
        graph: RelationalGraph,
        h_index: Tensor,
        t_index: Tensor,
        r_index: Tensor,
        *,
        symmetric: bool = False,
        keep: Tensor | None = None,
    ) -> Tensor:
        """Scores of single pairs ``(h_b, r_b, t_b)``.

        With ``symmetric`` the pair feature is the mean of ``h^T(h -> t)`` and ``h^T(t -> h)``
        (two passes), the reference's setting for undirected graphs. ``keep`` is the edge
        mask of both passes (see :meth:`bellman_ford`).

        Shapes:
            h_index, t_index, r_index: ``[B]`` -> ``[B]`` logits.
        """
        ar = torch.arange(h_index.shape[0], device=h_index.device)
        feat = self.bellman_ford(graph, h_index, r_index, keep=keep)[t_index, ar]
        if symmetric:
            back = self.bellman_ford(graph, t_index, r_index, keep=keep)[h_index, ar]
            feat = 0.5 * (feat + back)
        query = self.query(r_index)
        return self.mlp(torch.cat([feat, query], dim=-1)).squeeze(-1)

    def score_all(self, graph: RelationalGraph, h_index: Tensor, r_index: Tensor) -> Tensor:
        """Scores of every node as the tail of ``(h_b, r_b, ?)``.

        Shapes:
            h_index, r_index: ``[B]`` -> ``[B, N]`` logits.
        """
        states = self.bellman_ford(graph, h_index, r_index).transpose(0, 1)
        query = self.query(r_index).unsqueeze(1).expand(-1, graph.num_nodes, -1)
        return self.mlp(torch.cat([states, query], dim=-1)).squeeze(-1)


def remove_easy_edges(
    graph: RelationalGraph,
    h_index: Tensor,
    t_index: Tensor,
    *,
    r_index: Tensor | None = None,
    inverse_offset: int | None = None,
) -> Tensor:
    """Mask that drops the edges a training query could read its answer from (NBFNet Sec. 4).

    With ``r_index=None`` every edge between ``h`` and ``t`` in either direction, of any
    relation, is dropped (the paper's ``remove_one_hop``). Otherwise only ``(h, r, t)`` and
    its inverse ``(t, r + inverse_offset, h)``.

    Args:
        graph: the training graph.
        h_index, t_index: node pairs, any matching shapes.
        r_index: relations of the pairs, or ``None``.
        inverse_offset: relation offset of the inverse edges (``num_relations // 2``).

    Returns:
        ``[E]`` bool, ``True`` for edges to keep.
    """
    n = graph.num_nodes
    src, dst = graph.edge_index
    h, t = h_index.reshape(-1), t_index.reshape(-1)
    if r_index is None:
        keys = src * n + dst
        query = torch.cat([h * n + t, t * n + h])
    else:
        r = r_index.reshape(-1)
        rel = graph.num_relations
        off = rel // 2 if inverse_offset is None else inverse_offset
        keys = (src * n + dst) * rel + graph.edge_type
        query = torch.cat([(h * n + t) * rel + r, (t * n + h) * rel + (r + off) % rel])
    return ~torch.isin(keys, query)
