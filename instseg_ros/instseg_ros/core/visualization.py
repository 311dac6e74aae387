"""Drawing helpers: class palette, 2-D overlay and 3-D marker geometry as plain arrays.

Pure numpy / cv2; never imports rclpy or message types (the node turns the arrays returned
here into ``visualization_msgs``). A mask *ROI* is the triple ``(x0, y0, crop)`` of
``core.encoding``: ``crop`` is a bool ``[h, w]`` array whose pixel ``(r, c)`` is pixel
``(y0 + r, x0 + c)`` of the frame; ``None`` stands for an instance with an empty mask.

3-D helpers work in the camera *optical* frame (x right, y DOWN, z forward) unless told
otherwise, so "above" an object means a SMALLER y.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

Roi = tuple[int, int, np.ndarray]

_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
_HUE_OFFSET = 0.11  # start away from pure red so class 0 is a pleasant orange
_SATURATIONS = (0.85, 0.65, 1.0)
_VALUES = (0.95, 0.75)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_PAD = 2  # pixels of label background around the text

# The 8 corners of the unit cube centred on the origin, and the 12 edges as corner-index pairs.
_UNIT_CORNERS = np.array(
    [[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)], dtype=np.float64)
_BOX_EDGES = np.array(
    [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count('1') == 1], dtype=np.intp)


# ----------------------------------------------------------------------------------------------
# Palette
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _class_rgb_float(class_id: int) -> tuple[float, float, float]:
    """Palette entry of ``class_id`` as (r, g, b) floats in 0..1 (golden-ratio hue stepping)."""
    k = int(class_id)
    hue = (_HUE_OFFSET + k * _GOLDEN_RATIO_CONJUGATE) % 1.0
    sat = _SATURATIONS[k % len(_SATURATIONS)]
    val = _VALUES[k % len(_VALUES)]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (r, g, b)


def class_color(class_id: int) -> tuple[int, int, int]:
    """Fixed colour of a class as a (b, g, r) tuple of ints in 0..255 (OpenCV order).

    Deterministic (no RNG, no state): hue steps by the golden-ratio conjugate per class id and
    saturation / value cycle with coprime periods, so neighbouring ids look different and the
    first 80 ids are pairwise distinct. Same hue as ``class_color_rgb_float`` (for RViz).
    """
    r, g, b = _class_rgb_float(class_id)
    return (int(round(b * 255.0)), int(round(g * 255.0)), int(round(r * 255.0)))


def class_color_rgb_float(class_id: int) -> tuple[float, float, float]:
    """Colour of a class as (r, g, b) floats in 0..1, for ``std_msgs/ColorRGBA`` of markers.

    Equals ``class_color(class_id)`` (reversed, divided by 255), so overlay and markers match.
    """
    b, g, r = class_color(class_id)
    return (r / 255.0, g / 255.0, b / 255.0)


# ----------------------------------------------------------------------------------------------
# 2-D overlay
# ----------------------------------------------------------------------------------------------

def _clip_roi(roi: Roi, height: int, width: int) -> tuple[int, int, int, int, np.ndarray] | None:
    """``(fx0, fy0, fx1, fy1, crop part inside the frame)`` of an ROI, or None when it lies outside."""
    x0, y0, crop = int(roi[0]), int(roi[1]), roi[2]
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + crop.shape[1], width), min(y0 + crop.shape[0], height)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    return fx0, fy0, fx1, fy1, crop[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


@lru_cache(maxsize=512)
def _blend_matrix(color_bgr: tuple[int, int, int], alpha: float) -> np.ndarray:
    """float64 ``[3, 4]`` affine map of ``cv2.transform``: channel c -> ``(1 - alpha) * p + alpha * color[c]``
    (read-only; cached)."""
    matrix = np.zeros((3, 4), dtype=np.float64)
    matrix[[0, 1, 2], [0, 1, 2]] = 1.0 - alpha
    matrix[:, 3] = alpha * np.asarray(color_bgr, dtype=np.float64)
    matrix.flags.writeable = False
    return matrix


def _blend_roi(out: np.ndarray, roi: Roi, color_bgr: tuple[int, int, int], alpha: float) -> None:
    """Blend ``color_bgr`` into uint8 ``out [H, W, 3]`` in place where the ROI crop is True:
    ``(1 - alpha) * pixel + alpha * color``, rounded by OpenCV (float32 arithmetic, so within 1 of
    the exactly rounded value). Work is proportional to the crop; parts outside the frame are ignored.
    """
    part = _clip_roi(roi, out.shape[0], out.shape[1])
    if part is None:
        return
    fx0, fy0, fx1, fy1, crop = part
    region = out[fy0:fy1, fx0:fx1]  # rows are contiguous: OpenCV writes into this view in place
    blended = cv2.transform(region, _blend_matrix(color_bgr, alpha))  # per channel: a * p + b
    mask = crop if crop.dtype == np.bool_ else crop != 0
    cv2.copyTo(blended, mask.view(np.uint8), region)


def _text_color(color_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (Rec. 601 luma threshold 140)."""
    b, g, r = color_bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def label_text(name: str, score: float, depth_text: str | None = None,
               track_id: int = 0) -> str:
    """Label string ``'name 0.87'`` (``'name #12 0.87'`` for a tracked instance, track_id > 0),
    plus ``' 1.52 m'``-style ``depth_text`` when given."""
    text = f'{name} #{int(track_id)}' if track_id else name
    text += f' {float(score):.2f}'
    if depth_text:
        text += f' {depth_text}'
    return text


