"""The language server behind ``fractal-dsl lsp``: LSP over standard input and output (pygls).

- **Diagnostics** when a document opens and, debounced (:data:`DEBOUNCE_S`), when it changes:
  the same diagnostics as ``check`` (the same loader), each with its hint on a second line.
- **Hover** on a key entry, a use of one, a built-in layer, a rule, a block of ``blocks`` or a
  statement keyword: what it is and, when the network validates, the shapes in and out,
  parameters and multiply-accumulates of that piece of the network as built.
- **Completion** of statement keywords, built-in layers (with their parameters), the file's
  key entries and the parameters that take block values, and drop-path/init/join words.
- **Go to definition** from a use of a key entry to its definition, and from ``f[...]`` to
  the rule that defines it; **document symbols** (the outline); **formatting** with
  :mod:`fractal_dsl.fmt`, the code of ``fractal-dsl fmt``.

The server works on the documents the client opened, with the text the client sent: it never
reads a file itself (a request about a document that is not open is answered with nothing),
and a document over the CLI's 64 KiB limit gets one diagnostic saying so and no analysis.  A
bug in a handler is logged and answered as an empty result, and no error sent to the client
carries a traceback, so the server keeps answering.

Network facts come from the public :func:`fractal_dsl.summary.describe` (the ``inspect --json``
object) and the AST of :mod:`fractal_dsl.syntax`; nothing here imports torch.  pygls and
lsprotocol are the optional extra ``fractal-dsl[lsp]``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from ._version import __version__
from .errors import Diagnostic, FractalError, Source, Span
from .fmt import format_source
from .ir import JOIN, LAYER, POOL
from .pipeline import load_source
from .syntax import INIT_SCHEMES, MAX_FILE_BYTES, Call, FractalRef, Join, KeyDef, Program, Rule, Seq, parse

logger = logging.getLogger(__name__)
DEBOUNCE_S = 0.3  # diagnostics wait this long after the last change before they are computed

KEYWORDS = {
    "network": "`network NAME { ... }`: the one network of a file",
    "input": "`input CxHxW`: the per-sample input shape, e.g. `input 3x32x32`",
    "classes": "`classes N`: the number of classes; `classes` inside the key means this number",
    "key": "`key { name(params) = layer . layer ... }`: what each layer name means",
    "columns": "`columns C`: expand the rule to `f[C]` in every block (1 to 64)",
    "blocks": (
        "`blocks V V ...`: one entry per block, a value `64`, a tuple `(64, 0.1)` or a named tuple "
        "`(c=64, p=0.1)`, bound by name to the parameters of the key entries the rule uses"
    ),
    "droppath": (
        "`droppath local P global R per batch|sample` or `droppath off`: drop-path settings "
        "(default local 0.15, global 0.5, per batch)"
    ),
    "init": "`init xavier|kaiming|torch`: initial weights of convolutions and linear layers (default xavier)",
}
WORDS = {
    "local": "drop-path: the probability of dropping each join input (default 0.15)",
    "global": "drop-path: the share of samples that keep one column throughout (default 0.5)",
    "per": "drop-path: draw a new choice `per batch` (default) or `per sample`",
    "off": "drop-path off",
    "batch": "drop-path drawn once per mini-batch",
    "sample": "drop-path drawn for every example",
    "mean": "join mode: the mean of the inputs (the paper's)",
    "sum": "join mode: the sum of the inputs",
    "max": "join mode: the element-wise maximum of the inputs",
    "concat": "join mode: the inputs' channels side by side",
    **{s: f"weight initialisation `{s}`" for s in INIT_SCHEMES},
}
SPECIAL = {
    "join": "how joins merge their inputs (`mean`, `sum`, `max`, `concat`)",
    "pool": "placed after every block",
    "stem": "placed between the input and block 1",
    "head": "placed after the last pool; ends with `classes` outputs",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_DEF = re.compile(
    r"^[ \t]*(?:key[ \t]*\{[ \t]*)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:\(([^)\n]*)\))?[ \t]*=(?!=)", re.MULTILINE
)


# ---- analysis of one document --------------------------------------------------------


@dataclass
class Analysis:
    """What the server knows about one version of a document."""

    text: str
    program: Program | None = None  # None when it does not parse
    facts: dict | None = None  # describe(net) when it validates
    diagnostics: list[Diagnostic] = field(default_factory=list)


def too_large(text: str) -> bool:
    """True for a document over the size limit of ``check`` (:data:`MAX_FILE_BYTES` of UTF-8)."""
    return len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES


def analyse(text: str, name: str) -> Analysis:
    from .summary import describe

    result = Analysis(text)
    if too_large(text):  # as `check` refuses the file: one diagnostic, nothing parsed
        message = f"document is larger than {MAX_FILE_BYTES // 1024} KiB; this is not a fractal-dsl program"
        result.diagnostics = [Diagnostic(Span.point(1, 1), message)]
        return result
    source = Source(name, text.removeprefix("\ufeff"))
    try:
        result.program = parse(source)
        result.facts = describe(load_source(source))
    except FractalError as exc:
        result.diagnostics = list(exc.diagnostics)
    except Exception as exc:  # a bug in fractal-dsl: say so in the editor rather than stop answering
        logger.exception("analysing %s", name)
        result.diagnostics = [
            Diagnostic(Span.point(1, 1), f"internal error in fractal-dsl {__version__}: {exc!r}; please report it")
        ]
    return result


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _units(ch: str, encoding: str) -> int:
    """How many code units of the negotiated position encoding one character takes."""
    if encoding == lsp.PositionEncodingKind.Utf8:
        return len(ch.encode("utf-8"))
    if encoding == lsp.PositionEncodingKind.Utf32:
        return 1
    return 2 if ord(ch) > 0xFFFF else 1


UTF16 = lsp.PositionEncodingKind.Utf16


def to_position(lines: list[str], line: int, column: int, encoding: str = UTF16) -> lsp.Position:
    """1-based line and column (code points) to an LSP position (0-based, in the encoding's units)."""
    if line > len(lines):
        last = lines[-1] if lines else ""
        return lsp.Position(line=max(len(lines) - 1, 0), character=sum(_units(c, encoding) for c in last))
    text = lines[max(line, 1) - 1]
    prefix = text[: max(column, 1) - 1]
    return lsp.Position(line=max(line, 1) - 1, character=sum(_units(c, encoding) for c in prefix))


def from_position(lines: list[str], pos: lsp.Position, encoding: str = UTF16) -> tuple[int, int]:
    """An LSP position to a 1-based line and column in code points."""
    if pos.line >= len(lines):
        return len(lines) + 1, 1
    text, units, col = lines[pos.line], 0, 0
    while col < len(text) and units < pos.character:
        units += _units(text[col], encoding)
        col += 1
    return pos.line + 1, col + 1


def to_range(lines: list[str], span: Span, encoding: str = UTF16) -> lsp.Range:
    start = to_position(lines, span.line, span.column, encoding)
    end = to_position(lines, span.end_line, span.end_column, encoding)
    if (end.line, end.character) <= (start.line, start.character):
        end = lsp.Position(line=start.line, character=start.character + 1)
    return lsp.Range(start=start, end=end)


def to_lsp_diagnostic(lines: list[str], d: Diagnostic, encoding: str = UTF16) -> lsp.Diagnostic:
    message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
    severity = lsp.DiagnosticSeverity.Error if d.severity == "error" else lsp.DiagnosticSeverity.Warning
    return lsp.Diagnostic(
        range=to_range(lines, d.span, encoding), message=message, severity=severity, source="fractal-dsl"
    )


def _inside(span: Span, line: int, col: int) -> bool:
    return (span.line, span.column) <= (line, col) < (span.end_line, span.end_column) or (
        (line, col) == (span.end_line, span.end_column) and span.line == span.end_line
    )


def _name_span(call: Call) -> Span:
    return Span(call.span.line, call.span.column, call.span.line, call.span.column + len(call.name))


def _walk(seq: Seq):
    """Every Call, FractalRef and Join of an expression, in order."""
    for term in seq.terms:
        if isinstance(term, Seq):
            yield from _walk(term)
        elif isinstance(term, Join):
            yield term
            for branch in term.branches:
                yield from _walk(branch)
        else:
            yield term


@dataclass
class Hit:
    """What the cursor is on."""

    kind: str  # key, use, builtin, rule, ref, block, keyword
    span: Span
    key: KeyDef | None = None
    call: Call | None = None
    rule: Rule | None = None
    ref: FractalRef | None = None
    block: int | None = None
    word: str | None = None
    span_of: Span | None = None  # for a join: the whole `join(...)`


def find(program: Program, text: str, line: int, col: int) -> Hit | None:
    """The piece of ``program`` at 1-based ``line``, ``col``."""
    from .layers import BUILTINS

    keys = {k.name: k for k in program.key}
    for k in program.key:
        if _inside(k.name_span, line, col):
            return Hit("key", k.name_span, key=k)
        for call in k.chain:
            if _inside(_name_span(call), line, col):
                if call.name in keys and call.name != k.name:
                    return Hit("use", _name_span(call), key=keys[call.name], call=call)
                if call.name in BUILTINS:
                    return Hit("builtin", _name_span(call), call=call)
    for rule in program.rules:
        head = Span(rule.span.line, rule.span.column, rule.index.span.end_line, rule.index.span.end_column + 1)
        if _inside(head, line, col):
            return Hit("rule", head, rule=rule)
        for term in _walk(rule.expr):
            if isinstance(term, Call) and _inside(_name_span(term), line, col):
                if term.name in keys:
                    return Hit("use", _name_span(term), key=keys[term.name], call=term)
                if term.name in BUILTINS:
                    return Hit("builtin", _name_span(term), call=term)
            if isinstance(term, FractalRef) and _inside(term.span, line, col):
                return Hit("ref", term.span, ref=term, rule=rule)
            if isinstance(term, Join):
                word = Span(term.span.line, term.span.column, term.span.line, term.span.column + len("join"))
                if _inside(word, line, col):
                    return Hit("join", word, key=keys.get("join"), span_of=term.span)
    if program.blocks is not None:
        for i, spec in enumerate(program.blocks[0], start=1):
            if _inside(spec.span, line, col):
                return Hit("block", spec.span, block=i)
    lines = _lines(text)
    if 1 <= line <= len(lines):
        for m in _NAME.finditer(lines[line - 1]):
            if m.start() < col <= m.end() + 1 and m.group() in {**KEYWORDS, **WORDS}:
                return Hit("keyword", Span(line, m.start() + 1, line, m.end() + 1), word=m.group())
    return None


# ---- hover text ----------------------------------------------------------------------


def _shape(shape) -> str:
    return "x".join(str(s) for s in shape)


def _unit_text(text: str, span: Span) -> str:
    lines = _lines(text)
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1 : span.end_column - 1]
    return lines[span.line - 1][span.column - 1 :].strip() + " ..."


