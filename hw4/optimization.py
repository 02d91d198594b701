"""Small, fast demonstrations for the Optimization summary questions (both parts).

Every function here backs a claim made in Part3/Part4_SummaryQuestions.ipynb and is
tested against an independent oracle in tests/test_optimization.py.

==========================================  ===========================================
Question (both parts unless noted)          Functions
==========================================  ===========================================
Optimization, Q1 (estimator moments)        minibatch_gradient_moments
Optimization, Q3 (batch size)               least_squares_problem, sgd_expected_losses,
                                            sgd_steps_to_loss, iterations_vs_batch_size
Optimization, Q4 (local minima, ravine)     double_well_sgd, ravine_steps
Optimization, Q5 (bi-level layer)           argmin_layer, ridge_layer_gradients
Optimization, Q6 (vanishing / exploding)    chain_derivative, deep_mlp, train_deep_mlp,
                                            depth_symptoms
==========================================  ===========================================

The Backpropagation helpers are in hw4/backprop.py.

Shapes: ``X: (N, D)`` is a tensor with N rows and D columns.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from hw4.threads import single_thread

__all__ = [
    "minibatch_gradient_moments",
    "least_squares_problem",
    "sgd_expected_losses",
    "sgd_steps_to_loss",
    "iterations_vs_batch_size",
    "double_well_sgd",
    "ravine_steps",
    "argmin_layer",
    "ridge_layer_gradients",
    "chain_derivative",
    "deep_mlp",
    "train_deep_mlp",
    "DepthSymptoms",
    "depth_symptoms",
]


# --------------------------------------------------------------------------------------
# Optimization, Q1: mean and variance of the mini-batch gradient
# --------------------------------------------------------------------------------------


@single_thread()
def minibatch_gradient_moments(per_sample_grads: Tensor, B: int) -> tuple[Tensor, float]:
    """Exact mean and total variance of the mini-batch gradient estimator.

    per_sample_grads: (N, P), row i is grad l_i(theta) at a fixed theta.
    B: batch size, 1 <= B <= N; a batch is drawn uniformly among all C(N, B) subsets
    (sampling without replacement, as a shuffled epoch does).
    Returns (mean (P,), total variance E||g_B - E g_B||^2), by enumerating every batch
    (keep N small: C(N, B) batches).
    """
    G = per_sample_grads.double()
    N = G.shape[0]
    if not 1 <= B <= N:
        raise ValueError(f"need 1 <= B <= N = {N}, got B = {B}")
    batches = torch.tensor(list(itertools.combinations(range(N), B)))  # (C(N,B), B)
    g = G[batches].mean(1)  # (C(N,B), P)
    mean = g.mean(0)
    return mean, ((g - mean) ** 2).sum(1).mean().item()


# --------------------------------------------------------------------------------------
# Optimization, Q3: iterations to reach a loss level vs batch size
# --------------------------------------------------------------------------------------


class LeastSquares(NamedTuple):
    """L(w) = 1/(2N) ||A w - y||^2. A: (N, d), y: (N,), w_star: (d,) minimiser,
    loss_star = L(w_star), loss_zero = L(0), hessian_max = largest eigenvalue of A^T A / N."""

    A: Tensor
    y: Tensor
    w_star: Tensor
    loss_star: float
    loss_zero: float
    hessian_max: float


@single_thread()
def least_squares_problem(
    N: int = 256, d: int = 8, noise: float = 0.5, seed: int = 0
) -> LeastSquares:
    """A noisy, mildly ill-conditioned linear regression problem (float64)."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.3, d, dtype=torch.float64)
    A = torch.randn(N, d, generator=g, dtype=torch.float64) * scales
    y = A @ torch.randn(d, generator=g, dtype=torch.float64)
    y = y + noise * torch.randn(N, generator=g, dtype=torch.float64)
    w_star = torch.linalg.lstsq(A, y.unsqueeze(1)).solution.squeeze(1)
    loss = lambda w: 0.5 * ((A @ w - y) ** 2).mean().item()  # noqa: E731
    h_max = torch.linalg.eigvalsh(A.T @ A / N)[-1].item()
    return LeastSquares(A, y, w_star, loss(w_star), loss(torch.zeros(d, dtype=A.dtype)), h_max)


