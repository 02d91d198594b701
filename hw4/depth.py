"""Gradient flow through deep MLPs (Summary questions: Losses and Activation functions).

Used by both notebooks to measure how the loss gradient shrinks on its way back
through the "pirate" network and its variants. Shapes: B = batch size,
D_in / D_out = input / output features, A = number of activation applications.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "single_thread",
    "hidden_grad_norms",
    "with_activation",
    "relu_mlp",
    "plot_grad_norms",
]

ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU)


@contextmanager
def single_thread():
    """Run torch ops on one thread inside the block, then restore the thread count.

    For matrices as small as these (128 x 128, batch 64) synchronising threads costs
    more than it saves, especially when the CPU is shared with other work.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def hidden_grad_norms(model: nn.Sequential, x: Tensor, y: Tensor) -> Tensor:
    """Norm of dL/dh at every application of an activation layer, L = MSE(model(x), y).

    model: nn.Sequential of modules applied in order; a module object may appear
        several times (``[layer] * n``), and each application counts separately
        (the output tensor of each application keeps its own .grad via retain_grad).
    x: (B, D_in); y: (B, D_out).
    Returns (A,) float64: ||dL/dh_a||_F over the batch for a = 0..A-1, where h_a
    is the output of the a-th application of an ACTIVATIONS layer (input side first).

    Runs on a float64 deep copy, so the model (weights, dtype, .grad) is untouched
    and tiny gradients survive: in float32 the squares inside the norm of a
    ~1e-22 gradient already underflow to 0 (smallest float32 ~ 1.4e-45).
    """
    net = copy.deepcopy(model).double()  # deepcopy keeps shared modules shared
    with single_thread():
        h, outs = x.double(), []
        for module in net:
            h = module(h)
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
    """Semilog plot of per-layer gradient norms; curves: name -> (A,) tensor."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for name, norms in curves.items():
        ax.semilogy(range(1, len(norms) + 1), norms.detach().cpu().numpy(), ".-", label=name)
    ax.set_xlabel("activation layer (1 = closest to the input)")
    ax.set_ylabel(r"$\|\partial L / \partial h_l\|$")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()
