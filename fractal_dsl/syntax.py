"""Stage 1: source bytes -> :class:`Program`, a frozen AST in which every node has a span.

The grammar is ``grammars/fractal.lark`` (shipped inside the package).  Input is checked
before lark sees it (size, encoding, control bytes, nesting depth), so hostile files end in
a diagnostic rather than a hang or a ``RecursionError``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from lark import Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, v_args

from .errors import Collector, Diagnostic, Fix, FractalError, Source, Span
from .grammar import parser as _parser
from .habits import code_after, python_style, recognise, yaml_style
from .layers import BUILTINS
from .safeio import read_input

MAX_FILE_BYTES = 64 << 10  # a real program is a few hundred bytes; lark needs ~20 us a token
MAX_LINE_CHARS = 1000
MAX_NESTING = 64  # brackets, and the depth of an expression (see _check_depth)
MAX_SYNTAX_ERRORS = 10
# looking for the next syntax error parses the file again: stop after about four 64 KiB files'
# worth (a second or two), so a large file with many errors is still answered quickly
MAX_REPARSED_CHARS = 4 * MAX_FILE_BYTES


# ---- the AST ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """A literal, a name or arithmetic in an argument list: ``64``, ``0.1``, ``c``,
    ``false``, ``2 * column + 1`` (an :class:`Arith`)."""

    value: int | float | str | Arith
    span: Span

    @property
    def is_name(self) -> bool:
        return isinstance(self.value, str)

    def names(self) -> list[Value]:
        """The names this value uses, in order (itself, or those inside its arithmetic)."""
        if isinstance(self.value, Arith):
            return [n for v in self.value.operands for n in v.names()]
        return [self] if self.is_name else []


@dataclass(frozen=True)
class Arith:
    """Arithmetic on values: ``op`` is ``+``, ``-``, ``*``, ``/`` or ``neg`` (one operand)."""

    op: str
    operands: tuple[Value, ...]


@dataclass(frozen=True)
class Arg:
    name: str | None  # None for a positional argument
    value: Value
    span: Span


@dataclass(frozen=True)
class Call:
    """A layer reference: ``conv``, ``conv3x3(c, bias=false)``, ``maxpool(2)``."""

    name: str
    args: tuple[Arg, ...]
    has_parens: bool
    span: Span


@dataclass(frozen=True)
class KeyDef:
    """``name(params) = call . call . ...`` inside ``key { }``; ``defaults`` holds the
    parameters written with a default value, ``conv(c, p=0.0)``."""

    name: str
    params: tuple[str, ...]
    chain: tuple[Call, ...]
    span: Span
    name_span: Span
    defaults: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True)
class Index:
    """``f[3]`` (var None, offset 3) or ``f[C+1]`` (var 'C', offset 1)."""

    var: str | None
    offset: int
    span: Span


@dataclass(frozen=True)
class FractalRef:
    name: str
    index: Index
    span: Span


@dataclass(frozen=True)
class Join:
    branches: tuple[Seq, ...]
    span: Span


@dataclass(frozen=True)
class Seq:
    """Composition ``a . b . c``: data flows left to right."""

    terms: tuple[Call | FractalRef | Join | Seq, ...]
    span: Span


def walk(expr: Seq, kind: type):
    """Every term of ``kind`` (``Call``, ``FractalRef``, ``Join``) in ``expr``, in written
    order, entering joins' branches and parenthesised groups."""
    for t in expr.terms:
        if isinstance(t, kind):
            yield t
        if isinstance(t, Join):
            for b in t.branches:
                yield from walk(b, kind)
        elif isinstance(t, Seq):
            yield from walk(t, kind)


@dataclass(frozen=True)
class Rule:
    name: str
    index: Index
    expr: Seq
    span: Span


@dataclass(frozen=True)
class BlockSpec:
    """One entry of ``blocks``: ``(64, 0.1)``, ``(c=64, p=0.1)`` or ``64``; ``entries`` are
    ``(name or None for a positional value, value)`` in written order."""

    entries: tuple[tuple[str | None, Value], ...]
    span: Span
    name_spans: tuple[Span | None, ...] = ()

    @property
    def values(self) -> tuple[Value, ...]:
        return tuple(v for _, v in self.entries)


@dataclass(frozen=True)
class DropPathSpec:
    local: float | None
    global_: float | None
    per: str | None
    off: bool
    span: Span


@dataclass(frozen=True)
class Program:
    """One ``network NAME { ... }``; optional statements are None when absent."""

    source: Source
    name: str
    name_span: Span
    span: Span
    input_shape: tuple[tuple[int, ...], Span] | None
    classes: tuple[int, Span] | None
    columns: tuple[int, Span] | None
    key: tuple[KeyDef, ...]
    rules: tuple[Rule, ...]
    blocks: tuple[tuple[BlockSpec, ...], Span] | None
    droppath: DropPathSpec | None
    init: tuple[str, Span] | None = None
    # problems found while assembling (duplicates, bad drop-path values); later stages add
    # theirs, so the user sees them all at once
    problems: tuple[Diagnostic, ...] = ()


# ---- lark tree -> AST ------------------------------------------------------------------


def _span(meta) -> Span:
    return Span.from_meta(meta)


