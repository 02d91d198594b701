"""Code answers for the HW4 summary questions.

Each function below answers one question; the notebooks import them from here.

==========================================  ===========================================
Question                                    Answer
==========================================  ===========================================
Part 3: Backpropagation, Q2-Q3              numerical_gradient, eps_sweep (+ rel_error)
Part 4: Backpropagation, Q2                 part4_affine_backward
Sequence models, Q2 (both parts)            embedding_lookup, Embedding
CNNs, Q3 (both parts)                       receptive_field, empirical_receptive_field
==========================================  ===========================================

Shapes follow the CS231n convention: ``X: (N, D_in)`` means a tensor with N rows
and D_in columns; ``(*)`` means "any number of leading dimensions". Each answer body
sits between the course's ``# ====== YOUR CODE: ======`` markers.
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from contextlib import contextmanager
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hw4.threads import single_thread

__all__ = [
    "rel_error",
    "numerical_gradient",
    "EpsSweep",
    "eps_sweep",
    "part4_affine_backward",
    "embedding_lookup",
    "Embedding",
    "ReceptiveField",
    "receptive_field",
    "empirical_receptive_field",
]


# --------------------------------------------------------------------------------------
# Part 3: Backpropagation, Q2-Q3 -- numerical gradients
# --------------------------------------------------------------------------------------


def rel_error(a: Tensor, b: Tensor) -> float:
    """Max elementwise relative error, floored as in CS231n.

    a, b: tensors of the same shape (any dtype; compared in float64).
    Returns max |a - b| / max(1e-8, |a| + |b|), a Python float (0.0 if empty).
    """
    # ====== YOUR CODE: ======
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.detach().double(), b.detach().double()
    if a.numel() == 0:
        return 0.0
    return ((a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-8)).max().item()
    # ========================


# Why eps = 6e-6: the truncation error of central differences is eps^2/6 * |f'''|, the
# round-off error ~ u * |f| / eps (u ~ 1.1e-16 in float64). Their sum is smallest at
# eps = (3 u |f| / |f'''|)^(1/3) ~ (3u)^(1/3) ~ 7e-6 when f and f''' have similar scales
# (rounded down to 6e-6). Losses that are means of many terms have |f'| << |f|, where
# gradcheck's 1e-6 loses more to round-off (tanh(X @ W + b).pow(3).mean(), 10^4
# parameters: relative error 2e-9 at eps = 1e-6, 7e-10 at 6e-6).
# Precision: f runs in the inputs' dtype (no silent upcast); anything but float64 warns,
# because round-off then dominates (float32: ~1e-4 at best, at eps ~ 1e-2..1e-3).


def numerical_gradient(
    f: Callable[..., Tensor], *tensors: Tensor, eps: float = 6e-6
) -> tuple[Tensor, ...]:
    """Gradient of a scalar function f(*tensors) by central differences.

    tensors[k]: floating point, (*S_k). Returns (dT_0, ...), dT_k: (*S_k), in the dtype and
    on the device of tensors[k]. Exactly 2P evaluations of f for P entries. f sees detached
    copies under no_grad: the caller's tensors (values, .grad, versions) are never touched.
    """
    # ====== YOUR CODE: ======
    xs = _copies(tensors, eps)  # checked: floating point, and x +- eps != x for every entry
    grads = []
    with torch.no_grad(), _explain_non_scalar(f, xs):
        for x in xs:
            flat, g = _flat_scalars(x), []  # flat: a view of x; entries read as Python floats
            for j, old in enumerate(flat.tolist()):
                flat[j] = old + eps
                f_plus = f(*xs).item()
                flat[j] = old - eps
                f_minus = f(*xs).item()
                flat[j] = old  # restore before the next entry
                g.append((f_plus - f_minus) / (2 * eps))
            grads.append(g)
    for x, g in zip(xs, grads):  # done with the copies: each one becomes its gradient
        _store(x, g)
    return tuple(xs)
    # ========================


def _copies(tensors: tuple, eps: float) -> list[Tensor]:
    """Detached contiguous copies of tensors, after checking them and the step eps."""
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive and finite, got {eps!r}")
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"argument {k} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(
                f"argument {k} has dtype {t.dtype}; numerical_gradient needs floating-point tensors"
            )
        if _step_vanishes(t, eps):
            raise ValueError(
                f"eps={eps:g} vanishes in argument {k} ({t.dtype}): x + eps or x - eps rounds "
                "back to x for some entry, so its difference would be 0; use a larger eps "
                "or float64"
            )
    low = {k: t.dtype for k, t in enumerate(tensors) if t.dtype != torch.float64}
    if low:
        warnings.warn(
            f"arguments {low} are not float64: central differences are dominated by "
            "round-off below float64; use float64 tensors for gradient checks",
            RuntimeWarning,
            stacklevel=3,
        )
    return [t.detach().clone(memory_format=torch.contiguous_format) for t in tensors]


def _step_vanishes(t: Tensor, eps: float) -> bool:
    """True if x + eps or x - eps, rounded to t's dtype, equals x for some entry x of t
    (the perturbation is computed in float64, as numerical_gradient does, then stored)."""
    x = t.detach()
    if x.dtype == torch.float64 and x.numel() and eps >= math.ulp(x.abs().max().item()):
        return False  # a step of at least one ulp of the largest entry moves every entry
    x64 = x.double()
    return bool(((x64 + eps).to(x.dtype) == x).any() or ((x64 - eps).to(x.dtype) == x).any())


@contextmanager
def _explain_non_scalar(f: Callable[..., Tensor], xs: list[Tensor]):
    """If f's output has no .item() (not a one-element tensor), say what f returned."""
    try:
        yield
    except (AttributeError, RuntimeError):
        out = f(*xs)  # f's own errors are re-raised unchanged below
        if not isinstance(out, Tensor):
            raise TypeError(f"f must return a scalar tensor, got {type(out).__name__}") from None
        if out.numel() != 1:
            raise ValueError(
                f"f must return a scalar tensor, got shape {tuple(out.shape)}; "
                "reduce it, e.g. with .sum()"
            ) from None
        raise


