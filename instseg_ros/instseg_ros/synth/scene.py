"""Procedural RGB-D scenes with exact instance ground truth.

A scene is a textured, possibly tilted background plane 3-4 m away with 2-6 coloured objects in
front of it (0.6-2.0 m). Five classes differ in shape *and* colour family *and* texture:

=========  ===========================  ===============  ===================================
label      shape                        colour family    texture / depth profile
=========  ===========================  ===============  ===================================
0 ball     disc                         red / orange     Lambertian sphere shading, bulge
1 box      rotated rectangle            blue             lit face with bevelled edges
2 triangle equilateral triangle         green            two-tone stripes
3 ring     annulus (hole shows behind)  yellow           tube shading across the ring
4 star     five-pointed star            magenta/purple   checkerboard
=========  ===========================  ===============  ===================================

Rendering is a per-pixel z-buffer, so the visible masks are exact, disjoint and consistent with
the depth image by construction: a pixel belongs to object ``i`` iff object ``i`` is the nearest
surface there. Object placement limits the part of an object that other objects may cover to
``max_hidden_fraction`` of its area, and objects whose visible area still ends up too small are
removed from the scene (not merely left unannotated).

Units: pixels for image coordinates (pixel ``(row, col)`` has its centre at ``x = col, y = row``),
metres for ``depth_m``, millimetres for ``depth_mm``. Deterministic per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ('ball', 'box', 'triangle', 'ring', 'star')

# OpenCV hue range (0..180) of each class's base colour, indexed by label.
_HUE_RANGES: tuple[tuple[float, float], ...] = (
    (-6.0, 10.0),     # ball: red / orange (negative wraps to magenta-red)
    (102.0, 122.0),   # box: blue
    (48.0, 72.0),     # triangle: green
    (20.0, 31.0),     # ring: yellow
    (138.0, 160.0),   # star: magenta / purple
)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera intrinsics (no distortion).

    ``fx``/``fy`` default to 525 px scaled by ``width / 640`` (a Kinect-like 62 deg horizontal
    field of view); ``cx``/``cy`` default to the image centre ``(width - 1) / 2``,
    ``(height - 1) / 2``.
    """

    width: int = 640
    height: int = 480
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None

    def __post_init__(self) -> None:
        scale = self.width / 640.0
        defaults = {'fx': 525.0 * scale, 'fy': 525.0 * scale,
                    'cx': (self.width - 1) / 2.0, 'cy': (self.height - 1) / 2.0}
        for name, value in defaults.items():
            current = getattr(self, name)
            object.__setattr__(self, name, float(value if current is None else current))

    def k(self) -> list[float]:
        """Row-major 3x3 intrinsic matrix as 9 floats (sensor_msgs/CameraInfo ``k``)."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def to_dict(self) -> dict:
        """JSON-serialisable description: width, height, fx, fy, cx, cy, k."""
        return {'width': self.width, 'height': self.height, 'fx': self.fx, 'fy': self.fy,
                'cx': self.cx, 'cy': self.cy, 'k': self.k()}


@dataclass
class Scene:
    """One rendered RGB-D frame with exact ground truth (N objects).

    Attributes:
        image_bgr: uint8 [H, W, 3] colour image, BGR order.
        depth_m: float32 [H, W] exact ground-truth depth (z along the optical axis) in metres,
            valid everywhere.
        depth_mm: uint16 [H, W] sensor-like depth in millimetres (16UC1); 0 marks a few randomly
            dropped-out (invalid) pixels.
        masks: bool [N, H, W] visible masks, pairwise disjoint.
        amodal_masks: bool [N, H, W] full silhouettes before occlusion (``masks`` is a subset).
        labels: int64 [N] class index into ``CLASS_NAMES``.
        boxes_xyxy: float32 [N, 4] tight box of each mask in pixel-edge coordinates
            ``(x_min, y_min, x_max + 1, y_max + 1)`` (same as pycocotools ``toBbox``).
        depths_m: float32 [N] depth of each object's reference point in metres: the depth of the
            flat objects' fronto-parallel plane, and the nearest (front) point of a ball, whose
            surface recedes from there by up to its radius ``radii_m``.
        radii_m: float32 [N] metric circumradius of each object (size_px / 2 * depth / fx).
        centers_uv: float32 [N, 2] projected object centre (x, y) in pixels.
        camera: the intrinsics the scene was rendered with.
        seed: the seed that reproduces this scene.
        class_names: names indexed by label.
    """

    image_bgr: np.ndarray
    depth_m: np.ndarray
    depth_mm: np.ndarray
    masks: np.ndarray
    amodal_masks: np.ndarray
    labels: np.ndarray
    boxes_xyxy: np.ndarray
    depths_m: np.ndarray
    radii_m: np.ndarray
    centers_uv: np.ndarray
    camera: Camera
    seed: int
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class _Object:
    """A placed object: everything lives in the crop ``[y0:y1, x0:x1]`` of the image."""

    label: int
    x0: int
    y0: int
    x1: int
    y1: int
    mask: np.ndarray    # bool [h, w] full (unoccluded) silhouette in the crop
    depth: np.ndarray   # float32 [h, w] surface depth in metres (meaningful inside mask)
    color: np.ndarray   # uint8 [h, w, 3] BGR (meaningful inside mask)
    ref_depth: float
    radius_m: float
    center: tuple[float, float]

    @property
    def area(self) -> int:
        return int(self.mask.sum())


# --------------------------------------------------------------------------- colour helpers


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    """OpenCV-convention HSV (h in 0..180, wraps; s, v in 0..255) -> float32 [3] BGR 0..255."""
    hsv = np.array([[[h % 180.0 * 2.0, s / 255.0, v / 255.0]]], dtype=np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0] * 255.0


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: float32 [h, w], a ``cells``-wide grid upsampled (cubic)."""
    gh = max(2, int(round(cells * h / max(w, 1))))
    grid = rng.uniform(-1.0, 1.0, size=(gh, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Textured, low-saturation background plane.

    Returns:
        color: uint8 [H, W, 3] BGR.
        depth: float32 [H, W] metres; the plane ``a*X + b*Y + Z = d`` (d in 3-4 m, |a|,|b| <= 0.2),
            so depth = d / (1 + a*x + b*y) with normalised coordinates x, y; always >= ~2.4 m.
    """
    h, w = camera.height, camera.width
    xs = (np.arange(w, dtype=np.float32) - camera.cx) / camera.fx
    ys = (np.arange(h, dtype=np.float32) - camera.cy) / camera.fy
    d, a, b = rng.uniform(3.0, 4.0), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)
    depth = (d / (1.0 + a * xs[None, :] + b * ys[:, None])).astype(np.float32)

    base = _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 55), rng.uniform(90, 200))
    second = _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 55), rng.uniform(60, 210))
    kind = int(rng.integers(0, 3))
    # the texture is computed at half resolution (it is smooth) and upsampled
    hh, hw = (h + 1) // 2, (w + 1) // 2
    yy, xx = np.mgrid[0:hh, 0:hw].astype(np.float32) * 2.0
    if kind == 0:  # smooth gradient + blotches
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (math.cos(angle) * xx + math.sin(angle) * yy) / max(w, h)
        t = np.clip(0.5 + 0.6 * (ramp - ramp.mean()) + 0.25 * _smooth_noise(rng, hh, hw, 8), 0, 1)
    elif kind == 1:  # tiles with grout lines
        tile = rng.uniform(40, 110) * w / 640.0
        angle = rng.uniform(-0.3, 0.3)
        u = (math.cos(angle) * xx + math.sin(angle) * yy) / tile
        v = (-math.sin(angle) * xx + math.cos(angle) * yy) / tile
        checker = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
        grout = (np.minimum(np.abs(u - np.round(u)), np.abs(v - np.round(v))) < 0.04)
        t = 0.3 + 0.4 * checker + 0.1 * _smooth_noise(rng, hh, hw, 6)
        t[grout] = 0.05
    else:  # wood-like wavy stripes
        period = rng.uniform(25, 70) * w / 640.0
        angle = rng.uniform(0, math.pi)
        s = (math.cos(angle) * xx + math.sin(angle) * yy) / period
        t = 0.5 + 0.35 * np.sin(2 * math.pi * (s + 0.6 * _smooth_noise(rng, hh, hw, 5)))
    t = t.astype(np.float32)[..., None]
    color = base[None, None, :] * (1.0 - t) + second[None, None, :] * t
    color = np.clip(color + 0.5, 0, 255).astype(np.uint8)
    return cv2.resize(color, (w, h), interpolation=cv2.INTER_LINEAR), depth


# --------------------------------------------------------------------------- shapes


def _shape_inside(label: int, px: np.ndarray, py: np.ndarray, params: dict) -> np.ndarray:
    """Silhouette of class ``label`` in local coordinates (circumradius 1): bool like ``px``."""
    rho2 = px * px + py * py
    if label == 0:  # ball
        return rho2 <= 1.0
    if label == 1:  # box, half extents (hx, hy) with hx^2 + hy^2 = 1
        return (np.abs(px) <= params['hx']) & (np.abs(py) <= params['hy'])
    if label == 2:  # equilateral triangle, circumradius 1 => inradius 0.5
        inside = np.ones(px.shape, dtype=bool)
        for k in range(3):
            ang = -math.pi / 2 + k * 2 * math.pi / 3
            inside &= (math.cos(ang) * px + math.sin(ang) * py) <= 0.5
        return inside
    if label == 3:  # ring
        return (rho2 <= 1.0) & (rho2 >= params['inner'] ** 2)
    # star: outer vertices at radius 1, inner vertices at radius params['inner']
    step = 2 * math.pi / 5
    phi = np.arctan2(py, px) + math.pi / 2          # one tip points "up" in local coordinates
    psi = np.abs(np.mod(phi + step / 2, step) - step / 2)  # angle to the nearest tip, 0..36 deg
    rho = np.sqrt(rho2)
    qx, qy = rho * np.cos(psi), rho * np.sin(psi)
    ix, iy = params['inner'] * math.cos(step / 2), params['inner'] * math.sin(step / 2)
    # inside iff q lies on the origin side of the edge tip (1, 0) -> inner vertex (ix, iy),
    # i.e. the cross product (I - O) x (q - O) has the sign of (I - O) x (0 - O) = iy > 0
    ex, ey = ix - 1.0, iy
    return (ex * qy - ey * (qx - 1.0)) >= 0.0


def _shape_shade(label: int, px: np.ndarray, py: np.ndarray, params: dict,
                 light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texture of class ``label``: (shade, highlight), float32 like ``px``.

    The pixel colour is ``base * shade + (255 - base) * highlight``.
    """
    zeros = np.zeros(px.shape, dtype=np.float32)
    rho2 = px * px + py * py
    if label == 0:  # Lambertian sphere + specular spot
        nz = np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
        ndotl = np.clip(px * light[0] + py * light[1] + nz * light[2], 0.0, 1.0)
        half = light + np.array([0.0, 0.0, 1.0], dtype=np.float32)
        half /= np.linalg.norm(half)
        spec = np.clip(px * half[0] + py * half[1] + nz * half[2], 0.0, 1.0) ** 24
        return (0.3 + 0.75 * ndotl).astype(np.float32), (0.7 * spec).astype(np.float32)
    if label == 1:  # bevelled face: edges lit according to the light direction
        hx, hy = params['hx'], params['hy']
        bevel = 0.12
        shade = np.full(px.shape, 0.95, dtype=np.float32) + 0.08 * (px * light[0] + py * light[1])
        dx, dy = hx - np.abs(px), hy - np.abs(py)
        on_x = (dx < bevel) & (dx <= dy)
        on_y = (dy < bevel) & (dy < dx)
        shade[on_x] = 0.8 + 0.35 * np.sign(px[on_x]) * light[0] - 0.15
        shade[on_y] = 0.8 + 0.35 * np.sign(py[on_y]) * light[1] - 0.15
        return shade, zeros
    if label == 2:  # two-tone stripes
        s = px * math.cos(params['stripe_angle']) + py * math.sin(params['stripe_angle'])
        stripe = (np.floor(s * params['stripe_freq']) % 2).astype(np.float32)
        return np.full(px.shape, 0.9, dtype=np.float32), 0.45 * stripe
    if label == 3:  # tube shading across the ring
        t = (np.sqrt(rho2) - params['inner']) / (1.0 - params['inner'])
        return (0.45 + 0.6 * np.sin(np.pi * np.clip(t, 0, 1))).astype(np.float32), zeros
    # star: checkerboard
    f = params['checker_freq']
    checker = ((np.floor(px * f) + np.floor(py * f)) % 2).astype(np.float32)
    return (1.0 - 0.45 * checker).astype(np.float32), zeros


def _make_object(rng: np.random.Generator, label: int, camera: Camera, light: np.ndarray,
                 gain: float, size_range: tuple[float, float],
                 depth_range: tuple[float, float]) -> _Object:
    """Sample pose, size and appearance of one object fully inside the image."""
    h, w = camera.height, camera.width
    scale = min(w / 640.0, h / 480.0)
    diameter = rng.uniform(*size_range) * scale
    r = diameter / 2.0
    margin = r + 2.0
    cu, cv = rng.uniform(margin, w - 1 - margin), rng.uniform(margin, h - 1 - margin)
    theta = rng.uniform(0, 2 * math.pi)
    z = float(rng.uniform(*depth_range))
    params = {'hx': 1.0, 'hy': 1.0, 'inner': 0.5, 'stripe_angle': 0.0, 'stripe_freq': 4.0,
              'checker_freq': 3.0}
    if label == 1:
        aspect = rng.uniform(0.55, 1.0)
        params['hx'] = 1.0 / math.sqrt(1.0 + aspect * aspect)
        params['hy'] = aspect * params['hx']
    elif label == 2:
        params['stripe_angle'] = rng.uniform(0, math.pi)
        params['stripe_freq'] = rng.uniform(3.0, 5.0)
    elif label == 3:
        params['inner'] = rng.uniform(0.45, 0.62)
    elif label == 4:
        params['inner'] = rng.uniform(0.42, 0.52)
        params['checker_freq'] = rng.uniform(3.0, 4.5)
    lo, hi = _HUE_RANGES[label]
    base = _hsv_to_bgr(rng.uniform(lo, hi), rng.uniform(170, 255), rng.uniform(150, 235))
    base = base * gain * rng.uniform(0.9, 1.1)

    x0, x1 = max(0, int(math.floor(cu - r)) - 1), min(w, int(math.ceil(cu + r)) + 2)
    y0, y1 = max(0, int(math.floor(cv - r)) - 1), min(h, int(math.ceil(cv + r)) + 2)
    dx = (np.arange(x0, x1, dtype=np.float32) - cu)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) - cv)[:, None]
    c, s = math.cos(theta), math.sin(theta)
    px = (c * dx + s * dy) / r
    py = (-s * dx + c * dy) / r
    mask = _shape_inside(label, px, py, params)
    # light direction in the object's local frame so that shading follows the rotation
    local_light = np.array([c * light[0] + s * light[1], -s * light[0] + c * light[1], light[2]],
                           dtype=np.float32)
    shade, highlight = _shape_shade(label, px, py, params, local_light)
    color = (base[None, None, :] * shade[..., None]
             + (255.0 - np.clip(base, 0, 255))[None, None, :] * highlight[..., None])
    radius_m = r * z / camera.fx
    if label == 0:  # sphere: front point at z, surface recedes by up to radius_m at the rim
        rho2 = np.clip(px * px + py * py, 0.0, 1.0)
        depth = (z + radius_m * (1.0 - np.sqrt(1.0 - rho2))).astype(np.float32)
    else:
        depth = np.full(mask.shape, z, dtype=np.float32)
    return _Object(label=label, x0=x0, y0=y0, x1=x1, y1=y1, mask=mask, depth=depth,
                   color=np.clip(color + 0.5, 0, 255).astype(np.uint8), ref_depth=z,
                   radius_m=radius_m, center=(cu, cv))


