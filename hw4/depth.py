"""Gradient flow through deep MLPs (Summary questions: Losses and Activation functions 2-4).

Used by both notebooks to measure the "pirate" network and its variants: how the
loss gradient shrinks on its way back, how the hidden state forgets the input, and
what a short training run does. Every helper works on copies: the model passed in
is never modified, and random numbers come from the helper's own seed (the global
RNG is left as it was). Shapes: B = batch size, D_in / D_out = input / output
features, A = number of activation applications.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.sgd import sgd

from hw4 import plots
from hw4.threads import single_thread

__all__ = [
    "ACTIVATIONS",
    "hidden_grad_norms",
    "hidden_spread",
    "per_layer_factor",
    "Decay",
    "decay",
    "with_activation",
    "reinitialised",
    "tanh_xavier",
    "relu_mlp",
    "one_hidden_layer",
    "regression_data",
    "reinitialised_with_data",
    "activation_curves",
    "Vanishing",
    "vanishing",
    "LossTrace",
    "train_losses",
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


def _hidden_states(model: nn.Sequential, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """Float64 forward pass: (outputs h_a of every ACTIVATIONS application, final output)."""
    cache: dict = {}
    h, outs = x, []
    for module in model:
        h = _float64(module, cache)(h)
        if isinstance(module, ACTIVATIONS):
            outs.append(h)
    return outs, h


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
    return _grads_and_states(model, x, y)[0]


@single_thread()
def _grads_and_states(model: nn.Sequential, x: Tensor, y: Tensor) -> tuple[Tensor, list[Tensor]]:
    """(hidden_grad_norms (A,), the hidden states h_a (B, H_a), detached) from one pass."""
    outs, out = _hidden_states(model, x.double().requires_grad_(True))
    for h in outs:
        h.retain_grad()
    F.mse_loss(out, y.double()).backward()
    return torch.stack([h.grad.norm() for h in outs]), [h.detach() for h in outs]


@single_thread()
def hidden_spread(model: nn.Sequential, x: Tensor) -> Tensor:
    """How much the hidden state still depends on the input, per activation application.

    x: (B, D_in). Returns (A,) float64: the standard deviation over the B inputs of
    each unit of h_a, averaged over the units (float64 forward, no grad).
    """
    with torch.no_grad():
        outs, _ = _hidden_states(model, x.double())
    return torch.stack([h.std(0).mean() for h in outs])


def per_layer_factor(norms: Tensor) -> float:
    """Geometric mean factor between consecutive entries of norms (A,), last to first:
    (norms[0] / norms[-1]) ** (1 / (A - 1))."""
    return (norms[0] / norms[-1]).item() ** (1 / (len(norms) - 1))


class Decay(NamedTuple):
    """How a curve of per-layer gradient norms (A,) changes from the last layer to the first."""

    per_layer: float  # per_layer_factor(norms)
    first_last: float  # norms[0] / norms[-1]: first hidden layer over last
    max_min: float  # norms.max() / norms.min(): the spread of the curve

    def __str__(self) -> str:
        return (
            f"factor {self.per_layer:.2f} per layer, first/last {self.first_last:.1g}, "
            f"max/min {self.max_min:.1g}"
        )


def decay(norms: Tensor) -> Decay:
    """Decay of norms (A,) with A >= 2, e.g. a hidden_grad_norms curve."""
    return Decay(per_layer_factor(norms), (norms[0] / norms[-1]).item(),
                 (norms.max() / norms.min()).item())  # fmt: skip


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


def _reset(modules, seed: int) -> None:
    """reset_parameters() of each distinct module, in order, drawing from seed only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        seen = set()
        for m in modules:
            if id(m) not in seen and hasattr(m, "reset_parameters"):
                m.reset_parameters()
            seen.add(id(m))


def reinitialised(model: nn.Sequential, seed: int) -> nn.Sequential:
    """A deep copy of model, every distinct module re-initialised (its default init) from seed.

    A module object that the model applies several times stays one shared object,
    so the result does not depend on how often the model's own cell was run.
    """
    net = copy.deepcopy(model)
    _reset(net, seed)
    return net