def _piece_table(facts: dict, nodes: list[dict], what: str) -> str:
    """Per block: how many nodes, shapes in -> out, parameters and MACs; then the total."""
    if not nodes:
        return f"\n\nNot part of the network as built ({what} makes no layer)."
    by_id = {n["id"]: n for n in facts["graph"]["nodes"]}
    into: dict[str, list[str]] = {}
    for e in facts["graph"]["edges"]:
        into.setdefault(e["target"], []).append(e["source"])
    rows = []
    groups: dict[object, list[dict]] = {}
    for n in nodes:
        groups.setdefault(n["block"], []).append(n)
    for block, members in groups.items():
        shapes = []
        for n in members:
            ins = sorted({_shape(by_id[s]["shape"]) for s in into.get(n["id"], [])})
            pair = f"{' + '.join(ins) or '-'} → {_shape(n['shape'])}"
            if pair not in shapes:
                shapes.append(pair)
        where = f"block {block}" if block is not None else members[0]["kind"]
        rows.append(
            f"| {where} | {len(members)} | {', '.join(shapes)} | {sum(n['params'] for n in members):,} | "
            f"{sum(n['macs'] for n in members):,} |"
        )
    total_p = sum(n["params"] for n in nodes)
    total_m = sum(n["macs"] for n in nodes)
    table = [
        "",
        "",
        "In the network as built:",
        "",
        "| where | nodes | shape in → out | parameters | MACs |",
        "|---|---|---|---|---|",
        *rows,
    ]
    if len(rows) > 1:
        table.append(f"| **total** | {len(nodes)} | | {total_p:,} | {total_m:,} |")
    return "\n".join(table)