@v_args(meta=True)
class _ToAst(Transformer):
    """Transformer methods are named after the grammar rules they build."""

    def number(self, meta, children):
        (tok,) = children
        text = str(tok)
        try:
            value: int | float = int(text)
        except ValueError:
            value = float(text)
        return Value(value, Span.from_token(tok))

    def _arith(self, op, meta, children):
        return Value(Arith(op, tuple(children)), _span(meta))

    def add(self, meta, children):
        return self._arith("+", meta, children)

    def sub(self, meta, children):
        return self._arith("-", meta, children)

    def mul(self, meta, children):
        return self._arith("*", meta, children)

    def div(self, meta, children):
        return self._arith("/", meta, children)

    def neg(self, meta, children):
        (v,) = children
        if isinstance(v.value, (int, float)) and not isinstance(v.value, bool):
            return Value(-v.value, _span(meta))  # a negative number is a number
        return self._arith("neg", meta, children)

    def name(self, meta, children):
        (tok,) = children
        return Value(str(tok), Span.from_token(tok))

    def kwarg(self, meta, children):
        name, value = children
        return Arg(str(name), value, _span(meta))

    def posarg(self, meta, children):
        (value,) = children
        return Arg(None, value, _span(meta))

    def call(self, meta, children):
        name, *args = children
        args = tuple(a for a in args if a is not None)
        end = _span(meta)
        has_parens = end.end_column != Span.from_token(name).end_column or end.end_line != name.end_line
        return Call(str(name), args, has_parens, end)

    def chain(self, meta, children):
        return tuple(children)

    def params(self, meta, children):
        return tuple(c for c in children if c is not None)

    def param(self, meta, children):
        name, default = children
        return (str(name), default)

    def key_name(self, meta, children):
        (tok,) = children
        return tok

    def key_def(self, meta, children):
        if len(children) == 3:
            name, params, chain = children
        else:
            (name, chain), params = children, ()
        defaults = tuple((p, d) for p, d in params if d is not None)
        return KeyDef(str(name), tuple(p for p, _ in params), chain, _span(meta), Span.from_token(name), defaults)

    def key_block(self, meta, children):
        return ("key", tuple(children), _span(meta))

    def index_const(self, meta, children):
        (tok,) = children
        return Index(None, int(tok), _span(meta))

    def index_var(self, meta, children):
        (tok,) = children
        return Index(str(tok), 0, _span(meta))

    def index_plus(self, meta, children):
        var, n = children
        return Index(str(var), int(n), _span(meta))

    def index_minus(self, meta, children):
        var, n = children
        return Index(str(var), -int(n), _span(meta))

    def fractal(self, meta, children):
        name, index = children
        return FractalRef(str(name), index, _span(meta))

    def join(self, meta, children):
        return Join(tuple(children), _span(meta))

    def expr(self, meta, children):
        return Seq(tuple(children), _span(meta))

    def rule(self, meta, children):
        name, index, expr = children
        return Rule(str(name), index, expr, _span(meta))

    def input_stmt(self, meta, children):
        (tok,) = children
        return ("input", tuple(int(p) for p in str(tok).split("x")), _span(meta))

    def classes_stmt(self, meta, children):
        (tok,) = children
        return ("classes", int(tok), _span(meta))

    def columns_stmt(self, meta, children):
        (tok,) = children
        return ("columns", int(tok), _span(meta))

    def init_stmt(self, meta, children):
        (tok,) = children
        return ("init", str(tok), Span.from_token(tok))

    def block_kwvalue(self, meta, children):
        name, value = children
        return (str(name), value, Span.from_token(name))

    def block_posvalue(self, meta, children):
        (value,) = children
        return (None, value, None)

    def block_tuple(self, meta, children):
        return BlockSpec(tuple((n, v) for n, v, _ in children), _span(meta), tuple(s for _, _, s in children))

    def block_single(self, meta, children):
        return BlockSpec(((None, self.number(meta, children)),), _span(meta), (None,))

    def blocks_stmt(self, meta, children):
        return ("blocks", tuple(children), _span(meta))

    def dp_local(self, meta, children):
        return ("local", float(children[0]), _span(meta))

    def dp_global(self, meta, children):
        return ("global", float(children[0]), _span(meta))

    def dp_per(self, meta, children):
        return ("per", str(children[0]), Span.from_token(children[0]))

    def dp_off(self, meta, children):
        return ("off", True, _span(meta))

    def droppath_stmt(self, meta, children):
        return ("droppath", tuple(children), _span(meta))

    def network(self, meta, children):
        name, *stmts = children
        return (name, stmts, _span(meta))

    def start(self, meta, children):
        return children[0]


# ---- entry point ---------------------------------------------------------------------


def read_source(path: str | Path, display_name: str | None = None) -> Source:
    """Read a file as a :class:`Source`, refusing what is not a small UTF-8 text file."""
    path = Path(path)
    name = display_name or str(path)
    empty = Source(name, "")
    try:
        data = read_input(path, MAX_FILE_BYTES)  # a FIFO or a device is refused, not waited on
    except OSError as exc:
        unread = Diagnostic(Span.point(1, 1), f"cannot read file: {exc.strerror or exc}", positioned=False)
        raise FractalError(empty, [unread]) from None
    return decode_source(data, name)


def decode_source(data: bytes, name: str) -> Source:
    """Decode bytes as UTF-8 text, with a positioned diagnostic for anything else."""
    empty = Source(name, "")
    if len(data) > MAX_FILE_BYTES:
        raise FractalError(
            empty,
            [
                Diagnostic(
                    Span.point(1, 1),
                    f"file is larger than {MAX_FILE_BYTES // 1024} KiB; this is not a fractal-dsl program",
                )
            ],
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace")
        line = good.count("\n") + 1
        col = len(good) - (good.rfind("\n") + 1) + 1
        src = Source(name, good)
        raise FractalError(
            src,
            [
                Diagnostic(
                    Span.point(line, col),
                    f"invalid UTF-8 byte 0x{data[exc.start]:02x}; fractal-dsl files are UTF-8 text",
                )
            ],
        ) from None
    text = text.removeprefix("\ufeff")
    return Source(name, text)


def parse(source: Source) -> Program:
    """Parse a :class:`Source` into a :class:`Program` or raise :class:`FractalError`."""
    _precheck(source)
    text, found, parsed = source.text, [], 0
    while True:
        try:
            parsed += len(text)
            tree = _parser().parse(text)
            break
        except UnexpectedInput as exc:
            unclosed = (yaml_style(source) or python_style(source) or _unclosed_brace(source)) if not found else None
            if unclosed is not None:  # one report at the brace (or ':', or YAML's first line), not a cascade
                raise FractalError(source, [unclosed]) from None
            diag = _syntax_diagnostic(exc, Source(source.name, text))
            if found and diag.span.line <= found[-1].span.line:
                break
            found.append(diag)
            if diag.message.startswith((_NOT_A_PROGRAM, _OUTSIDE_KEY)):
                break  # the whole file is something else (JSON, TOML, Python): one error says so
            # look for more errors with the broken line blanked out, unless blanking it would
            # unbalance brackets (then later errors would only echo this one)
            fix = diag.fix
            if fix is not None and "\n" not in fix.text and fix.span.line == fix.span.end_line == diag.span.line:
                # a one-line fix (`network my-net {`): go on with the line as fixed, its braces kept
                if len(found) >= MAX_SYNTAX_ERRORS or parsed > MAX_REPARSED_CHARS:
                    break
                text = fix.apply(text)
                continue
            lines = text.split("\n")
            culprit = lines[diag.span.line - 1].split("#")[0]
            if (
                len(found) >= MAX_SYNTAX_ERRORS
                or parsed > MAX_REPARSED_CHARS
                or any(culprit.count(o) != culprit.count(c) for o, c in ("()", "[]", "{}"))
            ):
                break
            first = last = diag.span.line
            if diag.fix is not None and diag.fix.span.line <= diag.span.line <= diag.fix.span.end_line:
                first, last = diag.fix.span.line, diag.fix.span.end_line  # the lines it rewrites hold no other error
            for i in range(first - 1, last):
                lines[i] = " " * len(lines[i])
            text = "\n".join(lines)
    if found:
        raise FractalError(source, found)
    _check_depth(source, tree)  # every later stage recurses over the tree: bound it here
    name, stmts, span = _ToAst().transform(tree)
    return _assemble(source, name, stmts, span)


def _unclosed_brace(source: Source) -> Diagnostic | None:
    """The ``{`` that is never closed, if any: braces are matched in order, and a ``}``
    standing first on its line closes the open brace whose line is indented as it is, so a
    missing ``}`` is blamed on its own block, not on the network's brace at the end."""
    stack: list[tuple[int, int, int]] = []  # (line, column, indent of the opening line)
    lines = source.text.split("\n")
    code_only = "\n".join(line.split("#", 1)[0] for line in lines)
    if code_only.count("{") <= code_only.count("}"):
        return None
    unmatched: list[tuple[int, int, int]] = []
    for i, line in enumerate(lines, start=1):
        code = line.split("#", 1)[0]
        indent = len(line) - len(line.lstrip())
        for j, ch in enumerate(code, start=1):
            if ch == "{":
                stack.append((i, j, indent))
            elif ch == "}" and stack:
                first_on_line = not code[: j - 1].strip()
                while first_on_line and len(stack) > 1 and stack[-1][2] > indent:
                    unmatched.append(stack.pop())  # this `}` belongs to an outer, less indented block
                stack.pop()
    unmatched.extend(stack)
    if not unmatched:
        return None
    line, col, _ = min(unmatched)
    return Diagnostic(
        Span.point(line, col), "this `{` is never closed", hint="add the matching `}` where the block ends"
    )


def _precheck(source: Source) -> None:
    text = source.text
    lone_cr = re.search(r"\r(?!\n)", text)
    if lone_cr:  # else a CR-only file would be one line, all comment: "empty program"
        line = text.count("\n", 0, lone_cr.start()) + 1
        col = lone_cr.start() - (text.rfind("\n", 0, lone_cr.start()) + 1) + 1
        msg = "carriage return without a line feed (an old Mac line ending); fractal-dsl files use LF or CRLF"
        raise FractalError(source, [Diagnostic(Span.point(line, col), msg)])
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.split("\n")):
        raise FractalError(source, [Diagnostic(Span.point(1, 1), "empty program: expected `network NAME { ... }`")])
    for i, text_line in enumerate(text.split("\n"), start=1):
        if len(text_line) > MAX_LINE_CHARS:
            at = Span.point(i, MAX_LINE_CHARS + 1)
            msg = f"line {i} is {len(text_line):,} characters long; the limit is {MAX_LINE_CHARS:,}"
            raise FractalError(source, [Diagnostic(at, msg, hint="split it over several lines")])
    depth = 0
    line, col = 1, 0
    in_comment = False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment = line + 1, 0, False
            continue
        if in_comment:
            if unicodedata.category(ch) in _NOT_IN_COMMENTS and ch != "\t" and ch != "\r":
                raise FractalError(source, [Diagnostic(Span.point(line, col), _control(ch))])
            continue
        if ch == "#":
            in_comment = True
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise FractalError(
                    source,
                    [Diagnostic(Span.point(line, col), f"expression nested more than {MAX_NESTING} levels deep")],
                )
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif unicodedata.category(ch) == "Zs" and ch != " ":  # a no-break space pasted from a document
            at = Span.point(line, col)
            name = f"U+{ord(ch):04X} {unicodedata.name(ch, 'SPACE')}"
            msg = f"a {name} where a plain space belongs (pasted from a document or a web page?)"
            raise FractalError(source, [Diagnostic(at, msg, hint="write a plain space", fix=Fix(at, " "))])
        elif not ch.isprintable() and ch not in "\t\r":
            raise FractalError(source, [Diagnostic(Span.point(line, col), _control(ch))])


