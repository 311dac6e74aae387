"""Writing the output bag: a folder moved into place only once closed, and the messages per frame.

The rosbags Writer writes into ``<parent>/.<name>.instseg-bag-partial/<name>``; :meth:`OutputBag.close`
closes it (metadata.yaml written) and renames it to the output path (replacing an old output only
then, with ``--overwrite``). A run that dies before that leaves only the hidden partial folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

from rosbags.rosbag2 import StoragePlugin, Writer

from instseg_ros.core.visualization import depth_texts, draw_overlay
from instseg_ros.tools.bag_types import (IMAGE, INSTANCE_MASK_ARRAY, numpy_to_image,
                                         result_to_instances, result_to_label_image)


class OutputBag:
    """A rosbag2 output: ``open(topics, copied_connections)``, ``write``/``write_raw``, ``close``.

    Args:
        path: the output bag folder.  storage: 'mcap' or 'sqlite3'.  store: typestore.
        overwrite: replace an existing ``path`` when closing.
    """

    def __init__(self, path: Path, storage: str, store, overwrite: bool = False):
        self.path, self.store, self.overwrite = Path(path), store, overwrite
        self.plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self.partial_root = self.path.parent / f'.{self.path.name}.instseg-bag-partial'
        self.writer: Writer | None = None
        self.connections: dict[str, Any] = {}
        self.raw_connections: dict[int, Any] = {}
        self.ns_topics: dict[str, str] = {}

    def open(self, topics: dict[str, str], copied: list) -> None:
        """Create the bag with ``topics`` ({name: msgtype}) and the copied input connections."""
        if self.partial_root.exists():
            shutil.rmtree(self.partial_root)  # left by a run that was killed
        self.partial_root.mkdir(parents=True)
        self.writer = Writer(self.partial_root / self.path.name, version=Writer.VERSION_LATEST,
                             storage_plugin=self.plugin)
        self.writer.open()
        for topic, msgtype in topics.items():
            self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                                 typestore=self.store)
            self.ns_topics[topic.rsplit('/', 1)[-1]] = topic
        for conn in copied:
            out = self._copy_connection(conn)
            if out is not None:
                self.raw_connections[conn.id] = out

    def _copy_connection(self, conn):
        """The output connection for an input one: its own definition, else the typestore's."""
        qos = list(getattr(conn.ext, 'offered_qos_profiles', []) or [])
        msgdef = conn.msgdef.data if conn.msgdef is not None else ''
        if msgdef and conn.digest:
            return self.writer.add_connection(conn.topic, conn.msgtype, msgdef=msgdef,
                                              rihs01=conn.digest, offered_qos_profiles=qos)
        if conn.msgtype in self.store.fielddefs:
            return self.writer.add_connection(conn.topic, conn.msgtype, typestore=self.store,
                                              offered_qos_profiles=qos)
        print(f'[instseg-bag] not copied: {conn.topic} ({conn.msgtype}): no message definition',
              flush=True)
        return None

    def write(self, topic: str, typename: str, timestamp_ns: int, msg: Any) -> None:
        self.writer.write(self.connections[topic], timestamp_ns,
                          self.store.serialize_cdr(msg, typename))

    def write_raw(self, connection_id: int, timestamp_ns: int, raw: bytes) -> None:
        out = self.raw_connections.get(connection_id)
        if out is not None:
            self.writer.write(out, timestamp_ns, raw)

    def close(self, keep: bool = True) -> None:
        """Close (writes metadata) and move into place; ``keep=False`` discards the output."""
        writer, self.writer = self.writer, None
        if writer is None or writer.storage is None:  # never opened, or open failed
            shutil.rmtree(self.partial_root, ignore_errors=True)
            return
        try:
            if keep:
                writer.close()
            else:
                writer.abort()
        except BaseException:
            shutil.rmtree(self.partial_root, ignore_errors=True)
            raise
        if keep:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            elif self.path.exists() or self.path.is_symlink():
                self.path.unlink()
            (self.partial_root / self.path.name).rename(self.path)
        shutil.rmtree(self.partial_root, ignore_errors=True)



def pack_outputs(store, ns_topics: dict[str, str], frame, result, class_names,
                 params, tracker=None) -> Iterator[tuple[str, str, Any]]:
    """(topic, msgtype, rosbags message) of one frame for each output topic that is open.

    ``tracker``: a core.tracking.Tracker fed every frame in order (the node's track ids), or None.
    """
    ids = ages = None
    if tracker is not None:
        from instseg_ros.core.tracking import positions_from_instances_3d
        ids, ages = tracker.update(result.rois, result.labels, result.scores,
                                   positions_from_instances_3d(result.instances_3d, len(result)),
                                   image_size=result.image_size)
    yield (ns_topics['instances'], INSTANCE_MASK_ARRAY,
           result_to_instances(store, frame.header, result, class_names, ids, ages))
    if 'overlay' in ns_topics:
        overlay = draw_overlay(frame.image_bgr, result.rois, result.boxes_xyxy, result.labels,
                               result.scores, class_names, alpha=params.overlay_alpha,
                               draw_boxes=params.overlay_draw_boxes,
                               draw_labels=params.overlay_draw_labels,
                               font_scale=params.overlay_font_scale,
                               depth_text=depth_texts(result.instances_3d))
        yield ns_topics['overlay'], IMAGE, numpy_to_image(store, overlay, 'bgr8', frame.header)
    if 'labels' in ns_topics:
        yield ns_topics['labels'], IMAGE, result_to_label_image(store, frame.header, result)