def sgd_expected_losses(problem: LeastSquares, B: int, lr: float, steps: int) -> list[float]:
    """Exact expected training loss E[L(w_t)], t = 0..steps, of mini-batch SGD from w_0 = 0.

    problem: a LeastSquares problem; B: batch size (indices drawn uniformly WITH
    replacement); lr: constant step size. No sampling: for least squares the first two
    moments of e_t = w_t - w_star follow a closed recursion. With H = A^T A / N and the
    optimal residuals r_i = y_i - a_i^T w_star (A^T r = 0), the per-sample gradient is
    g_i = a_i (a_i^T e - r_i), the batch gradient has mean H e, and
        m' = (I - lr H) m,                                        m = E e,
        M' = M - lr (H M + M H) + lr^2 ((1 - 1/B) H M H + C / B),  M = E e e^T,
        C  = 1/N sum_i a_i a_i^T (a_i^T M a_i - 2 r_i a_i^T m + r_i^2),
    and E L(w) = loss_star + tr(H M) / 2. Computed in float64 NumPy with M as a
    d*d vector (one (d^2, d^2) matrix-vector product per step).
    Returns a list of steps + 1 floats.
    """
    it = _expected_loss_iter(problem, B, lr)
    return [next(it) for _ in range(steps + 1)]


@functools.lru_cache(maxsize=4)
def _moment_terms(problem: LeastSquares):
    """The B- and lr-independent matrices of the recursion (cached: a NamedTuple of
    tensors hashes by tensor identity)."""
    A, w_star = problem.A.double().numpy(), problem.w_star.double().numpy()
    N, d = A.shape
    H = A.T @ A / N
    r = problem.y.double().numpy() - A @ w_star
    Q = (A[:, :, None] * A[:, None, :]).reshape(N, d * d)  # row i: vec(a_i a_i^T)
    eye = np.eye(d)
    # vec(H M) = kron(H, I) vec(M), vec(M H) = kron(I, H) vec(M), vec(H M H) = kron(H, H) vec(M)
    HI = np.kron(H, eye) + np.kron(eye, H)
    HH = np.kron(H, H)
    C2 = (Q.T @ Q) / N  # vec(1/N sum_i a_i a_i^T (a_i^T M a_i))
    C1 = -2 * (Q.T @ (r[:, None] * A)) / N  # (d^2, d): the term in m
    C0 = (Q.T @ r**2) / N  # (d^2,): the constant term
    return H, w_star, HI, HH, C2, C1, C0


def _expected_loss_iter(problem: LeastSquares, B: int, lr: float):
    """Yields E[L(w_t)] for t = 0, 1, 2, ... (see sgd_expected_losses)."""
    H, w_star, HI, HH, C2, C1, C0 = _moment_terms(problem)
    d = H.shape[0]
    eye = np.eye(d)
    K = np.eye(d * d) - lr * HI + lr**2 * (1 - 1 / B) * HH + lr**2 / B * C2
    K_m = lr**2 / B * C1
    c = lr**2 / B * C0
    S = eye - lr * H
    m = -w_star
    M = np.outer(m, m).reshape(-1)
    h = H.reshape(-1) / 2
    while True:
        yield problem.loss_star + float(h @ M)
        M, m = K @ M + K_m @ m + c, S @ m


def sgd_steps_to_loss(
    problem: LeastSquares, B: int, lr: float, target: float, max_steps: int = 2000
) -> int:
    """First iteration t at which the exact expected loss E[L(w_t)] <= target.

    Same setting as sgd_expected_losses (w_0 = 0, batches drawn with replacement).
    Raises RuntimeError if the target is not reached within max_steps.
    """
    for t, loss in enumerate(_expected_loss_iter(problem, B, lr)):
        if loss <= target:
            return t
        if t >= max_steps:
            raise RuntimeError(f"B={B}, lr={lr}: E[L] never reached {target} in {max_steps} steps")
    raise AssertionError("unreachable")


