"""Stage 3: annotate a :class:`~fractal_dsl.expand.Network` with shapes and check it.

:func:`infer_shapes` walks the graph once in topological order and returns a new
network whose nodes carry ``in_shape``, ``shape``, ``layer_shapes``, ``params`` and
``macs``.  :data:`CHECKS` is a tuple of small pure functions, each taking the network and
returning diagnostics; :func:`validate` runs them all and raises one
:class:`~fractal_dsl.errors.FractalError` with everything found, or returns the new network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace

import networkx as nx

from . import semantics
from .errors import Collector, Diagnostic, Fix, Source, Span
from .ir import INPUT, JOIN, Network, Node
from .layers import LayerError, infer, shape_str

MAX_PARAMS = 4_000_000_000  # 16 GB of float32 weights
MAX_ACTIVATIONS = 1 << 32  # values held per sample across all layer outputs


def infer_shapes(net: Network) -> tuple[Network, list[Diagnostic]]:
    """A new network whose nodes carry shapes, parameters and MACs, and the diagnostics for
    what cannot run (nodes after a failure keep ``shape`` None)."""
    g = net.graph
    out: list[Diagnostic] = []
    reported: set = set()
    done: dict[str, Node] = {}
    for node in net.nodes():
        n = node.id
        if node.kind == INPUT:
            done[n] = replace(node, in_shape=tuple(net.input_shape), shape=tuple(net.input_shape))
            continue
        shapes = [done[p].shape for p in net.inputs(n)]
        if any(s is None for s in shapes):
            done[n] = node
        elif node.kind == JOIN:
            done[n] = replace(node, in_shape=shapes[0], shape=_join_shape(net, node, shapes, out, reported))
        else:
            done[n] = _apply_layers(node, shapes[0], out, reported)
    annotated = nx.DiGraph()
    for n in g:
        annotated.add_node(n, node=done[n])
    annotated.add_edges_from(g.edges(data=True))
    nodes = done.values()
    result = replace(
        net,
        graph=nx.freeze(annotated),
        params=sum(v.params for v in nodes),
        macs=sum(v.macs for v in nodes),
    )
    return result, out


def _apply_layers(node: Node, shape, out: list[Diagnostic], reported: set) -> Node:
    """``node`` with the shape after each of its layers, its parameters and MACs."""
    in_shape, params, macs, shapes = shape, 0, 0, []
    for layer in node.layers:
        try:
            eff = infer(layer, shape)
        except LayerError as exc:
            msg = f"{exc} (in `{node.op}`" + (f", block {node.block}" if node.block else "") + ")"
            if (node.span, str(exc)) not in reported:
                reported.add((node.span, str(exc)))
                out.append(Diagnostic(node.span, msg, hint=exc.hint))
            return replace(node, in_shape=in_shape, shape=None, params=params, macs=macs, layer_shapes=tuple(shapes))
        shape = eff.shape
        params += eff.params
        macs += eff.macs
        shapes.append(shape)
    return replace(node, in_shape=in_shape, shape=shape, params=params, macs=macs, layer_shapes=tuple(shapes))


def _join_shape(net: Network, node: Node, shapes, out: list[Diagnostic], reported: set):
    if net.join_mode == "concat":
        ok = all(len(s) == 3 and s[1:] == shapes[0][1:] for s in shapes) and len(shapes[0]) == 3
        result = (sum(s[0] for s in shapes), *shapes[0][1:]) if ok else None
        problem = "concat join needs inputs of the same height and width"
    else:
        ok = all(s == shapes[0] for s in shapes)
        result = shapes[0] if ok else None
        problem = f"{net.join_mode} join needs inputs of the same shape"
    if not ok and (node.span, problem) not in reported:
        reported.add((node.span, problem))
        listed = ", ".join(f"{_branch(net, u)} gives {shape_str(s)}" for s, u in zip(shapes, net.inputs(node.id)))
        if len({s[1:] for s in shapes}) == 1:
            hint = "branches end with different channel counts: give them the same channels, or use `join = concat`"
        else:
            keeps = "channels and " if net.join_mode != "concat" else ""
            hint = (
                f"a stride or a pool in a branch changes its height and width; every branch of a {net.join_mode} join "
                f"must keep the same {keeps}height and width"
                + (" (concat adds up the channels, which may differ)" if net.join_mode == "concat" else "")
            )
        out.append(Diagnostic(node.span, f"{problem} (block {node.block}): {listed}", hint=hint))
    return result


def _branch(net: Network, n: str) -> str:
    """How a diagnostic names the unit ending a join's branch: its text, and where it is."""
    node = net.node(n)
    at = f"{node.span.line}:{node.span.column}"
    if node.kind == JOIN:
        return f"the branch ending in the join at {at}"
    text = " ".join(Source(net.source_name, net.source_text).text_of(node.span).split())
    return f"the branch ending in `{text if len(text) <= 40 else node.op}` ({at})"


