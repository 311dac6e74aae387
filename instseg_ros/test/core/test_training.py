"""Tests for instseg_ros.training: data, matching, losses, the training loop and its checkpoints."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from instseg_ros.core.checkpoint import load_model
from instseg_ros.core.config import get_preset
from instseg_ros.core.models.yolact.yolact import Yolact
from instseg_ros.core.preprocess import preprocess
from instseg_ros.training.data import (AugmentConfig, CocoInstanceDataset, InfiniteBatchSampler,
                                       collate_batch)
from instseg_ros.training.losses import LossConfig, compute_losses, hard_negatives, mask_terms, match
from instseg_ros.training.train import (TrainConfig, fit, init_for_training, load_matching_weights, lr_at, main,
                                        sidecar_paths)

# Priors (cx, cy, w, h) and their xyxy form:
PRIORS = torch.tensor([[0.25, 0.25, 0.5, 0.5],    # p0 (0, 0, .5, .5)
                       [0.75, 0.75, 0.5, 0.5],    # p1 (.5, .5, 1, 1)
                       [0.30, 0.30, 0.4, 0.4],    # p2 (.1, .1, .5, .5)
                       [0.50, 0.50, 1.0, 1.0],    # p3 (0, 0, 1, 1)
                       [0.25, 0.55, 0.5, 1.1]])   # p4 (0, 0, .5, 1.1)


def test_match_thresholds_and_forced_best_prior():
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5],      # IoU p0 1, p2 .64, p3 .25, p4 .4545
                       [0.6, 0.6, 0.9, 0.9]])     # IoU p1 .36 (< neg_thresh, but its best prior)
    result = match(gt, torch.tensor([2, 0]), PRIORS)
    # p0, p2 positive for gt 0 (class channel 3); p1 forced onto gt 1 (channel 1); p3 background;
    # p4 between the thresholds -> ignored.
    assert result.conf_t.tolist() == [3, 1, 3, 0, -1]
    assert result.gt_index[[0, 1, 2]].tolist() == [0, 1, 0]
    assert result.overlap[0].item() == 2.0 and result.overlap[1].item() == 2.0
    assert result.overlap[2].item() == pytest.approx(0.64)


def test_match_two_gts_sharing_a_best_prior_get_distinct_priors():
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.45]])  # both fit p0 best
    result = match(gt, torch.tensor([0, 1]), PRIORS[:3])
    assert result.gt_index[0].item() == 0                      # IoU 1.0 wins p0
    assert result.gt_index[2].item() == 1 and result.conf_t[2].item() == 2   # gt 1 forced to p2 (.57)
    assert result.conf_t[1].item() == 0


def test_match_crowd_and_empty():
    crowd = torch.tensor([[0.5, 0.5, 1.0, 1.0]])  # covers p1 exactly
    result = match(torch.tensor([[0.0, 0.0, 0.5, 0.5]]), torch.tensor([0]), PRIORS, crowd)
    assert result.conf_t.tolist() == [1, -1, 1, 0, -1]
    empty = match(torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), PRIORS, crowd)
    assert empty.conf_t.tolist() == [0, -1, 0, 0, 0]


def test_hard_negatives_pick_highest_background_loss():
    conf = torch.zeros((1, 6, 2))
    conf[0, :, 1] = torch.tensor([0.0, 5.0, 1.0, 4.0, 3.0, 2.0])  # background loss grows with logit 1
    conf_t = torch.tensor([[1, 0, 0, -1, 0, 0]])                   # prior 0 positive, prior 3 ignored
    neg = hard_negatives(conf, conf_t, negpos_ratio=3)
    assert neg.tolist() == [[False, True, False, False, True, True]]


def test_mask_loss_is_box_normalised_bce():
    proto = torch.full((8, 8, 1), -10.0)
    proto[2:6, 2:6, 0] = 10.0                                   # +10 exactly on the gt square
    gt_mask = torch.zeros((1, 8, 8))
    gt_mask[0, 2:6, 2:6] = 1.0
    box = torch.tensor([[0.25, 0.25, 0.75, 0.75]])              # 4x4 proto px; crop (pad 1) = 6x6
    args = (torch.tensor([0]), box, gt_mask, torch.tensor([0]))
    good = mask_terms(proto, torch.ones((1, 1)), *args).loss
    bad = mask_terms(proto, -torch.ones((1, 1)), *args).loss
    small = math.log1p(math.exp(-10.0))                         # BCE of a pixel predicted right (4.5e-5)
    assert good.item() == pytest.approx(36 * small / 16, rel=2e-2)
    assert bad.item() == pytest.approx(36 * (10.0 + small) / 16, rel=1e-5)  # 22.5: 36 crop px / 16 box px


def test_lr_schedule():
    cfg = TrainConfig(data='', iterations=100, lr=0.01, warmup_iters=10, warmup_factor=0.1, lr_steps=(0.5, 0.8))
    assert [lr_at(i, cfg) for i in (0, 5, 10, 49, 50, 79, 80)] == pytest.approx(
        [0.001, 0.0055, 0.01, 0.01, 0.001, 0.001, 0.0001])


def test_sampler_is_seeded_and_resumable():
    stream = iter(InfiniteBatchSampler(5, 2, seed=3))
    first = [next(stream) for _ in range(5)]
    epoch0 = [i for batch in first for i, _ in batch][:5]
    assert sorted(epoch0) == [0, 1, 2, 3, 4]                     # each epoch visits every image once
    assert [d for batch in first for _, d in batch] == list(range(10))
    resumed = iter(InfiniteBatchSampler(5, 2, seed=3, start_batch=3))
    assert [next(resumed) for _ in range(2)] == first[3:5]
    other = iter(InfiniteBatchSampler(5, 2, seed=4))
    assert [next(other) for _ in range(5)] != first


def _write_coco(tmp_path):
    """A 20x30 image with two objects of category ids 7 (polygon) and 3 (RLE) and one crowd region."""
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, :, 2] = np.arange(30, dtype=np.uint8)[None] * 8     # red ramp left -> right (BGR)
    image[:, :, 1] = 100
    cv2.imwrite(str(tmp_path / 'a.png'), image)
    rle_mask = np.zeros((20, 30), dtype=np.uint8, order='F')
    rle_mask[10:18, 20:28] = 1
    rle = mask_utils.encode(rle_mask)
    rle['counts'] = rle['counts'].decode('ascii')
    anns = [{'id': 1, 'image_id': 5, 'category_id': 7, 'iscrowd': 0, 'bbox': [2, 4, 10, 6],
             'segmentation': [[2, 4, 12, 4, 12, 10, 2, 10]], 'area': 60},
            {'id': 2, 'image_id': 5, 'category_id': 3, 'iscrowd': 0, 'bbox': [20, 10, 8, 8],
             'segmentation': rle, 'area': 64},
            {'id': 3, 'image_id': 5, 'category_id': 3, 'iscrowd': 1, 'bbox': [0, 0, 15, 10],
             'segmentation': [[0, 0, 15, 0, 15, 10, 0, 10]], 'area': 150}]
    coco = {'images': [{'id': 5, 'file_name': 'a.png', 'width': 30, 'height': 20}], 'annotations': anns,
            'categories': [{'id': 7, 'name': 'seven'}, {'id': 3, 'name': 'three'}]}
    (tmp_path / 'instances.json').write_text(json.dumps(coco))
    return image


def test_dataset_labels_boxes_masks_and_inference_preprocessing(tmp_path):
    image = _write_coco(tmp_path)
    ds = CocoInstanceDataset(tmp_path, input_size=40, mask_size=10)
    assert ds.class_names == ['three', 'seven'] and ds.category_ids == [3, 7]
    item = ds[0]
    assert item['labels'].tolist() == [1, 0]
    assert torch.allclose(item['boxes'], torch.tensor([[2 / 30, 4 / 20, 12 / 30, 10 / 20],
                                                       [20 / 30, 10 / 20, 28 / 30, 18 / 20]]))
    assert torch.allclose(item['crowd_boxes'], torch.tensor([[0.0, 0.0, 0.5, 0.5]]))
    assert item['masks'].shape == (2, 10, 10)
    expected_rle = torch.zeros((10, 10))
    expected_rle[5:9, 7:9] = 1                                    # rows 10..17 / 2, cols 20..27 / 3 (rounded)
    assert torch.equal(item['masks'][1], expected_rle)
    net_input, _ = preprocess(image, ds_cfg(40), color_order='bgr')
    assert torch.allclose(item['image'], net_input[0], atol=1e-5)


def ds_cfg(size):
    """Minimal stand-in for a ModelConfig as preprocess() needs it."""
    return type('Cfg', (), {'max_size': size, 'normalization': 'resnet'})()


def test_dataset_flip_and_determinism(tmp_path):
    _write_coco(tmp_path)
    plain = CocoInstanceDataset(tmp_path, input_size=40, mask_size=10)[0]
    flip_only = AugmentConfig(flip_prob=1.0, photometric_prob=0.0, crop_prob=0.0)
    flipped = CocoInstanceDataset(tmp_path, input_size=40, mask_size=10, augment=flip_only)[(0, 0)]
    assert torch.equal(flipped['image'], plain['image'].flip(-1))
    assert torch.equal(flipped['masks'], plain['masks'].flip(-1))
    assert flipped['boxes'][0].tolist() == pytest.approx([18 / 30, 4 / 20, 28 / 30, 10 / 20])
    full = CocoInstanceDataset(tmp_path, input_size=40, mask_size=10, augment=AugmentConfig(crop_prob=1.0), seed=1)
    a, b, c = full[(0, 7)], full[(0, 7)], full[(0, 8)]
    assert torch.equal(a['image'], b['image']) and torch.equal(a['boxes'], b['boxes'])
    assert not torch.equal(a['image'], c['image'])
    batch = collate_batch([a, c])
    assert batch.images.shape == (2, 3, 40, 40) and batch.image_ids.tolist() == [5, 5]


@pytest.fixture(scope='module')
def synth_data(tmp_path_factory):
    from instseg_ros.synth.dataset import write_coco_dataset
    from instseg_ros.synth.scene import CLASS_NAMES, Camera
    root = tmp_path_factory.mktemp('synth')
    write_coco_dataset(root, 2, seed=0, camera=Camera(width=160, height=120), write_depth=False)
    return root, CLASS_NAMES


def _config(data, out, **kw):
    base = dict(data=str(data), out=str(out), iterations=16, batch_size=2, input_size=96, lr=5e-3,
                warmup_iters=0, lr_steps=(), augment=False, seed=0, save_every=8, log_every=8)
    base.update(kw)
    return TrainConfig(**base)


def test_training_overfits_fixed_batch_and_checkpoint_reloads(synth_data, tmp_path):
    data, class_names = synth_data
    history = []
    result = fit(_config(data, tmp_path / 'a'), callback=lambda i, v: history.append(v), log=lambda s: None)
    totals = [h['total'] for h in history]
    assert len(totals) == 16 and all(np.isfinite(totals))
    assert np.mean(totals[-3:]) < 0.6 * np.mean(totals[:3])     # 2 images = the same batch every step
    assert np.mean([h['box'] for h in history[-3:]]) < np.mean([h['box'] for h in history[:3]])
    path = result.checkpoint
    assert path.name == 'yolact_small_16_16.pth'
    meta = json.loads(sidecar_paths(path)[0].read_text())
    assert meta['class_names'] == list(class_names) and meta['iteration'] == 16
    assert sidecar_paths(path)[1].is_file() and (tmp_path / 'a' / 'train_log.csv').is_file()

    loaded, cfg = load_model(path)                               # preset + classes inferred, strict
    assert cfg.name == 'yolact_small' and cfg.num_classes == len(class_names) + 1
    trained = result.model.eval()
    x = torch.randn((1, 3, 96, 96), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = trained(x), loaded(x)
    for name in ('loc', 'conf', 'coeffs', 'proto'):
        assert torch.equal(getattr(ref, name), getattr(out, name)), name
    assert torch.allclose(ref.priors, out.priors, atol=1e-6)    # relative anchors as the 384-px preset

    # Initialising a model with other classes takes every tensor but the class-dependent ones.
    other = Yolact(get_preset('yolact_small', num_classes=3))
    loaded_count, kept = load_matching_weights(other, path)
    assert sorted(kept) == ['prediction_layers.0.conf_layer.bias', 'prediction_layers.0.conf_layer.weight',
                            'semantic_seg_conv.bias', 'semantic_seg_conv.weight']
    assert loaded_count == len(other.state_dict()) - 4
    assert torch.equal(other.proto_net[0].weight, trained.proto_net[0].weight)

    # Resuming from the iteration-8 checkpoint repeats iterations 9..16 exactly.
    resumed = fit(_config(data, tmp_path / 'b', resume=str(tmp_path / 'a' / 'yolact_small_8_8.pth')),
                  log=lambda s: None)
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_losses_include_maskiou_for_plus_preset():
    from dataclasses import replace
    cfg = replace(get_preset('yolact_plus_resnet50', num_classes=3), max_size=256, backbone='resnet18',
                  dcn_layers=(0, 0, 0, 0), fpn_features=32)
    model = init_for_training(Yolact(cfg), seed=0).train()
    masks = torch.zeros((1, 64, 64))
    masks[0, 8:40, 8:40] = 1.0
    batch = collate_batch([{'image': torch.zeros((3, 256, 256)), 'boxes': torch.tensor([[0.125, 0.125, 0.625, 0.625]]),
                            'labels': torch.tensor([1]), 'masks': masks, 'crowd_boxes': torch.zeros((0, 4)),
                            'image_id': 1}])
    losses = compute_losses(model(batch.images), batch, LossConfig(), rescore=model.rescore)
    assert set(losses) == {'box', 'conf', 'mask', 'semantic', 'maskiou'}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.maskiou_net.maskiou_net[0].weight.grad.abs().sum() > 0


def test_cli_main(synth_data, tmp_path, capsys):
    data, _ = synth_data
    rc = main(['--data', str(data), '--out', str(tmp_path), '--iterations', '2', '--batch-size', '1',
               '--input-size', '64', '--no-augment', '--log-every', '1'])
    assert rc == 0
    log = capsys.readouterr().out
    assert '[2/2] 100%' in log and 's/it' in log
    assert (tmp_path / 'yolact_small_1_2.pth').is_file()
    assert main(['--data', str(tmp_path / 'missing'), '--out', str(tmp_path)]) == 2
