"""What a network is, as one hash: checkpoints carry it so weights are never loaded into
another network by accident (no torch here).

:func:`structure_sha256` covers the name, the input shape, the classes, the join mode and,
node by node in topological order, each node's id, kind, operation and resolved layers with
their arguments, and every edge. Two programs that differ only in comments, layout or
drop-path settings have the same structure; a network with ``gelu`` instead of ``relu``,
``join = max``, an ``avgpool`` or another name has another, even when every tensor shape
matches.
"""

from __future__ import annotations

import hashlib
import json


def structure_sha256(net) -> str:
    nodes = []
    for node in net.nodes():
        layers = [[layer.type, [[k, repr(v)] for k, v in layer.args]] for layer in node.layers]
        nodes.append([node.id, node.kind, node.op, layers])
    edges = sorted([u, v, e.index, list(e.columns)] for u, v, e in net.graph.edges(data="edge"))
    whole = [net.name, list(net.input_shape), net.classes, net.join_mode, net.flat_joins, nodes, edges]
    return hashlib.sha256(json.dumps(whole, separators=(",", ":")).encode()).hexdigest()


def source_sha256(net) -> str:
    return hashlib.sha256(net.source_text.encode()).hexdigest()
