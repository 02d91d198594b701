"""Tests for hw4/generative.py. Oracles: Monte Carlo estimates, finite differences, torch.distributions."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from hw4.generative import (
    ElboTerms,
    gaussian_kl,
    gaussian_log_prob,
    generator_logit_grads,
    linear_gaussian_elbo,
)

F64 = torch.float64


def _model(k=2, d=3, s=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    W, c, x = (torch.randn(*shape, generator=g, dtype=F64) for shape in [(d, k), (d,), (d,)])
    return W, c, x


def _log_lik(x, W, c, s, z):  # log N(x; W z + c, s^2 I) for each row of z
    r = x - z @ W.T - c
    return -0.5 * x.numel() * math.log(2 * math.pi * s**2) - (r**2).sum(1) / (2 * s**2)


@pytest.mark.parametrize("seed", [0, 1])
def test_log_px_matches_monte_carlo_over_the_prior(seed):
    # Oracle: log p(x) = log E_{z ~ N(0, I)} p(x|z), estimated from 400k prior samples.
    W, c, x = _model(seed=seed)
    z = torch.randn(400_000, 2, generator=torch.Generator().manual_seed(9), dtype=F64)
    mc = torch.logsumexp(_log_lik(x, W, c, 0.5, z), 0) - math.log(len(z))
    assert linear_gaussian_elbo(seed=seed).log_px == pytest.approx(mc.item(), abs=0.03)


@pytest.mark.parametrize("seed", [0, 1])
def test_elbo_matches_monte_carlo_and_the_gap_is_the_kl(seed):
    # Oracle: ELBO = E_q[log p(x|z) + log p(z) - log q(z)] by sampling z ~ q.
    t = linear_gaussian_elbo(seed=seed)
    W, c, x = _model(seed=seed)
    s2 = 0.25
    post_cov = torch.linalg.inv(torch.eye(2, dtype=F64) + W.T @ W / s2)
    m = post_cov @ W.T @ (x - c) / s2 + 0.5
    sd = post_cov.diagonal().sqrt()
    eps = torch.randn(400_000, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    z = m + sd * eps
    log_pz = -0.5 * (z**2).sum(1) - math.log(2 * math.pi)
    log_q = -0.5 * (eps**2).sum(1) - math.log(2 * math.pi) - sd.log().sum()
    samples = _log_lik(x, W, c, 0.5, z) + log_pz - log_q
    se = samples.std().item() / math.sqrt(len(z))
    assert t.elbo == pytest.approx(samples.mean().item(), abs=5 * se)
    assert t.log_px - t.elbo == pytest.approx(t.kl_to_posterior, rel=1e-9)
    assert t.kl_to_posterior > 0.1
    assert t.elbo_at_posterior == pytest.approx(t.log_px, abs=1e-9)


def test_elbo_terms_print_on_one_line_with_four_decimals():
    t = ElboTerms(-7.92834, -13.33676, 5.40842, -7.92834)
    assert str(t) == (
        "log p(x) = -7.9283, ELBO(q) = -13.3368, KL(q || p(z|x)) = 5.4084, "
        "ELBO(q = p(z|x)) = -7.9283"
    )


@pytest.mark.parametrize("p", [0.001, 0.3, 0.5, 0.9])
def test_generator_logit_grads_match_finite_differences(p):
    a, h = math.log(p / (1 - p)), 1e-6
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    mm = (math.log(1 - sig(a + h)) - math.log(1 - sig(a - h))) / (2 * h)
    ns = (-math.log(sig(a + h)) + math.log(sig(a - h))) / (2 * h)
    got_mm, got_ns = generator_logit_grads(p)
    assert got_mm == pytest.approx(mm, rel=1e-6)
    assert got_ns == pytest.approx(ns, rel=1e-6)


def test_gaussian_helpers_match_torch_distributions():
    g = torch.Generator().manual_seed(3)
    A, B = (torch.randn(3, 3, generator=g, dtype=F64) for _ in range(2))
    C0, C1 = A @ A.T + 0.5 * torch.eye(3, dtype=F64), B @ B.T + 0.5 * torch.eye(3, dtype=F64)
    m0, m1, x = (torch.randn(3, generator=g, dtype=F64) for _ in range(3))
    p, q = MultivariateNormal(m0, C0), MultivariateNormal(m1, C1)
    assert gaussian_log_prob(x, m0, C0).item() == pytest.approx(p.log_prob(x).item(), rel=1e-12)
    assert gaussian_kl(m0, C0, m1, C1).item() == pytest.approx(
        kl_divergence(p, q).item(), rel=1e-10
    )