def _store(x: Tensor, values: list[float]) -> None:
    """Write values (x.numel() Python floats, in flat order) into contiguous x, in place."""
    flat = _flat_scalars(x)
    if isinstance(flat, Tensor):
        flat.copy_(torch.tensor(values, dtype=torch.float64))
    else:
        flat[:] = values


def _flat_scalars(x: Tensor):
    """A flat view of contiguous x whose entries read and write as Python floats.

    On CPU this is a NumPy view, so a perturbation allocates no tensor; tensors NumPy
    cannot view (CUDA, bfloat16) fall back to a flat tensor view.
    """
    try:
        return x.numpy().reshape(-1)
    except (TypeError, RuntimeError):
        return x.view(-1)


class EpsSweep(NamedTuple):
    """eps: (E,) step sizes; errors[dtype]: (E,) max rel_error vs autograd, per eps."""

    eps: tuple[float, ...]
    errors: dict[torch.dtype, tuple[float, ...]]


def eps_sweep(
    f: Callable[..., Tensor],
    *tensors: Tensor,
    eps_values: tuple[float, ...] = tuple(10.0**-k for k in range(1, 13)),
    dtypes: tuple[torch.dtype, ...] = (torch.float64, torch.float32),
) -> EpsSweep:
    """Error of numerical_gradient vs autograd as a function of eps, per dtype.

    f: as in numerical_gradient, and must accept inputs of every dtype in dtypes.
    tensors: floating-point tensors (*S_k); cast (as copies) to each dtype.
    eps_values: (E,) steps, by default 1e-1, 1e-2, ..., 1e-12.
    Returns EpsSweep(eps, errors) where errors[dtype][e] is the max over all inputs of
    rel_error(numerical gradient in dtype with eps_values[e], float64 autograd), or nan
    where that step vanishes in dtype (x +- eps rounds to x for some entry).

    On a log-log plot, e.g. plt.loglog(s.eps, s.errors[torch.float32]), the error first
    falls as eps^2 (truncation), then rises as 1/eps (round-off): for unit-scale f the
    float32 optimum is near eps ~ 1e-2..1e-3, the float64 one near 1e-5..1e-6.
    """
    # ====== YOUR CODE: ======
    leaves = [t.detach().double().requires_grad_() for t in tensors]
    exact = torch.autograd.grad(f(*leaves), leaves)
    errors = {}
    for dtype in dtypes:
        inputs = [t.detach().to(dtype) for t in tensors]
        row = []
        for eps in eps_values:
            if any(_step_vanishes(t, eps) for t in inputs):
                row.append(math.nan)  # numerical_gradient would refuse this step
                continue
            with warnings.catch_warnings():  # low precision is the point here
                warnings.simplefilter("ignore", RuntimeWarning)
                approx = numerical_gradient(f, *inputs, eps=eps)
            row.append(max(rel_error(a, e) for a, e in zip(approx, exact)))
        errors[dtype] = tuple(row)
    return EpsSweep(tuple(eps_values), errors)
    # ========================


