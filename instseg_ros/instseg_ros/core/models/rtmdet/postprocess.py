"""RTMDet-Ins pre- and post-processing as mmdetection 3.3's test pipeline and head do it.

Preprocess: keep-ratio resize (cv2 bilinear) so the long side is ``input_size``
(``new = int(old * scale + 0.5)``), pad bottom/right with grey 114 to ``input_size`` square,
``(x - mean) / std`` in BGR order (the network sees BGR).

Postprocess per image: per level sigmoid scores > threshold over (point, class) pairs, the
``nms_pre`` best, distance boxes clamped to the padded input, rescaled by ``1 / scale``,
zero-size boxes dropped, class-wise NMS, ``max_detections``; mask logits from the dynamic convs
on the stride-8 prototype grid, upsampled x8 (bilinear), resized to ``ceil(input / scale)``
(bilinear; mmdet multiplies the rows by the *width* factor and the columns by the height one),
cropped to the source image, ``sigmoid > mask_threshold``; evaluated only in each instance's
window (:mod:`instseg_ros.core.ops.dynamic_masks`).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, nms

from instseg_ros.core.models.rtmdet.config import RtmdetInsConfig
from instseg_ros.core.models.rtmdet.head import HeadOutput
from instseg_ros.core.ops.dynamic_masks import AxisTaps, DynamicMaskLayout, dynamic_mask_logits, resample_taps
from instseg_ros.core.ops.nms import top_scores
from instseg_ros.core.postprocess import InferenceParams


class Letterbox(NamedTuple):
    """Geometry of one image: ``source_hw`` and ``resized_hw`` (height, width) in pixels and
    ``scale_wh`` = (resized w / source w, resized h / source h)."""

    source_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    scale_wh: tuple[float, float]


def letterbox(source_hw: tuple[int, int], input_size: int) -> Letterbox:
    """mmcv's keep-ratio rescale of an image of ``source_hw`` into an ``input_size`` square."""
    height, width = int(source_hw[0]), int(source_hw[1])
    factor = min(input_size / max(height, width), input_size / min(height, width))
    new_w, new_h = int(width * factor + 0.5), int(height * factor + 0.5)
    return Letterbox((height, width), (new_h, new_w), (new_w / width, new_h / height))


