"""CLEAR-MOT (MOTA, identity switches, fragmentations) and identity (IDF1) metrics.

For sequences where each detection already carries its ground-truth id (generated data, or
detections matched to the truth beforehand): per frame, ``gt_ids[i]`` is the true identity of
detection ``i`` and ``track_ids[i]`` the tracker's answer (0 = no track, a miss). There are no
false positives by construction; a truth object with no detection in a frame is counted by the
caller through ``num_gt_missed``.

Definitions (Bernardin & Stiefelhagen 2008; Ristani et al. 2016):

- miss: a truth object in a frame without a (non-zero) track id;
- identity switch: a truth object whose track id differs from the last id it had;
- fragmentation: a truth object's tracked run interrupted (tracked, untracked, tracked again);
- MOTA = 1 - (misses + false positives + identity switches) / truth objects;
- IDF1 = 2 IDTP / (truth objects + tracker outputs), IDTP from the one-to-one truth-id <->
  track-id matching with the most frames in common (scipy's linear_sum_assignment).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MotSummary:
    """Counts and scores over a sequence (see the module docstring)."""

    num_gt: int
    misses: int
    false_positives: int
    id_switches: int
    fragmentations: int
    mota: float
    idf1: float
    num_track_ids: int


def mot_summary(frames: Iterable[tuple[np.ndarray, np.ndarray]], num_gt_missed: int = 0,
                false_positives: int = 0) -> MotSummary:
    """Metrics of a sequence given per frame ``(gt_ids int [N], track_ids int [N])``."""
    last_id: dict[int, int] = {}
    tracked_before: dict[int, bool] = {}
    overlap: Counter = Counter()
    num_gt = num_gt_missed
    num_out = false_positives
    misses, switches, fragments = num_gt_missed, 0, 0
    for gt_ids, track_ids in frames:
        for gt, trk in zip(np.asarray(gt_ids).tolist(), np.asarray(track_ids).tolist()):
            num_gt += 1
            if trk == 0:
                misses += 1
                if tracked_before.get(gt):
                    tracked_before[gt] = False
                continue
            num_out += 1
            overlap[(gt, trk)] += 1
            if gt in last_id and last_id[gt] != trk:
                switches += 1
            if tracked_before.get(gt) is False:
                fragments += 1
            last_id[gt], tracked_before[gt] = trk, True
    idtp = _best_identity_overlap(overlap)
    mota = 1.0 - (misses + false_positives + switches) / num_gt if num_gt else 1.0
    idf1 = 2.0 * idtp / (num_gt + num_out) if num_gt + num_out else 1.0
    return MotSummary(num_gt=num_gt, misses=misses, false_positives=false_positives,
                      id_switches=switches, fragmentations=fragments, mota=mota, idf1=idf1,
                      num_track_ids=len({trk for _, trk in overlap}))


def _best_identity_overlap(overlap: Counter) -> int:
    """Frames in common of the best one-to-one truth <-> track id matching."""
    if not overlap:
        return 0
    gts = sorted({gt for gt, _ in overlap})
    trks = sorted({trk for _, trk in overlap})
    matrix = np.zeros((len(gts), len(trks)))
    gt_index = {g: i for i, g in enumerate(gts)}
    trk_index = {t: i for i, t in enumerate(trks)}
    for (gt, trk), count in overlap.items():
        matrix[gt_index[gt], trk_index[trk]] = count
    rows, cols = linear_sum_assignment(-matrix)
    return int(matrix[rows, cols].sum())
