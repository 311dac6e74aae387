"""Predictor: numpy image(s) in, :class:`Instances` out, everything on one device.

Results stay on the predictor's device; the caller moves them (``instances.to('cpu')``) when needed.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from instseg_ros.core.checkpoint import load_model
from instseg_ros.core.classes import COCO_CLASSES, load_class_names, sidecar_class_names
from instseg_ros.core.network import TorchNetwork
from instseg_ros.core.postprocess import InferenceParams, RoiDetections, postprocess, postprocess_rois
from instseg_ros.core.precision import PRECISIONS, resolve_precision
from instseg_ros.core.preprocess import preprocess
from instseg_ros.core.structures import Instances

__all__ = ['BACKENDS', 'InferenceParams', 'PRECISIONS', 'Predictor', 'RoiDetections', 'default_class_names',
           'resolve_device']

ClassNames = Sequence[str] | str | os.PathLike | None

#: network backends: PyTorch, or the ONNX export run by ONNX Runtime / OpenVINO (CPU)
BACKENDS = ('torch', 'onnxruntime', 'openvino')


def resolve_device(device: torch.device | str = 'auto') -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (or a torch.device) -> torch.device.

    'auto' picks CUDA when available. A CUDA device requested on a host without CUDA gives a
    ``RuntimeWarning`` and the CPU. A CUDA index beyond the visible devices or a string that is not
    a device name raises ``ValueError``.
    """
    if isinstance(device, str) and device.strip().lower() == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        resolved = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as exc:  # torch: "Expected one of cpu, cuda, ... at start of"
        raise ValueError(f"device {str(device)!r} is not a device name (auto, cpu, cuda, cuda:N)"
                         ) from exc
    if resolved.type != 'cuda':
        return resolved
    if not torch.cuda.is_available():
        warnings.warn(f'device {str(resolved)!r} requested but CUDA is not available; using the CPU',
                      RuntimeWarning, stacklevel=2)
        return torch.device('cpu')
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f'{resolved} requested but only {torch.cuda.device_count()} CUDA device(s) visible')
    return resolved


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """Names for a model with ``num_classes`` (incl. background): COCO for 81, else 'class_<i>'."""
    if num_classes - 1 == len(COCO_CLASSES):
        return COCO_CLASSES
    return tuple(f'class_{i}' for i in range(num_classes - 1))


def _class_names(class_names: ClassNames, num_classes: int) -> tuple[str, ...]:
    """Names by 0-based label; ValueError when their count is not ``num_classes - 1``."""
    if class_names is None:
        return default_class_names(num_classes)
    if isinstance(class_names, (str, os.PathLike)):
        names = load_class_names(Path(class_names))
    else:
        names = tuple(str(n) for n in class_names)
    if len(names) != num_classes - 1:
        raise ValueError(f'{len(names)} class names for a model with {num_classes - 1} classes; pass '
                         f'a class_names_file with {num_classes - 1} names, one per line, in label order')
    return names


