"""Model families, one subpackage per family: ``yolact`` (YOLACT / YOLACT++), ``maskrcnn``
(torchvision Mask R-CNN), and the mmdetection families ``rtmdet``, ``solov2``, ``condinst`` in pure
PyTorch with checkpoint-compatible module names. Each subpackage exports ``PRESETS`` and
``build_segmenter`` (registered in ``core.segmenter.BUILDERS``); all but yolact also
``preset_from_file_name``. Nothing is imported here so that a family's import cost is paid only
when it is used."""
