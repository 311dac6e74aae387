"""Node benchmark, host side (no middleware): the per-frame overhead of everything but the
forward pass, message sizes, and the depth-projection bench (sections 2, 4, 5 of bench/node.py)."""

from __future__ import annotations

from node_common import *  # noqa: F401,F403 - constants, helpers, environment of the bench
from node_common import Path, json, np, time, torch  # noqa: F401


def measure_overhead(weights: Path, settings: dict, scene_seed: int = SEED + 7,
                     num_objects: tuple[int, int] = (2, 6)) -> tuple[dict, object, object]:
    """Per-stage medians (ms) of the node's host-side work for one 640x480 frame, 20 instances.

    Returns (report, FrameResult, header) -- the result is reused for the message sizes.
    """
    from instseg_ros.core.geometry import CameraIntrinsics, DepthParams, depth_to_meters
    from instseg_ros.core.pipeline import DepthInput, FramePipeline
    from instseg_ros.core.predictor import InferenceParams, Predictor
    from instseg_ros.core.visualization import depth_texts, draw_overlay
    from instseg_ros.ros.conversions import InstancesPacker, image_to_bgr8, numpy_to_image
    from instseg_ros.ros.markers import MarkerBuilder
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    predictor = Predictor.from_checkpoint(str(weights), device='cpu', class_names=CLASS_NAMES)
    predictor.warmup()
    pipeline = FramePipeline(predictor)
    names = pipeline.class_names
    camera = Camera(640, 480)
    scene = render_scene(scene_seed, camera, num_objects=num_objects)
    header = Header(frame_id=FRAME_ID)
    header.stamp.sec, header.stamp.nanosec = 1700000000, 123
    msg = numpy_to_image(scene.image_bgr, 'bgr8', header)
    raw = serialize_message(msg)
    params = InferenceParams(score_threshold=0.0, max_detections=NUM_INSTANCES)
    repeats = settings['stage_repeats']
    marker_builder = MarkerBuilder()  # the node keeps one and reuses its messages

    # Depth (node defaults) so that markers and overlay depth texts are those of a 3D frame.
    depth = DepthInput(depth_m=depth_to_meters(scene.depth_mm, '16UC1'),
                       intrinsics=CameraIntrinsics.from_k(camera.k(), 640, 480))
    depth_params = DepthParams(min_depth_m=0.1, max_depth_m=10.0, mask_erosion_px=2, min_points=20)
    packer = InstancesPacker()  # the node reuses its InstanceMask messages too

    def timed(fn):
        begin = time.perf_counter()
        value = fn()
        return value, (time.perf_counter() - begin) * 1e3

    # Frame by frame as the node's worker does it (each host step runs after a forward pass, with
    # the caches that leaves), every output subscribed; the depth step is timed but not summed.
    names_of = ('image_to_bgr8', 'preprocess', 'postprocess', 'host_arrays', 'instances_to_msg',
                'overlay_draw_and_numpy_to_image', 'markers')
    times: dict[str, list[float]] = {name: [] for name in names_of + ('forward', 'depth')}
    frame_sums = []
    for iteration in range(settings['overhead_repeats'] + 1):  # the first one is a warm-up
        image, decode_ms = timed(lambda: image_to_bgr8(msg))
        result = pipeline.process(image, params)
        pipeline.add_depth(result, depth, depth_params)
        instances_msg, pack_ms = timed(lambda: packer.pack(
            header, result.image_size, result.rois, result.scores, result.labels, names,
            result.instances_3d))
        overlay_msg, overlay_ms = timed(lambda: numpy_to_image(draw_overlay(
            image, result.rois, result.boxes_xyxy, result.labels, result.scores, names, alpha=0.45,
            draw_boxes=True, draw_labels=True, font_scale=0.5,
            depth_text=depth_texts(result.instances_3d)),
            'bgr8', header))
        _, markers_ms = timed(lambda: marker_builder.build(result, header, names))
        frame = {'image_to_bgr8': decode_ms, 'preprocess': result.timings_ms['preprocess'],
                 'postprocess': result.timings_ms['postprocess'], 'host_arrays': result.timings_ms['encode'],
                 'instances_to_msg': pack_ms, 'overlay_draw_and_numpy_to_image': overlay_ms,
                 'markers': markers_ms, 'forward': result.timings_ms['forward'],
                 'depth': result.timings_ms['depth']}
        if iteration == 0:
            continue
        for name, value in frame.items():
            times[name].append(value)
        frame_sums.append(sum(frame[name] for name in names_of))
    if len(result) != NUM_INSTANCES:
        log(f'WARNING: {len(result)} instances instead of {NUM_INSTANCES}')
    stages = {name: round(float(np.median(times[name])), 3) for name in names_of}
    total = round(float(np.median(frame_sums)), 3)
    extra = {  # not in the sum: middleware copies done in C by rclpy, and the 3D step (section 5)
        'forward_ms': round(float(np.median(times['forward'])), 2),
        'deserialize_input_image_ms': median_ms(lambda: deserialize_message(raw, Image), repeats),
        'serialize_instances_ms': median_ms(lambda: serialize_message(instances_msg), repeats),
        'serialize_overlay_ms': median_ms(lambda: serialize_message(overlay_msg), repeats),
        'depth_projection_this_frame_ms': round(float(np.median(times['depth'])), 3),
    }
    report = {
        'image_size_wh': [640, 480], 'instances': len(result),
        'instances_with_3d': sum(bool(i.has_position) for i in result.instances_3d or []),
        'inference_params': 'score_threshold=0.0, max_detections=20 (others default)',
        'frames': settings['overhead_repeats'],
        'stages_median_ms': stages, 'sum_ms': total, 'sum_p90_ms': round(float(np.percentile(frame_sums, 90)), 3),
        'target_ms': OVERHEAD_TARGET_MS,
        'meets_target': total < OVERHEAD_TARGET_MS,
        'not_in_sum_median_ms': extra,
        'mask_roi_pixels_median': int(np.median([roi[2].size for roi in result.rois])) if result.rois else 0,
        'notes': ('per frame, in the order of the node worker (image_to_bgr8, FramePipeline.process, '
                  'depth, instances, overlay, markers) after a forward pass each time; sum_ms is the '
                  'median of the per-frame sums of the stages listed (forward and depth excluded), the '
                  'stages are per-stage medians. preprocess / postprocess (detection, NMS, masks straight '
                  "to tight ROIs) from Predictor.last_timings_ms, host_arrays = FrameResult.timings_ms['encode']; "
                  'one MarkerBuilder and InstancesPacker reused, as in the node; markers and overlay with 3D.'),
    }
    return report, result, header


