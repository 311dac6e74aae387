"""Startup: resolve the weights (user file or the shipped demo model) and build the pipeline.

Errors here are fatal and user-facing: they become StartupError with a message saying what to do;
the node's main() prints it and exits non-zero.
"""

from __future__ import annotations

import pathlib

import torch

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.classes import load_class_names
from instseg_ros.core.pipeline import FramePipeline
from instseg_ros.core.predictor import Predictor

#: The small model trained on synthetic shapes and shipped inside the package.
SHIPPED_WEIGHTS = pathlib.Path(__file__).resolve().parent.parent / 'models' / 'yolact_small_synth.pth'


class StartupError(RuntimeError):
    """The node cannot start (missing or mismatched weights, bad class list)."""


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


def load_pipeline(params, logger) -> FramePipeline:
    """Build the FramePipeline from the node parameters (weights, preset, device, half, names)."""
    path = resolve_weights(params.weights, logger)
    if params.num_threads > 0:
        torch.set_num_threads(params.num_threads)  # this process only (the node's own choice)
    try:
        names = load_class_names(params.class_names_file) if params.class_names_file else None
    except (OSError, ValueError) as exc:
        raise StartupError(f'cannot read class_names_file {params.class_names_file!r}: {exc}') from exc
    try:
        predictor = Predictor.from_checkpoint(str(path), preset=params.preset,
                                              device=params.device, half=params.half,
                                              class_names=names)
    except CheckpointError as exc:
        raise StartupError(f'{exc}\nCheck weights:= and preset:= (auto infers the preset from '
                           'the file name, e.g. yolact_resnet50_54_800000.pth).') from exc
    predictor.warmup()
    return FramePipeline(predictor)
