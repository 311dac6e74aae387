"""Tests of core.geometry against scenes rendered analytically by ray casting.

Camera: 640x480, fx = fy = 525, cx = 319.5, cy = 239.5. Every pixel's ray (x/z, y/z, 1) is
intersected with the surface, so the depth at a pixel is exact; the object's mask is the set
of pixels whose ray hits the object before the background plane at 3 m.

Truths are closed-form. The position is the per-axis median of the visible surface *as the
camera samples it* (each pixel weighs the same); for surfaces not facing the camera this is
not the geometric centre, so the truth is the median under the image-area measure:
    * tilted square: its image-area density along the plane is proportional to 1 / Z^3, so the
      median depth Z* solves 1 / Z*^2 = (1 / Z_near^2 + 1 / Z_far^2) / 2;
    * sphere on the optical axis: the set of rays hitting it at depth < z is a cone, so the
      median ray has tan^2(theta) = tan^2(theta_max) / 2.
"""

import math

import numpy as np
import pytest

from instseg_ros.core.geometry import (CameraIntrinsics, DepthParams, Instance3D,
                                       depth_to_meters, instance_points, locate_instance,
                                       project_instances, scale_mask_roi)

WIDTH, HEIGHT = 640, 480
K = CameraIntrinsics(fx=525.0, fy=525.0, cx=319.5, cy=239.5, width=WIDTH, height=HEIGHT)
K_HALF = CameraIntrinsics(fx=262.5, fy=262.5, cx=159.5, cy=119.5, width=320, height=240)
BACKGROUND_M = 3.0
HALF_SIDE_M = 0.15
SPHERE_CENTER_M = np.array([0.0, 0.0, 1.5])
SPHERE_RADIUS_M = 0.15
TILT_RAD = math.radians(45.0)
NO_EROSION = DepthParams(mask_erosion_px=0)


# ---------------------------------------------------------------- rendering (ray casting)

def pixel_rays(k: CameraIntrinsics) -> np.ndarray:
    """float64 [H, W, 3] rays (x/z, y/z, 1) through the pixel centres."""
    u = (np.arange(k.width) - k.cx) / k.fx
    v = (np.arange(k.height) - k.cy) / k.fy
    rays = np.ones((k.height, k.width, 3))
    rays[:, :, 0] = u[None, :]
    rays[:, :, 1] = v[:, None]
    return rays


def hit_square(rays, center, axis_u, axis_v, half_side):
    """Depth (z) where rays hit the square center + a axis_u + b axis_v, |a|, |b| <= half_side.

    inf where they miss.
    """
    normal = np.cross(axis_u, axis_v)
    z = (normal @ center) / (rays @ normal)
    offset = rays * z[..., None] - center
    inside = (np.abs(offset @ axis_u) <= half_side) & (np.abs(offset @ axis_v) <= half_side)
    return np.where(inside & (z > 0), z, np.inf)


