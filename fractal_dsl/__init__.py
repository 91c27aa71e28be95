"""fractal-dsl: a declarative language and compiler for fractal neural networks.

The public API chains the stages once, in order::

    read_source -> syntax.parse -> expand.expand -> validate.validate -> (render | codegen)

:func:`load` and :func:`loads` return a validated :class:`Network`; every problem is raised
as one :class:`FractalError` carrying all the diagnostics of the file.
"""

from __future__ import annotations

from pathlib import Path

from .errors import Diagnostic, FractalError, Source, Span
from .expand import DropPath, Network

__version__ = "0.1.0"
__all__ = ["Diagnostic", "DropPath", "FractalError", "Network", "Source", "Span", "__version__", "load", "load_source", "loads"]


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
