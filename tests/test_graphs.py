"""Tests for hw4/graphs.py against independent oracles (NumPy matrix powers)."""

import numpy as np
import pytest
import torch

from hw4.graphs import adjacency, graph_conv, hop_distances, laplacian


def random_graph(n, p, seed):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < p, k=1)
    edges = [tuple(e) for e in np.argwhere(upper).tolist()]
    return adjacency(n, edges), edges


@pytest.mark.parametrize("seed", range(5))
def test_hop_distances_match_reachability_powers(seed):
    # Oracle: dist(i, j) = smallest k with ((I + A)^k)[i, j] > 0, or -1 if none < n.
    A, _ = random_graph(9, 0.25, seed)  # sparse enough to be disconnected sometimes
    n = A.shape[0]
    R = np.eye(n) + A.numpy()
    expected = np.full((n, n), -1)
    for k in range(n):
        reach = np.linalg.matrix_power(R, k) > 0
        expected[(expected < 0) & reach] = k
    assert np.array_equal(hop_distances(A).numpy(), expected)


def test_hop_distances_path():
    A = adjacency(4, [(0, 1), (1, 2), (2, 3)])
    assert hop_distances(A)[0].tolist() == [0, 1, 2, 3]


def test_laplacian():
    A = adjacency(3, [(0, 1), (1, 2)])
    expected = [[1, -1, 0], [-1, 2, -1], [0, -1, 1]]
    assert laplacian(A).tolist() == expected


def test_adjacency_rejects_self_loop():
    with pytest.raises(ValueError):
        adjacency(3, [(1, 1)])


@pytest.mark.parametrize("q", [1, 2, 3])
def test_graph_conv_matches_entrywise_formula(q):
    # Oracle: Y[i, f] = tanh(sum_k sum_j sum_m (Delta^k)[i, j] X[j, m] alpha_k[m, f] + b[f]),
    # evaluated with np.linalg.matrix_power and explicit sums.
    A, _ = random_graph(6, 0.5, seed=q)
    Delta = laplacian(A)
    g = torch.Generator().manual_seed(q)
    N, M, F = 6, 3, 2
    X = torch.randn(N, M, generator=g, dtype=torch.float64)
    alphas = [torch.randn(M, F, generator=g, dtype=torch.float64) for _ in range(q)]
    b = torch.randn(F, generator=g, dtype=torch.float64)
    Y = graph_conv(X, Delta, alphas, b)
    assert Y.shape == (N, F)
    D, Xn = Delta.numpy(), X.numpy()
    expected = np.empty((N, F))
    for i in range(N):
        for f in range(F):
            s = b[f].item()
            for k in range(1, q + 1):
                Dk = np.linalg.matrix_power(D, k)
                a = alphas[k - 1].numpy()
                s += sum(Dk[i, j] * Xn[j, m] * a[m, f] for j in range(N) for m in range(M))
            expected[i, f] = np.tanh(s)
    np.testing.assert_allclose(Y.numpy(), expected, rtol=1e-12, atol=1e-12)
