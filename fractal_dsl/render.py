"""Render stage: a validated :class:`Network` -> Graphviz DOT source -> SVG / PNG / PDF.

The layout follows Figure 1 of Larsson et al. (ICLR 2017): the columns of a block stand
side by side, shallowest (column 1) on the left, depth runs downward, and the layers of
one depth sit on one row across all columns (a ``rank=same`` subgraph per row). Joins get
their own row just below the deepest layer they join, are drawn as wide bars, and say how
many inputs they average. Pools sit between blocks; a legend gives the layer key.

Building the DOT source needs neither torch nor the ``dot`` program; only :func:`write`
runs ``dot``, and only for an image. :func:`draw_sample` (``render --sample``) compiles the
network and so imports torch, lazily.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import graphviz

from . import layout, safeio, semantics
from .errors import RunError, UsageError, braces
from .ir import HEAD, INPUT, JOIN, LAYER, OUTPUT, POOL, STEM, Network
from .summary import plural

FORMATS = ("svg", "png", "pdf", "dot", "html")
COLLAPSE_ABOVE = 150  # nodes; larger networks are drawn with one box per block by default
# Expanded views are placed from the fractal's own coordinates and Graphviz only routes the
# edges (neato -n2): a C = 12 block (5,121 nodes) takes about 5 s on a 2-core machine. Larger
# images are refused before any work, and Graphviz is stopped after DOT_TIMEOUT seconds
# whatever it draws, so `render` answers within about 10 s.
IMAGE_LIMIT = 2500  # nodes
DOT_TIMEOUT = 7.0  # seconds

# One colour per entry of the layer key, as in the paper's Figure 1 legend.
COLOURS = {
    "conv": "#9ecae1",
    "join": "#a1d99b",
    "pool": "#fdae6b",
    "head": "#fc9272",
    "stem": "#bcbddc",
    "block": "#c6dbef",
}
# Layer units other than `conv` (e.g. `wide` in trunk.fdsl) take these, in sorted op order.
EXTRA_COLOURS = ("#dadaeb", "#fdd0a2", "#c7e9c0", "#fcbba1", "#d9d9d9", "#9e9ac8")
FADED = {"color": "#cccccc", "fillcolor": "#f4f4f4", "fontcolor": "#b0b0b0"}
HIGHLIGHT = "#d62728"
LANE, NODESEP = 1.75, 0.25  # inches: the width of a column's layers, and the gap between columns
SPLINES = "line"  # edges of a placed (expanded) drawing: straight, each down its own lane
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"


class RenderError(UsageError):
    """A view that does not fit the network (a bad block, column...): exit 2."""


class ImageError(RunError):
    """No diagram could be written (``dot`` missing or failing, output not writable): exit 1."""


class GraphvizMissing(ImageError):
    """The ``dot`` program is not installed, so no image can be made."""


@dataclass(frozen=True)
class View:
    """What to draw. ``collapse=None`` collapses blocks when the network is large.

    ``kept`` is the emphasis: the nodes and edges on a column's path or in a drop-path
    sample; everything else is faded. ``bold`` also thickens what is kept (``--column``).
    """

    block: int | None = None
    collapse: bool | None = None
    kept: tuple[frozenset, frozenset] | None = None
    bold: bool = False
    note: str = ""


def output_format(out: str | Path, fmt: str | None) -> str:
    """The format asked for: ``fmt`` if given, else the output file's suffix."""
    if fmt is None:
        fmt = Path(out).suffix.lstrip(".").lower()
        if not fmt:
            raise RenderError(
                (
                    f"cannot tell the format of {braces(out)}: give it a suffix "
                    f"({', '.join('.' + f for f in FORMATS)}) or use {{format}}"
                ),
                "format",
            )
    if fmt not in FORMATS:
        raise RenderError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def make_view(
    net: Network,
    *,
    block: int | None = None,
    collapse: bool | None = None,
    column: int | None = None,
    sample: int | None = None,
) -> View:
    """The view the ``render`` options ask for; :class:`RenderError` if they don't fit ``net``."""
    if block is not None and not 1 <= block <= net.blocks:
        raise RenderError(f"{{block}} {block}: {net.name} has blocks 1 to {net.blocks}", "block")
    if column is not None and not 1 <= column <= net.columns:
        raise RenderError(f"{{column}} {column}: {net.name} has columns 1 to {net.columns} (1 = shallowest)", "column")
    if column is not None and sample is not None:
        raise RenderError("{column} and {sample} are two different highlights: give one of them", "column", "sample")
    if column is None and sample is None:
        return View(block=block, collapse=collapse)
    if collapse:
        raise RenderError(
            "{column} and {sample} highlight single layers: use {expand} or {block} N, not {collapse}",
            "column",
            "sample",
            "expand",
            "block",
            "collapse",
        )
    if sample is not None and not net.droppath.enabled:
        raise RenderError(
            f"{{sample}}: {net.name} trains without drop-path (droppath off), so nothing is dropped", "sample"
        )
    if sample is not None and not 0 <= sample < 2**63:
        raise RenderError(f"{{sample}} {sample}: the seed must be a whole number from 0 to 2**63 - 1", "sample")
    if column is not None:
        return View(
            block=block,
            collapse=False,
            kept=semantics.column_path(net, column),
            bold=True,
            note=f"column {column} (the path global drop-path keeps)",
        )
    drawn = draw_sample(net, sample)
    picked = f"global, column {drawn['column']}" if drawn["mode"] == "global" else "local"
    return View(
        block=block, collapse=False, kept=sample_path(net, drawn), note=f"drop-path sample, seed {sample} ({picked})"
    )


