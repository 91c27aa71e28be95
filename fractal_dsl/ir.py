"""The typed intermediate representation every stage after parsing reads.

The network is a networkx ``DiGraph`` (the DAG is part of the product: ``inspect --json``
and ``fractal_dsl.load`` hand it out), and each node carries exactly one frozen
:class:`Node` under the attribute ``"node"``, each edge one frozen :class:`Edge` under
``"edge"``.  Stages are functions from one value to a new one: expansion makes nodes
without shapes, validation returns a new :class:`Network` whose nodes
carry shapes, parameters and MACs; nothing is changed afterwards.

Read nodes through :class:`Network`'s accessors (``net.node(id)``,
``net.nodes()``, ``net.edge(u, v)``, ``net.inputs(id)``) rather than the raw graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

import networkx as nx

from .errors import Span
from .layers import Layer
from .syntax import KeyDef

Shape = tuple[int, ...]


class Kind(str, Enum):
    """A node's kind, in the order they appear along the network.  A ``str``: it compares,
    hashes, prints and serialises (``inspect --json``) as its value, ``"layer"``."""

    INPUT = "input"
    STEM = "stem"
    LAYER = "layer"
    JOIN = "join"
    POOL = "pool"
    HEAD = "head"
    OUTPUT = "output"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


INPUT, STEM, LAYER, JOIN, POOL, HEAD, OUTPUT = Kind
KINDS = tuple(Kind)
UNIT_KINDS = (STEM, LAYER, POOL, HEAD)  # nodes built from the layer key: they hold PyTorch layers


@dataclass(frozen=True)
class Edge:
    """An edge ``u -> v``: ``index`` is the input position into a join (0 elsewhere);
    ``columns`` the columns that branch carries (into a join; empty elsewhere)."""

    index: int = 0
    columns: tuple[int, ...] = ()


@dataclass(frozen=True)
class Node:
    """One node of the fractal.

    ``kind`` is a :class:`Kind`; ``op`` the key entry or built-in a layer unit comes
    from (``conv``), or a join's mode (``mean``); ``layers`` the resolved PyTorch layers of a
    unit, in order; ``block`` 1-based (None outside blocks; a pool has the block it
    follows); ``columns`` the 1-based columns whose path runs through the node (1 is the
    shallowest); ``depth`` its row within the block (Figure 1).  The shape fields,
    ``params`` and ``macs`` (multiply-accumulates per sample) are filled by validation;
    ``module`` is the dotted submodule name that holds a unit in the compiled module.
    """

    id: str
    kind: Kind
    op: str
    block: int | None
    columns: tuple[int, ...]
    depth: int | None
    span: Span
    key_span: Span | None = None
    args: tuple[tuple[str, object], ...] = ()
    layers: tuple[Layer, ...] = ()
    in_shape: Shape | None = None
    shape: Shape | None = None
    layer_shapes: tuple[Shape, ...] = ()
    params: int = 0
    macs: int = 0
    module: str | None = None

    @property
    def column(self) -> int | None:
        """The column a block node is drawn and named in: the shallowest that uses it."""
        if self.block is None or self.kind == POOL:
            return None
        return min(self.columns)

    @property
    def is_unit(self) -> bool:
        return self.kind in UNIT_KINDS


# How Jupyter shows a Network: ``"html"`` / ``"svg"`` -> a function of the network.  The
# package (``fractal_dsl/__init__.py``, the floor above every stage) fills it with webview's
# functions, imported when first called, so the graph's own module imports no drawing code.
DISPLAY: dict[str, Callable[[Network], str | None]] = {}


@dataclass(frozen=True)
class DropPath:
    """Drop-path settings; the defaults are the paper's (local 0.15, half global, per batch)."""

    local: float = 0.15
    global_ratio: float = 0.5
    per: str = "batch"
    enabled: bool = True


@dataclass(frozen=True)
class Network:
    """The fractal network: the typed graph (see :mod:`fractal_dsl.ir`) plus the facts every
    later stage needs.  :func:`expand` makes it without shapes; validation returns a new
    one whose nodes carry shapes, parameters and MACs, and whose ``params``/``macs`` are
    the totals.  Never changed after it is made (the graph is frozen)."""

    name: str
    source_name: str
    source_text: str
    graph: nx.DiGraph
    columns: int
    blocks: int
    join_mode: str
    flat_joins: bool
    droppath: DropPath
    input_shape: tuple[int, ...]
    classes: int
    init: str = "xavier"  # weight initialisation (syntax.INIT_SCHEMES); the paper's is Xavier
    block_values: tuple[tuple, ...] = ()
    key: tuple[KeyDef, ...] = ()  # the key's entries as written (codegen writes a function per entry from them)
    params: int = 0
    macs: int = 0

    @cached_property
    def _order(self) -> tuple[str, ...]:
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        return tuple(nx.lexicographical_topological_sort(self.graph, key=order.__getitem__))

    @cached_property
    def _position(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self._order)}

    def nodes_in_order(self) -> list[str]:
        """Node ids in a deterministic topological order (ties broken by creation order)."""
        return list(self._order)

    def position(self, n: str) -> int:
        """Where node ``n`` stands in :meth:`nodes_in_order`."""
        return self._position[n]

    def node(self, n: str) -> Node:
        return self.graph.nodes[n]["node"]

    def nodes(self) -> list[Node]:
        """Every node, in :meth:`nodes_in_order`."""
        g = self.graph.nodes
        return [g[n]["node"] for n in self._order]

    def edge(self, u: str, v: str) -> Edge:
        return self.graph.edges[u, v]["edge"]

    def inputs(self, n: str) -> list[str]:
        """The ids feeding ``n``, in input order (a join's inputs as the rule writes them)."""
        return sorted(self.graph.predecessors(n), key=lambda u: self.edge(u, n).index)

    def consumers(self, n: str) -> list[str]:
        """The ids ``n`` feeds, in :meth:`nodes_in_order`."""
        return sorted(self.graph.successors(n), key=self.position)

    def _repr_html_(self) -> str | None:
        """Jupyter shows the interactive view (``render -o net.html``); needs Graphviz."""
        show = DISPLAY.get("html")
        return show(self) if show else None

    def _repr_svg_(self) -> str | None:
        """Jupyter's static picture: ``render``'s default view as SVG; needs Graphviz."""
        show = DISPLAY.get("svg")
        return show(self) if show else None
