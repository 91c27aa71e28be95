"""The formatter behind ``fractal-dsl fmt`` and the language server's formatting.

One canonical layout, whatever the input's spacing:

- ``network NAME {`` at the left margin, statements indented by two spaces, key entries by
  four, each statement and each key entry on its own line, ``}`` on its own line;
- one space around ``=`` and ``.`` (none around the ``=`` of a named argument, ``bias=false``),
  none inside brackets, one after ``,``, none around the ``+``/``-`` of an index (``f[C+1]``);
- the order the user wrote is kept, and so is every comment: a comment on a line of its own
  stays on a line of its own (indented like the code that follows it), a comment after code
  stays after that code, and trailing comments on consecutive lines are aligned, three
  spaces after the longest code;
- runs of blank lines between statements and comments become one blank line; none directly
  after ``{`` or before ``}``;
- a statement written over several lines is joined into one, except where a comment sits
  inside it: the line breaks after the comment and the statement continues on the next line,
  indented by four more spaces.

Formatting works on the tokens of the lark parse (the grammar's own, with every token kept)
and on the comments found in the text, which the grammar ignores; a program that does not
parse is never formatted.  The result is checked before it is returned: it must parse, and
hold the same tokens and comments in the same order, so formatting can only move whitespace.
Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree

from . import safeio
from ._resources import resource_dir
from .errors import Diagnostic, FractalError, Source, Span
from .syntax import MAX_LINE_CHARS, parse

INDENT = "  "
CONTINUATION = "    "  # a statement that a comment breaks continues this much further in
COMMENT_GAP = 3  # spaces between the longest code line of a group and its trailing comments

_STATEMENTS = {
    "input_stmt",
    "classes_stmt",
    "key_block",
    "rule",
    "columns_stmt",
    "blocks_stmt",
    "droppath_stmt",
    "init_stmt",
}
_ARITH = {"add", "sub", "mul", "div"}  # binary operators in values, written with spaces
_COMMENT = re.compile(r"#[^\n]*")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


@lru_cache(maxsize=1)
def _parser() -> Lark:
    text = (resource_dir("grammars") / "fractal.lark").read_text("utf-8")
    return Lark(text, parser="lalr", keep_all_tokens=True)


@dataclass
class _Tok:
    token: Token
    parent: str  # the grammar rule the token belongs to (kwarg, call, index_plus, ...)
    level: int  # indentation level of the statement it belongs to
    brk: bool = False  # starts a new line


@dataclass
class _Comment:
    start: int
    end: int
    line: int
    text: str


@dataclass
class _Line:
    indent: str = ""
    code: str = ""
    comment: str | None = None
    blank: bool = False
    opener: bool = False  # ends with `{`: no blank line may follow
    origin: int = 1  # the source line its first token or comment came from


@dataclass
class _Out:
    lines: list[_Line] = field(default_factory=list)

    def blank(self) -> None:
        if self.lines and not self.lines[-1].blank and not self.lines[-1].opener:
            self.lines.append(_Line(blank=True))


def _flatten(tree: Tree, level: int, out: list[_Tok]) -> None:
    data = str(tree.data)
    for child in tree.children:
        if isinstance(child, Tree):
            kind = str(child.data)
            if kind in _STATEMENTS or kind == "key_def":
                inner = level + 1
                start = len(out)
                _flatten(child, inner, out)
                if len(out) > start:
                    out[start].brk = True
            else:
                _flatten(child, level, out)
        elif child is not None:
            tok = _Tok(child, data, level)
            tok.brk = child.type == "RBRACE" or child.type == "NETWORK"
            out.append(tok)


def _space(prev: _Tok, cur: _Tok) -> str:
    p, t = prev.token, cur.token
    if t in (",", ")", "]", "[") or p in ("(", "["):
        return ""
    if t == "(":
        return "" if p.type in ("NAME", "JOIN") else " "
    if t == "=" or p == "=":
        tight = ("kwarg", "param", "block_kwvalue")  # `bias=false`, `p=0.0`, `(c=64)`
        return "" if cur.parent in tight or prev.parent in tight else " "
    if p == "-" and prev.parent == "neg":
        return ""  # unary minus: `-p`
    if cur.parent in _ARITH or prev.parent in _ARITH:
        return " "  # `9 - 2 * column`
    if t in ("+", "-") or p in ("+", "-"):
        return ""  # indices: `f[C+1]`
    return " "


def format_source(source: Source) -> str:
    """The canonical layout of ``source``; raises :class:`FractalError` if it does not parse."""
    parse(source)  # the same checks and syntax diagnostics as `check`
    text = source.text
    tree = _parser().parse(text)
    toks: list[_Tok] = []
    _flatten(tree, 0, toks)  # `network` and its braces at level 0, statements 1, key entries 2
    comments = [
        _Comment(m.start(), m.end(), text.count("\n", 0, m.start()) + 1, m.group().rstrip())
        for m in _COMMENT.finditer(text)
    ]
    out = _Out()
    ci = 0
    cur: _Line | None = None
    prev: _Tok | None = None
    stmt_level = 0
    last_end = 0  # end of the last token or comment emitted

    def flush() -> None:
        nonlocal cur
        if cur is not None:
            out.lines.append(cur)
            cur = None

    for tok in toks:
        force = False
        between = []
        while ci < len(comments) and comments[ci].start < tok.token.start_pos:
            between.append(comments[ci])
            ci += 1
        if between and prev is not None and cur is not None and between[0].line == prev.token.end_line:
            trailing = between.pop(0)
            cur.comment, last_end = trailing.text, trailing.end
            flush()
            force = True
        for c in between:
            flush()
            if out.lines and _BLANK_LINE.search(text, last_end, c.start):
                out.blank()
            if tok.brk:
                level = tok.level + 1 if tok.token.type == "RBRACE" else tok.level
                indent = INDENT * level
            else:
                indent = INDENT * stmt_level + CONTINUATION
            out.lines.append(_Line(indent, "", c.text, origin=c.line))
            last_end = c.end
            force = True
        if tok.brk or force or cur is None:
            flush()
            if tok.brk:
                stmt_level = tok.level
                if tok.token.type != "RBRACE" and out.lines and _BLANK_LINE.search(text, last_end, tok.token.start_pos):
                    out.blank()
                indent = INDENT * tok.level
            else:
                indent = INDENT * stmt_level + CONTINUATION
            cur = _Line(indent, tok.token.value, origin=tok.token.line)
        else:
            cur.code += _space(prev, tok) + tok.token.value
        if tok.token.type == "LBRACE":
            cur.opener = True
        prev = tok
        last_end = tok.token.end_pos
    rest = comments[ci:]
    if rest and cur is not None and prev is not None and rest[0].line == prev.token.end_line:
        trailing = rest.pop(0)
        cur.comment, last_end = trailing.text, trailing.end
    flush()
    for c in rest:
        if _BLANK_LINE.search(text, last_end, c.start):
            out.blank()
        out.lines.append(_Line("", "", c.text, origin=c.line))
        last_end = c.end
    result, origins = _render(out.lines)
    _verify(source, result, origins, toks, comments)
    return result


def _render(lines: list[_Line]) -> tuple[str, list[int]]:
    """The text, and for each of its lines the source line it starts from."""
    while lines and lines[-1].blank:
        lines.pop()
    rendered: list[str] = []
    origins: list[int] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.code and line.comment is not None:
            j = i
            while j < len(lines) and lines[j].code and lines[j].comment is not None:
                j += 1
            column = max(len(ln.indent + ln.code) for ln in lines[i:j]) + COMMENT_GAP
            for ln in lines[i:j]:
                code = ln.indent + ln.code
                rendered.append(code + " " * (column - len(code)) + ln.comment)
                origins.append(ln.origin)
            i = j
            continue
        if line.blank:
            rendered.append("")
        else:
            rendered.append(line.indent + (line.code or line.comment or ""))
        origins.append(line.origin)
        i += 1
    return "\n".join(rendered) + "\n", origins


def _verify(source: Source, result: str, origins: list[int], toks: list[_Tok], comments: list[_Comment]) -> None:
    """Formatting may only move whitespace: same tokens, same comments, and it still parses."""
    lines = result.split("\n")
    for n, text in enumerate(lines, start=1):
        if len(text) > MAX_LINE_CHARS:
            # a statement written over several lines, joined onto one longer than the
            # language allows: refuse rather than write a file that does not parse
            at = origins[n - 1]
            line = source.line_text(at) or ""
            raise FractalError(
                source,
                [
                    Diagnostic(
                        Span(at, len(line) - len(line.lstrip()) + 1, at, len(line.rstrip()) + 1),
                        (
                            f"cannot format this file: this statement would become one line of {len(text):,} "
                            f"characters (the limit is {MAX_LINE_CHARS:,})"
                        ),
                        hint="end a line inside the statement with a comment: fmt keeps the line break after a comment",
                    )
                ],
            )
    parse(Source(source.name, result))
    again = _parser().parse(result)
    same_tokens = [t.value for t in again.scan_values(lambda v: isinstance(v, Token))] == [t.token.value for t in toks]
    same_comments = [m.group().rstrip() for m in _COMMENT.finditer(result)] == [c.text for c in comments]
    if not (same_tokens and same_comments):  # pragma: no cover - a bug in this module
        raise AssertionError(f"fractal-dsl fmt would change the program {source.name}, not only its layout")


def format_text(text: str, name: str = "<string>") -> str:
    """:func:`format_source` for text held in memory."""
    return format_source(Source(name, text.removeprefix("\ufeff")))


def unified_diff(before: str, after: str, name: str) -> str:
    """A unified diff from ``before`` to ``after``, both labelled ``name`` (for ``patch -p0``)."""
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True), name, name))


def write_atomic(path: str | Path, text: str, read: safeio.Snapshot) -> None:
    """Replace the file at ``path``, last read as ``read``, with ``text`` in one step, keeping
    its owner and permissions, unless it changed meanwhile
    (:func:`fractal_dsl.safeio.replace_in_place`, which says what else it refuses)."""
    safeio.replace_in_place(path, text, read)
