"""Source spans, diagnostics, and the one error hierarchy.

Every error fractal-dsl raises for a user to read is an :class:`Error`, which knows its
exit code and how it shows itself; the CLI catches :class:`Error` once and prints
:meth:`Error.show`:

* :class:`FractalError` (exit 1): an invalid program.  Every problem is a
  :class:`Diagnostic` with a :class:`Span`; a stage raises one FractalError holding all of
  them, so a user sees every mistake in a file at once, each as::

      FILE:LINE:COL: error: message
          source line
          ^~~~~

* :class:`UsageError` (exit 2): a value that does not fit the network or the other
  options (``block`` 9 of a 5-block network).  The library names the option as a
  parameter (`` `block` ``), the CLI as a flag (``--block``).
* :class:`RunError` (exit 1): the work itself failed (``dot`` failed, a file could not be
  written, a training run diverged).
* :class:`Interrupted` (exit 130): stopped by Ctrl-C or SIGTERM, cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_MAX_SHOWN_LINE = 120


@dataclass(frozen=True, order=True)
class Span:
    """A region of a source file; lines and columns are 1-based, ``end_*`` exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def point(cls, line: int, column: int) -> Span:
        return cls(line, column, line, column + 1)

    @classmethod
    def from_meta(cls, meta) -> Span:
        """The span of a lark tree node built with ``propagate_positions``."""
        if getattr(meta, "empty", True):
            return cls.point(1, 1)
        return cls(meta.line, meta.column, meta.end_line, meta.end_column)

    @classmethod
    def from_token(cls, token) -> Span:
        return cls(token.line, token.column, token.end_line, token.end_column)


@dataclass(frozen=True)
class Fix:
    """A suggested spelling, machine-readable: replace the text of ``span`` with ``text``.
    A hint that suggests a spelling carries one, and following it must not lead to another
    error (tests/test_language_fixes.py applies every fix in the bad-program corpus)."""

    span: Span
    text: str

    def apply(self, source_text: str) -> str:
        """``source_text`` with this fix applied."""
        start, end = (
            _offset(source_text, self.span.line, self.span.column),
            _offset(source_text, self.span.end_line, self.span.end_column),
        )
        return source_text[:start] + self.text + source_text[end:]


@dataclass(frozen=True)
class Diagnostic:
    """One problem: where it is, what it is, and optionally what to do about it (``hint``,
    and ``fix`` when the hint suggests a spelling)."""

    span: Span
    message: str
    severity: str = "error"
    hint: str | None = None
    fix: Fix | None = None
    positioned: bool = True  # False: about the file as a whole (it cannot be read), shown without line:column

    def format(self, source: Source) -> str:
        where = f"{source.name}:{self.span.line}:{self.span.column}" if self.positioned else source.name
        lines = [f"{where}: {self.severity}: {self.message}"]
        text = source.line_text(self.span.line)
        if text is not None and source.text and self.positioned:  # an empty file has no line to show
            shown, caret_at = _clip(text, self.span.column - 1)
            width = 1
            if self.span.end_line == self.span.line:
                width = max(1, self.span.end_column - self.span.column)
            width = min(width, max(1, len(shown) - caret_at))
            lines.append("    " + shown)
            lines.append("    " + " " * caret_at + "^" + "~" * (width - 1))
        if self.hint:
            lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)


def _offset(text: str, line: int, column: int) -> int:
    """The character offset in ``text`` of 1-based ``line`` and ``column``."""
    lines = text.split("\n")
    return sum(len(ln) + 1 for ln in lines[: line - 1]) + column - 1


