"""Small demonstrations for the Backpropagation summary questions (both parts).

Every function here backs a claim made in Part3/Part4_SummaryQuestions.ipynb and is
tested against an independent oracle in tests/test_backprop.py.

==========================================  ===========================================
Question                                    Functions
==========================================  ===========================================
Backpropagation, Q1 (both parts)            mlp_bce_grads, mlp_bce_errors
Backpropagation, Q2 (Part 3)                curved_loss, eps_error_sweep, best_steps,
                                            plot_eps_sweep
Backpropagation, Q3 (Part 3)                forward_difference_gradient, difference_errors
Backpropagation, Q2 (Part 4)                affine_function, audit_affine_backward,
                                            affine_backward_ignoring_grad_output
==========================================  ===========================================

Shapes: ``X: (N, D)`` is a tensor with N rows and D columns.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from hw4.answers import EpsSweep, eps_sweep, numerical_gradient, rel_error
from hw4.threads import single_thread

__all__ = [
    "mlp_bce_grads",
    "mlp_bce_errors",
    "curved_loss",
    "eps_error_sweep",
    "best_steps",
    "plot_eps_sweep",
    "forward_difference_gradient",
    "difference_errors",
    "affine_function",
    "AffineAudit",
    "audit_affine_backward",
    "affine_backward_ignoring_grad_output",
]

F64 = torch.float64


# --------------------------------------------------------------------------------------
# Q1: analytic gradients of a 2-layer MLP with BCE and weight decay
# --------------------------------------------------------------------------------------


def mlp_bce_grads(
    X: Tensor,
    y: Tensor,
    W1: Tensor,
    b1: Tensor,
    W2: Tensor,
    b2: Tensor,
    lam: float,
    phi: Callable[[Tensor], Tensor],
    dphi: Callable[[Tensor], Tensor],
    sigmoid_output: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and hand-derived gradients (no autograd) of

        L = 1/N sum_i l(y_i, yhat_i) + lam/2 (||W1||_F^2 + ||W2||_F^2),
        a_i = W2 phi(W1 x_i + b1) + b2,  yhat_i = a_i  (or sigmoid(a_i) if sigmoid_output),
        l(y, yhat) = -y log yhat - (1 - y) log(1 - yhat).

    X: (N, D) rows x_i; y: (N,); W1: (H, D); b1: (H,); W2: (1, H); b2: (1,).
    phi, dphi: the activation and its derivative (elementwise).
    Without sigmoid_output the loss is only defined if every a_i is in (0, 1).
    Returns (L, {"W1": (H, D), "b1": (H,), "W2": (1, H), "b2": (1,), "X": (N, D)}).
    """
    N = X.shape[0]
    Z = X @ W1.T + b1  # (N, H)
    Hd = phi(Z)  # (N, H)
    a = Hd @ W2.T + b2  # (N, 1)
    yhat = torch.sigmoid(a) if sigmoid_output else a
    yh, yc = yhat.squeeze(1), y.to(X.dtype)
    loss = (-yc * torch.log(yh) - (1 - yc) * torch.log(1 - yh)).mean()
    loss = loss + lam / 2 * (W1.pow(2).sum() + W2.pow(2).sum())
    if sigmoid_output:
        delta = (yh - yc) / N  # dL/da_i, since d l / d a = sigmoid(a) - y
    else:
        delta = (yh - yc) / (yh * (1 - yh)) / N  # dL/dyhat_i
    delta = delta.unsqueeze(1)  # (N, 1)
    G = (delta @ W2) * dphi(Z)  # (N, H): row i is g_i = (W2^T delta_i) * phi'(z_i)
    grads = {
        "W1": G.T @ X + lam * W1,
        "b1": G.sum(0),
        "W2": delta.T @ Hd + lam * W2,
        "b2": delta.sum(0),
        "X": G @ W1,
    }
    return loss, grads


