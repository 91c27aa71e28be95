"""Habits a newcomer brings from other languages, recognised in a syntax error.

Each recogniser looks at the statement a syntax error is in, not at the exact text, and
returns one :class:`~fractal_dsl.errors.Diagnostic` that names the habit and shows the
statement rewritten in fractal-dsl, with the rewrite as a machine-readable
:class:`~fractal_dsl.errors.Fix`.  A fix is offered only when the rewritten statement
parses (:func:`_checked`), so following a hint never leads to a second syntax error.

* commas between composed layers, ``conv3x3(c), batchnorm, relu``;
* nested calls, ``relu(batchnorm(conv3x3(c)))``;
* commas between blocks, ``blocks 16, 32``;
* ``name=value`` (or commas, parentheses, colons) in ``droppath``;
* a network name that is not a name, ``network my-net``;
* ``+`` between parts, ``f[C] + f[C]``;
* ``columns: 3``, ``classes = 10``: a statement with ':' or '=';
* Python-style ``network t:`` blocks with indented lines (:func:`python_style`);
* a file written as YAML, ``network: tiny`` and ``columns: 3`` lines (:func:`yaml_style`);
* counts written as words, ``columns four`` (:func:`number_word`, also used when binding);
* C's ``/* ... */`` comments;
* PyTorch and Keras layers, ``Conv2d(64, 3)``, ``BatchNorm2d(64)``, ``Dense(10)``
  (:func:`foreign_layer`, used when binding the key).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from lark import Token, UnexpectedInput

from .errors import Diagnostic, Fix, Source, Span
from .grammar import parser as _parser
from .layers import BUILTINS

_DP_OPTION = r"((local|global) -?[0-9.]+|per \w+|off)"
_OPEN, _CLOSE = "([{", ")]}"


# ---- text helpers --------------------------------------------------------------------------


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at the ``sep`` characters outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _depth(text: str) -> int:
    """How many brackets are open at the end of ``text``."""
    return sum(ch in _OPEN for ch in text) - sum(ch in _CLOSE for ch in text)


def _span(text: str, start: int, end: int) -> Span:
    """The span of ``text[start:end]``."""

    def at(pos: int) -> tuple[int, int]:
        return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1

    return Span(*at(start), *at(end))


def _code_line(text: str, pos: int) -> tuple[int, int]:
    """The start and end offsets of the code (comment and trailing space left out) on the line of ``pos``."""
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    code = text[start:end].split("#", 1)[0].rstrip()
    return start, start + len(code)


def _uncommented(text: str) -> str:
    """``text`` with its comments blanked out, every offset kept."""
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text)


# a line that starts a definition, a rule or closes a block: what came before it has ended
_NEXT_DEFINITION = re.compile(r"}|(f\s*\[[^\]\n]*\]|[A-Za-z_][A-Za-z0-9_]*\s*(\([^()\n]*\))?)\s*=(?!=)")


def _right_side(text: str, pos: int) -> tuple[int, int, str] | None:
    """The right side of the definition or rule (``... = RIGHT``) holding ``pos``: its
    offsets and the left side's text; None when there is no ``=`` outside brackets before
    ``pos``.  The right side may go on over lines that end or start with ``.`` or ``,``, or
    inside open brackets; a one-line ``key { a = b }`` ends at its ``}``."""
    code = _uncommented(text)
    start = code.rfind("\n", 0, pos) + 1
    while start > 0 and (
        code[: start - 1].rstrip().endswith((".", ",", "(")) or code[start:].lstrip(" \t").startswith((".", ","))
    ):
        start = code.rfind("\n", 0, start - 1) + 1  # the statement began on an earlier line
    depth, eq = 0, None
    for i in range(start, pos):
        ch = code[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == "=" and depth == 0:
            eq = i
    if eq is None:
        return None
    right_start = eq + 1
    while right_start < len(code) and code[right_start] in " \t":
        right_start += 1
    depth, right_end = 0, len(code)
    for i in range(right_start, len(code)):
        ch = code[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                right_end = i
                break
        elif ch == "\n" and depth == 0:
            rest = code[i + 1 :].lstrip(" \t")
            ends_open = code[right_start:i].rstrip().endswith((".", ","))
            if (not ends_open and not rest.startswith((".", ","))) or _NEXT_DEFINITION.match(rest):
                right_end = i  # a trailing ',' before the next definition (`relu,`) does not go on
                break
    right_end = right_start + len(code[right_start:right_end].rstrip())
    left = code[start:eq].strip().split("{")[-1].strip()
    return right_start, right_end, " ".join(left.split())


def _statement(text: str, pos: int) -> tuple[str, int, int] | None:
    """The statement keyword (``blocks``, ``droppath``, ``network``, ...) that the lines holding
    ``pos`` continue, with the offsets after the keyword and at the end of its last line."""
    lines = text.split("\n")
    line_no = text.count("\n", 0, pos)
    first = line_no
    while first > 0 and re.match(r"\s*[(0-9-]", lines[first].split("#", 1)[0]):
        first -= 1  # a `blocks` statement may go on over lines that start with a value
    m = re.match(r"\s*(blocks|droppath|network|input|classes|columns|init)\b", lines[first])
    if m is None:
        return None
    last = line_no
    while last + 1 < len(lines) and re.match(r"\s*[(0-9]", lines[last + 1].split("#", 1)[0]):
        last += 1
    offset = sum(len(ln) + 1 for ln in lines[:first])
    end_start = sum(len(ln) + 1 for ln in lines[:last])
    return m.group(1), offset + m.end(), _code_line(text, end_start)[1]


def _checked(source: Source, diag: Diagnostic) -> Diagnostic:
    """``diag`` as it is, if its fix removes the syntax error; else without the fix and with
    the hint's suggested spelling left out."""
    if diag.fix is None:
        return diag
    try:
        _parser().parse(diag.fix.apply(source.text))
    except UnexpectedInput as exc:
        line = getattr(exc, "line", 0) or 0
        if diag.fix.span.line <= line <= diag.fix.span.end_line + diag.fix.text.count("\n"):
            kept = diag.hint.split(": write", 1)[0] if diag.hint and ": write" in diag.hint else None
            return Diagnostic(diag.span, diag.message, hint=kept)
    return diag


