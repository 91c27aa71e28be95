"""The fractal's semantics, in one place: columns, paths, drop-path, liveness, depth.

Every stage that needs one of these facts asks here (validation, ``inspect``, ``render``,
the code generator, whose tables in the compiled module are generated from these
functions rather than re-derived).  ``tests/reference.py`` stays an independent oracle.

The rules, as the paper's Figure 1 and drop-path section give them:

* a node's ``columns`` are the columns whose path runs through it (``Node.columns``);
* global drop-path choosing column ``k`` keeps, at each join, exactly the inputs whose
  edge carries ``k`` (:func:`kept_inputs`); a join off the path keeps all its inputs,
  since nothing uses its output;
* the path of column ``k`` is the chain of nodes whose columns contain ``k``, linked by
  the edges that carry ``k`` into joins (:func:`column_path`);
* given the inputs each join keeps, a node is alive when some kept path from it reaches
  the output (:func:`live`); training skips the others;
* depth is the row of Figure 1: a layer sits one row below its deepest input within the
  block, a join on the row of its deepest input, a pool one row below the block
  (:func:`depths`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .ir import HEAD, INPUT, JOIN, LAYER, OUTPUT, POOL, STEM, Node
from .layers import TYPES

if TYPE_CHECKING:
    from .ir import Network

Kept = Mapping[str, Sequence[int]]  # join id -> indices of the inputs it keeps


def joins(net: Network) -> list[str]:
    """The join ids in the network's deterministic topological order."""
    return [n.id for n in net.nodes() if n.kind == JOIN]


def kept_inputs(net: Network, join: str, column: int) -> tuple[int, ...]:
    """The inputs of ``join`` that global drop-path on ``column`` keeps (all of them when
    the join is off that column's path)."""
    return _kept([net.edge(u, join).columns for u in net.inputs(join)], column)


def kept_inputs_by_column(net: Network, join: str) -> tuple[tuple[int, ...], ...]:
    """:func:`kept_inputs` of ``join`` for columns 1 to C, in one look at its inputs."""
    carried = [net.edge(u, join).columns for u in net.inputs(join)]
    return tuple(_kept(carried, k) for k in range(1, net.columns + 1))


def _kept(carried: Sequence[Sequence[int]], column: int) -> tuple[int, ...]:
    on = tuple(i for i, cols in enumerate(carried) if column in cols)
    return on if on else tuple(range(len(carried)))


def column_sample(net: Network, column: int) -> dict[str, tuple[int, ...]]:
    """``{join id: kept inputs}`` for global drop-path on ``column``."""
    return {j: kept_inputs(net, j, column) for j in joins(net)}


def on_path_table(net: Network) -> tuple[tuple[bool, ...], ...]:
    """Row ``k - 1``: for every join input in join order, whether column ``k`` keeps it."""
    js = joins(net)
    rows = []
    for k in range(1, net.columns + 1):
        row: list[bool] = []
        for j in js:
            kept = set(kept_inputs(net, j, k))
            row.extend(i in kept for i in range(len(net.inputs(j))))
        rows.append(tuple(row))
    return tuple(rows)


def column_path(net: Network, column: int) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """Nodes and edges of the subnetwork global drop-path keeps when it picks ``column``."""
    g = net.graph
    nodes = frozenset(n for n in g if column in net.node(n).columns)
    edges = frozenset((u, v) for u, v in g.edges if u in nodes and v in nodes and _carries(net, u, v, column))
    return nodes, edges


def column_paths(net: Network) -> list[tuple[frozenset[str], frozenset[tuple[str, str]]]]:
    """:func:`column_path` of every column, ``[k - 1]`` for column ``k``, in one pass over
    the graph (a drawing of a wide block asks for all of them)."""
    nodes: list[set[str]] = [set() for _ in range(net.columns)]
    edges: list[set[tuple[str, str]]] = [set() for _ in range(net.columns)]
    for n in net.nodes():
        for k in n.columns:
            nodes[k - 1].add(n.id)
    for u, v in net.graph.edges:
        for k in set(net.node(u).columns) & set(net.node(v).columns):
            if _carries(net, u, v, k):
                edges[k - 1].add((u, v))
    return [(frozenset(a), frozenset(b)) for a, b in zip(nodes, edges)]


