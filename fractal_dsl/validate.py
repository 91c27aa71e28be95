"""Stage 3: annotate a :class:`~fractal_dsl.expand.Network` with shapes and check it.

:func:`infer_shapes` walks the graph once in topological order and sets, on every node,
``in_shape``, ``shape``, ``params`` and ``macs``.  :data:`CHECKS` is a tuple of small pure
functions, each taking the network and returning diagnostics; :func:`validate` runs them
all and raises one :class:`~fractal_dsl.errors.FractalError` with everything found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import networkx as nx

from .errors import Collector, Diagnostic, Source, Span
from .expand import Network
from .layers import LayerError, infer, shape_str

MAX_PARAMS = 4_000_000_000  # 16 GB of float32 weights
MAX_ACTIVATIONS = 1 << 32  # values held per sample across all layer outputs


def infer_shapes(net: Network) -> list[Diagnostic]:
    """Set shape, params and macs on every node; return diagnostics for what cannot run."""
    g = net.graph
    out: list[Diagnostic] = []
    reported: set = set()
    for n in net.nodes_in_order():
        a = g.nodes[n]
        preds = sorted(g.predecessors(n), key=lambda p: g.edges[p, n]["index"])
        if a["kind"] == "input":
            a["in_shape"] = a["shape"] = tuple(net.input_shape)
            a["params"] = a["macs"] = 0
            continue
        shapes = [g.nodes[p]["shape"] for p in preds]
        a["params"] = a["macs"] = 0
        if any(s is None for s in shapes):
            a["in_shape"] = a["shape"] = None
            continue
        if a["kind"] == "join":
            a["in_shape"] = shapes[0]
            a["shape"] = _join_shape(net, n, shapes, out, reported)
            continue
        (shape,) = shapes
        a["in_shape"] = shape
        a["layer_shapes"] = []
        for layer in a["layers"]:
            try:
                eff = infer(layer, shape)
            except LayerError as exc:
                where = a["span"]
                msg = f"{exc} (in `{a['op']}`" + (f", block {a['block']}" if a["block"] else "") + ")"
                if (where, str(exc)) not in reported:
                    reported.add((where, str(exc)))
                    out.append(Diagnostic(where, msg, hint=exc.hint))
                shape = None
                break
            shape = eff.shape
            a["params"] += eff.params
            a["macs"] += eff.macs
            a["layer_shapes"].append(shape)
        a["shape"] = shape
        if a["kind"] == "output":
            a["shape"] = shape
    return out


def _join_shape(net: Network, n: str, shapes, out: list[Diagnostic], reported: set):
    a = net.graph.nodes[n]
    if net.join_mode == "concat":
        ok = all(len(s) == 3 and s[1:] == shapes[0][1:] for s in shapes) and len(shapes[0]) == 3
        result = (sum(s[0] for s in shapes), *shapes[0][1:]) if ok else None
        problem = "concat join needs inputs of the same height and width"
    else:
        ok = all(s == shapes[0] for s in shapes)
        result = shapes[0] if ok else None
        problem = f"{net.join_mode} join needs inputs of the same shape"
    if not ok and (a["span"], problem) not in reported:
        reported.add((a["span"], problem))
        listed = ", ".join(shape_str(s) for s in shapes)
        hint = "a join's branches must keep the same channels and spatial size; check strides, pools and channel counts in the branches"
        if net.join_mode != "concat" and len({s[1:] for s in shapes}) == 1:
            hint = "branches end with different channel counts: give them the same channels, or use `join = concat`"
        out.append(Diagnostic(a["span"], f"{problem}, got {listed} (block {a['block']})", hint=hint))
    return result


# ---- the checks -----------------------------------------------------------------------

Check = Callable[[Network], Iterator[Diagnostic]]


def _where(net: Network) -> Span:
    g = net.graph
    return g.nodes["output"]["span"] if "output" in g else Span.point(1, 1)


def check_acyclic(net: Network) -> Iterator[Diagnostic]:
    if not nx.is_directed_acyclic_graph(net.graph):
        yield Diagnostic(_where(net), "internal: the expanded graph has a cycle")


def check_one_input_one_output(net: Network) -> Iterator[Diagnostic]:
    g = net.graph
    sources = [n for n in g if g.in_degree(n) == 0]
    sinks = [n for n in g if g.out_degree(n) == 0]
    if sources != ["input"] or sinks != ["output"]:
        yield Diagnostic(_where(net), f"internal: graph must have one input and one output, found sources {sources[:3]} and sinks {sinks[:3]}")


def check_reachable(net: Network) -> Iterator[Diagnostic]:
    g = net.graph
    seen = nx.descendants(g, "input") | {"input"}
    for n in g:
        if n not in seen:
            yield Diagnostic(g.nodes[n]["span"], f"internal: node {n} cannot be reached from the input")


def check_columns_complete(net: Network) -> Iterator[Diagnostic]:
    """Every column is one complete path: a chain from the input to the output, no branches."""
    g = net.graph
    for k in range(1, net.columns + 1):
        path = nx.DiGraph()
        path.add_nodes_from(n for n in g if k in g.nodes[n]["columns"])
        path.add_edges_from(
            (u, v)
            for u, v, e in g.edges(data=True)
            if u in path and v in path and (g.nodes[v]["kind"] != "join" or k in e["columns"])
        )
        bad = [n for n in path if (path.in_degree(n) != 1 and n != "input") or (path.out_degree(n) != 1 and n != "output")]
        if bad or "input" not in path or "output" not in path or not nx.has_path(path, "input", "output"):
            at = g.nodes[bad[0]]["span"] if bad else _where(net)
            yield Diagnostic(at, f"column {k} is not one complete path from input to output" + (f" (it breaks at {bad[0]})" if bad else ""))


def check_shapes_known(net: Network) -> Iterator[Diagnostic]:
    g = net.graph
    out = g.nodes["output"]
    if out.get("shape") is not None and out["shape"] != (net.classes,):
        head = g.nodes["head"] if "head" in g else out
        yield Diagnostic(
            head.get("key_span") or head["span"],
            f"the head produces {shape_str(out['shape'])} values per sample, but the network has {net.classes} classes",
            hint="end the head with `linear(classes)` after `flatten`",
        )


def check_sizes(net: Network) -> Iterator[Diagnostic]:
    """Refuse networks too large to build, with the estimate in the message."""
    g = net.graph
    params = sum(g.nodes[n]["params"] for n in g)
    acts = 0
    for n in g:
        s = g.nodes[n].get("shape")
        if s:
            size = 1
            for d in s:
                size *= d
            acts += size
    if params > MAX_PARAMS:
        per_block: dict[int, int] = {}
        for n in g:
            if g.nodes[n]["block"] is not None:
                per_block[g.nodes[n]["block"]] = per_block.get(g.nodes[n]["block"], 0) + g.nodes[n]["params"]
        biggest = max(per_block, key=lambda b: (per_block[b], -b)) if per_block else None
        most = f"; block {biggest} alone has {per_block[biggest]:,}" if biggest is not None else ""
        yield Diagnostic(
            g.nodes["output"]["span"] if "output" in g else Span.point(1, 1),
            f"this network would have {params:,} parameters ({_bytes(params * 4)} of float32 weights){most}; the limit is {MAX_PARAMS:,}",
            hint="use fewer channels, columns or blocks",
        )
    if acts > MAX_ACTIVATIONS:
        yield Diagnostic(
            g.nodes["input"]["span"],
            f"one sample would need {acts:,} activations ({_bytes(acts * 4)} in float32); the limit is {MAX_ACTIVATIONS:,}",
            hint="use a smaller input, fewer channels, or pool earlier",
        )


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} EB"


CHECKS: tuple[Check, ...] = (
    check_acyclic,
    check_one_input_one_output,
    check_reachable,
    check_columns_complete,
    check_shapes_known,
    check_sizes,
)


def validate(net: Network, source: Source) -> Network:
    """Infer shapes and run every check; raise FractalError with all problems, or return ``net``."""
    diags = Collector(source)
    diags.diagnostics.extend(infer_shapes(net))
    if not diags.diagnostics:
        for check in CHECKS:
            diags.diagnostics.extend(check(net))
    diags.raise_if_any()
    g = net.graph
    net.params = sum(g.nodes[n]["params"] for n in g)
    net.macs = sum(g.nodes[n]["macs"] for n in g)
    return net
