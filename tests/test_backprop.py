"""Tests for hw4/backprop.py against independent oracles (autograd, closed forms, gradcheck)."""

import math

import pytest
import torch
from torch import nn

from hw4 import backprop as BP
from hw4 import plots
from hw4.answers import part4_affine_backward

f64 = torch.float64


# ---------------------------------------------------------------- Backpropagation Q1


@pytest.mark.parametrize("sigmoid_output", [False, True])
@pytest.mark.parametrize("act", ["tanh", "softplus"])
def test_mlp_bce_grads_vs_autograd(sigmoid_output, act):
    torch.manual_seed(1)
    N, D, H = 7, 3, 5
    phi, dphi = {
        "tanh": (torch.tanh, lambda z: 1 - torch.tanh(z) ** 2),
        "softplus": (nn.functional.softplus, torch.sigmoid),
    }[act]
    X = torch.randn(N, D, dtype=f64, requires_grad=True)
    y = torch.randint(0, 2, (N,)).to(f64)
    p = {
        "W1": 0.3 * torch.randn(H, D, dtype=f64),
        "b1": 0.1 * torch.randn(H, dtype=f64),
        "W2": 0.05 * torch.randn(1, H, dtype=f64),
        "b2": torch.tensor([0.4], dtype=f64),
    }
    p = {k: v.requires_grad_() for k, v in p.items()}
    loss, ours = BP.mlp_bce_grads(
        X, y, **p, lam=0.3, phi=phi, dphi=dphi, sigmoid_output=sigmoid_output
    )
    assert torch.isfinite(loss)
    auto = torch.autograd.grad(loss, [p["W1"], p["b1"], p["W2"], p["b2"], X])
    for k, a in zip(["W1", "b1", "W2", "b2", "X"], auto):
        assert ours[k].shape == a.shape
        assert torch.allclose(ours[k], a, rtol=1e-10, atol=1e-12), k


@pytest.mark.parametrize("sigmoid_output", [False, True])
def test_mlp_bce_errors_small_and_able_to_fail(sigmoid_output, monkeypatch):
    errors = BP.mlp_bce_errors(sigmoid_output)
    assert list(errors) == ["W1", "b1", "W2", "b2", "X"]
    assert max(errors.values()) < 1e-10
    # A formula without the weight-decay term is caught (for the weights only).
    right = BP.mlp_bce_grads

    def no_decay(*args, lam, **kw):
        loss, grads = right(*args, lam=lam, **kw)
        W1, W2 = args[2], args[4]
        return loss, {**grads, "W1": grads["W1"] - lam * W1, "W2": grads["W2"] - lam * W2}

    monkeypatch.setattr(BP, "mlp_bce_grads", no_decay)
    errors = BP.mlp_bce_errors(sigmoid_output)
    assert errors["W1"] > 1e-3 and errors["W2"] > 1e-3 and errors["X"] < 1e-10


# ---------------------------------------------------------------- Part 3, Backpropagation Q2


def test_curved_loss_runs_in_the_dtype_of_its_inputs():
    f, W, b = BP.curved_loss()
    assert (W.shape, b.shape, W.dtype) == ((3, 2), (2,), f64)
    assert f(W.float(), b.float()).dtype == torch.float32
    assert math.isclose(f(W.float(), b.float()).item(), f(W, b).item(), rel_tol=1e-6)


def test_eps_error_sweep_shows_the_trade_off():
    sweep = BP.eps_error_sweep()
    assert sweep.eps == tuple(float(f"1e-{k}") for k in range(1, 13))
    e64, e32 = sweep.errors[f64], sweep.errors[torch.float32]
    # Truncation: x100 per decade at large eps, the same in both dtypes.
    assert e64[0] / e64[1] == pytest.approx(100, rel=0.05)
    assert e32[0] == pytest.approx(e64[0], rel=1e-3)
    # Round-off: below the optimum the error grows again, about x10 per decade in float64.
    best64, best32 = BP.best_steps(sweep)[f64], BP.best_steps(sweep)[torch.float32]
    assert best64[0] in (1e-5, 1e-6) and 1e-11 < best64[1] < 1e-9
    assert best32[0] in (1e-2, 1e-3) and 1e-5 < best32[1] < 1e-3
    assert 1e5 < e64[-1] / best64[1] < 1e8
    # float32: the step rounds away below ~1e-7 for these O(1) entries.
    assert all(math.isnan(e) for e in e32[7:]) and not any(math.isnan(e) for e in e32[:7])


def test_best_steps_skips_nan():
    sweep = BP.EpsSweep(
        (1e-1, 1e-2, 1e-3), {f64: (1e-3, 1e-5, 1e-4), torch.float32: (0.1, math.nan, math.nan)}
    )
    assert BP.best_steps(sweep) == {f64: (1e-2, 1e-5), torch.float32: (1e-1, 0.1)}


