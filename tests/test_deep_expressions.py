"""Deep expressions (issue 18, class 1): a small file whose expression is deep -- a chain of
unary minus, a long sum, nested joins or groups -- ends in one positioned diagnostic in every
command, never a ``RecursionError``; an expression just inside the bound works everywhere.

The parser bounds the depth of the tree it builds (:data:`fractal_dsl.syntax.MAX_NESTING`
levels, one per operator, join or bracketed group) before any stage recurses over it.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal_dsl import FractalError, load_source
from fractal_dsl.cli import main
from fractal_dsl.errors import Source
from fractal_dsl.fmt import format_text
from fractal_dsl.syntax import MAX_NESTING

TINY = next(p for p in EXAMPLES if p.stem == "tiny").read_text("utf-8")
DEEP = f"expression nested more than {MAX_NESTING} levels deep"
POSITIONED = re.compile(r"^[^\n:]+\.fdsl:\d+:\d+: error: " + re.escape(DEEP))


def with_value(value: str) -> str:
    """tiny.fdsl with ``value`` as block 1's dropout and as the key's default of ``p``."""
    return TINY.replace("(16, 0.0)", f"(16, {value})").replace("conv(c, p)", f"conv(c, p={value})")


def with_rule(expr: str) -> str:
    """tiny.fdsl, one column, with ``f[1] = expr``."""
    return TINY.replace("f[1] = conv", f"f[1] = {expr}").replace("columns 3", "columns 1")


def value_of_depth(n: int, ops: str = "n+-*/") -> str:
    """An arithmetic expression exactly ``n`` operators deep, cycling through ``ops``."""
    text, top = "0.0", None
    for i in range(n):
        op = ops[i % len(ops)]
        if op == "n":
            text, top = ("-" + text if top in (None, "n") else f"-({text})"), "n"
        elif op in "+-":
            text, top = f"{text} {op} 0", "+"
        else:
            text, top = (f"({text})" if top == "+" else text) + f" {op} 1", "*"
    return text


def bracket_depth(text: str) -> int:
    """How deeply brackets nest in ``text`` (comments skipped), as the parser counts them."""
    depth = deepest = 0
    for line in text.split("\n"):
        for ch in line.split("#", 1)[0]:
            depth += (ch in "([{") - (ch in ")]}")
            deepest = max(deepest, depth)
    return deepest


def rule_of_depth(n: int) -> str:
    """A rule expression ``n`` levels deep: joins and bracketed groups, alternately."""
    text = "conv"
    for i in range(n):
        text = f"join({text}, conv)" if i % 2 else f"({text})"
    return text


# the probes of the issue and their relatives: one line or spread over many
REFUSED = {
    "unary minus": with_value("-" * 800 + "0.0"),
    "long sum over lines": with_value("0 +\n" + "    1 +\n" * 2000 + "    1"),
    "long product": with_value(" * ".join(["1"] * 200)),
    "mixed arithmetic": with_value(value_of_depth(MAX_NESTING + 1)),
    "minus and brackets": with_value("-(" * 70 + "1" + ")" * 70),
    "nested joins": with_rule("join(" * 70 + "conv" + ", conv)" * 70),
    "nested groups and joins": with_rule(rule_of_depth(MAX_NESTING + 1)),
}
COMMANDS = {
    "check": lambda f, tmp: ["check", f],
    "inspect": lambda f, tmp: ["inspect", f],
    "compile": lambda f, tmp: ["compile", f, "-o", tmp / "net.py"],
    "render": lambda f, tmp: ["render", f, "-o", tmp / "net.dot"],
    "render html": lambda f, tmp: ["render", f, "-o", tmp / "net.html"],
    "fmt": lambda f, tmp: ["fmt", f],
    "fmt --check": lambda f, tmp: ["fmt", "--check", f],
}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_deep_expression_is_one_positioned_error_in_every_command(tmp_path, kind, command):
    path = tmp_path / "deep.fdsl"
    path.write_text(REFUSED[kind])
    before = path.read_bytes()
    r = cli(*COMMANDS[command](path, tmp_path))
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert POSITIONED.match(r.output), r.output
    assert "Traceback" not in r.output and "RecursionError" not in r.output
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["deep.fdsl"]


def test_the_error_points_at_the_level_past_the_bound():
    text = with_value("-" * 800 + "0.0")
    with pytest.raises(FractalError) as err:
        load_source(Source("deep.fdsl", text))
    (diag,) = err.value.diagnostics
    line = text.split("\n")[diag.span.line - 1]
    assert line[: diag.span.column - 1].count("-") == MAX_NESTING  # the 65th minus, not the first


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "text",
    [with_value(value_of_depth(MAX_NESTING)), with_rule(rule_of_depth(MAX_NESTING - 1))],
    ids=["value", "rule"],
)
def test_an_expression_at_the_bound_works_in_every_command(tmp_path, text, command):
    # a rule sits inside `network { }`, whose brace counts as a bracket: one level less
    path = tmp_path / "deep.fdsl"
    path.write_text(format_text(text))  # formatted, so that fmt leaves it alone
    r = cli(*COMMANDS[command](path, tmp_path))
    assert r.exit_code == 0, r.output


def test_the_language_server_reports_a_deep_expression_and_formats_one_at_the_bound():
    from fractal_dsl.lsp import analyse

    deep = analyse(REFUSED["unary minus"], "deep.fdsl")
    assert [d.message for d in deep.diagnostics] == [DEEP]
    fine = analyse(with_value(value_of_depth(MAX_NESTING)), "ok.fdsl")
    assert fine.diagnostics == [] and fine.facts is not None


@st.composite
def deep_value(draw) -> tuple[str, int]:
    depth = draw(st.integers(0, MAX_NESTING + 20))
    ops = draw(st.text(alphabet="n+-*/", min_size=1, max_size=6))
    return value_of_depth(depth, ops), depth


@settings(max_examples=40, deadline=None)
@given(deep_value(), st.sampled_from(["block", "default", "argument"]))
def test_random_deep_arithmetic_is_a_network_or_a_positioned_error(case, where):
    value, depth = case
    if where == "block":
        text = TINY.replace("(16, 0.0)", f"(16, {value})")
    elif where == "default":
        text = TINY.replace("conv(c, p)", f"conv(c, p={value})")
    else:
        text = TINY.replace("maxpool(2)", f"maxpool(2 + 0 * ({value}))")
    for step in (lambda: load_source(Source("deep.fdsl", text)), lambda: format_text(text, "deep.fdsl")):
        try:
            step()
        except FractalError as exc:
            shown = exc.show()
            assert re.match(r"deep\.fdsl:\d+:\d+: error: ", shown), shown
            too_deep = depth + 2 * (where == "argument") > MAX_NESTING or bracket_depth(text) > MAX_NESTING
            assert (DEEP in shown) == too_deep, shown


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["join", "group", "compose"]), max_size=MAX_NESTING + 10))
def test_random_deep_rules_are_a_network_or_a_positioned_error(shape):
    text, depth = "conv", 0
    for op in shape:
        if op == "join":
            text, depth = f"join({text}, conv)", depth + 1
        elif op == "group":
            text, depth = f"conv . ({text})", depth + 1
        else:
            text = f"conv . {text}"
    text = with_rule(text)
    try:
        load_source(Source("deep.fdsl", text))
    except FractalError as exc:
        shown = exc.show()
        assert re.match(r"deep\.fdsl:\d+:\d+: error: ", shown), shown
        assert (DEEP in shown) == (depth > MAX_NESTING or bracket_depth(text) > MAX_NESTING), shown


# ---- long flat chains: not deep, but long --------------------------------------------------


def long_chain(layers: int) -> str:
    """tiny.fdsl, one column and one block, whose unit is a key entry of ``layers`` relus
    written 140 to a line: just under the 64 KiB a file may hold."""
    names = ["relu"] * layers
    chain = " .\n      ".join(" . ".join(names[i : i + 140]) for i in range(0, layers, 140))
    text = TINY.replace("columns 3", "columns 1").replace("blocks (16, 0.0) (32, 0.1) (64, 0.2)", "blocks (16, 0.0)")
    return text.replace("join = mean", f"join = mean\n    r = {chain}").replace("f[1] = conv", "f[1] = conv . r")


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"fmt", "fmt --check"}) + ["render svg"])
def test_a_long_flat_chain_works_in_every_command(tmp_path, command):
    path = tmp_path / "long.fdsl"
    path.write_text(long_chain(8600))
    assert 60_000 < path.stat().st_size < 64 << 10
    args = ["render", path, "-o", tmp_path / "net.svg"] if command == "render svg" else COMMANDS[command](path, tmp_path)
    r = cli(*args)  # the diagram's tooltip for the unit is cut: Graphviz refuses strings over 16 KiB
    assert r.exit_code == 0, r.output


def test_fmt_refuses_to_join_a_long_chain_onto_one_line(tmp_path):
    path = tmp_path / "long.fdsl"
    path.write_text(long_chain(8600))
    r = cli("fmt", path)
    assert r.exit_code == 1 and "cannot format this file: this statement would become one line" in r.output
    assert path.read_text() == long_chain(8600)


def test_a_graphviz_failure_while_drawing_the_page_is_one_line(tmp_path, monkeypatch):
    import graphviz

    from fractal_dsl import webview

    def fail(*args, **kwargs):
        raise graphviz.CalledProcessError(1, ["neato"], stderr=b"Error: something Graphviz did not like\n")

    monkeypatch.setattr(webview, "page", fail)
    path = tmp_path / "tiny.fdsl"
    path.write_text(TINY)
    r = cli("render", path, "-o", tmp_path / "net.html")
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit)
    assert r.output == f"error: cannot write {tmp_path / 'net.html'}: dot failed: Error: something Graphviz did not like\n"
    assert not (tmp_path / "net.html").exists()


@pytest.mark.parametrize("setting", [
    "c=" + "-" * 3000 + "16",
    "c=" + "-(" * 500 + "16" + ")" * 500,
    "c=" + "+".join(["1"] * 5000),
    "columns=" + "9" * 5000,  # past int()'s 4,300 digits
    "block1.c=" + "9" * 5000,
])
def test_a_deep_or_long_set_value_is_one_message_not_a_traceback(tmp_path, setting):
    path = tmp_path / "tiny.fdsl"
    path.write_text(TINY, "utf-8")
    r = cli("check", path, "--set", setting)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "error: " in r.output
