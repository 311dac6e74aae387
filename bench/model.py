"""Benchmark: YOLACT end to end (preprocess -> instances) per 640x480 frame for each precision x
backend, interleaved in one run, next to torchvision Mask R-CNN R50-FPN.

Usage:  python bench/model.py [--rounds 5] [--threads 2] [--ap-scenes 100] [--out bench/results/model.json]
        python bench/model.py --families rtmdet_ins_tiny rtmdet_ins_s solov2_r50 condinst_r50 \\
            [--family-configs torch/fp32 onnxruntime/fp32 openvino/bf16] [--models] [--no-maskrcnn]

Configurations per model (random weights, seeded): ``torch/fp32`` (the default, contiguous),
``torch/fp32-cl`` (fp32 forced channels-last), ``torch/bf16`` (channels-last), ``onnxruntime/fp32``, ``openvino/fp32`` and ``openvino/bf16``
(OpenVINO's own bf16 inference) -- the exported ones on an ``instseg-export`` file of the same
weights. All run in this process, one after the other in every round (bench/harness.py), so load
changes hit them alike; the JSON holds medians and ratios to ``torch/fp32``.

Random weights give arbitrary scores, so detection is pushed to its cap (thresholds 0, 100
detections, masks pasted at 640x480): post-processing (shared by every backend) is timed at its
worst case. Mask R-CNN resizes to its default min_size 800 and does its own post-processing in
forward. With ``--ap-scenes N`` the shipped model's mask/box AP per configuration is added
(bench/accuracy.py). CUDA / TensorRT are not measured here (no GPU on this machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))
import harness  # noqa: E402
from instseg_ros.core.config import get_preset  # noqa: E402
from instseg_ros.core.export import export_onnx  # noqa: E402
from instseg_ros.core.exported import load_network  # noqa: E402
from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_  # noqa: E402
from instseg_ros.core.predictor import InferenceParams, Predictor, default_class_names  # noqa: E402

MASKRCNN = 'maskrcnn_resnet50_fpn'
STAGES = ('preprocess', 'forward', 'postprocess')
REFERENCE = 'torch/fp32'
CONFIGS = {'cpu': ('torch/fp32', 'torch/fp32-cl', 'torch/bf16', 'onnxruntime/fp32', 'openvino/fp32',
                   'openvino/bf16'),
           'cuda': ('torch/fp32', 'torch/fp16', 'torch/bf16', 'onnxruntime/fp32')}
CAP = InferenceParams(score_threshold=0.0, conf_threshold=0.0, max_detections=100)


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 BGR [H, W, 3]: smooth gradients plus a few flat rectangles and mild noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    image = np.stack([cols * 255 / width, rows * 255 / height, (rows + cols) * 127 / (height + width)], -1)
    for _ in range(6):
        y0, x0 = rng.integers(0, height - 60), rng.integers(0, width - 60)
        h, w = rng.integers(40, min(200, height - y0)), rng.integers(40, min(250, width - x0))
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
    image += rng.normal(0.0, 4.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _random_model(name: str):
    cfg = get_preset(name)
    return init_weights_(Yolact(cfg), torch.Generator().manual_seed(0)).eval(), cfg


def yolact_predictors(name: str, export_dir: Path, device: str = 'cpu') -> dict[str, Predictor]:
    """One predictor per configuration of ``device`` ('cpu' or 'cuda'), all with the same random
    weights (onnxruntime on 'cuda': its CUDA / TensorRT providers where installed)."""
    model, cfg = _random_model(name)
    onnx_path = export_dir / f'{name}.onnx'
    export_onnx(model, cfg, onnx_path, default_class_names(cfg.num_classes), source='random seed 0')
    predictors = {}
    for config in harness.configs_for(device, CONFIGS):
        backend, precision = config.split('/')
        if backend == 'torch':
            forced = precision == 'fp32-cl'
            predictors[config] = Predictor(_random_model(name)[0], cfg, device,
                                           precision='fp32' if forced else precision,
                                           channels_last=True if forced else None)
        else:
            network, _, _ = load_network(onnx_path, backend, device=torch.device(device), precision=precision)
            predictors[config] = Predictor(network, cfg)
    return predictors


def yolact_runner(predictor: Predictor, image: np.ndarray):
    def run() -> dict:
        start = time.perf_counter()
        instances = predictor(image, 'bgr', CAP).to('cpu')  # on the host, as on the CPU runs
        total = (time.perf_counter() - start) * 1e3
        return {**{f'{s}_ms': predictor.last_timings_ms[s] for s in STAGES}, 'total_ms': total,
                'detections': len(instances)}
    return run


def maskrcnn_runner(image: np.ndarray, device: str = 'cpu'):
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0,
                                  box_detections_per_img=100).eval().to(device)

    @torch.inference_mode()
    def run() -> dict:
        start = time.perf_counter()
        tensor = torch.from_numpy(image[:, :, ::-1].copy()).to(device).permute(2, 0, 1).float() / 255
        detections = model([tensor])[0]
        if torch.device(device).type == 'cuda':
            torch.cuda.synchronize()
        return {'total_ms': (time.perf_counter() - start) * 1e3, 'detections': int(detections['scores'].shape[0])}
    return run


#: mmdetection families timed next to YOLACT (``--families``): preset -> file name as mmdet names it
FAMILY_FILES = {'rtmdet_ins_tiny': 'rtmdet-ins_tiny_8xb32-300e_coco_random.pth',
                'rtmdet_ins_s': 'rtmdet-ins_s_8xb32-300e_coco_random.pth',
                'solov2_r50': 'solov2_r50_fpn_1x_coco_random.pth',
                'condinst_r50': 'condinst_r50_fpn_ms-poly-90k_coco_instance_random.pth'}
ROIS = 'torch/fp32-rois'
#: configurations of the families (and their YOLACT R50 yardstick) with --families
FAMILY_CONFIGS = ('torch/fp32', 'onnxruntime/fp32', 'openvino/bf16')


def _family_state_dict(preset: str, image: np.ndarray) -> dict:
    """Random (seeded) weights of one mmdetection-family preset in mmdet's key layout that detect
    on ``image`` (so the rows hold the mask post-processing too): RTMDet-Ins and CondInst with
    BatchNorm statistics measured on the image (CondInst's class biases then shifted so that >= 40
    class scores pass 0.6, so that final scores, times centerness, pass the default 0.3), SOLOv2
    the golden tests' seeded weights (a few classes biased up)."""
    torch.manual_seed(0)
    if preset.startswith('rtmdet_ins'):
        from instseg_ros.core.models.rtmdet.config import get_config
        from instseg_ros.core.models.rtmdet.postprocess import preprocess
        from instseg_ros.core.models.rtmdet.testing import calibrated_state_dict
        cfg = get_config(preset)
        batch, _ = preprocess([image], cfg, torch.device('cpu'))
        return calibrated_state_dict(cfg, seed=0, cls_bias=0.0, images=batch)
    if preset.startswith('condinst'):
        from instseg_ros.core.models.condinst import get_config
        from instseg_ros.core.models.condinst.preprocess import preprocess_batch
        from instseg_ros.core.models.condinst.testing import calibrated_state_dict, shift_class_biases
        cfg = get_config(preset)
        batch = preprocess_batch([image], 'bgr', cfg.test_scale, cfg.size_divisor, cfg.mean_rgb, cfg.std_rgb,
                                 torch.device('cpu'))
        return shift_class_biases(calibrated_state_dict(cfg, batch.images, seed=0), cfg, batch.images,
                                  min_score=0.6)
    from instseg_ros.core.models.solov2.config import preset_config
    from instseg_ros.core.models.solov2.testing import seeded_state_dict
    return seeded_state_dict(preset_config(preset), seed=0)