def test_plot_eps_sweep_is_a_small_deterministic_png(monkeypatch):
    shown = []
    monkeypatch.setattr(plots, "show", lambda fig, alt: shown.append((plots.png_bytes(fig), alt)))
    sweep = BP.eps_error_sweep()
    BP.plot_eps_sweep(sweep)
    BP.plot_eps_sweep(sweep)
    (png, alt), (png2, _) = shown
    assert png.startswith(b"\x89PNG") and png == png2 and len(png) <= 60_000
    assert "float64" in alt and "float32" in alt


def test_plot_eps_sweep_legend_says_why_a_curve_ends(monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "show", lambda fig, alt: figs.append(fig))
    sweep = BP.eps_error_sweep()
    BP.plot_eps_sweep(sweep)
    labels = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    # float32 has steps that vanish (nan), float64 has none: only float32's entry explains.
    assert any(math.isnan(e) for e in sweep.errors[torch.float32])
    assert not any(math.isnan(e) for e in sweep.errors[f64])
    assert labels[0] == "float64" and labels[1].startswith("float32") and "rounds to x" in labels[1]


# ---------------------------------------------------------------- Part 3, Backpropagation Q3


def test_forward_difference_gradient():
    W = torch.randn(3, 2, dtype=f64)
    W_before = W.clone()
    (g,) = BP.forward_difference_gradient(lambda w: (w**2).sum(), W, eps=1e-3)
    # (f(w + e) - f(w)) / e = 2 w + e exactly for f = w^2 (up to round-off)
    assert torch.allclose(g, 2 * W + 1e-3, atol=1e-9)
    assert torch.equal(W, W_before)
    a = torch.randn(3, 2, dtype=f64)
    (g,) = BP.forward_difference_gradient(lambda w: (a * w).sum() + 1.0, W)
    assert torch.allclose(g, a, atol=1e-8)


def test_difference_errors():
    errors = BP.difference_errors()
    assert set(errors) == {"affine", "curved"}
    # affine: both exact up to round-off; curved: central O(eps^2), forward O(eps).
    assert max(errors["affine"].values()) < 1e-8
    assert errors["curved"]["central"] < 1e-8 < 1e-7 < errors["curved"]["forward"]
    assert errors["curved"]["forward"] > 100 * errors["curved"]["central"]


# ---------------------------------------------------------------- Part 4, Backpropagation Q2


def test_audit_of_the_answer_passes_everything():
    assert BP.audit_affine_backward(part4_affine_backward) == BP.AffineAudit(*[True] * 5)


def test_audit_of_a_backward_ignoring_grad_output():
    # Passes the notebook's asserts, fails the gradient check; always returns tensors.
    audit = BP.audit_affine_backward(BP.affine_backward_ignoring_grad_output)
    assert audit == BP.AffineAudit(True, False, True, False, True)


def _agrees_with_gradcheck(backward) -> bool:
    """torch.autograd.gradcheck on the same Function, every input requiring grad."""
    g = torch.Generator().manual_seed(1)
    inputs = tuple(
        torch.randn(*s, generator=g, dtype=f64, requires_grad=True) for s in ((4, 5), (3, 5), (3,))
    )
    try:
        return torch.autograd.gradcheck(
            BP.affine_function(backward), inputs, raise_exception=False
        )
    except RuntimeError:
        return False


def _unsummed_bias(ctx, G):
    X, W, b = ctx.saved_tensors
    return 0.5 * G @ W, 0.5 * G.T @ X, G  # db (N, D_out): autograd would sum it silently


def _in_place(ctx, G):
    X, W, b = ctx.saved_tensors
    G.mul_(0.5)  # modifies grad_output
    return 0.5 * G @ W * 2, G.T @ X, G.sum(0) * 2


def _transposed_dX(ctx, G):
    X, W, b = ctx.saved_tensors
    return 0.5 * (G @ W).flip(0), 0.5 * G.T @ X, G.sum(0)  # wrong dX, right dW and db


def test_audit_catches_what_the_given_asserts_cannot():
    unsummed = BP.audit_affine_backward(_unsummed_bias)
    assert unsummed.given_asserts and unsummed.gradient_check and not unsummed.exact_shapes
    in_place = BP.audit_affine_backward(_in_place)
    assert in_place.gradient_check and not in_place.grad_output_untouched
    assert not in_place.given_asserts  # writing into the expanded all-ones grad_output fails
    wrong_dX = BP.audit_affine_backward(_transposed_dX)
    assert wrong_dX.given_asserts and not wrong_dX.gradient_check


@pytest.mark.parametrize(
    "backward",
    [
        part4_affine_backward,
        BP.affine_backward_ignoring_grad_output,
        _unsummed_bias,
        _transposed_dX,
    ],
)
def test_audit_gradient_check_agrees_with_torch_gradcheck(backward):
    assert BP.audit_affine_backward(backward).gradient_check == _agrees_with_gradcheck(backward)
