"""Startup: resolve the weights (user file or the shipped demo model) and build the pipeline.

Errors here are fatal and user-facing: they become StartupError with a one-line message saying
what is wrong and what to pass; the node's main() prints it and exits with code 2. Python
warnings from the core (CUDA requested but absent, FP16 on the CPU, file name vs tensor shapes)
are passed on as ROS warnings.
"""

from __future__ import annotations

import contextlib
import pathlib
import warnings

import torch
import yaml

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.classes import load_class_names
from instseg_ros.core.pipeline import FramePipeline
from instseg_ros.core.predictor import resolve_device
from instseg_ros.core.segmenter import FAMILY_TITLES, load_segmenter, model_family
from instseg_ros.ros.errors import StartupError

__all__ = ['SHIPPED_WEIGHTS', 'StartupError', 'load_pipeline', 'resolve_weights']

#: The small model trained on synthetic shapes and shipped inside the package.
SHIPPED_WEIGHTS = pathlib.Path(__file__).resolve().parent.parent / 'models' / 'yolact_small_synth.pth'

#: what reading a class-name file can raise (missing, not UTF-8, bad JSON/YAML, YAML tags, shape)
_CLASS_FILE_ERRORS = (OSError, ValueError, yaml.YAMLError)


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into '; ' (messages must stay one line)."""
    return '; '.join(part.strip() for part in str(text).splitlines() if part.strip())


def resolve_weights(weights: str, logger) -> pathlib.Path:
    """The checkpoint to load: the given path, or the shipped demo model when empty."""
    if not weights:
        if not SHIPPED_WEIGHTS.is_file():
            raise StartupError(
                'no weights given and the shipped demo model is missing '
                f'({SHIPPED_WEIGHTS}). Pass weights:=/path/to/yolact_base_54_800000.pth')
        logger.info(f'No weights given: using the shipped demo model {SHIPPED_WEIGHTS.name} '
                    '(trained on synthetic shapes; see models/MODEL_CARD.md). For COCO, pass '
                    'weights:=/path/to/yolact_base_54_800000.pth')
        return SHIPPED_WEIGHTS
    path = pathlib.Path(weights).expanduser()
    if not path.is_file():
        raise StartupError(f"weights file '{path}' does not exist. Pass the path of an official "
                           'checkpoint, e.g. weights:=/path/to/yolact_base_54_800000.pth')
    return path


def _class_names(params, weights: pathlib.Path):
    """Names from class_names_file, else from the ``<stem>.json`` side-car of a checkpoint, else None."""
    if params.class_names_file:
        try:
            return load_class_names(params.class_names_file)
        except _CLASS_FILE_ERRORS as exc:
            raise StartupError(f'cannot read class_names_file {params.class_names_file!r}: '
                               f'{one_line(exc)}. Pass a text file with one class name per line '
                               '(or a JSON/YAML list)') from None
    sidecar = weights.with_suffix('.json')
    if weights.suffix == '.onnx' or not sidecar.is_file():
        return None  # an export's side-car (names, config) is read with the graph (core.exported)
    try:
        return load_class_names(sidecar)
    except _CLASS_FILE_ERRORS as exc:
        raise StartupError(f'cannot read the class-name side-car {str(sidecar)!r} of the weights: '
                           f'{one_line(exc)}. Fix or remove it, or pass class_names_file:=') from None


@contextlib.contextmanager
def warnings_to_log(logger):
    """Log the Python warnings raised inside the block as ROS warnings (not printed raw)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        yield
    for warning in caught:
        logger.warning(one_line(warning.message))


def _device(params) -> torch.device:
    try:
        return resolve_device(params.device)
    except ValueError as exc:
        raise StartupError(f'{one_line(exc)}. Pass device:=auto, cpu, cuda or cuda:N') from None


