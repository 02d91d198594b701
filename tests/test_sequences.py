"""Tests for hw4/sequences.py. Oracles: nn.Embedding, an unchunked nn.RNN run."""

import pytest
import torch
from torch import nn

from hw4.answers import Embedding
from hw4.sequences import MODES, compare_with_nn_embedding, tbptt_dependence

IDS = torch.tensor([[0, 3, 3], [4, 3, 0]])  # repeated rows (0, 3) and unused rows (1, 2)


def _table(V=5, D=3, seed=0, draw=torch.randn):
    return draw(V, D, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def test_indexed_table_passes_every_check():
    table = _table()
    assert all(compare_with_nn_embedding(table, IDS, table[IDS]))
    table = _table(7, 2, seed=3)
    assert all(compare_with_nn_embedding(table, IDS + 2, table[IDS + 2], seed=3))


def test_answers_embedding_passes_every_check():
    torch.manual_seed(3)
    emb = Embedding(7, 2)
    assert all(compare_with_nn_embedding(emb.weight, IDS, emb(IDS), seed=3))


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


def test_wrong_embeddings_are_caught():
    table = _table()
    bug = compare_with_nn_embedding(table, IDS, _Overwrite.apply(table, IDS))
    assert bug.same_init and bug.same_output and bug.one_hot_product
    assert not bug.same_grad and not bug.grad_is_scatter_add
    uniform = _table(draw=torch.rand)
    uni = compare_with_nn_embedding(uniform, IDS, uniform[IDS])
    assert not uni.same_init and not uni.same_output and not uni.one_hot_product
    assert uni.same_grad and uni.grad_is_scatter_add  # indexing is right, only the init differs
    shifted = compare_with_nn_embedding(table, IDS, table[(IDS + 1) % 5])
    assert shifted.same_init and not shifted.same_output and not shifted.grad_is_scatter_add
    doubled = compare_with_nn_embedding(table, IDS, 2 * table[IDS])
    assert not doubled.same_output and not doubled.same_grad


def test_helpers_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    table = _table()
    compare_with_nn_embedding(table, IDS, table[IDS])
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