def roi_runner(segmenter, image: np.ndarray):
    """End to end as the node runs it: ``predict_rois`` (masks straight to tight ROIs on the host)
    with the segmenter's own default test settings (mmdet's test_cfg; YOLACT's InferenceParams()):
    thresholds 0 would make SOLOv2's Matrix NMS and masks run on every grid cell of random weights."""
    def run() -> dict:
        start = time.perf_counter()
        detections = segmenter.predict_rois(image, 'bgr')
        total = (time.perf_counter() - start) * 1e3
        return {**{f'{s}_ms': segmenter.last_timings_ms[s] for s in STAGES}, 'total_ms': total,
                'detections': len(detections.scores)}
    return run


def family_runners(presets: list[str], export_dir: Path, image: np.ndarray, device: str,
                   configs: list[str]) -> dict:
    """``<preset>:<backend>/<precision>-rois`` runners (``configs``, e.g. torch/fp32, openvino/bf16)
    of mmdetection-format random checkpoints (the exported backends on the checkpoint's export),
    plus YOLACT R50 through the same ``predict_rois`` path and configurations as the yardstick."""
    import os

    from instseg_ros.core.classes import COCO_CLASSES
    from instseg_ros.core.segmenter import load_segmenter
    os.environ['INSTSEG_CACHE_DIR'] = str(export_dir / 'cache')  # exports of this run only
    runners = {}
    for preset in presets:
        path = export_dir / FAMILY_FILES[preset]
        torch.save({'meta': {'dataset_meta': {'classes': COCO_CLASSES}},
                    'state_dict': _family_state_dict(preset, image)}, path)
        for config in configs:
            backend, precision = config.split('/')
            segmenter = load_segmenter(path, device=device, backend=backend, precision=precision)
            runners[f'{preset}:{config}-rois'] = roi_runner(segmenter, image)
    model, cfg = _random_model('yolact_resnet50')
    onnx_path = export_dir / 'yolact_resnet50_rois.onnx'
    export_onnx(model, cfg, onnx_path, default_class_names(cfg.num_classes), source='random seed 0')
    for config in configs:
        backend, precision = config.split('/')
        if backend == 'torch':
            predictor = Predictor(_random_model('yolact_resnet50')[0], cfg, device, precision=precision)
        else:
            network, _, _ = load_network(onnx_path, backend, device=torch.device(device), precision=precision)
            predictor = Predictor(network, cfg)
        runners[f'yolact_resnet50:{config}-rois'] = roi_runner(predictor, image)
    return runners


