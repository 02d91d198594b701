"""Tests for hw4/depth.py; the oracle is plain autograd on explicitly split networks."""

import torch
from torch import nn

from hw4.depth import grad_norms_svg, hidden_grad_norms, relu_mlp, with_activation


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


def test_grad_norms_svg_draws_each_curve_in_log10():
    import xml.etree.ElementTree as ET

    curves = {"falls": torch.logspace(-6, 0, 7), "flat & <x>": torch.full((7,), 10.0)}
    svg = grad_norms_svg(curves, title="t")
    assert svg == grad_norms_svg(curves, title="t")  # byte-stable output
    root = ET.fromstring(svg)  # well-formed, names escaped
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    assert len(lines) == 2
    pts = [[tuple(map(float, p.split(","))) for p in line.get("points").split()] for line in lines]
    falls, flat = (pts[0], pts[1]) if pts[0][0][1] != pts[0][-1][1] else (pts[1], pts[0])
    assert len(falls) == len(flat) == 7
    xs = [x for x, _ in falls]
    assert xs == sorted(xs) and len(set(xs)) == 7
    # log10: equal steps per decade, and smaller norms lower on the page (larger y).
    dys = [b[1] - a[1] for a, b in zip(falls, falls[1:])]
    assert all(abs(d - dys[0]) < 0.11 for d in dys) and dys[0] < 0
    assert len({y for _, y in flat}) == 1 and flat[0][1] < falls[-1][1]
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "flat & <x>" in texts and "t" in texts
