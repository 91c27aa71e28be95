"""fractal-dsl: a declarative language and compiler for fractal neural networks.

The public API chains the stages once, in order::

    read_source -> syntax.parse -> expand.expand -> validate.validate -> (render | codegen)

:func:`load` and :func:`loads` return a validated :class:`Network`; :func:`build` goes on
to the compiled PyTorch module, in memory.  Every problem is raised as one
:class:`FractalError` carrying all the diagnostics of the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import Diagnostic, Fix, FractalError, Source, Span
from .expand import DropPath, Network

__version__ = "0.1.0"
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
]


def load(path: str | Path, display_name: str | None = None) -> Network:
    """Read, parse, expand and validate a ``.fdsl`` file."""
    from .syntax import read_source

    return load_source(read_source(path, display_name))


def loads(text: str, name: str = "<string>") -> Network:
    """Like :func:`load`, for program text held in memory."""
    return load_source(Source(name, text.removeprefix("\ufeff")))  # as read_source does for files


def load_source(source: Source) -> Network:
    from .expand import expand
    from .syntax import parse
    from .validate import validate

    return validate(expand(parse(source)), source)


def build(source: str | Path, **overrides: Any) -> Any:
    """Compile a program and return the network as a ``torch.nn.Module``, in memory.

    ``source`` is program text if it is a ``str`` that contains a newline or ``{`` (no
    file name does in practice; every program does), else the path of a ``.fdsl`` file.
    ``overrides`` are the generated class's keyword arguments (``num_classes``,
    ``drop_path``, ``drop_path_per``, ``dropout``, ``compute_all``, ``generator``,
    ``init``, ...).  The module is the same source ``fractal-dsl compile`` writes, loaded
    with :func:`codegen.load_module` without touching the disk.  Imports torch (only this
    function does).  A :class:`FractalError` is raised for an invalid program.
    """
    text_given = isinstance(source, str) and ("\n" in source or "{" in source)
    net = loads(source) if text_given else load(source)
    from . import codegen

    module = codegen.load_module(codegen.generate(net, check=False), f"fractal_dsl_built_{net.name}")
    return module.build(**overrides)
