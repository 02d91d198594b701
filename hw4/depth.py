"""Gradient flow through deep MLPs (Summary questions: Losses and Activation functions).

Used by both notebooks to measure how the loss gradient shrinks on its way back
through the "pirate" network and its variants. Shapes: B = batch size,
D_in / D_out = input / output features, A = number of activation applications.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hw4.threads import single_thread

__all__ = [
    "ACTIVATIONS",
    "hidden_grad_norms",
    "with_activation",
    "relu_mlp",
    "grad_norms_svg",
    "plot_grad_norms",
]

ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU)


def _float64(module: nn.Module, cache: dict) -> Callable[[Tensor], Tensor]:
    """A float64 stand-in for module whose parameters do not require grad.

    Cached per module object, so a module applied several times keeps one set of
    weights. Linear: F.linear with detached float64 copies of its parameters (a
    deep copy of a module costs far more than its matrix products); modules without
    parameters or buffers (activations): the module itself; anything else: a float64
    deep copy.
    """
    if id(module) not in cache:
        if isinstance(module, nn.Linear):
            bias = None if module.bias is None else module.bias.detach().double()
            cache[id(module)] = partial(F.linear, weight=module.weight.detach().double(), bias=bias)
        elif (
            next(iter(module.parameters()), None) is None
            and next(iter(module.buffers()), None) is None
        ):
            cache[id(module)] = module
        else:
            cache[id(module)] = copy.deepcopy(module).double().requires_grad_(False)
    return cache[id(module)]


def hidden_grad_norms(model: nn.Sequential, x: Tensor, y: Tensor) -> Tensor:
    """Norm of dL/dh at every application of an activation layer, L = MSE(model(x), y).

    model: nn.Sequential of modules applied in order; a module object may appear
        several times (``[layer] * n``), and each application counts separately
        (the output tensor of each application keeps its own .grad via retain_grad).
    x: (B, D_in); y: (B, D_out).
    Returns (A,) float64: ||dL/dh_a||_F over the batch for a = 0..A-1, where h_a
    is the output of the a-th application of an ACTIVATIONS layer (input side first).

    Runs in float64 on detached copies of the parameters, so the model (weights,
    dtype, .grad) is untouched and tiny gradients survive: in float32 the squares
    inside the norm of a ~1e-22 gradient already underflow to 0 (smallest float32
    ~ 1.4e-45). Since no parameter requires grad, backward computes only the
    gradients with respect to the activations (half the work).
    """
    cache: dict = {}
    with single_thread():
        h, outs = x.double().requires_grad_(True), []
        for module in model:
            h = _float64(module, cache)(h)
            if isinstance(module, ACTIVATIONS):
                h.retain_grad()
                outs.append(h)
        nn.functional.mse_loss(h, y.double()).backward()
    return torch.stack([a.grad.norm() for a in outs])


def with_activation(model: nn.Sequential, activation: type[nn.Module]) -> nn.Sequential:
    """A deep copy of model with every ACTIVATIONS layer replaced by activation().

    Parameters are copied (same values; shared modules stay shared); model is
    not modified.
    """
    net = copy.deepcopy(model)
    for i, module in enumerate(net):
        if isinstance(module, ACTIVATIONS):
            net[i] = activation()
    return net


def relu_mlp(d_in: int, hidden: int, n_hidden: int, d_out: int) -> nn.Sequential:
    """The pirate architecture done right: distinct layers, ReLU, He (Kaiming) init.

    Linear(d_in, hidden), ReLU, then n_hidden x [Linear(hidden, hidden), ReLU], each a
    new module, then Linear(hidden, d_out). Weights ~ N(0, 2 / fan_in), biases 0,
    so that E||h||^2 (and the gradient norm) is preserved from layer to layer.
    Maps x: (B, d_in) -> (B, d_out).
    """
    layers = [nn.Linear(d_in, hidden), nn.ReLU()]
    for _ in range(n_hidden):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden, d_out))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def grad_norms_svg(curves: dict[str, Tensor], title: str = "") -> str:
    """A small SVG line chart of log10 per-layer gradient norms; curves: name -> (A,).

    Drawn by hand rather than with matplotlib, whose import alone (~0.5 s) would
    break the notebooks' time budget; the text output is also byte-stable.
    """
    from xml.sax.saxutils import escape

    ys = {name: norms.detach().double().log10().cpu().tolist() for name, norms in curves.items()}
    n = max(len(v) for v in ys.values())
    lo = math.floor(min(min(v) for v in ys.values()) - 0.3)  # keep curves off the frame
    hi = math.ceil(max(max(v) for v in ys.values()) + 0.3)
    step = max(1, math.ceil((hi - lo) / 8))  # at most ~8 y ticks, on whole decades
    lo, hi = lo - (lo % step), hi + (-hi % step)
    hi = max(hi, lo + step)
    W, H, left, right, top, bottom = 460, 260, 48, 10, 24 if title else 10, 38

    def px(i: float) -> float:  # layer number (1..n) -> x pixel
        return left + (i - 1) / max(n - 1, 1) * (W - left - right)

    def py(v: float) -> float:  # log10 norm -> y pixel
        return H - bottom - (v - lo) / (hi - lo) * (H - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="10">',
           f'<rect x="{left}" y="{top}" width="{W - left - right}" height="{H - top - bottom}" '
           'fill="none" stroke="#444"/>']
    for v in range(lo, hi + 1, step):
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 4}" y="{py(v) + 3:.1f}" text-anchor="end">{v}</text>')
    for i in sorted({1, n, *range(5, n, 5)}):
        out.append(f'<text x="{px(i):.1f}" y="{H - bottom + 13}" text-anchor="middle">{i}</text>')
    out.append(f'<text x="{(left + W - right) / 2:.1f}" y="{H - 6}" text-anchor="middle">'
               "hidden layer (1 = closest to the input)</text>")
    out.append(f'<text transform="translate(12 {(top + H - bottom) / 2:.1f}) rotate(-90)" '
               'text-anchor="middle">log10 ||dL/dh_l||</text>')
    if title:
        out.append(f'<text x="{W / 2:.1f}" y="15" text-anchor="middle">{escape(title)}</text>')
    # Legend bottom right: vanishing curves rise towards the output side, leaving it free.
    legend_top = H - bottom - 8 - 13 * len(ys)
    out.append(f'<rect x="{W - right - 196}" y="{legend_top}" width="192" height="{13 * len(ys) + 4}" '
               'fill="white" fill-opacity="0.85"/>')
    for k, (name, v) in enumerate(ys.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        points = " ".join(f"{px(i + 1):.1f},{py(y):.1f}" for i, y in enumerate(v))
        out.insert(2, f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        y0 = legend_top + 13 + 13 * k
        out.append(f'<line x1="{W - right - 190}" x2="{W - right - 172}" y1="{y0 - 3}" y2="{y0 - 3}" '
                   f'stroke="{colour}" stroke-width="2"/>'
                   f'<text x="{W - right - 166}" y="{y0}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def plot_grad_norms(curves: dict[str, Tensor], title: str = "") -> None:
    """Display grad_norms_svg(curves, title) in the notebook."""
    from IPython.display import SVG, display

    display(SVG(grad_norms_svg(curves, title)))
