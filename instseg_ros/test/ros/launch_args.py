"""Start nodes exactly as launch_ros would: executable + --ros-args with -r __node:=, -r __ns:=,
--params-file, -p name:=value, -r from:=to. Shared by the node tests and benchmarks.

Tests import this with importlib mode; it holds no tests itself.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[2]
LAUNCH_FILE = PACKAGE_DIR / 'launch' / 'yolact.launch.py'
PARAMS_FILE = PACKAGE_DIR / 'config' / 'yolact.yaml'


def load_launch_tables() -> dict:
    """The plain-data tables launch/yolact.launch.py uses (importable without launch)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('yolact_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {'parameters': module.PARAMETER_ARGUMENTS, 'remaps': module.REMAP_ARGUMENTS,
            'other': module.OTHER_ARGUMENTS, 'not_given': module.NOT_GIVEN}


def ros_args(node_name: str = 'yolact', namespace: str = '', params_file: str | None = None,
             parameters: dict | None = None, remaps: dict | None = None) -> list[str]:
    """The --ros-args list launch_ros produces for a Node action with these settings."""
    args = ['--ros-args', '-r', f'__node:={node_name}']
    if namespace:
        args += ['-r', f'__ns:={namespace}']
    if params_file:
        args += ['--params-file', str(params_file)]
    for name, value in (parameters or {}).items():
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        args += ['-p', f'{name}:={value}']
    for src, dst in (remaps or {}).items():
        args += ['-r', f'{src}:={dst}']
    return args


def node_command(module: str = 'instseg_ros.ros.node', **kwargs) -> list[str]:
    """python -m <module> --ros-args ... (same entry point as the installed executable)."""
    return [sys.executable, '-m', module, *ros_args(**kwargs)]


def start(command: list[str], log_path: pathlib.Path, env: dict | None = None) -> subprocess.Popen:
    """Start in a new session (its own process group), output to ``log_path``."""
    log = open(log_path, 'wb')  # noqa: SIM115 - closed by the OS with the process
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """SIGINT to the whole group (like ros2 launch), then SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def wait_for_text(log_path: pathlib.Path, text: str, proc: subprocess.Popen, timeout_s: float) -> bool:
    """Whether ``text`` appears in ``log_path`` within ``timeout_s`` (False early if ``proc`` exits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if text in log_path.read_text(errors='replace'):
            return True
        time.sleep(0.2)
    return text in log_path.read_text(errors='replace')


def wait_exit(proc: subprocess.Popen, timeout_s: float) -> int | None:
    """Wait up to ``timeout_s`` for ``proc`` to exit by itself; then stop it. Returns its code."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return stop(proc)


def make_small_checkpoint(path: pathlib.Path, seed: int) -> pathlib.Path:
    """A random yolact_small checkpoint for the synthetic classes, with the class-name side-car
    JSON that instseg-train writes. Prototypes and coefficients get a positive bias so random
    weights still give non-empty (box-shaped) masks."""
    import json

    import torch

    from instseg_ros.core.checkpoint import save_checkpoint
    from instseg_ros.core.config import get_preset
    from instseg_ros.core.models.yolact.yolact import Yolact
    from instseg_ros.synth.scene import CLASS_NAMES

    torch.manual_seed(seed)
    model = Yolact(get_preset('yolact_small', num_classes=len(CLASS_NAMES) + 1)).eval()
    with torch.no_grad():
        model.proto_net[10].bias.fill_(1.0)
        model.prediction_layers[0].mask_layer.bias.fill_(1.0)
    save_checkpoint(model, path)
    path.with_suffix('.json').write_text(json.dumps({'class_names': list(CLASS_NAMES)}))
    return path


def make_maskrcnn_checkpoint(path: pathlib.Path, preset: str = 'maskrcnn_resnet50_fpn',
                             seed: int = 0) -> pathlib.Path:
    """A random torchvision Mask R-CNN checkpoint (91 COCO outputs) in torchvision's key layout,
    made with torchvision's own builders (weights=None, nothing downloaded).

    ``maskrcnn_resnet50_fpn`` is written like torchvision's official file: its backbone uses
    FrozenBatchNorm2d, so the ``num_batches_tracked`` buffers of the untrained builder are left out.
    Biases make random weights detect: 'person' (output 1) and 'car' (output 3) score high, the
    unused COCO outputs very low, and mask logits are positive on average (non-empty masks).
    """
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

    builders = {'maskrcnn_resnet50_fpn': maskrcnn_resnet50_fpn,
                'maskrcnn_resnet50_fpn_v2': maskrcnn_resnet50_fpn_v2}
    torch.manual_seed(seed)
    model = builders[preset](weights=None, weights_backbone=None).eval()
    unused = [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    with torch.no_grad():
        bias = model.roi_heads.box_predictor.cls_score.bias
        model.roi_heads.box_predictor.cls_score.weight.mul_(1e-3)  # random features are large
        bias[1], bias[3] = 4.0, 3.0
        bias[unused] = -20.0
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(1e-3)
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(1.0)
    state_dict = {k: v.contiguous().clone() for k, v in model.state_dict().items()
                  if not (preset == 'maskrcnn_resnet50_fpn' and k.endswith('num_batches_tracked'))}
    torch.save(state_dict, path)
    return path


def expected_class_image(msg, shape: tuple[int, int]):
    """Oracle for the node's ``labels/class`` image of an InstanceMaskArray: uint8 ``shape``, each
    pixel the class id + 1 of the highest-scoring instance whose full-frame mask covers it, else 0."""
    import numpy as np

    from instseg_ros.ros.conversions import msg_to_masks
    masks = msg_to_masks(msg)
    expected = np.zeros(shape, np.uint8)
    for index in np.argsort([-i.score for i in msg.instances], kind='stable')[::-1]:
        expected[masks[index]] = msg.instances[index].class_id + 1
    return expected
