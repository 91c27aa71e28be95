"""Highlighting: the Pygments lexer (and its entry point), the TextMate grammar, the VS Code folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import EXAMPLES, ROOT
from pygments.token import Comment, Error, Keyword, Name, Number

from fractal_dsl.layers import BUILTINS
from fractal_dsl.lexer import BUILTIN_LAYERS, FdslLexer
from fractal_dsl.syntax import INIT_SCHEMES

EDITORS = ROOT / "editors"
GRAMMAR = EDITORS / "fdsl.tmLanguage.json"
VSCODE = EDITORS / "vscode"


# ---- Pygments ------------------------------------------------------------------------


def test_lexer_has_no_error_tokens_on_any_example_and_keeps_the_text(example):
    text = example.read_text("utf-8")
    toks = list(FdslLexer().get_tokens(text))
    assert [v for k, v in toks if k in Error] == []
    assert "".join(v for _, v in toks) == text


def test_lexer_classifies_the_language():
    toks = [(k, v) for k, v in FdslLexer().get_tokens((ROOT / "examples" / "trunk.fdsl").read_text("utf-8")) if v.strip()]
    kinds = {}
    for k, v in toks:
        kinds.setdefault(v, set()).add(k)
    assert kinds["network"] == {Keyword.Declaration} and kinds["trunk"] == {Name.Namespace}
    assert kinds["columns"] == {Keyword} and kinds["droppath"] == {Keyword} and kinds["join"] == {Keyword, Name.Function}
    assert kinds["conv3x3"] == {Name.Builtin} and kinds["relu"] == {Name.Builtin}
    assert kinds["wide"] == {Name.Function, Name}  # defined in the key, used in a rule
    assert kinds["bias"] == {Name} and kinds["false"] == {Keyword.Constant}
    assert kinds["f"] == {Name.Class}
    assert kinds["1x16x16"] == {Number.Integer} and kinds["0.1"] == {Number.Float}
    assert all(k in Comment for k, v in toks if v.startswith("#"))


def test_lexer_knows_every_builtin_layer():
    assert set(BUILTIN_LAYERS) == set(BUILTINS)


def test_lexer_entry_point_is_declared_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["entry-points"]["pygments.lexers"] == {"fdsl": "fractal_dsl.lexer:FdslLexer"}


def _pygmentize(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pygments", *args], check=False, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_pygmentize_finds_the_lexer_through_the_pyproject_entry_point(tmp_path):
    """The entry point as pyproject declares it, in a stand-in distribution: `pygmentize -l fdsl` works."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    info = tmp_path / "fdsl_entry_point_probe-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fdsl-entry-point-probe\nVersion: 0.0\n", "utf-8")
    lines = ["[pygments.lexers]"] + [f"{k} = {v}" for k, v in project["entry-points"]["pygments.lexers"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", "utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    raw = _pygmentize("-l", "fdsl", "-f", "raw", "examples/fractal4.fdsl", env=env)
    assert raw.returncode == 0, raw.stderr
    assert "Token.Error" not in raw.stdout and "Token.Name.Builtin\t'conv3x3'" in raw.stdout


def _installed_entry_point():
    return [ep for ep in metadata.entry_points(group="pygments.lexers") if ep.value == "fractal_dsl.lexer:FdslLexer"]


@pytest.mark.skipif(not _installed_entry_point(), reason="the installed fractal-dsl predates the pygments.lexers entry point; "
                    "reinstall it (pip install -e '.[dev]', as .ci/run does) to run this check")
def test_installed_pygmentize_highlights_fractal4():
    """The issue's check: `pygmentize -l fdsl examples/fractal4.fdsl` prints highlighted text, no error tokens."""
    shown = _pygmentize("-l", "fdsl", "-f", "terminal", "examples/fractal4.fdsl")
    assert shown.returncode == 0, shown.stderr
    assert "\x1b[" in shown.stdout and "conv3x3" in shown.stdout
    raw = _pygmentize("-l", "fdsl", "-f", "raw", "examples/fractal4.fdsl")
    assert raw.returncode == 0 and "Token.Error" not in raw.stdout
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename

    assert isinstance(get_lexer_by_name("fdsl"), FdslLexer)
    assert isinstance(get_lexer_for_filename("x.fdsl"), FdslLexer)


# ---- TextMate ------------------------------------------------------------------------

# the keys the TextMate grammar schema (tmlanguage.json) allows
GRAMMAR_KEYS = {"$schema", "name", "scopeName", "fileTypes", "firstLineMatch", "foldingStartMarker", "foldingStopMarker",
                "patterns", "repository", "injections", "injectionSelector", "uuid", "comment", "information_for_contributors"}
PATTERN_KEYS = {"comment", "disabled", "include", "match", "name", "contentName", "begin", "end", "while", "captures",
                "beginCaptures", "endCaptures", "whileCaptures", "patterns", "repository", "applyEndPatternLast"}


def _grammar() -> dict:
    return json.loads(GRAMMAR.read_text("utf-8"))


def _patterns(node: dict):
    yield node
    for p in node.get("patterns", []):
        yield from _patterns(p)
    for cap in ("captures", "beginCaptures", "endCaptures", "whileCaptures"):
        for c in node.get(cap, {}).values():
            yield from _patterns(c)


def test_textmate_grammar_has_only_schema_keys_and_valid_regexes():
    g = _grammar()
    assert set(g) <= GRAMMAR_KEYS
    assert g["scopeName"] == "source.fdsl" and g["fileTypes"] == ["fdsl"] and g["patterns"]
    repo = g["repository"]
    for entry in [*g["patterns"], *repo.values()]:
        for p in _patterns(entry):
            assert set(p) <= PATTERN_KEYS, set(p) - PATTERN_KEYS
            if "include" in p:
                assert p["include"].startswith("#") and p["include"][1:] in repo, p["include"]
            for key in ("match", "begin", "end", "while"):
                if key in p:
                    re.compile(p[key], re.MULTILINE)
            if "name" in p:
                assert p["name"].endswith(".fdsl"), p["name"]
            for cap in ("captures", "beginCaptures", "endCaptures"):
                assert all(k.isdigit() for k in p.get(cap, {}))


def _scopes(text: str) -> list[tuple[str, str]]:
    """Tokenise like a TextMate engine on single-line `match` rules: earliest match first, then rule order."""
    g = _grammar()
    rules = [g["repository"][p["include"][1:]] for p in g["patterns"]]
    out = []
    for line in text.split("\n"):
        pos = 0
        while pos < len(line):
            best = None
            for rule in rules:
                m = re.compile(rule["match"]).search(line, pos)
                if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                    best = (m, rule)
            if best is None:
                break
            m, rule = best
            assert line[pos : m.start()].strip() == "", f"unscoped text {line[pos:m.start()]!r} in {line!r}"
            names = {int(k): v["name"] for k, v in rule.get("captures", {}).items()}
            if rule.get("name"):
                out.append((m.group(), rule["name"]))
            for i, name in names.items():
                if m.group(i):
                    out.append((m.group(i), name))
            pos = m.end()
        assert line[pos:].strip() == "", f"unscoped text {line[pos:]!r}"
    return out


def test_textmate_grammar_scopes_every_token_of_every_example():
    for path in EXAMPLES:
        scoped = _scopes(path.read_text("utf-8"))
        assert scoped, path
    trunk = {v: s for v, s in _scopes((ROOT / "examples" / "trunk.fdsl").read_text("utf-8")) if not v.startswith("#")}
    assert trunk["network"] == "storage.type.network.fdsl" and trunk["trunk"] == "entity.name.type.network.fdsl"
    assert trunk["conv5x5"] == "support.function.layer.fdsl" and trunk["droppath"] == "keyword.other.fdsl"
    assert trunk["1x16x16"] == "constant.numeric.fdsl" and trunk["0.1"] == "constant.numeric.fdsl"
    assert trunk["wide"] == "variable.other.fdsl"  # its last occurrence: a use in a rule
    defined = [v for v, s in _scopes((ROOT / "examples" / "trunk.fdsl").read_text("utf-8")) if s == "entity.name.function.key.fdsl"]
    assert defined == ["conv", "wide", "join", "pool", "head"]


def test_textmate_grammar_keywords_match_the_language():
    keywords = re.search(r"\((.*)\)", _grammar()["repository"]["keyword"]["match"]).group(1).split("|")
    grammar = (ROOT / "grammars" / "fractal.lark").read_text("utf-8")
    literals = set(re.findall(r'"([a-z]+)"', grammar)) - {"network"}
    assert set(keywords) == literals
    builtins = re.search(r"\((.*)\)", _grammar()["repository"]["builtin"]["match"]).group(1).split("|")
    assert set(builtins) == set(BUILTINS)
    assert set(INIT_SCHEMES).isdisjoint(keywords)


# ---- the VS Code extension folder ----------------------------------------------------


def test_vscode_extension_uses_the_grammar_and_starts_the_server():
    pkg = json.loads((VSCODE / "package.json").read_text("utf-8"))
    (lang,) = pkg["contributes"]["languages"]
    assert lang["id"] == "fdsl" and lang["extensions"] == [".fdsl"]
    assert (VSCODE / lang["configuration"]).is_file()
    json.loads((VSCODE / lang["configuration"]).read_text("utf-8"))
    (grammar,) = pkg["contributes"]["grammars"]
    assert grammar["language"] == "fdsl" and grammar["scopeName"] == _grammar()["scopeName"]
    assert (VSCODE / grammar["path"]).read_bytes() == GRAMMAR.read_bytes(), "the extension's copy of the grammar is stale"
    assert pkg["activationEvents"] == ["onLanguage:fdsl"] and "vscode-languageclient" in pkg["dependencies"]
    setting = pkg["contributes"]["configuration"]["properties"]["fractalDsl.server.command"]
    assert setting["default"] == ["fractal-dsl", "lsp"]
    main = (VSCODE / pkg["main"]).read_text("utf-8")
    assert '"server.command", ["fractal-dsl", "lsp"]' in main and "TransportKind.stdio" in main


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_vscode_extension_script_is_valid_javascript():
    proc = subprocess.run(["node", "--check", str(VSCODE / "extension.js")], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
