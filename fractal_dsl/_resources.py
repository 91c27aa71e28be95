"""Where the grammar and the code templates live.

In a wheel they are package data (``fractal_dsl/grammars``, ``fractal_dsl/codegen_templates``,
put there by ``pyproject.toml``); in a source checkout or an editable install they are the
top-level ``grammars/`` and ``codegen_templates/`` folders beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The folder ``name`` (``grammars`` or ``codegen_templates``), installed or in the checkout."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"fractal-dsl is installed without its {name}/ folder")
