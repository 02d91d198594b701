"""Evidence helpers for the Unsupervised learning questions (VAE, GAN; both notebooks).

- ``linear_gaussian_elbo``: log p(x), the ELBO and the gap KL(q || p(z|x)) on a
  linear-Gaussian latent model, where all of them have closed forms.
- ``generator_logit_grads``: derivatives of the two generator losses with respect
  to the discriminator's logit, by autograd.

Float64 throughout; random draws use a local torch.Generator.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "ElboTerms",
    "linear_gaussian_elbo",
    "gaussian_kl",
    "gaussian_log_prob",
    "generator_logit_grads",
]

F64 = torch.float64


def gaussian_log_prob(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(x; mean, cov); x, mean (n,), cov (n, n) positive definite."""
    r = x - mean
    return -0.5 * (
        len(x) * math.log(2 * math.pi) + torch.logdet(cov) + r @ torch.linalg.solve(cov, r)
    )


def gaussian_kl(m0: Tensor, C0: Tensor, m1: Tensor, C1: Tensor) -> Tensor:
    """KL(N(m0, C0) || N(m1, C1)) for n-dimensional Gaussians; m (n,), C (n, n)."""
    r = m1 - m0
    return 0.5 * (
        torch.trace(torch.linalg.solve(C1, C0))
        + r @ torch.linalg.solve(C1, r)
        - len(m0)
        + torch.logdet(C1)
        - torch.logdet(C0)
    )


class ElboTerms(NamedTuple):
    log_px: float  # log p(x), exact (x ~ N(c, W W^T + s^2 I))
    elbo: float  # ELBO(q) for an imperfect encoder q
    kl_to_posterior: float  # KL(q || p(z|x)), computed from the exact posterior
    elbo_at_posterior: float  # ELBO(q) for q = p(z|x)

    def __str__(self) -> str:
        return (
            f"log p(x) = {self.log_px:.4f}, ELBO(q) = {self.elbo:.4f}, "
            f"KL(q || p(z|x)) = {self.kl_to_posterior:.4f}, "
            f"ELBO(q = p(z|x)) = {self.elbo_at_posterior:.4f}"
        )


def linear_gaussian_elbo(k: int = 2, d: int = 3, s: float = 0.5, seed: int = 0) -> ElboTerms:
    """p(z) = N(0, I_k), p(x|z) = N(W z + c, s^2 I_d), one x; W (d, k), c (d,), x (d,) random.

    The imperfect q = N(posterior mean + 0.5, diag of the posterior covariance).
    ELBO(q) = E_q[log p(x|z)] - KL(q || p(z)), both terms in closed form.
    (Plain tensor algebra: torch.distributions would import sympy, ~0.3 s.)
    """
    g = torch.Generator().manual_seed(seed)
    W, c, x = (torch.randn(*shape, generator=g, dtype=F64) for shape in [(d, k), (d,), (d,)])
    I_k, I_d = torch.eye(k, dtype=F64), torch.eye(d, dtype=F64)
    log_px = gaussian_log_prob(x, c, W @ W.T + s**2 * I_d)
    post_cov = torch.linalg.inv(I_k + W.T @ W / s**2)
    post_mean = post_cov @ W.T @ (x - c) / s**2

    def elbo(m: Tensor, C: Tensor) -> Tensor:
        sq_err = ((x - W @ m - c) ** 2).sum() + torch.trace(W @ C @ W.T)
        expected_log_lik = -0.5 * d * math.log(2 * math.pi * s**2) - sq_err / (2 * s**2)
        return expected_log_lik - gaussian_kl(m, C, torch.zeros(k, dtype=F64), I_k)

    q_mean, q_cov = post_mean + 0.5, torch.diag(post_cov.diagonal())
    return ElboTerms(
        log_px.item(),
        elbo(q_mean, q_cov).item(),
        gaussian_kl(q_mean, q_cov, post_mean, post_cov).item(),
        elbo(post_mean, post_cov).item(),
    )


def generator_logit_grads(p: float) -> tuple[float, float]:
    """d/da of the minimax loss log(1 - sigmoid(a)) and of the non-saturating loss
    -log sigmoid(a), at the logit a with D = sigmoid(a) = p. Returns (minimax, non-saturating).
    """
    a = torch.logit(torch.tensor(p, dtype=F64)).requires_grad_()
    minimax, non_saturating = torch.log1p(-torch.sigmoid(a)), -torch.log(torch.sigmoid(a))
    (g_mm,) = torch.autograd.grad(minimax, a)
    (g_ns,) = torch.autograd.grad(non_saturating, a)
    return g_mm.item(), g_ns.item()
