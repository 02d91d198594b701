"""Tests for hw4/dropout.py. Oracles: the Bernoulli mask's closed-form mean and standard
error, and the dropout mask read back from the output itself."""

import pytest
import torch
from torch import nn

from hw4 import dropout


@pytest.mark.parametrize("p", [0.1, 0.28, 0.5])
def test_drop_stats_of_one_dropout(p):
    s = dropout.drop_stats(nn.Dropout(p), n=40_000, seed=3)
    assert abs(s.dropped - p) < 4 * (p * (1 - p) / 40_000) ** 0.5
    assert s.kept_min == pytest.approx(1 / (1 - p), rel=1e-6) == s.kept_max


def test_two_dropouts_drop_1_minus_the_product_of_keep_probabilities():
    s = dropout.drop_stats(nn.Sequential(nn.Dropout(0.1), nn.Dropout(0.2)), n=40_000, seed=4)
    q = 0.28
    assert abs(s.dropped - q) < 4 * (q * (1 - q) / 40_000) ** 0.5
    assert abs(s.dropped - 0.3) > 8 * (q * (1 - q) / 40_000) ** 0.5  # not p1 + p2
    assert s.kept_min == pytest.approx(1 / 0.72, rel=1e-6) == s.kept_max


def test_drop_stats_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = dropout.drop_stats(nn.Dropout(0.3), seed=1)
    b = dropout.drop_stats(nn.Dropout(0.3), seed=1)
    assert a == b and torch.equal(state, torch.get_rng_state())
    assert dropout.drop_stats(nn.Dropout(0.3), seed=2) != a


def test_both_orders_use_one_mask():
    z = torch.linspace(0.5, 3.0, 1000)  # positive: activation(z) is never 0 for these
    before, after = dropout.both_orders(torch.exp, z, p=0.5, seed=7)
    dropped_before = before == torch.exp(torch.tensor(0.0))  # exp(0) where z was dropped
    dropped_after = after == 0
    assert torch.equal(dropped_before, dropped_after) and 300 < dropped_after.sum() < 700
    kept = ~dropped_after
    assert torch.allclose(before[kept], torch.exp(2 * z[kept]))
    assert torch.allclose(after[kept], 2 * torch.exp(z[kept]))


def test_both_orders_relu_commutes_and_sigmoid_means():
    z = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    a, b = dropout.both_orders(torch.relu, z, p=0.3, seed=1)
    assert torch.allclose(a, b, rtol=1e-6, atol=0)
    n, p = 100_000, 0.5
    first, last = dropout.both_orders(torch.sigmoid, torch.full((n,), 2.0), p=p, seed=2)
    exact_first = p * torch.sigmoid(torch.tensor(0.0)) + (1 - p) * torch.sigmoid(
        torch.tensor(2.0 / (1 - p))
    )
    sd_first = (torch.sigmoid(torch.tensor(4.0)) - 0.5) / 2  # two equally likely values
    assert abs(first.mean() - exact_first) < 4 * sd_first / n**0.5
    sd_last = torch.sigmoid(torch.tensor(2.0))  # values 0 or 2 sigmoid(2), p = 1/2
    assert abs(last.mean() - torch.sigmoid(torch.tensor(2.0))) < 4 * sd_last / n**0.5
    assert exact_first.item() == pytest.approx(0.741, abs=5e-4)


def test_both_orders_leaves_the_global_rng_alone():
    z = torch.randn(10)
    state = torch.get_rng_state()
    dropout.both_orders(torch.relu, z, p=0.5)
    assert torch.equal(state, torch.get_rng_state())


def test_order_means_matches_the_exact_expectations_within_4_standard_errors():
    m = dropout.order_means(torch.sigmoid, z=2.0, p=0.5, n=100_000, seed=3)
    exact_first = 0.5 * 0.5 + 0.5 * torch.sigmoid(torch.tensor(4.0)).item()
    exact_last = torch.sigmoid(torch.tensor(2.0)).item()
    assert abs(m.first - exact_first) < 4 * m.first_se and abs(m.last - exact_last) < 4 * m.last_se
    # the standard errors of two equally likely values a, b: |a - b| / 2 / sqrt(n)
    assert m.first_se == pytest.approx((exact_first - 0.5) / 100_000**0.5, rel=0.01)
    assert m.last_se == pytest.approx(exact_last / 100_000**0.5, rel=0.01)
    assert "+-" in str(m)