def _builtin_signature(name: str) -> str:
    from .layers import BUILTINS, REQUIRED

    b = BUILTINS[name]
    parts = []
    for pname, default in b.params:
        if default is REQUIRED:
            parts.append(pname)
        elif default is None:
            parts.append(f"{pname}={ {'padding': 'same', 'stride': 'kernel'}.get(pname, 'none') }")
        elif isinstance(default, bool):
            parts.append(f"{pname}={'true' if default else 'false'}")
        else:
            parts.append(f"{pname}={default}")
    return f"{name}({', '.join(parts)})" if parts else name


def _key_signature(k: KeyDef) -> str:
    return k.name + (f"({', '.join(k.params)})" if k.params else "")


def hover_text(a: Analysis, hit: Hit) -> str:
    from .layers import BUILTINS

    facts, program, text = a.facts, a.program, a.text
    nodes = facts["graph"]["nodes"] if facts else []
    if hit.kind in ("key", "use"):
        k = hit.key
        head = f"**key entry** `{_unit_text(text, k.span)}`"
        if k.name in SPECIAL:
            head += f"\n\n`{k.name}`: {SPECIAL[k.name]}"
        if k.params:
            head += "\n\nParameters, filled from each block's values in order: " + ", ".join(f"`{p}`" for p in k.params)
        if facts is None:
            return head + _not_built(a)
        if hit.kind == "use":
            mine = [n for n in nodes if n["source"] == {"line": hit.call.span.line, "column": hit.call.span.column}]
            return head + _piece_table(facts, mine, "this use")
        if k.name == "join":
            mine = [n for n in nodes if n["kind"] == JOIN]
            return head + _piece_table(facts, mine, "this entry")
        users = _users(program, k.name)
        mine = [n for n in nodes if n["op"] in users and n["kind"] != JOIN]
        inside = sorted(users - {k.name})
        if inside:
            head += (
                "\n\nUsed inside "
                + ", ".join(f"`{u}`" for u in inside)
                + ": the table counts the units that contain it."
            )
        return head + _piece_table(facts, mine, "this entry")
    if hit.kind == "join":
        mode = facts["join"] if facts else None
        how = f"`{mode['mode']}`, {'flattened' if mode['flat'] else 'nested'}" if mode else "as the key's `join` says"
        head = f"**join** `{_unit_text(text, hit.span_of)}`\n\nMerges its branches ({how})."
        if facts is None:
            return head + _not_built(a)
        mine = [
            n for n in nodes if n["kind"] == JOIN and n["source"] == {"line": hit.span.line, "column": hit.span.column}
        ]
        return head + _piece_table(facts, mine, "this join (flattened into an outer one)")
    if hit.kind == "builtin":
        b = BUILTINS[hit.call.name]
        return f"**built-in layer** `{_builtin_signature(b.name)}`\n\n{b.doc}"
    if hit.kind in ("rule", "ref"):
        rule = hit.rule
        if hit.kind == "ref":
            target = _rule_for(program, hit.ref)
            where = f", defined on line {target.span.line}" if target else ""
            return f"**fractal** `{_unit_text(text, hit.ref.span)}`{where}"
        head = f"**rule** `{_unit_text(text, rule.span)}`"
        head += "\n\n" + (
            "the recursive rule" if rule.index.var else f"a base case: `{rule.name}[{rule.index.offset}]`"
        )
        if facts is None:
            return head + _not_built(a)
        mine = [n for n in nodes if _inside(rule.span, n["source"]["line"], n["source"]["column"])]
        return head + _piece_table(facts, mine, "this rule")
    if hit.kind == "block":
        head = f"**block {hit.block}** `{_unit_text(text, hit.span)}`"
        if facts is None:
            return head + _not_built(a)
        info = facts["blocks"][hit.block - 1] if hit.block <= len(facts["blocks"]) else None
        if info:
            head += (
                f"\n\n{info['convs']} layer units, joins of {', '.join(map(str, info['joins'])) or 'none'}, "
                f"depth {info['depth']}"
            )
        mine = [n for n in nodes if n["block"] == hit.block and n["kind"] in (LAYER, JOIN, POOL)]
        return head + _piece_table(facts, mine, "this block")
    word = hit.word or ""
    return KEYWORDS.get(word) or WORDS.get(word, word)


