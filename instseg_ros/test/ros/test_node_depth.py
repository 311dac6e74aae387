"""3D instances end to end: the synthetic camera process publishes colour + depth + camera_info,
the yolact node (another process) pairs them by stamp and fills the 3D fields; a colour frame
with no matching depth still yields instances, without 3D."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import (PARAMS_FILE, make_small_checkpoint, node_command, start,  # noqa: E402
                         stop)

from instseg_ros.core.geometry import (CameraIntrinsics, DepthParams, depth_to_meters,  # noqa: E402
                                       project_instances)


pytestmark = pytest.mark.ros
CAM = '/cam'
COLOR, DEPTH, INFO = (f'{CAM}/color/image_raw', f'{CAM}/aligned_depth_to_color/image_raw',
                      f'{CAM}/color/camera_info')


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> pathlib.Path:
    return make_small_checkpoint(tmp_path_factory.mktemp('weights') / 'yolact_small_depth.pth', seed=1)


@pytest.fixture(scope='module')
def processes(weights, tmp_path_factory):
    logs = tmp_path_factory.mktemp('logs')
    camera = start(node_command(module='instseg_ros.ros.synthetic_camera',
                                node_name='synthetic_camera', namespace=CAM,
                                parameters={'rate': 4.0, 'width': 320, 'height': 240,
                                            'pool_size': 2, 'seed': 500}),
                   logs / 'camera.log')
    node = start(node_command(namespace='/robot', params_file=PARAMS_FILE,
                              parameters={'weights': str(weights), 'device': 'cpu',
                                          'score_threshold': 0.05, 'max_detections': 6,
                                          'use_depth': True, 'depth_slop': 0.02,
                                          'mask_erosion': 1, 'min_depth_points': 10,
                                          'publish_points': True},
                              remaps={'image': COLOR, 'depth': DEPTH, 'camera_info': INFO}),
                 logs / 'yolact.log')
    yield camera, node, logs
    assert stop(node) == 0, (logs / 'yolact.log').read_text()[-3000:]
    stop(camera)


def test_instances_carry_3d_from_the_paired_depth(make_node, spin_until, processes):
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from instseg_ros.ros.conversions import image_to_numpy, msg_to_masks
    from instseg_ros.ros.markers import cloud_to_array
    camera, node_proc, logs = processes
    node = make_node('depth_test_client')
    results, depths, infos, clouds = [], {}, [], []
    node.create_subscription(InstanceMaskArray, '/robot/instances', results.append, 10)
    node.create_subscription(PointCloud2, '/robot/points', clouds.append, 10)
    node.create_subscription(Image, DEPTH, lambda m: depths.__setitem__(
        (m.header.stamp.sec, m.header.stamp.nanosec), m), 10)
    node.create_subscription(CameraInfo, INFO, infos.append, 10)

    def paired():
        return [r for r in results if (r.header.stamp.sec, r.header.stamp.nanosec) in depths
                and any(i.has_position for i in r.instances)]
    ok = spin_until(node, lambda: len(paired()) >= 2 and infos or node_proc.poll() is not None,
                    timeout_s=120)
    assert node_proc.poll() is None, (logs / 'yolact.log').read_text()[-3000:]
    assert ok, 'no instances with 3D received'
    result = paired()[-1]
    depth_msg = depths[(result.header.stamp.sec, result.header.stamp.nanosec)]
    assert result.header.frame_id == depth_msg.header.frame_id == 'camera_color_optical_frame'
    depth_m = depth_to_meters(image_to_numpy(depth_msg), depth_msg.encoding)
    k = CameraIntrinsics.from_k(list(infos[-1].k), infos[-1].width, infos[-1].height)
    masks = msg_to_masks(result)
    rois = [(i.roi.x_offset, i.roi.y_offset, masks[n, i.roi.y_offset:i.roi.y_offset + i.roi.height,
                                                    i.roi.x_offset:i.roi.x_offset + i.roi.width])
            for n, i in enumerate(result.instances)]
    expected = project_instances(rois, depth_m, k, DepthParams(mask_erosion_px=1, min_points=10))
    for inst, exp in zip(result.instances, expected):
        assert inst.has_position == exp.has_position
        if not exp.has_position:
            continue
        got = (inst.position.x, inst.position.y, inst.position.z)
        assert got == pytest.approx(exp.position_m, abs=1e-5)
        assert (inst.box_size.x, inst.box_size.y, inst.box_size.z) == pytest.approx(
            exp.box_size_m, abs=1e-5)
        assert inst.num_points == exp.num_points
        assert 0.5 < inst.position.z < 4.5  # the synthetic scene lies 0.6..4 m away
    assert spin_until(node, lambda: len(clouds) > 0, timeout_s=30)
    cloud = cloud_to_array(clouds[-1])
    assert cloud.shape[0] > 0 and np.isfinite(cloud['z']).all()


def test_colour_without_matching_depth_still_yields_instances(make_node, spin_until, processes):
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import Image

    from instseg_ros.ros.conversions import numpy_to_image
    from instseg_ros.synth.scene import Camera, render_scene
    camera, node_proc, _logs = processes
    # While complete colour + depth pairs keep coming, the node processes those (the newest
    # complete pair wins, the others are dropped and counted); once the depth stream has stopped,
    # a colour frame whose depth never comes is published without 3D.
    stop(camera)
    node = make_node('nodepth_test_client')
    results = []
    node.create_subscription(InstanceMaskArray, '/robot/instances', results.append, 10)
    pub = node.create_publisher(Image, COLOR, 10)
    assert spin_until(node, lambda: pub.get_subscription_count() > 0, timeout_s=30)
    msg = numpy_to_image(render_scene(3, Camera(320, 240)).image_bgr, 'bgr8')
    msg.header.stamp.sec, msg.header.frame_id = 7, 'camera_color_optical_frame'  # no depth near t=7
    for _ in range(60):
        pub.publish(msg)
        if spin_until(node, lambda: any(r.header.stamp.sec == 7 for r in results), timeout_s=1.0):
            break
    assert any(r.header.stamp.sec == 7 for r in results)
    result = next(r for r in results if r.header.stamp.sec == 7)
    assert len(result.instances) > 0
    assert not any(i.has_position for i in result.instances)
    assert all(i.num_points == 0 for i in result.instances)
