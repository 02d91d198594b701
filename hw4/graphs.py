"""Small graph helpers for the Graph Neural Networks questions (Part 4).

Graphs are simple and undirected, given by a dense adjacency matrix
``A: (N, N)`` with entries 0/1, symmetric, zero diagonal. Node features are
``X: (N, M)``: row i is the feature vector of node i.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["adjacency", "laplacian", "graph_conv", "hop_distances"]


def adjacency(num_nodes: int, edges: Sequence[tuple[int, int]], dtype=torch.float64) -> Tensor:
    """Symmetric 0/1 adjacency matrix (N, N) of an undirected graph with the given edges."""
    A = torch.zeros(num_nodes, num_nodes, dtype=dtype)
    for i, j in edges:
        if i == j:
            raise ValueError(f"self-loop ({i}, {j}) is not allowed")
        A[i, j] = A[j, i] = 1
    return A


def laplacian(A: Tensor) -> Tensor:
    """Combinatorial graph Laplacian Delta = D - A, (N, N), D = diag of the degrees."""
    return torch.diag(A.sum(1)) - A


def graph_conv(
    X: Tensor,
    Delta: Tensor,
    alphas: Sequence[Tensor],
    b: Tensor,
    phi: Callable[[Tensor], Tensor] = torch.tanh,
) -> Tensor:
    """Polynomial graph convolution  Y = phi(sum_{k=1}^{q} Delta^k X alpha_k + b).

    X: (N, M) node features; Delta: (N, N) (any graph operator, e.g. a Laplacian);
    alphas: q matrices alpha_k, each (M, F); b: (F,), broadcast to every node.
    Returns Y: (N, F), row i = the new feature vector of node i.
    Delta^k X is computed as Delta (Delta^{k-1} X), never forming Delta^k.
    """
    Z = X
    out = b.expand(X.shape[0], b.shape[0])
    for alpha in alphas:
        Z = Delta @ Z  # Delta^k X, (N, M)
        out = out + Z @ alpha
    return phi(out)


def hop_distances(A: Tensor) -> Tensor:
    """All-pairs hop (shortest-path) distances by breadth-first search.

    A: (N, N) adjacency (nonzero = edge). Returns dist: (N, N) int64,
    dist[i, j] = fewest edges on a path from i to j, -1 if j is unreachable from i.
    """
    N = A.shape[0]
    nbrs = [torch.nonzero(A[i]).flatten().tolist() for i in range(N)]
    dist = torch.full((N, N), -1, dtype=torch.int64)
    for s in range(N):
        dist[s, s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in nbrs[u]:
                if dist[s, v] < 0:
                    dist[s, v] = dist[s, u] + 1
                    queue.append(v)
    return dist