_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_word(text: str) -> int | None:
    """The whole number ``text`` spells in English words (``four``, ``Twenty``,
    ``sixty-four``, ``sixty four``, ``hundred``), from zero to a hundred; None for any other text."""
    words = re.split(r"[\s_-]+", text.strip().lower())
    if words == ["hundred"] or words in (["one", "hundred"], ["a", "hundred"]):
        return 100
    if len(words) == 1 and words[0] in _UNITS:
        return _UNITS.index(words[0])
    if 1 <= len(words) <= 2 and words[0] in _TENS and (len(words) == 1 or words[1] in _UNITS[1:10]):
        return 20 + 10 * _TENS.index(words[0]) + (_UNITS.index(words[1]) if len(words) == 2 else 0)
    return None


# ---- the habits ------------------------------------------------------------------------------


def _comma_composition(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    if tok.type != "COMMA" or ("'.'" not in expected and "'}'" not in expected):
        return None
    right = _right_side(text, tok.start_pos)
    if right is None:
        return None
    start, end, left = right
    if _depth(text[start : tok.start_pos]) != 0:
        return None  # not between the parts of the composition itself
    rewritten = " . ".join(" ".join(p.split()) for p in _split(_uncommented(text)[start:end], ",") if p.strip())
    return Diagnostic(
        Span.from_token(tok),
        "layers are composed with '.', not ','",
        hint=f"data flows left to right through `a . b`: write `{left} = {rewritten}`",
        fix=Fix(_span(text, start, end), rewritten),
    )


def _layer_names(text: str) -> set[str]:
    """The built-in layers and the names the file defines in its key (``name(...) = ...``)."""
    defined = re.findall(r"^\s*(?:key\s*\{\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^)]*\))?\s*=(?!=)", text, re.M)
    return set(BUILTINS) | set(defined)


def _unnest(expr: str, layers: set[str]) -> str | None:
    """``relu(batchnorm(conv3x3(c)))`` as ``conv3x3(c) . batchnorm . relu``; None when a
    call takes more than one layer (no composition says what that means).  An argument is
    a layer if it is a call, a fractal ``f[...]``, or a name in ``layers``."""
    terms = []
    for part in _split(expr, "."):
        term = _unnest_term(part.strip(), layers)
        if term is None:
            return None
        terms.append(term)
    return " . ".join(terms)


def _unnest_term(term: str, names: set[str]) -> str | None:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)", term, re.S)
    if m is None:
        return term
    name, inner = m.groups()
    args = [a.strip() for a in _split(inner, ",")]
    if name == "join":
        branches = [_unnest(a, names) for a in args]
        return None if None in branches else f"join({', '.join(branches)})"
    layers = [a for a in args if re.match(r"[A-Za-z_][A-Za-z0-9_]*\s*[(\[]", a) or a in names]
    if not layers:
        return term
    if len(layers) > 1:
        return None
    inside = _unnest(layers[0], names)
    rest = [a for a in args if a is not layers[0]]
    return None if inside is None else f"{inside} . {name}" + (f"({', '.join(rest)})" if rest else "")


