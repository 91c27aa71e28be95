"""The language server against a hostile client (issue 18, class 3), over stdio as an editor talks to it.

The server works on the documents the client opened and nothing else: a request naming any
other URI -- a secret file, a FIFO, /dev/zero, a directory -- is answered at once with
nothing read; a document over 64 KiB gets one diagnostic and no analysis; no answer carries
a traceback; and after all of it the server still answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("pygls", reason="the language server is the optional extra fractal-dsl[lsp]")
from lsprotocol import types as lsp
from test_lsp import TIMEOUT, TINY, URI, Client, run_session

from fractal_dsl.syntax import MAX_FILE_BYTES

SECRET_WORD = "leakykeyentry"
SECRET = TINY.replace("join = mean", f"join = mean\n    {SECRET_WORD}(zz) = relu").replace("f[1] = conv", "f[1] = cnov")


def _doc(uri: str) -> lsp.TextDocumentIdentifier:
    return lsp.TextDocumentIdentifier(uri=uri)


def _open(client: Client, text: str, uri: str = URI, version: int = 1) -> None:
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(
        text_document=lsp.TextDocumentItem(uri=uri, language_id="fdsl", version=version, text=text)))


async def _every_request(client: Client, uri: str) -> dict:
    """Each request the server answers, about ``uri``; each must come back within the timeout."""
    pos = lsp.Position(line=8, character=5)
    fmt = lsp.FormattingOptions(tab_size=2, insert_spaces=True)
    calls = {
        "hover": client.text_document_hover_async(lsp.HoverParams(text_document=_doc(uri), position=pos)),
        "completion": client.text_document_completion_async(lsp.CompletionParams(text_document=_doc(uri), position=pos)),
        "definition": client.text_document_definition_async(lsp.DefinitionParams(text_document=_doc(uri), position=pos)),
        "symbols": client.text_document_document_symbol_async(lsp.DocumentSymbolParams(text_document=_doc(uri))),
        "formatting": client.text_document_formatting_async(lsp.DocumentFormattingParams(text_document=_doc(uri), options=fmt)),
    }
    return {name: await asyncio.wait_for(call, TIMEOUT) for name, call in calls.items()}


def _labels(completion: lsp.CompletionList) -> set[str]:
    return {i.label for i in completion.items}


@pytest.fixture
def hostile_uris(tmp_path):
    """A readable file the client never opened, a FIFO, /dev/zero, a directory, a missing file."""
    secret = tmp_path / "secret.fdsl"
    secret.write_text(SECRET)
    fifo = tmp_path / "pipe.fdsl"
    os.mkfifo(fifo)
    return {
        "unopened file": secret.as_uri(),
        "fifo": fifo.as_uri(),
        "device": "file:///dev/zero",
        "directory": tmp_path.as_uri(),
        "missing": (tmp_path / "nope.fdsl").as_uri(),
    }


def test_requests_about_documents_the_client_never_opened_read_nothing(hostile_uris):
    async def body(client: Client) -> None:
        for what, uri in hostile_uris.items():
            client.text_document_did_save(lsp.DidSaveTextDocumentParams(text_document=_doc(uri)))
            started = time.monotonic()
            got = await _every_request(client, uri)
            assert time.monotonic() - started < 5, what
            assert got["hover"] is None and got["definition"] is None, what
            assert not got["symbols"] and not got["formatting"], what
            labels = _labels(got["completion"])
            assert "conv3x3" in labels and "columns" in labels, what  # the language's own words
            assert SECRET_WORD not in labels and "zz" not in labels, what  # nothing of the file
        # no diagnostics were published for any of them: the first to arrive is for a document opened now
        _open(client, TINY)
        first = await client.next_diagnostics()
        assert first.uri == URI and list(first.diagnostics) == []
        await asyncio.sleep(0.5)
        assert client.published.empty()

    run_session(body)


def test_a_document_opened_by_the_client_is_read_from_what_it_sent_not_from_disk(hostile_uris):
    uri = hostile_uris["unopened file"]  # on disk it holds SECRET, with an error and the secret key entry

    async def body(client: Client) -> None:
        _open(client, TINY, uri)
        assert list((await client.next_diagnostics()).diagnostics) == []
        client.text_document_did_save(lsp.DidSaveTextDocumentParams(text_document=_doc(uri)))
        assert list((await client.next_diagnostics()).diagnostics) == []
        got = await _every_request(client, uri)
        assert SECRET_WORD not in _labels(got["completion"]) and "conv" in _labels(got["completion"])
        # closed, it is unknown again: nothing is read from the file
        client.text_document_did_close(lsp.DidCloseTextDocumentParams(text_document=_doc(uri)))
        assert list((await client.next_diagnostics()).diagnostics) == []
        got = await _every_request(client, uri)
        assert got["hover"] is None and SECRET_WORD not in _labels(got["completion"])

    run_session(body)


def test_a_document_over_the_size_limit_gets_one_diagnostic_and_the_server_keeps_answering():
    big = TINY + ("# " + "x" * 98 + "\n") * ((1 << 20) // 100)  # about 1 MiB of comments
    assert len(big.encode()) > MAX_FILE_BYTES

    async def body(client: Client) -> None:
        started = time.monotonic()
        _open(client, big)
        (d,) = (await client.next_diagnostics()).diagnostics
        assert d.message == "document is larger than 64 KiB; this is not a fractal-dsl program"
        assert (d.range.start.line, d.range.start.character) == (0, 0)
        got = await _every_request(client, URI)
        assert time.monotonic() - started < 10
        assert got["hover"] is None and not got["symbols"] and not got["formatting"]
        assert "conv3x3" in _labels(got["completion"]) and "p" not in _labels(got["completion"])
        # typing into it is answered as quickly; cut back under the limit, it is analysed again
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=TINY)]))
        assert list((await client.next_diagnostics()).diagnostics) == []
        assert "p" in _labels((await _every_request(client, URI))["completion"])

    run_session(body)


def test_a_deep_expression_is_a_diagnostic_and_a_bad_request_an_error_without_a_traceback():
    deep = TINY.replace("(16, 0.0)", "(16, " + "-" * 800 + "0.0)")

    async def body(client: Client) -> None:
        _open(client, deep)
        (d,) = (await client.next_diagnostics()).diagnostics
        assert d.message.startswith("expression nested more than 64 levels deep")
        # a request the server cannot serve at all (an unknown method) is an error, never a traceback
        with pytest.raises(Exception) as err:
            await asyncio.wait_for(client.protocol.send_request_async("fractal/noSuchMethod", {}), TIMEOUT)
        assert "Traceback" not in str(err.value) and getattr(err.value, "data", None) in (None, {})
        got = await _every_request(client, URI)
        assert got["hover"] is None and "conv3x3" in _labels(got["completion"])

    run_session(body)


def test_an_error_answered_to_the_client_never_carries_a_traceback(monkeypatch):
    import sys

    from pygls.exceptions import JsonRpcInternalError
    from pygls.protocol import LanguageServerProtocol

    from fractal_dsl.lsp import server

    sent = []
    monkeypatch.setattr(LanguageServerProtocol, "_send_response", lambda self, msg_id, result=None, error=None: sent.append(error))
    try:
        raise IsADirectoryError(21, "Is a directory", "/etc")
    except OSError:
        error = JsonRpcInternalError.of(sys.exc_info()).to_response_error()
    assert error.data["traceback"]  # what pygls sends for a handler that raises
    server.protocol._send_response(1, error=error)
    (out,) = sent
    assert out.data is None and out.message == "IsADirectoryError: [Errno 21] Is a directory: '/etc'"


class RawClient:
    """The server as a subprocess spoken to in raw JSON-RPC frames: what pygls's own client
    cannot send (parameters that do not fit the protocol)."""

    def __init__(self) -> None:
        import subprocess
        import sys

        from conftest import ROOT

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        # unbuffered: select() then sees every byte not yet read (a buffered reader could hold
        # a whole answer that select() no longer reports, and the test would wait for nothing)
        self.proc = subprocess.Popen([sys.executable, "-m", "fractal_dsl.cli", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env, bufsize=0)

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def answer(self, msg_id, timeout: float = TIMEOUT) -> dict:
        """The response to request ``msg_id`` (notifications in between are skipped)."""
        import select

        end = time.monotonic() + timeout

        def read(n: int) -> bytes:  # exactly n bytes, waiting for each part until ``end``
            data = b""
            while len(data) < n:
                ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, end - time.monotonic()))
                assert ready, f"no answer to request {msg_id} within {timeout} s"
                part = self.proc.stdout.read(n - len(data))
                assert part, f"the server closed its output before answering request {msg_id}"
                data += part
            return data

        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += read(1)
            length = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
            message = json.loads(read(length))
            if message.get("id") == msg_id and "method" not in message:
                return message

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(TIMEOUT)


BAD_PARAMS = [
    None,
    [1, 2],
    {"textDocument": {"uri": 5}, "position": {"line": 0, "character": 0}},
    {"textDocument": {"uri": URI}, "position": {"line": -1, "character": "a"}},
    {"textDocument": {"uri": URI}},
]


def test_every_request_is_answered_even_with_parameters_that_do_not_fit():
    client = RawClient()
    try:
        client.send({"id": 0, "method": "initialize", "params": {"capabilities": {}}})
        assert client.answer(0)["result"]["serverInfo"]["name"] == "fractal-dsl"
        client.send({"method": "initialized", "params": {}})
        for i, params in enumerate(BAD_PARAMS, start=1):
            client.send({"id": i, "method": "textDocument/hover", **({} if params is None else {"params": params})})
            got = client.answer(i)  # an answer: nothing (a URI of 5 is read as "5") or an error without a traceback
            error = got.get("error", {"code": -32602, "message": ""})
            assert got.get("result") is None and error["code"] == -32602 and "data" not in error, (params, got)
            assert "Traceback" not in error["message"]
        # and it goes on answering: a completion about a file it was never given, then a clean shutdown
        client.send({"id": 50, "method": "textDocument/completion",
                     "params": {"textDocument": {"uri": "file:///etc/passwd"}, "position": {"line": 0, "character": 0}}})
        labels = {i["label"] for i in client.answer(50)["result"]["items"]}
        assert "conv3x3" in labels and "root" not in labels
        client.send({"id": 51, "method": "shutdown"})
        assert client.answer(51)["result"] is None
    finally:
        client.close()


def _raw_session(frames: bytes) -> subprocess.CompletedProcess:
    """The server fed ``frames`` after initialize, then shutdown and exit, on standard input."""
    from conftest import ROOT

    def frame(message: dict) -> bytes:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    data = (frame({"id": 1, "method": "initialize", "params": {"capabilities": {}}})
            + frame({"method": "initialized", "params": {}}) + frames
            + frame({"id": 999, "method": "shutdown"}) + frame({"method": "exit"}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "fractal_dsl.cli", "lsp"], input=data, capture_output=True,
                          cwd=ROOT, env=env, timeout=60, check=False)


@pytest.mark.parametrize("length", [b"99999999999999999999", b"2147483648"])
def test_a_content_length_past_the_limit_ends_the_session_with_one_line(length):
    r = _raw_session(b"Content-Length: " + length + b"\r\n\r\n{}")
    assert r.returncode == 1 and b'"id": 999' not in r.stdout  # nothing after it is read as a message
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "is over the limit of 64 MiB; the server stops" in err, err


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[1, 2]",
    b"[" * 100_000 + b"]" * 100_000,  # deeper than json's recursion
    b'{"jsonrpc": "2.0", "method": "x", "params": "\xff\xfe"}',  # not UTF-8
    json.dumps({"jsonrpc": "2.0", "id": {"a": 1}, "method": "textDocument/hover", "params": {}}).encode(),
    json.dumps({"jsonrpc": "2.0", "method": "textDocument/didChange",
                "params": {"textDocument": {"uri": URI, "version": 2}, "contentChanges": None}}).encode(),
])
def test_a_message_that_does_not_parse_is_logged_in_one_line_and_the_server_keeps_answering(body):
    r = _raw_session(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert r.returncode == 0 and b'"id": 999' in r.stdout
    err = r.stderr.decode()
    assert "Traceback" not in err and "File \"" not in err and err.count("\n") <= 2, err