def label_rect(text: str, box_x0: float, box_y0: float, image_shape: Sequence[int],
               font_scale: float = 0.5) -> tuple[int, int, int, int, int]:
    """Where the filled label background of ``text`` goes for a box with top-left (box_x0, box_y0).

    The label sits just above the box top edge, or just below it when there is no room above;
    it is shifted left to stay inside the frame when possible. Returns integer pixel coordinates
    ``(x0, y0, x1, y1, baseline_y)``: the background covers rows ``y0..y1-1`` and columns
    ``x0..x1-1``; the text is drawn with its origin at ``(x0 + pad, baseline_y)``.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, 1)
    box_w = tw + 2 * _LABEL_PAD
    box_h = th + base + 2 * _LABEL_PAD
    x0 = int(round(box_x0))
    x0 = max(0, min(x0, width - box_w))
    top = int(round(box_y0))
    y0 = top - box_h if top - box_h >= 0 else max(top, 0)
    y0 = min(y0, max(height - box_h, 0))
    return x0, y0, x0 + box_w, y0 + box_h, y0 + _LABEL_PAD + th


def _draw_label(out: np.ndarray, text: str, box_x0: float, box_y0: float,
                color_bgr: tuple[int, int, int], font_scale: float) -> None:
    """Filled label background in the class colour with contrasting text, in place on ``out``."""
    x0, y0, x1, y1, baseline = label_rect(text, box_x0, box_y0, out.shape, font_scale)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color_bgr, thickness=-1)
    cv2.putText(out, text, (x0 + _LABEL_PAD, baseline), _FONT, font_scale,
                _text_color(color_bgr), 1, cv2.LINE_AA)


def _class_name(class_names: Sequence[str], label: int) -> str:
    """``class_names[label]``, or the number itself when the label is out of range."""
    return str(class_names[label]) if 0 <= label < len(class_names) else str(label)


def draw_overlay(image_bgr: np.ndarray,
                 mask_rois: Sequence[Roi | None],
                 boxes_xyxy: np.ndarray,
                 labels: np.ndarray,
                 scores: np.ndarray,
                 class_names: Sequence[str],
                 alpha: float = 0.45,
                 draw_boxes: bool = True,
                 draw_labels: bool = True,
                 draw_masks: bool = True,
                 font_scale: float = 0.5,
                 line_thickness: int = 2,
                 depth_text: Sequence[str | None] | None = None,
                 track_ids: Sequence[int] | None = None) -> np.ndarray:
    """Draw detections on a copy of a BGR image; the input is never modified.

    Args:
        image_bgr: uint8 ``[H, W, 3]``.
        mask_rois: per instance ``(x0, y0, crop bool [h, w])`` or ``None`` (no mask); entry ``i``
            belongs to detection ``i``. May be shorter than N (the rest have no mask drawn).
        boxes_xyxy: float ``[N, 4]`` boxes in pixels (x0, y0, x1, y1); non-finite boxes are skipped.
        labels: int ``[N]`` 0-based class indices into ``class_names``.
        scores: float ``[N]`` confidences, printed with two decimals.
        class_names: names of the classes (an out-of-range label prints as its number).
        alpha: mask opacity; inside a mask a pixel becomes
            ``round((1 - alpha) * pixel + alpha * class_color)`` (OpenCV's float32 arithmetic: within 1
            of the exact value); masks are blended in order, so overlaps are blended twice.
        draw_boxes / draw_labels / draw_masks: toggle each layer.
        font_scale, line_thickness: OpenCV text scale and box line thickness in pixels.
        depth_text: optional per-instance extra text (e.g. ``'1.52 m'``), ``None`` to omit.
        track_ids: optional per-instance track ids; labels read ``'ring #12 0.98'`` (0: no id).

    Returns:
        A new uint8 ``[H, W, 3]`` image. Masks are blended first (per ROI, so the cost is
        proportional to the mask boxes, not the frame), then boxes, then labels on top.
    """
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image_bgr must be uint8 [H, W, 3], got {image.dtype} {image.shape}')
    out = np.array(image, copy=True, order='C')
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    labels_arr = np.asarray(labels).reshape(-1).astype(np.int64)
    scores_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(boxes)
    if len(labels_arr) != n or len(scores_arr) != n:
        raise ValueError(f'boxes ({n}), labels ({len(labels_arr)}) and scores ({len(scores_arr)}) '
                         'must have the same length')
    if len(mask_rois) > n:
        raise ValueError(f'{len(mask_rois)} mask ROIs for {n} detections')
    if depth_text is not None and len(depth_text) != n:
        raise ValueError(f'depth_text has {len(depth_text)} entries for {n} detections')
    colors = [class_color(int(c)) for c in labels_arr]

    if draw_masks and alpha > 0.0:
        for i, roi in enumerate(mask_rois):
            if roi is not None and roi[2].size:
                _blend_roi(out, roi, colors[i], float(alpha))

    finite = np.isfinite(boxes).all(axis=1)
    if draw_boxes:
        for i in range(n):
            if finite[i]:
                x0, y0, x1, y1 = (int(round(v)) for v in boxes[i].tolist())
                cv2.rectangle(out, (x0, y0), (x1, y1), colors[i], int(line_thickness))

    if draw_labels:
        for i in range(n):
            if not finite[i]:
                continue
            extra = depth_text[i] if depth_text is not None else None
            track = int(track_ids[i]) if track_ids is not None else 0
            text = label_text(_class_name(class_names, int(labels_arr[i])), scores_arr[i], extra,
                              track)
            _draw_label(out, text, boxes[i, 0], boxes[i, 1], colors[i], font_scale)
    return out


# ----------------------------------------------------------------------------------------------
# 3-D marker geometry
# ----------------------------------------------------------------------------------------------

def box_corners(center_m: Sequence[float], size_m: Sequence[float]) -> np.ndarray:
    """The 8 corners (float64 ``[8, 3]``) of the axis-aligned box of given centre and full size."""
    center = np.asarray(center_m, dtype=np.float64).reshape(3)
    size = np.asarray(size_m, dtype=np.float64).reshape(3)
    return center + _UNIT_CORNERS * size


def box_marker_geometry(center_m: Sequence[float], size_m: Sequence[float]) -> np.ndarray:
    """Points of a ``LINE_LIST`` marker drawing the 12 edges of an axis-aligned box.

    Args:
        center_m: (3,) box centre in metres.
        size_m: (3,) full box extent along x, y, z in metres.

    Returns:
        float64 ``[24, 3]``: consecutive pairs ``(2k, 2k + 1)`` are the two ends of edge ``k``.
    """
    corners = box_corners(center_m, size_m)
    return corners[_BOX_EDGES.reshape(-1)]


def cube_pose_scale(center_m: Sequence[float] | np.ndarray, size_m: Sequence[float] | np.ndarray,
                    min_thickness_m: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Position and scale of ``CUBE`` markers (identity orientation) for axis-aligned boxes.

    Every scale component is at least ``min_thickness_m`` (default 1 cm) so flat or degenerate
    objects stay visible. ``center_m`` / ``size_m`` are (3,) or [N, 3]; returns
    ``(position float64, scale float64)`` of the same shape.
    """
    position = np.array(center_m, dtype=np.float64, copy=True)
    size = np.abs(np.asarray(size_m, dtype=np.float64))
    _check_xyz(position, size)
    return position, np.maximum(size, float(min_thickness_m))