# names a join is written with in other languages, or in capitals: `mean(a, b)`, `Join(a, b)`
_JOIN_WORDS = ("join", "mean", "average", "avg", "sum", "add", "max", "concat", "cat", "merge", "parallel")


def _nested_call(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    if tok.type not in ("LPAR", "LSQB") or "'='" not in expected:
        return None
    if not re.search(r"[A-Za-z0-9_]\s*$", text[: tok.start_pos]):
        return None
    right = _right_side(text, tok.start_pos)
    if right is None:
        return None
    start, end, left = right
    written = " ".join(_uncommented(text)[start:end].split())
    rewritten = _unnest(written, _layer_names(text))
    called = []  # the names whose '(' is open where the error is: the last is called on a layer
    for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)?\s*([()])", text[start : tok.start_pos]):
        if m.group(2) == "(":
            called.append((m.group(1), start + m.start(1)))
        elif called:
            called.pop()
    if called and called[-1][0] and called[-1][0] != "join" and called[-1][0].lower() in _JOIN_WORDS:
        name, at = called[-1]  # `mean(f[C] . f[C], conv)`, `Join(...)`: a join, by another name
        return Diagnostic(
            _span(text, at, at + len(name)),
            f"branches are joined with `join(...)`, not `{name}(...)`",
            hint="how a join merges is set once, in the key (`join = mean`, the default, or sum, max, concat):"
            " write `join`",
            fix=Fix(_span(text, at, at + len(name)), "join"),
        )
    outer = called[-1][0] if called and called[-1][0] != "join" else None
    message = "a layer is not called on another layer" + (f": `{outer}(...)`" if outer else "")
    hint = "layers compose with '.', data flowing left to right"
    if rewritten is None or rewritten == written:
        return Diagnostic(Span.from_token(tok), message, hint=hint + ", e.g. `conv3x3(c) . batchnorm . relu`")
    return Diagnostic(
        Span.from_token(tok),
        message,
        hint=f"{hint}: write `{left} = {rewritten}`",
        fix=Fix(_span(text, start, end), rewritten),
    )


def _input_shape(text: str, tok: Token, start: int, end: int) -> Diagnostic | None:
    """``input (1, 28, 28)``, ``input [3, 32, 32]``, ``input 1 x 28 x 28``, ``input 28*28``: the
    shape as CxHxW (one channel where two sizes are given, channels first where the last is 1, 3 or 4)."""
    body = text[start:end]
    dims = re.findall(r"[0-9]+", body)
    if len(dims) not in (2, 3) or not re.fullmatch(r"[\s\[\](),xX*\u00d70-9]+", body):
        return None
    c, h, w = ["1", *dims] if len(dims) == 2 else dims
    if int(w) in (1, 3, 4) and int(c) > 4 and int(h) > 4:  # written HxWxC
        c, h, w = w, c, h
    rewritten = f"{c}x{h}x{w}"
    return Diagnostic(
        Span.from_token(tok),
        "an input shape is written CxHxW, e.g. `input 3x32x32`",
        hint=f"channels, height and width joined by 'x': write `input {rewritten}`",
        fix=Fix(_span(text, start, end), " " + rewritten),
    )


def _closing(text: str, at: int) -> int:
    """The offset of the bracket that closes the one at ``at`` (-1 if none)."""
    depth = 0
    for i in range(at, len(text)):
        depth += (text[i] in _OPEN) - (text[i] in _CLOSE)
        if depth == 0:
            return i
    return -1


def _block_tuples(body: str) -> tuple[str, str] | None:
    """``(c: 16, p: 0.1)``, ``{c: 16, p: 0.1}`` (a dict) and ``(16, 0.1,)`` (a trailing
    comma), as Python writes them: the message and the blocks written as tuples."""
    written = " ".join(body.split())
    fixed = re.sub(r"\{([^{}]*)\}", r"(\1)", written)
    fixed = re.sub(r"([A-Za-z_][A-Za-z0-9_]*)\s*:\s*", r"\1=", fixed)
    fixed = re.sub(r"\s*,\s*\)", ")", fixed)
    if fixed == written:
        return None
    if "{" in written:
        return "a block is a tuple `(c=64, p=0.1)`, not a dict", fixed
    if ":" in written:
        return "a block names its values with '=', `(c=64, p=0.1)`, not ':'", fixed
    return "a block's values end without a ',' before ')'", fixed


