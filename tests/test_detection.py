"""Tests for hw4/detection.py. Oracles: hand counts, rasterised boxes, a recall-grid integral."""

import pytest
import torch

from hw4.detection import average_precision, box_iou, mask_iou_dice


def test_mask_iou_dice_by_hand():
    pred, gt = torch.zeros(10, 10, dtype=torch.bool), torch.zeros(10, 10, dtype=torch.bool)
    pred[0:6, 0:6] = True
    gt[2:8, 2:8] = True  # overlap 4x4 = 16, union 36 + 36 - 16 = 56
    assert mask_iou_dice(pred, gt) == pytest.approx((16 / 56, 32 / 72))
    assert mask_iou_dice(gt, gt) == (1.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_box_iou_matches_rasterised_masks(seed):
    g = torch.Generator().manual_seed(seed)
    boxes = []
    for _ in range(2):
        x1, y1 = torch.randint(0, 10, (2,), generator=g).tolist()
        w, h = torch.randint(1, 10, (2,), generator=g).tolist()
        boxes.append((x1, y1, x1 + w, y1 + h))
    masks = []
    for x1, y1, x2, y2 in boxes:
        m = torch.zeros(20, 20, dtype=torch.bool)
        m[y1:y2, x1:x2] = True
        masks.append(m)
    assert box_iou(*boxes) == pytest.approx(mask_iou_dice(*masks)[0])


GTS = [(0, 0, 10, 10), (20, 20, 30, 30)]
BOXES = [(1, 1, 10, 10), (21, 20, 30, 31), (50, 50, 60, 60)]  # two hits, one false box


def _ap_by_integral(scores, boxes, gts):
    # Oracle: integral over recall r of max{precision at ranks whose recall >= r},
    # with the true/false positives counted by hand for these boxes.
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    hits = [boxes[i] != (50, 50, 60, 60) for i in order]
    prec, rec, tp = [], [], 0
    for k, h in enumerate(hits, 1):
        tp += h
        prec.append(tp / k)
        rec.append(tp / len(gts))
    grid = torch.linspace(0, 1, 100_001)[1:]
    vals = [max([p for p, r in zip(prec, rec) if r >= t - 1e-12], default=0.0) for t in grid[::100]]
    return sum(vals) / len(vals)


@pytest.mark.parametrize(
    "scores, expected", [([0.9, 0.8, 0.7], 1.0), ([0.8, 0.7, 0.9], 2 / 3), ([0.9, 0.7, 0.8], 5 / 6)]
)
def test_average_precision(scores, expected):
    assert average_precision(scores, BOXES, GTS) == pytest.approx(expected)
    assert average_precision(scores, BOXES, GTS) == pytest.approx(
        _ap_by_integral(scores, BOXES, GTS), abs=2e-3
    )


def test_average_precision_counts_duplicates_and_misses():
    dup = [(1, 1, 10, 10), (0, 0, 10, 9)]  # both match gt 0; the second is a duplicate
    assert average_precision([0.9, 0.8], dup, GTS) == pytest.approx(0.5)  # recall 1/2 at P = 1
    assert average_precision([0.9], [(50, 50, 60, 60)], GTS) == 0.0
