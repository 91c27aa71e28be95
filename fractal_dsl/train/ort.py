"""The anytime table's ONNX Runtime column: what each path costs where it is deployed.

When onnxruntime (and the ``onnx`` extra the export needs) is installed, each row of the
table also gets the latency of that path's ``fractal-dsl export`` file in ONNX Runtime on
the CPU, at batch 1 and at the eval batch, with as many intra-op threads as torch uses.
Each path is exported from the checkpoint (:func:`fractal_dsl.export.export_bytes`, about
ten seconds a path), and timed as torch's latency is: one warm-up call, then a block of
``repeats`` calls in a row, the median. Whole blocks, never single calls alternating with
torch's, so neither runtime pays for the other's cold caches or thread pools.
``FDSL_NO_ORT=1`` (or ``--no-ort-latency``) leaves the column empty.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

SKIP_ENV = "FDSL_NO_ORT"
FIELDS = ("ort_latency_ms_batch1", "ort_latency_ms_per_image")


def available() -> str | None:
    """onnxruntime's version if it and the exporter's packages are importable (and
    ``FDSL_NO_ORT`` is not set), else None."""
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        return None
    return onnxruntime.__version__


def add_latencies(
    rows: list[dict], net, checkpoint_path, data, batch: int, repeats: int, warn=print, enabled: bool = True
) -> dict:
    """Fill each row's ``ort_latency_ms_batch1`` and ``ort_latency_ms_per_image`` (None where
    not measured, or with ``enabled=False``) on the first test images; returns the table's
    ``{"onnxruntime": version or None}``."""
    from ..export import ExportError, export_bytes

    for row in rows:
        row.update(dict.fromkeys(FIELDS))
    version = available() if enabled else None
    if version is None or not rows:
        return {"onnxruntime": None}
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    one = data.prepare(data.x_test[:1]).float().cpu().numpy()
    many = data.prepare(data.x_test[:batch]).float().cpu().numpy()
    for row in rows:
        try:  # the checkpoint was verified by the caller; the export loads it again
            model = export_bytes(net, checkpoint_path, row["column"], allow_other_network=True, warn=lambda _: None)
        except ExportError as exc:
            warn(f"note: no ONNX Runtime latency: {exc}")
            for r in rows:
                r.update(dict.fromkeys(FIELDS))
            return {"onnxruntime": None}
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        row["ort_latency_ms_batch1"] = 1000 * _median_seconds(session, one, repeats)
        row["ort_latency_ms_per_image"] = 1000 * _median_seconds(session, many, repeats) / len(many)
    return {"onnxruntime": version}


def _median_seconds(session, x, repeats: int) -> float:
    """Median seconds of ``repeats`` calls in a row, after one warm-up call."""
    feed = {session.get_inputs()[0].name: x}
    session.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
