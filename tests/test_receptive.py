"""Tests for hw4/receptive.py. Oracles: the analytic receptive_field, the output-size
formula of the Conv2d docs, and path counts built by hand (outer products of 1-D counts)."""

import torch
from conftest import notebook_cnn
from torch import nn

from hw4 import plots, receptive
from hw4.answers import receptive_field


def _conv_out(n, k, s=1, d=1, p=0):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def test_growth_table_matches_the_analytic_field_the_size_formula_and_the_weight_count():
    table = receptive.growth_table(64)
    assert list(table) == list(receptive.VARIANTS)
    for name, (rf, jump, out, weights) in table.items():
        model = receptive.VARIANTS[name]()
        assert receptive_field(model) == ((rf, rf), (jump, jump))
        n = 64
        for conv in model:
            n = _conv_out(n, conv.kernel_size[0], conv.stride[0], conv.dilation[0], conv.padding[0])
        assert out == n
        assert weights == 9 * len(model)  # single channel, 3x3 kernels
    # the hand-computed values quoted in the notebooks
    assert table["4 x conv 3x3, stride 2"] == (31, 16, 4, 36)  # 1+2(1+2+4+8) = 31
    assert table["4 x conv 3x3, dilation 1,2,4,8"] == (31, 1, 64, 36)
    assert table["4 x conv 3x3, dilation 2"] == (17, 1, 64, 36)  # constant d: 1 + 4 * 2 * 2, linear


def test_growth_rows_are_plain_tuples_that_print_as_one_table_row():
    row = receptive.Growth(9, 1, 64, 36)
    assert row == (9, 1, 64, 36)
    assert isinstance(receptive.growth_table(64)["3 x conv 3x3"], receptive.Growth)
    assert str(row) == "RF  9, jump  1, output 64x64, 36 weights"
    assert str(receptive.Growth(31, 16, 4, 36)) == "RF 31, jump 16, output 4x4, 36 weights"


def test_helpers_leave_the_global_rng_and_thread_count_alone():
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    receptive.growth_table(64)
    receptive.dilation_holes(2)
    assert torch.equal(state, torch.get_rng_state()) and torch.get_num_threads() == threads


def test_influence_map_counts_paths():
    # Three all-ones 3x3 convolutions on a 7x7 input: paths from row offset i are the
    # 1-D counts (1, 3, 6, 7, 6, 3, 1) (ways to sum three steps in {-1, 0, 1}); 2-D: outer product.
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(3)])
    counts = torch.tensor([1.0, 3, 6, 7, 6, 3, 1], dtype=torch.float64)
    m = receptive.influence_map(model, (1, 9, 9))  # output 3x3; central pixel (1, 1)
    assert m.shape == (9, 9) and m.dtype == torch.float64
    assert torch.equal(m[1:8, 1:8], torch.outer(counts, counts))
    assert m[0].abs().sum() == 0 and m[:, 8].abs().sum() == 0
    assert m[4, 4] == 49 and m[1, 1] == 1


def test_influence_map_sums_over_channels_and_ignores_weights_and_relus():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 1, 1))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.bias.fill_(-1.0)
    m = receptive.influence_map(model, (2, 5, 5))
    # each input pixel of the central 3x3 window: 2 input channels x 3 middle channels
    assert torch.equal(m[1:4, 1:4], torch.full((3, 3), 6.0, dtype=torch.float64))


def test_influence_map_of_the_notebook_cnn():
    m = receptive.influence_map(notebook_cnn(), (1, 3, 136, 136))
    top, left, h, w = receptive.bounding_box(m)
    assert (h, w) == (112, 112)
    # 7 x 7 taps of the dilated layer, 16 pixels apart, each over a 16 x 16 block:
    # the map repeats with period 16 inside the box.
    box = m[top : top + h, left : left + w]
    assert torch.allclose(box[:16, :16], box[16:32, 48:64]) and (box > 0).all()
    # the dark seams between the 16 x 16 blocks are fewer paths, not holes
    assert receptive.zeros_inside(m) == 0 and box[:, 15].min() > 0 and box[:, 15].max() < box.max()


def test_dilation_holes():
    m = receptive.dilation_holes(2)
    top, left, h, w = receptive.bounding_box(m)
    assert (h, w) == (9, 9) and int(m.ne(0).sum()) == 25
    used = m[top : top + 9, left : left + 9].ne(0)
    assert used[::2, ::2].all() and not used[1::2].any() and not used[:, 1::2].any()


def test_zeros_inside():
    m = torch.zeros(6, 7)
    m[1, 2] = m[4, 5] = 1.0  # box 4 x 4 with 2 nonzero entries
    assert receptive.zeros_inside(m) == 14
    m[2:4, 3:5] = 2.0
    assert receptive.zeros_inside(m) == 10
    assert receptive.zeros_inside(receptive.dilation_holes(2)) == 81 - 25


def test_bounding_box():
    m = torch.zeros(6, 7)
    m[1, 2] = m[4, 5] = 1.0
    assert receptive.bounding_box(m) == (1, 2, 4, 4)
    try:
        receptive.bounding_box(torch.zeros(3, 3))
    except ValueError as e:
        assert "no nonzero" in str(e)
    else:
        raise AssertionError("no ValueError")


def test_plot_influence_draws_a_small_deterministic_png(monkeypatch):
    shown = []
    monkeypatch.setattr(plots, "show", lambda fig, alt: shown.append((plots.png_bytes(fig), alt)))
    m = receptive.influence_map(notebook_cnn(), (3, 136, 136))
    receptive.plot_influence(m, "t")
    receptive.plot_influence(m, "t")
    (png, alt), (png2, _) = shown
    assert png.startswith(b"\x89PNG") and png == png2 and len(png) < 60_000
    assert "112 x 112" in alt