class BatchTable(NamedTuple):
    """B: batch sizes; fixed: n(B) with the same lr for every B; scaled: n(B) with the lr
    scaled in proportion to B, capped at 1 / lambda_max (half the GD stability limit)."""

    B: tuple[int, ...]
    fixed: tuple[int, ...]
    scaled: tuple[int, ...]

    def __str__(self) -> str:
        return f"B: {self.B}\nn, fixed lr: {self.fixed}\nn, lr ~ B:   {self.scaled}"


def iterations_vs_batch_size(
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), lr: float = 0.1, seed: int = 0
) -> BatchTable:
    """Iterations n(B) until the exact expected loss of mini-batch SGD reaches l0.

    Problem: least_squares_problem(N=256, d=8, noise=0.5, seed); w_0 = 0; l0 = loss_star
    + 5% of (L(0) - loss_star). lr: the step at B = 1 (fixed: the same for every B;
    scaled: min(lr * B, 1 / lambda_max)). See sgd_steps_to_loss.
    """
    p = least_squares_problem(N=256, d=8, noise=0.5, seed=seed)
    l0 = p.loss_star + 0.05 * (p.loss_zero - p.loss_star)
    fixed = tuple(sgd_steps_to_loss(p, B, lr, l0) for B in batch_sizes)
    scaled = tuple(sgd_steps_to_loss(p, B, min(lr * B, 1 / p.hessian_max), l0) for B in batch_sizes)
    return BatchTable(tuple(batch_sizes), fixed, scaled)


# --------------------------------------------------------------------------------------
# Optimization, Q4: local minima (double well) and a narrow ravine
# --------------------------------------------------------------------------------------