# the tree nodes that put an expression one level deeper: an operator of arithmetic (a
# sum of n terms is n - 1 levels, as it is evaluated), a join, a bracketed composition
_NESTING_RULES = frozenset({"add", "sub", "mul", "div", "neg", "join"})


def _check_depth(source: Source, tree) -> None:
    """Refuse an expression deeper than :data:`MAX_NESTING`, whatever makes it deep (long
    sums, chains of unary minus, nested joins or groups), without recursing: the transformer,
    the binder, ``fmt`` and the language server all walk the tree recursively."""
    stack = [(tree, 0, "")]  # (lark Tree, depth of its parent, its parent's rule)
    while stack:
        node, depth, parent = stack.pop()
        kind = str(node.data)
        if kind in _NESTING_RULES or (kind == "expr" and parent == "expr"):
            depth += 1
            if depth > MAX_NESTING:
                at = Span.from_meta(node.meta)
                msg = f"expression nested more than {MAX_NESTING} levels deep"
                hint = "each operator, join and bracketed group is a level (a sum of n terms has n - 1): simplify it"
                raise FractalError(source, [Diagnostic(Span.point(at.line, at.column), msg, hint=hint)])
        stack.extend((c, depth, kind) for c in reversed(node.children) if c is not None and not isinstance(c, Token))


# comments may hold any text but control and format characters (NUL, ESC, direction
# overrides such as U+202E, zero-width spaces such as U+200B) and line or paragraph separators
_NOT_IN_COMMENTS = ("Cc", "Cf", "Zl", "Zp")


def _control(ch: str) -> str:
    name = unicodedata.name(ch, "")
    what = f"U+{ord(ch):04X} {name}" if name else repr(ch)
    return f"control character {what} in source; fractal-dsl files are plain text"


_TOKEN_NAMES = {
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "EQUAL": "'='",
    "COMMA": "','",
    "DOT": "'.'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "NAME": "a name",
    "INT": "an integer",
    "NEG_INT": "an integer",
    "NUMBER": "a number",
    "STAR": "'*'",
    "SLASH": "'/'",
    "SIGNED_NUMBER": "a number",
    "SHAPE": "a shape like 3x32x32",
    "$END": "end of file",
    "<END-OF-FILE>": "end of file",
}


def _describe(term: str) -> str:
    if term in _TOKEN_NAMES:
        return _TOKEN_NAMES[term]
    if term.startswith("__ANON") or term.isupper():
        return f"'{term.lower()}'"
    return term


