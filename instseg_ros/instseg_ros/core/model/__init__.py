"""YOLACT / YOLACT++ network modules (pure torch)."""

from instseg_ros.core.model.yolact import Yolact, YolactOutput, init_weights_

__all__ = ['Yolact', 'YolactOutput', 'init_weights_']
