"""A Pygments lexer for ``.fdsl`` files: ``pygmentize -l fdsl FILE``.

Registered through the ``pygments.lexers`` entry point in ``pyproject.toml``, so Pygments,
Sphinx and MkDocs find it by the names ``fdsl`` and ``fractal-dsl`` once fractal-dsl is
installed.  It imports nothing from the compiler (documentation tools load it on their own);
its list of built-in layers is tied to :data:`fractal_dsl.layers.BUILTINS` by a test.
"""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, Whitespace

__all__ = ["FdslLexer"]

STATEMENTS = ("input", "classes", "key", "columns", "blocks", "droppath", "init")
OPTIONS = ("local", "global", "per", "off")
BUILTIN_LAYERS = (
    "conv",
    "conv1x1",
    "conv3x3",
    "conv5x5",
    "conv7x7",
    "batchnorm",
    "bn",
    "relu",
    "gelu",
    "elu",
    "silu",
    "sigmoid",
    "tanh",
    "identity",
    "leakyrelu",
    "dropout",
    "dropout2d",
    "maxpool",
    "avgpool",
    "gap",
    "globalavgpool",
    "flatten",
    "linear",
)
_ID = r"[A-Za-z_][A-Za-z0-9_]*"


class FdslLexer(RegexLexer):
    """fractal-dsl, the language of fractal network architectures (FractalNet)."""

    name = "fractal-dsl"
    aliases: ClassVar[list[str]] = ["fdsl", "fractal-dsl"]
    filenames: ClassVar[list[str]] = ["*.fdsl"]
    mimetypes: ClassVar[list[str]] = ["text/x-fdsl"]

    tokens: ClassVar[dict] = {
        "root": [
            # a key entry being defined, first on its line: `conv(c, p) =`, `head =`
            (r"(\s*\n[ \t]*)(" + _ID + r")(?=[ \t]*(?:\([^()\n]*\))?[ \t]*=)", bygroups(Whitespace, Name.Function)),
            (r"\s+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r"(network)(\s+)(" + _ID + ")", bygroups(Keyword.Declaration, Whitespace, Name.Namespace)),
            # a fractal `f[...]`
            (r"(" + _ID + r")(\s*)(\[)", bygroups(Name.Class, Whitespace, Punctuation)),
            (words(STATEMENTS + OPTIONS + ("join",), suffix=r"\b"), Keyword),
            (words(("true", "false", "same"), suffix=r"\b"), Keyword.Constant),
            (words(BUILTIN_LAYERS, suffix=r"\b"), Name.Builtin),
            (r"[0-9]+(?:x[0-9]+)+\b", Number.Integer),  # a shape, 3x32x32
            (r"[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+", Number.Float),
            (r"[0-9]+", Number.Integer),
            (_ID, Name),
            (r"[=.+*/-]", Operator),
            (r"[()\[\]{},]", Punctuation),
        ],
    }