def _syntax_diagnostic(exc: UnexpectedInput, source: Source) -> Diagnostic:
    line = getattr(exc, "line", 1) or 1
    col = getattr(exc, "column", 1) or 1
    at_eof = isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END")
    if line < 1 or at_eof:  # point just after the last token in the file
        end = max((m.end() for m in _WORD.finditer(source.text) if not m.group().startswith("#")), default=0)
        line = source.text.count("\n", 0, end) + 1
        col = end - (source.text.rfind("\n", 0, end) + 1) + 1
    span = Span.point(line, col)
    if isinstance(exc, UnexpectedCharacters):
        ch = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else "?"
        allowed = sorted({_describe(t) for t in exc.allowed or ()})
        char = Token("CHAR", ch, exc.pos_in_stream, line, col, line, col + 1, exc.pos_in_stream + 1)
        habit = recognise(source, char, allowed)
        if habit is not None:
            return habit
        entry = _key_entry_colon(source.text, exc.pos_in_stream, ch)
        if entry is not None:
            return Diagnostic(
                span,
                "a key entry is defined with '=', not ':'",
                hint=f"write `{entry}`",
                fix=Fix(Span(line, col, line, col + 1), " ="),
            )
        if ch == ":" and re.fullmatch(
            r"\s*key\s*", source.text[source.text.rfind("\n", 0, exc.pos_in_stream) + 1 : exc.pos_in_stream]
        ):
            return _key_sign(Span(line, col, line, col + 1), ch)
        percent = re.search(r"[0-9]+(\.[0-9]+)?$", source.text[: exc.pos_in_stream]) if ch == "%" else None
        if percent is not None:  # `dropout 20%`, `droppath local 15%`
            start = exc.pos_in_stream - len(percent.group())
            line_end = source.text.find("\n", start)
            segment = source.text[start : len(source.text) if line_end < 0 else line_end].split("#", 1)[0]
            last = list(re.finditer(r"[0-9]+(?:\.[0-9]+)?%", segment))[-1].end()  # every `N%` on the line
            fixed = re.sub(r"([0-9]+(?:\.[0-9]+)?)%", lambda m: f"{float(m.group(1)) / 100:g}", segment[:last])
            return Diagnostic(
                Span(line, col - len(percent.group()), line, col + 1),
                f"a probability is a number from 0 to 1, not a percentage: `{percent.group()}%`",
                hint=f"write `{fixed}`"
                if "%" not in segment[len(percent.group()) + 1 : last]
                else "write each as a fraction: "
                + ", ".join(f"`{float(m) / 100:g}`" for m in re.findall(r"([0-9]+(?:\.[0-9]+)?)%", segment[:last])),
                fix=Fix(Span(line, col - len(percent.group()), line, col - len(percent.group()) + last), fixed),
            )
        statement = _statement_colon(source.text, exc.pos_in_stream, ch)
        if statement is not None:
            word, close = statement
            wspan = Span(line, col - len(word), line, col)
            return Diagnostic(
                wspan,
                f"unknown statement `{word}`; did you mean `{close}`?",
                hint=f"statements take no ':': write `{close} {_rest_of_line(source.text, exc.pos_in_stream + 1)}`",
                fix=Fix(Span(line, col - len(word), line, col + 1), close),
            )
        pos = exc.pos_in_stream
        lookalike = _ascii_lookalike(ch)
        line_start = source.text.rfind("\n", 0, pos) + 1
        before = source.text[line_start:pos]
        if ch == "\u2014" and code_after(source.text, pos + 1) and not _depth_open(before):  # `columns 3 — three`
            at = Span(line, col, line, col + 1)
            return Diagnostic(at, "comments start with '#'", hint="write `#`", fix=Fix(at, "#"))
        if lookalike is not None:  # `（`, `−`: characters that look like the language's own
            rest = _rest_of_line(source.text, pos).split("#", 1)[0]
            last = max(i for i, c in enumerate(rest) if _ascii_lookalike(c) is not None)
            fixed = "".join(_ascii_lookalike(c) or c for c in rest[: last + 1])
            return Diagnostic(
                Span(line, col, line, col + 1),
                f"`{ch}` (U+{ord(ch):04X} {unicodedata.name(ch, '')}) looks like `{lookalike}` but is not it",
                hint=f"write `{lookalike}`" + (" (and the same for the others on this line)" if last else ""),
                fix=Fix(Span(line, col, line, col + last + 1), fixed),
            )
        colon = _colon_habit(source.text, exc.pos_in_stream, span) if ch == ":" else None
        if colon is not None:
            return colon
        return Diagnostic(span, f"unexpected character {ch!r}", hint=_char_hint(source.text, exc.pos_in_stream, ch))
    expected = sorted({_describe(t) for t in getattr(exc, "expected", set()) or getattr(exc, "accepts", set())})
    want = ", ".join(expected[:8]) + (", ..." if len(expected) > 8 else "")
    if isinstance(exc, UnexpectedEOF):
        return Diagnostic(span, f"unexpected end of file; expected {want}" if want else "unexpected end of file")
    if isinstance(exc, UnexpectedToken):
        tok: Token = exc.token
        what = "end of file" if tok.type == "$END" else repr(str(tok)[:40])
        if tok.type != "$END":
            span = Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1)
        prev = _previous_word(source.text, tok.start_pos if tok.type != "$END" else len(source.text))
        structural = _structural(source.text, tok, expected)
        if structural is not None:
            return structural
        if expected == ["','"] and tok.type == "NAME" and re.search(r"[\w)\]]\s+$", source.text[: tok.start_pos]):
            return _side_by_side_in_join(source.text, tok, span)
        missing_dot = _missing_dot(source.text, tok, expected)
        if missing_dot is not None:
            return missing_dot
        habit = recognise(source, tok, expected)
        if habit is not None:
            return habit
        if expected == ["end of file"] and tok.type == "NETWORK":
            return Diagnostic(
                span,
                "a file holds one network; this is a second `network`",
                hint="put each network in its own .fdsl file",
            )
        if expected == ["'network'"] and str(tok).lower() == "network":
            return Diagnostic(
                span, "keywords are written in lower case", hint="write `network`", fix=Fix(span, "network")
            )
        if expected == ["'network'"]:
            return _not_a_network(source.text, tok, span)
        if expected == ["end of file"] and tok.type != "$END":  # `}` then `columns 4`, or a `}` too many
            closing = source.text.rfind("}", 0, tok.start_pos)
            closing_line = source.text.count("\n", 0, closing) + 1
            if str(tok) == "}":
                return Diagnostic(
                    span,
                    f"this `}}` closes nothing: the network ended at line {closing_line}",
                    hint="delete it",
                    fix=Fix(span, ""),
                )
            return Diagnostic(
                span,
                f"`{str(tok)[:40]}` after the network's closing `}}` (line {closing_line})",
                hint="statements go inside the network's braces: move it above that `}`",
            )
        if expected == ["'{'"] and str(tok) in ("=", ":") and prev is not None and prev[0] == "key":
            return _key_sign(span, str(tok))
        if expected == ["'['"] and str(tok) == "(" and prev is not None and prev[1] is not None:
            word, at = prev  # `Blocks (16, 0.1)`, `block (16, 0.1)`: a statement, misspelt
            starts_line = not source.text.split("\n")[at.line - 1][: at.column - 1].strip()
            close = [word.lower()] if word.lower() in _STATEMENTS else _statements_close(word, "(")
            if starts_line and close and close[0] != word:
                listed = re.findall(rf"^[ \t]*{word}[ \t]*(\(.*?\))[ \t]*(?:#.*)?$", source.text, re.M)
                if close[0] == "blocks" and len(listed) > 1:  # `block (16, 0.1)` once per block
                    return Diagnostic(
                        at,
                        f"unknown statement `{word}`; did you mean `blocks`?",
                        hint=f"one `blocks` statement lists every block, as in `blocks {' '.join(listed)}`",
                    )
                return Diagnostic(at, f"unknown statement `{word}`; did you mean `{close[0]}`?", fix=Fix(at, close[0]))
        if expected == ["'['"] and str(tok) == "(":
            starts = (
                prev is not None
                and prev[1] is not None
                and not source.text.split("\n")[prev[1].line - 1][: prev[1].column - 1].strip()
            )  # `f(C+1) = ...`: a rule at the start of its line
            hint = "fractal indices use square brackets, e.g. `f[C+1] = ...`" if starts else None
            return Diagnostic(span, "unexpected '('; expected '['", hint=hint)
        if set(expected) == {"'('", "a number"} and prev is not None and prev[0] == "blocks" and prev[1]:
            return Diagnostic(  # `blocks` and nothing after it
                prev[1],
                "`blocks` lists no block",
                hint="one entry per block, e.g. `blocks (64, 0.1) (128, 0.2)` or `blocks 64 128`",
            )
        pair = _size_pair(source.text, tok)
        if pair is not None:  # `kernel=3x3`, `kernel=(3, 3)`
            return pair
        shape = _trailing_x(source.text, prev) if expected == ["'['"] else None
        if shape is not None:  # `input 3x32x32x`: the `x` read as a misspelt statement
            return shape
        if expected == ["'['"] and prev is not None and prev[0] not in _STATEMENTS:
            # a NAME at statement level starts a rule `f[...] = ...`: most likely a misspelt statement
            word, at = prev
            close = _meant_statement(word, str(tok))
            wspan = Span(span.line, span.column, span.line, span.column) if at is None else at
            if word in BUILTINS:
                return Diagnostic(
                    wspan,
                    f"`{word}` is a layer, not a statement: layers belong in the key",
                    hint="compose it into a key entry, e.g. `conv(c, p) = conv3x3(c) . dropout(p) . batchnorm . relu`,"
                    " and give each block its value: `blocks (64, 0.1) (128, 0.2)`",
                )
            if close:
                fixed = wspan
                if str(tok) in ("=", ":") and tok.line == wspan.line:  # `num_classes = 10`: both go
                    fixed = Span(wspan.line, wspan.column, tok.line, tok.end_column or tok.column + 1)
                return Diagnostic(
                    wspan, f"unknown statement `{word}`; did you mean `{close[0]}`?", fix=Fix(fixed, close[0])
                )
            return Diagnostic(
                wspan,
                f"unknown statement `{word}`",
                hint="a network holds " + ", ".join(_STATEMENTS) + " and rules such as `f[1] = conv`",
            )
        msg = f"unexpected {what}"
        if want:
            msg += f"; expected {want}"
        hint = _char_hint(source.text, tok.start_pos, str(tok)) if tok.type != "$END" else None
        fix = None
        if tok.type != "$END" and source.text.startswith("//", tok.start_pos):  # a C comment
            fix = Fix(Span(tok.line, tok.column, tok.line, tok.column + 2), "#")
        if tok.type != "$END" and re.match(r"--[ \t]+[A-Za-z]", source.text[tok.start_pos :]):  # SQL, Lua, Haskell
            msg, hint = "comments start with '#', not '--'", "write `#`"
            fix = Fix(Span(tok.line, tok.column, tok.line, tok.column + 2), "#")
        return Diagnostic(span, msg, hint=hint or _hint_for(tok, expected), fix=fix)
    return Diagnostic(span, "syntax error")


