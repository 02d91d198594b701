"""Tests for hw4/sequences.py. Oracles: nn.Embedding, an unchunked nn.RNN run."""

import pytest
import torch
from torch import nn

from hw4.answers import Embedding
from hw4.sequences import MODES, compare_with_nn_embedding, tbptt_dependence


def test_answers_embedding_passes_every_check():
    assert all(compare_with_nn_embedding(Embedding))
    assert all(compare_with_nn_embedding(Embedding, V=7, D=2, seed=3))


class _Overwrite(torch.autograd.Function):
    """Row lookup whose backward overwrites repeated rows instead of summing them."""

    @staticmethod
    def forward(ctx, weight, idx):
        ctx.save_for_backward(idx)
        ctx.shape = weight.shape
        return weight[idx]

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        out = torch.zeros(ctx.shape, dtype=g.dtype)
        out[idx.flatten()] = g.reshape(-1, ctx.shape[1])
        return out, None


class _BuggyGrad(nn.Module):
    def __init__(self, V, D):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(V, D))

    def forward(self, idx):
        return _Overwrite.apply(self.weight, idx)


class _UniformInit(nn.Module):
    def __init__(self, V, D):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(V, D))

    def forward(self, idx):
        return self.weight[idx]


def test_wrong_embeddings_are_caught():
    bug = compare_with_nn_embedding(_BuggyGrad)
    assert bug.same_init and bug.same_output  # randn draws like nn.Embedding's normal_
    assert not bug.same_grad and not bug.grad_is_scatter_add
    uni = compare_with_nn_embedding(_UniformInit)
    assert not uni.same_init and not uni.same_output and not uni.one_hot_product


def test_helpers_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    compare_with_nn_embedding(Embedding)
    tbptt_dependence("TBPTT")
    assert torch.equal(torch.get_rng_state(), state)


def _oracle_losses(S=4, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = nn.RNN(3, 5, batch_first=True)
        x1, x2 = torch.randn(1, S, 3), torch.randn(1, S, 3)
    with torch.no_grad():
        unchunked = rnn(torch.cat([x1, x2], 1))[0][0, -1].sum().item()
        fresh = rnn(x2)[0][0, -1].sum().item()
    return unchunked, fresh


@pytest.mark.parametrize("S", [1, 4])
def test_tbptt_dependence(S):
    unchunked, fresh = _oracle_losses(S)
    full, tbptt, reset = (tbptt_dependence(m, S=S) for m in MODES)
    # Carrying the state (detached or not) gives the unchunked forward pass; resetting does not.
    assert full.loss == pytest.approx(unchunked, abs=1e-6)
    assert tbptt.loss == pytest.approx(unchunked, abs=1e-6)
    assert reset.loss == pytest.approx(fresh, abs=1e-6) and abs(fresh - unchunked) > 1e-4
    assert (full.forward, full.backward) == (True, True)
    assert (tbptt.forward, tbptt.backward) == (True, False)
    assert (reset.forward, reset.backward) == (False, False)


def test_tbptt_dependence_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        tbptt_dependence("truncated")