def double_well_sgd(
    noise: float | tuple[float, ...],
    x0: float,
    tilt: float = 0.3,
    lr: float = 0.3,
    steps: int = 150,
    runs: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """Final iterates of (S)GD on a tilted double well, a finite sum of two losses.

    Loss f(x) = x^4/4 - x^2/2 + tilt*x = mean of f_+(x), f_-(x), f_pm = f(x) +- noise*x.
    With tilt = 0.3: global minimum x ~ -1.125, local minimum x ~ 0.786, barrier
    (local maximum) x ~ 0.339. Each f_pm is itself a double well iff |tilt +- noise| <
    2/(3 sqrt 3) ~ 0.385 (e.g. noise <= 0.08). Each step uses one of the two "samples"
    at random (noise = 0 gives plain GD, the gradient f'(x) exactly); the step size
    decays linearly from lr to 0 so every run settles.
    Returns x: (runs,) float64 NumPy array; for a tuple of K noise levels, (K, runs),
    one row per level, all simulated together (the same random signs for every row).
    """
    g = torch.Generator().manual_seed(seed)  # torch's RNG: numpy.random costs ~10 ms to load
    signs = (2.0 * torch.randint(0, 2, (steps, runs), generator=g) - 1.0).double().numpy()
    if not np.isscalar(noise):
        noise = np.asarray(noise, dtype=np.float64)[:, None]  # (K, 1), broadcast over runs
        signs = signs[:, None, :]  # (steps, 1, runs)
    x = np.full(np.broadcast_shapes(np.shape(noise), (runs,)), float(x0))
    shift = tilt + noise * signs  # (steps, [K,] runs): f_pm'(x) = x^3 - x + shift
    for t in range(steps):
        x -= (lr * (1.0 - t / steps)) * (x * x * x - x + shift[t])
    return x


def ravine_steps(kappa: float, method: str, tol: float = 1e-10, max_steps: int = 100_000) -> int:
    """Steps to shrink ||theta|| below tol * ||theta_0|| on f = (theta_1^2 + kappa theta_2^2)/2.

    theta_0 = (1, 1); the Hessian diag(1, kappa) has condition number kappa (the
    "ravine": curvature kappa across it, 1 along it). method:
      "newton": theta <- theta - H^{-1} grad f;
      "momentum": heavy ball, theta <- theta - a grad f + b (theta - theta_prev), with the
                  optimal a = 4 / (1 + sqrt(kappa))^2, b = ((sqrt(kappa)-1)/(sqrt(kappa)+1))^2;
      "gd": theta <- theta - a grad f with the optimal a = 2 / (1 + kappa).
    Exact (deterministic) gradients: the best case for momentum.
    """
    if method not in ("newton", "momentum", "gd"):
        raise ValueError(f"unknown method {method!r}")
    sq = math.sqrt(kappa)
    a = 4.0 / (1.0 + sq) ** 2 if method == "momentum" else 2.0 / (1.0 + kappa)
    beta = ((sq - 1) / (sq + 1)) ** 2 if method == "momentum" else 0.0
    t1 = t2 = p1 = p2 = 1.0  # theta and theta_prev, coordinate by coordinate (plain floats: fast)
    bound = (tol * math.sqrt(2.0)) ** 2  # ||theta_0||^2 = 2
    for t in range(1, max_steps + 1):
        g1, g2 = t1, kappa * t2  # grad f
        if method == "newton":
            n1, n2 = t1 - g1 / 1.0, t2 - g2 / kappa  # theta - H^{-1} grad f
        else:
            n1, n2 = t1 - a * g1 + beta * (t1 - p1), t2 - a * g2 + beta * (t2 - p2)
        p1, p2, t1, t2 = t1, t2, n1, n2
        if t1 * t1 + t2 * t2 <= bound:
            return t
    raise RuntimeError(f"{method} did not converge in {max_steps} steps")


# --------------------------------------------------------------------------------------
# Optimization, Q5: an argmin layer differentiated with the implicit function theorem
# --------------------------------------------------------------------------------------


def argmin_layer(g: Callable[..., Tensor], solver: Callable[..., Tensor], *theta: Tensor) -> Tensor:
    """z*(theta) = argmin_z g(z, *theta), differentiable w.r.t. theta.

    g: inner objective, g(z, *theta) -> scalar; z: (P,). Must be twice differentiable
       with an invertible Hessian d^2 g / dz^2 at z*.
    solver: any black box, solver(*theta) -> z* (P,); it is run under no_grad and may use
       any method (closed form, NumPy, a convex solver, ...): it is never differentiated.
    Returns z*: (P,), with a backward given by the implicit function theorem:
    grad_z g(z*, theta) = 0  =>  dz*/dtheta = -H^{-1} d(grad_z g)/dtheta, H = d^2 g/dz^2,
    so for an upstream gradient v = dL/dz*:  dL/dtheta = -(d(grad_z g)/dtheta)^T H^{-1} v
    (H is symmetric): one linear solve and one vector-Jacobian product at z*.
    """

    class _Argmin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *th):
            with torch.no_grad():
                z = torch.as_tensor(solver(*th), dtype=th[0].dtype)
            ctx.save_for_backward(z, *th)
            return z

        @staticmethod
        def backward(ctx, v):
            z, *th = ctx.saved_tensors
            with torch.enable_grad():
                z = z.detach().requires_grad_()
                th = [t.detach().requires_grad_() for t in th]
                (gz,) = torch.autograd.grad(g(z, *th), z, create_graph=True)  # (P,)
                hess = torch.stack(
                    [torch.autograd.grad(gz[k], z, retain_graph=True)[0] for k in range(z.numel())]
                )  # (P, P)
                u = torch.linalg.solve(hess, v)  # (P,), a constant below
                # vector-Jacobian product -(d grad_z g / d theta)^T u, as the gradient of a scalar
                grads = torch.autograd.grad(-(gz * u).sum(), th, allow_unused=True)
            return tuple(grads)

    return _Argmin.apply(*theta)


