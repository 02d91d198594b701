"""Evidence helpers for the Detection and Segmentation questions (Part 3).

Masks are boolean tensors of one shape; boxes are (x1, y1, x2, y2) with x2 > x1, y2 > y1.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["mask_iou_dice", "box_iou", "average_precision"]

Box = tuple[float, float, float, float]


def mask_iou_dice(pred: Tensor, gt: Tensor) -> tuple[float, float]:
    """(IoU, Dice) of two boolean masks, from pixel counts: |P&G| / |P|G|, 2|P&G| / (|P| + |G|)."""
    inter = (pred & gt).sum().item()
    return inter / (pred | gt).sum().item(), 2 * inter / (pred.sum() + gt.sum()).item()


def box_iou(a: Box, b: Box) -> float:
    """IoU of two axis-aligned boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def average_precision(
    scores: Sequence[float], boxes: Sequence[Box], gts: Sequence[Box], thr: float = 0.5
) -> float:
    """AP of one class on one image (VOC 2010+ / COCO style, all-point interpolation).

    Detections are taken in decreasing score order; each is a true positive if its best
    IoU with a not-yet-matched ground-truth box is >= thr (that box is then matched),
    otherwise a false positive. AP = sum over ranks of (recall increase) x (max precision
    at this or any later rank).
    """
    matched: set[int] = set()
    hits = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        cand = [(box_iou(boxes[i], g), j) for j, g in enumerate(gts) if j not in matched]
        best_iou, best = max(cand, default=(0.0, -1))
        if best_iou >= thr:
            matched.add(best)
        hits.append(best_iou >= thr)
    tp = torch.tensor(hits, dtype=torch.float64).cumsum(0)
    precision, recall = tp / torch.arange(1, len(hits) + 1), tp / len(gts)
    p_interp = precision.flip(0).cummax(0).values.flip(0)
    return (torch.diff(recall, prepend=torch.zeros(1)) * p_interp).sum().item()