def tanh_xavier(model: nn.Sequential, seed: int) -> nn.Sequential:
    """with_activation(model, nn.Tanh) with Glorot (Xavier) init, drawn from seed.

    Every distinct Linear (shared modules stay shared) gets weights
    ~ U(+-sqrt(6 / (fan_in + fan_out))), i.e. Var = 2 / (fan_in + fan_out) (gain 1, as in
    Glorot and Bengio, 2010), and bias 0. model is not modified; the global RNG is left alone.
    """
    net = with_activation(model, nn.Tanh)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in dict.fromkeys(m for m in net if isinstance(m, nn.Linear)):  # distinct, in order
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


@single_thread()
def relu_mlp(d_in: int, hidden: int, n_hidden: int, d_out: int, seed: int = 0) -> nn.Sequential:
    """The pirate architecture done right: distinct layers, ReLU, He (Kaiming) init.

    Linear(d_in, hidden), ReLU, then n_hidden x [Linear(hidden, hidden), ReLU], each a
    new module, then Linear(hidden, d_out). Weights ~ N(0, 2 / fan_in) drawn from seed,
    biases 0, so that E||h||^2 (and the gradient norm) is preserved from layer to layer.
    Maps x: (B, d_in) -> (B, d_out).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [nn.Linear(d_in, hidden), nn.ReLU()]
        for _ in range(n_hidden):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, d_out))
        for layer in layers:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def one_hidden_layer(model: nn.Sequential, seed: int = 0) -> nn.Sequential:
    """relu_mlp(d_in, hidden, 0, d_out, seed): Linear, ReLU, Linear (He init) with the
    input, hidden and output sizes of model's first and last Linear layers; a control
    that trains where a deep network of those sizes does not. model is not modified."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    first, last = linears[0], linears[-1]
    return relu_mlp(first.in_features, first.out_features, 0, last.out_features, seed=seed)


