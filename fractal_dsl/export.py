"""``fractal-dsl export``: the network in eval mode (or one column alone) as an ONNX file.

Needs the optional extra ``fractal-dsl[onnx]`` (onnx, onnxscript; torch's exporter,
``torch.onnx.export(..., dynamo=True)``). The input is ``images`` (batch x channels x
height x width, the batch dimension dynamic), the output ``logits`` (batch x classes).
The file takes images as the data set gives them (floats in [0, 1]): the normalisation the run
used is in it, as are the BatchNorm statistics of the path it runs (the whole network's, or
column K's with ``--column K``). A column's file holds only the weights of the layers on that
column's path. The file's
``doc_string`` carries the tool's marker, so :mod:`safeio` lets a later export replace it.
A network whose weights do not fit in one ONNX file (protobuf's 2 GiB) is refused before
anything is built (:func:`check_size`); no external-data files are written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

from .errors import RunError, UsageError
from .ir import Network

INSTALL = "ONNX export needs onnx and onnxscript: pip install 'fractal-dsl[onnx]'"
#: One .onnx file is one protobuf message, which cannot exceed 2 GiB; the weights must fit in
#: it with room for the graph and the BatchNorm statistics.
ONNX_LIMIT = 2**31 - 1
ROOM = 64 << 20


class ExportError(RunError):
    """The exporter is missing or failed (exit 1)."""


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(INSTALL) from None


def export_bytes(
    net: Network,
    checkpoint_path: str | os.PathLike | None = None,
    column: int | None = None,
    allow_other_network: bool = False,
    warn=print,
) -> bytes:
    """The serialized ONNX model of ``net`` in eval mode (``column``: that column alone), with the
    weights of ``checkpoint_path`` (checked as ``eval`` checks them) or, without one, freshly
    initialised weights."""
    check_size(net, column)
    require_onnx()
    import torch

    from ._version import __version__
    from .safeio import marker_text
    from .train.checkpoint import compile_model, load_weights, require, verify
    from .train.checkpoint import load as load_checkpoint

    _, model = compile_model(net)
    if column is not None and not 1 <= column <= model.num_columns:
        raise UsageError(f"{{column}} {column}: {net.name} has columns 1..{model.num_columns}", "column")
    if checkpoint_path is not None:
        state = load_checkpoint(checkpoint_path)
        require(checkpoint_path, state, "model")
        verify(checkpoint_path, state, net, model, allow_other_network, warn=warn)
        load_weights(model, state["model"], warn)
    wrapper = _Column(model, column).eval()
    x = torch.randn(2, *net.input_shape)
    quiet = io.StringIO()
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    try:
        onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." and friends
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                (x,),
                dynamo=True,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 -- the exporter's errors are many and undocumented; say which and stop
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ExportError(f"ONNX export of {net.name} failed: {type(exc).__name__}: {first}") from None
    finally:
        onnx_log.setLevel(level)
    proto = program.model_proto
    what = f"column {column} of " if column is not None else ""
    proto.doc_string = f"{marker_text(__version__)}: {what}network {net.name} from {net.source_name}" + (
        f", weights of {os.fspath(checkpoint_path)}" if checkpoint_path is not None else ", untrained weights"
    )
    return proto.SerializeToString()


def check_size(net: Network, column: int | None = None) -> None:
    """Refuse, before building anything, a network (or column) whose float32 weights do not
    fit in one ONNX file: ``torch.onnx`` would spend minutes and gigabytes before protobuf
    failed. (fractal-dsl writes one self-contained file; it does not write external data.)"""
    from .anytime import column_costs

    costs = column_costs(net)
    if column is not None and not 1 <= column < len(costs):
        return  # the column's range is checked, with its message, where the module is built
    params = costs[0 if column is None else column]["params"]
    size = 4 * params
    if size > ONNX_LIMIT - ROOM:
        what = f"column {column} of {net.name}" if column is not None else net.name
        raise ExportError(
            f"cannot export {what}: its {params:,} parameters take {size / 1e9:.2f} GB as float32, over the "
            f"{(ONNX_LIMIT - ROOM) / 1e9:.2f} GB an ONNX file can hold (protobuf's 2 GiB limit, less room for the "
            "graph); export a column with --column, or a smaller network"
        )


class _Column:
    """Built lazily (torch is imported only when exporting): ``model(x, column=k)`` as ``forward(x)``."""

    def __new__(cls, model, column):
        import torch

        class Column(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x):
                return self.model(x, column=column)

        return Column()
