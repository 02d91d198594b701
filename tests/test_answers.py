"""Tests of hw4/answers.py against independent oracles.

Oracles: torch autograd, torch.autograd.gradcheck / gradgradcheck, nn.Embedding /
F.embedding, the closed-form central-difference error of sin, and hand-computed
receptive fields. Float64, seeded, with distinct dimensions (N=4, D_in=5, D_out=3)
so that a transposed result cannot have the right shape by accident.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import notebook_cnn
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.autograd.gradcheck import GradcheckError
from torch.utils._python_dispatch import TorchDispatchMode

from hw4.answers import (
    Embedding,
    EpsSweep,
    ReceptiveField,
    embedding_lookup,
    empirical_receptive_field,
    eps_sweep,
    numerical_gradient,
    part4_affine_backward,
    receptive_field,
    rel_error,
)
from hw4.backprop import affine_function

N, D_IN, D_OUT = 4, 5, 3
F64 = torch.float64
FAST = settings(max_examples=25, deadline=None, derandomize=True)


def curved(X, W, b):
    return torch.tanh(X @ W + b).pow(3).mean()


def curved_inputs(seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D_IN, generator=g, dtype=F64)
    W = torch.randn(D_IN, D_OUT, generator=g, dtype=F64) / math.sqrt(D_IN)
    b = 0.1 * torch.randn(D_OUT, generator=g, dtype=F64)
    return X.to(dtype), W.to(dtype), b.to(dtype)


def autograd_gradients(f, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    return torch.autograd.grad(f(*leaves), leaves)


# ------------------------------------------------------------------------------------
# rel_error
# ------------------------------------------------------------------------------------


def test_rel_error_is_max_elementwise_relative_error():
    a = torch.tensor([1.0, 2.0, 10.0], dtype=F64)
    b = torch.tensor([1.0, 3.0, 11.0], dtype=F64)
    assert rel_error(a, b) == pytest.approx(1 / 5)  # max(0, 1/5, 1/21)


def test_rel_error_floors_the_denominator_at_1e_8():
    assert rel_error(torch.zeros(3, dtype=F64), torch.full((3,), 1e-10, dtype=F64)) == (
        pytest.approx(1e-2)
    )
    assert rel_error(torch.zeros(0), torch.zeros(0)) == 0.0


def test_rel_error_rejects_different_shapes():
    with pytest.raises(ValueError, match=r"shapes differ: \(3,\) vs \(1, 3\)"):
        rel_error(torch.zeros(3), torch.zeros(1, 3))


# ------------------------------------------------------------------------------------
# numerical_gradient
# ------------------------------------------------------------------------------------


def test_numerical_gradient_matches_autograd_on_a_curved_function():
    inputs = curved_inputs()
    numeric = numerical_gradient(curved, *inputs)
    exact = autograd_gradients(curved, *inputs)
    for k, (got, want) in enumerate(zip(numeric, exact)):
        assert got.shape == want.shape and got.dtype == F64, k
        assert rel_error(got, want) < 1e-8, k


@pytest.mark.parametrize("eps", [1e-2, 1e-3])
def test_numerical_gradient_is_a_central_difference(eps):
    # For f = sum(sin x) the central difference is exactly cos(x) * sin(eps) / eps,
    # so its error is -cos(x) * eps^2 / 6 (= eps^2/6 * f''') up to O(eps^4). A forward
    # difference would be off by -sin(x) * eps / 2 instead: orders of magnitude more.
    x = torch.linspace(-1, 1, 7, dtype=F64)
    (grad,) = numerical_gradient(lambda t: torch.sin(t).sum(), x, eps=eps)
    error = grad - torch.cos(x)
    predicted = -torch.cos(x) * eps**2 / 6
    torch.testing.assert_close(error, predicted, rtol=1e-3, atol=0)


def test_numerical_gradient_costs_exactly_two_evaluations_per_entry():
    calls = []

    def f(X, W, b):
        calls.append(None)
        return curved(X, W, b)

    inputs = curved_inputs()
    numerical_gradient(f, *inputs)
    P = sum(t.numel() for t in inputs)
    assert len(calls) == 2 * P


def test_numerical_gradient_never_touches_the_callers_tensors():
    X, W, b = (t.requires_grad_() for t in curved_inputs())
    W.grad = torch.ones_like(W)
    before = [(t.detach().clone(), t._version, t.grad) for t in (X, W, b)]
    seen = []

    def f(x, w, bias):
        # The caller's tensors are unchanged even while f runs, and f sees copies.
        seen.append(
            not torch.is_grad_enabled()
            and not any(t.requires_grad for t in (x, w, bias))
            and all(x is not t for t in (X, W, b))
            and all(torch.equal(t.detach(), v) for t, (v, _, _) in zip((X, W, b), before))
        )
        return curved(x, w, bias)

    numeric = numerical_gradient(f, X, W, b)
    assert seen and all(seen)
    for t, (value, version, grad) in zip((X, W, b), before):
        assert torch.equal(t.detach(), value)
        assert t._version == version
        assert t.grad is grad and t.requires_grad
    assert W.grad is before[1][2] and torch.equal(W.grad, torch.ones_like(W))
    assert not any(g.requires_grad for g in numeric)


def test_numerical_gradient_of_non_contiguous_inputs():
    base = torch.randn(D_IN, N, dtype=F64, generator=torch.Generator().manual_seed(1))
    X = base.T  # (N, D_IN), a transposed view
    _, W, b = curved_inputs()
    numeric = numerical_gradient(curved, X, W, b)
    assert rel_error(numeric[0], autograd_gradients(curved, X, W, b)[0]) < 1e-8
    assert numeric[0].shape == (N, D_IN)


@FAST
@given(
    n=st.integers(1, 4),
    d_in=st.integers(1, 4),
    d_out=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_numerical_gradient_property(n, d_in, d_out, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g, dtype=F64)
    W = torch.randn(d_in, d_out, generator=g, dtype=F64) / math.sqrt(d_in)
    b = torch.randn(d_out, generator=g, dtype=F64)
    numeric = numerical_gradient(curved, X, W, b)
    for got, want in zip(numeric, autograd_gradients(curved, X, W, b)):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def test_numerical_gradient_float32_warns_and_computes_in_float32():
    X, W, b = curved_inputs(dtype=torch.float32)
    dtypes = set()

    def f(x, w, bias):
        dtypes.update({x.dtype, w.dtype, bias.dtype})
        return curved(x, w, bias)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        numeric = numerical_gradient(f, X, W, b, eps=3e-3)
    assert [w.category for w in caught] == [RuntimeWarning]  # one warning per call
    assert "arguments {0: torch.float32, 1: torch.float32, 2: torch.float32}" in str(
        caught[0].message
    )
    assert dtypes == {torch.float32}
    assert all(g.dtype == torch.float32 for g in numeric)
    # float32 accuracy: far from float64's, but a usable 1e-4 at a well-chosen eps.
    for got, want in zip(numeric, autograd_gradients(curved, *curved_inputs())):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
        assert (got.double() - want).abs().max() > 1e-9


def test_numerical_gradient_without_numpy_view_bfloat16():
    # NumPy cannot view bfloat16: the flat-tensor fallback path (as for CUDA tensors).
    x = torch.tensor([0.5, 1.0, -2.0], dtype=torch.bfloat16)
    with pytest.warns(RuntimeWarning, match=r"arguments \{0: torch.bfloat16\} are not float64"):
        (grad,) = numerical_gradient(lambda t: (t * t).sum(), x, eps=0.25)
    assert grad.dtype == torch.bfloat16 and grad.shape == (3,)
    assert torch.equal(grad, 2 * x)  # exact here: every value is representable
    assert torch.equal(x, torch.tensor([0.5, 1.0, -2.0], dtype=torch.bfloat16))


def test_numerical_gradient_float64_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numerical_gradient(curved, *curved_inputs())


def test_numerical_gradient_rejects_non_scalar_output():
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"must return a scalar tensor, got shape \(2, 3\)"):
        numerical_gradient(lambda t: t * 2, x)
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        numerical_gradient(lambda t: t.sum().reshape(1).expand(2), x)
    (grad,) = numerical_gradient(lambda t: t.sum().reshape(1, 1), x)  # 1 element: fine
    torch.testing.assert_close(grad, torch.ones_like(x))
    with pytest.raises(TypeError, match="must return a scalar tensor, got float"):
        numerical_gradient(lambda t: 1.0, x)


def test_numerical_gradient_lets_errors_of_f_through():
    def f(t):
        raise RuntimeError("boom in f")

    with pytest.raises(RuntimeError, match="boom in f"):
        numerical_gradient(f, torch.zeros(2, dtype=F64))


def test_numerical_gradient_rejects_non_floating_tensors():
    x = torch.zeros(3, dtype=F64)
    with pytest.raises(TypeError, match="argument 1 has dtype torch.int64"):
        numerical_gradient(lambda a, i: a.sum(), x, torch.arange(3))
    with pytest.raises(TypeError, match="argument 0 has dtype torch.complex128"):
        numerical_gradient(lambda a: a.abs().sum(), torch.zeros(2, dtype=torch.complex128))
    with pytest.raises(TypeError, match="argument 1 must be a torch.Tensor, got list"):
        numerical_gradient(lambda a, c: a.sum(), x, [1.0])


@pytest.mark.parametrize("eps", [0.0, -1e-6, float("nan"), float("inf"), -float("inf")])
def test_numerical_gradient_rejects_non_positive_or_infinite_eps(eps):
    # eps = inf used to give NaN gradients (inf - inf), silently.
    with pytest.raises(ValueError, match="eps must be positive and finite"):
        numerical_gradient(lambda t: t.sum(), torch.zeros(2, dtype=F64), eps=eps)


@pytest.mark.parametrize(
    "dtype,eps",
    [(torch.float16, 6e-6), (torch.bfloat16, 6e-6), (torch.float32, 1e-8), (F64, 1e-300)],
)
def test_numerical_gradient_rejects_a_step_that_rounds_away(dtype, eps):
    # x + eps == x in the input's dtype: the difference would be exactly 0, a wrong gradient
    # (the true gradient of t.sum() is 1); these calls used to return zeros.
    x = torch.tensor([0.5, 1.0, -2.0]).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=rf"eps={eps:g} vanishes in argument 1 \({dtype}\)"):
            numerical_gradient(lambda a, t: a.sum() + t.sum(), torch.zeros(1, dtype=F64), x, eps=eps)


def test_numerical_gradient_step_check_is_per_entry():
    # 0 +- 1e-300 is representable, so a tiny step is fine at 0 (and exact for a linear f) ...
    (grad,) = numerical_gradient(lambda t: 3 * t.sum(), torch.zeros(2, dtype=F64), eps=1e-300)
    assert torch.equal(grad, torch.full((2,), 3.0, dtype=F64))
    # ... and a step that fits float16 gives about the right gradient there (1 + 0.01 and
    # 1 - 0.01 are not representable: the difference is off by a few percent, not 0).
    with pytest.warns(RuntimeWarning):
        (grad,) = numerical_gradient(lambda t: t.sum(), torch.ones(3, dtype=torch.float16), eps=1e-2)
    torch.testing.assert_close(grad, torch.ones(3, dtype=torch.float16), rtol=0.05, atol=0)


# ------------------------------------------------------------------------------------
# eps_sweep
# ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sin_sweep():
    x = torch.linspace(-1, 1, 9, dtype=F64)
    return eps_sweep(lambda t: torch.sin(t).sum(), x)


def test_eps_sweep_layout(sin_sweep):
    assert isinstance(sin_sweep, EpsSweep)
    assert sin_sweep.eps == pytest.approx([10.0**-k for k in range(1, 13)])
    assert list(sin_sweep.errors) == [torch.float64, torch.float32]
    assert all(len(v) == 12 for v in sin_sweep.errors.values())


def test_eps_sweep_shows_truncation_then_round_off(sin_sweep):
    eps = sin_sweep.eps
    e64, e32 = sin_sweep.errors[torch.float64], sin_sweep.errors[torch.float32]
    # Truncation: the error falls as eps^2 (x100 per decade) at large eps.
    assert e64[0] / e64[1] == pytest.approx(100, rel=0.05)
    assert e64[1] / e64[2] == pytest.approx(100, rel=0.05)
    # Optima: float64 near 1e-5..1e-6 with tiny error, float32 near 1e-2..1e-3.
    best64, best32 = min(range(12), key=e64.__getitem__), min(range(12), key=e32.__getitem__)
    assert eps[best64] in (pytest.approx(1e-5), pytest.approx(1e-6)) and e64[best64] < 1e-9
    assert eps[best32] in (pytest.approx(1e-2), pytest.approx(1e-3))
    assert 1e-7 < e32[best32] < 1e-3
    # Round-off: below the optimum the error grows again (as 1/eps).
    assert e64[-1] > 1e3 * e64[best64] and e64[-1] > e64[-3] > e64[-5]
    assert e32[6] > 0.1  # float32 with eps = 1e-7 is useless ...
    assert all(math.isnan(e) for e in e32[7:])  # ... and below, the step rounds away at x = 1


# ------------------------------------------------------------------------------------
# part4_affine_backward
# ------------------------------------------------------------------------------------


affine_apply = affine_function(part4_affine_backward)  # affine_apply of Part 4


def affine_inputs(*leading, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(*leading, D_IN, generator=g, dtype=F64)
    W = torch.randn(D_OUT, D_IN, generator=g, dtype=F64)
    b = torch.randn(D_OUT, generator=g, dtype=F64)
    return X, W, b


def test_part4_notebook_cell():
    torch.manual_seed(0)
    n, d_in, d_out = 100, 11, 7
    X = torch.rand(n, d_in, dtype=F64)
    W = torch.rand(d_out, d_in, requires_grad=True, dtype=F64)
    b = torch.rand(d_out, requires_grad=True, dtype=F64)
    torch.sum(affine_apply(X, W, b)).backward()
    W_grad1, b_grad1 = W.grad, b.grad
    W.grad = b.grad = None
    torch.sum(0.5 * X @ W.T + b).backward()
    assert torch.allclose(W_grad1, W.grad) and torch.allclose(b_grad1, b.grad)


def assert_gradcheck(check, fn, inputs, names=("X", "W", "b")) -> None:
    """check (gradcheck or gradgradcheck) passes; else one short line naming the gradient,
    not gradcheck's full Jacobians (hundreds of lines)."""
    try:
        check(fn, inputs, raise_exception=True)
        return
    except GradcheckError as e:
        first = str(e).strip().splitlines()[0].rstrip(",")
    m = re.search(r"input (\d+)", first)
    i = int(m.group(1)) if m else None
    name = f"d{names[i]}" if i is not None and i < len(names) else "a gradient"
    pytest.fail(f"{check.__name__}: {name} does not match finite differences ({first})",
                pytrace=False)  # fmt: skip


