"""``train --tensorboard``: the run's metrics as a TensorBoard event file, next to metrics.jsonl.

The file (:data:`NAME`) is rebuilt from the history of every finished epoch each time
``metrics.jsonl`` is, and written through :mod:`safeio` like every other run file: a
resumed run gives the same file as an uninterrupted one, with no duplicate steps. Records
and protos come from tensorboardX (the optional extra ``fractal-dsl[tensorboard]``); the
framing is TFRecord's (length, masked CRC-32C of the length, data, masked CRC-32C of the
data, little-endian). Scalars per epoch (the step): ``loss/train``, ``accuracy/train``,
``accuracy/whole_network``, ``accuracy/column_K`` and ``lr``; an event's wall time is the
training seconds up to the end of that epoch (from ``metrics.jsonl``), so the file is
reproducible.
"""

from __future__ import annotations

import struct

from .config import TrainError

NAME = "events.out.tfevents.fractal-dsl"
INSTALL = "{tensorboard} needs tensorboardX: pip install 'fractal-dsl[tensorboard]'"


def require() -> None:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise TrainError(INSTALL, "tensorboard") from None


def scalars(record: dict) -> list[tuple[str, float]]:
    """The (tag, value) pairs logged for one epoch of ``metrics.jsonl``."""
    return [
        ("loss/train", record["train_loss"]),
        ("accuracy/train", record["train_acc"]),
        ("accuracy/whole_network", record["test_acc"]),
        *((f"accuracy/column_{k}", a) for k, a in enumerate(record["column_acc"], start=1)),
        ("lr", record["lr"]),
    ]


def event_file(history: list[dict]) -> bytes:
    """The event file of ``history`` (one dict per finished epoch)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c
    from tensorboardX.summary import scalar

    out = bytearray()

    def record(event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        out.extend(header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data)))

    record(Event(wall_time=0.0, step=0, file_version="brain.Event:2"))
    elapsed = 0.0
    for h in history:
        elapsed += h.get("seconds", 0.0)
        for tag, value in scalars(h):
            record(Event(wall_time=elapsed, step=h["epoch"], summary=scalar(tag, float(value))))
    return bytes(out)