# weight initialisation of convolutions and linear layers: the paper's Xavier (Glorot &
# Bengio, uniform), Kaiming (He, normal, for ReLU), or PyTorch's own defaults
INIT_SCHEMES = ("xavier", "kaiming", "torch")
# other names of the schemes: Keras' (glorot_uniform, he_normal), PyTorch's (kaiming_normal_)
INIT_HABITS = {
    name: scheme
    for scheme, names in {
        "xavier": ("glorot", "glorot_uniform", "glorot_normal", "xavier_uniform", "xavier_normal"),
        "kaiming": ("he", "he_uniform", "he_normal", "kaiming_uniform", "kaiming_normal", "msra"),
        "torch": ("default", "pytorch"),
    }.items()
    for name in (*names, *(n + "_" for n in names))
}
_STATEMENTS = ("input", "classes", "key", "columns", "blocks", "droppath", "init")
# the statements whose value can start like this: `depth 3` is not `droppath 3`
_STARTS = {"digit": ("input", "classes", "columns", "blocks"), "(": ("blocks",), "{": ("key",)}


_NOT_A_PROGRAM = "a program starts with `network NAME {`"


_SIZE_PAIR = re.compile(r"([A-Za-z_]+)\s*=\s*(?:\(\s*([0-9]+)\s*,\s*([0-9]+)\s*\)|([0-9]+)[xX]([0-9]+))")


_OUTSIDE_KEY = "key entries go inside `key { ... }`"
_DEFINITION = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*(\([^()]*\))?[ \t]*=(?!=)")


