"""Model layout: state-dict keys/shapes vs the official checkpoints, configs, anchors, output sizes (meta device)."""

import json
import math
from pathlib import Path

import pytest
import torch

from instseg_ros.core.config import OFFICIAL_PRESETS, PRESETS, get_preset
from instseg_ros.core.models.yolact import Yolact
from instseg_ros.core.models.yolact.backbone import uses_dcn
from instseg_ros.core.models.yolact.priors import level_anchor_sizes, make_priors

STATE_DICTS = Path(__file__).resolve().parents[1] / 'data' / 'state_dicts'
SIZES_550 = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
SIZES_700 = [(88, 88), (44, 44), (22, 22), (11, 11), (6, 6)]


def meta_model(name: str, **kw) -> Yolact:
    with torch.device('meta'):
        return Yolact(get_preset(name, **kw))


@pytest.mark.parametrize('name', OFFICIAL_PRESETS)
def test_state_dict_matches_official_layout_exactly_in_order(name):
    expected = [(k, list(s)) for k, s in json.loads((STATE_DICTS / f'yolact_state_dict_{name}.json').read_text())]
    got = [(k, list(v.shape)) for k, v in meta_model(name).state_dict().items()]
    assert got == expected


def test_official_element_counts():
    counts = {n: sum(v.numel() for v in meta_model(n).state_dict().values()) for n in ('yolact_resnet50',
                                                                                        'yolact_plus_base')}
    assert round(counts['yolact_resnet50'] / 1e6, 2) == 31.22
    assert round(counts['yolact_plus_base'] / 1e6, 2) == 52.68


def test_small_preset_layout():
    sd = {k: list(v.shape) for k, v in meta_model('yolact_small', num_classes=5).state_dict().items()}
    # half-width ResNet-18 (backbone_width=32): stages of 32, 64, 128, 256 channels
    assert sd['backbone.conv1.weight'] == [32, 3, 7, 7]
    assert sd['backbone.layers.0.0.conv1.weight'] == [32, 32, 3, 3]
    assert 'backbone.layers.0.0.downsample.0.weight' not in sd  # 32 -> 32, stride 1 (torchvision)
    assert sd['backbone.layers.1.0.downsample.0.weight'] == [64, 32, 1, 1]
    assert not any('conv3' in k for k in sd)
    assert sd['fpn.lat_layers.0.weight'] == [128, 256, 1, 1]  # C5 first
    assert sd['fpn.lat_layers.2.weight'] == [128, 64, 1, 1]
    assert sd['proto_net.0.weight'] == [128, 128, 3, 3]
    assert sd['proto_net.10.weight'] == [32, 128, 1, 1]
    assert sd['prediction_layers.0.conf_layer.weight'] == [3 * 5, 128, 3, 3]
    assert sd['prediction_layers.0.bbox_layer.weight'] == [3 * 4, 128, 3, 3]
    assert sd['semantic_seg_conv.weight'] == [4, 128, 1, 1]
    assert not any(k.startswith('maskiou_net') or 'conv_offset_mask' in k for k in sd)


def test_config_values():
    assert PRESETS['yolact_base'].num_anchors == 3
    assert PRESETS['yolact_plus_base'].num_anchors == 9
    assert PRESETS['yolact_small'].num_anchors == 3
    assert [s[0] for s in PRESETS['yolact_im700'].pred_scales] == [30, 61, 122, 244, 488]
    assert PRESETS['yolact_plus_base'].pred_scales[0] == pytest.approx((24.0, 24 * 2 ** (1 / 3), 24 * 2 ** (2 / 3)))
    assert PRESETS['yolact_small'].pred_scales[0][0] == pytest.approx(24 * 320 / 550)
    assert PRESETS['yolact_darknet53'].normalization == 'darknet'
    cfg = get_preset('yolact_small', num_classes=7)
    assert cfg.num_classes == 7 and PRESETS['yolact_small'].num_classes == 81
    with pytest.raises(KeyError, match='yolact_nope'):
        get_preset('yolact_nope')
    with pytest.raises(ValueError):
        get_preset('yolact_small', num_classes=1)