@pytest.mark.parametrize("leading", [(N,), (2, N), ()], ids=["2d", "batched", "1d"])
def test_part4_gradcheck_and_gradgradcheck_with_every_input(leading):
    inputs = tuple(t.requires_grad_() for t in affine_inputs(*leading))
    assert_gradcheck(gradcheck, affine_apply, inputs)
    assert_gradcheck(gradgradcheck, affine_apply, inputs)


def test_a_wrong_gradient_fails_in_one_short_line():
    def wrong_dx(ctx, grad_output):
        dX, dW, db = part4_affine_backward(ctx, grad_output)
        return 1.2 * dX, dW, db

    inputs = tuple(t.requires_grad_() for t in affine_inputs(N))
    with pytest.raises(pytest.fail.Exception) as err:
        assert_gradcheck(gradcheck, affine_function(wrong_dx), inputs)
    message = str(err.value)
    assert message == ("gradcheck: dX does not match finite differences (Jacobian mismatch for "
                       "output 0 with respect to input 0)"), message  # fmt: skip


@pytest.mark.parametrize("needs", list(itertools.product([False, True], repeat=3)))
def test_part4_exact_shapes_values_and_none(needs):
    X, W, b = affine_inputs(N)
    G = torch.randn(N, D_OUT, dtype=F64, generator=torch.Generator().manual_seed(3))
    G_before = G.clone()
    ctx = SimpleNamespace(saved_tensors=(X, W, b), needs_input_grad=needs)
    grads = part4_affine_backward(ctx, G)
    want = (0.5 * G @ W, 0.5 * G.T @ X, G.sum(0))
    assert len(grads) == 3
    for needed, got, expected, given_, name in zip(needs, grads, want, (X, W, b), "XWb"):
        if needed:
            assert got.shape == given_.shape, f"d{name}: shape"  # (4, 5), (3, 5), (3,)
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12,
                                       msg=lambda m, n=name: f"d{n}: {m}")  # fmt: skip
        else:
            assert got is None, f"d{name}: not needed, must be None"
    assert torch.equal(G, G_before) and G._version == 0


