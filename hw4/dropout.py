"""Monte Carlo runs of the real nn.Dropout (Summary questions: Dropout).

Each helper draws its masks from its own seed inside torch.random.fork_rng, so the
global RNG (which seeds the notebooks' given cells) is left as it was.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from hw4.threads import single_thread

__all__ = ["DropStats", "drop_stats", "both_orders", "OrderMeans", "order_means"]


class DropStats(NamedTuple):
    """dropped: fraction of zeros in the output; kept_min / kept_max: range of the rest."""

    dropped: float
    kept_min: float
    kept_max: float

    def __str__(self) -> str:
        return f"dropped {self.dropped:.3f}, kept values {self.kept_min:.4f}..{self.kept_max:.4f}"


@single_thread()
def drop_stats(layer: nn.Module, n: int = 20_000, seed: int = 0) -> DropStats:
    """Apply layer (put in training mode) to a vector of n ones, with masks from seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        y = layer.train()(torch.ones(n))
    kept = y[y != 0]
    return DropStats((y == 0).double().mean().item(), kept.min().item(), kept.max().item())


@single_thread()
def both_orders(
    activation: Callable[[Tensor], Tensor], z: Tensor, p: float, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """(activation(dropout(z)), dropout(activation(z))) with nn.Dropout(p) in training mode.

    z: (n,) pre-activations. Both orders use the same mask (the same seed, the same
    shape). Returns two (n,) tensors.
    """
    drop = nn.Dropout(p).train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        before = activation(drop(z))
        torch.manual_seed(seed)
        after = drop(activation(z))
    return before, after


class OrderMeans(NamedTuple):
    """Monte Carlo means (and their standard errors) of both orders, see order_means."""

    first: float  # mean of activation(dropout(z))
    first_se: float
    last: float  # mean of dropout(activation(z))
    last_se: float

    def __str__(self) -> str:
        return (
            f"mean of act(dropout(z)) {self.first:.3f} +- {self.first_se:.3f}, "
            f"of dropout(act(z)) {self.last:.3f} +- {self.last_se:.3f}"
        )


@single_thread()
def order_means(
    activation: Callable[[Tensor], Tensor], z: float, p: float, n: int = 100_000, seed: int = 0
) -> OrderMeans:
    """both_orders on n copies of the pre-activation z: the sample means and their
    standard errors (sample std / sqrt(n))."""
    first, last = both_orders(activation, torch.full((n,), z), p, seed)
    return OrderMeans(
        first.mean().item(),
        first.std().item() / n**0.5,
        last.mean().item(),
        last.std().item() / n**0.5,
    )
