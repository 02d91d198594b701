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
import warnings
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


def numerical_gradient(
    f: Callable[..., Tensor], *tensors: Tensor, eps: float = 6e-6
) -> tuple[Tensor, ...]:
    """Gradient of a scalar function by central differences.

    f: called as f(*tensors); must return a scalar tensor (one element, as for
    .backward()).
    tensors: floating-point tensors of any shapes; tensors[k]: (*S_k).
    eps: the step; each entry x is perturbed to x + eps and x - eps.
    Returns (dT_0, ..., dT_{K-1}), dT_k: (*S_k), same dtype and device as tensors[k].

    df/dx ~ (f(x + eps) - f(x - eps)) / (2 eps), one entry at a time: exactly 2P
    evaluations of f for P entries in total, the floor for a black box (f's output
    is only inspected, for a clear error message, if it turns out not to be a scalar).

    Why eps = 6e-6: the truncation error of central differences is eps^2/6 * |f'''|
    and the round-off error is ~ u * |f| / eps (u ~ 1.1e-16 in float64). Their sum
    is smallest at eps = (3 u |f| / |f'''|)^(1/3), i.e. eps ~ (3u)^(1/3) ~ 7e-6 when f
    and f''' have similar scales (we round down to 6e-6), with an error ~ 5e-11. Losses that are
    means over many terms have |f'| << |f|, where gradcheck's smaller 1e-6 loses
    more to round-off (measured on tanh(X @ W + b).pow(3).mean() with 10^4
    parameters: relative error 2e-9 at eps = 1e-6, 7e-10 at 6e-6).

    Precision policy: f is evaluated in the dtype of the inputs (no silent upcast, so
    f may close over tensors of that dtype). Anything but float64 triggers a
    RuntimeWarning, because round-off then dominates: in float32 (u ~ 6e-8) the best
    eps is ~1e-2..1e-3 and even then the relative error is only ~1e-4..1e-5 (see
    eps_sweep). Pass float64 tensors for gradient checking. Differences are taken in
    Python floats (float64) and the gradients returned in each input's dtype.

    The caller's tensors are never touched: f sees detached copies (as gradcheck
    does) and runs under torch.no_grad(), so the inputs' values, .grad, requires_grad
    and version counters are unchanged. The copies are returned as the gradients.
    """
    # ====== YOUR CODE: ======
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"argument {k} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(
                f"argument {k} has dtype {t.dtype}; numerical_gradient needs floating-point tensors"
            )
    low = {k: t.dtype for k, t in enumerate(tensors) if t.dtype != torch.float64}
    if low:
        warnings.warn(
            f"arguments {low} are not float64: central differences are dominated by "
            "round-off below float64; use float64 tensors for gradient checks",
            RuntimeWarning,
            stacklevel=2,
        )
    xs = [t.detach().clone(memory_format=torch.contiguous_format) for t in tensors]
    flats = [_flat_scalars(x) for x in xs]
    grads = []
    with torch.no_grad():
        try:
            for flat in flats:
                g = []
                for i, old in enumerate(flat.tolist()):
                    flat[i] = old + eps
                    f_plus = f(*xs).item()
                    flat[i] = old - eps
                    f_minus = f(*xs).item()
                    flat[i] = old
                    g.append((f_plus - f_minus) / (2 * eps))
                grads.append(g)
        except (AttributeError, RuntimeError):  # f's output has no .item()? ...
            _check_scalar(f(*xs))  # ... then say what f returned; else it was f's own error
            raise
        for flat, g in zip(flats, grads):  # done with the copies: they become the gradients
            flat[:] = torch.tensor(g, dtype=torch.float64) if isinstance(flat, Tensor) else g
    return tuple(xs)
    # ========================


def _check_scalar(out: object) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(f"f must return a scalar tensor, got {type(out).__name__}")
    if out.numel() != 1:
        raise ValueError(
            f"f must return a scalar tensor, got shape {tuple(out.shape)}; "
            "reduce it, e.g. with .sum()"
        )


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
    rel_error(numerical gradient in dtype with eps_values[e], float64 autograd).

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


def empirical_receptive_field(model: nn.Sequential, input_shape: tuple) -> ReceptiveField:
    """Receptive field measured with autograd on a probe copy of the model's own layers.

    model: as in receptive_field; it is not modified (the probe is a deep copy).
    input_shape: (C, H, W), or (H, W) with C = in_channels of the first Conv2d (1 if
    there is none); large enough that the field of the central output pixel stays off
    the border (else ValueError), e.g. (3, 256, 256) for the notebook's CNN.
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
    layers = list(_layers(model))  # validates the layer types
    if len(input_shape) == 2:
        convs = [layer for _, layer, *_ in layers if isinstance(layer, nn.Conv2d)]
        input_shape = (convs[0].in_channels if convs else 1, *input_shape)
    probe = _probe(copy.deepcopy(model)).double()
    x = torch.zeros(2, *input_shape, dtype=torch.float64, requires_grad=True)
    with single_thread():  # small convolutions: threads cost more than they save
        out = probe(x)
        H, W = out.shape[-2:]
        if H < 2 or W < 2:
            raise ValueError(
                f"input_shape {tuple(input_shape)} is too small: the output is only {H}x{W}"
            )
        i, j = (H - 1) // 2, (W - 1) // 2
        (g,) = torch.autograd.grad(out[0, :, i, j].sum() + out[1, :, i + 1, j + 1].sum(), x)

    def box(seen: Tensor) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the True pixels of seen: (H_in, W_in)."""
        rows, cols = seen.any(1).nonzero()[:, 0].tolist(), seen.any(0).nonzero()[:, 0].tolist()
        H_in, W_in = seen.shape
        if not rows or 0 in (rows[0], cols[0]) or rows[-1] == H_in - 1 or cols[-1] == W_in - 1:
            raise ValueError(
                f"input_shape {tuple(input_shape)} is too small: the receptive field of "
                "the central output pixel reaches the border; use a larger input"
            )
        return rows[0], rows[-1], cols[0], cols[-1]

    top, bottom, left, right = box((g[0] != 0).any(0))  # any input channel
    top1, _, left1, _ = box((g[1] != 0).any(0))
    return ReceptiveField((bottom - top + 1, right - left + 1), (top1 - top, left1 - left))
    # ========================