def _users(program: Program, name: str) -> set[str]:
    """``name`` and every key entry that uses it, directly or through others."""
    users = {name}
    changed = True
    while changed:
        changed = False
        for k in program.key:
            if k.name not in users and any(c.name in users and c.name != k.name for c in k.chain):
                users.add(k.name)
                changed = True
    return users


def _not_built(a: Analysis) -> str:
    n = len(a.diagnostics)
    return f"\n\n(The network does not validate yet: {n} error{'s' if n != 1 else ''}.)" if n else ""


def _rule_for(program: Program, ref: FractalRef) -> Rule | None:
    rules = [r for r in program.rules if r.name == ref.name]
    if ref.index.var is None:
        for r in rules:
            if r.index.var is None and r.index.offset == ref.index.offset:
                return r
    return next((r for r in rules if r.index.var is not None), rules[0] if rules else None)


# ---- completion ----------------------------------------------------------------------


def completions(text: str) -> list[lsp.CompletionItem]:
    """Keywords, built-in layers, the file's key entries and block-value parameters, other words.

    Key entries are found with a pattern rather than the parser: completion is asked for
    while the user types, when the file usually does not parse.
    """
    from .layers import BUILTINS

    items = [
        lsp.CompletionItem(
            label=k, kind=lsp.CompletionItemKind.Keyword, detail="statement", documentation=doc, sort_text="1" + k
        )
        for k, doc in KEYWORDS.items()
    ]
    seen_keys: set[str] = set()
    params: dict[str, str] = {}
    for m in _KEY_DEF.finditer(text):
        name, plist = m.group(1), m.group(2)
        if name in KEYWORDS or name in seen_keys:
            continue
        seen_keys.add(name)
        sig = name + (f"({plist.strip()})" if plist is not None else "")
        doc = SPECIAL.get(name, "a key entry of this file")
        items.append(
            lsp.CompletionItem(
                label=name,
                kind=lsp.CompletionItemKind.Class,
                detail=f"key entry {sig}",
                documentation=doc,
                sort_text="0" + name,
            )
        )
        for i, p in enumerate(_NAME.findall(plist or ""), start=1):
            params.setdefault(p, f"parameter {i} of {sig}: filled from each block's value {i}")
    for p, doc in params.items():
        items.append(
            lsp.CompletionItem(
                label=p,
                kind=lsp.CompletionItemKind.Variable,
                detail="block value",
                documentation=doc,
                sort_text="0" + p,
            )
        )
    for name, b in BUILTINS.items():
        if name in seen_keys:
            continue
        items.append(
            lsp.CompletionItem(
                label=name,
                kind=lsp.CompletionItemKind.Function,
                detail=_builtin_signature(name),
                documentation=b.doc,
                sort_text="2" + name,
            )
        )
    for word, doc in WORDS.items():
        items.append(
            lsp.CompletionItem(label=word, kind=lsp.CompletionItemKind.Value, documentation=doc, sort_text="3" + word)
        )
    return items