# --------------------------------------------------------------------------------------
# Part 4: Backpropagation, Q2 -- backward of a custom affine Function
# --------------------------------------------------------------------------------------


def part4_affine_backward(
    ctx, grad_output: Tensor
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Backward of Y = 0.5 * X @ W.T + b (a torch.autograd.Function).

    ctx.saved_tensors: (X, W, b) with X: (*, D_in), W: (D_out, D_in), b: (D_out,).
    grad_output: G = dL/dY, (*, D_out).
    Returns dX (*, D_in), dW (D_out, D_in), db (D_out,); None for every input whose
    ctx.needs_input_grad entry is False. Leading dimensions of X (if any, e.g. a
    batch of sequences) are summed over in dW and db.

    Only differentiable out-of-place ops are used, so double backward works and
    grad_output is never modified.
    """
    # ====== YOUR CODE: ======
    X, W, b = ctx.saved_tensors
    G = grad_output
    dX = dW = db = None
    if ctx.needs_input_grad[0]:
        dX = 0.5 * G @ W  # (*, D_out) @ (D_out, D_in)
    if ctx.needs_input_grad[1]:
        # Flatten leading dims: (D_out, M) @ (M, D_in), M = number of rows.
        dW = 0.5 * G.reshape(-1, W.shape[0]).T @ X.reshape(-1, W.shape[1])
    if ctx.needs_input_grad[2]:
        db = G.reshape(-1, b.shape[0]).sum(0)  # b is broadcast over every row
    return dX, dW, db
    # ========================


# --------------------------------------------------------------------------------------
# Sequence models, Q2 -- embedding lookup
# --------------------------------------------------------------------------------------


def embedding_lookup(weight: Tensor, indices: Tensor) -> Tensor:
    """Rows of an embedding table.

    weight: (V, D) table of V embeddings of dimension D.
    indices: (*) integer tensor with values in 0..V-1.
    Returns out (*, D), out[..., :] = weight[indices[...], :].

    A plain gather, weight[indices]: it allocates only the output (no one-hot
    (*, V) matrix, no copies of it), and its backward scatters dL/dout back to the
    selected rows, summing over repeated indices, exactly like nn.Embedding.
    """
    # ====== YOUR CODE: ======
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (V, D), got shape {tuple(weight.shape)}")
    if not isinstance(indices, Tensor):
        raise TypeError(f"indices must be an integer tensor, got {type(indices).__name__}")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TypeError(f"indices must be an integer tensor, got dtype {indices.dtype}")
    V = weight.shape[0]
    bad = (indices < 0) | (indices >= V)
    if bad.any():
        value = indices[bad][0].item()
        raise IndexError(
            f"index {value} is out of range for an embedding with {V} rows (valid: 0..{V - 1})"
        )
    return weight[indices.long()]  # long(): uint8 would otherwise mean a boolean mask
    # ========================


class Embedding(nn.Module):
    """A trainable lookup table, like nn.Embedding without the extras.

    weight: nn.Parameter (num_embeddings, embedding_dim), initialised N(0, 1) exactly
    as nn.Embedding does (same seed -> same weights).
    forward: indices (*) -> (*, embedding_dim).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        # ====== YOUR CODE: ======
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim))
        nn.init.normal_(self.weight)
        # ========================

    def forward(self, indices: Tensor) -> Tensor:
        # ====== YOUR CODE: ======
        return embedding_lookup(self.weight, indices)
        # ========================

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"


