"""Evidence helpers for the Sequence models questions (both notebooks).

- ``compare_with_nn_embedding``: a home-made lookup (a table tensor, indexed) against
  nn.Embedding (initialisation, output, table gradient).
- ``tbptt_dependence``: what full BPTT, TBPTT and "just limit the length" do to a
  loss at the end of the second chunk of a sequence.

Random draws happen inside ``torch.random.fork_rng``, so calling these never
changes the global random state.
"""

from __future__ import annotations

from typing import NamedTuple

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
    same_init: bool  # the table equals nn.Embedding's weights built from the same seed
    same_output: bool  # the lookup returned nn.Embedding's rows
    same_grad: bool  # dL/dtable equal to nn.Embedding's dL/dweight
    grad_is_scatter_add: bool  # dL/dtable[v] = sum of dL/dy_p over positions p with x_p = v
    one_hot_product: bool  # output == one_hot(indices) @ nn.Embedding's weights


def compare_with_nn_embedding(
    table: Tensor, indices: Tensor, out: Tensor, seed: int = 0
) -> EmbeddingCheck:
    """Compare a home-made lookup, out = f(table, indices), with nn.Embedding(V, D).

    table: (V, D) leaf tensor that requires grad, drawn from torch seed ``seed``;
    indices: (*) integer tensor; out: (*, D), computed from table and indices.
    The reference nn.Embedding(V, D) is built after torch.manual_seed(seed). The
    upstream gradient G (*, D) comes from a local generator; the scatter-add oracle
    is index_add_ of G into a (V, D) zero table, the one-hot oracle is the product
    of a (*, V) one-hot tensor with the reference weights.
    """
    V, D = table.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = nn.Embedding(V, D)
    G = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1))
    out_ref = ref(indices)
    # Scalar losses sum(out * G): passing G as grad_outputs would make torch import sympy (~0.3 s).
    (grad,) = torch.autograd.grad((out * G).sum(), table, retain_graph=True)
    (grad_ref,) = torch.autograd.grad((out_ref * G).sum(), ref.weight)
    scatter = torch.zeros(V, D).index_add_(0, indices.flatten(), G.reshape(-1, D))
    return EmbeddingCheck(
        torch.equal(table.detach(), ref.weight.detach()),
        out.shape == out_ref.shape and torch.equal(out, out_ref),
        torch.allclose(grad, grad_ref),
        torch.allclose(grad, scatter),
        torch.allclose(out, F.one_hot(indices, V).to(out.dtype) @ ref.weight),
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
