"""Evidence helpers for the Sequence models questions (both notebooks).

- ``compare_with_nn_embedding``: a home-made embedding class against nn.Embedding
  (initialisation, output, weight gradient).
- ``tbptt_dependence``: what full BPTT, TBPTT and "just limit the length" do to a
  loss at the end of the second chunk of a sequence.

Random draws happen inside ``torch.random.fork_rng``, so calling these never
changes the global random state.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hw4.threads import single_thread

__all__ = [
    "EmbeddingCheck",
    "compare_with_nn_embedding",
    "Dependence",
    "MODES",
    "tbptt_dependence",
]


class EmbeddingCheck(NamedTuple):
    same_init: bool  # same seed -> same weights as nn.Embedding
    same_output: bool  # same rows looked up
    same_grad: bool  # dL/dweight equal to nn.Embedding's
    grad_is_scatter_add: bool  # dL/dweight[v] = sum of dL/dy_p over positions p with x_p = v
    one_hot_product: bool  # output == one_hot(indices) @ weight


def compare_with_nn_embedding(
    cls: Callable[[int, int], nn.Module], V: int = 5, D: int = 3, seed: int = 0
) -> EmbeddingCheck:
    """Build cls(V, D) and nn.Embedding(V, D) from the same seed and compare them.

    Indices (2, 3) with repeated and unused rows; upstream gradient G (2, 3, D).
    The scatter-add oracle is index_add_ of G into a (V, D) zero table; the one-hot
    oracle is the product of a (2, 3, V) one-hot tensor with nn.Embedding's table.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = nn.Embedding(V, D)
        torch.manual_seed(seed)
        ours = cls(V, D)
        G = torch.randn(2, 3, D)
    idx = torch.tensor([[0, V - 2, V - 2], [V - 1, V - 2, 0]])  # rows 1..V-3 unused
    same_init = torch.equal(ours.weight.detach(), ref.weight.detach())
    out, out_ref = ours(idx), ref(idx)
    same_output = out.shape == (2, 3, D) and torch.equal(out, out_ref)
    # Scalar losses sum(out * G): passing G as grad_outputs would make torch import sympy (~0.3 s).
    (grad,) = torch.autograd.grad((out * G).sum(), ours.weight)
    (grad_ref,) = torch.autograd.grad((out_ref * G).sum(), ref.weight)
    scatter = torch.zeros(V, D).index_add_(0, idx.flatten(), G.reshape(-1, D))
    return EmbeddingCheck(
        same_init,
        same_output,
        torch.allclose(grad, grad_ref),
        torch.allclose(grad, scatter),
        torch.allclose(out, F.one_hot(idx, V).to(out.dtype) @ ref.weight),
    )


class Dependence(NamedTuple):
    loss: float  # the loss at the last step of chunk 2
    forward: bool  # the loss changes when chunk 1's inputs change
    backward: bool  # its gradient reaches chunk 1's inputs (nonzero)


MODES = ("full BPTT", "TBPTT", "reset state")


@single_thread()
def tbptt_dependence(mode: str, S: int = 4, seed: int = 0) -> Dependence:
    """A loss at the last step of chunk 2 of a sequence fed to an RNN in chunks of S steps.

    mode: "full BPTT" (hidden state passed on), "TBPTT" (passed on detached) or
    "reset state" (chunk 2 starts from zeros: only the length is limited).
    RNN: nn.RNN(3, 5); chunks x1, x2: (1, S, 3). ``forward`` compares the loss for
    x1 and for x1 + 1.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = nn.RNN(3, 5, batch_first=True)
        x1, x2 = torch.randn(1, S, 3), torch.randn(1, S, 3)

    def loss_of(chunk1: Tensor) -> Tensor:
        _, h = rnn(chunk1)  # h: (1, 1, 5), the state after chunk 1
        if mode == "TBPTT":
            h = h.detach()
        elif mode == "reset state":
            h = torch.zeros_like(h)
        return rnn(x2, h)[0][0, -1].sum()

    x1 = x1.requires_grad_()
    loss = loss_of(x1)
    (grad,) = torch.autograd.grad(loss, x1, allow_unused=True)
    with torch.no_grad():
        forward = not torch.equal(loss, loss_of(x1 + 1))
    backward = grad is not None and bool(grad.abs().sum() > 0)
    return Dependence(loss.item(), forward, backward)