# --------------------------------------------------------------------------------------
# CNNs, Q3 -- receptive field
# --------------------------------------------------------------------------------------


class ReceptiveField(NamedTuple):
    """size: (h, w) input pixels seen by one output pixel (bounding box).
    jump: (h, w) input pixels between adjacent output pixels (product of strides)."""

    size: tuple[int, int]
    jump: tuple[int, int]


# Layers that act on each pixel separately: they do not change the receptive field.
POINTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d,
)  # fmt: skip


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _layers(model: nn.Module, prefix: str = ""):
    """Yield (name, layer, kernel, stride, dilation, padding) per leaf of a Sequential.

    Pointwise layers are yielded as 1x1 windows with stride 1.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    for name, layer in model.named_children():
        name = prefix + name
        if isinstance(layer, nn.Sequential):
            yield from _layers(layer, name + ".")
        elif isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            dilation = 1 if isinstance(layer, nn.AvgPool2d) else layer.dilation
            padding = layer.padding if isinstance(layer.padding, str) else _pair(layer.padding)
            kernel, stride = _pair(layer.kernel_size), _pair(layer.stride)
            yield name, layer, kernel, stride, _pair(dilation), padding
        elif isinstance(layer, POINTWISE):
            yield name, layer, (1, 1), (1, 1), (1, 1), (0, 0)
        else:
            raise TypeError(
                f"layer {name} ({type(layer).__name__}) is not supported: expected "
                "Conv2d, MaxPool2d, AvgPool2d or a pointwise layer "
                f"({', '.join(c.__name__ for c in POINTWISE)})"
            )


def receptive_field(model: nn.Sequential) -> ReceptiveField:
    """Analytic receptive field of one output pixel of a CNN.

    model: nn.Sequential (possibly nested) of Conv2d, MaxPool2d, AvgPool2d and
    pointwise layers (POINTWISE); kernel/stride/dilation may be ints or (h, w).
    Returns ReceptiveField(size=(h, w), jump=(h, w)).

    Per axis, with effective kernel k_eff = d * (k - 1) + 1:
        r_l = r_{l-1} + (k_eff - 1) * j_{l-1},   j_l = j_{l-1} * s,   r_0 = j_0 = 1.
    Padding shifts the field but does not change its size.
    """
    # ====== YOUR CODE: ======
    size, jump = [1, 1], [1, 1]
    for _, _, kernel, stride, dilation, _ in _layers(model):
        for a in range(2):
            size[a] += dilation[a] * (kernel[a] - 1) * jump[a]
            jump[a] *= stride[a]
    return ReceptiveField(tuple(size), tuple(jump))
    # ========================


class _DilatedWindowSum(nn.Module):
    """Probe stand-in for a dilated MaxPool2d: sums each channel over the same
    (dilated) window with all-ones weights. Maps (B, C, H, W) -> (B, C, H', W')."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        if pool.ceil_mode:
            raise NotImplementedError("MaxPool2d with dilation != 1 and ceil_mode=True")
        self.kernel, self.stride = _pair(pool.kernel_size), _pair(pool.stride)
        self.padding, self.dilation = _pair(pool.padding), _pair(pool.dilation)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        ones = x.new_ones(c, 1, *self.kernel)  # depthwise: channel c -> channel c
        return F.conv2d(x, ones, None, self.stride, self.padding, self.dilation, groups=c)


