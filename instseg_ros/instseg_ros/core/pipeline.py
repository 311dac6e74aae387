"""One frame through the whole pure pipeline: image -> Instances -> mask ROIs -> 3D.

The ROS node converts messages to arrays, calls ``FramePipeline.process`` off the executor
thread, and packs the ``FrameResult`` into messages. Nothing here imports rclpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from instseg_ros.core.geometry import (CameraIntrinsics, DepthParams, Instance3D,
                                       project_instances, scale_mask_roi)
from instseg_ros.core.segmenter import InferenceParams, Segmenter

MaskRoi = tuple[int, int, np.ndarray]


@dataclass
class DepthInput:
    """Aligned depth for one colour frame.

    Attributes:
        depth_m: float32 [Hd, Wd] metres, NaN where invalid (see geometry.depth_to_meters).
        intrinsics: pinhole intrinsics of the depth image.
    """

    depth_m: np.ndarray
    intrinsics: CameraIntrinsics


@dataclass
class FrameResult:
    """Host-side result of one frame.

    Attributes:
        image_size: (height, width) of the source image.
        boxes_xyxy: float32 [N, 4] pixels.  scores: float32 [N].  labels: int64 [N] (0-based).
        rois: per instance (x0, y0, mask crop bool [h, w]) -- the tight box of the mask.
        instances_3d: per instance Instance3D, or None when no depth was given.
        points_m: per instance float32 [M, 3] optical-frame points (only if asked), else None.
        timings_ms: per stage: preprocess, forward, postprocess (incl. the mask ROIs), encode (empty /
            min-area filter into host arrays), depth.
    """

    image_size: tuple[int, int]
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    rois: list[MaskRoi]
    instances_3d: list[Instance3D] | None = None
    points_m: list[np.ndarray] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class FramePipeline:
    """Runs a :class:`~instseg_ros.core.segmenter.Segmenter` (YOLACT or Mask R-CNN) and the host-side
    steps (ROI encoding, depth projection) for one frame.

    Attributes:
        segmenter: the segmenter; ``predictor`` is the same object (older name, used by the node:
            ``predictor.name``, ``predictor.device``).
        family: the model family of ``segmenter`` (a key of core.segmenter.BUILDERS), '' if unknown.
    """

    def __init__(self, segmenter: Segmenter, family: str = ''):
        self.segmenter = segmenter
        self.family = family

    @property
    def predictor(self) -> Segmenter:
        return self.segmenter

    @property
    def class_names(self) -> Sequence[str]:
        return self.predictor.class_names

    def process(self, image_bgr: np.ndarray, params: InferenceParams, *,
                min_mask_area: int = 0) -> FrameResult:
        """Segment one image: host arrays and tight mask ROIs (``Segmenter.predict_rois``: no full-frame masks).

        Args:
            image_bgr: uint8 [H, W, 3] BGR image.
            params: thresholds, top_k and class filter for this call.
            min_mask_area: drop instances whose mask has fewer pixels (empty masks always go).
        """
        detections = self.predictor.predict_rois(image_bgr, color_order='bgr', params=params)
        return _to_result(detections, image_bgr.shape, dict(self.predictor.last_timings_ms),
                          min_mask_area)

    def process_batch(self, images_bgr: Sequence[np.ndarray], params: InferenceParams, *,
                      min_mask_area: int = 0) -> list[FrameResult]:
        """:meth:`process` of several images with one forward pass (offline tools).

        The same detections as :meth:`process` frame by frame (up to float rounding of the batched
        forward); each result's timings are the batch's stage times divided by the batch size.
        """
        if len(images_bgr) == 0:
            return []
        batch = self.predictor.predict_rois_batch(images_bgr, color_order='bgr', params=params)
        share = {k: v / len(images_bgr) for k, v in self.predictor.last_timings_ms.items()}
        return [_to_result(detections, image.shape, dict(share), min_mask_area)
                for detections, image in zip(batch, images_bgr)]

    def add_depth(self, result: FrameResult, depth: DepthInput, depth_params: DepthParams,
                  want_points: bool = False) -> None:
        """Place every instance of ``result`` in 3D (fills instances_3d, points_m if asked).

        Masks are resampled to the depth image's resolution when it differs from the colour one.
        """
        start = time.perf_counter()
        height, width = result.image_size
        depth_h, depth_w = depth.depth_m.shape[:2]
        rois = result.rois
        if (depth_h, depth_w) != (height, width):
            rois = [scale_mask_roi(x0, y0, crop, depth_w / width, depth_h / height)
                    for x0, y0, crop in rois]
        out = project_instances(rois, depth.depth_m, depth.intrinsics, depth_params,
                                return_points=want_points)
        if want_points:
            result.instances_3d, result.points_m = out
        else:
            result.instances_3d = out
        result.timings_ms['depth'] = (time.perf_counter() - start) * 1e3


def _to_result(detections, image_shape: Sequence[int], timings: dict[str, float],
               min_mask_area: int) -> FrameResult:
    """FrameResult of one image's RoiDetections: empty masks and masks under min_mask_area go."""
    start = time.perf_counter()
    rois = detections.rois
    # empty masks have no ROI (None); count pixels only when a minimum is set
    keep = [i for i, roi in enumerate(rois) if roi is not None
            and (min_mask_area <= 1 or int(roi[2].sum()) >= min_mask_area)]
    index = np.asarray(keep, dtype=np.int64)
    result = FrameResult(
        image_size=(int(image_shape[0]), int(image_shape[1])),
        boxes_xyxy=detections.boxes_xyxy[index].astype(np.float32, copy=False).reshape(-1, 4),
        scores=detections.scores[index].astype(np.float32, copy=False),
        labels=detections.labels[index].astype(np.int64, copy=False),
        rois=[rois[i] for i in keep], timings_ms=timings)
    timings['encode'] = (time.perf_counter() - start) * 1e3
    return result