#: an mmdetection file name of each mmdetection family, for the hint
_MMDET_EXAMPLES = {'rtmdet_ins': ('rtmdet-ins_tiny_8xb32-300e_coco_20221130_151727-ec670f7e.pth', 'rtmdet_ins_tiny'),
                   'solov2': ('solov2_r50_fpn_1x_coco_20220512_125858-a357fa23.pth', 'solov2_r50'),
                   'condinst': ('condinst_r50_fpn_ms-poly-90k_coco_instance_20221129_125223-4c186406.pth',
                                'condinst_r50')}


def _hint(family: str) -> str:
    if family in _MMDET_EXAMPLES:
        name, preset = _MMDET_EXAMPLES[family]
        return (f'Check weights:= and preset:= (auto takes the family and preset from mmdetection\'s file '
                f'name, e.g. {name}, and checks them against the tensors; any name works with '
                f'preset:={preset})')
    if family == 'maskrcnn':
        return ('Check weights:= and preset:= (auto infers maskrcnn_resnet50_fpn or '
                'maskrcnn_resnet50_fpn_v2 from the file name, e.g. '
                'maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth, and checks it against the tensors)')
    return ('Check weights:= and preset:= (auto infers the preset from the file name, e.g. '
            'yolact_resnet50_54_800000.pth; a torchvision Mask R-CNN file needs a name starting '
            'with maskrcnn_ or preset:=maskrcnn_resnet50_fpn[_v2])')


def _size_options(params, family: str) -> dict:
    """Mask R-CNN input resize from maskrcnn_min_size (max side in torchvision's 1333/800 ratio)."""
    if family != 'maskrcnn':
        return {}
    min_size = int(params.maskrcnn_min_size)
    return {'min_size': min_size, 'max_size': round(min_size * 1333 / 800)}


def load_pipeline(params, logger) -> FramePipeline:
    """Build the FramePipeline from the node parameters (weights, preset, device, precision,
    backend, names).

    The model family follows the preset or, with preset auto, the file name (an export's side-car,
    ``maskrcnn_*.pth``, mmdetection's names; anything else YOLACT; core.segmenter.model_family).
    """
    if not params.weights and params.preset != 'auto':
        try:
            wanted = model_family(params.preset, 'weights.pth')
        except CheckpointError as exc:
            raise StartupError(one_line(exc)) from None
        if wanted != 'yolact':
            raise StartupError(f'preset {params.preset} needs its own weights file; pass weights:=<file> '
                               '(the shipped demo model is a YOLACT)')
    path = resolve_weights(params.weights, logger)
    if params.num_threads > 0:
        torch.set_num_threads(params.num_threads)  # this process only (the node's own choice)
    names = _class_names(params, path)
    family = 'yolact'
    with warnings_to_log(logger):
        device = _device(params)
        try:
            family = model_family(params.preset, path)
            backend, half = params.backend, params.half
            if family == 'maskrcnn':
                if backend != 'torch':
                    raise StartupError(f'backend {backend} does not run {FAMILY_TITLES[family]}; pass '
                                       'backend:=torch')
                if params.precision == 'bf16':
                    warnings.warn(f'precision bf16 is not offered for {FAMILY_TITLES[family]} yet; '
                                  'running fp32', RuntimeWarning)
                half = half or params.precision == 'fp16'
            options = (_size_options(params, family) if family == 'maskrcnn' else
                       {'precision': params.precision, 'backend': backend})
            segmenter = load_segmenter(path, preset=params.preset, device=device,
                                       half=half, class_names=names, **options)
        except ImportError as exc:  # an exported backend whose package is not installed
            raise StartupError(one_line(exc)) from None
        except CheckpointError as exc:
            text = one_line(exc)
            raise StartupError(f'{text}{" " if text.endswith(".") else ". "}{_hint(family)}') from None
        except ValueError as exc:  # e.g. class names that do not fit the model
            raise StartupError(f'{path}: {one_line(exc)}') from None
    segmenter.warmup()
    return FramePipeline(segmenter, family)