def _carries(net: Network, u: str, v: str, column: int) -> bool:
    cols = net.edge(u, v).columns
    return not cols or column in cols


def live(net: Network, kept: Kept) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """Nodes and edges a drop-path sample uses: kept join inputs, and whatever feeds a kept
    path to the output (a node whose every consumer dropped it is dead, as in training).
    A join missing from ``kept`` keeps all its inputs."""
    g = net.graph
    live_nodes: set[str] = set()
    live_edges: set[tuple[str, str]] = set()
    for v in reversed(net.nodes_in_order()):
        if g.out_degree(v) and not any((v, w) in live_edges for w in g.successors(v)):
            continue
        live_nodes.add(v)
        is_join = net.node(v).kind == JOIN
        for i, u in enumerate(net.inputs(v)):
            if not is_join or v not in kept or i in kept[v]:
                live_edges.add((u, v))
    return frozenset(live_nodes), frozenset(live_edges)


def depths(kinds: Sequence[str], blocks: Sequence[int | None], preds: Mapping[int, Sequence[int]]) -> list[int]:
    """Figure 1's row of every node, for nodes given in topological order by kind, block
    and predecessors (indices); 0 outside blocks."""
    depth: list[int] = []
    for i, kind in enumerate(kinds):
        ins = [depth[p] if blocks[p] == blocks[i] else 0 for p in preds.get(i, ())]
        base = max(ins, default=0)
        if kind in (INPUT, STEM, OUTPUT, HEAD):
            depth.append(0)
        elif kind == POOL:
            depth.append(base + 1)
        else:
            depth.append(base + (1 if kind == LAYER else 0))
    return depth


def block_depth(net: Network, block: int) -> int:
    """The rows of layers in ``block``: the length of its deepest column (Figure 1)."""
    return max((n.depth for n in net.nodes() if n.block == block and n.kind == LAYER), default=0)


UNIT_KINDS = ("conv", "identity", "other")


def unit_kind(node: Node) -> str:
    """What a layer unit is, for counting: ``conv`` if it holds a convolution, ``identity``
    if it passes its input through (only identity layers, or none), else ``other``
    (the registry's ``convolution`` and ``identity`` flags say which layers are which)."""
    types = [TYPES[layer.type] for layer in node.layers]
    if any(t.convolution for t in types):
        return "conv"
    if all(t.identity for t in types):
        return "identity"
    return "other"


def deepest_path(net: Network) -> int:
    """The weight layers (convolutions and linear layers) on the input-to-output path that
    has the most of them (``fractal3``: 20 convolutions and the classifier, 21).  Stem,
    pools and head count when they hold such layers; joins and identity units do not."""
    best: dict[str, int] = {}
    for n in net.nodes():
        weight = sum(TYPES[layer.type].weights for layer in n.layers)
        best[n.id] = weight + max((best[p] for p in net.inputs(n.id)), default=0)
    return best["output"]


def columns_complete(net: Network, column: int) -> str | None:
    """None if ``column`` is one complete chain from the input to the output, else the
    first node where it branches or breaks (or ``""`` when it never reaches the output)."""
    nodes, edges = column_path(net, column)
    ins: dict[str, int] = {}
    outs: dict[str, int] = {}
    for u, v in edges:
        outs[u] = outs.get(u, 0) + 1
        ins[v] = ins.get(v, 0) + 1
    for n in net.nodes_in_order():
        if n not in nodes:
            continue
        if (n != "input" and ins.get(n, 0) != 1) or (n != "output" and outs.get(n, 0) != 1):
            return n
    if "input" not in nodes or "output" not in nodes:
        return ""
    return None