def _clip(text: str, col: int) -> tuple[str, int]:
    """Show at most ``_MAX_SHOWN_LINE`` characters of a line, around column ``col``."""
    text = text.replace("\t", " ")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(text) <= _MAX_SHOWN_LINE:
        return text, min(col, len(text))
    start = max(0, min(col - _MAX_SHOWN_LINE // 2, len(text) - _MAX_SHOWN_LINE))
    clipped = text[start : start + _MAX_SHOWN_LINE]
    prefix = "..." if start else ""
    return prefix + clipped, len(prefix) + col - start


@dataclass(frozen=True)
class Source:
    """The text of one ``.fdsl`` file and the name it is reported under."""

    name: str
    text: str
    _lines: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lines", tuple(self.text.split("\n")))

    def text_of(self, span: Span) -> str:
        """The source text ``span`` covers."""
        start = _offset(self.text, span.line, span.column)
        return self.text[start : _offset(self.text, span.end_line, span.end_column)]

    def line_text(self, line: int) -> str | None:
        if 1 <= line <= len(self._lines):
            return self._lines[line - 1].rstrip("\r")
        return None


class Error(Exception):
    """Base of every error meant for the user: ``exit_code`` and :meth:`show` say how the
    CLI ends and what it prints (on standard error).

    ``message`` may hold ``{name}`` for each of ``options``, the parameters it is about:
    ``str()`` shows them as `` `name` `` (the library's word), :meth:`show` as the flag
    ``--name`` (the CLI's); with options, other braces in the message are doubled (see
    :func:`braces`)."""

    exit_code = 1

    def __init__(self, message: str = "", *options: str) -> None:
        self.template, self.options = message, options
        super().__init__(self._fill(lambda o: f"`{o}`"))

    def _fill(self, name) -> str:
        if not self.options:
            return self.template
        return self.template.format(**{o: name(o) for o in self.options})

    def show(self) -> str:
        return "error: " + self._fill(lambda o: "--" + o.replace("_", "-"))


class RunError(Error):
    """The work failed (a tool failed, a file could not be written, a run diverged): exit 1."""


class Interrupted(Error):
    """Stopped by Ctrl-C (SIGINT) or SIGTERM at a safe point: exit 130."""

    exit_code = 130

    def show(self) -> str:
        return self._fill(lambda o: "--" + o.replace("_", "-"))


class UsageError(Error):
    """A value that does not fit the network or the other options (exit 2), one rule for
    every command: ``render --column 9`` of a 3-column network, ``eval --column 4``, an
    unknown ``--data``."""

    exit_code = 2


MAX_ECHOED = 200  # characters of a value from a file or the command line that an error repeats


def cut(text: object, limit: int = MAX_ECHOED) -> str:
    """``text`` as it is, or its first ``limit`` characters, an ellipsis and its length: a
    value that a file or the command line controls, repeated in a one-line error, stays short
    (and on one line: a character that does not print is written as an escape, ``\\n``)."""
    text = str(text)
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text):,} characters)"


def quoted(value: object, limit: int = MAX_ECHOED) -> str:
    """``repr(value)`` cut as :func:`cut` does (escapes and all: a newline stays ``\\n``);
    the length given is a string's own."""
    text = repr(value)
    if len(text) <= limit or not isinstance(value, str):
        return cut(text, limit)
    return f"{text[:limit]}... ({len(value):,} characters)"


def braces(text: object) -> str:
    """``text`` safe inside a :class:`UsageError` message that names options."""
    return str(text).replace("{", "{{").replace("}", "}}")


class FractalError(Error):
    """An invalid program: raised by any stage with every diagnostic it found, sorted by position."""

    def __init__(self, source: Source, diagnostics: list[Diagnostic]) -> None:
        self.source = source
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.span, d.message))
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(d.format(self.source) for d in self.diagnostics)

    def show(self) -> str:
        n = len(self.diagnostics)
        return f"{self.format()}\n{n} error{'s' if n != 1 else ''} in {self.source.name}"


class Collector:
    """Accumulates diagnostics during a stage; :meth:`raise_if_any` ends the stage."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[tuple[Span, str]] = set()

    def error(self, span: Span, message: str, hint: str | None = None, fix: Fix | None = None) -> None:
        self.diagnostics.append(Diagnostic(span, message, hint=hint, fix=fix))

    def error_once(self, span: Span, message: str, hint: str | None = None, fix: Fix | None = None) -> None:
        """Report a problem unless the same message was already reported at ``span`` (a
        layer unit is bound once per use, and many uses share one mistake)."""
        if (span, message) not in self._seen:
            self._seen.add((span, message))
            self.error(span, message, hint, fix)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise FractalError(self.source, self.diagnostics)