def test_dcn_block_rule():
    # yolact_plus_base stage 2 (23 blocks, dcn 23, interval 3) -> 0, 3, ..., 21; stage 3 (3 blocks) -> only 0
    assert [i for i in range(23) if uses_dcn(i, 23, 23, 3)] == list(range(0, 23, 3))
    assert [i for i in range(3) if uses_dcn(i, 3, 3, 3)] == [0]
    assert [i for i in range(6) if uses_dcn(i, 6, 6, 1)] == list(range(6))
    assert not any(uses_dcn(i, 3, 0, 1) for i in range(3))
    dcn_blocks = {n: sum(k.endswith('conv_offset_mask.bias') for k in meta_model(n).state_dict())
                  for n in ('yolact_plus_base', 'yolact_plus_resnet50')}
    assert dcn_blocks == {'yolact_plus_base': 11, 'yolact_plus_resnet50': 13}


@pytest.mark.parametrize('name,num_priors,proto_side', [
    ('yolact_base', 19248, 138), ('yolact_resnet50', 19248, 138), ('yolact_darknet53', 19248, 138),
    ('yolact_im700', 30963, 176), ('yolact_plus_base', 57744, 138), ('yolact_plus_resnet50', 57744, 138),
    ('yolact_small', (40 * 40 + 20 * 20 + 10 * 10 + 5 * 5 + 3 * 3) * 3, 80)])
def test_meta_forward_sizes_at_max_size(name, num_priors, proto_side):
    model = meta_model(name).eval()
    s = model.cfg.max_size
    out = model(torch.empty(1, 3, s, s, device='meta'))
    assert out.loc.shape == (1, num_priors, 4)
    assert out.conf.shape == (1, num_priors, 81)
    assert out.coeffs.shape == (1, num_priors, 32)
    assert out.proto.shape == (1, proto_side, proto_side, 32)
    assert out.priors.shape == (num_priors, 4)
    assert out.segm is None


def test_priors_v1_550_match_reference_values():
    cfg = PRESETS['yolact_base']
    priors = make_priors(SIZES_550, cfg.pred_scales, cfg.aspect_ratios, 550, True)
    assert priors.shape == (19248, 4) and priors.dtype == torch.float32
    expected = torch.tensor([[0.00725, 0.00725, 0.04364, 0.04364],
                             [0.00725, 0.00725, 0.03086, 0.03086],
                             [0.00725, 0.00725, 0.06171, 0.06171]])
    torch.testing.assert_close(priors[:3], expected, atol=6e-6, rtol=0)
    # next cell to the right: (y=0, x=1); first cell of the second row: (y=1, x=0)
    torch.testing.assert_close(priors[3, :2], torch.tensor([1.5 / 69, 0.5 / 69]))
    torch.testing.assert_close(priors[69 * 3, :2], torch.tensor([0.5 / 69, 1.5 / 69]))
    # first P4 prior: 48 px square
    torch.testing.assert_close(priors[69 * 69 * 3], torch.tensor([0.5 / 35, 0.5 / 35, 48 / 550, 48 / 550]))
    assert make_priors(SIZES_700, PRESETS['yolact_im700'].pred_scales, (1, 0.5, 2), 700, True).shape[0] == 30963


def test_priors_plus_non_square_order():
    cfg = PRESETS['yolact_plus_base']
    sizes = level_anchor_sizes(cfg.pred_scales[0], cfg.aspect_ratios, 550, False)
    assert len(sizes) == 9
    # scale-major: (24, ar 1), (24, ar 1/2), (24, ar 2), (24 * 2^(1/3), ar 1), ...
    assert sizes[0] == pytest.approx((24 / 550, 24 / 550))
    assert sizes[1] == pytest.approx((24 * math.sqrt(0.5) / 550, 24 * math.sqrt(2) / 550))  # w < h
    assert sizes[2] == pytest.approx((24 * math.sqrt(2) / 550, 24 * math.sqrt(0.5) / 550))
    assert sizes[3] == pytest.approx((24 * 2 ** (1 / 3) / 550,) * 2)
    priors = make_priors(SIZES_550, cfg.pred_scales, cfg.aspect_ratios, 550, False, dtype=torch.float64)
    assert priors.shape == (57744, 4) and priors.dtype == torch.float64
    assert priors[1, 2].item() == pytest.approx(24 * math.sqrt(0.5) / 550, abs=1e-15)


def test_priors_empty_levels():
    assert make_priors([], (), (1,), 550, True).shape == (0, 4)
