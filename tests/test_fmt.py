"""`fractal-dsl fmt`: one canonical layout, comments kept, idempotent, never loses text.

The examples are kept formatted (``fmt --check examples/`` is a CI step and a test here);
formatting changes no fact of the network (the same ``inspect --json`` up to source
positions); random layouts of the same tokens format to the same text; comments survive.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import RULE_PROGRAM, mutated
from test_fuzz import expr as rule_expr

from fractal_dsl import FractalError, loads
from fractal_dsl.cli import main
from fractal_dsl.errors import Source
from fractal_dsl.fmt import format_text
from fractal_dsl.summary import describe
from fractal_dsl.syntax import parse

FIXTURES = ROOT / "tests" / "fixtures" / "fmt"
TEXTS = {p.stem: p.read_text("utf-8") for p in EXAMPLES}
_TOKEN = re.compile(r"#[^\n]*|\d+(?:x\d+)+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|[A-Za-z_][A-Za-z0-9_]*|\S")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def code_tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text) if not t.startswith("#")]


def comments(text: str) -> list[str]:
    return [t.rstrip() for t in _TOKEN.findall(text) if t.startswith("#")]


def facts(text: str) -> dict:
    """The `inspect --json` facts without the source positions and the file name."""
    data = describe(loads(text, "x.fdsl"))
    data.pop("file")
    for node in data["graph"]["nodes"]:
        node.pop("source")
    return data


# ---- the examples --------------------------------------------------------------------


def test_every_example_is_formatted(example):
    text = example.read_text("utf-8")
    assert format_text(text) == text


def test_fmt_check_examples_passes_as_in_ci(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = run("fmt", "--check", "examples/")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"0 files would be reformatted, {len(EXAMPLES)} files already formatted"


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_squashed_example_formats_back_to_itself_with_the_same_network(name):
    """Every example, its tokens on one line (comments dropped), formats to the example without comments."""
    text = TEXTS[name]
    squashed = " ".join(code_tokens(text))
    out = format_text(squashed)
    assert out == format_text(out)
    without_comments = format_text("\n".join(line.split("#")[0].rstrip() for line in text.splitlines()))
    assert out == without_comments
    assert facts(out) == facts(text)


# ---- a messy file: comments everywhere ------------------------------------------------


def test_messy_file_formats_to_the_expected_layout_with_every_comment():
    messy = (FIXTURES / "messy.fdsl").read_text("utf-8")
    expected = (FIXTURES / "messy.formatted.fdsl").read_text("utf-8")
    out = format_text(messy)
    assert out == expected
    assert format_text(out) == out
    assert comments(out) == comments(messy) and len(comments(out)) == 13
    assert code_tokens(out) == code_tokens(messy)
    assert facts(out) == facts(messy)
    # the layout rules the docs promise, on the expected text
    assert "network t {   # net\n  input 1x16x16\n  classes 10   # c\n  key {\n    conv(c, p) = conv3x3(c, bias=false)" in out
    assert "  blocks (16, 0.0)   # a\n      (32, 0.1)\n\n      # before last\n      (64, 0.2)   # channels, dropout\n" in out
    assert "    head = gap . flatten . linear(classes)   # head\n    # end key\n  }\n" in out
    assert out.startswith("# header\n\n# header2\nnetwork t {") and out.endswith("}\n# trailer\n\n# trailer 2\n")


def test_trailing_comments_on_consecutive_lines_are_aligned():
    src = "network a {   # n\n  input 1x8x8 # the input\n  classes 2 # two\n  columns 1 # one\n}\n"
    out = format_text(src)
    assert out == "network a {     # n\n  input 1x8x8   # the input\n  classes 2     # two\n  columns 1     # one\n}\n"


def test_line_endings_byte_order_mark_and_empty_blocks():
    tiny = TEXTS["tiny"]
    assert format_text(tiny.replace("\n", "\r\n")) == tiny
    assert format_text("\ufeff" + tiny) == tiny
    assert format_text(tiny.rstrip("\n")) == tiny
    assert format_text("network x {}") == "network x {\n}\n"
    assert format_text("network x { key { } }") == "network x {\n  key {\n  }\n}\n"
    assert format_text("network x { f # c\n [1] = conv }") == "network x {\n  f   # c\n      [1] = conv\n}\n"


def test_a_statement_too_long_for_one_line_is_refused_where_it_starts():
    tiny = TEXTS["tiny"]
    long = tiny.replace("blocks (16, 0.0) (32, 0.1) (64, 0.2)", "blocks " + "\n    ".join(["(64, 0.0)"] * 120))
    with pytest.raises(FractalError) as exc:
        format_text(long, "long.fdsl")
    (d,) = exc.value.diagnostics
    assert d.message == "cannot format this file: this statement would become one line of 1,230 characters (the limit is 1,000)"
    assert (d.span.line, d.span.column) == (17, 3) and "comment" in d.hint
    # with a comment inside it, the statement keeps that line break and formats
    split = long.replace("(64, 0.0)\n", "(64, 0.0)   # half\n", 60)
    out = format_text(split)
    assert max(len(line) for line in out.splitlines()) <= 1000 and format_text(out) == out


# ---- hypothesis: random layouts and random programs ----------------------------------

# test_fuzz's random rule programs, with calls that take arguments and groups as leaves too
LEAVES = ("conv", "wide", "f[C]", "f[1]", "conv(2)", "(wide . conv)")


def expr():
    return rule_expr(leaves=LEAVES)


programs = st.one_of(
    st.sampled_from(sorted(TEXTS.values())),
    st.builds(lambda rule, base, columns, join: RULE_PROGRAM.format(rule=rule, base=base, columns=columns, join=join),
              expr(), st.sampled_from(["conv", "conv . wide", "join(conv, wide)"]), st.integers(1, 3),
              st.sampled_from(["mean", "sum", "mean(flat=false)"])),
)
PUNCT = set("()[]{},.=+-")
SEPARATORS = [" ", "  ", "\t", "\n", "\n\n\n", " \n    ", "", "", " # a comment\n", "\n# own line\n", "\n\n  #x\n\n"]


@st.composite
def relaid(draw, with_comments: bool = True) -> str:
    """A program's tokens with random whitespace, line breaks and comments between them."""
    toks = code_tokens(draw(programs))
    # without comments, no blank lines either: those are the layout the formatter keeps
    seps = SEPARATORS if with_comments else [s for s in SEPARATORS if "#" not in s and "\n\n" not in s]
    out = [toks[0]]
    for prev, tok in itertools.pairwise(toks):
        sep = draw(st.sampled_from(seps))
        if sep == "" and not (prev in PUNCT or tok in PUNCT):
            sep = " "
        if sep == "" and prev in "+-" and tok[:1].isdigit():
            sep = " "  # `C-1` must stay three tokens, not `C` and the number `-1`
        out += [sep, tok]
    heads, tails = ["", "\n\n"], ["", "\n"]
    if with_comments:
        heads, tails = heads + ["# head\n"], tails + ["  # tail", "\n\n# end\n"]
    return draw(st.sampled_from(heads)) + "".join(out) + draw(st.sampled_from(tails))


