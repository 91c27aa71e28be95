"""The interactive view: one self-contained HTML page (``render -o net.html``, and a
:class:`~fractal_dsl.ir.Network`'s ``_repr_html_`` in Jupyter).

The page is not a second drawing: it holds the SVG that :mod:`fractal_dsl.render` makes
of the expanded network (same layout, colours, labels and legend), each node and edge
tagged with an id from its position (``fd-n3``, ``fd-e7``, never from user text), plus the
facts the script shows, as JSON.  The page's HTML is static (``view.html``, ``view.css``,
``view.js`` beside this module); everything that comes from a user's file travels in the
JSON, which sits in a ``<script type="application/json">`` with ``<``, ``>``, ``&`` and
U+2028/9 escaped, and the script shows it with ``textContent`` only.  The SVG string is
parsed by the browser as XML (``DOMParser``), never as HTML.

Same input, same bytes: no dates, no random numbers, JSON with sorted keys.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import graphviz

from . import render, safeio, semantics
from .ir import JOIN, LAYER, Network
from .layers import TYPES

_HERE = Path(__file__).resolve().parent
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
SAME_DISTRIBUTION = (
    "Samples here follow training's rule and probabilities (the same distribution), "
    "not the same random stream as torch: `fractal-dsl render FILE --sample SEED` draws "
    "what the compiled module draws for a seed."
)


def embed_json(data: object) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, ``<!--``, or line
    separators that end a JavaScript string can appear in it."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    for char, escape in _ESCAPES.items():
        text = text.replace(char, escape)
    return text


def _asset(name: str) -> str:
    text = (_HERE / name).read_text(encoding="utf-8")
    if "</" in text and name.endswith(".js"):  # would end the <script> element it is put in
        raise AssertionError(f"{name} must not contain '</'")
    return text


def _dropout(node) -> list[float]:
    switches = [(layer, TYPES[layer.type].switch) for layer in node.layers]  # the dropout layers
    return [float(layer.arg(switch)) for layer, switch in switches if switch]


def _shape(shape) -> str | None:
    return None if shape is None else "×".join(str(n) for n in shape)


def view_data(net: Network, view: render.View | None = None) -> dict:
    """Everything the page shows, from the same drawing as the static render."""
    view = view or render.View()
    collapse = render.collapsed(net, view)
    drawing = render.drawing(
        net, render.View(block=view.block, collapse=False, kept=view.kept, bold=view.bold, note=view.note), tagged=True
    )
    source = drawing.source()
    svg = drawing.pipe(source, "svg").decode("utf-8")
    svg = svg[svg.index("<svg") :]  # no XML prolog or DOCTYPE
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL)  # Graphviz's comments repeat node names
    index = drawing.index
    nodes = []
    for v in drawing.shown:
        n = net.node(v)
        kept = []
        if n.kind == JOIN and v not in drawing.context:
            kept = [list(ins) for ins in semantics.kept_inputs_by_column(net, v)]
        nodes.append(
            {
                "id": v,
                "kind": n.kind,
                "op": n.op,
                "layers": [layer.describe() for layer in n.layers],
                "in": _shape(n.in_shape),
                "out": _shape(n.shape),
                "params": n.params,
                "macs": n.macs,
                "block": None if v in drawing.context else n.block,
                "columns": list(n.columns),
                "depth": n.depth,
                "dropout": _dropout(n),
                "module": n.module,
                "line": n.span.line if n.span else None,
                "context": v in drawing.context,
                "inputs": [index[u] for u in net.inputs(v) if u in index],
                "kept": kept,  # join: for each column k, the inputs global drop-path on k keeps
            }
        )
    edges = [[index[u], index[v], net.edge(u, v).index] for u, v in drawing.edges]
    columns = []
    for on, path in semantics.column_paths(net):
        mine = [v for v in drawing.shown if v in on and v not in drawing.context]
        columns.append(
            {
                "nodes": [index[v] for v in drawing.shown if v in on],
                "edges": [i for i, e in enumerate(drawing.edges) if e in path],
                "params": sum(net.node(v).params for v in mine),
                "macs": sum(net.node(v).macs for v in mine),
                "layers": sum(net.node(v).kind == LAYER for v in mine),
            }
        )
    initial: dict = {"collapsed": bool(collapse)}
    if view.kept is not None:
        initial["kept"] = sorted(index[v] for v in view.kept[0] if v in index)
        initial["keptEdges"] = [i for i, e in enumerate(drawing.edges) if e in view.kept[1]]
        initial["note"] = view.note
        initial["bold"] = view.bold
    return {
        "name": net.name,
        "file": net.source_name,
        "title": drawing._title(),
        "block": view.block,
        "blocks": sorted({n["block"] for n in nodes if n["block"] is not None}),
        "columns": columns,
        "join": net.join_mode,
        "droppath": {
            "enabled": net.droppath.enabled,
            "local": net.droppath.local,
            "global": net.droppath.global_ratio,
            "per": net.droppath.per,
        },
        "sameDistribution": SAME_DISTRIBUTION,
        "colours": drawing.colours,
        "nodes": nodes,
        "edges": edges,
        "initial": initial,
        "svg": svg,
    }


def page(net: Network, view: render.View | None = None) -> str:
    """The whole page: static HTML, CSS and script, and the view's data as embedded JSON."""
    parts = {"CSS": _asset("view.css"), "DATA": embed_json(view_data(net, view)), "JS": _asset("view.js")}
    # One pass over the template: text from the data is never searched for markers again.
    return re.sub(r"/\*(CSS|DATA|JS)\*/", lambda m: parts[m.group(1)], _asset("view.html"))


def write(net: Network, out: str | Path, view: render.View | None = None, *, force: bool = False, inputs=()) -> None:
    """Write the page of ``view`` to ``out`` (``render -o net.html``), under
    :mod:`fractal_dsl.safeio`'s output rule; raises what :func:`fractal_dsl.render.write` does."""
    view = view or render.View()
    render.refuse_too_large(render.drawing(net, view), "html")
    try:
        safeio.check_output(out, force=force, inputs=inputs)
        try:
            text = page(net, view)
        except (graphviz.CalledProcessError, graphviz.ExecutableNotFound) as exc:
            raise render.graphviz_failed(exc, out) from None
        safeio.write_output(out, f"<!-- {safeio.marker_text()} -->\n" + text, force=force, inputs=inputs)
    except safeio.OutputError as exc:
        raise render.ImageError(str(exc)) from None


def _drawable(net: Network, nodes: int) -> bool:
    """Whether a notebook can show ``net``: validated (shapes known), not over the image
    limit, and Graphviz installed; else Jupyter falls back to the next representation."""
    return (
        all(n.shape is not None for n in net.nodes())
        and nodes <= render.IMAGE_LIMIT
        and shutil.which("neato") is not None
    )


def notebook_html(net: Network) -> str | None:
    """The page in an ``<iframe srcdoc>``: a notebook runs its script apart from others'."""
    if not _drawable(net, len(net.graph)):
        return None
    return (
        '<iframe style="width:100%;height:640px;border:1px solid #ddd" sandbox="allow-scripts" '
        f'srcdoc="{html.escape(page(net), quote=True)}"></iframe>'
    )


def notebook_svg(net: Network) -> str | None:
    """``render``'s default view (large networks collapsed) as SVG text."""
    drawing = render.drawing(net)
    if not _drawable(net, 0 if drawing.collapse else len(drawing.shown)):
        return None
    svg = drawing.pipe(drawing.source(), "svg").decode("utf-8")
    return svg[svg.index("<svg") :]
