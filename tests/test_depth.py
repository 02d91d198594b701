"""Tests for hw4/depth.py; the oracle is plain autograd on explicitly split networks
(and plain forward passes, torch.optim.SGD, explicit module bookkeeping)."""

import copy

import pytest
import torch
from torch import nn

from hw4 import depth, plots
from hw4.depth import hidden_grad_norms, relu_mlp, with_activation


def _shared_net(reps=3):
    """Linear(5, 4), Tanh, [Linear(4, 4), Sigmoid] * reps (one shared Linear), Linear(4, 3)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 4), nn.Tanh(), *[nn.Linear(4, 4), nn.Sigmoid()] * reps, nn.Linear(4, 3)
    )


def _oracle(model, x, y):
    """||dL/dh|| after every activation, by cutting the network there and differentiating
    the tail with respect to a fresh leaf (no retain_grad, no hooks)."""
    mods = [m.double() for m in model]
    norms = []
    for cut, m in enumerate(mods):
        if not isinstance(m, (nn.Sigmoid, nn.Tanh, nn.ReLU)):
            continue
        with torch.no_grad():
            h = x.double()
            for head in mods[: cut + 1]:
                h = head(h)
        h.requires_grad_(True)
        out = h
        for tail in mods[cut + 1 :]:
            out = tail(out)
        (g,) = torch.autograd.grad(((out - y.double()) ** 2).mean(), h)
        norms.append(g.norm())
    return torch.stack(norms)


def test_hidden_grad_norms_matches_autograd_oracle_with_shared_modules():
    model = _shared_net(reps=3)
    x, y = torch.randn(6, 5), torch.randn(6, 3)
    got = hidden_grad_norms(model, x, y)
    assert got.shape == (4,) and got.dtype == torch.float64  # 1 Tanh + 3 applications
    assert torch.allclose(got, _oracle(_shared_net(reps=3), x, y), rtol=1e-10, atol=0)


def test_hidden_grad_norms_with_other_parametrised_modules():
    # LayerNorm (parameters, not a Linear) goes through the float64 deep-copy fallback.
    def net():
        torch.manual_seed(1)
        return nn.Sequential(
            nn.Linear(5, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 3), nn.Tanh()
        )

    x, y = torch.randn(6, 5), torch.randn(6, 3)
    with torch.no_grad():
        model = net()
        model[1].weight.uniform_(0.5, 1.5)  # not the default ones
    oracle = net()
    oracle.load_state_dict(model.state_dict())
    got = hidden_grad_norms(model, x, y)
    assert torch.allclose(got, _oracle(oracle, x, y), rtol=1e-10, atol=0)
    assert all(p.grad is None and p.dtype == torch.float32 for p in model.parameters())


def test_hidden_grad_norms_closed_form_linear_chain():
    # h_a = 2^a * x for a chain of Identity-like "activations": use ReLU on positive data.
    lin = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(2 * torch.eye(3))
    model = nn.Sequential(*[lin, nn.ReLU()] * 4)
    x = torch.rand(2, 3) + 0.5
    y = torch.zeros(2, 3)
    # L = mean(out^2) with out = 16 x; dL/dh_a = 2 out / 6 * 2^(3 - a).
    out = 16 * x.double()
    expect = torch.stack([(2 * out / 6 * 2 ** (3 - a)).norm() for a in range(4)])
    assert torch.allclose(hidden_grad_norms(model, x, y), expect, rtol=1e-12)


def test_hidden_grad_norms_leaves_model_and_threads_untouched():
    model = _shared_net()
    before = [p.detach().clone() for p in model.parameters()]
    threads = torch.get_num_threads()
    hidden_grad_norms(model, torch.randn(2, 5), torch.randn(2, 3))
    assert torch.get_num_threads() == threads
    for p, q in zip(model.parameters(), before):
        assert p.dtype == torch.float32 and p.grad is None and torch.equal(p, q)


def test_tiny_gradients_survive():
    # 40 sigmoid layers with a shrinking shared weight: float32 norms would underflow.
    lin = nn.Linear(8, 8)
    with torch.no_grad():
        lin.weight.mul_(0.5)
    model = nn.Sequential(nn.Linear(3, 8), nn.Sigmoid(), *[lin, nn.Sigmoid()] * 40, nn.Linear(8, 1))
    g = hidden_grad_norms(model, torch.randn(4, 3), torch.randn(4, 1))
    assert (g > 0).all() and g[0] < 1e-30


def test_with_activation_keeps_weights_and_sharing():
    model = _shared_net(reps=3)
    new = with_activation(model, nn.ReLU)
    assert [type(m) for m in new][1::2] == [nn.ReLU] * 4
    assert [type(m) for m in model][1] is nn.Tanh  # original untouched
    assert new[2] is new[4] is new[6] and new[2] is not model[2]  # still one shared Linear
    for p, q in zip(model.parameters(), new.parameters()):
        assert torch.equal(p, q)


def test_relu_mlp_distinct_layers_and_he_init():
    torch.manual_seed(0)
    net = relu_mlp(7, 256, 3, 2)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == 5 and len({id(m) for m in linears}) == 5
    assert net(torch.randn(4, 7)).shape == (4, 2)
    w = linears[2].weight
    assert abs(w.std().item() - (2 / 256) ** 0.5) < 0.05 * (2 / 256) ** 0.5
    assert all((m.bias == 0).all() for m in linears)
    shallow = relu_mlp(7, 16, 0, 2)  # one hidden layer: the control of the notebooks
    assert [type(m) for m in shallow] == [nn.Linear, nn.ReLU, nn.Linear]


def test_one_hidden_layer_has_the_models_sizes_and_learns_where_the_deep_model_cannot():
    model = _pirate(reps=30, width=32)  # sizes 6 -> 32 -> 1
    net = depth.one_hidden_layer(model, seed=5)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (net[0].in_features, net[0].out_features, net[2].out_features) == (6, 32, 1)
    ref = relu_mlp(6, 32, 0, 1, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), ref.parameters()))
    x, y = depth.regression_data(model, 16, seed=1)
    deep = depth.train_losses(model, x, y, steps=40, lr=0.02)
    shallow = depth.train_losses(net, x, y, steps=40, lr=0.02)
    assert min(deep) > 1 - 1e-6 and shallow[-1] < 0.5  # same steps: only the shallow one fits


def _pirate(reps=5, width=16):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, width), nn.Sigmoid(), *[nn.Linear(width, width), nn.Sigmoid()] * reps,
        nn.Linear(width, 1),
    )  # fmt: skip


def test_relu_mlp_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = relu_mlp(5, 8, 2, 1, seed=3), relu_mlp(5, 8, 2, 1, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = relu_mlp(5, 8, 2, 1, seed=4)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_reinitialised_keeps_sharing_is_seeded_and_touches_nothing_else():
    model = _pirate()
    before = copy.deepcopy(model.state_dict())
    state = torch.get_rng_state()
    a, b = depth.reinitialised(model, seed=1), depth.reinitialised(model, seed=1)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert a[2] is a[4] and a[2] is not model[2]  # still one shared Linear, a new object
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[2].weight, model[2].weight)
    # default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    assert a[2].weight.abs().max() <= 16**-0.5 and a[0].bias.abs().max() <= 6**-0.5
    # the result depends on the seed, not on the model's current weights
    with torch.no_grad():
        model[2].weight.fill_(3.0)
    c = depth.reinitialised(model, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_reinitialised_with_data_is_the_two_seeded_helpers():
    model = _pirate()
    state = torch.get_rng_state()
    net, (x, y) = depth.reinitialised_with_data(model, seed=1, data_seed=2, n=8)
    assert torch.equal(state, torch.get_rng_state())
    ref, (x2, y2) = depth.reinitialised(model, seed=1), depth.regression_data(model, 8, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), ref.parameters()))
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == (8, 6)


def test_tanh_xavier_is_glorot_uniform_keeps_sharing_and_touches_nothing_else():
    model = _pirate(reps=3, width=64)
    before = copy.deepcopy(model.state_dict())
    state = torch.get_rng_state()
    a, b = depth.tanh_xavier(model, seed=2), depth.tanh_xavier(model, seed=2)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert [type(m) for m in a][1::2] == [nn.Tanh] * 4 and a[2] is a[4] is a[6]
    for lin in (a[0], a[2], a[-1]):  # fan_in + fan_out = 70, 128, 65
        fan = lin.in_features + lin.out_features
        bound, w = (6 / fan) ** 0.5, lin.weight
        assert w.abs().max() <= bound and (lin.bias == 0).all()
        if w.numel() > 1000:  # 64 x 64: the uniform's variance 2 / fan within 10 %
            assert abs(w.var().item() - 2 / fan) < 0.1 * 2 / fan and w.abs().max() > 0.99 * bound
    assert not torch.equal(depth.tanh_xavier(model, seed=3)[2].weight, a[2].weight)


def test_hidden_spread_and_vanishing_against_plain_forward_passes():
    model = _pirate(reps=14)
    x, y = torch.randn(8, 6), torch.randn(8, 1)
    h, spreads = x.double(), []
    with torch.no_grad():
        for m in copy.deepcopy(model).double():
            h = m(h)
            if isinstance(m, nn.Sigmoid):
                spreads.append(h.std(0).mean())
    spreads = torch.stack(spreads)
    assert torch.allclose(depth.hidden_spread(model, x), spreads, rtol=1e-12, atol=0)
    v = depth.vanishing(model, x, y)
    g = _oracle(_pirate(reps=14), x, y)
    assert v.ratio == pytest.approx((g[0] / g[-1]).item(), rel=1e-9)
    assert v.per_layer == pytest.approx((g[0] / g[-1]).item() ** (1 / 14), rel=1e-9)
    assert v.spread_first == pytest.approx(spreads[0].item(), rel=1e-12)
    assert v.spread_last == pytest.approx(spreads[-1].item(), rel=1e-12)
    assert v.spread_per_layer == pytest.approx(
        (spreads[12] / spreads[0]).item() ** (1 / 12), rel=1e-9
    )
    assert "per layer" in str(v)


def test_per_layer_factor():
    assert depth.per_layer_factor(torch.tensor([1e-6, 1e-4, 1e-2, 1.0])) == pytest.approx(0.01)


def test_decay():
    d = depth.decay(torch.tensor([1e-6, 1e-3, 1e-4, 1e-2, 1.0], dtype=torch.float64))
    assert d.per_layer == pytest.approx(10 ** (-6 / 4)) and d.first_last == pytest.approx(1e-6)
    assert d.max_min == pytest.approx(1e6)
    up = depth.decay(torch.tensor([4.0, 1.0, 2.0]))  # first/last 2 over 2 layers; dips to 1
    assert up == (pytest.approx(2**0.5), pytest.approx(2.0), pytest.approx(4.0))
    assert "per layer" in str(up)


def test_regression_data_is_seeded_and_depends_on_the_input():
    model = _pirate()
    state = torch.get_rng_state()
    (x, y), (x2, y2) = (
        depth.regression_data(model, 32, seed=2),
        depth.regression_data(model, 32, seed=2),
    )
    assert torch.equal(state, torch.get_rng_state()) and torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (32, 6) and y.shape == (32, 1)
    fit = torch.linalg.lstsq(x, y).solution  # a linear function of x plus 0.1 noise
    assert (y - x @ fit).pow(2).mean() < 0.02 < y.var()


def test_train_losses_is_torch_sgd_on_a_copy():
    model = _pirate(reps=2)
    x, y = torch.randn(10, 6), torch.randn(10, 1)
    before = copy.deepcopy(model.state_dict())
    got = depth.train_losses(model, x, y, steps=5, lr=0.05)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    ref = copy.deepcopy(model).double()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    expect = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.mse_loss(ref(x.double()), y.double())
        loss.backward()
        opt.step()
        expect.append(loss.item() / y.double().var(unbiased=False).item())
    assert got == pytest.approx(expect, rel=1e-12)


def test_loss_trace_is_a_list_printed_with_four_decimals():
    trace = depth.LossTrace([1.17734, 1.0, 0.21509])
    assert trace == [1.17734, 1.0, 0.21509] and min(trace) == 0.21509 and trace[-1] == 0.21509
    assert str(trace) == f"{trace}" == "1.1773 1.0000 0.2151"
    model = _pirate(reps=1)
    trained = depth.train_losses(model, torch.randn(4, 6), torch.randn(4, 1), steps=2)
    assert isinstance(trained, depth.LossTrace) and len(trained) == 2


def test_train_losses_of_a_network_that_forgot_its_input_stays_at_the_constant_floor():
    # Deep shared sigmoid layers: the output no longer depends on x, so gradient descent
    # reaches the best constant predictor (ratio 1) and cannot go below it.
    model = _pirate(reps=30, width=32)
    x = torch.randn(16, 6)
    y = x[:, :1] + 0.1 * torch.randn(16, 1)
    trace = depth.train_losses(model, x, y, steps=40, lr=0.02)
    assert min(trace) > 1 - 1e-6 and trace[-1] < 1.001


def test_activation_curves_names_and_shapes():
    model = _pirate(reps=4)
    x, y = torch.randn(8, 6), torch.randn(8, 1)
    curves = depth.activation_curves(model, x, y, seed=0)
    assert list(curves) == [
        "sigmoid (as given)", "tanh, same weights", "tanh + Xavier init", "ReLU, same weights",
        "ReLU + He init, distinct layers",
    ]  # fmt: skip
    assert all(g.shape == (5,) for g in curves.values())
    assert torch.equal(
        curves["tanh + Xavier init"], hidden_grad_norms(depth.tanh_xavier(model, seed=0), x, y)
    )
    assert torch.equal(curves["sigmoid (as given)"], hidden_grad_norms(model, x, y))
    assert torch.equal(
        curves["tanh, same weights"], hidden_grad_norms(with_activation(model, nn.Tanh), x, y)
    )


def test_plot_grad_norms_draws_a_small_deterministic_png(monkeypatch):
    shown = []
    monkeypatch.setattr(plots, "show", lambda fig, alt: shown.append((plots.png_bytes(fig), alt)))
    curves = {"falls": torch.logspace(-6, 0, 7), "flat": torch.full((7,), 10.0)}
    depth.plot_grad_norms(curves, "t")
    depth.plot_grad_norms(curves, "t")
    (png, alt), (png2, _) = shown
    assert png.startswith(b"\x89PNG") and png == png2 and len(png) < 60_000 and alt == "t"