@SETTINGS
@given(relaid())
def test_random_layouts_format_idempotently_keeping_tokens_comments_and_network(text):
    out = format_text(text)  # every layout of a program that parses formats
    assert format_text(out) == out
    assert code_tokens(out) == code_tokens(text)
    assert comments(out) == comments(text)
    try:
        before = facts(text)
    except FractalError:
        with pytest.raises(FractalError):
            loads(out)
        return
    assert facts(out) == before


@SETTINGS
@given(relaid(with_comments=False))
def test_layout_without_comments_is_canonical(text):
    """Whatever the spaces, tabs and line breaks, the same tokens give the same text."""
    assert format_text(text) == format_text(" ".join(code_tokens(text)))


@SETTINGS
@given(st.sampled_from(sorted(TEXTS.values())), st.integers(0, 10_000), st.sampled_from(["(", "}", "=", "..", "[", "x", "3x", ",,"]))
def test_broken_programs_raise_the_same_diagnostics_as_check(text, at, junk):
    at %= len(text)
    broken = text[:at] + junk + text[at:]
    try:
        out = format_text(broken)
    except FractalError as exc:
        with pytest.raises(FractalError) as parsed:
            parse(Source("<string>", broken))
        assert [d.message for d in exc.diagnostics] == [d.message for d in parsed.value.diagnostics]
        return
    assert format_text(out) == out
    assert code_tokens(out) == code_tokens(broken)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_programs_format_or_end_in_a_diagnostic(text):
    """test_fuzz's token mutations of the examples: a clean FractalError, or a faithful, idempotent layout."""
    try:
        out = format_text(text)
    except FractalError as exc:
        assert exc.diagnostics
        return
    assert format_text(out) == out
    # only whitespace moved: the code's characters are the same (a token glued to the next,
    # as in `local0.15`, which the language reads as `local 0.15`, may gain a space)
    assert "".join(code_tokens(out)) == "".join(code_tokens(text)) and comments(out) == comments(text)


