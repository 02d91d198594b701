"""Tests for hw4/losses.py. Oracles: closed-form derivatives, and torch.optim itself
(torch.optim.SGD) for the dead-unit runs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hw4 import losses


def _sigmoid(z):
    return 1 / (1 + math.exp(-z))


@pytest.mark.parametrize("z, y", [(-10.0, 1.0), (3.0, 1.0), (0.7, 0.0), (-2.0, 0.0)])
def test_l2_and_bce_against_closed_forms(z, y):
    r = losses.l2_and_bce(z, y)
    s = _sigmoid(z)
    assert r["l2"].loss == pytest.approx((s - y) ** 2, rel=1e-12)
    assert r["l2"].grad == pytest.approx(2 * (s - y) * s * (1 - s), rel=1e-10)
    bce = -(y * math.log(s) + (1 - y) * math.log(1 - s))
    assert r["bce"].loss == pytest.approx(bce, rel=1e-10)
    assert r["bce"].grad == pytest.approx(s - y, rel=1e-10, abs=1e-15)
    assert r["l2_raw"] == (pytest.approx((z - y) ** 2), pytest.approx(2 * (z - y)))


def test_the_notebook_numbers():
    r = losses.l2_and_bce(-10.0, 1.0)
    assert round(r["l2"].loss, 4) == 0.9999 and f"{r['l2'].grad:.1e}" == "-9.1e-05"
    assert round(r["bce"].loss, 2) == 10.0 and round(r["bce"].grad, 2) == -1.0


def test_l2_sigmoid_peak_is_at_one_third():
    # |dL/dz| = 2 p (1 - p)^2 for y = 1: maximal at p = 1/3, value 8/27.
    p, g = losses.l2_sigmoid_peak(1.0)
    assert p == pytest.approx(1 / 3, abs=1e-3) and g == pytest.approx(8 / 27, rel=1e-5)
    p0, g0 = losses.l2_sigmoid_peak(0.0)  # by symmetry
    assert p0 == pytest.approx(2 / 3, abs=1e-3) and g0 == pytest.approx(8 / 27, rel=1e-5)


@pytest.mark.parametrize("y", [1.0, 0.0])
def test_curvature_range_against_closed_forms(y):
    # s = sigmoid(z), s' = s (1 - s), s'' = s' (1 - 2 s):
    # L2'' = 2 s'^2 + 2 (s - y) s'', BCE'' = s'.
    z = torch.linspace(-12, 12, 2_401, dtype=torch.float64)
    s = torch.sigmoid(z)
    ds = s * (1 - s)
    l2 = 2 * ds**2 + 2 * (s - y) * ds * (1 - 2 * s)
    r = losses.curvature_range(y)
    assert r["l2"] == (
        pytest.approx(l2.min().item(), rel=1e-9),
        pytest.approx(l2.max().item(), rel=1e-9),
    )
    assert r["bce"] == (pytest.approx(ds.min().item(), rel=1e-6), pytest.approx(0.25, rel=1e-9))
    assert r["l2"][0] < 0 < r["l2"][1] and r["bce"][0] > 0  # L2 on sigmoid: not convex; BCE: convex


def test_range_is_a_plain_pair_printed_with_two_significant_digits():
    r = losses.Range(-0.1234, 6.06e-06)
    assert r == (-0.1234, 6.06e-06) and (r.lo, r.hi) == r
    assert str(r) == "-0.12 to 6.1e-06"
    assert isinstance(losses.curvature_range(1.0)["bce"], losses.Range)


def _reference_dead_unit(steps, make_optimizer, seed=0):
    """The same dead unit as losses.dead_unit, trained by a real torch.optim optimizer."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.8 * torch.rand(64, 3, generator=gen, dtype=torch.float64)
    target = torch.randn(64, 1, generator=gen, dtype=torch.float64)
    unit = nn.Linear(3, 1).double()
    with torch.no_grad():
        unit.weight.fill_(-1.0)
        unit.bias.fill_(0.5)
    opt = make_optimizer(unit.weight, unit.bias)
    for step in range(1, steps + 1):
        opt.zero_grad()
        F.mse_loss(torch.relu(unit(x)), target).backward()
        if step == 1:
            assert (unit.weight.grad == 0).all() and (unit.bias.grad == 0).all()  # dead
        opt.step()
        with torch.no_grad():
            if (unit(x) > 0).any():
                return unit.weight.detach() / -1.0, unit.bias.item() / 0.5, step
    return unit.weight.detach() / -1.0, unit.bias.item() / 0.5, None


CASES = {  # kwargs of dead_unit: (the torch.optim.SGD set-up, expected revival)
    "no weight decay": (dict(lr=0.1, weight_decay=0.0), None),
    "plain": (dict(lr=0.1, weight_decay=0.1), None),
    "bias not decayed": (dict(lr=0.1, weight_decay=0.5, decay_bias=False), 16),
    "momentum, large lr*wd": (dict(lr=0.1, weight_decay=0.5, momentum=0.9), 8),
    "momentum, usual lr*wd": (dict(lr=0.1, weight_decay=5e-4, momentum=0.9), None),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_dead_unit_matches_torch_optim_sgd(case):
    kw, revived = CASES[case]

    def make(w, b):
        decay_b = kw["weight_decay"] if kw.get("decay_bias", True) else 0.0
        return torch.optim.SGD(
            [{"params": [w]}, {"params": [b], "weight_decay": decay_b}],
            lr=kw["lr"], momentum=kw.get("momentum", 0.0), weight_decay=kw["weight_decay"],
        )  # fmt: skip

    got = losses.dead_unit(20, **kw)
    w_ratio, b_ratio, step = _reference_dead_unit(20, make)
    assert got.revived_at == step == revived
    assert got.b_factor == pytest.approx(b_ratio, rel=1e-12, abs=1e-15)
    if torch.allclose(w_ratio, w_ratio.mean().expand_as(w_ratio), rtol=1e-12, atol=0):
        assert got.w_factor == pytest.approx(w_ratio.mean().item(), rel=1e-12)
    else:
        assert math.isnan(got.w_factor)


def test_dead_unit_plain_sgd_multiplies_w_and_b_by_1_minus_lr_wd_per_step():
    r = losses.dead_unit(20, lr=0.1, weight_decay=0.1)
    assert r.revived_at is None
    assert r.w_factor == pytest.approx(0.99**20, rel=1e-12) == r.b_factor


def test_dead_unit_leaves_the_global_rng_and_threads_alone():
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    losses.dead_unit(5, lr=0.1, weight_decay=0.1)
    losses.l2_and_bce(1.0, 0.0)
    assert torch.equal(state, torch.get_rng_state()) and torch.get_num_threads() == threads


def test_a_dead_unit_without_weight_decay_does_not_move_at_all():
    r = losses.dead_unit(20, lr=0.1, weight_decay=0.0, momentum=0.9)
    assert r == losses.DeadUnit(1.0, 1.0, None), "zero gradient: SGD leaves w and b exactly"
