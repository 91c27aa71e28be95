"""fractal-dsl: a declarative language and compiler for fractal neural networks.

The public API chains the stages once, in order::

    read_source -> syntax.parse -> expand.expand -> validate.validate -> (render | codegen)

:func:`load` and :func:`loads` return a validated :class:`Network`; :func:`build` goes on
to the compiled PyTorch module, in memory.  Every problem is raised as one
:class:`FractalError` carrying all the diagnostics of the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import ir
from ._version import __version__
from .errors import Diagnostic, Fix, FractalError, Source, Span
from .ir import DropPath, Network
from .pipeline import load, load_source, loads


def _notebook_html(net: Network) -> str | None:
    from .webview import notebook_html  # when first shown: loading a network needs no Graphviz

    return notebook_html(net)


def _notebook_svg(net: Network) -> str | None:
    from .webview import notebook_svg

    return notebook_svg(net)


ir.DISPLAY.update(html=_notebook_html, svg=_notebook_svg)  # Network._repr_html_ / _repr_svg_
__all__ = [
    "Diagnostic",
    "DropPath",
    "Fix",
    "FractalError",
    "Network",
    "Source",
    "Span",
    "__version__",
    "build",
    "load",
    "load_source",
    "loads",
    "train",
]


def build(source: str | Path, set: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """Compile a program and return the network as a ``torch.nn.Module``, in memory.

    ``source`` is program text if it is a ``str`` that contains a newline or ``{`` (no
    file name does in practice; every program does), else the path of a ``.fdsl`` file.
    ``overrides`` are the generated class's keyword arguments (``num_classes``,
    ``drop_path``, ``drop_path_per``, ``dropout``, ``compute_all``, ``generator``,
    ``init``, ...); ``set`` changes the program's values first, as :func:`load` does.
    The module is the same source ``fractal-dsl compile`` writes, loaded with
    :func:`codegen.load_module` without touching the disk.  Imports torch (only this
    function does).  A :class:`FractalError` is raised for an invalid program.
    """
    text_given = isinstance(source, str) and ("\n" in source or "{" in source)
    net = loads(source, set=set) if text_given else load(source, set=set)
    from . import codegen

    module = codegen.load_module(codegen.generate(net, check=False), f"fractal_dsl_built_{net.name}")
    return module.build(**overrides)


def train(program, train_loader, test_loader, out: str | Path = "runs/latest", **options: Any) -> dict:
    """Train ``program`` (text, a ``.fdsl`` path or a Network) on your own DataLoaders of
    ``(images, labels)`` into the run folder ``out``, as ``fractal-dsl train`` does (per-column
    evaluation, anytime table, checkpoints); returns the summary. See
    :func:`fractal_dsl.train.custom.train` for the options. Imports torch."""
    from .train.custom import train as train_on

    return train_on(program, train_loader, test_loader, out, **options)
