"""Tests of the synthetic RGB-D scene generator and its COCO writer."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from instseg_ros.synth.dataset import image_seed, main as synth_main, write_coco_dataset
from instseg_ros.synth.scene import CLASS_NAMES, Camera, masks_to_boxes, render_scene

SEEDS = (0, 1, 2, 3, 7, 11)


@pytest.fixture(scope='module')
def scenes():
    return {s: render_scene(s) for s in SEEDS}


def test_camera_defaults_and_k():
    cam = Camera()
    assert (cam.width, cam.height) == (640, 480)
    assert cam.k() == [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
    small = Camera(width=320, height=240)
    assert (small.fx, small.fy, small.cx, small.cy) == (262.5, 262.5, 159.5, 119.5)
    assert Camera(fx=600.0).k()[0] == 600.0


def test_shapes_and_dtypes(scenes):
    for sc in scenes.values():
        n = len(sc)
        assert sc.image_bgr.shape == (480, 640, 3) and sc.image_bgr.dtype == np.uint8
        assert sc.depth_m.shape == (480, 640) and sc.depth_m.dtype == np.float32
        assert sc.depth_mm.shape == (480, 640) and sc.depth_mm.dtype == np.uint16
        assert sc.masks.shape == (n, 480, 640) and sc.masks.dtype == bool
        assert sc.labels.shape == (n,) and sc.labels.dtype == np.int64
        assert sc.boxes_xyxy.shape == (n, 4) and sc.boxes_xyxy.dtype == np.float32
        assert sc.depths_m.shape == (n,) and sc.centers_uv.shape == (n, 2)
        assert 2 <= n <= 6
        assert set(sc.labels.tolist()) <= set(range(len(CLASS_NAMES)))


def test_deterministic_per_seed(scenes):
    again = render_scene(3)
    ref = scenes[3]
    for name in ('image_bgr', 'depth_m', 'depth_mm', 'masks', 'labels', 'boxes_xyxy', 'depths_m'):
        np.testing.assert_array_equal(getattr(again, name), getattr(ref, name), err_msg=name)
    other = scenes[7]
    assert not np.array_equal(other.image_bgr, ref.image_bgr)
    assert not np.array_equal(other.depth_m, ref.depth_m)


def test_masks_disjoint_and_large(scenes):
    for sc in scenes.values():
        assert sc.masks.sum(axis=0).max() <= 1
        areas = sc.masks.reshape(len(sc), -1).sum(axis=1)
        assert areas.min() >= 300
        # objects are 60-190 px across: area stays well below a 200x200 square
        assert areas.max() < 200 * 200


def test_depth_consistent_with_masks(scenes):
    for sc in scenes.values():
        background = ~sc.masks.any(axis=0)
        bg_near = float(sc.depth_m[background].min())
        assert 2.3 < bg_near and float(sc.depth_m.max()) < 5.5
        for k in range(len(sc)):
            d = sc.depth_m[sc.masks[k]]
            assert 0.6 <= sc.depths_m[k] <= 2.0
            if sc.labels[k] == 0:  # ball: front point at depths_m, rim one radius behind
                assert d.min() >= sc.depths_m[k] - 1e-6
                assert d.max() <= sc.depths_m[k] + sc.radii_m[k] + 1e-6
            else:  # flat, fronto-parallel
                np.testing.assert_array_equal(d, np.float32(sc.depths_m[k]))
            assert d.max() < bg_near
        # millimetre image: rounded metres, except a few invalid zeros
        valid = sc.depth_mm > 0
        assert 0.99 < valid.mean() < 1.0
        np.testing.assert_array_equal(sc.depth_mm[valid],
                                      np.round(sc.depth_m[valid] * 1000).astype(np.uint16))


def test_occlusion_follows_depth_order(scenes):
    hidden_pixels = 0
    for sc in scenes.values():
        assert (sc.masks <= sc.amodal_masks).all()
        visible_fraction = sc.masks.sum(axis=(1, 2)) / sc.amodal_masks.sum(axis=(1, 2))
        assert visible_fraction.min() >= 0.7  # at most 30 % of an object is hidden
        for k in range(len(sc)):
            hidden = sc.amodal_masks[k] & ~sc.masks[k]
            hidden_pixels += int(hidden.sum())
            # each hidden pixel is owned by another object whose surface is nearer there
            assert (sc.masks[:, hidden].sum(axis=0) == 1).all()
            assert not sc.masks[k][hidden].any()
            far_side = sc.depths_m[k] + (sc.radii_m[k] if sc.labels[k] == 0 else 0.0)
            assert (sc.depth_m[hidden] < far_side + 1e-6).all()
            if sc.labels[k] != 0:
                assert (sc.depth_m[hidden] < sc.depths_m[k]).all()
    assert hidden_pixels > 0  # the seeds do contain occlusions


def test_boxes_match_masks(scenes):
    for sc in scenes.values():
        for k in range(len(sc)):
            ys, xs = np.nonzero(sc.masks[k])
            np.testing.assert_array_equal(
                sc.boxes_xyxy[k], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    m = np.zeros((1, 5, 6), dtype=bool)
    m[0, 1:3, 2:5] = True
    np.testing.assert_array_equal(masks_to_boxes(m), [[2, 1, 5, 3]])


def test_other_resolution():
    sc = render_scene(5, Camera(width=320, height=240))
    assert sc.image_bgr.shape == (240, 320, 3) and sc.masks.shape[1:] == (240, 320)
    assert len(sc) >= 1


def test_coco_dataset_roundtrip(tmp_path):
    json_path = write_coco_dataset(tmp_path / 'ds', num_images=3, seed=4)
    data = json.loads(json_path.read_text())
    assert [c['id'] for c in data['categories']] == [1, 2, 3, 4, 5]
    assert [c['name'] for c in data['categories']] == list(CLASS_NAMES)
    assert data['camera']['k'] == Camera().k()
    coco = COCO(str(json_path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    for i, image_id in enumerate(sorted(coco.getImgIds())):
        info = coco.imgs[image_id]
        assert info['seed'] == image_seed(4, i) == 400000 + i
        sc = render_scene(info['seed'])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(sc)
        image = cv2.imread(str(tmp_path / 'ds' / info['file_name']))
        np.testing.assert_array_equal(image, sc.image_bgr)
        depth = cv2.imread(str(tmp_path / 'ds' / info['depth_file']), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16
        np.testing.assert_array_equal(depth, sc.depth_mm)
        for k, ann in enumerate(anns):
            assert isinstance(ann['segmentation']['counts'], str)
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), sc.masks[k])
            assert ann['category_id'] == sc.labels[k] + 1
            assert ann['area'] == int(sc.masks[k].sum())
            assert ann['iscrowd'] == 0
            np.testing.assert_allclose(ann['bbox'], mask_utils.toBbox(ann['segmentation']))


def test_cli_jpeg(tmp_path):
    assert synth_main(['--out', str(tmp_path), '--num-images', '2', '--seed', '1',
                       '--width', '320', '--height', '240', '--format', 'jpg']) == 0
    data = json.loads((tmp_path / 'instances.json').read_text())
    assert [im['file_name'] for im in data['images']] == ['images/000000.jpg', 'images/000001.jpg']
    assert data['camera']['width'] == 320 and data['images'][0]['height'] == 240
    assert (tmp_path / 'depth' / '000001.png').is_file()


def test_a_scene_without_objects_renders():
    """A small camera where no object fits (seed 1005 at 160x120): an empty scene, not a reshape
    error (synthetic_camera -p width:=160 -p height:=120 died at startup)."""
    scene = render_scene(1005, Camera(160, 120))
    assert scene.masks.shape == (0, 120, 160) and scene.image_bgr.shape == (120, 160, 3)
    assert scene.labels.shape == (0,) and scene.boxes_xyxy.shape == (0, 4)
