"""Every startup fault ends the node with exit code 2 and one clear line, never a traceback;
startup warnings (CUDA absent, FP16 on the CPU, file name vs tensors) are ROS log lines.

The node processes of one test run side by side (each spends most of its time importing torch).
"""

import pathlib
import shutil
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import (PARAMS_FILE, make_small_checkpoint, node_command, start, stop,  # noqa: E402
                         wait_for_text)

from instseg_ros.ros.model_loading import SHIPPED_WEIGHTS  # noqa: E402


def _faults(tmp: pathlib.Path) -> dict:
    """name -> (node_command kwargs, text the one error line must contain)."""
    bad_json = tmp / 'names.json'
    bad_json.write_text('["ball", "box"')
    tagged = tmp / 'names.yaml'
    tagged.write_text('!!python/object/apply:os.system ["echo hi"]\n')
    sidecar_dir = tmp / 'sidecar'
    sidecar_dir.mkdir()
    weights = sidecar_dir / 'custom.pth'
    shutil.copy(SHIPPED_WEIGHTS, weights)
    weights.with_suffix('.json').write_text('{"class_names": [')
    truncated = tmp / 'yolact_small_1_1.pth'
    truncated.write_bytes(SHIPPED_WEIGHTS.read_bytes()[:SHIPPED_WEIGHTS.stat().st_size // 2])
    return {
        'device': ({'parameters': {'device': 'bogus'}},
                   "device 'bogus' is not a device name (auto, cpu, cuda, cuda:N). Pass device:="),
        'range': ({'parameters': {'score_threshold': 1.5}},
                  'parameter score_threshold: 1.5 is outside [0.0, 1.0]; pass a value in that'),
        'type': ({'parameters': {'top_k': 'many'}},
                 "parameter top_k: 'many' is not a whole number; pass a whole number in [1, 1000]"),
        'depth_order': ({'parameters': {'min_depth': 5.0, 'max_depth': 2}},
                        'min_depth (5.0) must be below max_depth (2.0)'),
        'params_file': ({'params_file': str(tmp / 'missing.yaml')},
                        "Couldn't parse params file"),
        'class_json': ({'parameters': {'class_names_file': str(bad_json)}},
                       f"cannot read class_names_file '{bad_json}'"),
        'class_tag': ({'parameters': {'class_names_file': str(tagged)}},
                      f"cannot read class_names_file '{tagged}'"),
        'sidecar': ({'parameters': {'weights': str(weights)}},
                    f"cannot read the class-name side-car '{weights.with_suffix('.json')}'"),
        'missing_weights': ({'parameters': {'weights': str(tmp / 'none.pth')}},
                            f"weights file '{tmp / 'none.pth'}' does not exist"),
        'preset': ({'parameters': {'preset': 'yolact_huge'}}, "unknown preset 'yolact_huge'"),
        'truncated': ({'parameters': {'weights': str(truncated)}},
                      'cannot read checkpoint (truncated, corrupt or not a PyTorch weights file)'),
    }


def _run_all(commands: dict, tmp: pathlib.Path, timeout_s: float = 120.0) -> dict:
    procs = {name: (start(cmd, tmp / f'{name}.log'), tmp / f'{name}.log')
             for name, cmd in commands.items()}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(p.poll() is None for p, _ in procs.values()):
        time.sleep(0.2)
    return {name: (stop(proc), log.read_text()) for name, (proc, log) in procs.items()}


def test_every_startup_fault_exits_2_with_one_line(tmp_path):
    faults = _faults(tmp_path)
    results = _run_all({name: node_command(**kwargs) for name, (kwargs, _) in faults.items()},
                       tmp_path)
    for name, (code, output) in results.items():
        expected = faults[name][1]
        assert code == 2, f'{name}: exit {code}\n{output[-2000:]}'
        assert 'Traceback' not in output, f'{name}:\n{output}'
        # (rcl itself logs '[rcl]: Failed to parse global arguments' before refusing a params
        # file; the node's own explanation is the one line checked here)
        errors = [line for line in output.splitlines() if 'ERROR' in line and '[rcl]' not in line]
        assert len(errors) == 1, f'{name}:\n{output}'
        assert expected in errors[0], f'{name}: {errors[0]!r} lacks {expected!r}'
    # the truncated-checkpoint text is cut at a word boundary, marked with ' ...'
    line = next(x for x in results['truncated'][1].splitlines() if 'ERROR' in x)
    detail = line.split('weights file): ', 1)[1]
    assert ' ...' in detail or len(detail) < 300


def test_startup_warnings_are_ros_log_lines(tmp_path):
    """device:=cuda on a CPU host and half:=true become [WARN] lines; a yolact_small file named
    like yolact_base weights loads as yolact_small with a warning naming both; an integer for
    a double parameter is accepted."""
    import torch
    if torch.cuda.is_available():
        pytest.skip('needs a host without CUDA')
    weights = make_small_checkpoint(tmp_path / 'yolact_base_54_800000.pth', seed=3)
    results = _run_all({'warn': node_command(params_file=str(PARAMS_FILE), parameters={
        'device': 'cuda', 'half': True, 'weights': str(weights), 'score_threshold': 1,
        'max_depth': 5})}, tmp_path, timeout_s=40.0)
    code, output = results['warn']
    assert 'Ready: model yolact_small on cpu (torch fp32)' in output, output
    warnings = [line for line in output.splitlines() if '[WARN]' in line]
    assert any("device 'cuda' requested but CUDA is not available" in w for w in warnings), output
    assert any('half precision is only used on CUDA' in w for w in warnings), output
    assert any("file name says preset 'yolact_base' but the tensors fit 'yolact_small'" in w
               for w in warnings), output
    assert 'RuntimeWarning' not in output and 'Traceback' not in output, output
    assert code == 0


def _export_faults(tmp: pathlib.Path) -> dict:
    """Faults of the parameters checked at runtime too, of exports and of the cameras (issue 21):
    name -> (node_command kwargs, text the one error line must contain)."""
    import json
    import pickle

    from instseg_ros.core.checkpoint import load_model
    from instseg_ros.core.export import export_onnx
    from instseg_ros.synth.scene import CLASS_NAMES
    model, cfg = load_model(SHIPPED_WEIGHTS)
    good = tmp / 'small.onnx'
    export_onnx(model, cfg, good, CLASS_NAMES)
    sidecar = json.loads(good.with_suffix('.json').read_text())
    files = {'truncated': good.read_bytes()[:100_000], 'empty': b'',
             'random': np.random.default_rng(0).bytes(50_000), 'mixed': good.read_bytes()}
    for name, data in files.items():
        (tmp / f'{name}.onnx').write_bytes(data)
        other = dict(sidecar)
        if name == 'mixed':  # another export's side-car: a 550 px input
            other['input'] = {**sidecar['input'], 'shape': ['batch', 3, 550, 550]}
        (tmp / f'{name}.json').write_text(json.dumps(other))
    (tmp / 'nocfg.onnx').write_bytes(good.read_bytes())
    (tmp / 'nocfg.json').write_text(json.dumps({'format': sidecar['format']}))
    (tmp / 'badcfg.onnx').write_bytes(good.read_bytes())
    (tmp / 'badcfg.json').write_text(json.dumps({**sidecar, 'config': {'name': 7}}))
    names3 = tmp / 'three.txt'
    names3.write_text('ball\nbox\ntriangle\n')
    rtmdet = _rtmdet_checkpoint(tmp / 'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151727-ec670f7e.pth')
    rtmdet_cut = tmp / 'rtmdet-ins_tiny_8xb32-300e_coco_cut.pth'
    rtmdet_cut.write_bytes(rtmdet.read_bytes()[:300_000])
    evil = tmp / 'evil.pth'
    evil.write_bytes(pickle.dumps({'x': _Evil()}, protocol=2))
    onnx = {'weights': None, 'backend': 'onnxruntime'}
    unreadable = 'not a loadable ONNX model (truncated, empty or another format?)'
    faults = {
        'classes': ({'parameters': {'classes': '[bal]'}},
                    "parameter classes: unknown class name(s) ['bal']; known: ball, box"),
        'few_names': ({'parameters': {'class_names_file': str(names3)}},
                      '3 class names for a model with 5 classes'),
        'misspelled_p': ({'params_file': str(PARAMS_FILE), 'parameters': {'score_treshold': 0.5}},
                         '-p score_treshold (did you mean score_threshold?): not a parameter'),
        'evil': ({'parameters': {'weights': str(evil)}},
                 'refused: the file holds Python objects other than tensors and plain containers '
                 '(a reference to print)'),
        'cache': ({'parameters': {'backend': 'onnxruntime'}}, 'cannot write the ONNX export cache'),
        'cam_topics': ({'parameters': {'cameras': "['front']", 'camera_topics': "['image']",
                                       'use_depth': True}},
                       "parameter camera_topics: 1 topic(s) ['image']; with cameras and use_depth"),
        'cam_space': ({'parameters': {'cameras': "['front cam']"}},
                      "'front cam/color/image_raw' is not a valid relative topic name"),
        'rtmdet_wrong_family': ({'parameters': {'weights': str(SHIPPED_WEIGHTS), 'preset': 'rtmdet_ins_tiny'}},
                                'not an RTMDet-Ins checkpoint (no bbox_head.rtm_kernel keys; it looks like YOLACT)'),
        'rtmdet_truncated': ({'parameters': {'weights': str(rtmdet_cut)}},
                             'cannot read checkpoint (truncated, corrupt or not a PyTorch weights file)'),
        'rtmdet_classes': ({'parameters': {'weights': str(rtmdet), 'class_names_file': str(names3)}},
                           'the checkpoint has 80 classes but 3 class names were given. Check weights:= '
                           "and preset:= (auto takes the family and preset from mmdetection's file name"),
        'maskrcnn_no_weights': ({'parameters': {'preset': 'maskrcnn_resnet50_fpn_v2'}},
                                'preset maskrcnn_resnet50_fpn_v2 needs its own weights file'),
        'cam_twice': ({'parameters': {'cameras': "['front', 'rear', 'front']"}},
                      "parameter cameras: ['front'] given more than once"),
    }
    faults['sidecar_incomplete'] = ({'parameters': {**onnx, 'weights': str(tmp / 'nocfg.onnx')}},
                                    'incomplete instseg-export side-car (no config, names, input, outputs)')
    faults['sidecar_bad_config'] = ({'parameters': {**onnx, 'weights': str(tmp / 'badcfg.onnx')}},
                                    "badcfg.json: the side-car's config is not an instseg-export config")
    for backend in ('onnxruntime', 'openvino'):
        for name in ('truncated', 'empty', 'random'):
            faults[f'{backend}_{name}'] = ({'parameters': {**onnx, 'backend': backend,
                                                           'weights': str(tmp / f'{name}.onnx')}},
                                           unreadable)
        faults[f'{backend}_mixed'] = ({'parameters': {**onnx, 'backend': backend,
                                                      'weights': str(tmp / 'mixed.onnx')}},
                                      "the graph's 'image' is [None, 3, 320, 320] but its side-car "
                                      "mixed.json says ['batch', 3, 550, 550]")
    return faults


def _rtmdet_checkpoint(path: pathlib.Path) -> pathlib.Path:
    """An RTMDet-Ins-tiny file as mmdetection publishes it (synthetic weights, COCO names in meta)."""
    import torch

    from instseg_ros.core.classes import COCO_CLASSES
    from instseg_ros.core.models.rtmdet import RTMDetIns, get_config
    from instseg_ros.core.models.rtmdet.testing import synthetic_state_dict
    with torch.device('meta'):
        shapes = {k: tuple(v.shape) for k, v in RTMDetIns(get_config('rtmdet_ins_tiny')).state_dict().items()}
    torch.save({'meta': {'dataset_meta': {'classes': COCO_CLASSES}},
                'state_dict': synthetic_state_dict(shapes)}, path)
    return path


class _Evil:
    def __reduce__(self):
        return (print, ('unpickled',))


def test_runtime_checks_exports_and_cameras_fail_at_startup_with_one_line(tmp_path):
    """Issue 21 items 2, 3, 4 and 6 (each used to start silently wrong or end in a traceback,
    exit 1) and the bad files of the mmdetection families (issue 20): exit 2 and one line, never
    torch's weights_only=False advice."""
    faults = _export_faults(tmp_path)
    commands = {name: node_command(**kwargs) for name, (kwargs, _) in faults.items()}
    # an export cache that cannot be created (a file stands where its folder would be)
    blocker = tmp_path / 'blocker'
    blocker.write_text('')
    procs = {name: (start(cmd, tmp_path / f'{name}.log',
                          env={'INSTSEG_CACHE_DIR': str(blocker / 'cache')}), tmp_path / f'{name}.log')
             for name, cmd in commands.items()}
    deadline = time.monotonic() + 180.0
    while time.monotonic() < deadline and any(p.poll() is None for p, _ in procs.values()):
        time.sleep(0.2)
    for name, (proc, log) in procs.items():
        code, output = stop(proc), log.read_text()
        assert code == 2, f'{name}: exit {code}\n{output[-2000:]}'
        assert 'Traceback' not in output and 'weights_only' not in output, f'{name}:\n{output}'
        assert 'add_safe_globals' not in output, f'{name}:\n{output}'
        assert 'unpickled' not in output.replace('never unpickled', ''), f'{name}:\n{output}'
        errors = [line for line in output.splitlines() if 'ERROR' in line]
        assert len(errors) == 1, f'{name}:\n{output}'
        assert faults[name][1] in errors[0], f'{name}: {errors[0]!r} lacks {faults[name][1]!r}'


def test_unknown_params_file_entries_are_named_in_a_warning(tmp_path):
    params = tmp_path / 'params.yaml'
    params.write_text('yolact:\n  ros__parameters:\n    score_treshold: 0.4\n'
                      '    qos_overrides./instances.publisher.depth: 3\n')
    log = tmp_path / 'file.log'
    proc = start(node_command(params_file=str(params)), log)
    ready = wait_for_text(log, 'Ready: model yolact_small', proc, timeout_s=60.0)
    code, output = stop(proc), log.read_text()
    assert ready and code == 0, output
    warnings = [line for line in output.splitlines() if '[WARN]' in line]
    assert len(warnings) == 1, output
    assert ('params file entries that are not parameters of this node (ignored): score_treshold '
            '(did you mean score_threshold?)') in warnings[0]
