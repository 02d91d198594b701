"""Gradient flow through deep MLPs (Summary questions: Losses and Activation functions).

Used by both notebooks to measure how the loss gradient shrinks on its way back
through the "pirate" network and its variants. Shapes: B = batch size,
D_in / D_out = input / output features, A = number of activation applications.
"""

from __future__ import annotations

import copy
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


def plot_grad_norms(curves: dict[str, Tensor], title: str = "") -> None:
    """Plot log10 of per-layer gradient norms; curves: name -> (A,) tensor.

    Kept cheap on purpose (the notebooks have a time budget): log10 on a linear axis
    (a log axis draws minor ticks for every decade), a fixed layout instead of
    tight_layout, no mathtext, and the PNG is rendered once and displayed directly
    (the inline backend would draw the figure twice to find a tight bounding box).
    """
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    for name, norms in curves.items():
        ax.plot(range(1, len(norms) + 1), norms.detach().double().log10().cpu().numpy(), label=name)
    ax.set_xlabel("hidden layer (1 = closest to the input)")
    ax.set_ylabel("log10 ||dL/dh_l||")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.13, bottom=0.17, right=0.98, top=0.9 if title else 0.97)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    display(Image(png.getvalue()))