def ridge_layer_gradients(lam: float = 0.7, seed: int = 0) -> tuple[tuple[Tensor, Tensor], ...]:
    """Gradients of a validation loss through a ridge-regression layer, two ways.

    Inner problem: w*(lam, y) = argmin_w ||A w - y||^2 / 2 + lam ||w||^2 / 2, A: (20, 4),
    y: (20,); outer loss ||A_val w* - y_val||^2 / 2, A_val: (10, 4) (seeded, float64).
    Returns ((dL/dlam (), dL/dy (20,)) by argmin_layer, whose solver is NumPy's SVD-based
    least squares on [A; sqrt(lam) I] w = [y; 0] (invisible to autograd), and the same
    by autograd through the closed form (A^T A + lam I)^{-1} A^T y).
    """
    g = torch.Generator().manual_seed(seed)
    A, A_val, y0, y_val = (
        torch.randn(*shape, generator=g, dtype=torch.float64)
        for shape in ((20, 4), (10, 4), (20,), (10,))
    )

    def inner(w, lam, y):  # g(w; lam, y)
        return 0.5 * (A @ w - y).pow(2).sum() + 0.5 * lam * w.pow(2).sum()

    def solver(lam, y):  # a black box: no descent method, no autograd
        M = np.vstack([A.numpy(), math.sqrt(lam.item()) * np.eye(4)])
        return np.linalg.lstsq(M, np.concatenate([y.detach().numpy(), np.zeros(4)]), rcond=None)[0]

    def closed_form(lam, y):
        return torch.linalg.solve(A.T @ A + lam * torch.eye(4, dtype=torch.float64), A.T @ y)

    out = []
    for layer in (lambda lam, y: argmin_layer(inner, solver, lam, y), closed_form):
        lam_t = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
        y = y0.clone().requires_grad_()
        loss = 0.5 * (A_val @ layer(lam_t, y) - y_val).pow(2).sum()
        out.append(tuple(torch.autograd.grad(loss, (lam_t, y))))
    return tuple(out)


# --------------------------------------------------------------------------------------
# Optimization, Q6: vanishing and exploding gradients
# --------------------------------------------------------------------------------------


@single_thread()
def chain_derivative(depth: int, weight: float | None = None, x0: float = 0.0) -> float:
    """d y_L / d x by autograd (float64) through a scalar chain of depth layers.

    weight given: y_l = weight * y_{l-1} (so the derivative is weight**depth);
    weight None: y_l = sigmoid(y_{l-1}) (each factor sigmoid' <= 1/4).
    """
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    y = x
    for _ in range(depth):
        y = weight * y if weight is not None else torch.sigmoid(y)
    (dx,) = torch.autograd.grad(y, x)
    return dx.item()