def hit_sphere(rays, center, radius):
    """Depth (z) of the first intersection of rays with a sphere; inf where they miss."""
    a = np.einsum('hwc,hwc->hw', rays, rays)
    b = rays @ center
    disc = b * b - a * (center @ center - radius ** 2)
    z = (b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where(disc >= 0, z, np.inf)


def render(object_depth):
    """(float32 depth [H, W] in metres, bool object mask) with the background plane at 3 m."""
    mask = object_depth < BACKGROUND_M
    return np.where(mask, object_depth, BACKGROUND_M).astype(np.float32), mask


def square_scene(k=K):
    return render(hit_square(pixel_rays(k), np.array([0.0, 0.0, 1.5]), np.array([1.0, 0, 0]),
                             np.array([0, 1.0, 0]), HALF_SIDE_M))


def tilted_axis():
    return np.array([math.cos(TILT_RAD), 0.0, math.sin(TILT_RAD)])


def tilted_scene(k=K):
    return render(hit_square(pixel_rays(k), np.array([0.0, 0.0, 1.5]), tilted_axis(),
                             np.array([0, 1.0, 0]), HALF_SIDE_M))


def sphere_scene(k=K):
    return render(hit_sphere(pixel_rays(k), SPHERE_CENTER_M, SPHERE_RADIUS_M))


# ---------------------------------------------------------------- analytic truths

def square_truth():
    """(position, box size) of the fronto-parallel square."""
    return np.array([0.0, 0.0, 1.5]), np.array([0.3, 0.3, 0.0])


def tilted_truth():
    """(image-sampled median position, box size from the rotated corners)."""
    axis_u, axis_v = tilted_axis() * HALF_SIDE_M, np.array([0, 1.0, 0]) * HALF_SIDE_M
    corners = np.array([np.array([0, 0, 1.5]) + su * axis_u + sv * axis_v
                        for su in (-1, 1) for sv in (-1, 1)])
    z_near, z_far = corners[:, 2].min(), corners[:, 2].max()
    z_med = 1.0 / math.sqrt((z_near ** -2 + z_far ** -2) / 2.0)
    x_med = (z_med - 1.5) / math.tan(TILT_RAD)
    return np.array([x_med, 0.0, z_med]), corners.max(axis=0) - corners.min(axis=0)


def sphere_truth():
    """(image-sampled median position, box of the visible cap up to the limb)."""
    dist, radius = SPHERE_CENTER_M[2], SPHERE_RADIUS_M
    tan_med = math.tan(math.asin(radius / dist)) / math.sqrt(2.0)
    theta = math.atan(tan_med)
    range_m = dist * math.cos(theta) - math.sqrt(radius ** 2 - (dist * math.sin(theta)) ** 2)
    limb_half_width = radius * math.sqrt(1.0 - (radius / dist) ** 2)
    limb_z = dist - radius ** 2 / dist
    size = np.array([2 * limb_half_width, 2 * limb_half_width, limb_z - (dist - radius)])
    return np.array([0.0, 0.0, range_m * math.cos(theta)]), size


SCENES = {'square': (square_scene, square_truth), 'tilted': (tilted_scene, tilted_truth),
          'sphere': (sphere_scene, sphere_truth)}


# ---------------------------------------------------------------- helpers

def mask_roi(mask):
    """(x0, y0, tight bool crop) of a full-frame mask."""
    rows, cols = np.nonzero(mask)
    y0, x0 = rows.min(), cols.min()
    return int(x0), int(y0), mask[y0:rows.max() + 1, x0:cols.max() + 1]


def corrupt(depth_m, mask, seed, invalid_frac=0.2, outlier_frac=0.05):
    """Copy of depth with invalid_frac of the mask pixels 0 / NaN and outlier_frac at 3-5 m."""
    rng = np.random.default_rng(seed)
    depth = depth_m.copy()
    index = rng.permutation(np.flatnonzero(mask))
    n_invalid, n_outlier = int(invalid_frac * index.size), int(outlier_frac * index.size)
    flat = depth.reshape(-1)
    flat[index[:n_invalid // 2]] = 0.0
    flat[index[n_invalid // 2:n_invalid]] = np.nan
    flat[index[n_invalid:n_invalid + n_outlier]] = rng.uniform(3.0, 5.0, n_outlier)
    return depth


def locate(depth_m, mask, k=K, params=NO_EROSION):
    return project_instances([mask_roi(mask)], depth_m, k, params)[0]


def errors(instance, truth):
    position, size = truth
    return (np.linalg.norm(np.array(instance.position_m) - position),
            np.abs(np.array(instance.box_size_m) - size).max())


# ---------------------------------------------------------------- intrinsics and depth

def test_from_k_reads_row_major_matrix():
    k = CameraIntrinsics.from_k([525.0, 0, 319.5, 0, 520.0, 239.5, 0, 0, 1], 640, 480)
    assert k == CameraIntrinsics(525.0, 520.0, 319.5, 239.5, 640, 480)
    with pytest.raises(ValueError):
        CameraIntrinsics.from_k([1.0] * 8, 640, 480)


def test_scaled_to_half_resolution_keeps_field_of_view():
    assert K.scaled_to(320, 240) == K_HALF
    hd = CameraIntrinsics(1000.0, 1000.0, 959.5, 539.5, 1920, 1080).scaled_to(1280, 720)
    assert (hd.fx, hd.cx, hd.cy) == pytest.approx((2000 / 3, 639.5, 359.5))


def test_scaled_to_other_aspect_raises_naming_both_sizes():
    with pytest.raises(ValueError, match='640x480.*640x360'):
        K.scaled_to(640, 360)


def test_depth_to_meters_millimetres():
    raw = np.array([[0, 1500], [65535, 1]], dtype=np.uint16)
    for encoding in ('16UC1', 'mono16'):
        depth_m = depth_to_meters(raw, encoding)
        assert depth_m.dtype == np.float32 and np.isnan(depth_m[0, 0])
        np.testing.assert_allclose(depth_m.reshape(-1)[1:], [1.5, 65.535, 0.001], rtol=1e-6)
    np.testing.assert_allclose(depth_to_meters(raw, '16UC1', scale=1e-4)[0, 1], 0.15, rtol=1e-6)
    with pytest.raises(ValueError, match='scale'):
        depth_to_meters(raw, '16UC1', scale=0.0)


def test_depth_to_meters_float_marks_invalid_as_nan():
    raw = np.array([[0.0, np.nan, np.inf], [-1.0, 2.5, 0.25]], dtype=np.float32)
    depth_m = depth_to_meters(raw, '32FC1')
    assert np.isnan(depth_m[0]).all() and np.isnan(depth_m[1, 0])
    np.testing.assert_allclose(depth_m[1, 1:], [2.5, 0.25])
    np.testing.assert_allclose(depth_to_meters(raw, '32FC1', scale=2.0)[1, 1], 5.0)
    assert raw[1, 1] == 2.5  # input untouched


def test_depth_to_meters_rejects_unknown_encoding():
    with pytest.raises(ValueError, match='rgb8'):
        depth_to_meters(np.zeros((2, 2), np.uint8), 'rgb8')


# ---------------------------------------------------------------- points

def test_instance_points_back_projects_and_clips_roi():
    depth_m = np.full((HEIGHT, WIDTH), 2.0, dtype=np.float32)
    points = instance_points(np.ones((20, 20), bool), -5, -5, depth_m, K, NO_EROSION)
    assert points.shape == (225, 3) and points.dtype == np.float32
    # First point is pixel (0, 0), last (14, 14).
    np.testing.assert_allclose(points[0], [-319.5 / 525 * 2, -239.5 / 525 * 2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(points[-1], [-305.5 / 525 * 2, -225.5 / 525 * 2, 2.0], rtol=1e-6)


def test_instance_points_depth_range():
    depth_m = np.array([[0.05, 0.5, 11.0, np.nan]], dtype=np.float32)
    points = instance_points(np.ones((1, 4), bool), 0, 0, depth_m,
                             CameraIntrinsics(1.0, 1.0, 0.0, 0.0, 4, 1), NO_EROSION)
    np.testing.assert_allclose(points, [[0.5, 0.0, 0.5]])


def test_erosion_falls_back_to_full_mask_for_small_masks():
    depth_m = np.full((HEIGHT, WIDTH), 2.0, dtype=np.float32)
    params = DepthParams(mask_erosion_px=2, min_points=5)
    assert instance_points(np.ones((3, 3), bool), 100, 100, depth_m, K, params).shape == (9, 3)
    # A 9x9 mask erodes to 5x5 = 25 points >= min_points: erosion is kept.
    assert instance_points(np.ones((9, 9), bool), 100, 100, depth_m, K, params).shape == (25, 3)


# ---------------------------------------------------------------- localisation accuracy

@pytest.mark.parametrize('name', sorted(SCENES))
def test_exact_depth_matches_analytic_truth(name):
    scene, truth = SCENES[name]
    depth_m, mask = scene()
    instance = locate(depth_m, mask)
    position_error, size_error = errors(instance, truth())
    assert instance.has_position and instance.num_points == np.count_nonzero(mask)
    assert position_error < 0.01 and size_error < 0.02


def test_square_box_is_centred_and_thin():
    depth_m, mask = square_scene()
    instance = locate(depth_m, mask)
    np.testing.assert_allclose(instance.box_center_m, [0.0, 0.0, 1.5], atol=2e-3)
    assert instance.box_size_m[2] < 1e-5


@pytest.mark.parametrize('name', sorted(SCENES))
def test_invalid_pixels_and_far_outliers(name):
    scene, truth = SCENES[name]
    depth_m, mask = scene()
    instance = locate(depth_to_meters(corrupt(depth_m, mask, seed=7), '32FC1'), mask)
    position_error, size_error = errors(instance, truth())
    assert instance.has_position
    assert position_error < 0.02 and size_error < 0.02
    # The outliers are rejected: at most the 75 % valid, non-outlier pixels are kept.
    assert instance.num_points <= 0.75 * np.count_nonzero(mask) + 1


def test_millimetre_and_metre_encodings_agree():
    depth_m, mask = sphere_scene()
    depth_m = corrupt(depth_m, mask, seed=3, outlier_frac=0.0)
    depth_m = np.nan_to_num(depth_m, nan=0.0)
    depth_mm = np.round(depth_m * 1000.0).astype(np.uint16)
    from_float = locate(depth_to_meters(depth_m, '32FC1'), mask)
    from_mm = locate(depth_to_meters(depth_mm, '16UC1'), mask)
    assert from_float.num_points == from_mm.num_points > 0
    for field in ('position_m', 'box_center_m', 'box_size_m'):
        np.testing.assert_allclose(getattr(from_mm, field), getattr(from_float, field), atol=1e-3)


def test_no_valid_depth_gives_no_position():
    depth_m, mask = square_scene()
    depth_m[mask] = np.nan
    instances = project_instances([mask_roi(mask), (5, 5, np.zeros((0, 0), bool))], depth_m, K)
    assert instances == [Instance3D.invalid(), Instance3D.invalid()]
    assert not instances[0].has_position and instances[0].position_m == (0.0, 0.0, 0.0)


def test_too_few_points_gives_no_position():
    depth_m = np.full((HEIGHT, WIDTH), 2.0, dtype=np.float32)
    instance = locate_instance(instance_points(np.ones((3, 3), bool), 10, 10, depth_m, K),
                               DepthParams(min_points=20))
    assert instance == Instance3D.invalid(9)


def test_half_resolution_depth_with_scaled_intrinsics():
    full = locate(*sphere_scene())
    half = locate(*sphere_scene(K_HALF), k=K.scaled_to(320, 240))
    assert half.has_position
    assert np.linalg.norm(np.subtract(half.position_m, full.position_m)) < 0.01
    with pytest.raises(ValueError, match='320x240'):
        locate(*sphere_scene(K_HALF), k=K)


def test_scale_mask_roi_samples_nearest_source_pixel():
    rng = np.random.default_rng(0)
    full = np.zeros((HEIGHT, WIDTH), bool)
    full[101:161, 51:131] = rng.random((60, 80)) > 0.5
    x0, y0, crop = scale_mask_roi(51, 101, full[101:161, 51:131], 0.5, 0.5)
    half = np.zeros((240, 320), bool)
    half[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    np.testing.assert_array_equal(half, full[1::2, 1::2])


def test_erosion_removes_mask_bleed_onto_close_background():
    """Square at 1.5 m before a wall at 1.53 m (inside the outlier gate), mask dilated 2 px."""
    depth_m, mask = square_scene()
    depth_m[~mask] = 1.53
    bled = np.zeros_like(mask)
    rows, cols = np.nonzero(mask)
    bled[rows.min() - 2:rows.max() + 3, cols.min() - 2:cols.max() + 3] = True
    roi = mask_roi(bled)
    plain = project_instances([roi], depth_m, K, NO_EROSION)[0]
    eroded = project_instances([roi], depth_m, K, DepthParams(mask_erosion_px=2))[0]
    position, size = square_truth()
    assert plain.box_size_m[2] == pytest.approx(0.03, abs=1e-4)  # the wall is in the box
    assert eroded.num_points == np.count_nonzero(mask)  # exactly the object's pixels
    assert errors(eroded, (position, size))[1] < 0.006 and eroded.box_size_m[2] < 1e-5
    np.testing.assert_allclose(eroded.position_m, position, atol=0.005)


def test_project_instances_order_and_points():
    square_depth, square_mask = square_scene()
    depth_m, sphere_mask = sphere_scene()
    depth_m = depth_m.copy()
    shifted = np.zeros_like(square_mask)
    shifted[:, 200:] = square_mask[:, :-200]  # square moved 200 px right, in front
    depth_m[shifted] = 1.5
    rois = [mask_roi(shifted), mask_roi(sphere_mask & ~shifted)]
    instances, clouds = project_instances(rois, depth_m, K, NO_EROSION, return_points=True)
    assert [len(c) for c in clouds] == [i.num_points for i in instances]
    assert clouds[0].dtype == np.float32 and clouds[0].shape[1] == 3
    np.testing.assert_allclose(instances[0].position_m[2], 1.5, atol=1e-6)
    assert instances[0].position_m[0] == pytest.approx(200 / 525 * 1.5, abs=0.005)
    assert instances[1].position_m[0] == pytest.approx(0.0, abs=0.01)
    np.testing.assert_allclose(np.median(clouds[0], axis=0), instances[0].position_m, atol=0.003)


def test_outliers_in_front_are_rejected():
    """Flying pixels / an occluder edge in front of the object (0.5-1.0 m) are gated out.

    The gate is median -+ 4 robust sigmas: for this square's ~uniform depth spread of
    1.39-1.61 m it is ~1.18-1.80 m, so outliers closer to the object than that stay in.
    """
    depth_m, mask = tilted_scene()
    rng = np.random.default_rng(11)
    index = rng.permutation(np.flatnonzero(mask))[:int(0.05 * np.count_nonzero(mask))]
    depth_m.reshape(-1)[index] = rng.uniform(0.5, 1.0, index.size)
    instance = locate(depth_m, mask)
    position_error, size_error = errors(instance, tilted_truth())
    assert position_error < 0.02 and size_error < 0.02
    assert instance.num_points == np.count_nonzero(mask) - index.size


@pytest.mark.parametrize('name', sorted(SCENES))
def test_fused_projection_equals_points_then_locate(name):
    depth_m, mask = SCENES[name][0]()
    depth_m = depth_to_meters(corrupt(depth_m, mask, seed=5), '32FC1')
    roi = mask_roi(mask)
    exact = DepthParams(gate_sample_points=10 ** 7, max_stat_points=10 ** 7)
    fused = project_instances([roi], depth_m, K, exact)[0]
    assert fused == locate_instance(instance_points(roi[2], roi[0], roi[1], depth_m, K, exact),
                                    exact)
    # The default subsampled statistics stay within 2 mm of the exact ones.
    sampled = project_instances([roi], depth_m, K, DepthParams(mask_erosion_px=2))[0]
    reference = project_instances([roi], depth_m, K, DepthParams(
        mask_erosion_px=2, gate_sample_points=10 ** 7, max_stat_points=10 ** 7))[0]
    np.testing.assert_allclose(sampled.position_m, reference.position_m, atol=0.002)
    assert sampled.box_size_m == reference.box_size_m


def test_sparse_mask_missed_by_gate_sub_grid():
    """A 100x100 ROI samples its gate every 4th pixel; a mask on rows 1, 5, 9.. is missed."""
    depth_m = np.full((HEIGHT, WIDTH), 2.0, dtype=np.float32)
    crop = np.zeros((100, 100), bool)
    crop[1::4, :] = True
    instance = project_instances([(100, 100, crop)], depth_m, K, NO_EROSION)[0]
    assert instance.has_position and instance.num_points == 2500
    assert instance.position_m[2] == pytest.approx(2.0)