def _channels_last(net: Network) -> Iterator[Diagnostic]:
    """When shapes fail and the input reads like HxWxC (``input 32x32x3``), say so at the input."""
    c, h, w = net.input_shape
    if w in (1, 3, 4) and c > 4 and h > 4:
        yield Diagnostic(
            net.node("input").span,
            f"input {c}x{h}x{w} is {c} channels of {h}x{w} pixels",
            hint=f"shapes are CxHxW (channels first): did you mean `input {w}x{c}x{h}`?",
            fix=Fix(net.node("input").span, f"input {w}x{c}x{h}"),
        )


# ---- the checks -----------------------------------------------------------------------

Check = Callable[[Network], Iterator[Diagnostic]]


def _where(net: Network) -> Span:
    return net.node("output").span if "output" in net.graph else Span.point(1, 1)


def check_acyclic(net: Network) -> Iterator[Diagnostic]:
    if not nx.is_directed_acyclic_graph(net.graph):
        yield Diagnostic(_where(net), "internal: the expanded graph has a cycle")


def check_one_input_one_output(net: Network) -> Iterator[Diagnostic]:
    g = net.graph
    sources = [n for n in g if g.in_degree(n) == 0]
    sinks = [n for n in g if g.out_degree(n) == 0]
    if sources != ["input"] or sinks != ["output"]:
        yield Diagnostic(
            _where(net),
            f"internal: graph must have one input and one output, found sources {sources[:3]} and sinks {sinks[:3]}",
        )


def check_reachable(net: Network) -> Iterator[Diagnostic]:
    g = net.graph
    seen = nx.descendants(g, "input") | {"input"}
    for n in g:
        if n not in seen:
            yield Diagnostic(net.node(n).span, f"internal: node {n} cannot be reached from the input")


def check_columns_complete(net: Network) -> Iterator[Diagnostic]:
    """Every column is one complete path: a chain from the input to the output, no branches."""
    for k in range(1, net.columns + 1):
        bad = semantics.columns_complete(net, k)
        if bad is not None:
            at = net.node(bad).span if bad else _where(net)
            yield Diagnostic(
                at,
                f"column {k} is not one complete path from input to output" + (f" (it breaks at {bad})" if bad else ""),
            )


def check_shapes_known(net: Network) -> Iterator[Diagnostic]:
    out = net.node("output")
    if out.shape is not None and out.shape != (net.classes,):
        head = net.node("head") if "head" in net.graph else out
        yield Diagnostic(
            head.key_span or head.span,
            f"the head produces {shape_str(out.shape)} values per sample, but the network has {net.classes} classes",
            hint="end the head with `linear(classes)` after `flatten`",
        )


def check_sizes(net: Network) -> Iterator[Diagnostic]:
    """Refuse networks too large to build, with the estimate in the message."""
    nodes = net.nodes()
    params = sum(n.params for n in nodes)
    acts = sum(math.prod(n.shape) for n in nodes if n.shape)
    if params > MAX_PARAMS:
        per_block: dict[int, int] = {}
        for n in nodes:
            if n.block is not None:
                per_block[n.block] = per_block.get(n.block, 0) + n.params
        biggest = max(per_block, key=lambda b: (per_block[b], -b)) if per_block else None
        most = f"; block {biggest} alone has {per_block[biggest]:,}" if biggest is not None else ""
        yield Diagnostic(
            _where(net),
            (
                f"this network would have {params:,} parameters ({_bytes(params * 4)} of float32 weights){most}; the "
                f"limit is {MAX_PARAMS:,}"
            ),
            hint="use fewer channels, columns or blocks",
        )
    if acts > MAX_ACTIVATIONS:
        yield Diagnostic(
            net.node("input").span,
            (
                f"one sample would need {acts:,} activations ({_bytes(acts * 4)} in float32); the limit is "
                f"{MAX_ACTIVATIONS:,}"
            ),
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
    """Infer shapes and run every check: the annotated network, or FractalError with all problems."""
    diags = Collector(source)
    annotated, problems = infer_shapes(net)
    # an input written HxWxC is the cause: the shape errors that follow from it are left out
    diags.diagnostics.extend((list(_channels_last(annotated)) if problems else []) or problems)
    if not diags.diagnostics:
        for check in CHECKS:
            diags.diagnostics.extend(check(annotated))
    diags.raise_if_any()
    return annotated