def _bare_droppath(words: list[str]) -> tuple[str, str] | None:
    """``droppath 0.15 0.5`` (the paper's two numbers, unnamed), ``droppath on`` or
    ``droppath none``: the message and the options meant; None for anything else."""
    if 1 <= len(words) <= 2 and all(re.fullmatch(r"[0-9]*\.?[0-9]+", w) for w in words):
        named = " ".join(f"{k} {w}" for k, w in zip(("local", "global"), words))
        message = (
            "drop-path options are named: `local P` (the chance of dropping each join input) and `global R`"
            " (the share of samples that keep one column)"
        )
        return message, named
    if len(words) == 1 and words[0].lower() in ("on", "true", "yes", "enabled", "default", "paper"):
        return "drop-path is on unless `droppath off` says otherwise", "local 0.15 global 0.5"
    if len(words) == 1 and words[0].lower() in ("none", "false", "no", "disabled", "0", "off"):
        return "drop-path is turned off with `droppath off`", "off"
    return None


def _statement_habits(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    """Commas between blocks; ``name=value`` in droppath; a network name with a '-'."""
    if tok.type == "$END":
        return None
    found = _statement(text, tok.start_pos)
    if found is None:
        return None
    keyword, start, end = found
    if tok.start_pos < start:  # the keyword itself is unexpected: the mistake is before the statement
        return None
    body = text[start:end]
    span = Span.from_token(tok)
    if str(tok) in (":", "=") and body.lstrip().startswith(str(tok)) and keyword not in ("network", "droppath"):
        rewritten = " ".join(body.lstrip()[1:].split())  # `columns: 3`, `classes = 10`
        return Diagnostic(
            span,
            f"unexpected {str(tok)!r}: a statement is its keyword, then its value",
            hint=f"statements take no {str(tok)!r}: write `{keyword} {rewritten}`",
            fix=Fix(_span(text, start, end), " " + rewritten),
        )
    if keyword == "input":
        return _input_shape(text, tok, start, end)
    number = number_word(body) if keyword in ("columns", "classes") and tok.type == "NAME" else None
    if number is not None:  # `columns four`
        return Diagnostic(
            _span(text, tok.start_pos, end),
            f"`{keyword}` is a number written in digits, not `{' '.join(body.split())}`",
            hint=f"write `{keyword} {number}`",
            fix=Fix(_span(text, start, end), f" {number}"),
        )
    whole = re.fullmatch(r"\s*([0-9]+)\.0*\s*", body)
    if keyword in ("columns", "classes") and whole:  # `columns 3.0`
        return Diagnostic(
            span,
            f"`{keyword}` is a whole number",
            hint=f"write `{keyword} {int(whole.group(1))}`",
            fix=Fix(_span(text, start, end), f" {int(whole.group(1))}"),
        )
    tuples = _block_tuples(body) if keyword == "blocks" and str(tok) in (":", "{", ")") else None
    in_tuple = keyword == "blocks" and _depth(text[start : tok.start_pos]) > 0
    if tuples is None and in_tuple and tok.type in ("NUMBER", "SIGNED_NUMBER", "NAME"):  # `(16 0.1)`
        spaced = re.sub(r"\(([^()]*)\)", lambda m: "(" + ", ".join(_split(m.group(1), ",")[0].split()) + ")", body)
        tuples = ("the values in a block are separated by ','", " ".join(spaced.split())) if "," not in body else None
    if tuples is not None:
        message, rewritten = tuples
        return Diagnostic(
            span, message, hint=f"write `blocks {rewritten}`", fix=Fix(_span(text, start, end), " " + rewritten)
        )
    if keyword == "blocks" and str(tok) in (",", ";", "["):
        listed = body.strip()
        if listed.startswith("[") and _closing(listed, 0) == len(listed) - 1:  # a Python list
            listed = listed[1:-1]
        listed = re.sub(r"\[([^\[\]]*)\]", r"(\1)", listed)  # its items, `[16, 0.1]`, are tuples
        rewritten = " ".join(q.strip() for p in _split(listed, ",") for q in _split(p, ";") if q.strip())
        rewritten = " ".join(rewritten.split())  # one line, however many the statement took
        return Diagnostic(
            span,
            "blocks are separated by spaces, not written as a list"
            if str(tok) == "["
            else f"blocks are separated by spaces, not {str(tok)!r}",
            hint=f"one block after another: write `blocks {rewritten}`",
            fix=Fix(_span(text, start, end), " " + rewritten),
        )
    if keyword == "droppath":
        words = re.sub(r"[=:,()]", " ", body).split()
        rewritten = " ".join(words)
        bare = _bare_droppath(words)
        if bare is not None:  # `droppath 0.15 0.5`, `droppath on`, `droppath none`
            message, rewritten = bare
            return Diagnostic(
                span, message, hint=f"write `droppath {rewritten}`", fix=Fix(_span(text, start, end), " " + rewritten)
            )
        if not re.fullmatch(rf"{_DP_OPTION}( {_DP_OPTION})*", rewritten):
            return None
        return Diagnostic(
            span,
            f"unexpected {str(tok)!r}: drop-path options are a word and a value, without '=' or ','",
            hint=f"each option word, then its value: write `droppath {rewritten}`",
            fix=Fix(_span(text, start, end), " " + rewritten),
        )
    if keyword == "network" and expected in (["'{'"], ["a name"]):
        end = text.find("{", start)
        line_end = _code_line(text, start)[1]
        end = line_end if end < 0 or end > line_end else end
        written = text[start:end].strip()
        plain = "".join(c for c in unicodedata.normalize("NFKD", written) if not unicodedata.combining(c))
        name = re.sub(r"[^A-Za-z0-9_]+", "_", plain).strip("_") or "net"
        name = "net_" + name if name[0].isdigit() else name
        at = start + text[start:end].index(written) if written else start
        if not written:  # `network {`
            return Diagnostic(
                span,
                "a network needs a name: `network NAME {`",
                hint="write `network net {`",
                fix=Fix(_span(text, start, start), " net"),
            )
        extra = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=|:|\(\s*\)|\(.*\)\s*:?)", written)
        if extra:  # `network tiny = {`, `network tiny() {`, `network tiny(nn.Module):`
            return Diagnostic(
                _span(text, at + extra.start(2), at + len(written)),
                f"unexpected `{extra.group(2)}`: the network's name is followed by its body in braces",
                hint=f"write `network {extra.group(1)} {{`",
                fix=Fix(_span(text, at, at + len(written)), extra.group(1)),
            )
        return Diagnostic(
            _span(text, at, at + len(written)) if written else span,
            f"`{written}` cannot name a network: a name is letters, digits and '_', and does not start with a digit",
            hint=f"join words with '_': write `network {name} {{`",
            fix=Fix(_span(text, at, at + len(written)), name) if written else None,
        )
    return None


