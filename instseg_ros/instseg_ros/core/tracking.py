"""Instance tracking across frames: stable ids from ROI-mask IoU, class and 3D distance.

Pure numpy + scipy (never rclpy or messages). One :class:`Tracker` per camera stream: the
node keeps one per camera namespace, the bag tool one per image topic.

Association, once per processed frame:

1. every live track predicts where it is now: its last mask ROI shifted by its pixel velocity
   (and its last 3D position moved by its 3D velocity) times the frames since it was last seen;
2. candidate pairs (detection, track) must have the same class and pass the gate: the 3D
   distance ``<= max_distance_m`` when both have a position, otherwise mask IoU ``>= min_iou``
   or half of the smaller mask inside the other (an object emerging from behind another);
3. cost of a pair: ``1 - IoU`` without depth, ``(1 - w) * (1 - IoU) + w * d / max_distance_m``
   with depth (``w = distance_weight``); the optimal assignment (scipy's
   ``linear_sum_assignment``) picks the pairs.

Mask IoU is computed on the ROI crops only (the intersection of the two boxes), never on full
frames; box overlap is checked for all pairs at once first, so only overlapping same-class
pairs touch mask pixels.

Life cycle: an unmatched detection starts a *tentative* track; a track is *confirmed* (gets its
id) when it has been matched in ``min_hits`` frames; a tentative track that misses a frame is
dropped; a confirmed one is kept ``max_age`` frames without a match (predicting its motion),
then dropped. While a mask is much smaller than the largest one seen lately (the object goes behind
another or out of view) the track keeps its last full-size mask, moved with its velocity, as
the reference to match, and keeps its velocity, so the object is found again when it
re-appears. Ids are 1, 2, 3, ... in order of confirmation, unique and never reused while the
tracker object lives (``reset()`` keeps the counter). 0 means "not (yet) tracked".

Frames the node dropped (newest-frame-only worker) are gaps, not errors: pass
``frames_elapsed`` (> 1) when the caller knows frames were skipped, or leave it at 1 and let
``max_age`` count processed frames; either way the motion prediction scales with the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

Roi = tuple[int, int, np.ndarray]

#: cost given to pairs that fail the gate (never chosen: filtered after the assignment).
_INFEASIBLE = 1e6

#: a match is taken as occluded (the track keeps its reference mask, moved with the velocity)
#: when its mask area is below _OCCLUDED_AREA x the track's peak area, which decays by
#: _PEAK_DECAY per frame (objects that recede shrink slower than that).
_OCCLUDED_AREA = 0.8
_PEAK_DECAY = 0.95

#: without 3D, a pair below min_iou still passes when this fraction of the smaller mask overlaps.
_MIN_COVER = 0.5


@dataclass(frozen=True)
class TrackerParams:
    """Tracker settings (the node's ``track_*`` parameters).

    Attributes:
        enabled: False: ``update`` returns zeros and keeps no state.
        min_hits: frames a track must be matched in before it gets an id (1 = at once).
        max_age: frames a confirmed track survives without a match.
        min_iou: gate on mask IoU (after motion prediction) for pairs without 3D positions.
        max_distance_m: gate on the 3D distance [m] for pairs where both have a position.
        distance_weight: weight of the normalised 3D distance in the cost (0..1); the IoU term
            gets ``1 - distance_weight``. Only used when both have a position.
        predict_motion: shift the last ROI / position by the track's constant velocity.
        new_track_min_score: detections scoring below this may continue tracks but never start
            one (0 = every detection may start a track).
    """

    enabled: bool = True
    min_hits: int = 3
    max_age: int = 15
    min_iou: float = 0.1
    max_distance_m: float = 0.3
    distance_weight: float = 0.5
    predict_motion: bool = True
    new_track_min_score: float = 0.0

    def __post_init__(self) -> None:
        if self.min_hits < 1 or self.max_age < 0:
            raise ValueError(f'min_hits must be >= 1 and max_age >= 0, got {self.min_hits}, '
                             f'{self.max_age}')
        if not 0.0 <= self.min_iou <= 1.0 or not 0.0 <= self.distance_weight <= 1.0:
            raise ValueError('min_iou and distance_weight must lie in [0, 1]')
        if self.max_distance_m <= 0.0:
            raise ValueError(f'max_distance_m must be > 0, got {self.max_distance_m}')


class _Track:
    """One track's state (pixels for 2D, metres for 3D, velocities per frame)."""

    __slots__ = ('label', 'x0', 'y0', 'crop', 'area', 'center_px', 'velocity_px', 'position_m',
                 'velocity_m', 'hits', 'since_update', 'age', 'track_id', 'peak_area',
                 'last_box')

    def __init__(self, label: int, roi: Roi, position_m: np.ndarray | None):
        self.label = label
        self.hits, self.since_update, self.age, self.track_id = 1, 0, 1, 0
        self.velocity_px = np.zeros(2)
        self.velocity_m = np.zeros(3)
        self.position_m = position_m
        self._set_roi(roi)
        self.peak_area = float(self.area)
        self.last_box = _box_of(roi)  # of the last matched detection (the velocity's reference)

    def _set_roi(self, roi: Roi) -> None:
        self.x0, self.y0, self.crop = int(roi[0]), int(roi[1]), roi[2]
        self.area = int(np.count_nonzero(self.crop))
        h, w = self.crop.shape
        self.center_px = np.array([self.x0 + w / 2.0, self.y0 + h / 2.0])

    def predicted_offset(self, predict: bool,
                         image_size: tuple[int, int] | None) -> tuple[int, int, bool]:
        """Integer pixel shift (dx, dy) of the last ROI to where the track should be now, and
        whether it was clamped: with ``image_size`` (height, width) the predicted box stops at
        the image border, so an object that left the view is looked for where it left."""
        if not predict:
            return 0, 0, False
        shift = self.velocity_px * self.since_update
        dx, dy = int(round(shift[0])), int(round(shift[1]))
        if image_size is None:
            return dx, dy, False
        h, w = self.crop.shape
        cdx = min(max(dx, -self.x0), max(int(image_size[1]) - w - self.x0, -self.x0))
        cdy = min(max(dy, -self.y0), max(int(image_size[0]) - h - self.y0, -self.y0))
        return cdx, cdy, (cdx, cdy) != (dx, dy)

    def predicted_position(self, predict: bool) -> np.ndarray | None:
        """Last 3D position moved by the 3D velocity (unmoved when ``predict`` is false)."""
        if self.position_m is None or not predict:
            return self.position_m
        return self.position_m + self.velocity_m * self.since_update

    def update(self, roi: Roi, position_m: np.ndarray | None) -> None:
        """Matched in this frame: move to ``roi`` and blend the new velocity in."""
        gap = max(self.since_update, 1)
        old_position, new_box = self.position_m, _box_of(roi)
        new_area = int(np.count_nonzero(roi[2]))
        self.peak_area = max(new_area, self.peak_area * _PEAK_DECAY ** gap)
        if new_area < _OCCLUDED_AREA * self.peak_area:
            # the mask shrank a lot: the object is being occluded (or leaves the view): keep the
            # velocity, and the last full-size mask, moved by it, as the reference to match
            dx, dy, _ = self.predicted_offset(True, None)
            self._set_roi((self.x0 + dx, self.y0 + dy, self.crop))
        else:
            measured = _edge_motion(self.last_box, new_box) / gap
            self.velocity_px = measured if self.hits == 1 else 0.5 * (self.velocity_px + measured)
            self._set_roi(roi)
        self.last_box = new_box
        if position_m is not None and old_position is not None:
            measured_m = (position_m - old_position) / gap
            self.velocity_m = measured_m if self.hits == 1 else 0.5 * (self.velocity_m + measured_m)
        if position_m is not None:
            self.position_m = position_m
        self.hits += 1
        self.since_update = 0


def roi_overlap(a: Roi, a_area: int, b: Roi, b_area: int) -> tuple[float, float]:
    """IoU and intersection-over-the-smaller-mask of two ROI masks, computed on the
    intersection of their boxes only.

    Args:
        a, b: ``(x0, y0, bool crop [h, w])`` (see :mod:`instseg_ros.core.encoding`).
        a_area, b_area: True-pixel counts of the crops.

    Returns:
        (IoU, intersection / min(a_area, b_area)), both 0 when the boxes do not overlap.
    """
    ax0, ay0, ac = a
    bx0, by0, bc = b
    ix0, iy0 = max(ax0, bx0), max(ay0, by0)
    ix1, iy1 = min(ax0 + ac.shape[1], bx0 + bc.shape[1]), min(ay0 + ac.shape[0], by0 + bc.shape[0])
    if ix0 >= ix1 or iy0 >= iy1:
        return 0.0, 0.0
    inter = np.count_nonzero(ac[iy0 - ay0:iy1 - ay0, ix0 - ax0:ix1 - ax0]
                             & bc[iy0 - by0:iy1 - by0, ix0 - bx0:ix1 - bx0])
    union, smaller = a_area + b_area - inter, min(a_area, b_area)
    return (float(inter) / union if union > 0 else 0.0,
            float(inter) / smaller if smaller > 0 else 0.0)


def _boxes(rois: Sequence[Roi], offsets: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """int64 [N, 4] half-open boxes (x0, y0, x1, y1) of ROIs, optionally shifted by (dx, dy)."""
    out = np.empty((len(rois), 4), dtype=np.int64)
    for i, (x0, y0, crop) in enumerate(rois):
        dx, dy = offsets[i] if offsets is not None else (0, 0)
        out[i] = (x0 + dx, y0 + dy, x0 + dx + crop.shape[1], y0 + dy + crop.shape[0])
    return out


def _box_of(roi: Roi) -> np.ndarray:
    """float [4] half-open box (x0, y0, x1, y1) of one ROI."""
    x0, y0, crop = roi
    return np.array([x0, y0, x0 + crop.shape[1], y0 + crop.shape[0]], dtype=np.float64)


def _edge_motion(old_box: np.ndarray, new_box: np.ndarray) -> np.ndarray:
    """Pixel motion (dx, dy) between two boxes of one object, robust to occlusion.

    Per axis: when both edges moved the same way (or one stayed), the larger move (the edge
    that is not being covered or uncovered by another object or the image border moves with the
    object, the other one lags); when they moved apart or together (the object approaches or recedes), the mean.
    """
    moves = (new_box - old_box).reshape(2, 2)  # rows: start edges (x0, y0), end edges (x1, y1)
    start, end = moves[0], moves[1]
    larger = np.where(np.abs(start) >= np.abs(end), start, end)
    return np.where(start * end >= 0, larger, 0.5 * (start + end))


def positions_from_instances_3d(instances_3d: Sequence[Any] | None, count: int) -> list:
    """Per-instance position [3] (metres) or None, from ``FrameResult.instances_3d`` items
    (duck-typed: ``has_position``, ``position_m``); all None when there is no depth."""
    if instances_3d is None:
        return [None] * count
    return [np.asarray(item.position_m, dtype=np.float64)
            if item is not None and item.has_position else None for item in instances_3d]


class Tracker:
    """Associates each frame's instances with tracks; see the module docstring.

    Example::

        tracker = Tracker(TrackerParams(min_hits=3, max_age=15))
        ids, ages = tracker.update(result.rois, result.labels, result.scores,
                                   positions_from_instances_3d(result.instances_3d, len(result)),
                                   image_size=result.image_size)
    """

    def __init__(self, params: TrackerParams = TrackerParams()):
        self.params = params
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def num_tracks(self) -> int:
        """Live tracks (tentative and confirmed)."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget all tracks (ids already given are still never reused)."""
        self._tracks = []

    def update(self, rois: Sequence[Roi], labels: Any, scores: Any = None,
               positions_m: Sequence[Any] | None = None,
               frames_elapsed: int = 1,
               image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Associate one frame's instances with the tracks.

        Args:
            rois: N ``(x0, y0, bool crop [h, w])`` tight mask ROIs (``FrameResult.rois``).
            labels: N class indices (int).
            scores: N scores in [0, 1] or None (only used by ``new_track_min_score``).
            positions_m: None, or N items each None (no valid depth) or 3 floats [m], camera
                optical frame (see :func:`positions_from_instances_3d`).
            frames_elapsed: frames since the previous call (>= 1; > 1 when frames were skipped).
            image_size: (height, width) of the image (``FrameResult.image_size``); when given,
                the motion prediction of a lost track stops at the image border.

        Returns:
            ``track_ids`` int64 [N] (0 = tentative / tracking off) and ``track_ages`` int32 [N]
            (frames since the track was first seen, 1 = new in this frame; 0 when off).
        """
        count = len(rois)
        ids, ages = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int32)
        if not self.params.enabled:
            self._tracks = []
            return ids, ages
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        positions = [None] * count if positions_m is None else [
            None if p is None else np.asarray(p, dtype=np.float64).reshape(3) for p in positions_m]
        if labels.shape[0] != count or len(positions) != count:
            raise ValueError(f'{count} rois but {labels.shape[0]} labels, '
                             f'{len(positions)} positions')
        for track in self._tracks:
            track.since_update += max(int(frames_elapsed), 1)
            track.age += max(int(frames_elapsed), 1)
        matched = self._associate(rois, labels, positions, image_size)
        for det, track in matched.items():
            track.update(rois[det], positions[det])
        unmatched = set(range(count)) - set(matched)
        self._prune()
        min_score = self.params.new_track_min_score
        score_list = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        for det in sorted(unmatched):
            if score_list is not None and score_list[det] < min_score:
                continue
            track = _Track(int(labels[det]), rois[det], positions[det])
            self._tracks.append(track)
            matched[det] = track
        for det, track in matched.items():
            if track.track_id == 0 and track.hits >= self.params.min_hits:
                track.track_id, self._next_id = self._next_id, self._next_id + 1
            ids[det], ages[det] = track.track_id, track.age
        return ids, ages

    def _prune(self) -> None:
        """Drop unmatched tentative tracks and confirmed ones unseen for more than max_age."""
        self._tracks = [t for t in self._tracks if t.since_update == 0 or (
            t.track_id != 0 and t.since_update <= self.params.max_age)]

    def _associate(self, rois: Sequence[Roi], labels: np.ndarray, positions: list,
                   image_size: tuple[int, int] | None) -> dict[int, _Track]:
        """Optimal detection -> track assignment among gated pairs: {detection index: track}."""
        tracks, params = self._tracks, self.params
        if not rois or not tracks:
            return {}
        predict = params.predict_motion
        offsets = [t.predicted_offset(predict, image_size) for t in tracks]
        track_rois = [(t.x0 + dx, t.y0 + dy, t.crop) for t, (dx, dy, _) in zip(tracks, offsets)]
        det_boxes, trk_boxes = _boxes(rois), _boxes(track_rois)
        same_class = labels[:, None] == np.array([t.label for t in tracks])[None, :]
        overlap = ((np.minimum(det_boxes[:, None, 2], trk_boxes[None, :, 2])
                    > np.maximum(det_boxes[:, None, 0], trk_boxes[None, :, 0]))
                   & (np.minimum(det_boxes[:, None, 3], trk_boxes[None, :, 3])
                      > np.maximum(det_boxes[:, None, 1], trk_boxes[None, :, 1])))
        det_areas = [int(np.count_nonzero(crop)) for _, _, crop in rois]
        # a track held at the border (it left the view) keeps its last 3D position too
        predicted = [t.predicted_position(predict and not clamped)
                     for t, (_, _, clamped) in zip(tracks, offsets)]
        cost = np.full((len(rois), len(tracks)), _INFEASIBLE)
        for det, trk in zip(*np.nonzero(same_class)):
            iou, cover = (roi_overlap(rois[det], det_areas[det], track_rois[trk],
                                      tracks[trk].area) if overlap[det, trk] else (0.0, 0.0))
            cost[det, trk] = self._pair_cost(iou, cover, positions[det], predicted[trk])
        rows, cols = linear_sum_assignment(cost)
        return {int(r): tracks[c] for r, c in zip(rows, cols) if cost[r, c] < _INFEASIBLE}

    def _pair_cost(self, iou: float, cover: float, det_position: np.ndarray | None,
                   track_position: np.ndarray | None) -> float:
        """Gated cost of one same-class pair (``_INFEASIBLE`` when the gate fails).

        Without 3D, the pair passes when IoU >= min_iou or when at least half of the smaller
        mask lies in the other (a sliver of an object emerging from behind another one)."""
        params = self.params
        if det_position is not None and track_position is not None:
            distance = float(np.linalg.norm(det_position - track_position))
            if distance > params.max_distance_m:
                return _INFEASIBLE
            weight = params.distance_weight
            return (1.0 - weight) * (1.0 - iou) + weight * distance / params.max_distance_m
        if iou <= 0.0 or (iou < params.min_iou and cover < _MIN_COVER):
            return _INFEASIBLE
        return 1.0 - iou