def _structural(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    """Mistakes the parser notices only at the next line, or that it reads as something else:
    a composition ending in '.', a definition with nothing after '=', a '(' never closed on
    its line, a ')' or ',' too many, '..', a missing '=', key entries outside the key and a
    rule inside it.  One error, where the mistake is."""
    if tok.type == "$END":
        return None
    pos = tok.start_pos
    code = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text[:pos])
    before = code.rstrip()
    last = len(before) - 1  # the last character of code before the token
    at_last = _span_at(text, last) if last >= 0 else None
    line_of = text.count("\n", 0, pos) + 1
    last_line = text.count("\n", 0, max(last, 0)) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    if str(tok) == "=" and text[pos - 1 : pos] == "=" and last_line == line_of:  # `f[1] == conv`, as a comparison
        at = _span_at(text, pos)
        return Diagnostic(at, "a definition has one '=', not '=='", hint="delete one", fix=Fix(at, ""))
    repeat = re.fullmatch(
        r"(\s*blocks\s+)([0-9]+)\s*[xX*\u00d7]\s*(\([^()]*\)|[0-9]+)\s*",
        code[line_start:] + text[pos:].split("\n", 1)[0].split("#", 1)[0],
    )
    if repeat and 1 <= int(repeat.group(2)) <= 16:  # `blocks 3 x (16, 0.1)`: a block repeated
        start, end = line_start + repeat.end(1), line_start + len(repeat.group().rstrip())
        at = Span(line_of, repeat.end(1) + 1, line_of, end - line_start + 1)
        written = " ".join([" ".join(repeat.group(3).split())] * int(repeat.group(2)))
        return Diagnostic(
            at,
            "each block is written out: `blocks` has no repeat",
            hint=f"write `blocks {written}`",
            fix=Fix(at, written),
        )
    scheme = re.fullmatch(r"\s*init\s+(\w+)\s*", code[line_start:])
    if str(tok) == "(" and scheme and re.match(r"\(\s*\)", text[pos:]):  # `init xavier()`, as a call
        at = _span_at(text, pos, len(re.match(r"\(\s*\)", text[pos:]).group()))
        hint = f"write `init {scheme.group(1)}`"
        return Diagnostic(at, "an initialisation is named, not called: no '()'", hint=hint, fix=Fix(at, ""))
    if str(tok) in ("=", "(") and _DEFINITION.match(text[line_start:]) and code[:line_start].rstrip():
        before = code[:line_start].rstrip()  # `relu .` then `join = mean`: the name was read as a layer
        last = len(before) - 1
        at_last, last_line = _span_at(text, last), text.count("\n", 0, last) + 1
    if at_last is not None and last_line < line_of and before.endswith(".") and str(tok) in ("=", "}", "("):
        return Diagnostic(  # `... . relu .` then the next entry: a dangling '.'
            at_last,
            "the composition ends with '.': a layer is missing after it",
            hint="delete the '.'",
            fix=Fix(at_last, ""),
        )
    if at_last is not None and last_line < line_of and before.endswith("=") and str(tok) in ("=", "}", "("):
        left = before[before.rfind("\n") + 1 : -1].strip()
        return Diagnostic(
            at_last, f"`{left} =` defines nothing", hint="write its layers after '=', e.g. `conv3x3(c) . relu`"
        )
    opened = _unclosed_before(code)
    rest = text[line_start:]  # a new statement starts this line: what came before it has ended
    starts = not text[line_start:pos].strip() and (
        str(tok) in (*_STATEMENTS, "}") or _DEFINITION.match(rest) or re.match(r"\s*f\s*\[", rest)
    )
    if opened is not None and starts and text.count("\n", 0, opened) + 1 < line_of:
        at = _span_at(text, opened)
        end = _code_end(text, opened)
        closing = ")" if text[opened] == "(" else "]"
        fix = None
        segment = text[text.rfind("\n", 0, opened) + 1 : end]
        if _bracket_balance(segment) == 1:
            fix = Fix(_span_at(text, end, 0), closing)
        return Diagnostic(at, f"this `{text[opened]}` is never closed", hint=f"add `{closing}` where it ends", fix=fix)
    line = text[text.rfind("\n", 0, pos) + 1 :].split("\n", 1)[0]
    if str(tok) == ")" and re.search(r",\s*$", code) and not re.match(r"\s*blocks\b", line):  # `join(a, b, )`
        at = _span_at(text, len(code.rstrip()) - 1)
        return Diagnostic(at, "a ',' before ')' with nothing after it", hint="delete the ','", fix=Fix(at, ""))
    if str(tok) == ")" and _bracket_balance(code) <= 0 and "')'" not in expected:
        at = _span_at(text, pos)
        return Diagnostic(at, "this `)` closes nothing", hint="delete it", fix=Fix(at, ""))
    if str(tok) == "." and before.endswith(".") and last_line == line_of:  # `a .. b`, `= . a`
        at = _span_at(text, pos)
        return Diagnostic(at, "two '.' in a row", hint="delete one", fix=Fix(at, ""))
    if str(tok) == "." and before.endswith("=") and last_line == line_of:
        at = _span_at(text, pos)
        return Diagnostic(at, "a composition starts with a layer, not '.'", hint="delete the '.'", fix=Fix(at, ""))
    if expected == ["'='"] and tok.type == "NAME" and last_line == line_of:  # `conv(c) conv3x3(c) . relu`
        return Diagnostic(
            Span.from_token(tok),
            "a key entry is `name(params) = layers`: the '=' is missing",
            hint="write `=` before the layers",
            fix=Fix(Span(tok.line, tok.column, tok.line, tok.column), "= "),
        )
    if str(tok) == "." and "')'" in expected and opened is not None and text.count("\n", 0, opened) + 1 == line_of:
        end = len(code.rstrip())  # `conv3x3(c, bias=false . relu`
        return Diagnostic(
            Span.from_token(tok),
            f"the `(` at column {_span_at(text, opened).column} is still open at this '.'",
            hint="is a ')' missing before the '.'? add it",
            fix=Fix(_span_at(text, end, 0), ")"),
        )
    line = text[text.rfind("\n", 0, pos) + 1 :].split("\n", 1)[0]
    in_network = code.count("{") - code.count("}") == 1  # not inside the key
    if expected == ["'['"] and in_network and _DEFINITION.match(line):
        name = _DEFINITION.match(line).group(1)
        if name in ("f", "g") or _meant_statement(name, str(tok)):
            return None  # a rule, or a misspelt statement (`C = 3`, `num_classes = 10`)
        start = text.rfind("\n", 0, pos) + 1 + line.index(name)
        key = re.search(r"\bkey\s*\{", code)
        return Diagnostic(
            _span_at(text, start, len(name)),
            f"{_OUTSIDE_KEY}: `{name}` is defined outside it",
            hint=f"move it into the key at line {code.count(chr(10), 0, key.start()) + 1}"
            if key
            else "put `key {` before the entries and `}` after them (a rule such as `f[1] = conv` stays outside)",
        )
    if str(tok) == "[" and re.search(r"\bjoin\s*$", code):
        return Diagnostic(Span.from_token(tok), "a join's branches go in round brackets, `join(a, b)`, not '['")
    if str(tok) == "[" and set(expected) <= {"'('", "'='"} and re.fullmatch(r"\s*[A-Za-z_]\w*\s*", code[line_start:]):
        return Diagnostic(
            Span.from_token(tok),
            "a rule such as `f[1] = conv` goes outside the key, after its `}`",
            hint="the key holds what layers mean; the rules, next to it, how they are expanded",
        )
    return None


def _span_at(text: str, pos: int, length: int = 1) -> Span:
    """The span of ``length`` characters at offset ``pos``."""
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(line, col, line, col + length)


def _unclosed_before(code: str) -> int | None:
    """The offset of the last '(' or '[' still open at the end of ``code``."""
    stack: list[int] = []
    for i, ch in enumerate(code):
        if ch in "([":
            stack.append(i)
        elif ch in ")]" and stack:
            stack.pop()
        elif ch in "{}":
            stack.clear()
    return stack[-1] if stack else None


def _bracket_balance(text: str) -> int:
    return sum(c in "([" for c in text) - sum(c in ")]" for c in text)


def _code_end(text: str, pos: int) -> int:
    """The offset where the code of the line holding ``pos`` ends (comment and trailing space left out)."""
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    return start + len(text[start:end].split("#", 1)[0].rstrip())


def _size_pair(text: str, tok: Token) -> Diagnostic | None:
    """``kernel=3x3`` or ``kernel=(3, 3)``, PyTorch's pair of sizes: one number, as every
    kernel, stride and padding here is square."""
    if tok.type == "$END":
        return None
    line_start = text.rfind("\n", 0, tok.start_pos) + 1
    for m in _SIZE_PAIR.finditer(text, line_start, text.find("\n", tok.start_pos) % (len(text) + 1)):
        if not m.start() < tok.start_pos < m.end():
            continue
        a, b = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5))
        line = text.count("\n", 0, m.start()) + 1
        at = Span(line, m.start() - line_start + 1, line, m.end() - line_start + 1)
        if a != b:
            hint = "a layer here has square sizes: use one number, or a different layer"
            return Diagnostic(at, f"`{m.group(1)}` is one number, not a pair", hint=hint)
        return Diagnostic(
            at,
            f"`{m.group(1)}` is one number (kernels, strides and padding are square), not a pair",
            hint=f"write `{m.group(1)}={a}`",
            fix=Fix(at, f"{m.group(1)}={a}"),
        )
    return None


def _trailing_x(text: str, prev: tuple[str, Span | None] | None) -> Diagnostic | None:
    """``input 3x32x32x``: the shape with an 'x' too many, its end read as a name."""
    if prev is None or prev[1] is None or not re.fullmatch(r"[xX][0-9xX]*", prev[0]):
        return None
    line = text.split("\n")[prev[1].line - 1]
    m = re.match(r"(\s*input\s+)([0-9xX]+)(?=\s|#|$)", line)
    dims = re.findall(r"[0-9]+", m.group(2)) if m else []
    if len(dims) != 3:
        return None
    at = Span(prev[1].line, m.end(1) + 1, prev[1].line, m.end(2) + 1)
    return Diagnostic(
        at,
        "an input shape is written CxHxW, e.g. `input 3x32x32`",
        hint=f"channels, height and width joined by 'x': write `input {'x'.join(dims)}`",
        fix=Fix(at, "x".join(dims)),
    )


def _side_by_side_in_join(text: str, tok: Token, span: Span) -> Diagnostic:
    """``join(f[C] f[C], conv)`` or ``join(f[C] . f[C] conv)``: a '.' or a ',' left out
    inside a join.  A ',' where the join would otherwise have one branch, else a '.'."""
    depth, comma = 0, False
    for ch in text[tok.start_pos :]:
        depth += (ch in "([{") - (ch in ")]}")
        if depth < 0:
            break
        comma = comma or (ch == "," and depth == 0)
    sep, what = (
        (". ", "the parts of a composition need '.' between them, e.g. `f[C] . f[C]`")
        if comma
        else (", ", "a join needs ',' between its branches, e.g. `join(f[C] . f[C], conv)`")
    )
    return Diagnostic(
        span,
        f"`{tok}` follows the part before it with nothing between",
        hint=what,
        fix=Fix(Span(tok.line, tok.column, tok.line, tok.column), sep),
    )


