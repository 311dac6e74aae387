"""The reference recipe for developers' own parity checks against mmdetection 3.3.0.

Nothing here runs in CI or at run time: the node never imports mmdet, mmcv or mmengine. For a
check on your own machine, install the reference packages into a scratch folder (never into the
project's venv, never editing their files):

    pip install --no-deps --target /tmp/mmlib mmdet==3.3.0 mmengine==0.10.7 mmcv-lite==2.1.0 \\
        addict rich termcolor yapf shapely terminaltables six markdown-it-py mdurl pygments \\
        platformdirs tomli
    MMDET_PATH=/tmp/mmlib python bench/parity_mmdet.py ...

(mmdet 3.3.0 refuses mmcv 2.2; mmcv-lite has no compiled ops.) ``setup()`` puts the folder on
``sys.path`` and registers a stand-in for ``mmcv._ext`` whose ``nms`` is torchvision's and whose
``roi_align_forward`` is torchvision's ``roi_align`` (the only compiled ops the dense
instance-segmentation heads need at inference); any other op raises when called.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
from pathlib import Path

DEFAULT_MMDET_PATH = '/work/scratch/mmlib'


def _unavailable(name: str):
    def op(*args, **kwargs):
        raise NotImplementedError(f'mmcv._ext.{name} is not in the reference shim')
    return op


def _nms(boxes, scores, iou_threshold: float, offset: int = 0):
    import torchvision
    if offset != 0:
        raise NotImplementedError('the shim nms supports offset=0 only')
    return torchvision.ops.nms(boxes, scores, float(iou_threshold))


def _roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height: int,
                       aligned_width: int, spatial_scale: float, sampling_ratio: int,
                       pool_mode: int, aligned: bool):
    import torchvision
    if pool_mode != 1:
        raise NotImplementedError('the shim roi_align supports pool_mode avg (1) only')
    output.copy_(torchvision.ops.roi_align(input, rois, (aligned_height, aligned_width),
                                           spatial_scale, sampling_ratio, aligned))


class _ExtModule(types.ModuleType):
    """``mmcv._ext`` with nms and roi_align_forward; every other name exists (mmcv asserts the
    names at import) and raises when called."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        return _unavailable(name)


def setup(mmdet_path: str | os.PathLike | None = None) -> None:
    """Make ``import mmdet`` work on this CPU machine (idempotent)."""
    path = str(mmdet_path or os.environ.get('MMDET_PATH') or DEFAULT_MMDET_PATH)
    if not Path(path, 'mmdet').is_dir():
        raise SystemExit(f'mmdet 3.3.0 not found in {path}: install it there (see bench/mmdet_reference.py) '
                         'or pass MMDET_PATH')
    if path not in sys.path:
        sys.path.insert(0, path)
    if 'mmcv._ext' not in sys.modules:
        ext = _ExtModule('mmcv._ext')
        ext.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', loader=None)
        ext.nms = _nms
        ext.roi_align_forward = _roi_align_forward
        sys.modules['mmcv._ext'] = ext


def config_path(relative: str) -> Path:
    """The file of one of mmdet's own configs, e.g. 'rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'."""
    import mmdet
    return Path(mmdet.__file__).parent / '.mim' / 'configs' / relative


def build_detector(config_relative: str):
    """mmdet's detector for one of its configs with random weights (no pretrained download),
    in eval mode on the CPU. Returns (model, cfg)."""
    setup()
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(config_path(config_relative)))
    backbone = cfg.model.get('backbone', {})
    if 'init_cfg' in backbone:
        backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval(), cfg


def save_as_published(model, path: str | os.PathLike, classes: tuple[str, ...]) -> None:
    """Write ``model``'s weights the way mmdet publishes checkpoints: {'meta', 'state_dict'} with
    plain-typed meta (class names in meta['dataset_meta']['classes'])."""
    import torch
    meta = {'mmdet_version': '3.3.0', 'dataset_meta': {'classes': tuple(classes)}, 'epoch': 300, 'iter': 0}
    torch.save({'meta': meta, 'state_dict': model.state_dict()}, str(path))


def inference(model, cfg, image_bgr):
    """mmdet's own test pipeline + predict for one uint8 BGR image; returns its InstanceData
    (bboxes [N, 4] xyxy px, scores [N], labels [N], masks bool [N, H, W])."""
    import torch
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    pipeline_cfg = get_test_pipeline_cfg(cfg).copy()
    pipeline_cfg[0] = dict(type='mmdet.LoadImageFromNDArray')
    pipeline = Compose(pipeline_cfg)
    data = pipeline(dict(img=image_bgr, img_id=0))
    data['inputs'] = [data['inputs']]
    data['data_samples'] = [data['data_samples']]
    with torch.no_grad():
        result = model.test_step(data)[0]
    return result.pred_instances
