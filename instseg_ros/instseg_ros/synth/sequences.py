"""Generated multi-object sequences with exact ground truth, for tracking tests and benchmarks.

Objects are discs or rectangles moving at constant velocity in the image plane (optionally
bouncing off the borders), each at its own depth. Every frame is z-buffered (the nearest object
owns a pixel), so objects that overlap occlude each other exactly; objects may leave the view
and come back. Each frame gives what the detector would: the visible mask ROIs, labels, scores
and 3D positions, plus the ground-truth object id of every detection.

Units: pixels (x right, y down) for the image, metres for depth, frames for time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from instseg_ros.core.encoding import masks_to_rois


@dataclass(frozen=True)
class MovingObject:
    """One object of a sequence.

    Attributes:
        gt_id: ground-truth identity (>= 1).
        label: class index.
        start_xy: centre (x, y) in pixels at frame 0.
        velocity_xy: pixels per frame.
        radius_px: disc radius, or half the side of a square (``shape='rect'``).
        depth_m: distance along the optical axis (smaller = in front).
        shape: 'disc' or 'rect'.
        bounce: reflect the motion at the image borders (else it leaves the view).
        frames: [first, last) frames in which the object exists (None = all).
    """

    gt_id: int
    label: int
    start_xy: tuple[float, float]
    velocity_xy: tuple[float, float]
    radius_px: float = 15.0
    depth_m: float = 1.5
    shape: str = 'disc'
    bounce: bool = True
    frames: tuple[int, int] | None = None

    def center(self, frame: int, width: int, height: int) -> tuple[float, float]:
        """Centre (x, y) at ``frame``: straight motion, mirrored at the borders if ``bounce``."""
        x = self.start_xy[0] + self.velocity_xy[0] * frame
        y = self.start_xy[1] + self.velocity_xy[1] * frame
        if self.bounce:
            x = _reflect(x, self.radius_px, width - 1 - self.radius_px)
            y = _reflect(y, self.radius_px, height - 1 - self.radius_px)
        return x, y


def _reflect(value: float, low: float, high: float) -> float:
    """Fold ``value`` into [low, high] as a ball bouncing between two walls."""
    span = high - low
    if span <= 0:
        return low
    phase = (value - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


@dataclass
class SequenceFrame:
    """What a detector reports for one frame, with the truth.

    Attributes:
        index: frame number in the sequence.
        rois: visible mask ROIs ``(x0, y0, bool crop [h, w])``.
        labels: int64 [N].  scores: float32 [N].  gt_ids: int64 [N] true identities.
        positions_m: N float64 [3] optical-frame centres (x right, y down, z forward) [m].
    """

    index: int
    rois: list
    labels: np.ndarray
    scores: np.ndarray
    gt_ids: np.ndarray
    positions_m: list = field(default_factory=list)


def render_sequence(objects: list[MovingObject], num_frames: int, width: int = 320,
                    height: int = 240, fx: float = 262.5, min_visible_px: int = 20,
                    frames: list[int] | None = None) -> list[SequenceFrame]:
    """Render ``frames`` (default ``range(num_frames)``) of a sequence.

    An object whose visible part has fewer than ``min_visible_px`` pixels is not detected in
    that frame (fully occluded or out of view).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    order = sorted(objects, key=lambda o: -o.depth_m)  # far to near: the nearest is drawn last
    out = []
    for index in (range(num_frames) if frames is None else frames):
        owner = np.zeros((height, width), dtype=np.int32)  # 0 = background, else position+1
        present = []
        for obj in order:
            if obj.frames is not None and not obj.frames[0] <= index < obj.frames[1]:
                continue
            cx, cy = obj.center(index, width, height)
            if obj.shape == 'disc':
                inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= obj.radius_px ** 2
            else:
                inside = (np.abs(xs - cx) <= obj.radius_px) & (np.abs(ys - cy) <= obj.radius_px)
            present.append((obj, cx, cy))
            owner[inside] = len(present)
        masks = np.stack([owner == i + 1 for i in range(len(present))]) if present else \
            np.zeros((0, height, width), dtype=bool)
        keep = [i for i in range(len(present)) if masks[i].sum() >= min_visible_px]
        rois = masks_to_rois(masks[keep]) if keep else []
        chosen = [present[i] for i in keep]
        out.append(SequenceFrame(
            index=index, rois=rois,
            labels=np.array([o.label for o, _, _ in chosen], dtype=np.int64),
            scores=np.full(len(chosen), 0.9, dtype=np.float32),
            gt_ids=np.array([o.gt_id for o, _, _ in chosen], dtype=np.int64),
            positions_m=[np.array([(cx - (width - 1) / 2) * o.depth_m / fx,
                                   (cy - (height - 1) / 2) * o.depth_m / fx, o.depth_m])
                         for o, cx, cy in chosen]))
    return out


def lane_objects(count: int, width: int = 320, height: int = 240, speed_px: float = 3.0,
                 num_classes: int = 5, seed: int = 0) -> list[MovingObject]:
    """``count`` objects on separate horizontal lanes (never overlapping), bouncing left-right,
    random classes and speeds up to ``speed_px`` per frame."""
    rng = np.random.default_rng(seed)
    lane = height / count
    radius = max(3.0, min(lane / 2 - 2, 25.0))
    return [MovingObject(gt_id=i + 1, label=int(rng.integers(num_classes)),
                         start_xy=(float(rng.uniform(radius, width - radius)), lane * (i + 0.5)),
                         velocity_xy=(float(rng.uniform(0.5, 1.0) * speed_px
                                            * rng.choice([-1, 1])), 0.0),
                         radius_px=radius, depth_m=float(rng.uniform(1.0, 2.0)),
                         shape=('disc', 'rect')[i % 2])
            for i in range(count)]