def _check_xyz(*arrays: np.ndarray) -> None:
    for array in arrays:
        if array.shape[-1:] != (3,) or array.ndim > 2:
            raise ValueError(f'expected (3,) or [N, 3] coordinates, got shape {array.shape}')


def label_positions(center_m: Sequence[float] | np.ndarray, size_m: Sequence[float] | np.ndarray,
                    margin_m: float = 0.05, up: Sequence[float] = (0.0, -1.0, 0.0)) -> np.ndarray:
    """Where a ``TEXT_VIEW_FACING`` label goes: ``margin_m`` beyond the top of each box.

    Args:
        center_m, size_m: (3,) or [N, 3] box centres and full sizes in metres.
        up: unit "up" direction of the frame. Default ``(0, -1, 0)``: in the camera optical
            frame y points DOWN, so "above" means a SMALLER y. Pass ``(0, 0, 1)`` for a
            z-up frame such as ``base_link``.

    Returns:
        float64, shape of ``center_m``: ``center + up * (|size . up| / 2 + margin_m)``.
    """
    center = np.asarray(center_m, dtype=np.float64)
    size = np.abs(np.asarray(size_m, dtype=np.float64))
    _check_xyz(center, size)
    up_vec = np.asarray(up, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(up_vec))
    if norm == 0.0:
        raise ValueError('up must be a non-zero vector')
    up_vec = up_vec / norm
    half_extent = 0.5 * (size @ np.abs(up_vec))
    return center + up_vec * (np.asarray(half_extent)[..., None] + float(margin_m))


def text_label(name: str, score: float, center_m: Sequence[float],
               size_m: Sequence[float] = (0.0, 0.0, 0.0), margin_m: float = 0.05,
               up: Sequence[float] = (0.0, -1.0, 0.0),
               depth_text: str | None = None) -> tuple[str, np.ndarray]:
    """Text and position of a ``TEXT_VIEW_FACING`` marker placed above one box.

    Args:
        name, score: printed as ``'name 0.87'`` (plus ``depth_text`` when given).
        center_m, size_m, margin_m, up: as :func:`label_positions`, for a (3,) box.

    Returns:
        ``(text, position float64 (3,))``.
    """
    position = label_positions(np.reshape(center_m, 3), np.reshape(size_m, 3), margin_m, up)
    return label_text(name, score, depth_text), position


def depth_texts(instances_3d) -> list[str | None] | None:
    """Overlay text per instance: its distance ``'1.30 m'`` (z of the position, metres) when it
    has a 3D position, else None; None when there was no depth at all."""
    if instances_3d is None:
        return None
    return [f'{inst.position_m[2]:.2f} m' if inst.has_position else None
            for inst in instances_3d]
