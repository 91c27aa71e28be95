"""`render -o net.html`: the interactive page, driven in headless Chromium through playwright.

The browser tests skip, saying why, only where no Chromium is installed (Debian: apt-get
install chromium; `.ci/run` installs it, so they run in CI).  Set FDSL_CHROMIUM to use
another Chromium binary.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT
from test_cli_check import PROBE

import fractal_dsl
from fractal_dsl import render, semantics, webview
from fractal_dsl.cli import main

CHROMIUM = os.environ.get("FDSL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium to drive the page (Debian: apt-get install chromium; or set FDSL_CHROMIUM)"
)
needs_graphviz = pytest.mark.skipif(shutil.which("neato") is None, reason="the Graphviz programs are not installed")
FLAGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
FRACTAL4 = ROOT / "examples" / "fractal4.fdsl"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium context with a fresh profile (its --user-data-dir)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield context
        context.close()


class Page:
    """An opened page, with what its console said and what it tried to fetch."""

    def __init__(self, context, path: Path) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.data = self.page.evaluate("window.fractalView.data")

    def ids(self, selector: str) -> set[str]:
        """The network's node ids of the drawn nodes matching ``selector``."""
        found = self.page.evaluate(f"Array.from(document.querySelectorAll({selector!r}), e => e.id)")
        return {self.data["nodes"][int(i.removeprefix("fd-n"))]["id"] for i in found if i.startswith("fd-n")}

    def el(self, node: str) -> str:
        return f"#fd-n{[n['id'] for n in self.data['nodes']].index(node)}"

    def hover(self, node: str) -> None:
        """Hover ``node``, with the whole drawing in view (the page opens at its top)."""
        self.page.click("#fd-fit")
        self.page.hover(self.el(node))


def written(tmp_path: Path, *args: str, source: Path = FRACTAL4) -> Path:
    out = tmp_path / "net.html"
    result = CliRunner().invoke(main, ["render", str(source), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def fractal4_page(browser, tmp_path_factory):
    page = Page(browser, written(tmp_path_factory.mktemp("html")))
    yield page
    page.page.close()


# -- the page in a browser -------------------------------------------------------------------
@needs_graphviz
@needs_chromium
def test_page_loads_without_errors_or_requests_and_draws_every_node(fractal4_page):
    net = fractal_dsl.load(FRACTAL4)
    assert fractal4_page.errors == []
    assert all(url.startswith("file:") for url in fractal4_page.requests), fractal4_page.requests
    assert fractal4_page.ids('g.node[id^="fd-n"]') == set(net.graph)
    assert len(fractal4_page.ids("g.node")) == len(net.graph)
    assert fractal4_page.page.title() == "fractal4: 5 blocks, 4 columns, join = mean"


@needs_graphviz
@needs_chromium
def test_hovering_a_node_shows_its_details(fractal4_page):
    net = fractal_dsl.load(FRACTAL4)
    node = net.node("b2_c3_d3_conv")
    fractal4_page.hover(node.id)
    facts = fractal4_page.page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('#fd-facts dt'), dt => [dt.textContent, dt.nextSibling.textContent]))"
    )
    assert fractal4_page.page.text_content("#fd-details h2") == node.id
    assert facts["layer"].startswith("conv2d(out_channels=128, kernel=3") and facts["layer"].endswith("→ relu")
    assert facts["shape in"] == facts["shape out"] == "128×16×16"
    assert facts["parameters"] == f"{node.params:,}" and facts["MACs"] == f"{node.macs:,}"
    assert (facts["block"], facts["column(s)"], facts["depth"]) == ("2", "3", str(node.depth))
    assert facts["dropout"] == "0.1"
    assert facts["module"] == node.module and node.module.startswith("block2.column3.")
    assert facts["source"] == f"{net.source_name}:{node.span.line}"
    join = net.node("b2_join_d8")
    fractal4_page.hover(join.id)
    assert fractal4_page.page.text_content("#fd-details h2") == join.id
    assert "join (mean) of 4" in fractal4_page.page.text_content("#fd-facts")