@single_thread()
def mlp_bce_errors(sigmoid_output: bool, seed: int = 0) -> dict[str, float]:
    """rel_error of mlp_bce_grads vs autograd, per tensor, on a small float64 problem.

    N = 6 samples, D = 5 inputs, H = 4 tanh units, lam = 0.1, labels 0/1. The weights are
    small enough that the affine output a_i stays in (0, 1), where the raw BCE is defined
    (checked: ValueError otherwise). Returns {"W1": e, "b1": e, "W2": e, "b2": e, "X": e}.
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(6, 5, generator=g, dtype=F64)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=F64)
    p = {
        "W1": 0.5 * torch.randn(4, 5, generator=g, dtype=F64),
        "b1": 0.1 * torch.randn(4, generator=g, dtype=F64),
        "W2": 0.1 * torch.randn(1, 4, generator=g, dtype=F64),
        "b2": torch.tensor([0.5], dtype=F64),
    }
    leaves = {k: v.requires_grad_() for k, v in {**p, "X": X}.items()}
    loss, ours = mlp_bce_grads(
        leaves["X"], y, leaves["W1"], leaves["b1"], leaves["W2"], leaves["b2"], lam=0.1,
        phi=torch.tanh, dphi=lambda z: 1 - torch.tanh(z) ** 2, sigmoid_output=sigmoid_output,
    )  # fmt: skip
    if not torch.isfinite(loss):
        raise ValueError("the affine output left (0, 1): BCE undefined; use smaller weights")
    auto = torch.autograd.grad(loss, list(leaves.values()))
    return {k: rel_error(ours[k], a) for k, a in zip(leaves, auto)}


# --------------------------------------------------------------------------------------
# Part 3, Q2: error of central differences against the step eps
# --------------------------------------------------------------------------------------


def curved_loss(N: int = 4, d_in: int = 3, d_out: int = 2, seed: int = 0):
    """A small smooth loss f(W, b) = mean(tanh(X @ W + b)^3) and a point (W, b).

    X: (N, d_in) fixed (seeded), W: (d_in, d_out), b: (d_out,), all float64. f runs in
    the dtype of W (X is cast to it), so it can be evaluated in float32 as well.
    Returns (f, W, b).
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d_in, generator=g, dtype=F64)
    W = torch.randn(d_in, d_out, generator=g, dtype=F64)
    b = torch.randn(d_out, generator=g, dtype=F64)

    def f(W: Tensor, b: Tensor) -> Tensor:
        return torch.tanh(X.to(W.dtype) @ W + b).pow(3).mean()

    return f, W, b


@single_thread()
def eps_error_sweep(seed: int = 0) -> EpsSweep:
    """Max relative error of central differences vs float64 autograd, for eps = 1e-1 ... 1e-12
    (decimal literals, so eps == 1e-5 tests exactly), in float64 and float32, on curved_loss
    (8 parameters). nan where the step vanishes in that dtype."""
    f, W, b = curved_loss(seed=seed)
    return eps_sweep(f, W, b, eps_values=tuple(float(f"1e-{k}") for k in range(1, 13)))


def best_steps(sweep: EpsSweep) -> dict[torch.dtype, tuple[float, float]]:
    """{dtype: (eps, error)} at the smallest error of each dtype (nan entries skipped)."""
    out = {}
    for dtype, errors in sweep.errors.items():
        eps, error = min(
            ((e, err) for e, err in zip(sweep.eps, errors) if not math.isnan(err)),
            key=lambda pair: pair[1],
        )
        out[dtype] = (eps, error)
    return out