@single_thread()
def deep_mlp(depth: int, width: int, kind: str, gain: float = 1.0, seed: int = 0) -> nn.Sequential:
    """A deep float64 MLP: depth hidden layers of width units, then Linear(width, 1).

    kind: "sigmoid" (default PyTorch init, each layer Linear + Sigmoid),
          "relu" (Kaiming-normal init, each layer Linear + ReLU),
          "linear" (no activation; each weight is gain * an orthogonal matrix and the bias
          0, so every layer multiplies every vector norm by exactly gain).
    All layers map width -> width: inputs are (M, width). Seeded with seed inside
    torch.random.fork_rng: the global RNG is left as it was.
    """
    if kind not in ("sigmoid", "relu", "linear"):
        raise ValueError(f"unknown kind {kind!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "linear":  # one batched QR: (depth, width, width) orthogonal matrices
            qs = gain * torch.linalg.qr(torch.randn(depth, width, width, dtype=torch.float64)).Q
        layers: list[nn.Module] = []
        for k in range(depth):
            lin = nn.Linear(width, width, dtype=torch.float64)
            if kind == "linear":
                with torch.no_grad():
                    lin.weight.copy_(qs[k])
                    lin.bias.zero_()
                layers.append(lin)
            elif kind == "relu":
                nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
                nn.init.zeros_(lin.bias)
                layers += [lin, nn.ReLU()]
            else:
                layers += [lin, nn.Sigmoid()]
        layers.append(nn.Linear(width, 1, dtype=torch.float64))
    return nn.Sequential(*layers)


class TrainLog(NamedTuple):
    """losses: training loss per step (steps + 1 values, before each update and at the end);
    rel_change: per nn.Linear (input side first), ||W_end - W_0|| / ||W_0||."""

    losses: list[float]
    rel_change: list[float]


@single_thread()
def train_deep_mlp(model: nn.Sequential, x: Tensor, y: Tensor, lr: float, steps: int) -> TrainLog:
    """Full-batch gradient descent on the MSE of model(x) (M, 1) vs y (M, 1).

    Returns a TrainLog. Only the loss values and the weights are recorded: no gradient
    is inspected (the point of Optimization Q6.4).
    """
    linears = [m for m in model if isinstance(m, nn.Linear)]
    w0 = [m.weight.detach().clone() for m in linears]
    params = list(model.parameters())
    losses = []
    for _ in range(steps):
        loss = ((model(x) - y) ** 2).mean()
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-lr)  # p -= lr * g for every p, in one call
    with torch.no_grad():
        losses.append(((model(x) - y) ** 2).mean().item())
    rel = [((m.weight.detach() - w).norm() / w.norm()).item() for m, w in zip(linears, w0)]
    return TrainLog(losses, rel)


class DepthSymptoms(NamedTuple):
    """deep: TrainLog of the deep sigmoid MLP; shallow: of a 1-hidden-layer sigmoid MLP
    (same data, learning rate and steps); exploding: of the deep linear MLP with weights
    1.5 x orthogonal (lr 1e-3); best_constant: MSE of the best constant predictor, var(y)."""

    deep: TrainLog
    shallow: TrainLog
    exploding: TrainLog
    best_constant: float

    def __str__(self) -> str:
        """Three lines: for each sigmoid net, loss / best_constant at steps 0, 2, 4, ... and the
        relative weight change of its first and output layers; the exploding net's losses."""
        lines = []
        for log in (self.deep, self.shallow):
            name = f"sigmoid, {len(log.rel_change) - 1} hidden layer"
            name += "s" if len(log.rel_change) > 2 else ""
            ratios = [round(v / self.best_constant, 4) for v in log.losses[::2]]
            lines.append(
                f"{name:25}: {ratios}; weight change: first layer {log.rel_change[0]:.0e}, "
                f"output layer {log.rel_change[-1]:.0e}"
            )
        boom = self.exploding
        lines.append(
            f"linear, {len(boom.rel_change) - 1} hidden layers, 1.5 x orthogonal, lr 1e-3: "
            f"losses {[f'{v:.0e}' for v in boom.losses]}"
        )
        return "\n".join(lines)


@single_thread()
def depth_symptoms(
    depth: int = 30, width: int = 16, samples: int = 32, steps: int = 10, seed: int = 1
) -> DepthSymptoms:
    """Full-batch GD on three float64 MLPs (deep_mlp), recording only losses and weights.

    Data: x ~ N(0, I) (samples, width), y = sin(x_1) (samples, 1), seeded. Networks:
    "sigmoid" with depth hidden layers and with 1 (the shallow control), default init,
    steps steps of lr 0.1 each (vanishing gradients: the deep one learns only a constant);
    "linear" with depth layers of weights 1.5 x orthogonal, 2 steps of lr 1e-3 (exploding).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, width, generator=g, dtype=torch.float64)
    y = torch.sin(x[:, :1])
    deep, shallow = (
        train_deep_mlp(deep_mlp(n, width, "sigmoid"), x, y, lr=0.1, steps=steps) for n in (depth, 1)
    )
    exploding = train_deep_mlp(deep_mlp(depth, width, "linear", gain=1.5), x, y, lr=1e-3, steps=2)
    return DepthSymptoms(deep, shallow, exploding, y.var(unbiased=False).item())
