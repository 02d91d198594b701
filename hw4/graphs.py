"""Small graph helpers for the Graph Neural Networks questions (Part 4).

Graphs are simple and undirected, given by a dense adjacency matrix
``A: (N, N)`` with entries 0/1, symmetric, zero diagonal. Node features are
``X: (N, M)``: row i is the feature vector of node i.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from hw4.threads import single_thread

__all__ = [
    "adjacency",
    "laplacian",
    "graph_conv",
    "hop_distances",
    "EXAMPLE_EDGES",
    "example_graph",
    "zero_node",
    "ZeroedNode",
    "zeroed_node_effect",
    "receptive_field",
]

# The path 0-1-...-7, node 8 linked to 2 and 4, node 9 linked to 8.
EXAMPLE_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (2, 8), (4, 8), (8, 9)]


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


def example_graph() -> Tensor:
    """Adjacency (10, 10) of the notebooks' example graph, EXAMPLE_EDGES."""
    return adjacency(10, EXAMPLE_EDGES)


def zero_node(M: Tensor, i: int) -> Tensor:
    """A copy of the (N, N) matrix M with row i and column i set to 0."""
    out = M.clone()
    out[i, :] = 0
    out[:, i] = 0
    return out


def _random_layer(g: torch.Generator, m: int, f: int, q: int):
    alphas = [0.1 * torch.randn(m, f, generator=g, dtype=torch.float64) for _ in range(q)]
    return alphas, torch.randn(f, generator=g, dtype=torch.float64)


class ZeroedNode(NamedTuple):
    changed: list[int]  # nodes whose output row differs from the correct layer's
    constant_row: bool  # the zeroed node's output is phi(b) for two different inputs
    differs_from_deletion: list[int]  # where the buggy Delta differs from deleting the node

    def __str__(self) -> str:
        return (
            f"outputs changed at nodes {self.changed}; the zeroed node's output constant: "
            f"{self.constant_row}\nthe buggy Laplacian vs the node deleted: the degree "
            f"(diagonal) entries of nodes {self.differs_from_deletion} differ"
        )


@single_thread()
def zeroed_node_effect(A: Tensor, node: int, q: int, seed: int = 0) -> ZeroedNode:
    """One layer Y = tanh(sum_{k=1}^q Delta^k X alpha_k + b), Delta = laplacian(A), against
    the same layer with row and column `node` of Delta zeroed. X: (N, 3), F = 4, random.

    ``changed``: rows with max |Y - Y_bug| > 1e-9 (the layer is float64).
    ``differs_from_deletion``: diagonal entries where the buggy Delta differs from the
    Laplacian of the graph with the node's edges removed (no off-diagonal entry differs).
    """
    g = torch.Generator().manual_seed(seed)
    n = A.shape[0]
    X, X2 = (torch.randn(n, 3, generator=g, dtype=torch.float64) for _ in range(2))
    alphas, b = _random_layer(g, 3, 4, q)
    Delta = laplacian(A)
    bug = zero_node(Delta, node)
    Y, Y_bug = graph_conv(X, Delta, alphas, b), graph_conv(X, bug, alphas, b)
    changed = torch.nonzero((Y - Y_bug).abs().amax(1) > 1e-9).flatten().tolist()
    phi_b = torch.tanh(b)
    constant = torch.equal(Y_bug[node], phi_b) and torch.equal(
        graph_conv(X2, bug, alphas, b)[node], phi_b
    )
    diff = bug - laplacian(zero_node(A, node))
    if torch.count_nonzero(diff - torch.diag(diff.diagonal())):
        raise AssertionError("off-diagonal difference")  # cannot happen for D - A
    return ZeroedNode(changed, constant, torch.nonzero(diff.diagonal()).flatten().tolist())


@single_thread()
def receptive_field(A: Tensor, node: int, layers: int, q: int, seed: int = 0) -> set[int]:
    """Input nodes whose features affect `node`'s output after `layers` stacked layers
    tanh(sum_{k=1}^q Delta^k H alpha_k + b) (width 3, random weights), by autograd:
    the j with a nonzero gradient of a random projection of the output row.
    """
    g = torch.Generator().manual_seed(seed)
    Delta = laplacian(A)
    X = torch.randn(A.shape[0], 3, generator=g, dtype=torch.float64, requires_grad=True)
    H = X
    for _ in range(layers):
        H = graph_conv(H, Delta, *_random_layer(g, 3, 3, q))
    (grad,) = torch.autograd.grad(H[node] @ torch.randn(3, generator=g, dtype=torch.float64), X)
    return set(torch.nonzero(grad.abs().sum(1)).flatten().tolist())