def ratios(summary: dict[str, dict]) -> dict[str, float]:
    """total_ms of each configuration / total_ms of the same model's torch/fp32."""
    out = {}
    for key, value in summary.items():
        model, _, config = key.partition(':')
        reference = summary.get(f'{model}:{REFERENCE}')
        if reference and config:
            out[key] = round(value['total_ms'] / reference['total_ms'], 3)
    return out


def markdown_table(summary: dict[str, dict], ratio: dict[str, float]) -> str:
    lines = ['| model | backend/precision | preprocess ms | forward ms | postprocess ms | total ms | '
             f'x {REFERENCE} | detections |', '|' + '---|' * 8]
    for key, r in summary.items():
        model, _, config = key.partition(':')
        stages = ' | '.join(f"{r[f'{s}_ms']:.1f}" if f'{s}_ms' in r else '-' for s in STAGES)
        lines.append(f"| {model} | {config or 'torch/fp32 (own)'} | {stages} | {r['total_ms']:.1f} | "
                     f"{ratio.get(key, float('nan')):.2f} | {r.get('detections', '-')} |")
    return '\n'.join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='*', default=['yolact_resnet50', 'yolact_base'])
    parser.add_argument('--rounds', type=int, default=5, help='timed interleaved rounds (median)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--threads', type=int, default=2, help='threads for torch, ONNX Runtime, OpenVINO')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (bench/gpu_check.sh)")
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--no-maskrcnn', action='store_true', help='skip the Mask R-CNN comparison')
    parser.add_argument('--families', nargs='*', default=[], choices=sorted(FAMILY_FILES),
                        help='mmdetection presets timed end to end (predict_rois) next to YOLACT R50')
    parser.add_argument('--family-configs', nargs='*', default=list(FAMILY_CONFIGS),
                        help='backend/precision of the --families rows (and of their YOLACT R50 rows)')
    parser.add_argument('--ap-scenes', type=int, default=0, help='also the shipped model AP per config on '
                        'N eval scenes (seed 7; 100 = the model card set)')
    parser.add_argument('--out', type=Path, default=Path(__file__).resolve().parent / 'results' / 'model.json')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    session = harness.Session(argv)
    torch.set_num_threads(args.threads)
    image = synthetic_image(args.height, args.width)
    runners = {}
    with tempfile.TemporaryDirectory() as export_dir:
        for name in args.models:
            print(f'preparing {name} ...', file=sys.stderr, flush=True)
            for config, predictor in yolact_predictors(name, Path(export_dir), args.device).items():
                runners[f'{name}:{config}'] = yolact_runner(predictor, image)
        if args.families:
            print(f'preparing {", ".join(args.families)} ...', file=sys.stderr, flush=True)
            runners.update(family_runners(args.families, Path(export_dir), image, args.device,
                                          args.family_configs))
    if not args.no_maskrcnn:
        runners[MASKRCNN] = maskrcnn_runner(image, args.device)
    samples = harness.interleaved(runners, args.rounds, args.warmup)
    summary = {key: harness.medians(values) for key, values in samples.items()}
    ratio = ratios(summary)
    for preset in args.families:  # each family relative to YOLACT R50 torch fp32 on the same path
        for config in args.family_configs:
            total = summary[f'{preset}:{config}-rois']['total_ms']
            ratio[f'{preset}:{config}-rois / yolact_resnet50:{ROIS}'] = round(
                total / summary[f'yolact_resnet50:{ROIS}']['total_ms'], 3)
            ratio[f'{preset}:{config}-rois / {preset}:{ROIS}'] = round(
                total / summary[f'{preset}:{ROIS}']['total_ms'], 3)
    for name in args.models:  # Mask R-CNN relative to each model's reference
        if MASKRCNN in summary:
            ratio[f'{MASKRCNN}/{name}:{REFERENCE}'] = round(
                summary[MASKRCNN]['total_ms'] / summary[f'{name}:{REFERENCE}']['total_ms'], 3)
    accuracy = None
    if args.ap_scenes > 0:
        import accuracy as accuracy_bench
        configs = [tuple(c.split('/')) for c in harness.configs_for(args.device, CONFIGS) if c != 'torch/fp32-cl']
        accuracy = accuracy_bench.shipped_model_ap(configs, args.ap_scenes, args.device)
    on_gpu = torch.device(args.device).type == 'cuda'
    report = session.report(
        device=args.device, image_size_hw=[args.height, args.width], threads=args.threads, rounds=args.rounds,
        warmup_rounds=args.warmup, detection_params='thresholds 0, 100 detections (worst-case post-processing)',
        timing='end to end per frame: preprocess -> Instances at 640x480 (host), medians over rounds',
        not_measured=('TensorRT engines, Intel iGPU' if on_gpu else
                      'CUDA (torch fp16/bf16, onnxruntime CUDA/TensorRT EPs), TensorRT, Intel iGPU: no GPU here'),
        results=summary, ratios_total_time=ratio, shipped_model_accuracy=accuracy)
    harness.Session.write(report, args.out)
    print(markdown_table(summary, ratio))
    return report


if __name__ == '__main__':
    main()
