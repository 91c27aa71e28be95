"""The language's grammar (``grammars/fractal.lark``) as one LALR parser, made once.

:mod:`fractal_dsl.syntax` parses programs with it and :mod:`fractal_dsl.habits` checks with
it that a suggested fix parses; it sits below both so neither imports the other's way round.
"""

from __future__ import annotations

from functools import lru_cache

from lark import Lark

from ._resources import resource_dir


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The grammar's parser, with positions (every AST node gets its span)."""
    text = (resource_dir("grammars") / "fractal.lark").read_text("utf-8")
    return Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=True)
