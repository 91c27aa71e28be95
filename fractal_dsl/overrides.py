"""``--set NAME=VALUE``: the numbers a researcher sweeps, changed without editing the file.

A setting is applied to the **source text**: the parsed :class:`~fractal_dsl.syntax.Program`
says where each value is written (its span), the new value is written there (or added
where the program leaves it out), and the edited text goes through the usual pipeline, so
every check, diagnostic and budget applies to it unchanged and "the program as run" is a
real program (:func:`program_as_run`, what a run folder keeps as ``program.fdsl``).

The names (docs/LANGUAGE.md, "Changing values: --set"):

==================  ======================================================
``columns``         ``columns C``
``classes``         ``classes N``
``input``           ``input CxHxW``
``init``            ``init xavier|kaiming|torch``
``droppath.local``  drop-path's local drop rate
``droppath.global`` drop-path's share of globally sampled batches
``droppath.per``    ``batch`` or ``sample``
``NAME``            the block value ``NAME`` (``c``, ``p``, ...) in every block
``blockN.NAME``     the block value ``NAME`` in block N only (1-based)
``ENTRY.PARAM``     the default of parameter ``PARAM`` of key entry ``ENTRY``
==================  ======================================================

A bad name or value is a :class:`SetError`, a :class:`~fractal_dsl.errors.FractalError`
shown as ``--set NAME: error: ...`` (a setting has no position in a file), with a
"did you mean" hint where a known name is close.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import Diagnostic, FractalError, Source, Span, UsageError, braces, cut, quoted
from .habits import number_word
from .syntax import INIT_HABITS, INIT_SCHEMES, MAX_LINE_CHARS, Program, parse

STATEMENTS = ("columns", "classes", "input", "init")
DROPPATH = ("droppath.local", "droppath.global", "droppath.per")
_INT = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SHAPE = re.compile(r"[0-9]+(?:x[0-9]+)+")
_BLOCK = re.compile(r"block([0-9]+)\.([A-Za-z_][A-Za-z0-9_]*)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VALUE_WORDS = ("true", "false", "same")  # the names a block value or a default may be set to
MAX_SETTINGS = 64


class SetError(FractalError):
    """Bad ``--set`` names or values (exit 1): each shown as ``--set NAME: error: message``."""

    def __init__(self, problems: list[tuple[str, str, str | None]]) -> None:
        self.problems = problems
        super().__init__(Source("--set", ""), [Diagnostic(Span.point(1, 1), m, hint=h) for _, m, h in problems])

    def format(self) -> str:
        lines = []
        for name, message, hint in self.problems:
            lines.append(f"--set {cut(name)}: error: {message}")
            if hint:
                lines.append(f"    hint: {hint}")
        return "\n".join(lines)

    def show(self) -> str:
        n = len(self.problems)
        return f"{self.format()}\n{n} error{'s' if n != 1 else ''} in --set"


def parse_settings(items: Iterable[str]) -> dict[str, str]:
    """``["columns=4", "c=32"]`` (the command line's ``--set`` values) as a dict; a value
    without ``=`` or a name given twice is a :class:`~fractal_dsl.errors.UsageError` (exit 2)."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):  # `--set columns 4`
            raise UsageError(f"{{set}} {braces(quoted(item))} has no value: write {{set}} {braces(name)}=VALUE", "set")
        if not eq and ":" in item:  # `--set columns:4`
            meant = "=".join(cut(p.strip()) for p in item.partition(":")[::2])
            raise UsageError(
                f"{{set}} {braces(quoted(item))}: write {{set}} {braces(meant)}, with '=' not ':'",
                "set",
            )
        if not eq or not name or not value:
            raise UsageError(f"{{set}} {braces(quoted(item))}: write NAME=VALUE, e.g. {{set}} columns=4", "set")
        if name in out:
            raise UsageError(f"{{set}} {braces(cut(name))} is given twice", "set")
        out[name] = value
    if len(out) > MAX_SETTINGS:
        raise UsageError(f"at most {MAX_SETTINGS} {{set}} values", "set")
    return out


def value_text(value: object) -> str:
    """A Python value as it is written in a program (``4``, ``0.1``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value).strip()


@dataclass(frozen=True)
class _Edit:
    start: int  # character offsets into the text
    end: int
    text: str
    rank: int = 0  # among insertions at one place, the higher rank is written last


def apply(source: Source, settings: Mapping[str, object]) -> Source:
    """``source`` with ``settings`` written in (the same name; unchanged if there are none).

    Raises :class:`SetError` for unknown names or malformed values, and the program's own
    :class:`~fractal_dsl.errors.FractalError` if it does not parse."""
    return apply_traced(source, settings)[0]


def apply_traced(source: Source, settings: Mapping[str, object]) -> tuple[Source, list[tuple[int, int, str]]]:
    """:func:`apply`, and where each setting was written: ``(start, end, name)`` offsets into
    the new text, so a diagnostic there can say that it comes from ``--set NAME``."""
    if not settings:
        return source, []
    given = {str(k): value_text(v) for k, v in settings.items()}
    program = parse(source)
    edits: dict[tuple, _Edit] = {}
    owner: dict[tuple, str] = {}  # the setting each edit writes
    problems: list[tuple[str, str, str | None]] = []
    offsets = _line_offsets(source.text)

    def at(span: Span) -> tuple[int, int]:
        return offsets[span.line - 1] + span.column - 1, offsets[span.end_line - 1] + span.end_column - 1

    settable = names(program)
    # the general settings first, so `block2.c` wins over `c` for block 2
    for name in sorted(given, key=lambda n: _BLOCK.fullmatch(n) is not None):
        text = given[name]
        try:
            for target, edit in _edits(program, name, text, at):
                edits[target], owner[target] = edit, name
        except _Bad as bad:
            hint = bad.hint
            if bad.unknown:
                options = [n for n in DROPPATH if n.startswith(name.lower() + ".")]  # `droppath=0.3`
                hint = (
                    "it has " + ", ".join(f"`{n}`" for n in options)
                    if options
                    else _TRAIN_OPTIONS.get(name.lower().replace("-", "_"))
                    or _suggest(name, settable)
                    or "this program's names: " + ", ".join(settable)
                )
            problems.append((name, bad.message, hint))
    if problems:
        raise SetError(problems)
    droppath = {k[1]: edits.pop(k) for k in list(edits) if k[0] == "droppath"}
    if droppath:
        edits[("droppath",)] = _droppath_edit(program, droppath, at)
    out = source.text
    for edit in sorted(edits.values(), key=lambda e: (e.start, e.end, e.rank), reverse=True):
        out = out[: edit.start] + edit.text + out[edit.end :]
    written, shift = [], 0
    for target, edit in sorted(edits.items(), key=lambda item: (item[1].start, item[1].end, item[1].rank)):
        start = edit.start + shift
        if target == ("droppath",):  # the statement written again: only the options set are the settings'
            for m in re.finditer(r"\b(local|global|per) (\S+)", edit.text):
                if m.group(1) in droppath:
                    written.append((start + m.start(), start + m.end(), f"droppath.{m.group(1)}"))
        else:
            written.append((start, start + len(edit.text), owner[target]))
        shift += len(edit.text) - (edit.end - edit.start)
    _check_lines(out, written)
    return Source(source.name, out), written


def _check_lines(after: str, written: list[tuple[int, int, str]]) -> None:
    """Refuse settings that make a line longer than the language allows (many blocks given a
    long value each): said as ``--set NAME``, not at a line of the program as rewritten."""
    offsets = _line_offsets(after)
    problems = {}
    for i, line in enumerate(after.split("\n")):
        if len(line) > MAX_LINE_CHARS:  # the program's own lines are within the limit: parse() read it
            for start, _, name in written:
                if offsets[i] <= start <= offsets[i] + len(line):
                    problems[name] = (
                        name,
                        f"written in, the values make line {i + 1} {len(line):,} characters long; "
                        f"the limit is {MAX_LINE_CHARS:,}",
                        "give a shorter value",
                    )
    if problems:
        raise SetError(list(problems.values()))


def program_as_run(text: str, name: str = "<string>") -> str:
    """``text`` laid out by ``fmt`` (the canonical style), as a run folder keeps it."""
    from .fmt import format_text

    try:
        return format_text(text, name)
    except FractalError:  # cannot happen for a program that loaded; keep the text as it is then
        return text


def names(program: Program) -> list[str]:
    """Every name ``--set`` accepts for ``program`` (block-specific ones for its first block
    only, as an example), for suggestions and docs."""
    out = [*STATEMENTS, *DROPPATH]
    block_names = _block_value_names(program)
    out += block_names
    out += [f"block1.{n}" for n in block_names]
    out += [f"{d.name}.{p}" for d in program.key for p, _ in d.defaults]
    return out


class _Bad(Exception):
    def __init__(self, message: str, hint: str | None = None, unknown: bool = False) -> None:
        super().__init__(message)
        self.message, self.hint, self.unknown = message, hint, unknown


def _suggest(name: str, settable: list[str]) -> str | None:
    """The known name closest to ``name``, its letter case aside; a ``blockN.`` name is
    matched against the names of block N (``settable`` gives block 1's as the example)."""
    m = _BLOCK.fullmatch(name)
    if m:
        settable = [f"block{m.group(1)}.{n.partition('.')[2]}" if n.startswith("block1.") else n for n in settable]
    known = {n.lower(): n for n in settable}
    close = difflib.get_close_matches(name.lower(), list(known), n=1)
    return f"did you mean `{known[close[0]]}`?" if close else None


def _line_offsets(text: str) -> list[int]:
    offsets, pos = [0], 0
    for line in text.split("\n"):
        pos += len(line) + 1
        offsets.append(pos)
    return offsets


def _block_value_names(program: Program) -> list[str]:
    from .binding import value_names

    key = {}
    for d in program.key:
        key.setdefault(d.name, d)
    return value_names(program, key)


_MAX_DIGITS = 100


# what training takes on its command line, not in the program: `--set lr=0.1`
_TRAIN_OPTIONS = {
    n: f"`{n}` is not in the program: it is `fractal-dsl train`'s option --{flag}"
    for n, flag in {
        "lr": "lr",
        "learning_rate": "lr",
        "epochs": "epochs",
        "batch_size": "batch-size",
        "optimizer": "optimizer",
        "schedule": "schedule",
        "data": "data",
        "dataset": "data",
        "seed": "seed",
    }.items()
}


def _value_hint(name: str, text: str, kind: str) -> str | None:
    """What a malformed value most likely meant: `4` for `4.0`, `0.15` for `15%`, `1x28x28`
    for `(1, 28, 28)`, one block each for `16,32,64`."""
    if kind == "int" and re.fullmatch(r"[0-9]+\.0*", text):
        return f"a whole number: did you mean `{int(float(text))}`?"
    if kind in ("number", "value") and re.fullmatch(r"[0-9]+(\.[0-9]+)?%", text):
        return f"a fraction, not a percentage: did you mean `{float(text[:-1]) / 100:g}`?"
    if kind == "shape" and len(dims := re.findall(r"[0-9]+", text)) == 3 and re.fullmatch(r"[\s()\[\],xX*0-9]+", text):
        return f"did you mean `{'x'.join(dims)}`?"
    items = [i for i in re.split(r"[\s,]+", text.strip("[]()")) if i]
    if kind == "value" and len(items) > 1 and "." not in name:  # not `block2.c`, nor `conv.p`
        each = " ".join(f"--set block{b}.{cut(name, 40)}={cut(v, 20)}" for b, v in enumerate(items[:4], start=1))
        return f"NAME=VALUE sets one value in every block; each block its own: {each}"
    return None


def _check(name: str, text: str, kind: str) -> str:
    """``text`` if it is a well-formed ``kind`` (so nothing else can be written into the
    program through a setting); else :class:`_Bad`."""
    if kind in ("number", "value") and len(text) > _MAX_DIGITS:  # a number that long is never meant
        raise _Bad(f"expected a number of at most {_MAX_DIGITS} characters, got {len(text):,} characters")
    spelt = number_word(text) if kind in ("int", "number", "value") else None
    digits = f"numbers are written in digits: did you mean `{spelt}`?" if spelt is not None else None  # `four`
    if kind == "int":
        if not _INT.fullmatch(text):
            raise _Bad(f"expected a whole number, got {quoted(text)}", digits or _value_hint(name, text, kind))
        if len(text) > _MAX_DIGITS:  # int() refuses past 4,300 digits; no setting needs a tenth of that
            raise _Bad(f"expected a whole number of at most {_MAX_DIGITS} digits, got {len(text):,} characters")
        return str(int(text))
    if kind == "number":
        if not _NUMBER.fullmatch(text):
            raise _Bad(f"expected a number, got {quoted(text)}", digits or _value_hint(name, text, kind))
        return text.lstrip("+")
    if kind == "shape":
        if not _SHAPE.fullmatch(text):
            raise _Bad(
                f"expected an image shape CxHxW such as 3x32x32, got {quoted(text)}", _value_hint(name, text, kind)
            )
        return text
    if kind == "value":  # a block value or a default: a number, true, false or same
        if _NUMBER.fullmatch(text):
            return text.lstrip("+")
        if text in VALUE_WORDS:
            return text
        raise _Bad(
            f"expected a number (or true, false, same), got {quoted(text)}", digits or _value_hint(name, text, kind)
        )
    choices = {"init": INIT_SCHEMES, "per": ("batch", "sample")}[kind]
    if text not in choices:
        close = [INIT_HABITS[text.lower()]] if kind == "init" and text.lower() in INIT_HABITS else []
        close = close or difflib.get_close_matches(text.lower(), choices, n=1)
        hint = f"did you mean `{close[0]}`?" if close else "use " + ", ".join(f"`{c}`" for c in choices)
        raise _Bad(f"expected one of {', '.join(choices)}, got {quoted(text)}", hint)
    return text


def _insert_before_end(program: Program, at, line: str) -> _Edit:
    """A new statement on its own line before the network's closing ``}``."""
    _, end = at(program.span)
    return _Edit(end - 1, end - 1, f"  {line}\n")


def _edits(program: Program, name: str, text: str, at):
    """(target, edit) pairs that set ``name`` to ``text`` in ``program``."""
    if name in STATEMENTS:
        kind = {"columns": "int", "classes": "int", "input": "shape", "init": "init"}[name]
        value = _check(name, text, kind)
        found = getattr(program, "input_shape" if name == "input" else name)
        if found is None:
            yield (name,), _insert_before_end(program, at, f"{name} {value}")
            return
        start, end = at(found[1])
        if name != "init":  # the span is the statement's: `columns 3`
            value = f"{name} {value}"
        yield (name,), _Edit(start, end, value)
        return
    if name in DROPPATH:
        option = name.split(".")[1]
        yield ("droppath", option), _check(name, text, "per" if option == "per" else "number")
        return
    m = _BLOCK.fullmatch(name)
    if m:
        yield from _block_edits(program, m.group(2), text, at, int(m.group(1)))
        return
    entry, dot, param = name.partition(".")
    if dot:
        yield from _default_edit(program, entry, param, text, at)
        return
    if not _NAME.fullmatch(name):
        raise _Bad("not a name that --set knows", unknown=True)
    yield from _block_edits(program, name, text, at, None)


def _droppath_edit(program: Program, options: dict[str, str], at) -> _Edit:
    """The ``droppath`` statement written again with ``options`` changed (or added)."""
    dp = program.droppath
    got: dict[str, object] = {"local": None, "global": None, "per": None}
    if dp is not None:
        got = {"local": dp.local, "global": dp.global_, "per": dp.per}
    got = {k: options.get(k, None if v is None else v if isinstance(v, str) else repr(v)) for k, v in got.items()}
    # a setting turns drop-path on: `droppath off` with a `local` would be refused as contradictory
    statement = " ".join(["droppath"] + [f"{k} {v}" for k, v in got.items() if v is not None])
    if dp is None:
        return _insert_before_end(program, at, statement)
    start, end = at(dp.span)
    return _Edit(start, end, statement)


def _block_edits(program: Program, name: str, text: str, at, only: int | None):
    settable = _block_value_names(program)
    if name not in settable:
        raise _Bad(
            f"`{name}` is not a block value of this program" if only is not None else "unknown name", unknown=True
        )
    if program.blocks is None:
        raise _Bad("the program has no `blocks` statement to set it in")
    blocks = program.blocks[0]
    if only is not None and not 1 <= only <= len(blocks):
        raise _Bad(f"the program has blocks 1..{len(blocks)}, not block {only}")
    value = _check(name if only is None else f"block{only}.{name}", text, "value")
    for b, spec in enumerate(blocks, start=1):
        if only is not None and b != only:
            continue
        positional = [v for n, v in spec.entries if n is None]
        found = dict(zip(settable, positional))
        found.update({n: v for n, v in spec.entries if n is not None})
        if name in found:
            start, end = at(found[name].span)
            yield (b, name), _Edit(start, end, value)
            continue
        start, end = at(spec.span)
        if not _slice(program, start, end).startswith("("):  # a bare value `64` becomes `(64, p=0.1)`
            yield (b, "("), _Edit(start, start, "(")
            yield (b, ")"), _Edit(end, end, ")", rank=1)
        else:  # before the tuple's `)`
            end -= 1
        yield (b, name, "add"), _Edit(end, end, f", {name}={value}")


def _slice(program: Program, start: int, end: int) -> str:
    return program.source.text[start:end]


def _default_edit(program: Program, entry: str, param: str, text: str, at):
    defs = [d for d in program.key if d.name == entry]
    if not defs:
        raise _Bad("unknown name" + (f": no key entry `{entry}`" if entry != "droppath" else ""), unknown=True)
    d = defs[0]
    defaults = dict(d.defaults)
    if param not in defaults:
        if param in d.params:
            raise _Bad(
                f"parameter `{param}` of `{entry}` has no default in the program",
                f"--set {param}=VALUE sets the block value `{param}` in every block",
            )
        close = difflib.get_close_matches(param, list(d.params), n=1)
        hint = f"did you mean `{entry}.{close[0]}`?" if close else None
        raise _Bad(f"`{entry}` has no parameter `{param}`", hint, unknown=not close)
    value = _check(f"{entry}.{param}", text, "value")
    start, end = at(defaults[param].span)
    yield (entry, param), _Edit(start, end, value)