def regression_data(model: nn.Sequential, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """A regression task for model that depends on the input, drawn from seed.

    x (n, D_in) ~ N(0, 1), D_in = model[0].in_features, and y (n, 1) = x @ a / ||a||
    + 0.1 noise for a random direction a (float32).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model[0].in_features, generator=gen)
    a = torch.randn(model[0].in_features, 1, generator=gen)
    return x, x @ a / a.norm() + 0.1 * torch.randn(n, 1, generator=gen)


def reinitialised_with_data(
    model: nn.Sequential, seed: int, data_seed: int, n: int = 16
) -> tuple[nn.Sequential, tuple[Tensor, Tensor]]:
    """(reinitialised(model, seed), regression_data(model, n, data_seed)): a copy of model
    with weights that do not depend on how often its cell ran, and a batch (x, y) for it."""
    return reinitialised(model, seed), regression_data(model, n=n, seed=data_seed)


@single_thread()
def activation_curves(model: nn.Sequential, x: Tensor, y: Tensor, seed: int) -> dict[str, Tensor]:
    """hidden_grad_norms of model and its variants: name -> (A,) norms.

    model: an MLP Linear, act, [Linear, act] * n, Linear (shared modules allowed), as
    it is (use reinitialised(...) first for seed-independent weights), the same
    weights with Tanh, tanh_xavier(model, seed), the same weights with ReLU, and
    relu_mlp of the same sizes (He init, distinct layers, drawn from seed).
    """
    linears = [m for m in model if isinstance(m, nn.Linear)]
    he = relu_mlp(linears[0].in_features, linears[0].out_features, len(linears) - 2,
                  linears[-1].out_features, seed=seed)  # fmt: skip
    return {
        "sigmoid (as given)": hidden_grad_norms(model, x, y),
        "tanh, same weights": hidden_grad_norms(with_activation(model, nn.Tanh), x, y),
        "tanh + Xavier init": hidden_grad_norms(tanh_xavier(model, seed), x, y),
        "ReLU, same weights": hidden_grad_norms(with_activation(model, nn.ReLU), x, y),
        "ReLU + He init, distinct layers": hidden_grad_norms(he, x, y),
    }


@dataclass(frozen=True)
class Vanishing:
    """What vanishing(...) measures on one network."""

    per_layer: float  # per_layer_factor of hidden_grad_norms
    ratio: float  # ||dL/dh_1|| / ||dL/dh_A||: first hidden layer over last
    spread_first: float  # hidden_spread of the first and of the last hidden layer
    spread_last: float
    spread_per_layer: float  # geometric mean factor of hidden_spread over its first 12 layers

    def __str__(self) -> str:
        return (
            f"||dL/dh|| factor {self.per_layer:.2f} per layer, first/last {self.ratio:.0e}; spread "
            f"over inputs factor {self.spread_per_layer:.2f} per layer, {self.spread_first:.2f} -> "
            f"{self.spread_last:.0e}"
        )


def vanishing(model: nn.Sequential, x: Tensor, y: Tensor) -> Vanishing:
    """Backward and forward decay through the hidden layers of model on the batch (x, y).

    x: (B, D_in); y: (B, D_out). The spreads are hidden_spread's, from the same pass;
    their factor per layer is taken over the first min(12, A - 1) layers, before the
    spread reaches float64 rounding noise (~1e-17) in deep contracting networks.
    """
    g, states = _grads_and_states(model, x, y)
    spread = [h.std(0).mean().item() for h in states]
    k = min(12, len(spread) - 1)
    return Vanishing(per_layer_factor(g), (g[0] / g[-1]).item(), spread[0], spread[-1],
                     (spread[k] / spread[0]) ** (1 / k))  # fmt: skip


class LossTrace(list):
    """A list of losses (floats) that prints as its values with 4 decimals, space-separated."""

    def __str__(self) -> str:
        return " ".join(f"{v:.4f}" for v in self)


@single_thread()
def train_losses(
    model: nn.Sequential, x: Tensor, y: Tensor, steps: int, lr: float = 0.01
) -> LossTrace:
    """Full-batch gradient descent on a float64 deep copy of model (model is not modified).

    x: (B, D_in); y: (B, D_out); MSE loss. Each step is torch.optim.sgd.sgd, the update
    that torch.optim.SGD(lr=lr).step() performs (called directly: constructing a
    torch.optim optimizer imports torch._dynamo, ~1 s). Float64, because the tiny
    gradients of deep layers are float32 denormals, which are slow. Returns the loss
    before each step divided by the loss of the best constant predictor (the mean of
    y), i.e. by y.var(unbiased=False), as a LossTrace (a list of steps floats).
    """
    net = copy.deepcopy(model).double()
    params = list(net.parameters())
    x, y = x.double(), y.double()
    floor = y.var(unbiased=False).item()
    out = LossTrace()
    for _ in range(steps):
        for p in params:
            p.grad = None
        loss = F.mse_loss(net(x), y)
        loss.backward()
        out.append(loss.item() / floor)
        with torch.no_grad():
            sgd(params, [p.grad for p in params], [None] * len(params), weight_decay=0.0,
                momentum=0.0, lr=lr, dampening=0.0, nesterov=False, maximize=False)  # fmt: skip
    return out


def plot_grad_norms(curves: dict[str, Tensor], title: str) -> None:
    """Line chart of log10 per-layer gradient norms; curves: name -> (A,) norms.

    log10 on a linear axis and a fixed layout: a log axis and the constrained layout
    would double the rendering time (~50 ms -> ~100 ms).
    """
    from matplotlib.ticker import MultipleLocator

    fig, ax = plots.figure(4.6, 2.5)
    fig.set_layout_engine(None)  # fixed layout, no engine: savefig then draws once, not twice
    ax.set_position((0.13, 0.18, 0.84, 0.72))
    for name, norms in curves.items():
        ax.plot(range(1, len(norms) + 1), norms.detach().double().log10().numpy(), label=name)
    ax.xaxis.set_major_locator(MultipleLocator(10))
    ax.yaxis.set_major_locator(MultipleLocator(10))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("hidden layer (1 = next to the input)", fontsize=8)
    ax.set_ylabel("log10 ||dL/dh||", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="lower right")  # loc="best" costs ~10 ms
    plots.show(fig, title)