@needs_graphviz
@needs_chromium
def test_choosing_column_2_highlights_exactly_its_path(fractal4_page):
    net = fractal_dsl.load(FRACTAL4)
    page = fractal4_page.page
    page.select_option("#fd-column", "2")
    on, _ = semantics.column_path(net, 2)
    assert fractal4_page.ids("g.node.fd-on") == set(on)
    assert fractal4_page.ids("g.node.fd-dim") == set(net.graph) - set(on)
    params, macs = sum(net.node(v).params for v in on), sum(net.node(v).macs for v in on)
    assert page.text_content("#fd-status") == (
        f"column 2 (the path global drop-path keeps): 10 layers, {params:,} parameters, {macs:,} MACs"
    )
    page.select_option("#fd-column", "")
    assert fractal4_page.ids("g.node.fd-dim") == set() and page.text_content("#fd-status") == ""


@needs_graphviz
@needs_chromium
def test_collapsing_a_block_hides_its_nodes_and_expanding_shows_them(fractal4_page):
    net = fractal_dsl.load(FRACTAL4)
    page = fractal4_page.page
    block1 = {n.id for n in net.nodes() if n.block == 1 and n.kind != "pool"}
    visible = "Array.from(document.querySelectorAll('g.node'), e => [e.id, e.getClientRects().length > 0])"

    def shown() -> set[str]:
        found = [i for i, seen in page.evaluate(visible) if seen and i.startswith("fd-n")]
        ids = [fractal4_page.data["nodes"][int(i[4:])]["id"] for i in found]
        return set(ids)

    page.click("#fd-block1")
    assert shown() == set(net.graph) - block1
    assert page.is_visible("#fd-box1")
    assert "block 1 (collapsed): 15 layers, 4 joins" in page.text_content("#fd-box1")
    page.click("#fd-box1")  # the box expands again
    assert shown() == set(net.graph) and not page.is_visible("#fd-box1")
    page.click("#fd-collapse-all")
    assert shown() == {n.id for n in net.nodes() if n.block is None or n.kind == "pool"}
    page.click("#fd-expand-all")
    assert shown() == set(net.graph)


@needs_graphviz
@needs_chromium
def test_samples_follow_the_training_rule_and_liveness(fractal4_page):
    net = fractal_dsl.load(FRACTAL4)
    page = fractal4_page.page
    names = [n["id"] for n in fractal4_page.data["nodes"]]
    page.fill("#fd-seed", "7")
    page.click("#fd-sample")
    status = page.text_content("#fd-status")
    assert status.startswith("drop-path sample, seed 7: ")
    assert "same distribution" in page.text_content("#fd-note") and "not the same random stream" in page.text_content("#fd-note")
    assert page.input_value("#fd-seed") == "8"
    for seed in range(12):  # what the page fades is what semantics.live leaves out
        drawn = page.evaluate(f"window.fractalView.showSample({seed})")
        kept = {names[int(j)]: tuple(ins) for j, ins in drawn["kept"].items()}
        nodes, _ = semantics.live(net, kept)
        assert fractal4_page.ids("g.node.fd-dim") == set(net.graph) - nodes
        if drawn["mode"] == "global":
            assert nodes == semantics.column_path(net, drawn["column"])[0]
    # The distribution: global with probability 0.5, uniform columns; a local sample drops
    # each join input with probability 0.15 but never all of a join's inputs.
    stats = page.evaluate(
        """() => { const v = window.fractalView; let g = 0, cols = [0, 0, 0, 0], kept = 0, all = 0, empty = 0;
        for (let s = 0; s < 4000; s++) { const x = v.sample(s);
          if (x.mode === "global") { g++; cols[x.column - 1]++; continue; }
          for (const j in x.kept) { const n = v.data.nodes[j].inputs.length; all += n; kept += x.kept[j].length;
            if (!x.kept[j].length) empty++; } }
        return {g, cols, kept, all, empty}; }"""
    )
    assert 1850 < stats["g"] < 2150 and all(400 < c < 600 for c in stats["cols"])
    assert stats["empty"] == 0
    dropped = 1 - stats["kept"] / stats["all"]
    assert 0.10 < dropped < 0.16  # 0.15, less the inputs a join keeps when all would drop