class Predictor:
    """Runs a YOLACT model on uint8 images.

    Args:
        model: ``Yolact`` (moved to ``device``, put in eval mode and converted in place to the
            precision), or an exported network from :func:`instseg_ros.core.exported.load_network`.
        cfg: its ``ModelConfig``.
        device: see :func:`resolve_device`.
        half: legacy alias of ``precision='fp16'``.
        class_names: names by 0-based label, or a file for :func:`load_class_names`; default COCO for
            81 classes, else 'class_<i>'.
        precision: 'fp32' (default) | 'bf16' | 'fp16' for the network part only (torch backend);
            unsupported combinations give one ``RuntimeWarning`` and fp32
            (:func:`instseg_ros.core.precision.resolve_precision`).
        channels_last: memory format override (None: per device and precision).

    Attributes:
        precision: the precision that runs ('fp32', 'bf16', 'fp16'); backend: 'torch', 'onnxruntime'
            or 'openvino'; model: the torch module (None for exported backends).
        last_timings_ms: milliseconds of the last call: 'preprocess', 'forward', 'postprocess'
            (device-synchronised on CUDA).
    """

    def __init__(self, model, cfg, device: torch.device | str = 'cpu', half: bool = False,
                 class_names: ClassNames = None, precision: str | None = None,
                 channels_last: bool | None = None) -> None:
        self.device = resolve_device(device)
        if isinstance(model, nn.Module):
            resolved = resolve_precision(precision, self.device, half, channels_last)
            self.network = TorchNetwork(model, self.device, resolved)
            self.model = self.network.model
        else:  # an exported network: it runs in its own precision, on the CPU
            self.network = model
            self.model = None
        self.backend = self.network.backend
        self.precision = self.network.precision.name
        self.half = self.precision == 'fp16'
        self.dtype = self.network.precision.dtype
        self.cfg = cfg
        self.class_names = _class_names(class_names, cfg.num_classes)
        self.last_timings_ms: dict[str, float] = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cuda',
                        half: bool = False, class_names: ClassNames = None,
                        num_classes: int | None = None, precision: str | None = None,
                        backend: str = 'torch') -> 'Predictor':
        """Load ``path`` with ``checkpoint.load_model`` (preset 'auto' infers it) and wrap it.

        Without ``class_names``, names from a ``<stem>.json`` side-car (instseg-train) are used.
        ``backend`` 'onnxruntime' / 'openvino' run the ONNX export of the checkpoint (``path`` may be
        the ``.onnx`` file of ``instseg-export``, or a checkpoint, exported on first use; see
        :func:`instseg_ros.core.exported.load_network`).
        """
        backend = str(backend).strip().lower()
        if backend not in BACKENDS:
            raise ValueError(f'backend {backend!r} is not one of {", ".join(BACKENDS)}')
        resolved = resolve_device(device)
        if backend != 'torch':
            from instseg_ros.core.exported import load_network  # optional packages, imported on use
            network, cfg, names = load_network(path, backend, preset=preset, device=resolved,
                                               precision=precision, half=half, num_classes=num_classes)
            return cls(network, cfg, device='cpu', class_names=class_names or names)
        model, cfg = load_model(path, preset=preset, device=resolved, num_classes=num_classes)
        if class_names is None:
            class_names = sidecar_class_names(path)
        return cls(model, cfg, device=resolved, half=half, class_names=class_names, precision=precision)

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _rescore(self, masks_soft: torch.Tensor) -> torch.Tensor:
        """Model maskiou ([N,1,Hp,Wp] float32 -> [N,C-1] float32) in the network's precision."""
        return self.network.rescore(masks_soft)

    def __call__(self, image: np.ndarray, color_order: str = 'bgr',
                 params: InferenceParams | None = None) -> Instances:
        """Instances of one uint8 ``[H, W, 3]`` image, on the predictor's device."""
        return self.predict_batch([image], color_order, params)[0]

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                      params: InferenceParams | None = None) -> list[Instances]:
        """Instances of each image (sizes may differ), with one forward pass for the whole batch."""
        if len(images) == 0:
            return []
        params = params or InferenceParams()
        output, sizes, forwarded = self._forward(images, color_order)
        results = [postprocess(output, self.cfg, size, params, batch_index=i, rescore_fn=self._rescore,
                               class_names=self.class_names) for i, size in enumerate(sizes)]
        self._stop_clock(forwarded)
        return results

    @torch.inference_mode()
    def predict_rois(self, image: np.ndarray, color_order: str = 'bgr',
                     params: InferenceParams | None = None) -> RoiDetections:
        """Detections of one uint8 ``[H, W, 3]`` image on the host, masks as tight ROIs
        (``postprocess_rois``: the masks of ``__call__`` without building full frames)."""
        params = params or InferenceParams()
        output, sizes, forwarded = self._forward([image], color_order)
        result = postprocess_rois(output, self.cfg, sizes[0], params, rescore_fn=self._rescore)
        self._stop_clock(forwarded)
        return result

    @torch.inference_mode()
    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """:meth:`predict_rois` of each image (sizes may differ) with one forward pass for the batch
        (offline tools); ``last_timings_ms`` then holds the whole batch's times."""
        if len(images) == 0:
            return []
        params = params or InferenceParams()
        output, sizes, forwarded = self._forward(images, color_order)
        results = [postprocess_rois(output, self.cfg, size, params, batch_index=i,
                                    rescore_fn=self._rescore) for i, size in enumerate(sizes)]
        self._stop_clock(forwarded)
        return results

    def _forward(self, images: Sequence[np.ndarray], color_order: str):
        """Preprocess and forward; sets the 'preprocess' and 'forward' timings.

        Returns:
            (YolactOutput, source (height, width) per image, perf_counter time after the forward).
        """
        start = time.perf_counter()
        batch, sizes = preprocess(list(images), self.cfg, self.device, color_order)
        self._sync()
        preprocessed = time.perf_counter()
        output = self.network(batch)
        self._sync()
        forwarded = time.perf_counter()
        self.last_timings_ms = {'preprocess': (preprocessed - start) * 1e3,
                                'forward': (forwarded - preprocessed) * 1e3}
        return output, sizes, forwarded

    def _stop_clock(self, forwarded: float) -> None:
        self._sync()
        self.last_timings_ms['postprocess'] = (time.perf_counter() - forwarded) * 1e3

    def warmup(self, image_size: tuple[int, int] = (480, 640), iterations: int = 1) -> None:
        """Run ``iterations`` predictions on a grey ``image_size`` (height, width) image (kernel selection,
        allocator warm-up, priors cache)."""
        image = np.full((int(image_size[0]), int(image_size[1]), 3), 114, dtype=np.uint8)
        for _ in range(iterations):
            self(image)