def _probe(model: nn.Sequential) -> nn.Sequential:
    """Replace, in place, the layers of a (copied) model by their probe versions."""
    for name, layer in model.named_children():
        if isinstance(layer, nn.Sequential):
            _probe(layer)
        elif isinstance(layer, nn.Conv2d):
            layer.weight.requires_grad_(False).fill_(1.0)
            if layer.bias is not None:
                layer.bias.requires_grad_(False).zero_()
        elif isinstance(layer, nn.MaxPool2d):
            if _pair(layer.dilation) == (1, 1):
                avg = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode)
                setattr(model, name, avg)
            else:  # AvgPool2d has no dilation
                setattr(model, name, _DilatedWindowSum(layer))
        elif isinstance(layer, POINTWISE):
            setattr(model, name, nn.Identity())
    return model


def _check_input_shape(layers: list, input_shape) -> tuple[int, int, int]:
    """input_shape as (C, H, W): accepts (H, W), (C, H, W) or (N, C, H, W) (N is ignored).

    layers: the list(_layers(model)). Raises ValueError, naming what is wrong, for
    anything else, for sizes < 1, and for a C that the first Conv2d does not take.
    """
    try:
        shape = tuple(operator.index(v) for v in input_shape)
    except TypeError:
        shape = ()
    if len(shape) not in (2, 3, 4) or min(shape) < 1:
        raise ValueError(
            "input_shape must be (H, W), (C, H, W) or (N, C, H, W) with positive integer "
            f"sizes, got {input_shape!r}"
        )
    convs = [(name, layer) for name, layer, *_ in layers if isinstance(layer, nn.Conv2d)]
    c_in = convs[0][1].in_channels if convs else None
    chw = shape[-3:] if len(shape) > 2 else (c_in or 1, *shape)
    if c_in is not None and chw[0] != c_in:
        raise ValueError(
            f"input_shape {shape} has {chw[0]} channels, but layer {convs[0][0]} "
            f"({type(convs[0][1]).__name__}) takes {c_in}"
        )
    return chw


