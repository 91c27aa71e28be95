"""The stages chained once, in order: text -> parse -> expand -> validate -> :class:`Network`.

:func:`load`, :func:`loads` and :func:`load_source` are the package's public ``load``
functions (``fractal_dsl.load``); they live here, below the commands and the public API
that use them, so no stage imports the package's ``__init__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import FractalError, Source
from .ir import Network


def load(path: str | Path, display_name: str | None = None, set: Mapping[str, Any] | None = None) -> Network:
    """Read, parse, expand and validate a ``.fdsl`` file.

    ``set`` changes values of the program before it is checked, as ``--set NAME=VALUE``
    does (``{"columns": 4, "c": 32}``; the names are in docs/LANGUAGE.md, "Changing values:
    --set"); the network's ``source_text`` is then the program with the values written in."""
    from .syntax import read_source

    return load_source(read_source(path, display_name), set)


def loads(text: str, name: str = "<string>", set: Mapping[str, Any] | None = None) -> Network:
    """Like :func:`load`, for program text held in memory."""
    return load_source(Source(name, text.removeprefix("\ufeff")), set)  # as read_source does for files


def load_source(source: Source, set: Mapping[str, Any] | None = None) -> Network:
    from .expand import expand
    from .syntax import parse
    from .validate import validate

    if not set:
        return validate(expand(parse(source)), source)
    from .overrides import apply

    source = apply(source, set)
    try:
        return validate(expand(parse(source)), source)
    except FractalError as exc:  # `--set c=0` written into every block is one mistake, said once a line
        once = {(d.span.line, d.message): d for d in reversed(exc.diagnostics)}
        if len(once) == len(exc.diagnostics):
            raise
        raise FractalError(source, list(once.values())) from None