# ---- symbols -------------------------------------------------------------------------


def symbols(program: Program, text: str, encoding: str = UTF16) -> list[lsp.DocumentSymbol]:
    lines = _lines(text)

    def sym(
        name: str, kind: lsp.SymbolKind, span: Span, sel: Span | None = None, detail: str | None = None, children=None
    ):
        return lsp.DocumentSymbol(
            name=name,
            kind=kind,
            range=to_range(lines, span, encoding),
            selection_range=to_range(lines, sel or span, encoding),
            detail=detail,
            children=children,
        )

    children: list[tuple[Span, lsp.DocumentSymbol]] = []
    for word, value, kind in (
        ("input", program.input_shape, lsp.SymbolKind.Property),
        ("classes", program.classes, lsp.SymbolKind.Constant),
        ("columns", program.columns, lsp.SymbolKind.Constant),
        ("init", program.init, lsp.SymbolKind.Property),
    ):
        if value is not None:
            v, span = value
            children.append((span, sym(word, kind, span, detail=_shape(v) if word == "input" else str(v))))
    if program.key:
        defs = [
            sym(
                _key_signature(k),
                lsp.SymbolKind.Function,
                k.span,
                k.name_span,
                detail=_unit_text(text, k.span).partition("=")[2].strip(),
            )
            for k in program.key
        ]
        first, last = program.key[0].span, program.key[-1].span
        span = Span(first.line, first.column, last.end_line, last.end_column)
        children.append((span, sym("key", lsp.SymbolKind.Namespace, span, children=defs)))
    for r in program.rules:
        head = _unit_text(text, r.span).partition("=")[0].strip()
        children.append((r.span, sym(head, lsp.SymbolKind.Method, r.span, detail=_unit_text(text, r.expr.span))))
    if program.blocks is not None:
        specs, span = program.blocks
        blocks = [
            sym(f"block {i}", lsp.SymbolKind.Array, s.span, detail=_unit_text(text, s.span))
            for i, s in enumerate(specs, start=1)
        ]
        children.append((span, sym("blocks", lsp.SymbolKind.Array, span, children=blocks)))
    if program.droppath is not None:
        span = program.droppath.span
        children.append(
            (
                span,
                sym(
                    "droppath",
                    lsp.SymbolKind.Property,
                    span,
                    detail=_unit_text(text, span).removeprefix("droppath").strip(),
                ),
            )
        )
    children.sort(key=lambda c: c[0])
    return [
        sym(
            f"network {program.name}",
            lsp.SymbolKind.Module,
            program.span,
            program.name_span,
            children=[c for _, c in children],
        )
    ]