def sample_path(net: Network, sample: dict) -> tuple[frozenset, frozenset]:
    """Nodes and edges a drop-path sample (``{"joins": {join: kept inputs}}``) uses."""
    return semantics.live(net, sample.get("joins", {}))


def draw_sample(net: Network, seed: int) -> dict:
    """One drop-path sample drawn by the compiled module's own ``sample_drop_path`` from a
    ``torch.Generator`` seeded with ``seed``: what a model built with that generator samples
    in its first training step (its ``last_drop_path``; for ``per sample``, batch size 1)."""
    import torch  # only render --sample pays for torch

    from . import codegen

    module = codegen.load_module(codegen.generate(net, check=False), f"fractal_dsl_render_{net.name}")
    generator = torch.Generator().manual_seed(seed)
    return module.sample_drop_path(generator=generator)


def to_dot(net: Network, view: View = View()) -> str:
    """The DOT source of ``view``; byte-identical for the same network and view."""
    return drawing(net, view).source()


def collapsed(net: Network, view: View) -> bool:
    """Whether ``view`` draws one box per block: as asked, else when the whole network is
    large and has several blocks (a single block collapsed would be an empty box)."""
    if view.collapse is not None:
        return view.collapse
    return view.block is None and len(net.graph) > COLLAPSE_ABOVE and net.blocks > 1


def drawing(net: Network, view: View = View(), *, tagged: bool = False) -> Drawing:
    """The drawing of ``view``, collapsed or not by :func:`collapsed` (the one rule, which
    the HTML page follows too); ``tagged`` gives every element a positional id for the page."""
    return Drawing(net, view, collapsed(net, view), tagged)


def refuse_too_large(drawing: Drawing, fmt: str) -> None:
    """Raise :class:`RenderError` when Graphviz would draw ``drawing`` in ``fmt`` (not DOT
    source) and it has more than :data:`IMAGE_LIMIT` nodes; the page always draws it expanded."""
    if fmt != "dot" and (not drawing.collapse or fmt == "html") and len(drawing.shown) > IMAGE_LIMIT:
        what = f"block {drawing.view.block}" if drawing.view.block else "the expanded network"
        raise RenderError(
            f"{what} has {len(drawing.shown)} nodes, more than Graphviz draws in reasonable time ({IMAGE_LIMIT}): "
            "draw one block ({block} N) or the collapsed network ({collapse}), or write the DOT source (a .dot output)",
            "block",
            "collapse",
        )


def write(net: Network, out: str | Path, fmt: str, view: View = View(), *, force: bool = False, inputs=()) -> None:
    """Write ``view`` to ``out`` in ``fmt``, under :mod:`fractal_dsl.safeio`'s output rule.

    Raises :class:`RenderError` for an image too large to lay out, :class:`GraphvizMissing`
    (after writing the ``.dot`` beside ``out``, if that is allowed) when an image is asked
    for and Graphviz is not installed, :class:`ImageError` when ``dot`` fails or runs out of
    time, or ``out`` must not or cannot be written.
    """
    if fmt == "html":
        raise ValueError("the HTML page is written by fractal_dsl.webview.write")
    picture = drawing(net, view)
    refuse_too_large(picture, fmt)
    try:
        source = f"// {safeio.marker_text()}\n" + picture.source()
        if fmt != "dot":
            safeio.check_output(out, force=force, inputs=inputs)  # refuse before the layout
            try:
                data = _run_graphviz(picture, source, fmt, len(picture.shown), out)
            except GraphvizMissing as exc:
                raise GraphvizMissing(f"{exc} {_fallback(Path(out), source, force, inputs)}") from None
        safeio.write_output(out, source if fmt == "dot" else _mark(data, fmt), force=force, inputs=inputs)
    except safeio.OutputError as exc:
        raise ImageError(str(exc)) from None