def _fits(obj: _Object, placed: list[_Object], coverage: np.ndarray,
          max_hidden: float) -> bool:
    """True if adding ``obj`` keeps every object's overlap with the others <= ``max_hidden``.

    ``coverage`` is uint8 [H, W]: how many placed full silhouettes cover each pixel.
    """
    area = obj.area
    if area == 0:
        return False
    cov = coverage[obj.y0:obj.y1, obj.x0:obj.x1]
    if np.count_nonzero(cov[obj.mask]) > max_hidden * area:
        return False
    for other in placed:
        ya, yb = max(obj.y0, other.y0), min(obj.y1, other.y1)
        xa, xb = max(obj.x0, other.x0), min(obj.x1, other.x1)
        if ya >= yb or xa >= xb:
            continue
        both = (obj.mask[ya - obj.y0:yb - obj.y0, xa - obj.x0:xb - obj.x0]
                & other.mask[ya - other.y0:yb - other.y0, xa - other.x0:xb - other.x0])
        if not both.any():
            continue
        # pixels of ``other`` that become covered now: in obj, and covered by nothing but other
        newly = np.count_nonzero(both & (coverage[ya:yb, xa:xb] == 1))
        already = np.count_nonzero(coverage[other.y0:other.y1, other.x0:other.x1][other.mask] > 1)
        if already + newly > max_hidden * other.area:
            return False
    return True


