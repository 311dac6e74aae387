"""Golden numbers for instseg_ros/test/core/test_solov2.py, computed by mmdetection 3.3.0 (not in CI).

    python bench/solov2_golden.py  # writes instseg_ros/test/data/solov2_golden.json

Per preset: the seeded weights of instseg_ros/core/models/solov2/testing.py (made by OUR model's key layout)
are loaded strictly into mmdet's SOLOv2; mmdet's test pipeline runs with its Resize scale set to
GOLDEN_SCALE on a small synthetic scene. Stored: the normalised input's and raw head outputs'
summaries (sum, mean |x|, 16 samples at fixed flat indices) and mmdet's final detections (scores,
labels, mask2bbox boxes, mask areas, the first masks bit-packed). Also writes mmdet's state-dict
layouts (key -> shape) to test/data/state_dicts/solov2_state_dict_<preset>.json.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent / 'instseg_ros'
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test' / 'core'))

import mmdet_reference as R  # noqa: E402
from parity_solov2 import CONFIGS, mask_boxes  # noqa: E402
from instseg_ros.core.models.solov2.testing import seeded_state_dict  # noqa: E402

from instseg_ros.core.models.solov2.config import preset_config  # noqa: E402
from instseg_ros.synth.scene import Camera, render_scene  # noqa: E402

GOLDEN_SCALE = (160, 96)
IMAGE_SEED, IMAGE_HW = 11, (90, 120)
PACKED_MASKS = 5
OUT = ROOT / 'test' / 'data' / 'solov2_golden.json'
LAYOUTS = ROOT / 'test' / 'data' / 'state_dicts'


def write_layout(preset: str, model) -> None:
    """mmdet's state-dict key -> shape map (its order) as test/data/state_dicts/solov2_state_dict_<preset>.json."""
    rows = [json.dumps([k, list(v.shape)]) for k, v in model.state_dict().items()]
    (LAYOUTS / f'solov2_state_dict_{preset}.json').write_text('[\n' + ',\n'.join(rows) + '\n]\n')


def summary(tensor: torch.Tensor) -> dict:
    flat = tensor.detach().float().reshape(-1)
    index = torch.linspace(0, flat.numel() - 1, 16).round().long()
    return {'shape': list(tensor.shape), 'sum': float(flat.double().sum()),
            'abs_mean': float(flat.abs().double().mean()), 'samples': [float(v) for v in flat[index]]}


def mmdet_raw(model, cfg, image: np.ndarray) -> dict:
    """Summaries of mmdet's normalised input and head outputs for ``image``."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    steps = get_test_pipeline_cfg(cfg).copy()
    steps[0] = dict(type='mmdet.LoadImageFromNDArray')
    data = Compose(steps)(dict(img=image, img_id=0))
    batch = model.data_preprocessor({'inputs': [data['inputs']], 'data_samples': [data['data_samples']]}, False)
    with torch.no_grad():
        kernels, cls_logits, mask_feats = model.mask_head(model.extract_feat(batch['inputs']))
    return {'input': summary(batch['inputs']), 'mask_feats': summary(mask_feats),
            'cls_logits': [summary(c) for c in cls_logits], 'kernels': [summary(k) for k in kernels]}


def golden_for(preset: str, image: np.ndarray) -> dict:
    model, cfg = R.build_detector(CONFIGS[preset][0])
    write_layout(preset, model)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step['type'] == 'Resize':
            step['scale'] = GOLDEN_SCALE
    model.load_state_dict(seeded_state_dict(preset_config(preset)), strict=True)
    result = R.inference(model, cfg, image)
    masks = result.masks.cpu().numpy().astype(bool)
    packed = [base64.b64encode(np.packbits(m.reshape(-1)).tobytes()).decode() for m in masks[:PACKED_MASKS]]
    return {'raw': mmdet_raw(model, cfg, image),
            'scores': [float(s) for s in result.scores], 'labels': [int(v) for v in result.labels],
            'boxes_xyxy': mask_boxes(masks).tolist(), 'mask_areas': [int(a) for a in masks.sum(axis=(1, 2))],
            'packed_masks': packed}


def main() -> int:
    torch.set_num_threads(2)
    image = render_scene(IMAGE_SEED, Camera(IMAGE_HW[1], IMAGE_HW[0])).image_bgr
    golden = {'about': 'mmdet 3.3.0 outputs on seeded weights (instseg_ros/core/models/solov2/testing.py); bench/solov2_golden.py',
              'torch': torch.__version__, 'scale': list(GOLDEN_SCALE), 'image_seed': IMAGE_SEED,
              'image_hw': list(IMAGE_HW), 'presets': {}}
    for preset in CONFIGS:
        golden['presets'][preset] = golden_for(preset, image)
        print(preset, len(golden['presets'][preset]['scores']), 'detections', flush=True)
    OUT.write_text(json.dumps(golden, separators=(',', ':')) + '\n')
    print(OUT, OUT.stat().st_size, 'bytes')
    return 0


if __name__ == '__main__':
    sys.exit(main())