def preprocess(images_bgr: Sequence[np.ndarray], cfg: RtmdetInsConfig, device: torch.device
               ) -> tuple[torch.Tensor, list[Letterbox]]:
    """uint8 ``[H, W, 3]`` BGR images -> float32 ``[B, 3, S, S]`` normalised BGR on ``device``."""
    size = cfg.input_size
    batch = np.full((len(images_bgr), size, size, 3), cfg.pad_value, dtype=np.uint8)
    boxes = []
    for index, image in enumerate(images_bgr):
        geometry = letterbox(image.shape[:2], size)
        new_h, new_w = geometry.resized_hw
        batch[index, :new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        boxes.append(geometry)
    tensor = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).to(torch.float32)
    mean = torch.tensor(cfg.mean_bgr, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std_bgr, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return ((tensor - mean) / std).contiguous(), boxes


class Detections(NamedTuple):
    """Kept detections of one image (device tensors, descending score).

    Attributes:
        boxes_xyxy: float32 ``[N, 4]`` source pixels (may reach into the padding's image of the source).
        scores: float32 ``[N]``; labels: int64 ``[N]`` 0-based.
        kernels: float32 ``[N, P]`` dynamic parameters; centers_xy: float32 ``[N, 2]`` input
            pixels; strides: float32 ``[N]`` stride of each detection's level.
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    kernels: torch.Tensor
    centers_xy: torch.Tensor
    strides: torch.Tensor


def _level_candidates(cls_logits, distances, kernels, stride: int, params: InferenceParams,
                      nms_pre: int, class_keep: torch.Tensor | None):
    """One level of one image ([C, h, w] ...) -> (scores, labels, distances, kernels, centers)."""
    num_classes, height, width = cls_logits.shape
    scores = cls_logits.permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
    if class_keep is not None:
        scores = scores * class_keep
    valid = scores > params.conf_threshold
    kept = scores[valid]
    pairs = torch.nonzero(valid)  # [M, 2] (point, class), row-major as mmdet's
    kept, top = top_scores(kept, nms_pre)
    points, labels = pairs[top].unbind(dim=1)
    xs = (points % width).to(torch.float32) * stride
    ys = torch.div(points, width, rounding_mode='floor').to(torch.float32) * stride
    dist = distances.permute(1, 2, 0).reshape(-1, 4)[points]
    kern = kernels.permute(1, 2, 0).reshape(height * width, -1)[points]
    return kept, labels, dist, kern, torch.stack((xs, ys), dim=1)


def detect(output: HeadOutput, index: int, geometry: Letterbox, cfg: RtmdetInsConfig,
           params: InferenceParams) -> Detections:
    """Boxes, scores, labels and mask parameters of image ``index`` after NMS."""
    class_keep = None
    if params.class_ids is not None:
        class_keep = torch.zeros(cfg.num_classes, device=output.prototypes.device)
        class_keep[[i for i in params.class_ids if i < cfg.num_classes]] = 1.0
    parts = [_level_candidates(c[index].float(), d[index].float(), k[index].float(), s, params,
                               cfg.nms_pre, class_keep)
             for c, d, k, s in zip(output.cls_logits, output.box_distances, output.kernels, cfg.strides)]
    scores, labels, dist, kern, centers = (torch.cat(t) for t in zip(*parts))
    strides = torch.cat([torch.full((p[0].numel(),), float(s), device=scores.device)
                         for p, s in zip(parts, cfg.strides)])
    size = float(cfg.input_size)
    boxes = torch.cat((centers - dist[:, :2], centers + dist[:, 2:]), dim=1).clamp(0.0, size)
    scale_w, scale_h = geometry.scale_wh
    boxes = boxes * boxes.new_tensor([1 / scale_w, 1 / scale_h, 1 / scale_w, 1 / scale_h])
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels, kern, centers, strides = (t[valid] for t in (boxes, scores, labels, kern,
                                                                         centers, strides))
    keep = select_after_nms(boxes, scores, labels, params)
    return Detections(boxes[keep], scores[keep], labels[keep], kern[keep], centers[keep], strides[keep])


def select_after_nms(boxes_xyxy: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                     params: InferenceParams) -> torch.Tensor:
    """int64 ``[K]`` indices kept, by descending score: NMS at ``params.nms_threshold`` (per class,
    or over all with ``class_agnostic``), the first ``max_detections``, then ``score > score_threshold``.
    ``boxes_xyxy`` float ``[N, 4]``, ``scores`` ``[N]``, ``labels`` int64 ``[N]``."""
    if params.class_agnostic:
        keep = nms(boxes_xyxy, scores, params.nms_threshold)
    else:
        keep = batched_nms(boxes_xyxy, scores, labels, params.nms_threshold)
    keep = keep[:params.max_detections]
    return keep[scores[keep] > params.score_threshold]


def mask_logits(prototypes: torch.Tensor, det: Detections, cfg: RtmdetInsConfig) -> torch.Tensor:
    """float32 ``[N, Hg, Wg]`` mask logits on the stride-8 grid (relative coordinates divided by
    8 x the detection's stride)."""
    layout = DynamicMaskLayout(cfg.num_prototypes, cfg.dyconv_channels, cfg.num_dyconvs)
    return dynamic_mask_logits(det.kernels, prototypes.float(), det.centers_xy, det.strides * 8.0,
                               grid_stride=float(cfg.strides[0]), layout=layout)


def mask_taps(grid_hw: tuple[int, int], stride: int, input_size: int, geometry: Letterbox
              ) -> tuple[AxisTaps, AxisTaps]:
    """Row and column taps grid -> source pixels of mmdet's two bilinear resizes and crop."""
    inverse = (1 / geometry.scale_wh[0], 1 / geometry.scale_wh[1])
    rows_out = math.ceil(grid_hw[0] * stride * inverse[0])  # mmdet: rows x width factor
    cols_out = math.ceil(grid_hw[1] * stride * inverse[1])
    height, width = geometry.source_hw

    def chain(first: int, second: int):
        return lambda t: F.interpolate(F.interpolate(t, size=(first, 1), mode='bilinear', align_corners=False),
                                       size=(second, 1), mode='bilinear', align_corners=False)

    taps_y = resample_taps(grid_hw[0], chain(grid_hw[0] * stride, rows_out), out_size=min(height, rows_out))
    taps_x = resample_taps(grid_hw[1], chain(grid_hw[1] * stride, cols_out), out_size=min(width, cols_out))
    return taps_y, taps_x