@needs_graphviz
@needs_chromium
def test_zoom_and_fit_change_the_view_box(fractal4_page):
    page = fractal4_page.page
    box = "document.querySelector('#fd-canvas > svg').getAttribute('viewBox')"
    page.click("#fd-fit")
    whole = page.evaluate(box)
    page.click("#fd-zoom-in")
    zoomed = page.evaluate(box)
    assert float(zoomed.split()[2]) == pytest.approx(float(whole.split()[2]) / 1.25)
    page.mouse.move(500, 500)
    page.mouse.wheel(0, 200)
    assert page.evaluate(box) != zoomed
    page.click("#fd-fit")
    assert page.evaluate(box) == whole


@needs_graphviz
@needs_chromium
def test_block_view_and_initial_column(browser, tmp_path):
    net = fractal_dsl.load(FRACTAL4)
    page = Page(browser, written(tmp_path, "--block", "2", "--column", "3"))
    try:
        assert page.errors == []
        inside = {n.id for n in net.nodes() if n.block == 2}
        assert page.ids("g.node") == inside | {"b1_pool"}
        on, _ = semantics.column_path(net, 3)
        assert page.ids("g.node.fd-on") == (inside | {"b1_pool"}) & on
        assert page.page.text_content("#fd-status") == "column 3 (the path global drop-path keeps)"
    finally:
        page.page.close()


@needs_graphviz
@needs_chromium
def test_user_text_cannot_inject_script(browser, tmp_path):
    evil = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">\u2028'
    folder = tmp_path / "x"
    folder.mkdir()
    source = folder / "tiny.fdsl"
    source.write_text((ROOT / "examples" / "tiny.fdsl").read_text(), encoding="utf-8")
    net = fractal_dsl.load(source, display_name=evil + "tiny.fdsl")
    out = tmp_path / "evil.html"
    out.write_text(webview.page(net), encoding="utf-8")
    text = out.read_text(encoding="utf-8")
    assert "window.pwned" in text and "<script>window.pwned" not in text and "<img" not in text
    page = Page(browser, out)
    try:
        assert page.page.evaluate("window.pwned") is None
        assert page.errors == []
        page.hover("b1_c1_d1_conv")
        assert page.page.evaluate("document.querySelector('#fd-facts dd:last-of-type').textContent").startswith(evil)
    finally:
        page.page.close()


@needs_graphviz
@needs_chromium
def test_notebook_html_runs_in_its_iframe(browser):
    net = fractal_dsl.load(FRACTAL4)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content(net._repr_html_())
    frame = page.frames[1]
    frame.wait_for_selector("#fd-n0")
    assert frame.evaluate("document.querySelectorAll('g.node[id^=\"fd-n\"]').length") == len(net.graph)
    assert errors == []
    page.close()


# -- without a browser -----------------------------------------------------------------------
def test_embedded_json_cannot_end_its_script_element():
    text = webview.embed_json({"a": "</script><!-- & \u2028\u2029 >"})
    assert not re.search("[<>&\u2028\u2029]", text)
    assert json.loads(text) == {"a": "</script><!-- & \u2028\u2029 >"}


@needs_graphviz
def test_page_is_self_contained_and_its_data_matches_the_graph():
    net = fractal_dsl.load(FRACTAL4)
    text = webview.page(net)
    assert text.startswith("<!DOCTYPE html>") and "default-src 'none'" in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert text.count("<script") == 2  # the JSON and the page's own script, nothing fetched
    data = json.loads(re.search(r'<script type="application/json" id="fd-data">(.*?)</script>', text, re.DOTALL).group(1))
    assert [n["id"] for n in data["nodes"]] == net.nodes_in_order()
    assert len(data["edges"]) == net.graph.number_of_edges()
    assert data["colours"]["conv"] == render.COLOURS["conv"]  # one source of colours
    assert data["svg"].count('class="node') == len(net.graph) + 1  # and the legend