# ---------------------------------------------------------------------------- 4. msg sizes
def full_frame_equivalent(msg, height: int, width: int):
    """The same InstanceMaskArray with every mask a full-frame mono8 image (ROI = whole frame)."""
    from copy import deepcopy

    from instseg_ros.core.encoding import paste_roi, roi_to_mono8
    from instseg_ros.ros.conversions import image_to_numpy
    from sensor_msgs.msg import Image, RegionOfInterest
    full = deepcopy(msg)
    for inst in full.instances:
        crop = image_to_numpy(inst.mask) > 127
        frame = paste_roi(inst.roi.x_offset, inst.roi.y_offset, crop, height, width)
        mask = Image(header=inst.mask.header, height=height, width=width, encoding='mono8',
                     is_bigendian=0, step=width)
        mask.data = roi_to_mono8(frame).tobytes()
        inst.mask = mask
        inst.roi = RegionOfInterest(x_offset=0, y_offset=0, height=height, width=width)
    return full


def message_sizes(result, header, geometry_module) -> dict:
    from instseg_ros.ros.conversions import instances_to_msg
    from rclpy.serialization import serialize_message

    def sizes(msg, height, width, label):
        roi_bytes = len(serialize_message(msg))
        full_bytes = len(serialize_message(full_frame_equivalent(msg, height, width)))
        crops = sum(i.mask.height * i.mask.width for i in msg.instances)
        return {'source': label, 'image_size_wh': [width, height],
                'instances': len(msg.instances), 'mask_crop_pixels': int(crops),
                'roi_bytes': roi_bytes, 'full_frame_bytes': full_bytes,
                'full_frame_mask_payload_bytes': len(msg.instances) * height * width,
                'ratio_full_over_roi': round(full_bytes / roi_bytes, 1)}

    height, width = result.image_size
    model_msg = instances_to_msg(header, result.image_size, result.rois, result.scores,
                                 result.labels, CLASS_NAMES, result.instances_3d)
    out = {'model_frame': sizes(model_msg, height, width,
                                'the 20-instance frame of section 2 (random-weight model: small '
                                'box-shaped masks)')}
    _depth, _k, rois = geometry_module.synthetic_frame(640, 480)
    geo_msg = instances_to_msg(header, (480, 640), rois, np.linspace(0.9, 0.5, len(rois)),
                               np.arange(len(rois)) % len(CLASS_NAMES), CLASS_NAMES)
    out['object_sized_masks'] = sizes(geo_msg, 480, 640,
                                      'bench/geometry.py synthetic_frame: 20 elliptic masks, '
                                      'sides 40-140 px')
    return out


def load_geometry_bench():
    spec = importlib.util.spec_from_file_location('bench_geometry',
                                                  Path(__file__).resolve().parent / 'geometry.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- ROS client