# ---- the server ----------------------------------------------------------------------


class _Protocol(LanguageServerProtocol):
    """pygls's protocol, except that an error answered to the client never carries a traceback,
    and a request whose parameters do not fit the protocol is answered with an error (pygls
    logs it and answers nothing, so the client would wait for ever)."""

    def structure_message(self, data):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "method" in data and isinstance(data.get("id"), (int, str)):
                self._send_response(data["id"], error=exc.to_response_error())
            raise

    def _send_response(self, msg_id, result=None, error=None):
        if error is not None:
            first = str(error.message).strip().split("\n", 1)[0][:200]
            error = lsp.ResponseError(code=error.code, message=first or "internal error", data=None)
        super()._send_response(msg_id, result, error)


class FdslServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "fractal-dsl",
            __version__,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
            protocol_cls=_Protocol,
        )
        self.analyses: dict[str, tuple[int | None, Analysis]] = {}
        self.pending: dict[str, asyncio.Task] = {}

    def document(self, uri: str):
        """The document the client opened at ``uri``, or None.  Never pygls's
        ``get_text_document``, which reads an unopened URI's path from disk."""
        return self.workspace.text_documents.get(unquote(uri))

    def analysis(self, uri: str) -> Analysis | None:
        doc = self.document(uri)
        if doc is None:
            return None
        cached = self.analyses.get(uri)
        if cached is not None and cached[0] == doc.version and cached[1].text == doc.source:
            return cached[1]
        result = analyse(doc.source, _display_name(uri))
        self.analyses[uri] = (doc.version, result)
        return result

    @property
    def encoding(self) -> str:
        """The position encoding agreed with the client (UTF-16 unless it offered another)."""
        return self.workspace.position_encoding or UTF16

    def schedule(self, uri: str, delay: float) -> None:
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._publish(uri, delay))

    async def _publish(self, uri: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        doc = self.document(uri)
        a = self.analysis(uri)
        if doc is None or a is None:
            return  # closed meanwhile, or never opened: nothing to say about it
        lines = _lines(a.text)
        diags = [to_lsp_diagnostic(lines, d, self.encoding) for d in a.diagnostics]
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=doc.version)
        )