def _not_a_network(text: str, tok: Token, span: Span) -> Diagnostic:
    """The file does not start with ``network``: another word for it (``model tiny {``), or
    another language (JSON's ``{``, TOML's ``[network]``, Python's ``import``)."""
    after = text[tok.end_pos :] if tok.end_pos is not None else ""
    if tok.type == "NAME" and re.match(r"[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*\{", after):  # `model tiny {`
        return Diagnostic(
            span, f"{_NOT_A_PROGRAM}, not `{tok}`", hint="did you mean `network`?", fix=Fix(span, "network")
        )
    what = {"{": "JSON", "[": "TOML or INI", "import": "Python", "from": "Python"}.get(str(tok))
    return Diagnostic(
        span,
        f"{_NOT_A_PROGRAM}, not {str(tok)[:40]!r}" + (f": fractal-dsl is not {what}" if what else ""),
        hint="e.g. `network tiny { input 1x16x16 classes 10 key { ... } f[1] = conv ... }` (see examples/tiny.fdsl)",
    )


def _meant_statement(word: str, after: str) -> list[str]:
    """The statement a misspelt ``word`` stands for (``drop_path``; ``C``, the paper's number
    of columns; ``Columns``; ``colums``), as a list of one, or []."""
    plain = re.sub(r"[_-]", "", word.lower())
    plain = "columns" if plain in ("c", "numcolumns", "ncolumns", "ncols", "cols") else plain
    return [plain] if plain in _STATEMENTS else _statements_close(word, after)


def _statements_close(word: str, after: str) -> list[str]:
    """The statement closest to the misspelt ``word`` among those whose value may start with ``after``."""
    first = after[:1]
    kind = "digit" if first.isdigit() else first
    fits = _STARTS.get(kind, ("droppath", "init") if first.isalpha() else _STATEMENTS)
    return difflib.get_close_matches(word.lower(), fits, n=1)


_WORD = re.compile(r"#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|\S")
_CHAR_HINTS = {
    "*": "composition is written with '.', e.g. `f[C] . f[C]`",
    "\u2218": "composition is written with '.', e.g. `f[C] . f[C]`",
    "\u00b7": "composition is written with '.', e.g. `f[C] . f[C]`",
    ";": "statements need no ';': put each on its own line",
    ":": "statements need no ':', e.g. `columns 3`",
    '"': "fractal-dsl has no strings: names are written bare, e.g. `join = mean`",
    "'": "fractal-dsl has no strings: names are written bare, e.g. `join = mean`",
    "\u2295": "a join is written `join(a, b)`",
}


def _key_entry_colon(text: str, pos: int, ch: str) -> str | None:
    """``join: mean`` in the key, as in YAML: the entry's left side, or None."""
    if ch != ":":
        return None
    left = text[text.rfind("\n", 0, pos) + 1 : pos].strip()
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*(\([^()]*\))?", left)
    if m is None or m.group(1) in (*_STATEMENTS, "network", "f"):
        return None
    before = re.sub(r"#[^\n]*", "", text[:pos])
    opened = [k.end() for k in re.finditer(r"\bkey\s*\{", before)]
    if not opened or before.count("{", opened[-1]) - before.count("}", opened[-1]) < 0:
        return None  # not inside the key: `num_classes: 10` is a statement
    return f"{left} = {_rest_of_line(text, pos + 1)}"


_TYPED_PARAMS = re.compile(r"([ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*)\(([^()]*:[^()]*)\)([ \t]*(?:->[^=]*)?=)")


# characters that look like the language's own, from a word processor or a paper: the
# minus sign, the dashes are taken for comments where text follows (see the diagnostic)
_LOOKALIKES = {"\u2212": "-", "\u2013": "-", "\u2010": "-", "\u2011": "-", "\u2044": "/", "\u2215": "/", "\u00d7": "*"}


def _ascii_lookalike(ch: str) -> str | None:
    """The ASCII character ``ch`` stands for (``（`` for ``(``, the minus sign for ``-``), or None."""
    if ch.isascii():
        return None
    meant = _LOOKALIKES.get(ch) or unicodedata.normalize("NFKC", ch)
    return meant if len(meant) == 1 and meant.isascii() and meant.isprintable() and not meant.isspace() else None


def _depth_open(text: str) -> bool:
    """Whether a bracket is open at the end of ``text``."""
    return sum(c in "([{" for c in text) > sum(c in ")]}" for c in text)


