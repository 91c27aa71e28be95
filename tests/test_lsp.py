"""`fractal-dsl lsp`, end to end: a real server subprocess over stdio, driven by pygls's client.

Open a document with an error and the diagnostic arrives at the range `check` reports; fix it
and an empty list arrives; hover, completion, definition, symbols and formatting answer.
Skipped where the optional extra (pygls, lsprotocol) is not installed.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from conftest import ROOT

pytest.importorskip("pygls", reason="the language server is the optional extra fractal-dsl[lsp]")
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from fractal_dsl import FractalError, loads
from fractal_dsl.fmt import format_text

TINY = (ROOT / "examples" / "tiny.fdsl").read_text("utf-8")
URI = "file:///work/tiny.fdsl"
TIMEOUT = 30


class Client(LanguageClient):
    def __init__(self) -> None:
        super().__init__("fractal-dsl-test", "1")
        self.published: asyncio.Queue = asyncio.Queue()

        @self.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diagnostics(params: lsp.PublishDiagnosticsParams) -> None:
            self.published.put_nowait(params)

    async def next_diagnostics(self) -> lsp.PublishDiagnosticsParams:
        return await asyncio.wait_for(self.published.get(), TIMEOUT)


async def _session(body) -> None:
    client = Client()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    await client.start_io(sys.executable, "-m", "fractal_dsl.cli", "lsp", env=env, cwd=str(ROOT))
    try:
        result = await asyncio.wait_for(client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities())), TIMEOUT)
        assert result.server_info.name == "fractal-dsl"
        client.initialized(lsp.InitializedParams())
        await body(client)
        await asyncio.wait_for(client.shutdown_async(None), TIMEOUT)
        client.exit(None)
        assert await asyncio.wait_for(client._server.wait(), TIMEOUT) == 0  # it exits cleanly when asked
    finally:
        server = client._server
        if server is not None and server.returncode is None:
            server.kill()  # a failed test must not leave the server behind
        await asyncio.wait_for(client.stop(), TIMEOUT)


def run_session(body) -> None:
    asyncio.run(_session(body))


def _doc(uri: str = URI) -> lsp.TextDocumentIdentifier:
    return lsp.TextDocumentIdentifier(uri=uri)


def _pos(line: int, character: int) -> lsp.Position:
    return lsp.Position(line=line, character=character)


def test_diagnostics_on_open_then_empty_after_the_fix():
    broken = TINY.replace("f[1] = conv", "f[1] = cnov")
    with pytest.raises(FractalError) as check:
        loads(broken, "tiny.fdsl")
    (expected,) = check.value.diagnostics  # what `check` reports: line 14, columns 10-14

    async def body(client: Client) -> None:
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=URI, language_id="fdsl", version=1, text=broken)))
        got = await client.next_diagnostics()
        assert got.uri == URI
        (d,) = got.diagnostics
        assert (d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character) == (13, 9, 13, 13)
        assert (expected.span.line - 1, expected.span.column - 1, expected.span.end_column - 1) == (13, 9, 13)
        assert d.message == "unknown layer `cnov`\nhint: did you mean `conv`?"
        assert d.severity == lsp.DiagnosticSeverity.Error and d.source == "fractal-dsl"
        # fix it with an incremental change of that range
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[lsp.TextDocumentContentChangePartial(range=d.range, text="conv")]))
        fixed = await client.next_diagnostics()
        assert list(fixed.diagnostics) == [] and fixed.version == 2
        # a shape error: a join whose branches disagree in channels
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=URI, version=3),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=TINY.replace("f[C+1] = join(f[C] . f[C], conv)", "f[C+1] = join(f[C] . f[C], conv(8, 0.0))"))]))
        shaped = await client.next_diagnostics()
        assert shaped.version == 3 and shaped.diagnostics
        assert any("join" in x.message for x in shaped.diagnostics), [x.message for x in shaped.diagnostics]

    run_session(body)


def test_changes_are_debounced_into_one_diagnostics_message():
    async def body(client: Client) -> None:
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=URI, language_id="fdsl", version=1, text=TINY)))
        assert list((await client.next_diagnostics()).diagnostics) == []
        text = TINY
        for version, typo in enumerate(["c", "cn", "cno", "cnov"], start=2):  # typing fast
            text = TINY.replace("f[1] = conv", f"f[1] = {typo}")
            client.text_document_did_change(lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=URI, version=version),
                content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)]))
        last = await client.next_diagnostics()
        assert last.version == 5
        assert [x.message.split("\n")[0] for x in last.diagnostics] == ["unknown layer `cnov`"]
        await asyncio.sleep(1.0)
        assert client.published.empty()  # the intermediate versions were never analysed

    run_session(body)


def test_hover_completion_definition_symbols_and_formatting():
    messy = TINY.replace("f[C+1] = join(f[C] . f[C], conv)", "f[C+1]=join( f[C].f[C] ,conv )")
    lines = messy.split("\n")
    rule_line = next(i for i, t in enumerate(lines) if t.startswith("  f[C+1]"))
    key_line = next(i for i, t in enumerate(lines) if t.startswith("    conv(c, p)"))

    async def body(client: Client) -> None:
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=URI, language_id="fdsl", version=1, text=messy)))
        assert list((await client.next_diagnostics()).diagnostics) == []

        # hover on the key entry `conv`: its definition and the facts of every conv unit
        h = await client.text_document_hover_async(lsp.HoverParams(text_document=_doc(), position=_pos(key_line, 5)))
        value = h.contents.value
        assert value.startswith("**key entry** `conv(c, p) = conv3x3(c, bias=false) . dropout(p) . batchnorm . relu`")
        assert "| block 1 | 7 | 1x16x16 → 16x16x16, 16x16x16 → 16x16x16 |" in value
        assert "| **total** | 21 |" in value
        # hover on the use of `conv` inside the join: only the units that use made
        col = lines[rule_line].index(",conv") + 1
        h = await client.text_document_hover_async(lsp.HoverParams(text_document=_doc(), position=_pos(rule_line, col + 1)))
        assert (h.range.start.line, h.range.start.character, h.range.end.character) == (rule_line, col, col + 4)
        assert "| block 1 | 3 |" in h.contents.value and "| **total** | 9 |" in h.contents.value
        # hover on a block of `blocks`: its shapes, parameters and MACs
        blocks_line = next(i for i, t in enumerate(lines) if t.lstrip().startswith("blocks"))
        h = await client.text_document_hover_async(lsp.HoverParams(
            text_document=_doc(), position=_pos(blocks_line, lines[blocks_line].index("(32") + 1)))
        assert h.contents.value.startswith("**block 2** `(32, 0.1)`") and "16x8x8 → 32x8x8" in h.contents.value
        # hover on the recursive rule, and on its `join`
        h = await client.text_document_hover_async(lsp.HoverParams(text_document=_doc(), position=_pos(rule_line, 3)))
        assert h.contents.value.startswith("**rule** `f[C+1]=join( f[C].f[C] ,conv )`\n\nthe recursive rule")
        assert "| **total** |" in h.contents.value
        h = await client.text_document_hover_async(lsp.HoverParams(text_document=_doc(), position=_pos(rule_line, lines[rule_line].index("join") + 1)))
        assert h.contents.value.startswith("**join** `join( f[C].f[C] ,conv )`\n\nMerges its branches (`mean`, flattened).")
        assert "| block 1 | 2 | 16x16x16 → 16x16x16 | 0 | 0 |" in h.contents.value
        # go to definition from `f[C]` to the rule that defines it
        loc = await client.text_document_definition_async(lsp.DefinitionParams(
            text_document=_doc(), position=_pos(rule_line, lines[rule_line].index("f[C]") + 1)))
        assert (loc.range.start.line, loc.range.start.character) == (rule_line, 2)
        # hover on a built-in layer
        h = await client.text_document_hover_async(lsp.HoverParams(
            text_document=_doc(), position=_pos(key_line, lines[key_line].index("conv3x3") + 2)))
        assert h.contents.value.startswith("**built-in layer** `conv3x3(channels, stride=1, padding=same, bias=true, groups=1, dilation=1)`")

        # completion: keywords, built-ins with their parameters, key entries, block value names
        items = await client.text_document_completion_async(lsp.CompletionParams(text_document=_doc(), position=_pos(rule_line, 0)))
        by_label = {i.label: i for i in items.items}
        assert {"droppath", "columns", "blocks", "conv", "conv3x3", "maxpool", "c", "p", "mean"} <= set(by_label)
        assert by_label["maxpool"].detail == "maxpool(kernel, stride=kernel, padding=0)"
        assert by_label["conv"].detail == "key entry conv(c, p)"
        assert by_label["p"].detail == "block value"

        # go to definition: the `conv` of the rule -> its key entry
        loc = await client.text_document_definition_async(lsp.DefinitionParams(text_document=_doc(), position=_pos(rule_line, col + 1)))
        assert (loc.range.start.line, loc.range.start.character, loc.range.end.character) == (key_line, 4, 8)

        # document symbols: the network and its statements, the key entries inside `key`
        syms = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(text_document=_doc()))
        (net,) = syms
        assert net.name == "network tiny"
        assert [c.name for c in net.children] == ["input", "classes", "key", "f[1]", "f[C+1]", "columns", "blocks", "droppath"]
        assert [c.name for c in net.children[2].children] == ["conv(c, p)", "join", "pool", "head"]

        # formatting: one edit to the text `fmt` gives
        edits = await client.text_document_formatting_async(lsp.DocumentFormattingParams(
            text_document=_doc(), options=lsp.FormattingOptions(tab_size=2, insert_spaces=True)))
        (edit,) = edits
        assert edit.new_text == format_text(messy) == TINY
        assert (edit.range.start.line, edit.range.start.character) == (0, 0)
        assert edit.range.end.line == len(lines) - 1

    run_session(body)


def test_a_document_that_does_not_parse_gets_diagnostics_completion_and_no_edits():
    broken = TINY.replace("columns 3", "columns = 3")

    async def body(client: Client) -> None:
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=URI, language_id="fdsl", version=1, text=broken)))
        (d,) = (await client.next_diagnostics()).diagnostics
        assert d.message.startswith("unexpected '='") and d.range.start.line == 15
        edits = await client.text_document_formatting_async(lsp.DocumentFormattingParams(
            text_document=_doc(), options=lsp.FormattingOptions(tab_size=2, insert_spaces=True)))
        assert not edits
        items = await client.text_document_completion_async(lsp.CompletionParams(text_document=_doc(), position=_pos(15, 0)))
        assert {"conv", "columns", "conv3x3"} <= {i.label for i in items.items}
        assert await client.text_document_hover_async(lsp.HoverParams(text_document=_doc(), position=_pos(8, 5))) is None

    run_session(body)


def test_a_suggested_spelling_is_a_quick_fix():
    broken = TINY.replace("batchnorm . relu", "batchnorm(c) . relu")

    async def body(client: Client) -> None:
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=URI, language_id="fdsl", version=1, text=broken)))
        (d,) = (await client.next_diagnostics()).diagnostics
        actions = await client.text_document_code_action_async(lsp.CodeActionParams(
            text_document=_doc(), range=d.range, context=lsp.CodeActionContext(diagnostics=[d])))
        (action,) = actions
        assert action.kind == lsp.CodeActionKind.QuickFix and action.title == "Write `batchnorm`"
        (edit,) = action.edit.changes[URI]
        lines = broken.split("\n")
        line = lines[edit.range.start.line]
        lines[edit.range.start.line] = line[: edit.range.start.character] + edit.new_text + line[edit.range.end.character :]
        assert "\n".join(lines) == TINY  # the quick fix gives back the valid program
        nowhere = lsp.Range(start=_pos(0, 0), end=_pos(0, 1))
        assert not await client.text_document_code_action_async(lsp.CodeActionParams(
            text_document=_doc(), range=nowhere, context=lsp.CodeActionContext(diagnostics=[])))

    run_session(body)


# ---- the pieces, without a client ------------------------------------------------------


def test_positions_follow_the_negotiated_encoding():
    from fractal_dsl.lsp import from_position, to_position

    lines = ["a\u00e9\U0001d523x = 1"]  # a, e-acute (2 UTF-8 bytes), a letter outside the BMP (2 UTF-16 units, 4 bytes)
    for encoding, units in ((lsp.PositionEncodingKind.Utf16, 4), (lsp.PositionEncodingKind.Utf8, 7), (lsp.PositionEncodingKind.Utf32, 3)):
        pos = to_position(lines, 1, 4, encoding)  # column 4 is `x`
        assert (pos.line, pos.character) == (0, units)
        assert from_position(lines, pos, encoding) == (1, 4)


def test_hover_on_an_entry_used_inside_another_counts_the_units_that_contain_it():
    from fractal_dsl.lsp import analyse, find, hover_text

    text = TINY.replace("    conv(c, p) = conv3x3(c, bias=false) . dropout(p) . batchnorm . relu",
                        "    unit(c) = conv3x3(c, bias=false) . batchnorm\n    conv(c, p) = unit(c) . dropout(p) . relu")
    a = analyse(text, "tiny.fdsl")
    assert a.diagnostics == [] and a.facts is not None
    line = text.split("\n").index("    unit(c) = conv3x3(c, bias=false) . batchnorm") + 1
    hit = find(a.program, text, line, 6)
    assert hit.kind == "key" and hit.key.name == "unit"
    shown = hover_text(a, hit)
    assert "Used inside `conv`" in shown and "| **total** | 21 |" in shown


def test_lsp_without_pygls_says_how_to_install_it():
    import subprocess

    code = "import sys; sys.modules['pygls'] = None\nfrom fractal_dsl.cli import main\nmain(['lsp'])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the language server needs pygls and lsprotocol: pip install 'fractal-dsl[lsp]'")
    assert "Traceback" not in proc.stderr


def test_the_language_server_does_not_import_torch():
    import subprocess

    code = "import sys, fractal_dsl.lsp as s\ns.analyse(open('examples/fractal4.fdsl').read(), 'f.fdsl')\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
