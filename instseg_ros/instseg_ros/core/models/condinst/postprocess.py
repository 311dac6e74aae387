"""CondInst decoding as mmdetection 3.3's CondInst heads do it at test time.

Preprocessing: :func:`instseg_ros.core.models.condinst.preprocess.preprocess_batch` (Pillow
keep-ratio resize into (1333, 800), RGB, ``(x - mean) / std``, zero padding to a multiple of 32).

Boxes, per image: per level sigmoid class scores ``> conf_threshold`` over (point, class) pairs,
the ``nms_pre`` best; points at ``(cell + 0.5) * stride``; distance boxes clipped to the resized
(unpadded) image; score = class score x sigmoid(centerness); boxes with zero width or height
dropped; class-wise NMS; ``max_detections``; boxes divided by the resize factors.

Masks: the dynamic convs on the stride-8 prototypes with relative coordinates
``(point - (cell + 0.5) * 8) / (stride * 8)``; aligned x2 upsampling of the logits (stride 4);
sigmoid; aligned x4 upsampling of the probabilities; crop to the resized image; bilinear resize
to the source size; ``> mask_thr``. The last three linear steps are per-axis taps
(:func:`instseg_ros.core.ops.dynamic_masks.resample_taps`) evaluated only in each instance's
window (:func:`~instseg_ros.core.ops.dynamic_masks.mask_rois` on probabilities).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from instseg_ros.core.models.condinst.config import CondInstConfig
from instseg_ros.core.models.condinst.network import CondInstOutput, aligned_upsample
from instseg_ros.core.models.rtmdet.postprocess import select_after_nms
from instseg_ros.core.ops.dynamic_masks import AxisTaps, dynamic_mask_logits, resample_taps
from instseg_ros.core.ops.nms import top_scores
from instseg_ros.core.postprocess import InferenceParams

__all__ = ['Detections', 'detect', 'mask_probabilities', 'mask_taps']


class Detections(NamedTuple):
    """Kept detections of one image (device tensors, descending score).

    Attributes:
        boxes_xyxy: float32 ``[N, 4]`` source pixels.
        scores: float32 ``[N]`` class score x centerness; labels: int64 ``[N]`` 0-based.
        params: float32 ``[N, P]`` dynamic mask parameters.
        points_xy: float32 ``[N, 2]`` the detections' points in network-input pixels.
        strides: float32 ``[N]`` stride of each detection's level.
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    params: torch.Tensor
    points_xy: torch.Tensor
    strides: torch.Tensor


def _level_candidates(cls_logits: torch.Tensor, distances: torch.Tensor, centerness: torch.Tensor,
                      params: torch.Tensor, stride: int, conf: float, nms_pre: int,
                      class_keep: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """One level of one image (``[C, h, w]``, ``[4, h, w]``, ``[1, h, w]``, ``[P, h, w]``) ->
    (scores, labels, distances, centerness probs, params, points, strides) of its candidates."""
    num_classes, height, width = cls_logits.shape
    scores = cls_logits.permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
    if class_keep is not None:
        scores = scores * class_keep
    valid = scores > conf
    pairs = torch.nonzero(valid)  # [M, 2] (point, class), row-major
    kept, top = top_scores(scores[valid], nms_pre)
    points, labels = pairs[top].unbind(dim=1)
    xs = ((points % width).to(torch.float32) + 0.5) * stride
    ys = (torch.div(points, width, rounding_mode='floor').to(torch.float32) + 0.5) * stride
    return (kept, labels, distances.permute(1, 2, 0).reshape(-1, 4)[points],
            centerness.reshape(-1).sigmoid()[points], params.permute(1, 2, 0).reshape(height * width, -1)[points],
            torch.stack((xs, ys), dim=1), torch.full_like(xs, float(stride)))


def detect(output: CondInstOutput, index: int, resized_hw: tuple[int, int], source_hw: tuple[int, int],
           cfg: CondInstConfig, params: InferenceParams) -> Detections:
    """Boxes, scores, labels and mask parameters of image ``index`` of the batch after NMS.

    ``params``: ``conf_threshold`` is mmdet's ``score_thr`` (on class scores, before the
    centerness factor), ``nms_threshold`` its NMS IoU, ``max_detections`` its ``max_per_img``,
    ``score_threshold`` filters final scores after NMS (mmdet: none), ``class_ids`` zero other
    classes' scores first, ``class_agnostic`` one NMS over all classes.
    """
    device = output.prototypes.device
    class_keep = None
    if params.class_ids is not None:
        class_keep = torch.zeros(cfg.num_classes, device=device)
        class_keep[[i for i in params.class_ids if i < cfg.num_classes]] = 1.0
    parts = [_level_candidates(c[index].float(), d[index].float(), n[index].float(), p[index].float(), s,
                               params.conf_threshold, cfg.nms_pre, class_keep)
             for c, d, n, p, s in zip(output.cls_logits, output.box_distances, output.centerness,
                                      output.params, cfg.strides)]
    scores, labels, dist, center, kern, points, strides = (torch.cat(t) for t in zip(*parts))
    height, width = resized_hw
    limits = points.new_tensor([width, height, width, height])
    boxes = torch.cat((points - dist[:, :2], points + dist[:, 2:]), dim=1)
    boxes = torch.minimum(boxes.clamp(min=0.0), limits)
    scores = scores * center
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels, kern, points, strides = (t[valid] for t in (boxes, scores, labels, kern, points, strides))
    keep = select_after_nms(boxes, scores, labels, params)
    factors = boxes.new_tensor([width / source_hw[1], height / source_hw[0]]).repeat(2)
    return Detections(boxes[keep] / factors, scores[keep], labels[keep], kern[keep], points[keep], strides[keep])


def mask_probabilities(prototypes: torch.Tensor, det: Detections, cfg: CondInstConfig) -> torch.Tensor:
    """float32 ``[N, 2Hg, 2Wg]`` mask probabilities at stride 4 of ``prototypes`` float
    ``[K, Hg, Wg]`` (stride 8): dynamic convs, aligned x2 upsampling of the logits, sigmoid."""
    logits = dynamic_mask_logits(det.params, prototypes.float(), det.points_xy,
                                 det.strides * float(cfg.size_of_interest),
                                 grid_stride=float(cfg.mask_feat_stride), grid_offset=0.5,
                                 layout=cfg.mask_layout)
    factor = cfg.mask_feat_stride // cfg.mask_out_stride
    if logits.shape[0] == 0:  # replicate padding refuses an empty channel dimension
        return logits.new_zeros((0, factor * logits.shape[1], factor * logits.shape[2]))
    return aligned_upsample(logits[None], factor)[0].sigmoid()


def mask_taps(grid_hw: tuple[int, int], resized_hw: tuple[int, int], source_hw: tuple[int, int],
              factor: int = 4) -> tuple[AxisTaps, AxisTaps]:
    """Row and column taps from the stride-4 probability grid ``grid_hw`` to source pixels:
    aligned x``factor`` upsampling, crop to ``resized_hw``, bilinear resize to ``source_hw``."""

    def chain(crop: int, out: int):
        # rows only: column 0 of the aligned upsampling of a width-1 input is that input
        return lambda t: F.interpolate(aligned_upsample(t, factor)[:, :, :crop, :1], size=(out, 1),
                                       mode='bilinear', align_corners=False)

    taps_y = resample_taps(grid_hw[0], chain(resized_hw[0], source_hw[0]))
    taps_x = resample_taps(grid_hw[1], chain(resized_hw[1], source_hw[1]))
    return taps_y, taps_x
