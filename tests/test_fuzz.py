"""Property-based tests: random and mutated programs end in a clean diagnostic or a network.

Mutations work on the examples' tokens (delete, insert, swap, duplicate, replace), and on raw
bytes; whatever comes out, fractal-dsl must either return a valid Network or raise a
FractalError whose every diagnostic is formatted ``NAME:LINE:COL: error: ...`` -- never any
other exception, never a hang -- and the CLI must exit 0 or 1 without a traceback.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from click.testing import CliRunner
from conftest import EXAMPLES
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fractal_dsl import FractalError, Network, load_source
from fractal_dsl.cli import main
from fractal_dsl.syntax import decode_source

TEXTS = {p.stem: p.read_text("utf-8") for p in EXAMPLES}
_TOKEN = re.compile(r"\s+|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|\d+(?:x\d+)+|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|.", re.DOTALL)
VOCAB = [
    "network", "input", "classes", "key", "columns", "blocks", "droppath", "local", "global", "per", "init", "xavier",
    "off", "batch", "sample", "join", "pool", "head", "stem", "conv", "f", "C", "c", "p", "mean", "sum",
    "max", "concat", "flat", "true", "false", "conv3x3", "linear", "flatten", "gap", "dropout",
    "maxpool", "avgpool", "batchnorm", "relu", "(", ")", "[", "]", "{", "}", ",", ".", "=", "+", "-",
    "0", "1", "2", "3", "40", "0.5", "-1", "1e9", "99999999999999999999", "3x32x32", "0x0x0",
    "1x1", "#", "\n", " ", "\t", "f[C+1]", "f[C-1]", "f[0]", "join(conv, conv)", "\u00e9", "\x00",
]
NAME_RE = r"[^\n]*:\d+:\d+: error: "
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


@st.composite
def mutated(draw) -> str:
    toks = tokens(draw(st.sampled_from(sorted(TEXTS.values()))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "swap", "duplicate", "replace"]))
        i = draw(st.integers(0, len(toks) - 1))
        j = draw(st.integers(0, len(toks) - 1))
        if op == "delete" and len(toks) > 1:
            del toks[i]
        elif op == "insert":
            toks.insert(i, draw(st.sampled_from(VOCAB)))
        elif op == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "duplicate":
            toks.insert(i, toks[j])
        else:
            toks[i] = draw(st.sampled_from(VOCAB))
    return "".join(toks)


def assert_clean(data: bytes) -> Network | None:
    """Load ``data``; anything but a Network or a well-formed FractalError fails the test."""
    try:
        net = load_source(decode_source(data, "fuzz.fdsl"))
    except FractalError as exc:
        text = exc.format()
        assert exc.diagnostics, "a FractalError must carry at least one diagnostic"
        assert re.match("fuzz.fdsl:\\d+:\\d+: error: ", text), text
        heads = [line for line in text.split("\n") if not line.startswith("    ")]
        assert all(re.match("fuzz.fdsl:\\d+:\\d+: error: ", h) for h in heads), text
        return None
    assert isinstance(net, Network)
    assert net.graph.number_of_nodes() >= 3
    return net


@FUZZ
@given(mutated())
def test_mutated_examples_end_cleanly(text):
    assert_clean(text.encode("utf-8"))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_end_cleanly(data):
    assert_clean(data)


@FUZZ
@given(st.lists(st.sampled_from(VOCAB), max_size=60).map(" ".join))
def test_random_token_soup_ends_cleanly(text):
    assert_clean(text.encode("utf-8"))


@FUZZ
@given(st.sampled_from(sorted(TEXTS.values())), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_byte_splices_end_cleanly(text, at, junk):
    data = text.encode("utf-8")
    at %= len(data) + 1
    assert_clean(data[:at] + junk + data[at:])


@settings(max_examples=25, deadline=None)
@given(mutated())
def test_cli_exits_0_or_1_without_traceback(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prog.fdsl"
        path.write_text(text, "utf-8")
        for args in (["check", str(path)], ["inspect", str(path)], ["inspect", "--json", str(path)]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code in (0, 1), (args, result.output, result.exception)
            assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
            assert "Traceback" not in result.output
            if result.exit_code == 1:
                assert re.match(NAME_RE, result.stderr), result.stderr


# ---- random expansion rules: valid ones must give a well-formed fractal --------------------

RULE_PROGRAM = """network r {{
  input 2x8x8
  classes 3
  key {{
    conv(c) = conv3x3(c) . relu
    wide(c) = conv1x1(c)
    join = {join}
    pool = identity
    head = gap . flatten . linear(classes)
  }}
  f[1] = {base}
  f[C+1] = {rule}
  columns {columns}
  blocks 4 4
}}
"""


def _parse_rule(text: str):
    """One of ``expr``'s strings as a tree: ``("leaf", name)``, ``("ref", "C" or "1")``,
    ``("join", branches)`` or ``("seq", parts)``."""
    pos = 0

    def item():
        nonlocal pos
        if text.startswith("join(", pos):
            pos += len("join(")
            branches = [seq()]
            while text.startswith(", ", pos):
                pos += 2
                branches.append(seq())
            assert text[pos] == ")"
            pos += 1
            return ("join", branches)
        m = re.compile(r"f\[(C|1)\]|\w+").match(text, pos)
        pos = m.end()
        return ("ref", m[1]) if m[1] else ("leaf", m[0])

    def seq():
        nonlocal pos
        parts = [item()]
        while text.startswith(" . ", pos):
            pos += 3
            parts.append(item())
        return parts[0] if len(parts) == 1 else ("seq", parts)

    tree = seq()
    assert pos == len(text)
    return tree


def rule_errors(rule: str, base: str, columns: int) -> set[int]:
    """The lines of RULE_PROGRAM the loader must report errors on, worked out independently:
    13 (``columns``) when the expansion is over the budget (units over 4,000 in its 2 blocks,
    columns over 64: joins add their branches' columns, a composition takes the widest), else
    12 (the rule) when a composition joins parts of different widths but 1, else 5 / 6 for
    ``conv`` / ``wide`` when no expanded index uses it; empty for a valid program."""
    trees = {1: _parse_rule(base), "C": _parse_rule(rule)}
    sizes: dict[int, tuple[int, int, bool]] = {}  # index -> (units, width, composes)

    def walk(e, c: int) -> tuple[int, int, bool]:
        kind, v = e
        if kind == "leaf":
            return 1, 1, True
        if kind == "ref":
            return size(c if v == "C" else 1)
        subs = [walk(x, c) for x in v]
        units, ok = sum(s[0] for s in subs), all(s[2] for s in subs)
        if kind == "join":
            return units, sum(s[1] for s in subs), ok
        return units, max(s[1] for s in subs), ok and len({s[1] for s in subs} - {1}) <= 1

    def size(n: int) -> tuple[int, int, bool]:
        if n not in sizes:
            sizes[n] = walk(trees[1] if n == 1 else trees["C"], n - 1)
        return sizes[n]

    units, width, ok = size(columns)
    if units * 2 > 4000 or width > 64:
        return {13}
    if not ok:
        return {12}
    reached, todo = set(), [columns]
    while todo:
        n = todo.pop()
        if n not in reached:
            reached.add(n)
            todo += [n - 1 if m == "C" else 1 for m in re.findall(r"f\[(C|1)\]", base if n == 1 else rule)]
    used = {w for n in reached for w in re.findall(r"\b(conv|wide)\b", base if n == 1 else rule)}
    return {line for name, line in (("conv", 5), ("wide", 6)) if name not in used}


def expr(depth: int = 0, leaves: tuple[str, ...] = ("conv", "wide", "f[C]", "f[1]")):
    """Random right-hand sides of RULE_PROGRAM's recursive rule, built from ``leaves``."""
    leaf = st.sampled_from(list(leaves))
    if depth >= 2:
        return leaf
    sub = st.deferred(lambda: expr(depth + 1, leaves))
    join = st.lists(sub, min_size=2, max_size=3).map(lambda bs: "join(" + ", ".join(bs) + ")")
    seq = st.lists(st.one_of(leaf, join), min_size=1, max_size=3).map(" . ".join)
    return st.one_of(leaf, join, seq)


@settings(max_examples=120, deadline=None)
@given(expr(), st.sampled_from(["conv", "conv . wide", "join(conv, wide)"]), st.integers(1, 4), st.sampled_from(["mean", "sum", "mean(flat=false)"]))
def test_random_rules_give_well_formed_fractals(rule, base, columns, join):
    text = RULE_PROGRAM.format(rule=rule, base=base, columns=columns, join=join)
    want = rule_errors(rule, base, columns)
    try:
        net = load_source(decode_source(text.encode("utf-8"), "fuzz.fdsl"))
    except FractalError as exc:
        assert_clean(text.encode("utf-8"))  # well-formed diagnostics
        event("diagnostic")
        # rejected only where an independent count says so, at the lines it names
        assert {d.span.line for d in exc.diagnostics} == want, (exc.format(), want)
        return
    event("valid")
    assert not want, f"accepted, but an independent count expects errors on lines {sorted(want)}"
    g = net.graph
    assert len(set(g.nodes)) == g.number_of_nodes()
    for n in net.nodes_in_order():
        a = g.nodes[n]["node"]
        assert all(1 <= c <= net.columns for c in a.columns)
        if a.kind not in ("layer", "join") or a.block is None:
            continue
        preds = [p for p in g.predecessors(n) if g.nodes[p]["node"].block == a.block and g.nodes[p]["node"].kind != "pool"]
        deepest = max((g.nodes[p]["node"].depth for p in preds), default=0)
        assert a.depth == deepest + (1 if a.kind == "layer" else 0), n
        assert a.column == min(a.columns)
        if a.kind == "join":
            ins = sorted((e["edge"] for *_, e in g.in_edges(n, data=True)), key=lambda e: e.index)
            assert [e.index for e in ins] == list(range(len(ins)))
            carried = [c for e in ins for c in e.columns]
            assert sorted(carried) == list(a.columns), "each column enters a join exactly once"
    # column k, walked through the joins, is one path; columns are numbered shallow to deep
    lengths = []
    for k in range(1, net.columns + 1):
        node, count = "output", 0
        while node != "input":
            preds = list(g.predecessors(node))
            if g.nodes[node]["node"].kind == "join":
                preds = [p for p in preds if k in g.edges[p, node]["edge"].columns]
            assert len(preds) == 1
            node = preds[0]
            count += g.nodes[node]["node"].kind == "layer"
        lengths.append(count)
    assert lengths == sorted(lengths)
