"""Receptive fields, measured and drawn (Summary questions: CNNs 2 and 3).

The measurements backpropagate through the probe copy of a model that
hw4.answers.empirical_receptive_field uses (weights 1, biases 0, max pools as
average pools, pointwise layers removed), so they depend on the geometry only.
Shapes: (C, H, W) input shapes; maps are (H, W) over the input.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from hw4 import answers, plots
from hw4.threads import single_thread

__all__ = [
    "VARIANTS",
    "Growth",
    "growth_table",
    "dilation_holes",
    "influence_map",
    "bounding_box",
    "zeros_inside",
    "plot_influence",
]


def _conv(k: int, **kw) -> nn.Conv2d:
    return nn.Conv2d(1, 1, k, **kw)


# CNNs 2: single-channel stacks, one per way of growing the field (padding k // 2 * d).
VARIANTS: dict[str, Callable[[], nn.Sequential]] = {
    "4 x conv 3x3": lambda: nn.Sequential(*[_conv(3, padding=1) for _ in range(4)]),
    "4 x conv 3x3, stride 2": lambda: nn.Sequential(
        *[_conv(3, stride=2, padding=1) for _ in range(4)]
    ),
    "4 x conv 3x3, dilation 2": lambda: nn.Sequential(
        *[_conv(3, dilation=2, padding=2) for _ in range(4)]
    ),
    "4 x conv 3x3, dilation 1,2,4,8": lambda: nn.Sequential(
        *[_conv(3, dilation=2**i, padding=2**i) for i in range(4)]
    ),
    "3 x conv 3x3": lambda: nn.Sequential(*[_conv(3, padding=1) for _ in range(3)]),
}


class Growth(NamedTuple):
    """One row of growth_table (equal to the plain tuple (rf, jump, out, weights))."""

    rf: int  # receptive field (pixels per side)
    jump: int  # input pixels between neighbouring output pixels
    out: int  # output size (pixels per side)
    weights: int  # number of kernel weights

    def __str__(self) -> str:
        o = self.out
        return f"RF {self.rf:2d}, jump {self.jump:2d}, output {o}x{o}, {self.weights} weights"


@single_thread()
def growth_table(size: int = 64) -> dict[str, Growth]:
    """name -> Growth (RF, jump, output size, weights) of each VARIANTS model on a size x size
    input.

    RF and jump are measured by backpropagation (empirical_receptive_field), the
    output size by running the model itself, the weights counted from its modules.
    """
    rows = {}
    for name, make in VARIANTS.items():
        with torch.random.fork_rng(devices=[]):  # the layers' own init uses the global RNG
            model = make().requires_grad_(False)
        rf = answers.empirical_receptive_field(model, (1, size, size))
        out = model(model[0].weight.new_zeros(1, 1, size, size)).shape[-1]
        weights = sum(m.weight.numel() for m in model)
        rows[name] = Growth(rf.size[0], rf.jump[0], out, weights)
    return rows


@single_thread()
def dilation_holes(dilation: int = 2) -> Tensor:
    """influence_map of two single-channel 3x3 convolutions with the given dilation, on an
    input 2 pixels larger than their span (4 * dilation + 1) on each side."""
    with torch.random.fork_rng(devices=[]):
        model = nn.Sequential(*[nn.Conv2d(1, 1, 3, dilation=dilation) for _ in range(2)])
    n = 4 * dilation + 1 + 4
    return influence_map(model, (1, n, n))


@single_thread()
def influence_map(model: nn.Sequential, input_shape: tuple) -> Tensor:
    """(H, W) float64: how many paths lead from each input pixel to the central output pixel.

    model, input_shape: as in empirical_receptive_field. The gradient of the probe's
    central output pixel (summed over channels): with all weights 1 it counts paths,
    a path through an average pool weighted by 1 / its window. Zero outside the field.
    """
    grads, _ = answers._probe_gradients(model, input_shape)
    return grads[0]


def bounding_box(m: Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the nonzero entries of m: (H, W)."""
    box = answers._nonzero_box(m)
    if box is None:
        raise ValueError("the map has no nonzero entry")
    return box


def zeros_inside(m: Tensor) -> int:
    """Number of zero entries of m: (H, W) inside the bounding box of its nonzero entries
    (pixels of the field that cannot influence the unit: holes)."""
    top, left, h, w = bounding_box(m)
    return int(m[top : top + h, left : left + w].eq(0).sum())


def plot_influence(m: Tensor, title: str) -> None:
    """Heat map of an influence map m (H, W) and its bounding box. Brightness is the square
    root of the path count (normalised to its maximum), so pixels with few paths stay
    visible; pixels with no path (zero entries) are grey, not black."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Rectangle

    top, left, h, w = bounding_box(m)
    fig, ax = plots.figure(3.0, 3.3)
    fig.set_layout_engine(None)  # fixed layout, no engine: savefig then draws once, not twice
    ax.set_position((0.02, 0.02, 0.96, 0.82))
    values = (m / m.max()).numpy()
    cmap = colormaps["magma"].with_extremes(bad="0.82")
    norm = PowerNorm(0.5, vmin=0, vmax=1)
    ax.imshow(np.ma.masked_equal(values, 0), cmap=cmap, norm=norm, interpolation="nearest")
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, ec="#00d0ff", lw=1))
    ax.set_axis_off()
    ax.set_title(f"{title}\n(grey: no path; blue: the {h} x {w} bounding box)", fontsize=8)
    plots.show(fig, f"{title}; bounding box {h} x {w}")