def _output_size(layer: nn.Module, kernel, stride, dilation, padding, hw) -> tuple[int, int]:
    """Spatial output size of one layer of _layers for an input of spatial size hw (h, w).

    The formula of the Conv2d / MaxPool2d / AvgPool2d docs (ceil_mode included);
    0 where the padded input is smaller than the (dilated) window.
    """
    if padding == "same":
        return tuple(hw)
    padding = (0, 0) if padding == "valid" else padding
    ceil = getattr(layer, "ceil_mode", False)
    out = []
    for n, k, s, d, p in zip(hw, kernel, stride, dilation, padding):
        span = n + 2 * p - d * (k - 1) - 1
        if span < 0:
            out.append(0)
            continue
        o = (-(-span // s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= n + p:  # the last window must start inside the input
            o -= 1
        out.append(o)
    return tuple(out)


def _too_small(model: nn.Sequential, chw: tuple, why: str) -> ValueError:
    """The ValueError for an input that is too small, with a size that is large enough."""
    size, jump = receptive_field(model)
    need = tuple(r + 4 * j + 4 for r, j in zip(size, jump))
    return ValueError(
        f"input_shape {tuple(chw)} is too small: {why}. The measurement needs the "
        f"{size[0]}x{size[1]} receptive fields of two neighbouring output pixels inside the "
        f"input, off its border; use e.g. {(chw[0], *need)}"
    )


@single_thread()  # small convolutions and reductions: threads cost more than they save
def _nonzero_box(seen: Tensor) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the True (nonzero) entries of seen: (H, W); None if
    there is none."""
    rows, cols = seen.ne(0).any(1).nonzero()[:, 0], seen.ne(0).any(0).nonzero()[:, 0]
    if len(rows) == 0:
        return None
    top, left = int(rows[0]), int(cols[0])
    return top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1


def _probe_gradients(model: nn.Sequential, input_shape) -> tuple[Tensor, tuple[int, int, int]]:
    """Input gradients of two neighbouring output pixels of the probe copy of model.

    model, input_shape: as in empirical_receptive_field.
    Returns (g, (C, H, W)): g (2, H, W) float64, g[0] = d out[:, i, j].sum() / dx and g[1] =
    d out[:, i + 1, j + 1].sum() / dx, each summed over the input channels, for the
    central output pixel (i, j) = ((H_out - 1) // 2, (W_out - 1) // 2). All terms are
    positive: g[0] counts the paths from each input pixel to (i, j) (a path through
    an average pool weighted by 1 / window size).
    """
    layers = list(_layers(model))  # validates the layer types
    chw = _check_input_shape(layers, input_shape)
    hw = chw[1:]
    for name, layer, kernel, stride, dilation, padding in layers:
        hw = _output_size(layer, kernel, stride, dilation, padding, hw)
        if min(hw) < 1:
            raise _too_small(model, chw, f"layer {name} ({type(layer).__name__}) has no output")
    if min(hw) < 2:
        raise _too_small(model, chw, f"the output is only {hw[0]}x{hw[1]}")
    probe = _probe(copy.deepcopy(model)).double()
    x = torch.zeros(2, *chw, dtype=torch.float64, requires_grad=True)
    out = probe(x)
    i, j = (out.shape[-2] - 1) // 2, (out.shape[-1] - 1) // 2
    (g,) = torch.autograd.grad(out[0, :, i, j].sum() + out[1, :, i + 1, j + 1].sum(), x)
    return g.sum(1), chw


def empirical_receptive_field(model: nn.Sequential, input_shape: tuple) -> ReceptiveField:
    """Receptive field measured with autograd on a probe copy of the model's own layers.

    model: as in receptive_field; it is not modified (the probe is a deep copy).
    input_shape: (N, C, H, W) (e.g. x.shape; N is ignored), (C, H, W), or (H, W) with
    C = in_channels of the first Conv2d (1 if there is none). It must be large enough
    that the fields of the central output pixel and its diagonal neighbour lie inside
    the input, off its border: else ValueError, which names a size that is, e.g.
    (3, 256, 256) for the notebook's CNN.
    Returns ReceptiveField(size=(h, w), jump=(h, w)).

    The probe is a float64 deep copy of model (all its terms are positive sums, so
    nothing rounds to zero) in which
    - every Conv2d keeps its module (kernel, stride, dilation, padding and padding
      mode, groups, any overridden forward) but gets weights 1 and bias 0, so no
      weight is zero and no two paths cancel;
    - every pointwise layer (ReLU, BatchNorm2d, Dropout, ...) becomes nn.Identity,
      so no inactive ReLU hides a pixel;
    - every MaxPool2d becomes an AvgPool2d with the same kernel_size, stride, padding
      and ceil_mode, so the gradient reaches the whole window and not only its argmax
      (with dilation != 1, a depthwise all-ones convolution with that dilation);
    - AvgPool2d is kept.
    The probe maps a zero input (2, C, H, W) to (2, C_out, H_out, W_out); one backward
    pass gives the input gradient of output pixel (i, j) (the central one) in sample
    0 and of (i + 1, j + 1) in sample 1, each summed over the output channels.
    The size is the bounding box of the input pixels with a nonzero gradient in sample
    0 (with dilation it can contain pixels that do not matter); the jump is how far the
    box moves in sample 1. These are the pixels that can influence the unit for some
    weights and inputs, which is what receptive_field computes from the geometry.
    """
    # ====== YOUR CODE: ======
    g, chw = _probe_gradients(model, input_shape)

    def box(seen: Tensor) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the True pixels of seen: (H_in, W_in), away from
        its border."""
        b = _nonzero_box(seen)
        H_in, W_in = seen.shape
        if b is None or 0 in b[:2] or b[0] + b[2] == H_in or b[1] + b[3] == W_in:
            raise _too_small(model, chw, "a receptive field reaches the border")
        return b

    top, left, h, w = box(g[0] != 0)
    top1, left1, _, _ = box(g[1] != 0)
    return ReceptiveField((h, w), (top1 - top, left1 - left))
    # ========================