def _plus_between_parts(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    if str(tok) != "+" or "'.'" not in expected:
        return None
    hint = "parts are composed with '.' (`a . b`: a, then b) and joined with `join(a, b)`"
    right = _right_side(text, tok.start_pos)
    if right is not None:
        start, end, left = right
        parts = [" ".join(p.split()) for p in _split(_uncommented(text)[start:end], "+")]
        if len(parts) > 1 and all(parts):
            rewritten = f"join({', '.join(parts)})"
            return Diagnostic(
                Span.from_token(tok),
                "unexpected '+': fractal-dsl joins branches with `join(...)`",
                hint=f"{hint}: write `{left} = {rewritten}` to join them",
                fix=Fix(_span(text, start, end), rewritten),
            )
    return Diagnostic(Span.from_token(tok), f"unexpected {str(tok)!r}", hint=hint)


_OTHER_COMPOSITIONS = ("->", ">>", "|>", "|", "*", "\u2218", "\u00b7", "\u2192", "@", ";")  # F#, shell, maths, C


def code_after(text: str, pos: int) -> bool:
    """Whether code follows ``pos`` on its line (a comment is not code)."""
    end = text.find("\n", pos)
    return bool(text[pos : len(text) if end < 0 else end].split("#", 1)[0].strip())


def _semicolon_separator(text: str, tok: Token) -> Diagnostic:
    """``join = mean; pool = maxpool(2)``: two definitions on one line, as in C or Python."""
    line_start = text.rfind("\n", 0, tok.start_pos) + 1
    indent = re.match(r"[ \t]*", text[line_start:]).group()
    after = len(text[tok.start_pos + 1 :]) - len(text[tok.start_pos + 1 :].lstrip(" \t"))
    return Diagnostic(
        Span(tok.line, tok.column, tok.line, tok.column + 1),
        "definitions are separated by line breaks, not ';'",
        hint="put each statement and key entry on its own line",
        fix=Fix(_span(text, tok.start_pos, tok.start_pos + 1 + after), "\n" + indent),
    )


def _other_composition(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    """``conv -> relu``, ``conv >> relu``, ``conv | relu``, ``f[C] * f[C]``, ``f ∘ g``."""
    if tok.type == "$END" or "'.'" not in expected:
        return None
    op = next((o for o in _OTHER_COMPOSITIONS if text.startswith(o, tok.start_pos)), None)
    if op is None:
        return None
    if op == ";" and not code_after(text, tok.start_pos + 1):
        return None  # `join = mean;` ends a line: a statement's ';', not a composition
    if op == ";" and _NEXT_DEFINITION.match(text[tok.start_pos + 1 :].lstrip(" \t")):
        return _semicolon_separator(text, tok)  # `join = mean; pool = maxpool(2)`
    at = Span(tok.line, tok.column, tok.line, tok.column + len(op))
    # every `op` after it on the line, outside brackets: `a -> b -> c` is one mistake, one fix
    line_end = text.find("\n", tok.start_pos)
    rest = text[tok.start_pos : len(text) if line_end < 0 else line_end].split("#", 1)[0]
    depth, cut, out, i = 0, len(op), [], 0
    while i < len(rest):
        if depth == 0 and rest.startswith(op, i):
            out.append(" . ")
            i += len(op)
            cut = i
            continue
        depth += (rest[i] in _OPEN) - (rest[i] in _CLOSE)
        out.append(rest[i])
        i += 1
    fixed = "".join(out)
    fixed_part = fixed[: len(fixed) - (len(rest) - cut)]
    fix = Fix(Span(tok.line, tok.column, tok.line, tok.column + cut), re.sub(r"(?<=\S) {2,}(?=\S)", " ", fixed_part))
    trimmed = fix.text.lstrip(" ") if text[tok.start_pos - 1 : tok.start_pos] == " " else fix.text
    trimmed = trimmed.rstrip(" ") if text[tok.start_pos + cut : tok.start_pos + cut + 1] == " " else trimmed
    fix = Fix(fix.span, trimmed)
    before = text[text.rfind("\n", 0, tok.start_pos) + 1 : tok.start_pos]
    shown = " ".join((before.split("=", 1)[-1] + fixed).split())
    return Diagnostic(
        at,
        f"layers are composed with '.', not `{op}`",
        hint=f"data flows left to right through `a . b`: write `{shown}`",
        fix=fix,
    )


def _block_comment(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    """``/* ... */``, as in C, Java or CSS: fixed to ``# ...`` on each of its lines where
    nothing but the comment follows its ``*/``."""
    if tok.type == "$END":
        return None
    at = next((p for p in (tok.start_pos, tok.start_pos - 1) if p >= 0 and text.startswith("/*", p)), None)
    if at is None:
        return None
    close = text.find("*/", at + 2)
    line_end = text.find("\n", max(close, at))
    line_end = len(text) if line_end < 0 else line_end
    message = "comments start with '#', not '/*'"
    if close < 0 or text[close + 2 : line_end].strip():  # never closed, or code after it
        hint = "a comment runs from '#' to the end of its line: start each line of it with '#'"
        return Diagnostic(_span(text, at, at + 2), message, hint=hint)
    lines = text[at + 2 : close].split("\n")
    rewritten = "\n".join(
        re.match(r"\s*", ln).group() * (i > 0) + " ".join(["#", *ln.strip().lstrip("*").split()])
        for i, ln in enumerate(lines)
    )  # a Javadoc-style ` * ` that starts a line goes
    how = f"write `{rewritten}`" if len(lines) == 1 else f"start each of its {len(lines)} lines with '#'"
    return Diagnostic(
        _span(text, at, at + 2),
        message,
        hint=f"a comment runs from '#' to the end of its line: {how}",
        fix=Fix(_span(text, at, close + 2), rewritten),
    )


def _unnamed_join(text: str, tok: Token, expected: list[str]) -> Diagnostic | None:
    """``f[C+1] = (f[C] . f[C], conv)``: branches in bare parentheses, as a tuple."""
    if tok.type != "COMMA" or "')'" not in expected or _right_side(text, tok.start_pos) is None:
        return None
    start = _right_side(text, tok.start_pos)[0]
    depth, opened = 0, None
    for i in range(tok.start_pos - 1, start - 1, -1):  # the '(' this ',' is inside
        depth += (text[i] in _CLOSE) - (text[i] in _OPEN)
        if depth < 0:
            opened = i
            break
    if opened is None or text[opened] != "(" or re.search(r"[A-Za-z0-9_\]]\s*$", text[:opened]):
        return None  # a call's arguments, or not in brackets
    if _depth(text[start:opened]) > 0:
        return None  # inside a call: `conv(c, kernel=(3, 3))`
    at = _span(text, opened, opened)
    return Diagnostic(
        Span.from_token(tok),
        "branches side by side are a join: `join(a, b)`",
        hint="write `join` before the '('",
        fix=Fix(at, "join"),
    )


_RECOGNISERS: tuple[Callable[[str, Token, list[str]], Diagnostic | None], ...] = (
    _block_comment,
    _unnamed_join,
    _comma_composition,
    _other_composition,
    _nested_call,
    _statement_habits,
    _plus_between_parts,
)


def recognise(source: Source, tok: Token, expected: list[str]) -> Diagnostic | None:
    """The habit a syntax error at ``tok`` shows, if one is recognised."""
    for recogniser in _RECOGNISERS:
        diag = recogniser(source.text, tok, expected)
        if diag is not None:
            return _checked(source, diag)
    return None


# ---- Python-style blocks -------------------------------------------------------------------


def python_style(source: Source) -> Diagnostic | None:
    """``network t:`` or ``key:`` with indented lines: one error, with the program rewritten
    with braces (closed where the indentation ends)."""
    lines = source.text.split("\n")
    colon = None
    out: list[str] = []
    stack: list[int] = []  # indentation of the lines that opened a block with ':'
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0].rstrip()
        indent = len(line) - len(line.lstrip())
        while code.strip() and stack and indent <= stack[-1]:
            out.append(" " * stack.pop() + "}")
        if re.match(r"\s*(network\b.*|key)\s*:$", code):
            colon = colon or (i + 1, len(code))
            stack.append(indent)
            line = code[:-1].rstrip() + " {" + line[len(code) :]
        out.append(line)
    if colon is None:
        return None
    while out and not out[-1].strip():
        out.pop()
    out.extend(" " * indent + "}" for indent in reversed(stack))
    fixed = "\n".join(out) + ("\n" if source.text.endswith("\n") else "")
    last = len(lines)
    whole = Span(1, 1, last, len(lines[-1]) + 1)
    line, col = colon
    opened = out[line - 1].split("#", 1)[0].strip()  # nothing is inserted before the first ':' line
    return _checked(
        source,
        Diagnostic(
            Span.point(line, col),
            "fractal-dsl groups statements with braces, not ':' and indentation",
            hint=f"a block opens with '{{' and closes with '}}': write `{opened}` and close it where its lines end"
            + ("" if opened.startswith("key") else " (the same for `key {`)"),
            fix=Fix(whole, fixed),
        ),
    )


# ---- YAML-style files ----------------------------------------------------------------------

_YAML_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)\s*:(?:\s+(.*))?")
_YAML_STATEMENTS = ("input", "classes", "columns", "blocks", "droppath", "init")


def _yaml_value(value: str) -> str:
    """A YAML value as a statement's: a list ``[16, 32]`` as ``16 32``, ``[[16, 0.1], [32, 0.2]]``
    as ``(16, 0.1) (32, 0.2)``."""
    value = value.strip()
    if not (value.startswith("[") and value.endswith("]")):
        return value
    items = [i.strip() for i in _split(value[1:-1], ",") if i.strip()]
    return " ".join(f"({i[1:-1]})" if i.startswith("[") and i.endswith("]") else i for i in items)


def yaml_style(source: Source) -> Diagnostic | None:
    """A file written as YAML, ``network: tiny`` and ``columns: 3`` lines without braces: one
    error at the first such line that says what a program looks like, with the program
    rewritten (``network tiny {``, ``columns 3``, ``key: `` entries inside ``key {``, ``}``)
    where that parses."""
    lines = source.text.split("\n")
    code = [line.split("#", 1)[0].rstrip() for line in lines]
    if any("{" in c for c in code):
        return None
    keyed = [(i, m) for i, c in enumerate(code) if (m := _YAML_LINE.fullmatch(c.strip()))]
    first = next((i for i, c in enumerate(code) if c.strip()), None)
    if not keyed or keyed[0][0] != first or (len(keyed) < 2 and keyed[0][1].group(1) != "network"):
        return None
    line = keyed[0][0]
    col = code[line].index(":") + 1
    out: list[str] = []
    key_indent = None  # the indentation of the `key:` line while its entries are being read
    name = None
    for c, whole in zip(code, lines):
        indent = len(c) - len(c.lstrip())
        stripped = c.strip()
        if key_indent is not None and stripped and indent <= key_indent:
            out.append("  }")
            key_indent = None
        entry = _YAML_LINE.fullmatch(stripped)
        word, value = (entry.group(1), entry.group(2) or "") if entry else (None, "")
        if not stripped:
            out.append("")
        elif word == "network" and name is None:
            name = value.strip()
            out.append(f"network {name} {{")
        elif word == "key" and not value:
            out.append("  key {")
            key_indent = indent
        elif key_indent is not None:
            left, colon, right = stripped.partition(":")  # `conv(c): conv3x3(c) . relu`, `join: mean`
            out.append(f"    {left.strip()} = {right.strip()}" if colon and "=" not in left else "    " + stripped)
        elif word in _YAML_STATEMENTS:
            out.append(f"  {word} {_yaml_value(value)}")
        else:
            out.append("  " + stripped)
        comment = whole[len(c) :].rstrip("\r")
        if comment.strip():  # kept after the line's rewrite, or alone
            out[-1] = out[-1] + comment if out[-1].strip() else comment.strip()
    if key_indent is not None:
        out.append("  }")
    while out and not out[-1]:
        out.pop()
    hint = "e.g. `columns 3` and `key { conv(c) = conv3x3(c) . relu }`"
    fix = None
    if name:
        fixed = "\n".join([*out, "}"]) + ("\n" if source.text.endswith("\n") else "")
        fix = Fix(Span(1, 1, len(lines), len(lines[-1]) + 1), fixed)
        hint += f": write `network {name} {{`, the lines below it without ':', and `}}` at the end"
    return _checked(
        source,
        Diagnostic(
            Span.point(line + 1, col),
            "fractal-dsl is not YAML: a program is `network NAME { ... }`, each statement a keyword and its value",
            hint=hint,
            fix=fix,
        ),
    )


# ---- PyTorch and Keras layers ----------------------------------------------------------------

_KERNEL_NAMES = ("kernel_size", "kernel")


def foreign_layer(call, text_of: Callable[[Span], str], channels: str | None) -> tuple[str, str] | None:
    """The ``.fdsl`` spelling of a PyTorch or Keras layer written as in Python
    (``Conv2d(64, 3)``, ``BatchNorm2d(64)``, ``MaxPool2d(2)``, ``Linear(512, 10)``), and a
    note on what changed; None for any other name.  ``channels`` is a parameter of the key
    entry the call is in that nothing uses: the channels it was most likely meant for."""
    name = call.name.lower()
    pos = [text_of(a.value.span) for a in call.args if a.name is None]
    kw = {a.name: text_of(a.value.span) for a in call.args if a.name is not None}
    if name in ("conv2d", "convolution2d"):
        # PyTorch: (in, out, kernel); Keras: (filters, kernel)
        out, kernel = (pos[1], pos[2] if len(pos) > 2 else None) if len(pos) > 2 else (pos + [None, None])[:2]
        out = kw.get("out_channels", kw.get("filters", out))
        kernel = next((kw[k] for k in _KERNEL_NAMES if k in kw), kernel) or "3"
        if out is None:
            return None
        note = " (input channels are inferred)"
        if channels is not None and out != channels:
            note = f" (input channels are inferred; `{channels}` takes each block's channels where `{out}` was written)"
            out = channels
        extra = [f"{k}={v}" for k, v in kw.items() if k in ("stride", "padding", "bias", "groups", "dilation")]
        if kernel in ("1", "3", "5", "7"):
            return f"conv{kernel}x{kernel}({', '.join([out, *extra])})", note
        return f"conv({', '.join([out, f'kernel={kernel}', *extra])})", note
    if name in ("batchnorm2d", "batchnormalization"):
        return "batchnorm", " (its channels are inferred)"
    if name in ("maxpool2d", "maxpooling2d", "avgpool2d", "averagepooling2d"):
        size = pos[0] if pos else next((kw[k] for k in ("kernel_size", "pool_size") if k in kw), "2")
        return f"{'max' if name.startswith('max') else 'avg'}pool({size})", ""
    if name in ("adaptiveavgpool2d", "adaptiveavgpool", "adaptive_avg_pool2d", "globalaveragepooling2d", "globalpool"):
        return "gap", " (global average pooling to 1x1)"
    if name == "swish":
        return "silu", " (swish is SiLU)"
    if name in ("dense", "fc") or (name == "linear" and call.name != name):
        last = name in ("linear", "fc")  # PyTorch's (in, out): the last; Keras' units: the first
        features = pos[-1] if last and pos else pos[0] if pos else kw.get("units", kw.get("out_features"))
        return (f"linear({features})", " (input features are inferred)") if features else None
    return None
