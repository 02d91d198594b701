"""Tests for hw4/graphs.py against independent oracles (NumPy matrix powers)."""

import numpy as np
import pytest
import torch

from hw4.graphs import (
    EXAMPLE_EDGES,
    adjacency,
    example_graph,
    graph_conv,
    hop_distances,
    laplacian,
    receptive_field,
    zero_node,
    zeroed_node_effect,
)


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


def _within(A, node, r):
    # Oracle: j is within r hops of node iff ((I + A)^r)[node, j] > 0.
    R = np.linalg.matrix_power(np.eye(A.shape[0]) + A.numpy(), r)
    return set(np.nonzero(R[node] > 0)[0].tolist())


def test_example_graph():
    A = example_graph()
    assert A.shape == (10, 10) and A.sum() == 2 * len(EXAMPLE_EDGES) == 20
    assert torch.equal(A, A.T)


def test_zero_node_copies():
    M = torch.arange(9.0).reshape(3, 3)
    Z = zero_node(M, 1)
    assert Z.tolist() == [[0, 0, 2], [0, 0, 0], [6, 0, 8]] and M[1, 1] == 4


@pytest.mark.parametrize("q", [1, 2, 3])
def test_zeroed_node_changes_exactly_the_q_hop_neighbourhood(q):
    A = example_graph()
    eff = zeroed_node_effect(A, node=5, q=q)
    assert set(eff.changed) == _within(A, 5, q)
    assert eff.constant_row
    assert eff.differs_from_deletion == [4, 6]  # the neighbours of node 5


@pytest.mark.parametrize("seed", range(4))
def test_zeroed_node_on_random_graphs(seed):
    A, _ = random_graph(9, 0.3, seed)
    node = 2
    eff = zeroed_node_effect(A, node=node, q=2, seed=seed)
    assert set(eff.changed) == _within(A, node, 2)
    assert eff.differs_from_deletion == torch.nonzero(A[node]).flatten().tolist()


@pytest.mark.parametrize("layers, q", [(1, 1), (2, 1), (3, 1), (2, 2), (1, 3)])
def test_receptive_field_is_the_lq_hop_ball(layers, q):
    A = example_graph()
    for node in (0, 5, 9):
        assert receptive_field(A, node, layers, q) == _within(A, node, layers * q)


def test_receptive_field_stops_at_the_component():
    A, _ = random_graph(9, 0.2, seed=3)  # components {0, 3, 4, 7}, {5, 6}, and isolated 1, 2, 8
    for node in range(9):
        # An isolated node's row of Delta is zero (no k = 0 term): its output is tanh(b).
        expected = _within(A, node, 8) if A[node].sum() > 0 else set()
        assert receptive_field(A, node, 4, 2) == expected
    assert receptive_field(A, 0, 4, 2) == {0, 3, 4, 7}