def _composite(bg_color: np.ndarray, bg_depth: np.ndarray,
               objects: list[_Object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffer the objects over the background.

    Returns (color uint8 [H, W, 3], depth float32 [H, W], owner int16 [H, W], -1 = background).
    """
    color, depth = bg_color.copy(), bg_depth.copy()
    owner = np.full(depth.shape, -1, dtype=np.int16)
    for i, obj in enumerate(objects):
        sl = (slice(obj.y0, obj.y1), slice(obj.x0, obj.x1))
        win = obj.mask & (obj.depth < depth[sl])
        depth[sl][win] = obj.depth[win]
        owner[sl][win] = i
        color[sl][win] = obj.color[win]
    return color, depth, owner


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of bool masks [N, H, W] -> float32 [N, 4] ``(x_min, y_min, x_max+1, y_max+1)``.

    Empty masks give ``(0, 0, 0, 0)``.
    """
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for i, m in enumerate(masks):
        cols, rows = np.flatnonzero(m.any(axis=0)), np.flatnonzero(m.any(axis=1))
        if cols.size:
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def render_scene(seed: int, camera: Camera = Camera(), *,
                 num_objects: tuple[int, int] = (2, 6),
                 size_px: tuple[float, float] = (60.0, 190.0),
                 depth_range_m: tuple[float, float] = (0.6, 2.0),
                 max_hidden_fraction: float = 0.3,
                 min_visible_fraction: float = 0.5,
                 min_visible_px: int = 300,
                 noise_sigma: tuple[float, float] = (1.0, 5.0),
                 blur: bool = True,
                 invalid_depth_fraction: float = 0.002) -> Scene:
    """Render one random scene, deterministic in ``seed``.

    Args:
        seed: seed of ``np.random.default_rng``.
        camera: intrinsics and image size.
        num_objects: inclusive range of objects to try to place (fewer if placement fails).
        size_px: range of the object circumdiameter in pixels at 640x480 (scaled with the image).
        depth_range_m: range of the objects' reference depth in metres.
        max_hidden_fraction: at most this fraction of an object's silhouette may be covered by the
            silhouettes of the other objects (whichever is in front).
        min_visible_fraction, min_visible_px: objects whose visible area is below this fraction of
            their silhouette or below this pixel count are removed from the scene.
        noise_sigma: range of the std of additive Gaussian pixel noise (0..255 scale).
        blur: slight 3x3 Gaussian blur of the colour image (anti-aliasing; masks stay exact).
        invalid_depth_fraction: fraction of ``depth_mm`` pixels set to 0 (invalid).

    Returns:
        A :class:`Scene` with N >= 0 objects (N is 2..6 for the defaults except in rare crowded
        cases).
    """
    rng = np.random.default_rng(seed)
    h, w = camera.height, camera.width
    bg_color, bg_depth = _background(rng, camera)

    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.1), 1.0], dtype=np.float32)
    light /= np.linalg.norm(light)
    gain = float(rng.uniform(0.8, 1.1))

    n_target = int(rng.integers(num_objects[0], num_objects[1] + 1))
    placed: list[_Object] = []
    coverage = np.zeros((h, w), dtype=np.uint8)
    for _ in range(n_target):
        label = int(rng.integers(0, len(CLASS_NAMES)))
        for _attempt in range(30):
            obj = _make_object(rng, label, camera, light, gain, size_px, depth_range_m)
            if _fits(obj, placed, coverage, max_hidden_fraction):
                coverage[obj.y0:obj.y1, obj.x0:obj.x1] += obj.mask.astype(np.uint8)
                placed.append(obj)
                break

    # composite; drop objects that are too hidden, re-composite until stable
    while True:
        color, depth, owner = _composite(bg_color, bg_depth, placed)
        masks = np.stack([owner == i for i in range(len(placed))]) if placed else \
            np.zeros((0, h, w), dtype=bool)
        visible = masks.reshape(len(placed), h * w).sum(axis=1)  # -1 fails for 0 objects
        bad = [i for i, o in enumerate(placed)
               if visible[i] < max(min_visible_px, min_visible_fraction * o.area)]
        if not bad:
            break
        del placed[bad[0]]

    # photometric effects on the colour image only; the noise comes from OpenCV's (thread-local)
    # RNG, reseeded from ``rng`` so that it stays deterministic (3x faster than numpy's normals)
    sigma = float(rng.uniform(*noise_sigma))
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    noise = np.empty(color.shape, dtype=np.int16)
    cv2.randn(noise, 0.0, sigma)
    image = cv2.add(color, noise, dtype=cv2.CV_8U)
    if blur:
        image = cv2.GaussianBlur(image, (3, 3), 0.6)

    depth_mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
    n_invalid = int(round(invalid_depth_fraction * h * w))
    if n_invalid:
        idx = rng.integers(0, h * w, size=n_invalid)
        depth_mm.reshape(-1)[idx] = 0

    amodal = np.zeros_like(masks)
    for i, obj in enumerate(placed):
        amodal[i, obj.y0:obj.y1, obj.x0:obj.x1] = obj.mask

    return Scene(
        image_bgr=image, depth_m=depth, depth_mm=depth_mm, masks=masks, amodal_masks=amodal,
        labels=np.array([o.label for o in placed], dtype=np.int64),
        boxes_xyxy=masks_to_boxes(masks),
        depths_m=np.array([o.ref_depth for o in placed], dtype=np.float32),
        radii_m=np.array([o.radius_m for o in placed], dtype=np.float32),
        centers_uv=np.array([o.center for o in placed], dtype=np.float32).reshape(-1, 2),
        camera=camera, seed=int(seed))