def plot_eps_sweep(sweep: EpsSweep) -> None:
    """Log-log plot of sweep.errors against sweep.eps, one curve per dtype, with guides of
    slope 2 (truncation, c * eps^2, drawn a decade above the data) and u / eps per dtype
    (round-off, u = unit round-off). A curve with nan entries (steps that vanish in its
    dtype) ends there; its legend entry says why. Shown with hw4.plots as a PNG.

    Drawn for speed (~40 ms): no layout engine, fixed ticks with plain-text labels (log
    axes' default mathtext labels cost ~50 ms more).
    """
    from matplotlib.ticker import FixedLocator, NullLocator

    from hw4 import plots

    eps = [float(e) for e in sweep.eps]
    fig, ax = plots.figure(5.0, 3.0)
    fig.set_layout_engine(None)  # no layout engine: savefig then draws once, not twice
    ax.set_position((0.15, 0.16, 0.82, 0.8))
    first = next(iter(sweep.errors.values()))
    c = 10 * first[0] / eps[0] ** 2  # a decade above the truncation branch
    ax.loglog(eps[:5], [c * e**2 for e in eps[:5]], ":", color="0.3", lw=1.2)
    ax.text(2e-4, 2e-5, "∝ ε² (truncation)", color="0.3", fontsize=8, ha="right")
    for (dtype, errors), color, at in zip(sweep.errors.items(), ("C0", "C3"), (1e-11, 1e-6)):
        u = torch.finfo(dtype).eps / 2  # unit round-off
        name = str(dtype).removeprefix("torch.")
        ax.loglog(eps, [u / e for e in eps], "--", color=color, lw=1, alpha=0.7)
        ax.text(at, 0.15 * u / at, "u/ε", color=color, fontsize=8, va="top")
        if any(math.isnan(err) for err in errors):  # say why the curve stops
            name += " (ends where\nx ± ε rounds to x)"
        ax.loglog(eps, errors, "o-", color=color, ms=4, label=name)
    ax.set_xlim(5e-13, 0.2)
    ax.set_ylim(1e-12, 10)
    for axis, ticks in ((ax.xaxis, (1e-12, 1e-9, 1e-6, 1e-3)), (ax.yaxis, (1e-12, 1e-8, 1e-4, 1))):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_locator(NullLocator())
    ax.set_xticklabels(["1e-12", "1e-9", "1e-6", "1e-3"])
    ax.set_yticklabels(["1e-12", "1e-8", "1e-4", "1"])
    ax.set_xlabel("step ε")
    ax.set_ylabel("max relative error")
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    plots.show(fig, "relative error of central differences against eps, float64 and float32")


# --------------------------------------------------------------------------------------
# Part 3, Q3: forward vs central differences on an affine and a curved function
# --------------------------------------------------------------------------------------


@single_thread()
def forward_difference_gradient(
    f: Callable[..., Tensor], *tensors: Tensor, eps: float = 1e-6
) -> tuple[Tensor, ...]:
    """(f(x + eps e_j) - f(x)) / eps for every entry j of every tensor (truncation error O(eps)).

    f: scalar function called as f(*tensors); tensors: float tensors (*S_k), not modified.
    Returns one tensor (*S_k) per input. Uses P + 1 evaluations of f for P entries.
    Compare hw4.answers.numerical_gradient (central differences, error O(eps^2)).
    """
    xs = [t.detach().clone() for t in tensors]
    out = []
    with torch.no_grad():
        f0 = f(*xs).item()
        for x in xs:
            flat = x.view(-1)
            grad = torch.empty_like(flat)
            for j in range(flat.numel()):
                old = flat[j].item()
                flat[j] = old + eps
                grad[j] = (f(*xs).item() - f0) / eps
                flat[j] = old
            out.append(grad.view(x.shape))
    return tuple(out)