# ---- the command line ----------------------------------------------------------------


@pytest.fixture
def messy(tmp_path) -> Path:
    path = tmp_path / "messy.fdsl"
    path.write_bytes((FIXTURES / "messy.fdsl").read_bytes())
    return path


def test_fmt_rewrites_in_place_atomically_keeping_the_mode(messy):
    os.chmod(messy, 0o640)
    result = run("fmt", str(messy))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"reformatted {messy}\n1 file reformatted, 0 files left unchanged\n"
    assert messy.read_text("utf-8") == (FIXTURES / "messy.formatted.fdsl").read_text("utf-8")
    assert stat.S_IMODE(messy.stat().st_mode) == 0o640
    assert sorted(p.name for p in messy.parent.iterdir()) == ["messy.fdsl"]  # no temporary file left
    again = run("fmt", str(messy))
    assert again.exit_code == 0 and "0 files reformatted, 1 file left unchanged" in again.stderr


def test_fmt_check_names_the_files_that_would_change_and_writes_nothing(messy, tmp_path):
    good = tmp_path / "good.fdsl"
    good.write_text(TEXTS["tiny"], "utf-8")
    before = messy.read_bytes()
    result = run("fmt", "--check", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == f"would reformat {messy}\n1 file would be reformatted, 1 file already formatted\n"
    assert result.stdout == ""
    assert messy.read_bytes() == before


def test_fmt_diff_prints_a_unified_diff_that_patches_the_file(messy):
    before = messy.read_text("utf-8")
    result = run("fmt", "--diff", str(messy))
    assert result.exit_code == 0, result.output
    assert messy.read_text("utf-8") == before
    lines = result.stdout.splitlines()
    assert lines[0] == f"--- {messy}" and lines[1] == f"+++ {messy}"
    assert "-  key{ conv(c,p)=conv3x3(c,bias = false).dropout( p ). batchnorm.relu" in lines
    assert "+    conv(c, p) = conv3x3(c, bias=false) . dropout(p) . batchnorm . relu" in lines
    # applying the hunks gives the formatted text
    assert _apply(before, result.stdout) == (FIXTURES / "messy.formatted.fdsl").read_text("utf-8")
    assert run("fmt", "--check", "--diff", str(messy)).exit_code == 1


def _apply(text: str, diff: str) -> str:
    old = text.splitlines(keepends=True)
    out, pos = [], 0
    lines = diff.splitlines(keepends=True)[2:]
    i = 0
    while i < len(lines):
        m = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", lines[i])
        assert m, lines[i]
        start = int(m.group(1)) - (0 if m.group(2) == "0" else 1)
        out += old[pos:start]
        pos = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            tag, body = lines[i][0], lines[i][1:]
            if tag in " -":
                assert old[pos] == body
                pos += 1
            if tag in " +":
                out.append(body)
            i += 1
    return "".join(out + old[pos:])


def test_a_file_that_does_not_parse_is_left_untouched_with_its_diagnostics(tmp_path, messy):
    bad = tmp_path / "bad.fdsl"
    data = b"network bad {\n  input 3x32x32\n  columns = 3\n}\n"
    bad.write_bytes(data)
    result = run("fmt", str(bad), str(messy))
    assert result.exit_code == 1
    assert bad.read_bytes() == data
    check = run("check", str(bad))
    assert check.exit_code == 1
    assert check.stderr in result.stderr  # the same diagnostics as `check`, the same count line
    assert f"{bad}:3:11: error: unexpected '='" in result.stderr
    assert "1 file reformatted, 0 files left unchanged, 1 file not formatted (errors above)" in result.stderr
    assert messy.read_text("utf-8") == (FIXTURES / "messy.formatted.fdsl").read_text("utf-8")  # the others still are
    assert "Traceback" not in result.output


def test_fmt_reads_standard_input_and_writes_standard_output():
    messy = (FIXTURES / "messy.fdsl").read_text("utf-8")
    result = run("fmt", "-", input=messy)
    assert result.exit_code == 0, result.output
    assert result.stdout == (FIXTURES / "messy.formatted.fdsl").read_text("utf-8")
    assert result.stderr == ""
    check = run("fmt", "--check", "-", input=messy)
    assert check.exit_code == 1 and check.stdout == "" and "would reformat <stdin>" in check.stderr
    assert run("fmt", "--check", "-", input=TEXTS["tiny"]).exit_code == 0
    bad = run("fmt", "-", input="network x { input 3 }")
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr.startswith("<stdin>:1:19: error: unexpected '3'; expected a shape like 3x32x32")


def test_check_reads_standard_input():
    ok = run("check", "-", input=TEXTS["tiny"])
    assert ok.exit_code == 0 and ok.stdout == "<stdin>: ok: tiny: 3 columns, 3 blocks, depth 12, 265,306 parameters\n"
    bad = run("check", "-", input=TEXTS["tiny"].replace("f[1] = conv", "f[1] = cnov"))
    assert bad.exit_code == 1
    assert bad.stderr.startswith("<stdin>:14:10: error: unknown layer `cnov`") and bad.stderr.endswith("1 error in <stdin>\n")
    binary = run("check", "-", input=b"network \xff")
    assert binary.exit_code == 1 and "invalid UTF-8 byte 0xff" in binary.stderr


@pytest.mark.parametrize("args", [("fmt",), ("fmt", "no/such.fdsl"), ("fmt", "--frobnicate", "examples")])
def test_fmt_bad_command_line_use_exits_2(args, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = run(*args)
    assert result.exit_code == 2 and result.stderr.startswith("Usage:")


def test_fmt_on_a_folder_without_fdsl_files_says_so(tmp_path):
    result = run("fmt", "--check", str(tmp_path))
    assert result.exit_code == 0
    assert f"{tmp_path}: no .fdsl files" in result.stderr


def test_inspect_json_is_the_same_after_formatting(tmp_path, monkeypatch):
    """The `inspect --json` of a messy layout and of its formatted text differ only in source positions."""
    monkeypatch.chdir(tmp_path)
    Path("a.fdsl").write_bytes((FIXTURES / "messy.fdsl").read_bytes())
    before = json.loads(run("inspect", "--json", "a.fdsl").stdout)
    assert run("fmt", "a.fdsl").exit_code == 0
    after = json.loads(run("inspect", "--json", "a.fdsl").stdout)
    moved = [(b["id"], b["source"], a["source"]) for b, a in zip(before["graph"]["nodes"], after["graph"]["nodes"]) if b["source"] != a["source"]]
    assert moved  # the messy file's layout did move things
    for data in (before, after):
        for node in data["graph"]["nodes"]:
            node.pop("source")
    assert before == after
