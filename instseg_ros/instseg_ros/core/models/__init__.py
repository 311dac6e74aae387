"""Model families implemented in pure PyTorch with checkpoint-compatible module names (one
subpackage per family: ``rtmdet`` ...). Each subpackage exports ``PRESETS``,
``preset_from_file_name`` and ``build_segmenter``; nothing is imported here so that a family's
import cost is paid only when it is used."""
