"""Losses and ReLU units, measured with autograd and torch.optim (Summary questions:
Losses and Activation functions 1 and 4). Float64 throughout; seeded helpers draw from
their own generator, never from the global RNG.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.sgd import sgd

from hw4.threads import single_thread

__all__ = [
    "LossGrad",
    "l2_and_bce",
    "l2_sigmoid_peak",
    "Range",
    "curvature_range",
    "DeadUnit",
    "dead_unit",
]


class LossGrad(NamedTuple):
    loss: float
    grad: float  # dL/dz

    def __str__(self) -> str:
        return f"loss {self.loss:.4g}, dL/dz {self.grad:.2g}"


@single_thread()
def l2_and_bce(z: float, y: float) -> dict[str, LossGrad]:
    """Loss and dL/dz (autograd) at the logit z for the label y in {0, 1}.

    Keys: "l2" (sigmoid(z) - y)^2, "bce" binary cross-entropy on the logit
    (F.binary_cross_entropy_with_logits), "l2_raw" (z - y)^2 on the raw score.
    """
    out = {}
    target = torch.tensor(y, dtype=torch.float64)
    for name, loss_fn in {
        "l2": lambda t: (torch.sigmoid(t) - target) ** 2,
        "bce": lambda t: F.binary_cross_entropy_with_logits(t, target),
        "l2_raw": lambda t: (t - target) ** 2,
    }.items():
        t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        value = loss_fn(t)
        (grad,) = torch.autograd.grad(value, t)
        out[name] = LossGrad(value.item(), grad.item())
    return out


@single_thread()
def l2_sigmoid_peak(y: float = 1.0, lo: float = -12.0, hi: float = 12.0, n: int = 24_001):
    """Where |dL/dz| of L = (sigmoid(z) - y)^2 is largest on a grid of n logits in [lo, hi].

    Returns (sigmoid(z*), |dL/dz|(z*)) for the grid point z* of the largest gradient
    (autograd on the whole grid at once).
    """
    z = torch.linspace(lo, hi, n, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(((torch.sigmoid(z) - y) ** 2).sum(), z)
    i = grad.abs().argmax()
    return torch.sigmoid(z[i]).item(), grad[i].abs().item()


class Range(NamedTuple):
    """(min, max) of a quantity; equal to the plain tuple (lo, hi)."""

    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.lo:.2g} to {self.hi:.2g}"


@single_thread()
def curvature_range(
    y: float = 1.0, lo: float = -12.0, hi: float = 12.0, n: int = 2_401
) -> dict[str, Range]:
    """Range (min, max) of d^2 L / dz^2 over a grid of n logits z in [lo, hi], by double autograd.

    Keys: "l2" for L = (sigmoid(z) - y)^2, "bce" for binary cross-entropy on the logit
    (F.binary_cross_entropy_with_logits). A negative min means L is not convex in z.
    """
    out = {}
    target = torch.full((n,), y, dtype=torch.float64)
    for name, loss_fn in {
        "l2": lambda t: ((torch.sigmoid(t) - target) ** 2).sum(),
        "bce": lambda t: F.binary_cross_entropy_with_logits(t, target, reduction="sum"),
    }.items():
        z = torch.linspace(lo, hi, n, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(loss_fn(z), z, create_graph=True)
        (second,) = torch.autograd.grad(grad.sum(), z)  # L is a sum of per-z terms
        out[name] = Range(second.min().item(), second.max().item())
    return out


class DeadUnit(NamedTuple):
    """w and b as multiples of their initial values when the run stopped (w_factor is nan
    if w was not scaled by one common factor), and the step at which the unit became
    active (z > 0) on some of its inputs again (None: still dead after all the steps)."""

    w_factor: float
    b_factor: float
    revived_at: int | None

    def __str__(self) -> str:
        state = (
            "still dead" if self.revived_at is None else f"ALIVE again at step {self.revived_at}"
        )
        return f"{state}: w times {self.w_factor:.3f}, b times {self.b_factor:.3f}"


@single_thread()
def dead_unit(
    steps: int,
    lr: float,
    weight_decay: float,
    momentum: float = 0.0,
    decay_bias: bool = True,
    seed: int = 0,
) -> DeadUnit:
    """A dead ReLU unit trained by SGD with weight decay (and momentum).

    The unit: Linear(3, 1) with w = (-1, -1, -1), b = 0.5, on 64 inputs x in [0.2, 1]^3
    (post-ReLU activations are >= 0), so z = w.x + b <= 0.5 - 0.6 < 0 on all of them.
    Loss: MSE of ReLU(z) to random targets, whose gradient w.r.t. w and b is exactly 0
    while the unit is dead, so only weight decay moves them. Each step is
    torch.optim.sgd.sgd, the update of torch.optim.SGD(lr, momentum, weight_decay)
    with the bias in a group of its own whose weight decay is 0 unless decay_bias
    (called directly: constructing a torch.optim optimizer imports torch._dynamo,
    ~1 s). Momentum buffers start at zero. Stops at the first step after which z > 0
    on some input (from then on the data gradient is no longer zero).
    """
    gen = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.8 * torch.rand(64, 3, generator=gen, dtype=torch.float64)
    target = torch.randn(64, 1, generator=gen, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init would use the global RNG
        unit = nn.Linear(3, 1).double()
    with torch.no_grad():
        unit.weight.fill_(-1.0)
        unit.bias.fill_(0.5)
    w0, b0 = unit.weight.detach().clone(), unit.bias.item()
    groups = [
        ([unit.weight], [None], weight_decay),
        ([unit.bias], [None], weight_decay * decay_bias),
    ]
    revived_at = None
    for step in range(1, steps + 1):
        unit.zero_grad()
        F.mse_loss(torch.relu(unit(x)), target).backward()
        with torch.no_grad():
            for params, buffers, decay in groups:
                sgd(params, [p.grad for p in params], buffers, weight_decay=decay, momentum=momentum,
                    lr=lr, dampening=0.0, nesterov=False, maximize=False)  # fmt: skip
            if (unit(x) > 0).any():
                revived_at = step
                break
    with torch.no_grad():
        ratio = unit.weight / w0
        common = torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-12, atol=0)
    return DeadUnit(
        ratio.mean().item() if common else float("nan"), unit.bias.item() / b0, revived_at
    )