def test_part4_batched_leading_dims_sum_into_dW_and_db():
    X, W, b = affine_inputs(2, N)
    G = torch.randn(2, N, D_OUT, dtype=F64)
    ctx = SimpleNamespace(saved_tensors=(X, W, b), needs_input_grad=(True, True, True))
    dX, dW, db = part4_affine_backward(ctx, G)
    assert (dX.shape, dW.shape, db.shape) == ((2, N, D_IN), (D_OUT, D_IN), (D_OUT,))
    torch.testing.assert_close(dW, 0.5 * (G[0].T @ X[0] + G[1].T @ X[1]))
    torch.testing.assert_close(db, G.sum((0, 1)))


@FAST
@given(
    leading=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    d_in=st.integers(1, 6),
    d_out=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_part4_matches_autograd_property(leading, d_in, d_out, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(*leading, d_in, generator=g, dtype=F64, requires_grad=True)
    W = torch.randn(d_out, d_in, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(d_out, generator=g, dtype=F64, requires_grad=True)
    G = torch.randn(*leading, d_out, generator=g, dtype=F64)
    got = torch.autograd.grad(affine_apply(X, W, b), (X, W, b), G)
    want = torch.autograd.grad(0.5 * X @ W.T + b, (X, W, b), G)
    for a, e, name in zip(got, want, "XWb"):
        torch.testing.assert_close(a, e, msg=lambda m, n=name: f"d{n} against autograd: {m}")


# ------------------------------------------------------------------------------------
# embedding_lookup / Embedding
# ------------------------------------------------------------------------------------


def test_embedding_init_matches_nn_embedding():
    torch.manual_seed(7)
    ours = Embedding(10, 4)
    after_ours = torch.rand(3)
    torch.manual_seed(7)
    theirs = nn.Embedding(10, 4)
    after_theirs = torch.rand(3)
    assert torch.equal(ours.weight, theirs.weight)
    assert torch.equal(after_ours, after_theirs)  # same random numbers consumed


def test_embedding_holds_only_its_weight():
    emb = Embedding(10, 4)
    assert repr(emb) == repr(nn.Embedding(10, 4)) == "Embedding(10, 4)"
    assert [name for name, _ in emb.named_parameters()] == ["weight"]
    assert isinstance(emb.weight, nn.Parameter) and emb.weight.shape == (10, 4)
    assert list(emb.buffers()) == [] and list(emb.children()) == []


def test_embedding_forward_and_backward_match_nn_embedding_with_repeats():
    torch.manual_seed(0)
    ours, theirs = Embedding(6, 3).double(), nn.Embedding(6, 3).double()
    theirs.weight.data.copy_(ours.weight.data)
    indices = torch.tensor([[0, 2, 2, 5], [2, 0, 1, 2]])  # row 2 four times, 3 and 4 never
    out, ref = ours(indices), theirs(indices)
    assert out.shape == (2, 4, 3)
    assert torch.equal(out, ref)
    G = torch.randn(2, 4, 3, dtype=F64)
    out.backward(G)
    ref.backward(G)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.weight.grad[2], G[0, 1] + G[0, 2] + G[1, 0] + G[1, 3])
    assert torch.all(ours.weight.grad[3:5] == 0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_embedding_lookup_integer_dtypes(dtype):
    weight = torch.randn(7, 2, dtype=F64)
    indices = torch.tensor([[6, 0], [3, 3]], dtype=dtype)  # uint8 must not act as a mask
    torch.testing.assert_close(embedding_lookup(weight, indices), weight[indices.long()])


def test_embedding_lookup_scalar_and_empty_indices():
    weight = torch.randn(7, 2, dtype=F64)
    assert torch.equal(embedding_lookup(weight, torch.tensor(4)), weight[4])
    assert embedding_lookup(weight, torch.zeros(0, 3, dtype=torch.long)).shape == (0, 3, 2)


class _Storages(TorchDispatchMode):
    """Records the ops run and the storages (data pointer: bytes) of their outputs."""

    def __init__(self):
        super().__init__()
        self.storages: dict[int, int] = {}
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                s = t.untyped_storage()
                self.storages[s.data_ptr()] = s.nbytes()
        return out


def test_embedding_lookup_allocates_only_the_output():
    weight = torch.randn(42, 1000, requires_grad=True)
    indices = torch.randint(0, 42, (5, 6, 7, 8))
    with _Storages() as mode:
        out = embedding_lookup(weight, indices)
    assert out.shape == (5, 6, 7, 8, 1000)
    # Small helpers (index checks) are fine; e.g. a (5, 6, 7, 8, 42) one-hot is not.
    big = [n for n in mode.storages.values() if n > indices.nbytes]
    assert big == [out.untyped_storage().nbytes()]
    assert not [op for op in mode.ops if "embedding" in op]  # tensor ops, not F.embedding


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_embedding_lookup_rejects_non_integer_indices(dtype):
    with pytest.raises(TypeError, match=f"integer tensor, got dtype {dtype}"):
        embedding_lookup(torch.zeros(3, 2), torch.zeros(2, dtype=dtype))
    with pytest.raises(TypeError, match="integer tensor, got list"):
        embedding_lookup(torch.zeros(3, 2), [0, 1])


@pytest.mark.parametrize("bad", [42, 100, -1])
def test_embedding_lookup_rejects_out_of_range_indices(bad):
    emb = Embedding(42, 3)
    message = rf"index {bad} is out of range for an embedding with 42 rows \(valid: 0\.\.41\)"
    with pytest.raises(IndexError, match=message):
        emb(torch.tensor([[0, 41], [bad, 5]]))
    with pytest.raises(IndexError):  # the oracle agrees that these are invalid
        nn.Embedding(42, 3)(torch.tensor([bad]))


def test_embedding_lookup_rejects_a_table_that_is_not_2d():
    with pytest.raises(ValueError, match=r"weight must be 2-D \(V, D\), got shape \(3,\)"):
        embedding_lookup(torch.zeros(3), torch.tensor([0]))


@FAST
@given(
    V=st.integers(1, 8),
    D=st.integers(1, 5),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_embedding_lookup_matches_f_embedding_property(V, D, shape, seed):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(V, D, generator=g, dtype=F64, requires_grad=True)
    indices = torch.randint(0, V, shape, generator=g)
    G = torch.randn(*shape, D, generator=g, dtype=F64)
    out, ref = embedding_lookup(weight, indices), F.embedding(indices, weight)
    assert out.shape == (*shape, D) and torch.equal(out, ref)
    (got,) = torch.autograd.grad(out, weight, G)
    (want,) = torch.autograd.grad(ref, weight, G)
    torch.testing.assert_close(got, want)


# ------------------------------------------------------------------------------------
# receptive_field / empirical_receptive_field
# ------------------------------------------------------------------------------------


def test_receptive_field_of_the_notebook_cnn():
    cnn = notebook_cnn()
    expected = ReceptiveField(size=(112, 112), jump=(8, 8))
    assert receptive_field(cnn) == expected
    assert empirical_receptive_field(cnn, (3, 256, 256)) == expected


# (layers, hand-computed (size, jump), probe input (H, W))
CASES = {
    "conv3": ([nn.Conv2d(1, 1, 3)], ((3, 3), (1, 1)), (16, 16)),
    "asymmetric": ([nn.Conv2d(1, 1, (3, 5), stride=(1, 2))], ((3, 5), (1, 2)), (16, 24)),
    "dilated": ([nn.Conv2d(1, 1, 3, dilation=2)], ((5, 5), (1, 1)), (16, 16)),
    "pool_then_conv": ([nn.MaxPool2d(2), nn.Conv2d(1, 1, 3)], ((6, 6), (2, 2)), (24, 24)),
    "strided_convs": (
        [nn.Conv2d(1, 2, 3, stride=2), nn.Tanh(), nn.Conv2d(2, 1, 3, stride=2), nn.Conv2d(1, 1, 3)],
        ((15, 15), (4, 4)),
        (64, 64),
    ),
    "avg_overlapping": ([nn.AvgPool2d(3, stride=1), nn.AvgPool2d(2)], ((4, 4), (2, 2)), (20, 20)),
    "max_pool_stride_not_kernel": (
        [nn.MaxPool2d(3, stride=2), nn.Conv2d(1, 1, 3), nn.MaxPool2d(2, stride=3)],
        ((9, 9), (6, 6)),  # 1 + 2 -> 3 (j 2) -> 3 + 2*2 = 7 -> 7 + 1*2 = 9 (j 6)
        (48, 48),
    ),
    "max_pool_padding_ceil_mode": (
        [nn.Conv2d(1, 1, 3, stride=2), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)],
        ((7, 7), (4, 4)),  # r 3 (j 2) -> 3 + 2*2 = 7 (j 4); ceil_mode adds border windows
        (41, 41),
    ),
    "dilated_max_pool": ([nn.MaxPool2d(3, stride=2, dilation=2, padding=1)], ((5, 5), (2, 2)), (20, 20)),
    "mixed": (
        [
            nn.Conv2d(3, 8, (1, 3), stride=(2, 1), dilation=(1, 3), padding=(0, 3)),
            nn.BatchNorm2d(8),
            nn.LeakyReLU(),
            nn.Sequential(nn.AvgPool2d((2, 3), stride=(1, 2)), nn.Dropout(0.5)),
            nn.Conv2d(8, 4, 3, padding="same", groups=4, padding_mode="circular"),
            nn.GELU(),
        ],
        # rows: r 1 -> 1 (j 2) -> 3 (j 2) -> 7;  cols: 7 (j 1) -> 9 (j 2) -> 13
        ((7, 13), (2, 2)),
        (40, 48),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_receptive_field_analytic_hand_and_empirical_agree(case):
    layers, (size, jump), hw = CASES[case]
    model = nn.Sequential(*layers)
    expected = ReceptiveField(size, jump)
    assert receptive_field(model) == expected
    assert empirical_receptive_field(model, hw) == expected


# The table of CNNs Q2 in the notebooks: 4 layers of each kind, (RF, jump) on a 64x64 input.
Q2_TABLE = {
    "3x3 conv": (lambda i: [nn.Conv2d(1, 1, 3, padding=1)], (9, 1)),
    "7x7 conv": (lambda i: [nn.Conv2d(1, 1, 7, padding=3)], (25, 1)),
    "3x3 conv, stride 2": (lambda i: [nn.Conv2d(1, 1, 3, stride=2, padding=1)], (31, 16)),
    "3x3 conv + 2x2 max-pool": (
        lambda i: [nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2)],
        (46, 16),
    ),
    "3x3 conv, dilation 1,2,4,8": (
        lambda i: [nn.Conv2d(1, 1, 3, padding=2**i, dilation=2**i)],
        (31, 1),
    ),
}


@pytest.mark.parametrize("name", Q2_TABLE, ids=list(Q2_TABLE))
def test_receptive_field_table_of_the_notebooks(name):
    layer, (r, j) = Q2_TABLE[name]
    model = nn.Sequential(*[m for i in range(4) for m in layer(i)])
    expected = ReceptiveField((r, r), (j, j))
    assert receptive_field(model) == empirical_receptive_field(model, (64, 64)) == expected


def test_empirical_receptive_field_does_not_depend_on_weights_or_activity():
    # Zero weights and dead ReLUs: the real model's input gradient is zero everywhere,
    # but the probe resets the weights to 1 and drops the ReLUs, so it measures the
    # pixels that can influence the output for some weights and inputs.
    cnn = notebook_cnn()
    with torch.no_grad():
        for layer in cnn:
            if isinstance(layer, nn.Conv2d):
                layer.weight.zero_()
                layer.bias.fill_(-1.0)
    assert empirical_receptive_field(cnn, (3, 256, 256)) == ((112, 112), (8, 8))


class MaskedConv2d(nn.Conv2d):
    """PixelCNN-style convolution: only kernel rows 0..k//2 are used (mask in forward)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mask = torch.zeros_like(self.weight)
        mask[:, :, : self.kernel_size[0] // 2 + 1] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask, self.bias)


def test_empirical_receptive_field_runs_the_models_own_layers():
    # The geometry alone says 5x5; the masked layer's own forward sees only 3 rows.
    model = nn.Sequential(MaskedConv2d(2, 3, 5, padding=2), nn.ReLU())
    assert receptive_field(model) == ((5, 5), (1, 1))
    assert empirical_receptive_field(model, (2, 16, 16)) == ((3, 5), (1, 1))
    two = nn.Sequential(MaskedConv2d(1, 1, 5), MaskedConv2d(1, 1, 3))
    # kernel rows 0-2 of the 5x5, then 0-1 of the 3x3: 3 + 2 - 1 = 4 rows
    assert empirical_receptive_field(two, (20, 20)) == ((4, 7), (1, 1))
    assert receptive_field(two) == ((7, 7), (1, 1))


def test_empirical_receptive_field_max_pool_is_not_argmax_only():
    # With the real max pool the gradient reaches one pixel per window; the probe's
    # average pool reaches all of them, whatever the input values or weights.
    model = nn.Sequential(nn.MaxPool2d(4, stride=1), nn.MaxPool2d(4, stride=1))
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    (g,) = torch.autograd.grad(model(x)[0, 0, 5, 5], x)
    assert (g != 0).sum() == 1  # the real max pools: the argmax only
    assert empirical_receptive_field(model, (1, 16, 16)) == ((7, 7), (1, 1))


def test_empirical_receptive_field_dilated_max_pool_with_ceil_mode_is_not_implemented():
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, dilation=2, ceil_mode=True))
    with pytest.raises(NotImplementedError, match="dilation != 1 and ceil_mode=True"):
        empirical_receptive_field(model, (1, 20, 20))


def test_receptive_field_accepts_ints_or_tuples():
    a = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, dilation=2), nn.MaxPool2d(2))
    b = nn.Sequential(nn.Conv2d(1, 1, (3, 3), stride=(2, 2), dilation=(2, 2)), nn.MaxPool2d((2, 2)))
    assert receptive_field(a) == receptive_field(b) == ((7, 7), (4, 4))  # 1+2*2 -> 5+1*2


def test_empirical_receptive_field_leaves_the_model_alone():
    torch.manual_seed(0)
    cnn = notebook_cnn().eval()
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    versions = [p._version for p in cnn.parameters()]
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    empirical_receptive_field(cnn, (3, 256, 256))
    assert torch.equal(rng, torch.get_rng_state())  # no random numbers consumed
    assert torch.get_num_threads() == threads
    assert all(torch.equal(v, cnn.state_dict()[k]) for k, v in state.items())
    assert versions == [p._version for p in cnn.parameters()]
    assert all(p.grad is None for p in cnn.parameters())
    assert [type(m) for m in cnn] == [type(m) for m in notebook_cnn()]
    assert not cnn.training


@FAST
@given(
    layers=st.lists(
        st.tuples(
            st.sampled_from(["conv", "max", "avg", "relu"]),
            st.tuples(st.integers(1, 4), st.integers(1, 4)),  # kernel
            st.tuples(st.integers(1, 3), st.integers(1, 3)),  # stride
            st.tuples(st.integers(1, 2), st.integers(1, 2)),  # dilation
        ),
        min_size=1,
        max_size=3,
    )
)
def test_receptive_field_analytic_equals_empirical_property(layers):
    modules = []
    for kind, k, s, d in layers:
        if kind == "conv":
            modules.append(nn.Conv2d(2, 2, k, stride=s, dilation=d, padding=(k[0] // 2, 0)))
        elif kind == "max":
            modules.append(nn.MaxPool2d(k, stride=s, dilation=d))
        elif kind == "avg":
            modules.append(nn.AvgPool2d(k, stride=s))
        else:
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules)
    analytic = receptive_field(model)
    hw = tuple(4 * r + 4 * j for r, j in zip(*analytic))
    assert empirical_receptive_field(model, (2, *hw)) == analytic


def test_receptive_field_rejects_other_layers_naming_them():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    for fn in (receptive_field, lambda m: empirical_receptive_field(m, (1, 8, 8))):
        with pytest.raises(TypeError, match=r"layer 2 \(Flatten\) is not supported"):
            fn(model)
    nested = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    with pytest.raises(TypeError, match=r"layer 1\.1 \(Linear\) is not supported"):
        receptive_field(nested)
    with pytest.raises(TypeError, match=r"layer 0 \(Conv1d\) is not supported"):
        receptive_field(nn.Sequential(nn.Conv1d(1, 1, 3)))
    with pytest.raises(TypeError, match="model must be an nn.Sequential, got Conv2d"):
        receptive_field(nn.Conv2d(1, 1, 3))


def test_empirical_receptive_field_rejects_too_small_inputs():
    with pytest.raises(ValueError, match=r"too small: a receptive field reaches the border"):
        empirical_receptive_field(notebook_cnn(), (3, 64, 64))
    with pytest.raises(ValueError, match=r"too small: the output is only 1x1"):
        empirical_receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3)), (1, 3, 3))


@pytest.mark.parametrize(
    "shape, layer",
    [
        ((3, 5, 5), r"layer 5 \(MaxPool2d\)"),  # 5 -> 5 -> 2 -> 1: the second pool has no input
        ((1, 3, 1, 1), r"layer 2 \(MaxPool2d\)"),  # a 2x2 pool on a 1x1 map
        ((12, 12), r"layer 6 \(Conv2d\)"),  # ... 3 -> 1: padded 7 < 13 (dilated 7x7)
    ],
)
def test_empirical_receptive_field_too_small_for_a_layer_raises_its_own_error(shape, layer):
    # Used to fail inside torch (RuntimeError "Output size is too small" / "Kernel size
    # can't be greater than actual input size"); now names the layer and a size that works.
    with pytest.raises(ValueError, match=rf"too small: {layer} has no output.* use e.g. \(3, 148, 148\)"):
        empirical_receptive_field(notebook_cnn(), shape)
    assert empirical_receptive_field(notebook_cnn(), (3, 148, 148)) == ((112, 112), (8, 8))


def test_empirical_receptive_field_accepts_a_batched_shape():
    x = torch.zeros(1, 3, 256, 256)
    assert empirical_receptive_field(notebook_cnn(), x.shape) == ((112, 112), (8, 8))
    assert empirical_receptive_field(notebook_cnn(), (5, 3, 256, 256)) == ((112, 112), (8, 8))
    assert empirical_receptive_field(notebook_cnn(), (256, 256)) == ((112, 112), (8, 8))


@pytest.mark.parametrize("shape", [(256,), (1, 1, 3, 256, 256), (3, 0, 256), (3, -1, 9), (3, 9.0, 9), "abc"])
def test_empirical_receptive_field_rejects_malformed_shapes(shape):
    with pytest.raises(ValueError, match=r"input_shape must be \(H, W\), \(C, H, W\) or \(N, C, H, W\)"):
        empirical_receptive_field(notebook_cnn(), shape)


def test_empirical_receptive_field_rejects_the_wrong_number_of_channels():
    with pytest.raises(ValueError, match=r"has 1 channels, but layer 0 \(Conv2d\) takes 3"):
        empirical_receptive_field(notebook_cnn(), (1, 256, 256))
    with pytest.raises(ValueError, match=r"has 4 channels, but layer 1 \(Conv2d\) takes 3"):
        empirical_receptive_field(nn.Sequential(nn.ReLU(), nn.Conv2d(3, 1, 3)), (2, 4, 9, 9))


@FAST
@given(
    layers=st.lists(
        st.tuples(
            st.sampled_from(["conv", "max", "avg"]),
            st.integers(1, 5),  # kernel
            st.integers(1, 3),  # stride
            st.integers(1, 2),  # dilation (conv and max)
            st.integers(0, 2),  # padding (clipped to what torch allows)
            st.booleans(),  # ceil_mode (pools)
        ),
        min_size=1,
        max_size=4,
    ),
    n=st.integers(1, 40),
)
def test_empirical_receptive_field_any_size_either_works_or_raises_its_error(layers, n):
    # Never a torch error; the suggested size always works and gives the analytic field.
    modules = []
    for kind, k, s, d, p, ceil in layers:
        if kind == "conv":
            modules.append(nn.Conv2d(1, 1, k, stride=s, dilation=d, padding=p))
        elif kind == "max" and not (d > 1 and ceil):
            modules.append(nn.MaxPool2d(k, stride=s, dilation=d, padding=min(p, k // 2), ceil_mode=ceil))
        else:
            modules.append(nn.AvgPool2d(k, stride=s, padding=min(p, k // 2), ceil_mode=ceil))
    model = nn.Sequential(*modules)
    try:
        got = empirical_receptive_field(model, (n, n))
    except ValueError as e:
        suggested = tuple(int(v) for v in str(e).rsplit("use e.g. (", 1)[1].rstrip(")").split(", "))
        got = empirical_receptive_field(model, suggested)
    assert got == receptive_field(model)