def _run_graphviz(drawing: Drawing, source: str, fmt: str, nodes: int, out) -> bytes:
    """Graphviz on ``source`` (``dot`` for a collapsed view; ``neato -n2``, which only routes
    edges, for a placed one), stopped after :data:`DOT_TIMEOUT` seconds."""
    program = "dot" if drawing.collapse else "neato"
    exe = shutil.which(program)
    if exe is None:
        raise GraphvizMissing(f"cannot write {out}: the Graphviz '{program}' program was not found; {INSTALL_HINT}.")
    args = [exe, f"-T{fmt}"] + ([] if drawing.collapse else ["-n2"])
    try:
        proc = subprocess.run(args, input=source.encode("utf-8"), capture_output=True, timeout=DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ImageError(
            f"cannot write {braces(out)}: Graphviz did not draw {nodes} nodes within {DOT_TIMEOUT:g} s: draw one "
            "block ({block} N) or the collapsed network ({collapse}), or write the DOT source (a .dot output)",
            "block",
            "collapse",
        ) from None
    except OSError as exc:
        raise ImageError(f"cannot write {out}: cannot run dot: {exc.strerror or exc}") from None
    if proc.returncode:
        said = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ImageError(f"cannot write {out}: dot failed: {said[-1] if said else proc.returncode}")
    return proc.stdout


def graphviz_failed(exc: Exception, out) -> ImageError:
    """The python-graphviz error of the page's drawing as the one-line error of :func:`_run_graphviz`."""
    if isinstance(exc, graphviz.ExecutableNotFound):
        return GraphvizMissing(f"cannot write {out}: the Graphviz 'neato' program was not found; {INSTALL_HINT}.")
    said = (getattr(exc, "stderr", None) or b"").decode("utf-8", "replace").strip().splitlines()
    return ImageError(f"cannot write {out}: dot failed: {said[-1] if said else getattr(exc, 'returncode', '?')}")


def _fallback(out: Path, source: str, force: bool, inputs) -> str:
    """Write the DOT source beside ``out`` (same rule as any output); say where, or why not."""
    fallback = out.with_suffix(".dot")
    try:
        safeio.write_output(fallback, source, force=force, inputs=inputs)
    except safeio.OutputError as exc:
        return f"The DOT source was not written either: {exc}"
    return f"The DOT source is in {fallback}"


def _mark(data: bytes, fmt: str) -> bytes:
    """The image with fractal-dsl's marker (so that writing it again is allowed)."""
    if fmt == "svg":
        return safeio.mark_svg(data)
    if fmt == "png":
        return safeio.mark_png(data)
    if fmt == "pdf":
        return safeio.mark_pdf(data)
    return data


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(n) for n in shape)


TOOLTIP_CHARS = 2000  # Graphviz refuses a quoted string over 16 KiB: a long chain is cut


def _chain(layers) -> str:
    """``conv3x3(c=16) → batchnorm → relu``: the layers of one unit, cut after
    :data:`TOOLTIP_CHARS` characters with the count of layers."""
    text = " → ".join(_call(layer.type, dict(layer.args)) for layer in layers)
    if len(text) <= TOOLTIP_CHARS:
        return text
    return text[:TOOLTIP_CHARS].rsplit(" → ", 1)[0] + f" → … ({len(layers):,} layers in all)"


def _call(op: str, args: dict) -> str:
    shown = [f"{k}={v}" for k, v in args.items() if not k.startswith("_")]
    return f"{op}({', '.join(shown)})" if shown else op


