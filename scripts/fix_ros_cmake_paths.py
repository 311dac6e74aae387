"""Rewrite build-machine include paths baked into the ROS 2 message wheels' CMake exports.

The ros-jazzy-*-msgs wheels ship ``share/<pkg>/cmake/*.cmake`` files whose imported targets name
``/opt/python/cp311-cp311/include/python3.11`` and that machine's numpy include folder. CMake
refuses imported targets whose include path does not exist, so building any interface package
against them fails. This replaces both literal paths with this venv's real ones. Idempotent; exits
non-zero if a ``/opt/python/`` path remains afterwards.

Usage: python fix_ros_cmake_paths.py VENV_DIR
"""

import pathlib
import sys
import sysconfig

import numpy

BUILD_PY_INCLUDE = '/opt/python/cp311-cp311/include/python3.11'
BUILD_NUMPY_INCLUDE = '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include'


def main(venv: str) -> int:
    share = pathlib.Path(venv) / 'share'
    py_include = sysconfig.get_paths()['include']
    np_include = numpy.get_include()
    changed = 0
    leftovers = []
    for path in share.glob('*/cmake/*.cmake'):
        text = path.read_text()
        if '/opt/python/' not in text:
            continue
        new = text.replace(BUILD_NUMPY_INCLUDE, np_include).replace(BUILD_PY_INCLUDE, py_include)
        if new != text:
            path.write_text(new)
            changed += 1
        if '/opt/python/' in new:
            leftovers.append(str(path))
    print(f'  rewrote {changed} CMake file(s) -> {py_include}, {np_include}')
    if leftovers:
        print('  ERROR: unknown /opt/python/ paths remain in:\n    ' + '\n    '.join(leftovers))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
