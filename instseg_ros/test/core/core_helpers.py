"""Helpers shared by the core tests (imported by name: pytest puts this folder on sys.path)."""

from dataclasses import replace

import torch

from instseg_ros.core.config import get_preset
from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_


def best_mask_ious(reference, other, min_score: float = 0.3) -> torch.Tensor:
    """IoU of each reference mask scoring > ``min_score`` with its best same-class mask in ``other``
    (0 where ``other`` has none of that class). ``reference``, ``other``: lists of CPU Instances."""
    ious = []
    for a, b in zip(reference, other):
        keep = a.scores > min_score
        for mask, label in zip(a.masks[keep], a.labels[keep]):
            same = b.masks[b.labels == label]
            if same.shape[0] == 0:
                ious.append(0.0)
                continue
            inter = (same & mask).flatten(1).sum(1).float()
            union = (same | mask).flatten(1).sum(1).float().clamp(min=1)
            ious.append((inter / union).max().item())
    return torch.tensor(ious)


def random_yolact_plus(max_size: int = 256, num_classes: int = 3, seed: int = 0):
    """(YOLACT++ R50 with random weights and non-zero deformable offsets, its config)."""
    cfg = replace(get_preset('yolact_plus_resnet50', num_classes=num_classes), max_size=max_size)
    model = init_weights_(Yolact(cfg), torch.Generator().manual_seed(seed))
    for module in model.modules():  # non-zero offsets, so the deformable sampling is exercised
        if hasattr(module, 'conv_offset_mask'):
            torch.nn.init.normal_(module.conv_offset_mask.weight, std=0.02,
                                  generator=torch.Generator().manual_seed(seed + 4))
    return model.eval(), cfg


def eval_scenes(directory, scenes: int, seed: int):
    """The first ``scenes`` scenes of the shipped model's evaluation set (models/MODEL_CARD.md: seed 7)
    written to ``directory``: (pycocotools COCO ground truth, [(image id, uint8 BGR image)])."""
    import cv2

    from instseg_ros.synth.dataset import write_coco_dataset
    from instseg_ros.training.evaluate import _load_gt
    gt_json = write_coco_dataset(directory, scenes, seed, image_format='png', write_depth=False)
    coco = _load_gt(gt_json)
    return coco, [(i, cv2.imread(str(gt_json.parent / coco.imgs[i]['file_name']))) for i in sorted(coco.imgs)]


def evaluate_predictor(predictor, coco, images, params):
    """(COCO metrics dict of ``evaluate_coco``, [CPU Instances per image]) of ``predictor`` on ``images``."""
    from instseg_ros.training.evaluate import evaluate_coco, instances_to_coco_results, label_to_category_map
    mapping = label_to_category_map(coco, predictor.class_names)
    found, results = [], []
    for image_id, image in images:
        inst = predictor(image, 'bgr', params).to('cpu')
        found.append(inst)
        results += instances_to_coco_results(image_id, inst.boxes_xyxy, inst.scores, inst.labels,
                                             inst.masks, mapping)
    return evaluate_coco(coco, results, image_ids=[i for i, _ in images]), found
