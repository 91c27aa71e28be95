"""`fractal-dsl render`: golden DOT, images through `dot`, the views, errors, no torch import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, assert_golden
from test_cli_check import PROBE  # runs the CLI, then lists the torch modules loaded

import fractal_dsl
from fractal_dsl import layout, render, semantics
from fractal_dsl.cli import main

GOLDEN = ROOT / "tests" / "golden" / "render"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz 'dot' program is not installed")


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def svg_nodes(path: Path) -> list[str]:
    """The DOT node ids Graphviz drew in an SVG (the <title> of each class="node" group)."""
    ns = "{http://www.w3.org/2000/svg}"
    groups = ET.parse(path).getroot().iter(f"{ns}g")
    return [g.find(f"{ns}title").text for g in groups if g.get("class") == "node"]


def wide_network(columns: int = 8) -> fractal_dsl.Network:
    """tiny.fdsl widened to ``columns``: 2^C - 1 convs a block."""
    text = (ROOT / "examples" / "tiny.fdsl").read_text().replace("columns 3", f"columns {columns}")
    return fractal_dsl.loads(text, f"tiny{columns}.fdsl")


def test_dot_matches_golden(example):
    net = fractal_dsl.load(example)
    assert_golden(GOLDEN / f"{example.stem}.dot", render.to_dot(net))


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("fractal4-block1", ["--block", "1"]),
        ("fractal4-column2", ["--column", "2", "--block", "2"]),
        ("fractal4-collapsed", ["--collapse"]),
    ],
)
def test_views_match_golden(tmp_path, name, args):
    out = tmp_path / f"{name}.dot"
    result = run("render", ROOT / "examples" / "fractal4.fdsl", "-o", out, *args)
    assert result.exit_code == 0, result.output
    assert_golden(GOLDEN / f"{name}.dot", out.read_text(encoding="utf-8"))


@needs_dot
def test_every_example_renders_to_svg_and_png(example, tmp_path):
    net = fractal_dsl.load(example)
    render.write(net, tmp_path / "net.svg", "svg")
    render.write(net, tmp_path / "net.png", "png")
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = set(svg_nodes(tmp_path / "net.svg"))
    # Every graph node is drawn, unless blocks are collapsed (then each block is one box).
    assert drawn >= set(net.graph) or {f"block{b}" for b in range(1, net.blocks + 1)} <= drawn


@needs_dot
def test_svg_of_a_c4_block_has_its_15_convs_and_4_joins(tmp_path):
    out = tmp_path / "block.svg"
    result = run("render", ROOT / "examples" / "fractal4.fdsl", "--block", "1", "-o", out)
    assert result.exit_code == 0, result.output
    net = fractal_dsl.load(ROOT / "examples" / "fractal4.fdsl")
    kinds = [net.graph.nodes[v]["node"].kind if v in net.graph else v for v in svg_nodes(out)]
    convs = [v for v in svg_nodes(out) if v in net.graph and net.graph.nodes[v]["node"].op == "conv"]
    assert len(convs) == 15 and all(v.startswith("b1_") for v in convs)
    assert kinds.count("join") == 4
    # Besides them: the input feeding the block, the pool after it, the legend.
    assert sorted(kinds) == sorted(["layer"] * 15 + ["join"] * 4 + ["input", "pool", "legend"])


@needs_dot
def test_pdf_and_format_option(tmp_path):
    out = tmp_path / "diagram.bin"
    result = run("render", ROOT / "examples" / "tiny.fdsl", "-o", out, "--format", "PDF")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")


def test_layout_rows_and_joins():
    """Rows are rank=same subgraphs, columns ordered left to right, joins show their arity."""
    net = fractal_dsl.load(ROOT / "examples" / "fractal4.fdsl")
    dot = render.to_dot(net, render.View(block=1))
    assert dot.count("rank=same") == 8 + 4  # 8 depths of layers, 4 rows of joins
    assert "b1_c1_d1_conv -> b1_c2_d1_conv [style=invis]" in dot
    assert "b1_c3_d1_conv -> b1_c4_d1_conv [style=invis]" in dot
    for arity in (2, 3, 2, 4):
        assert f"join: mean of {arity}" in dot
    # Each branch enters its join at its own column's port: the deep one at c4, the shallow at c1.
    assert "b1_c4_d8_conv -> b1_join_d8:i4:n" in dot and "b1_c1_d1_conv -> b1_join_d8:i1:n" in dot


def dot_rows(dot: str, block: int) -> dict[str, int]:
    """``{node: row}`` from the ``rank=same`` subgraphs ``b{block}_row{i}`` of DOT source."""
    rows, row = {}, None
    for line in dot.splitlines():
        line = line.strip()
        if line.startswith("subgraph "):
            name = line.split()[1]
            row = int(name.split("_row")[1]) if name.startswith(f"b{block}_row") else None
        elif line == "}":
            row = None
        elif row is not None and "[" in line and "->" not in line and not line.startswith(("rank", "graph", "node", "edge")):
            rows[line.split(" ", 1)[0]] = row
    return rows


def test_nested_joins_get_rows_below_the_joins_they_take():
    net = fractal_dsl.load(ROOT / "examples" / "nested.fdsl")
    rows = dot_rows(render.to_dot(net, render.View(block=1)), 1)
    assert rows["b1_join_d4_2"] == rows["b1_join_d4"] + 1 == rows["b1_c3_d4_conv"] + 2


@pytest.mark.parametrize("column", [1, 2, 3, 4])
def test_column_path_is_what_global_drop_path_keeps(column):
    net = fractal_dsl.load(ROOT / "examples" / "fractal4.fdsl")
    nodes, edges = semantics.column_path(net, column)
    g = net.graph
    for b in range(1, net.blocks + 1):
        convs = [v for v in nodes if g.nodes[v]["node"].block == b and g.nodes[v]["node"].kind == "layer"]
        assert len(convs) == 2 ** (column - 1)
    for v in g:
        if g.nodes[v]["node"].kind == "join" and v in nodes:
            assert len([u for u in g.predecessors(v) if (u, v) in edges]) == 1
    # The kept edges form one chain from input to output.
    assert all(sum((u, v) in edges for u in g.predecessors(v)) == 1 for v in nodes if v != "input")


def test_column_view_fades_the_rest():
    net = fractal_dsl.load(ROOT / "examples" / "fractal3.fdsl")
    dot = render.to_dot(net, render.make_view(net, column=1, block=1))
    assert "column 1 (the path global drop-path keeps)" in dot
    assert 'b1_c1_d1_conv [label="conv(c=64, p=0.0)\\n64×32×32" color="#d62728"' in dot
    assert 'b1_c3_d1_conv [label="conv(c=64, p=0.0)\\n64×32×32" color="#cccccc"' in dot


def test_large_networks_collapse_by_default_and_still_render_expanded():
    net = wide_network(8)
    assert len(net.graph) > render.COLLAPSE_ABOVE
    collapsed = render.to_dot(net)
    assert 'block1 [label="block 1: 8 columns, depth 128' in collapsed and "b1_c8_d1_conv" not in collapsed
    expanded = render.to_dot(net, render.View(collapse=False))
    assert all(v in expanded for v in net.graph)


@needs_dot
def test_a_c8_block_renders_every_conv(tmp_path):
    """How long it takes is measured by benchmarks/render_speed.py, not here."""
    net = wide_network(8)
    render.write(net, tmp_path / "block.svg", "svg", render.View(block=1))
    convs = [v for v in svg_nodes(tmp_path / "block.svg") if v.startswith("b1_") and v.endswith("_conv")]
    assert len(convs) == 2**8 - 1


def render_without_dot(tmp_path: Path, out: Path) -> subprocess.CompletedProcess:
    """Run ``fractal-dsl render`` in a process whose PATH has no ``dot`` program."""
    return subprocess.run(
        [sys.executable, "-m", "fractal_dsl.cli", "render", "examples/tiny.fdsl", "-o", str(out)],
        check=False, capture_output=True, text=True, env={**os.environ, "PATH": str(tmp_path)}, cwd=ROOT, timeout=120,
    )  # fmt: skip


def test_dot_output_is_written_without_the_dot_program(tmp_path):
    out = tmp_path / "tiny.dot"
    proc = render_without_dot(tmp_path, out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == render.to_dot(fractal_dsl.load(ROOT / "examples" / "tiny.fdsl"))


def test_missing_dot_is_a_clear_error_and_keeps_the_dot_source(tmp_path):
    out = tmp_path / "tiny.png"
    proc = render_without_dot(tmp_path, out)
    assert proc.returncode == 1
    assert "apt-get install graphviz" in proc.stderr and "brew install graphviz" in proc.stderr
    assert str(tmp_path / "tiny.dot") in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert (tmp_path / "tiny.dot").read_text(encoding="utf-8").startswith("digraph tiny {")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--block", "9"], "error: --block 9: fractal3 has blocks 1 to 5"),
        (["--block", "0"], "error: --block 0: fractal3 has blocks 1 to 5"),
        (["--column", "0"], "error: --column 0: fractal3 has columns 1 to 3 (1 = shallowest)"),
        (["--column", "4"], "error: --column 4: fractal3 has columns 1 to 3 (1 = shallowest)"),
        (["--format", "gif"], "error: unknown format 'gif': choose one of svg, png, pdf, dot"),
        (["--column", "1", "--collapse"], "error: --column and --sample highlight single layers"),
        (["--column", "1", "--sample", "3"], "error: --column and --sample are two different highlights"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, args, message):
    result = run("render", ROOT / "examples" / "fractal3.fdsl", "-o", tmp_path / "out.svg", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not (tmp_path / "out.svg").exists()


def test_unknown_suffix_and_invalid_program(tmp_path):
    result = run("render", ROOT / "examples" / "fractal3.fdsl", "-o", tmp_path / "out.jpeg")
    assert result.exit_code == 2 and "unknown format 'jpeg'" in result.stderr
    result = run("render", ROOT / "examples" / "fractal3.fdsl", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "cannot tell the format" in result.stderr
    bad = tmp_path / "bad.fdsl"
    bad.write_text("network x {\n  input 3x32x32\n  columns 0\n}\n")
    result = run("render", bad, "-o", tmp_path / "out.svg")
    assert result.exit_code == 1 and f"{bad}:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("suffix", ["dot", pytest.param("svg", marks=needs_dot)])
def test_render_does_not_import_torch_and_is_deterministic(tmp_path, suffix):
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}.{suffix}"
        args = ["render", "examples/trunk.fdsl", "--column", "3", "-o", str(out)]
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.stderr.strip().endswith("exit=0 torch=[]"), proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0]


def test_sample_path_fades_dropped_join_inputs_and_what_only_they_use():
    net = fractal_dsl.load(ROOT / "examples" / "fractal3.fdsl")
    # Block 1's last join keeps only its shallow input; block 2's first join only its deep one.
    sample = {"mode": "local", "column": None, "joins": {"b1_join_d4": (2,), "b2_join_d2": (0,)}}
    nodes, edges = render.sample_path(net, sample)
    block1 = {v for v in nodes if net.graph.nodes[v]["node"].block == 1}
    assert block1 == {"b1_c1_d1_conv", "b1_join_d4", "b1_pool"}
    assert ("b1_c1_d1_conv", "b1_join_d4") in edges and ("b1_c2_d3_conv", "b1_join_d4") not in edges
    assert "b2_c2_d1_conv" not in nodes and {"b2_c3_d1_conv", "b2_c3_d2_conv", "b2_c2_d3_conv"} <= nodes
    dot = render.to_dot(net, render.View(block=1, collapse=False, kept=(nodes, edges)))
    assert 'b1_c3_d1_conv [label="conv(c=64, p=0.0)\\n64×32×32" color="#cccccc"' in dot
    assert 'b1_c2_d3_conv -> b1_join_d4:i2:n [color="#cccccc" style=dashed]' in dot


@pytest.mark.parametrize("suffix", ["dot", pytest.param("svg", marks=needs_dot)])
def test_unwritable_output_is_one_line_not_a_traceback(tmp_path, suffix):
    out = tmp_path / "missing-folder" / f"out.{suffix}"
    result = run("render", ROOT / "examples" / "tiny.fdsl", "-o", out)
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot write {out}: No such file or directory\n"


def test_a_block_too_large_for_dot_is_refused_for_images_but_not_for_dot(tmp_path):
    net = wide_network(12)  # 4,095 convs a block: dot would take minutes
    with pytest.raises(render.RenderError, match=r"block 1 has 5121 nodes, more than dot lays out"):
        render.write(net, tmp_path / "block.svg", "svg", render.View(block=1))
    assert not (tmp_path / "block.svg").exists()
    render.write(net, tmp_path / "block.dot", "dot", render.View(block=1))
    assert (tmp_path / "block.dot").read_text(encoding="utf-8").count("_conv [label=") == 2**12 - 1
    assert render.to_dot(net).count("box3d") == 3  # the default view: one box a block


@pytest.mark.parametrize("name", ["tiny", "trunk"])  # drop-path per batch, and per sample
def test_rendered_sample_is_what_the_model_samples_for_the_same_seed(tmp_path, name):
    import torch

    from fractal_dsl import codegen

    path = ROOT / "examples" / f"{name}.fdsl"
    net = fractal_dsl.load(path)
    module = codegen.load_module(codegen.generate(net), f"render_sample_{name}")
    modes = set()
    for seed in range(6):
        model = module.build(generator=torch.Generator().manual_seed(seed)).train()
        model(torch.randn(1, *net.input_shape))
        recorded = model.last_drop_path
        modes.add(recorded["mode"])
        out = tmp_path / f"{name}-{seed}.dot"
        result = run("render", path, "--sample", seed, "-o", out)
        assert result.exit_code == 0, result.output
        kept = render.sample_path(net, recorded)
        expected = render.View(collapse=False, kept=kept, note=render.make_view(net, sample=seed).note)
        assert out.read_text(encoding="utf-8") == render.to_dot(net, expected)
        if recorded["mode"] == "global":  # a global sample is exactly one column's path
            assert kept[0] == semantics.column_path(net, recorded["column"])[0]
    assert modes == {"global", "local"}


def test_sample_imports_torch_only_when_asked(tmp_path):
    out = tmp_path / "sample.dot"
    args = ["render", "examples/tiny.fdsl", "--sample", "3", "-o", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert "exit=0 torch=['torch'" in proc.stderr, proc.stderr
    assert "drop-path sample, seed 3" in out.read_text(encoding="utf-8")


def test_sample_needs_drop_path_and_a_usable_seed(tmp_path):
    text = (ROOT / "examples" / "tiny.fdsl").read_text()
    off = tmp_path / "off.fdsl"
    off.write_text(text.replace("droppath local 0.15 global 0.5 per batch", "droppath off"))
    result = run("render", off, "--sample", "1", "-o", tmp_path / "x.dot")
    assert result.exit_code == 2 and "trains without drop-path" in result.stderr
    result = run("render", ROOT / "examples" / "tiny.fdsl", "--sample", "-1", "-o", tmp_path / "x.dot")
    assert result.exit_code == 2 and "the seed must be a whole number" in result.stderr


def test_library_errors_name_parameters_and_the_cli_names_flags():
    net = fractal_dsl.load(ROOT / "examples" / "fractal3.fdsl")
    with pytest.raises(render.RenderError) as info:
        render.make_view(net, block=9)
    assert str(info.value) == "`block` 9: fractal3 has blocks 1 to 5"
    assert info.value.show() == "error: --block 9: fractal3 has blocks 1 to 5"
    assert info.value.exit_code == 2
    with pytest.raises(render.RenderError, match=r"cannot tell the format of a\{b\}: .* use `format`"):
        render.output_format("a{b}", None)  # braces in a user's path are not a template


def dot_positions(dot: str) -> dict[str, tuple[float, float]]:
    return {m[1]: (float(m[2]), float(m[3])) for m in re.finditer(r'^\s*(\w+) \[.*pos="([-\d.]+),([-\d.]+)!"', dot, re.MULTILINE)}


def test_expanded_drawings_are_placed_by_column_and_depth():
    """Layers sit in their column's lane, rows go down with depth, a join spans its lanes."""
    net = fractal_dsl.load(ROOT / "examples" / "fractal4.fdsl")
    dot = render.to_dot(net, render.View(block=1))
    pos = dot_positions(dot)
    assert set(pos) == set(render._drawing(net, render.View(block=1)).shown) | {"legend"}
    pitch = (render.LANE + render.NODESEP) * 72
    for v in pos:
        if v.startswith("b1_c"):
            node = net.node(v)
            assert pos[v][0] == layout.lane_x(node.column, pitch)
    ys = [pos[f"b1_c4_d{d}_conv"][1] for d in range(1, 9)]
    assert ys == sorted(ys, reverse=True) and len(set(ys)) == 8
    assert pos["b1_join_d8"][0] == layout.lane_x(2.5, pitch)  # the middle of lanes 1 to 4
    assert pos["b1_join_d8"][1] < pos["b1_c4_d8_conv"][1] and pos["b1_join_d8"][1] < pos["b1_c1_d1_conv"][1]
    assert pos["input"][1] > pos["b1_c1_d1_conv"][1] > pos["b1_pool"][1]
    # The collapsed view is a few boxes: dot lays it out, nothing is pinned.
    assert "pos=" not in render.to_dot(net, render.View(collapse=True))


@needs_dot
def test_the_wide_block_of_2302_nodes_renders(tmp_path):
    """The block that dot's own layout did not finish in 300 s (issue 13); timing is
    measured by benchmarks/render_speed.py --rule wide, not here."""
    text = (ROOT / "examples" / "tiny.fdsl").read_text().replace("columns 3", "columns 10")
    text = text.replace("f[C+1] = join(f[C] . f[C], conv)", "f[C+1] = join(f[C] . f[C], conv, conv, conv)")
    net = fractal_dsl.loads(text, "wide10.fdsl")
    render.write(net, tmp_path / "block.svg", "svg", render.View(block=1))
    assert sum(v.startswith("b1_") for v in svg_nodes(tmp_path / "block.svg")) == 2302