def _colon_habit(text: str, pos: int, span: Span) -> Diagnostic | None:
    """``f[1] := conv`` (Pascal, Go) and ``conv(c: int, p: float) = ...`` (Python's type
    hints): each rewritten, the ':' left out."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : len(text) if line_end < 0 else line_end]
    col = pos - line_start
    if text.startswith(":=", pos):
        at = Span(span.line, span.column, span.line, span.column + 2)
        return Diagnostic(at, "a definition is written with '=', not ':='", hint="write `=`", fix=Fix(at, "="))
    m = _TYPED_PARAMS.match(line)
    if m is None or not m.start(2) <= col < m.end(2):
        return None
    params = []
    for p in m.group(2).split(","):
        name, _, rest = p.partition(":")
        default = rest.partition("=")[2].strip()
        params.append(name.strip() + (f"={default}" if default else ""))
    fixed = f"({', '.join(params)})"
    left = m.group(1).strip()
    return Diagnostic(
        span,
        "parameters have no types: a value is a number, `true`, `false` or a name",
        hint=f"leave out the types: write `{left}{fixed} =`",
        fix=Fix(Span(span.line, m.start(2), span.line, len(m.group(0)) + 1), fixed + " ="),
    )


def _rest_of_line(text: str, pos: int) -> str:
    """The code from ``pos`` to the end of its line, comment left out, spaces made single."""
    line_end = text.find("\n", pos)
    return " ".join(text[pos : len(text) if line_end < 0 else line_end].split("#", 1)[0].split())


def _key_sign(span: Span, sign: str) -> Diagnostic:
    """``key = {`` or ``key: {``: the key opens with its brace alone."""
    return Diagnostic(
        span,
        f"unexpected {sign!r}: the key is written `key {{`, its entries inside the braces",
        hint=f"leave out the {sign!r}",
        fix=Fix(span, ""),
    )


def _statement_colon(text: str, pos: int, ch: str) -> tuple[str, str] | None:
    """``num_classes: 10`` outside the key: the misspelt statement and the statement meant."""
    if ch != ":" or _key_entry_colon(text, pos, ch) is not None:
        return None
    left = text[text.rfind("\n", 0, pos) + 1 : pos]
    if not re.fullmatch(r"\s*[A-Za-z_][A-Za-z0-9_]*", left):
        return None
    word = left.strip()
    after = text[pos + 1 :].lstrip(" \t")
    close = [word.lower()] if word.lower() in _STATEMENTS else _statements_close(word, after)
    return (word, close[0]) if close and word != close[0] else None


def _char_hint(text: str, pos: int, ch: str) -> str | None:
    """Hints for habits from other languages: `//` comments, `->` for composition."""
    if ch.isalpha() and not ch.isascii():  # `π`, `réseau`
        return "names are ASCII letters, digits and '_' (no accents or other scripts)"
    if text.startswith("//", pos):
        return "comments start with '#', e.g. `# base case`"
    if text.startswith("->", pos):
        return "composition is written with '.', e.g. `conv . relu` (data flows left to right)"
    return _CHAR_HINTS.get(ch)


def _missing_dot(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    """Two layers side by side (``batchnorm relu``): the parser reads the second as the
    start of a new definition and fails later; report the missing '.' between them."""
    if tok.type == "$END" or not set(expected) <= {"'('", "'='", "'['"}:
        return None
    prev = _previous_word(text, tok.start_pos)
    if prev is None or prev[1] is None:
        return None
    word, at = prev
    before = text[text.rfind("\n", 0, _offset(text, at)) + 1 : _offset(text, at)]
    head = before.split("#", 1)[0]
    if "=" not in head or not head.rstrip() or not (head.rstrip()[-1].isalnum() or head.rstrip()[-1] in ")]_"):
        return None
    left = re.findall(r"[A-Za-z_][A-Za-z0-9_]*\)?$|\)$|\]$", head.rstrip())
    shown = (left[0] if left else head.rstrip()[-1:]) + " " + word
    return Diagnostic(
        at,
        f"two layers side by side: `{shown}`",
        hint=f"compose them with '.', e.g. `{shown.replace(' ', ' . ')}`",
        fix=Fix(Span(at.line, at.column, at.line, at.column), ". "),
    )


def _offset(text: str, span: Span) -> int:
    """The character offset of ``span``'s start in ``text``."""
    lines = text.split("\n")
    return sum(len(ln) + 1 for ln in lines[: span.line - 1]) + span.column - 1


def _previous_word(text: str, pos: int) -> tuple[str, Span | None] | None:
    """The last name before ``pos`` (skipping comments), with its span."""
    last = None
    for m in _WORD.finditer(text, 0, pos):
        if m.group().startswith("#"):
            continue
        last = m
    if last is None or not (last.group()[0].isalpha() or last.group()[0] == "_"):
        return None
    line = text.count("\n", 0, last.start()) + 1
    line_start = text.rfind("\n", 0, last.start()) + 1
    col = last.start() - line_start + 1
    return last.group(), Span(line, col, line, col + len(last.group()))


def _hint_for(tok: Token, expected: list[str]) -> str | None:
    if str(tok) == "*" and "'.'" in expected:
        return _CHAR_HINTS["*"]
    if tok.type == "SIGNED_NUMBER" and "a shape like 3x32x32" in expected:
        return "write the input shape as CxHxW, e.g. `input 3x32x32`"
    if str(tok) == "=" and ("an integer" in expected or "a shape like 3x32x32" in expected):
        return "statements take no '=': write e.g. `columns 3`, `input 3x32x32`"
    if str(tok) == ")" and "','" in expected:
        return "a join needs at least two branches, separated by ',', e.g. `join(f[C] . f[C], conv)`"
    if "','" in expected and "')'" not in expected and tok.type != "$END":
        return "separate the branches of a join with ',' and the parts of a composition with '.'"
    if str(tok) == "[" and "'('" in expected and "a number" in expected:
        return "blocks are written `blocks (64, 0.1) (128, 0.2)`, or `blocks 64 128` for one value each"
    if str(tok) in ("+", "-") and "']'" in expected:
        return "an index is written `f[1]`, `f[C]`, `f[C+1]` or `f[C-1]`: the variable first, then a whole number"
    if str(tok).startswith(".") and str(tok)[1:2].isdigit():
        return "a whole number is needed here"
    if tok.type == "$END" and "'}'" in expected:
        return "is a closing '}' missing?"
    return None


def _assemble(source: Source, name: Token, stmts: list, span: Span) -> Program:
    diags = Collector(source)
    seen: dict[str, Span] = {}
    found: dict[str, object] = {}
    key: list[KeyDef] = []
    rules: list[Rule] = []
    for stmt in stmts:
        if isinstance(stmt, Rule):
            rules.append(stmt)
            continue
        kind, value, sspan = stmt
        if kind in seen:
            prev = seen[kind]
            diags.error(sspan, f"`{kind}` is given twice (first at line {prev.line})", hint="keep one of them")
            continue
        seen[kind] = sspan
        if kind == "key":
            key.extend(value)
        elif kind == "droppath":
            found[kind] = _droppath(value, sspan, diags)
        elif kind == "init" and value not in INIT_SCHEMES:
            close = [INIT_HABITS[value.lower()]] if value.lower() in INIT_HABITS else []
            close = close or difflib.get_close_matches(value.lower(), INIT_SCHEMES, n=1)
            diags.error(
                sspan,
                f"unknown weight initialisation `{value}`",
                hint=f"did you mean `{close[0]}`?"
                if close
                else "use " + ", ".join(f"`init {s}`" for s in INIT_SCHEMES),
                fix=Fix(sspan, close[0]) if close else None,
            )
        else:
            found[kind] = (value, sspan)
    return Program(
        problems=tuple(diags.diagnostics),
        source=source,
        name=str(name),
        name_span=Span.from_token(name),
        span=span,
        input_shape=found.get("input"),
        classes=found.get("classes"),
        columns=found.get("columns"),
        key=tuple(key),
        rules=tuple(rules),
        blocks=found.get("blocks"),
        droppath=found.get("droppath"),
        init=found.get("init"),
    )


def _droppath(opts, span: Span, diags: Collector) -> DropPathSpec:
    got: dict[str, object] = {}
    for kind, value, ospan in opts:
        if kind in got:
            diags.error(ospan, f"drop-path option `{kind}` is given twice")
            continue
        got[kind] = value
        if kind in ("local", "global") and not 0.0 <= value <= 1.0:
            percent = 1 < value < 100 and value == int(value)
            diags.error(
                ospan,
                f"drop-path {kind} probability must be between 0 and 1, got {value:g}",
                hint=f"a probability, not a percentage: did you mean `{kind} {value / 100:g}`?" if percent else None,
                fix=Fix(ospan, f"{kind} {value / 100:g}") if percent else None,
            )
        if kind == "per" and value not in ("batch", "sample"):
            diags.error(ospan, f"drop-path is sampled `per batch` or `per sample`, not `per {value}`")
        if kind == "local" and value == 1.0:
            pass  # allowed: a join still keeps one input
    given = [(k, v, o) for k, v, o in opts if k != "off"]
    off = next((o for k, _, o in opts if k == "off"), None)
    if off is not None and given:  # `droppath off local 0.1`: which is meant?
        words = " ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v, _ in given)
        diags.error(
            off,
            f"`off` turns drop-path off, so `{words}` would do nothing",
            hint=f"keep one: `droppath off` trains without drop-path, `droppath {words}` with it",
        )
    return DropPathSpec(got.get("local"), got.get("global"), got.get("per"), bool(got.get("off")), span)
