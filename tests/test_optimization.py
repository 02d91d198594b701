"""Tests for hw4/optimization.py against independent oracles (closed forms, autograd)."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from hw4 import optimization as O

f64 = torch.float64


# ---------------------------------------------------------------- Optimization Q1


@pytest.mark.parametrize("N,B", [(6, 1), (6, 2), (6, 3), (6, 6), (7, 4)])
def test_minibatch_moments_match_sampling_formula(N, B):
    torch.manual_seed(N * 10 + B)
    G = torch.randn(N, 3, dtype=f64)
    mean, var = O.minibatch_gradient_moments(G, B)
    full = G.mean(0)
    tr_sigma = ((G - full) ** 2).sum(1).mean().item()
    assert torch.allclose(mean, full, atol=1e-12)
    # Variance of a sample mean drawn without replacement (finite-population correction).
    assert math.isclose(var, tr_sigma / B * (N - B) / (N - 1), rel_tol=1e-9, abs_tol=1e-12)


def test_minibatch_moments_rejects_bad_batch():
    with pytest.raises(ValueError):
        O.minibatch_gradient_moments(torch.zeros(3, 2), 4)


# ---------------------------------------------------------------- Optimization Q3


def _gd_steps(problem, lr, target):
    """Iterations of exact GD from w = 0 (closed form w_t = (I - (I - lr H)^t) w*)."""
    A, y = problem.A, problem.y
    Hm = A.T @ A / A.shape[0]
    M = torch.eye(A.shape[1], dtype=f64) - lr * Hm
    P = torch.eye(A.shape[1], dtype=f64)
    for t in range(1, 10_000):
        P = P @ M
        w = problem.w_star - P @ problem.w_star
        if 0.5 * ((A @ w - y) ** 2).mean().item() <= target:
            return t
    raise AssertionError("GD did not reach the target")


def test_least_squares_problem_minimiser():
    p = O.least_squares_problem(N=64, d=4, seed=3)
    grad = p.A.T @ (p.A @ p.w_star - p.y)
    assert grad.abs().max() < 1e-10
    assert p.loss_star < p.loss_zero
    assert math.isclose(p.hessian_max, torch.linalg.eigvalsh(p.A.T @ p.A / 64)[-1].item())


def test_huge_batch_sgd_matches_gd():
    # With B >> N the batch gradient is nearly exact: SGD needs the same steps as GD.
    p = O.least_squares_problem(N=64, d=4, seed=1)
    target = p.loss_star + 0.05 * (p.loss_zero - p.loss_star)
    assert (
        abs(O.sgd_steps_to_loss(p, B=10**9, lr=0.3, target=target) - _gd_steps(p, 0.3, target)) <= 1
    )


def test_expected_losses_match_monte_carlo():
    # The exact second-moment recursion vs the mean over many simulated SGD runs.
    p = O.least_squares_problem(N=64, d=4, noise=0.5, seed=2)
    exact = O.sgd_expected_losses(p, B=3, lr=0.2, steps=8)
    g = torch.Generator().manual_seed(0)
    runs = 40_000
    w = torch.zeros(runs, 4, dtype=f64)
    for t in range(1, 9):
        idx = torch.randint(64, (runs, 3), generator=g)
        Ab = p.A[idx]
        r = (Ab @ w.unsqueeze(2)).squeeze(2) - p.y[idx]
        w = w - (0.2 / 3) * (r.unsqueeze(1) @ Ab).squeeze(1)
        losses = 0.5 * ((w @ p.A.T - p.y) ** 2).mean(1)
        se = losses.std().item() / runs**0.5
        assert abs(losses.mean().item() - exact[t]) < 5 * se + 1e-12, t
    assert exact[0] == pytest.approx(p.loss_zero)


def test_expected_losses_noise_free_interpolation_converges():
    # y = A w exactly: every per-sample gradient vanishes at w*, constant-step SGD converges.
    p = O.least_squares_problem(N=32, d=3, noise=0.0, seed=0)
    losses = O.sgd_expected_losses(p, B=1, lr=0.2, steps=2000)
    assert losses[-1] < 1e-20 and losses[-1] < 1e-10 * losses[1000]


def test_sgd_steps_unreachable_target_raises():
    p = O.least_squares_problem(N=32, d=3, seed=0)
    with pytest.raises(RuntimeError):
        O.sgd_steps_to_loss(p, B=1, lr=0.1, target=p.loss_star - 1.0, max_steps=50)


def test_batch_size_claims_hold_for_other_problems():
    # The claims asserted in the notebooks (Optimization Q3) on other random problems.
    # (seeds 1 and 2: lr = 0.8 at B = 8 is beyond the SGD stability limit, which is below 1/lambda_max)
    for seed in (0, 3):
        p = O.least_squares_problem(N=256, d=8, noise=0.5, seed=seed)
        l0 = p.loss_star + 0.05 * (p.loss_zero - p.loss_star)
        Bs = [1, 2, 4, 8, 16, 32, 64]
        same = [O.sgd_steps_to_loss(p, B, 0.1, l0) for B in Bs]
        scaled = [O.sgd_steps_to_loss(p, B, min(0.1 * B, 1 / p.hessian_max), l0) for B in Bs]
        ratios = [b / a for a, b in zip(same + scaled, same[1:] + [0] + scaled[1:])]
        ratios = ratios[:6] + ratios[7:]
        assert all(0.5 <= r <= 1 for r in ratios), (seed, same, scaled)
        assert all(
            B * n <= 2 * B * m for B, n, m in zip(Bs, scaled, scaled[1:])
        )  # samples never drop
        assert scaled[-1] == scaled[-2] or scaled[-1] / scaled[-2] > 0.75


def test_iterations_vs_batch_size_is_the_table_of_sgd_steps_to_loss():
    # The notebook's table: the same numbers as sgd_steps_to_loss called directly, and the
    # regimes it shows: the first doubling halves n (noise-limited), the last changes nothing.
    t = O.iterations_vs_batch_size((1, 2, 32, 64))
    p = O.least_squares_problem(N=256, d=8, noise=0.5, seed=0)
    l0 = p.loss_star + 0.05 * (p.loss_zero - p.loss_star)
    assert t.B == (1, 2, 32, 64)
    assert t.fixed == tuple(O.sgd_steps_to_loss(p, B, 0.1, l0) for B in t.B)
    assert t.scaled[1] == O.sgd_steps_to_loss(p, 2, 0.2, l0)
    assert t.scaled[-1] == O.sgd_steps_to_loss(p, 64, 1 / p.hessian_max, l0)
    assert t.scaled[1] / t.scaled[0] < 0.55 and t.scaled[-1] == t.scaled[-2]
    assert t.fixed[-1] < t.fixed[0] < 1.5 * t.fixed[-1]  # fixed lr: a modest gain only



def test_batch_table_prints_one_line_per_field():
    t = O.BatchTable((1, 2), (46, 39), (46, 23))
    assert str(t) == "B: (1, 2)\nn, fixed lr: (46, 39)\nn, lr ~ B:   (46, 23)"


# ---------------------------------------------------------------- Optimization Q4


def test_double_well_minima():
    roots = sorted(np.roots([1.0, 0.0, -1.0, 0.3]).real)
    assert np.allclose(roots, [-1.125, 0.339, 0.786], atol=1e-3)
    f = lambda x: x**4 / 4 - x**2 / 2 + 0.3 * x  # noqa: E731
    assert f(roots[0]) < f(roots[2])  # the left minimum is the global one


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_double_well_gd_stays_sgd_escapes(seed):
    local_min = sorted(np.roots([1.0, 0.0, -1.0, 0.3]).real)[2]
    gd = O.double_well_sgd(0.0, 0.5, seed=seed)
    assert np.allclose(gd, local_min, atol=1e-5)
    assert (O.double_well_sgd(1.0, 0.5, seed=seed) < 0.339).mean() > 0.8
    # per-sample losses that are double wells themselves: the noise is too weak to escape
    assert (O.double_well_sgd(0.08, 0.5, seed=seed) < 0.339).mean() == 0.0
    both = O.double_well_sgd((1.0, 0.08), 0.5, seed=seed)  # vectorised over noise levels
    assert both.shape == (2, 200)
    assert np.allclose(both[0], O.double_well_sgd(1.0, 0.5, seed=seed))
    assert np.allclose(both[1], O.double_well_sgd(0.08, 0.5, seed=seed))


def test_ravine_steps():
    kappa = 1000.0
    assert O.ravine_steps(kappa, "newton") == 1
    gd = O.ravine_steps(kappa, "gd")
    assert gd == math.ceil(math.log(1e-10) / math.log((kappa - 1) / (kappa + 1)))
    mom = O.ravine_steps(kappa, "momentum")
    rate = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    assert math.log(1e-10) / math.log(rate) <= mom < gd / 10
    with pytest.raises(ValueError):
        O.ravine_steps(kappa, "adam")


# ---------------------------------------------------------------- Optimization Q5


def test_argmin_layer_ridge_matches_closed_form():
    torch.manual_seed(0)
    A, y = torch.randn(12, 3, dtype=f64), torch.randn(12, dtype=f64)
    c = torch.randn(3, dtype=f64)

    def g(w, lam, yy):
        return 0.5 * (A @ w - yy).pow(2).sum() + 0.5 * lam * w.pow(2).sum()

    def solver(lam, yy):
        return np.linalg.solve(
            (A.T @ A).numpy() + lam.item() * np.eye(3), (A.T @ yy.detach()).numpy()
        )

    lam = torch.tensor(0.3, dtype=f64, requires_grad=True)
    yy = y.clone().requires_grad_()
    z = O.argmin_layer(g, solver, lam, yy)
    got = torch.autograd.grad((c * z).sum() + z.pow(2).sum(), (lam, yy))
    closed = torch.linalg.solve(A.T @ A + lam * torch.eye(3, dtype=f64), A.T @ yy)
    want = torch.autograd.grad((c * closed).sum() + closed.pow(2).sum(), (lam, yy))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_argmin_layer_nonquadratic_gradcheck():
    # g(z; theta) = sum(exp(z) - theta * z) + 0.1 * (sum z)^2: coupled, non-quadratic; solved by a
    # NumPy Newton iteration (a black box); checked against finite differences of the whole map.
    def g(z, theta):
        return (torch.exp(z) - theta * z).sum() + 0.1 * z.sum() ** 2

    def solver(theta):
        th = theta.detach().numpy()
        z = np.log(th)
        for _ in range(50):
            grad = np.exp(z) - th + 0.2 * z.sum()
            hess = np.diag(np.exp(z)) + 0.2
            z = z - np.linalg.solve(hess, grad)
        return z

    theta = torch.tensor([0.5, 1.5, 2.0], dtype=f64, requires_grad=True)
    z = O.argmin_layer(g, solver, theta)
    zz = z.detach().requires_grad_()
    (gz,) = torch.autograd.grad(g(zz, theta.detach()), zz)
    assert gz.abs().max() < 1e-12  # the forward really returns the minimiser
    assert torch.autograd.gradcheck(lambda t: O.argmin_layer(g, solver, t), (theta,))


def test_ridge_layer_gradients_agree_and_are_not_trivial():
    implicit, reference = O.ridge_layer_gradients()
    for a, b in zip(implicit, reference):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert implicit[0].shape == () and implicit[1].shape == (20,)
    assert abs(implicit[0].item()) > 1e-3 and implicit[1].abs().min() > 0


def test_argmin_layer_wrong_backward_would_fail():
    # Sanity check of the test above: a layer that ignores the dependence on theta fails gradcheck.
    def solver(theta):
        return np.log(theta.detach().numpy())

    theta = torch.tensor([0.5, 1.5], dtype=f64, requires_grad=True)

    def g_blind(z, th):  # th.detach(): the layer cannot see that z* depends on theta
        return (torch.exp(z) - th.detach() * z).sum()

    def wrong(t):
        return O.argmin_layer(g_blind, solver, t)

    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(wrong, (theta,), raise_exception=True)


# ---------------------------------------------------------------- Optimization Q6


def test_chain_derivative():
    assert math.isclose(O.chain_derivative(50, 0.5), 0.5**50, rel_tol=1e-12)
    assert math.isclose(O.chain_derivative(50, 1.5), 1.5**50, rel_tol=1e-12)
    y, prod = 0.0, 1.0
    for _ in range(50):
        s = 1 / (1 + math.exp(-y))
        prod *= s * (1 - s)
        y = s
    assert math.isclose(O.chain_derivative(50), prod, rel_tol=1e-10)


def test_deep_mlp_kinds():
    assert len(O.deep_mlp(3, 4, "relu")) == 7 and len(O.deep_mlp(3, 4, "linear")) == 4
    with pytest.raises(ValueError):
        O.deep_mlp(3, 4, "gelu")
    # "linear": every layer multiplies every vector norm by exactly gain (gain * orthogonal)
    net = O.deep_mlp(3, 5, "linear", gain=1.5)
    v = torch.randn(7, 5, dtype=f64)
    assert torch.allclose(net[1](v).norm(dim=1), 1.5 * v.norm(dim=1), rtol=1e-12)


def test_deep_mlp_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = O.deep_mlp(2, 4, "sigmoid", seed=5)
    assert torch.equal(torch.rand(3), before)
    b = O.deep_mlp(2, 4, "sigmoid", seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_depth_symptoms():
    s = O.depth_symptoms()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 16, generator=g, dtype=f64)
    y = torch.sin(x[:, :1])
    # The best constant predictor, fitted independently: the mean, with MSE var(y).
    c = torch.linspace(-1, 1, 20001, dtype=f64)
    mse = ((y - c) ** 2).mean(0)  # MSE of every constant c on a fine grid
    assert math.isclose(s.best_constant, mse.min().item(), rel_tol=1e-6)
    # The deep sigmoid net learns only a constant: from step 2 on its loss is the best
    # constant's (to 1e-6), its first layer never changes, its output layer does.
    assert len(s.deep.losses) == len(s.shallow.losses) == 11
    assert s.deep.losses[0] > s.best_constant
    assert all(abs(v - s.best_constant) < 1e-6 * s.best_constant for v in s.deep.losses[2:])
    assert abs(s.deep.losses[-1] - s.best_constant) < 1e-12 * s.best_constant  # and not below
    assert s.deep.rel_change[0] == 0.0 and s.deep.rel_change[-1] > 1e-2
    # The shallow control, same data, lr and steps, re-trained with torch.optim.SGD: it goes
    # below the best constant and keeps improving.
    net = O.deep_mlp(1, 16, "sigmoid")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(10):
        loss = ((net(x) - y) ** 2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.allclose(s.shallow.losses[:10], losses, rtol=1e-12)
    assert all(a > b for a, b in zip(s.shallow.losses[1:], s.shallow.losses[2:]))
    assert s.shallow.losses[-1] < 0.9 * s.best_constant and s.shallow.rel_change[0] > 1e-2
    assert 1e8 < s.exploding.losses[0] < 1e12
    assert s.exploding.losses[1] == math.inf and math.isnan(s.exploding.losses[2])


def test_depth_symptoms_print_the_ratios_weight_changes_and_exploding_losses():
    deep = O.TrainLog([2.02, 9.0, 2.0, 7.0, 2.0], [0.0] + [0.01] * 29 + [0.04])  # 30 hidden
    shallow = O.TrainLog([3.0, 1.0, 1.5], [0.05, 0.4])  # 1 hidden layer
    exploding = O.TrainLog([7e9, math.inf, math.nan], [1.0] * 31)
    lines = str(O.DepthSymptoms(deep, shallow, exploding, best_constant=2.0)).splitlines()
    assert lines == [
        "sigmoid, 30 hidden layers: [1.01, 1.0, 1.0]; weight change: first layer 0e+00, "
        "output layer 4e-02",
        "sigmoid, 1 hidden layer  : [1.5, 0.75]; weight change: first layer 5e-02, "
        "output layer 4e-01",
        "linear, 30 hidden layers, 1.5 x orthogonal, lr 1e-3: losses ['7e+09', 'inf', 'nan']",
    ]


def test_train_deep_mlp_matches_torch_sgd():
    torch.manual_seed(0)
    net = O.deep_mlp(3, 4, "sigmoid", seed=2)
    ref = copy.deepcopy(net)
    x, y = torch.randn(5, 4, dtype=f64), torch.randn(5, 1, dtype=f64)
    w0 = [m.weight.detach().clone() for m in ref if isinstance(m, nn.Linear)]
    log = O.train_deep_mlp(net, x, y, lr=0.05, steps=3)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    losses = []
    for _ in range(3):
        loss = ((ref(x) - y) ** 2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    assert np.allclose(log.losses[:3], losses, rtol=1e-12)
    lins = [m for m in ref if isinstance(m, nn.Linear)]
    rel = [((m.weight - w).norm() / w.norm()).item() for m, w in zip(lins, w0)]
    assert np.allclose(log.rel_change, rel, rtol=1e-10)
