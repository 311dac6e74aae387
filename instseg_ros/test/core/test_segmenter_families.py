"""Which family and preset a checkpoint gets: the names mmdetection publishes its files under
(from its metafiles), torchvision's and YOLACT's, and presets given explicitly."""

import pytest

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.segmenter import BUILDERS, FAMILY_TITLES, all_presets, family_presets, model_family

PUBLISHED = {
    'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151727-ec670f7e.pth': ('rtmdet_ins', 'rtmdet_ins_tiny'),
    'rtmdet-ins_s_8xb32-300e_coco_20221121_212604-fdc5d7ec.pth': ('rtmdet_ins', 'rtmdet_ins_s'),
    'rtmdet-ins_m_8xb32-300e_coco_20221123_001039-6eba602e.pth': ('rtmdet_ins', 'rtmdet_ins_m'),
    'solov2_r50_fpn_1x_coco_20220512_125858-a357fa23.pth': ('solov2', 'solov2_r50'),
    'solov2_r50_fpn_3x_coco_20220512_125856-fed092d4.pth': ('solov2', 'solov2_r50'),
    'solov2_light_r50_fpn_3x_coco_20220512_165256-c93a6074.pth': ('solov2', 'solov2_light_r50'),
    'condinst_r50_fpn_ms-poly-90k_coco_instance_20221129_125223-4c186406.pth': ('condinst', 'condinst_r50'),
    'maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth': ('maskrcnn', None),
    'yolact_base_54_800000.pth': ('yolact', None),
    'my_model.pth': ('yolact', None),
}


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_published_file_names_pick_family_and_preset(name):
    from instseg_ros.core.models import condinst, rtmdet, solov2
    family, preset = PUBLISHED[name]
    assert model_family('auto', name) == family
    named = {'rtmdet_ins': rtmdet.preset_from_file_name, 'solov2': solov2.preset_from_file_name,
             'condinst': condinst.preset_from_file_name}
    if preset is not None:
        assert named[family](name) == preset
    for other, from_name in named.items():
        if other != family:
            assert from_name(name) is None


def test_every_family_has_a_builder_title_and_presets():
    presets = family_presets()
    assert set(presets) == set(BUILDERS) == set(FAMILY_TITLES)
    assert {'rtmdet_ins_tiny', 'rtmdet_ins_s', 'rtmdet_ins_m', 'solov2_r50', 'solov2_light_r50',
            'condinst_r50'} <= set(all_presets())
    for family, names in presets.items():
        for preset in names:
            assert model_family(preset, 'any.pth') == family


def test_preset_and_model_must_agree():
    with pytest.raises(CheckpointError, match="preset 'rtmdet_ins_s' is a rtmdet_ins preset, not a yolact one"):
        model_family('rtmdet_ins_s', 'x.pth', model='yolact')
    with pytest.raises(CheckpointError, match="unknown preset 'rtmdet_ins_l'"):
        model_family('rtmdet_ins_l', 'x.pth')