class Drawing:
    """Lays one view out as a ``graphviz.Digraph``: the nodes shown (``shown``, in order;
    ``context``, the feeders of a block drawn outside it), their rows and styles; ``source()``
    is the DOT text, ``pipe(source, fmt)`` Graphviz's drawing of it.  Make one with
    :func:`drawing`."""

    def __init__(self, net: Network, view: View, collapse: bool, tagged: bool = False) -> None:
        self.net, self.view, self.collapse, self.tagged = net, view, collapse, tagged
        g = net.graph
        self.order = {v: i for i, v in enumerate(net.nodes_in_order())}
        if view.block is not None:
            inside = [v for v in self.order if self.net.node(v).block == view.block]
            feeders = sorted({u for v in inside for u in g.predecessors(v)} - set(inside), key=self.order.get)
            self.shown = feeders + inside
            self.context = set(feeders)
        else:
            self.shown = list(self.order)
            self.context = set()
        ops = sorted({self.net.node(v).op for v in self.shown if self.net.node(v).kind == LAYER} - {"conv"})
        self.colours = dict(COLOURS) | {op: EXTRA_COLOURS[i % len(EXTRA_COLOURS)] for i, op in enumerate(ops)}

    def _new_digraph(self) -> graphviz.Digraph:
        dot = graphviz.Digraph(self.net.name)
        dot.attr(rankdir="TB", newrank="true", nodesep=str(NODESEP), ranksep="0.3", fontname="Helvetica", labelloc="t")
        dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11", penwidth="1")
        dot.attr("edge", arrowsize="0.6", color="#555555")
        return dot

    def pipe(self, source: str, fmt: str) -> bytes:
        """``source`` drawn by Graphviz: an expanded view is already placed, so ``neato -n2``
        only routes its edges; a collapsed one (a few boxes) is laid out by ``dot``."""
        if self.collapse:
            return graphviz.Source(source).pipe(format=fmt)
        return graphviz.Source(source, engine="neato").pipe(format=fmt, neato_no_op=2)

    # -- what goes where ------------------------------------------------------------
    def _block_of(self, v: str) -> int | None:
        """The block a node is drawn in (a pool follows its block, outside the box)."""
        node = self.net.node(v)
        return None if node.kind == POOL or v in self.context else node.block

    def _rows(self, nodes: list[str]) -> list[list[str]]:
        """A block's nodes by row: layers on their depth, each join on a row just below the
        deepest input it joins (below any join it takes as input, for unflattened joins)."""
        g = self.net.graph
        key = {}
        for v in nodes:  # topological order, so a join's inputs have keys already
            depth = self.net.node(v).depth
            sub = 0
            if self.net.node(v).kind == JOIN:
                sub = 1 + max((key[u][1] for u in g.predecessors(v) if key.get(u, (None,))[0] == depth), default=0)
            key[v] = (depth, sub)
        rows: dict[tuple[int, int], list[str]] = {}
        for v in nodes:
            rows.setdefault(key[v], []).append(v)
        return [sorted(row, key=lambda v: (self.net.node(v).column, self.order[v])) for _, row in sorted(rows.items())]

    # -- how each thing looks ----------------------------------------------------------
    def _node(self, graph: graphviz.Digraph, v: str) -> None:
        data = self.net.node(v)
        kind, shape = data.kind, _shape(data.shape)
        state = self._state(v)
        if v in self.context:
            graph.node(v, label=f"{v}\\n{shape}", shape="plain", style="", fontcolor="#777777", **self._at(v))
            return
        if kind == JOIN:
            graph.node(v, label=self._join_label(v, state), shape="plain", style="", **self._at(v))
            return
        if kind in (INPUT, OUTPUT):
            attrs = {"label": f"{kind}\\n{shape}", "shape": "ellipse", "style": "", "fillcolor": "white"}
        else:
            colour = self.colours[data.op if kind == LAYER else kind]
            attrs = {"label": f"{_call(data.op, dict(data.args))}\\n{shape}", "fillcolor": colour}
            attrs["tooltip"] = f"{v}: " + _chain(data.layers)
        if kind == LAYER:
            attrs |= {"width": str(LANE), "group": f"b{data.block}c{data.column}"}  # group: straight lanes
        if state == "faded":
            attrs |= FADED | ({"style": "dashed"} if kind in (INPUT, OUTPUT) else {"style": "rounded,filled,dashed"})
        elif state == "bold":
            attrs |= {"color": HIGHLIGHT, "penwidth": "2.5"}
        graph.node(v, **attrs, **self._at(v))

    def _at(self, v: str) -> dict[str, str]:
        """``pos`` (pinned, in points) where the drawing is placed from the fractal's coordinates."""
        if self.placed is None:
            return {}
        x, y = self.placed.pos[v]
        return {"pos": f"{layout.number(x)},{layout.number(y)}!"} | self._tag(v)

    def _tag(self, v: str) -> dict[str, str]:
        """For the HTML view (module webview): an SVG id from the node's place in ``shown``,
        never from its name, so the page finds every node without reading user text."""
        if not self.tagged:
            return {}
        return {"id": "fd-legend"} if v == "legend" else {"id": f"fd-n{self.index[v]}"}

    def _state(self, v: str) -> str:
        """plain (no emphasis), kept, bold (kept in a --column view) or faded."""
        if self.view.kept is None:
            return "plain"
        if v not in self.view.kept[0]:
            return "faded"
        return "bold" if self.view.bold else "kept"

    def _join_label(self, v: str, state: str) -> str:
        """A join is a bar across the columns it joins, one port per column so that each
        branch enters, and each column leaves, straight down its own lane."""
        data, g = self.net.node(v), self.net.graph
        first, last = min(data.columns), max(data.columns)
        fill, border, ink = {"faded": (FADED["fillcolor"], FADED["color"], FADED["fontcolor"])}.get(
            state, (COLOURS["join"], "black", "black")
        )
        if state == "bold":
            border = HIGHLIGHT
        arity = f"{data.op} of {g.in_degree(v)}"
        if state in ("kept", "bold"):  # drop-path keeps some of the inputs
            arity += f" ({sum((u, v) in self.view.kept[1] for u in g.predecessors(v))} kept)"
        text = f'<FONT COLOR="{ink}">join: {arity}<BR/>{_shape(data.shape)}</FONT>'
        width, span = round((LANE + NODESEP) * 72), last - first + 1
        # Thin rows of ports above and below the text: branches enter at i<k>, columns leave at o<k>.
        ports = "".join(f'<TD PORT="{{io}}{k}" WIDTH="{width}" HEIGHT="2"></TD>' for k in range(first, last + 1))
        rows = [ports.format(io="i"), f'<TD COLSPAN="{span}">{text}</TD>', ports.format(io="o")]
        thick = 3 if state == "bold" else 1
        table = "".join(f"<TR>{row}</TR>" for row in rows)
        return (
            f'<<TABLE BORDER="{thick}" COLOR="{border}" BGCOLOR="{fill}" CELLBORDER="0" CELLSPACING="0" '
            f'CELLPADDING="1">{table}</TABLE>>'
        )

    def _edge(self, u: str, v: str) -> None:
        tail, head = u, v
        if self.net.node(v).kind == JOIN and v not in self.context:
            tail_cols = self.net.edge(u, v).columns or (self.net.node(u).column,)
            head = f"{v}:i{min(tail_cols)}:n"
        if (
            self.net.node(u).kind == JOIN
            and self.net.node(v).kind == LAYER
            and self.net.node(v).block == self.net.node(u).block
        ):
            tail = f"{u}:o{self.net.node(v).column}:s"
        attrs: dict[str, str] = {}
        if self.view.kept is not None:
            if (u, v) in self.view.kept[1]:
                attrs = {"color": HIGHLIGHT, "penwidth": "2.5"} if self.view.bold else {}
            else:
                attrs = {"color": "#cccccc", "style": "dashed"}
        if self.tagged:
            attrs["id"] = f"fd-e{len(self.edges)}"
        self.edges.append((u, v))
        self.dot.edge(tail, head, **attrs)

    # -- the views ---------------------------------------------------------------------
    def source(self) -> str:
        """The DOT source; each call lays the view out afresh (the same text every time)."""
        self.dot = self._new_digraph()
        self.placed: layout.Placed | None = None
        self.edges: list[tuple[str, str]] = []  # the edges drawn, in order
        self.index = {v: i for i, v in enumerate(self.shown)}
        if self.collapse:
            self._collapsed()
        else:
            self._expanded()
        self._legend()
        title = self._title() + (f"; {self.view.note}" if self.view.note else "")
        self.dot.attr(label=title, fontsize="14")
        return self.dot.source

    def _title(self) -> str:
        net = self.net
        where = f"block {self.view.block} of {net.blocks}" if self.view.block else plural(net.blocks, "block")
        return f"{net.name}: {where}, {plural(net.columns, 'column')}, join = {net.join_mode}"

    def _placed(self, by_block: dict[int | None, list[str]], rows: dict[int, list[list[str]]]) -> layout.Placed:
        """Every node's place from its column and row (module layout), top to bottom: the
        nodes outside blocks in drawing order, each block's rows where the block begins."""
        sections: list[layout.Section] = []
        started: set[int] = set()
        outside = [v for v in by_block.get(None, []) if v in self.context]
        if outside:
            sections.append(layout.Section((tuple(outside),)))
        for v in self.shown:
            b = self._block_of(v)
            if b is None and v not in self.context:
                sections.append(layout.Section(((v,),)))
            elif b is not None and b not in started:
                started.add(b)
                sections.append(layout.Section(tuple(tuple(row) for row in rows[b]), b))
        sections.append(layout.Section((("legend",),)))
        spans = {}
        for b in rows:
            for v in by_block[b]:
                cols = self.net.node(v).columns
                spans[v] = (min(cols), max(cols))
        return layout.place(sections, spans, self.net.columns, (LANE + NODESEP) * 72)

    def _expanded(self) -> None:
        by_block: dict[int | None, list[str]] = {}
        for v in self.shown:
            by_block.setdefault(self._block_of(v), []).append(v)
        rows = {b: self._rows(nodes) for b, nodes in by_block.items() if b is not None}
        self.placed = self._placed(by_block, rows)
        self.dot.attr(splines=SPLINES, notranslate="true")
        for v in by_block.pop(None, []):
            self._node(self.dot, v)
        for b, nodes in sorted(by_block.items()):
            with self.dot.subgraph(name=f"cluster_b{b}") as cluster:
                channels = _shape(self.net.node(nodes[-1]).shape)
                cluster.attr(
                    label=f"block {b}  ({channels})",
                    style="rounded,dashed",
                    color="#999999",
                    fontsize="11",
                    labeljust="l",
                    bb=",".join(layout.number(n) for n in self.placed.bb[b]),
                    **({"id": f"fd-b{b}"} if self.tagged else {}),
                )
                for i, row in enumerate(rows[b]):
                    with cluster.subgraph(name=f"b{b}_row{i}") as same:
                        same.attr(rank="same")
                        for v in row:
                            self._node(same, v)
                        for a, z in itertools.pairwise(row):  # keeps the columns in order, 1 on the left
                            same.edge(a, z, style="invis")
        shown = set(self.shown)
        for v in self.shown:
            for u in self.net.inputs(v):
                if u in shown:
                    self._edge(u, v)

    def _collapsed(self) -> None:
        g, net = self.net.graph, self.net
        box: dict[str, str] = {}
        for v in self.shown:
            b = self._block_of(v)
            if b is None:
                self._node(self.dot, v)
                continue
            if f"block{b}" not in box.values():
                nodes = [w for w in self.order if self.net.node(w).block == b and self.net.node(w).kind != POOL]
                layers = [w for w in nodes if self.net.node(w).kind == LAYER]
                joins = [w for w in nodes if self.net.node(w).kind == JOIN]
                depth = semantics.block_depth(self.net, b)
                arity = sorted({g.in_degree(w) for w in joins})
                arities = (
                    ", ".join(str(g.in_degree(w)) for w in joins) if len(joins) <= 4 else f"{arity[0]} to {arity[-1]}"
                )
                label = (
                    f"block {b}: {net.columns} columns, depth {depth}\\n"
                    f"{len(layers)} layers, {len(joins)} joins ({arities} in)\\n"
                    f"{_shape(self.net.node(nodes[-1]).shape)}"
                )
                self.dot.node(f"block{b}", label=label, fillcolor=COLOURS["block"], shape="box3d", style="filled")
            box[v] = f"block{b}"
        drawn = set()
        for v in self.shown:
            for u in g.predecessors(v):
                tail, head = box.get(u, u), box.get(v, v)
                if tail != head and (tail, head) not in drawn:
                    drawn.add((tail, head))
                    self.dot.edge(tail, head)

    def _legend(self) -> None:
        kinds = {self.net.node(v).kind for v in self.shown if v not in self.context}
        entries = []
        if self.collapse:
            entries.append(("block", "block (collapsed)"))
        layer_ops = {
            self.net.node(v).op for v in self.shown if self.net.node(v).kind == LAYER and v not in self.context
        }
        if STEM in kinds:
            entries.append((STEM, "stem"))
        if not self.collapse:
            entries += [(op, op) for op in sorted(layer_ops, key=lambda op: (op != "conv", op))]  # conv first
            if JOIN in kinds:
                entries.append((JOIN, f"join ({self.net.join_mode})"))
        entries += [(k, k.value) for k in (POOL, HEAD) if k in kinds]
        cells = "".join(f'<TD BGCOLOR="{self.colours[key]}">{text}</TD>' for key, text in entries)
        self.dot.node(
            "legend",
            label=(
                '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2" CELLPADDING="4"><TR><TD BORDER="0">layer '
                f"key</TD>{cells}</TR></TABLE>>"
            ),
            shape="plain",
            style="",
            **self._at("legend"),
        )