def _display_name(uri: str) -> str:
    path = unquote(urlparse(uri).path)
    return PurePosixPath(path).name or uri


server = FdslServer()


def _answers(default):
    """A handler that logs a bug of its own and answers ``default``, rather than fail the request."""

    def wrap(handler):
        @functools.wraps(handler)
        def guarded(ls: FdslServer, params):
            try:
                return handler(ls, params)
            except Exception:
                logger.exception("answering %s", type(params).__name__)
                return default() if callable(default) else default

        return guarded

    return wrap


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: FdslServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: FdslServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, DEBOUNCE_S)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: FdslServer, params: lsp.DidSaveTextDocumentParams) -> None:
    if ls.document(params.text_document.uri) is not None:  # a save of a file the client never opened says nothing
        ls.schedule(params.text_document.uri, 0)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: FdslServer, params: lsp.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    task = ls.pending.pop(uri, None)
    if task is not None:
        task.cancel()
    ls.analyses.pop(uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def _hit(ls: FdslServer, params) -> tuple[Analysis | None, Hit | None]:
    a = ls.analysis(params.text_document.uri)
    if a is None or a.program is None:
        return a, None
    line, col = from_position(_lines(a.text), params.position, ls.encoding)
    return a, find(a.program, a.text, line, col)


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
@_answers(None)
def hover(ls: FdslServer, params: lsp.HoverParams) -> lsp.Hover | None:
    a, hit = _hit(ls, params)
    if hit is None:
        return None
    return lsp.Hover(
        contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=hover_text(a, hit)),
        range=to_range(_lines(a.text), hit.span, ls.encoding),
    )


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=[".", "("]))
@_answers(lambda: lsp.CompletionList(is_incomplete=False, items=[]))
def completion(ls: FdslServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    doc = ls.document(params.text_document.uri)
    # the language's own words always; the file's key entries only from an open document of a
    # size `check` reads
    text = doc.source if doc is not None and not too_large(doc.source) else ""
    return lsp.CompletionList(is_incomplete=False, items=completions(text))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
@_answers(None)
def definition(ls: FdslServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    a, hit = _hit(ls, params)
    if hit is None:
        return None
    lines = _lines(a.text)
    uri = params.text_document.uri
    if hit.kind in ("use", "key"):
        return lsp.Location(uri=uri, range=to_range(lines, hit.key.name_span, ls.encoding))
    if hit.kind == "ref":
        target = _rule_for(a.program, hit.ref)
        if target is not None:
            return lsp.Location(uri=uri, range=to_range(lines, target.span, ls.encoding))
    return None


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@_answers(list)
def document_symbol(ls: FdslServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    a = ls.analysis(params.text_document.uri)
    return symbols(a.program, a.text, ls.encoding) if a is not None and a.program is not None else []


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
@_answers(list)
def formatting(ls: FdslServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
    doc = ls.document(params.text_document.uri)
    if doc is None or too_large(doc.source):
        return []
    try:
        new = format_source(Source(_display_name(params.text_document.uri), doc.source.removeprefix("\ufeff")))
    except FractalError:
        return []  # a document that does not parse is never formatted; its diagnostics say why
    if new == doc.source:
        return []
    lines = _lines(doc.source)
    end = to_position(lines, len(lines), len(lines[-1]) + 1, ls.encoding)
    return [lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=0, character=0), end=end), new_text=new)]


def _key(p: lsp.Position) -> tuple[int, int]:
    return p.line, p.character


def quick_fixes(a: Analysis, uri: str, want: lsp.Range, encoding: str = UTF16) -> list[lsp.CodeAction]:
    """A quick fix for each diagnostic in ``want`` whose hint suggests a spelling (its ``fix``)."""
    lines = _lines(a.text)
    out = []
    for d in a.diagnostics:
        if d.fix is None:
            continue
        at = to_range(lines, d.span, encoding)
        if _key(at.end) < _key(want.start) or _key(want.end) < _key(at.start):
            continue  # not in the range asked about
        text = " ".join(d.fix.text.split())
        shown = text if len(text) <= 60 else text[:57] + "..."
        title = "Rewrite with braces" if "\n" in d.fix.text else f"Write `{shown}`"
        edit = lsp.TextEdit(range=to_range(lines, d.fix.span, encoding), new_text=d.fix.text)
        out.append(
            lsp.CodeAction(
                title=title,
                kind=lsp.CodeActionKind.QuickFix,
                diagnostics=[to_lsp_diagnostic(lines, d, encoding)],
                edit=lsp.WorkspaceEdit(changes={uri: [edit]}),
                is_preferred=True,
            )
        )
    return out


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
def code_action(ls: FdslServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    uri = params.text_document.uri
    return quick_fixes(ls.analysis(uri), uri, params.range, ls.encoding)


MAX_MESSAGE_BYTES = 64 * 2**20  # a JSON-RPC message (header line or body) longer than this ends the session


class _BoundedInput:
    """Standard input as pygls reads it, except that a header line or a ``Content-Length`` over
    :data:`MAX_MESSAGE_BYTES` ends the session with one line on standard error: the stream can
    no longer be followed, and reading it would hold the rest of the session (or the memory)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.stopped = False

    def _stop(self, what: str) -> bytes:
        self.stopped = True
        logger.error("error: %s is over the limit of %d MiB; the server stops", what, MAX_MESSAGE_BYTES // 2**20)
        return b""  # end of input: pygls's loop ends and the server shuts down

    def readline(self) -> bytes:
        line = self.stream.readline(MAX_MESSAGE_BYTES + 1)
        return self._stop("a header line") if len(line) > MAX_MESSAGE_BYTES else line

    def read(self, n: int) -> bytes:
        return self._stop(f"a message of {n:,} bytes") if n > MAX_MESSAGE_BYTES else self.stream.read(n)


class _OneLine(logging.Formatter):
    """Log records as one line each: a bug in a handler or a message that does not parse says
    what went wrong, never with a traceback (the client shows standard error to the user)."""

    def format(self, record: logging.LogRecord) -> str:
        text = _first_line(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {_first_line(str(record.exc_info[1]))}"
        return text[:500]


def _first_line(text: str) -> str:
    return (text.strip().split("\n", 1)[0]).strip()


def serve() -> None:
    """Serve one client on standard input and output until it exits."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    for name in ("pygls", __name__):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).propagate = False
    stdin = _BoundedInput(sys.stdin.buffer)
    server.start_io(stdin=stdin)
    if stdin.stopped:
        raise SystemExit(1)