@single_thread()
def difference_errors(seed: int = 0) -> dict[str, dict[str, float]]:
    """Max rel_error vs autograd of central (eps 6e-6) and forward (eps 1e-6) differences.

    Inputs as in Part 3's Backpropagation Q3: X ~ U(0, 1) (100, 5), W ~ U(0, 1) (5, 5),
    b ~ U(0, 1) (5,), float64, seeded here. Functions: "affine" mean(X @ W + b) (the
    question's foo) and "curved" mean(tanh(X @ W + b)^3).
    Returns {"affine": {"central": e, "forward": e}, "curved": {...}}.
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(100, 5, generator=g, dtype=F64)
    W, b = torch.rand(5, 5, generator=g, dtype=F64), torch.rand(5, generator=g, dtype=F64)
    functions = {
        "affine": lambda W, b: torch.mean(X @ W + b),
        "curved": lambda W, b: torch.tanh(X @ W + b).pow(3).mean(),
    }
    out = {}
    for name, f in functions.items():
        leaves = [W.clone().requires_grad_(), b.clone().requires_grad_()]
        exact = torch.autograd.grad(f(*leaves), leaves)
        methods = {
            "central": numerical_gradient(f, W, b),
            "forward": forward_difference_gradient(f, W, b),
        }
        out[name] = {
            m: max(rel_error(a, e) for a, e in zip(approx, exact)) for m, approx in methods.items()
        }
    return out


# --------------------------------------------------------------------------------------
# Part 4, Q2: what the given asserts check, and what a full check adds
# --------------------------------------------------------------------------------------


class AffineAudit(NamedTuple):
    """Checks of a backward for Y = 0.5 * X @ W.T + b (each True if it passes).

    given_asserts: the notebook's test (X without grad, loss = Y.sum(): upstream all ones);
    gradient_check: with X, W and b all requiring grad and a random upstream gradient G,
        the backward's vector-Jacobian product equals central differences of sum(G * Y)
        (rel_error < 1e-6; torch.autograd.gradcheck checks the same for every direction,
        but its first call costs ~0.25 s of imports);
    exact_shapes: called directly, it returns dX (N, D_in), dW (D_out, D_in), db (D_out,);
    none_if_not_needed: None for every input whose ctx.needs_input_grad entry is False;
    grad_output_untouched: grad_output's values and version counter are unchanged.
    """

    given_asserts: bool
    gradient_check: bool
    exact_shapes: bool
    none_if_not_needed: bool
    grad_output_untouched: bool


def affine_function(backward: Callable) -> Callable:
    """AffineLayerFunction.apply of the Part 4 notebook, with the given backward."""

    class Affine(torch.autograd.Function):
        @staticmethod
        def forward(ctx, X, W, b):
            ctx.save_for_backward(X, W, b)
            return 0.5 * X @ W.T + b

        @staticmethod
        def backward(ctx, grad_output):
            return backward(ctx, grad_output)

    return Affine.apply


@single_thread()
def audit_affine_backward(backward: Callable, seed: int = 0) -> AffineAudit:
    """Run the AffineAudit checks on backward(ctx, grad_output) -> (dX, dW, db).

    Float64 inputs with distinct sizes N = 4, D_in = 3, D_out = 2 (so a transposed result
    cannot have the right shape), seeded; a random upstream gradient G (N, D_out).
    """
    g = torch.Generator().manual_seed(seed)
    X, W, b = (torch.randn(*s, generator=g, dtype=F64) for s in ((4, 3), (2, 3), (2,)))
    G = torch.randn(4, 2, generator=g, dtype=F64)
    apply = affine_function(backward)

    Wg, bg = W.clone().requires_grad_(), b.clone().requires_grad_()  # the given test
    want = torch.autograd.grad((0.5 * X @ Wg.T + bg).sum(), (Wg, bg))
    try:
        got = torch.autograd.grad(apply(X, Wg, bg).sum(), (Wg, bg))
        given = all(torch.allclose(a, e) for a, e in zip(got, want))
    except RuntimeError:  # e.g. an in-place write into the (expanded) all-ones grad_output
        given = False

    inputs = tuple(t.clone().requires_grad_() for t in (X, W, b))
    try:
        vjp = torch.autograd.grad((apply(*inputs) * G).sum(), inputs)
    except RuntimeError:  # e.g. autograd rejects a gradient of the wrong shape
        vjp = None
    numeric = numerical_gradient(lambda *t: (apply(*t) * G).sum(), X, W, b)
    checked = vjp is not None and all(rel_error(a, n) < 1e-6 for a, n in zip(vjp, numeric))

    def call(needs):
        ctx = SimpleNamespace(saved_tensors=(X, W, b), needs_input_grad=needs)
        return backward(ctx, G)

    version, G_before = G._version, G.clone()
    full = call((True, True, True))
    shapes = all(isinstance(d, Tensor) and d.shape == t.shape for d, t in zip(full, (X, W, b)))
    masks = [tuple(j != i for j in range(3)) for i in range(3)]  # one input without grad
    none = all(call(m)[i] is None for i, m in enumerate(masks))
    untouched = G._version == version and torch.equal(G, G_before)
    return AffineAudit(given, checked, shapes, none, untouched)


def affine_backward_ignoring_grad_output(ctx, grad_output: Tensor):
    """A WRONG backward for Y = 0.5 * X @ W.T + b: it uses an all-ones upstream gradient
    instead of grad_output (N, D_out) and returns dX = 0. The notebook's asserts (upstream
    all ones, X without grad) cannot tell it from the right one."""
    X, W, b = ctx.saved_tensors
    ones = torch.ones_like(grad_output)
    return torch.zeros_like(X), 0.5 * ones.T @ X, ones.sum(0)