@pytest.mark.parametrize("name", ["tiny", "trunk"])
@needs_graphviz
def test_page_is_byte_identical_and_imports_no_torch(tmp_path, name):
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"{name}{seed}.html"
        args = ["render", f"examples/{name}.fdsl", "--column", "2", "-o", str(out)]
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": seed}, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert proc.stderr.strip().endswith("exit=0 torch=[]"), proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@needs_graphviz
def test_network_displays_itself_in_jupyter(monkeypatch):
    net = fractal_dsl.load(FRACTAL4)
    svg = net._repr_svg_()
    assert svg.startswith("<svg") and svg.count('class="node"') == len(net.graph) + 1
    frame = net._repr_html_()
    assert frame.startswith("<iframe ") and 'sandbox="allow-scripts"' in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)
    assert html.unescape(srcdoc) == webview.page(net)
    monkeypatch.setattr(render, "IMAGE_LIMIT", 100)
    assert net._repr_html_() is None  # over the image limit: Jupyter shows the next representation
    assert net._repr_svg_() is None  # fractal4 is drawn expanded (103 nodes, under COLLAPSE_ABOVE)


@needs_graphviz
@needs_chromium
def test_collapsed_page_opens_with_every_block_shut_and_a_c8_block_draws_every_node(browser, tmp_path):
    net = fractal_dsl.load(FRACTAL4)
    page = Page(browser, written(tmp_path, "--collapse"))
    try:
        assert page.errors == []
        hidden = page.ids("g.node.fd-hidden")
        assert hidden == {n.id for n in net.nodes() if n.block is not None and n.kind != "pool"}
        assert all(page.page.is_visible(f"#fd-box{b}") for b in range(1, 6))
    finally:
        page.page.close()
    wide = tmp_path / "tiny8.fdsl"
    wide.write_text((ROOT / "examples" / "tiny.fdsl").read_text().replace("columns 3", "columns 8"), encoding="utf-8")
    page = Page(browser, written(tmp_path, "--block", "1", source=wide))
    try:
        assert page.errors == []
        assert len(page.ids('g.node[id^="fd-n"]')) == 320 + 1  # block 1 and the input feeding it
    finally:
        page.page.close()


@needs_graphviz
@needs_chromium
def test_a_large_single_block_opens_drawn_not_as_an_empty_box(browser, tmp_path):
    """One block of seven columns is over the collapse threshold, but one box for one
    block would show nothing: the page opens with its layers drawn, titled `1 block`."""
    seven = tmp_path / "seven.fdsl"
    text = (ROOT / "examples" / "tiny.fdsl").read_text().replace("columns 3", "columns 7")
    seven.write_text(re.sub(r"blocks [^\n#]*", "blocks (16, 0.1)", text), encoding="utf-8")
    net = fractal_dsl.load(seven)
    assert net.blocks == 1 and len(net.graph) > render.COLLAPSE_ABOVE
    page = Page(browser, written(tmp_path, source=seven))
    try:
        assert page.errors == []
        assert page.ids("g.node.fd-hidden") == set()
        assert page.page.query_selector("#fd-box1") is None
        shown = page.ids('g.node[id^="fd-n"]')
        assert {n.id for n in net.nodes() if n.kind == "layer"} <= shown
        assert page.page.is_visible("#fd-n1")  # a layer at the top of the block is on screen
        assert page.data["title"].startswith(f"{net.name}: 1 block, 7 columns")
    finally:
        page.page.close()
    assert render.collapsed(fractal_dsl.loads(text), render.View())  # the same columns in three blocks: boxes


def test_sample_page_starts_with_the_compiled_modules_sample(tmp_path):
    out = written(tmp_path, "--sample", "3", source=ROOT / "examples" / "tiny.fdsl")
    data = json.loads(re.search(r'id="fd-data">(.*?)</script>', out.read_text("utf-8"), re.DOTALL).group(1))
    net = fractal_dsl.load(ROOT / "examples" / "tiny.fdsl")
    view = render.make_view(net, sample=3)
    assert data["initial"]["note"] == view.note and view.note.startswith("drop-path sample, seed 3")
    assert {data["nodes"][i]["id"] for i in data["initial"]["kept"]} == set(view.kept[0])


def test_column_paths_and_kept_inputs_by_column_agree_with_the_one_column_forms(example):
    net = fractal_dsl.load(example)
    assert semantics.column_paths(net) == [semantics.column_path(net, k) for k in range(1, net.columns + 1)]
    for j in semantics.joins(net):
        by_column = semantics.kept_inputs_by_column(net, j)
        assert by_column == tuple(semantics.kept_inputs(net, j, k) for k in range(1, net.columns + 1))
