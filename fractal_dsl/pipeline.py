"""The stages chained once, in order: text -> parse -> expand -> validate -> :class:`Network`.

:func:`load`, :func:`loads` and :func:`load_source` are the package's public ``load``
functions (``fractal_dsl.load``); they live here, below the commands and the public API
that use them, so no stage imports the package's ``__init__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import Diagnostic, FractalError, Source
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
    from .overrides import apply_traced

    source, written = apply_traced(source, set)
    try:
        return validate(expand(parse(source)), source)
    except FractalError as exc:
        said = [_from_setting(d, source, written) for d in exc.diagnostics]
        # `--set c=0` written into every block is one mistake, said once a line
        once = {(d.span.line, d.message): d for d in reversed(said)}
        if said == exc.diagnostics and len(once) == len(said):
            raise
        raise FractalError(source, list(once.values())) from None


def _from_setting(d: Diagnostic, source: Source, written: list[tuple[int, int, str]]) -> Diagnostic:
    """``d``, its message led by ``--set NAME:`` where it points into a value that setting wrote."""
    lines = source.text.split("\n")
    at = sum(len(line) + 1 for line in lines[: d.span.line - 1]) + d.span.column - 1
    name = next((n for start, end, n in written if start <= at < end), None)
    return d if name is None else replace(d, message=f"--set {name}: {d.message}")
