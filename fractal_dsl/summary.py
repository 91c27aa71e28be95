"""The facts ``check`` and ``inspect`` print: per-block structure and whole-network totals.

:func:`describe` returns a plain dict (the ``inspect --json`` object); :func:`format_text`
lays the same facts out for people.  Nothing here imports torch.
"""

from __future__ import annotations

import networkx as nx

from .expand import Network
from .layers import shape_str


def block_facts(net: Network) -> list[dict]:
    g = net.graph
    order = net.nodes_in_order()
    facts = []
    for b in range(1, net.blocks + 1):
        nodes = [n for n in order if g.nodes[n]["block"] == b and g.nodes[n]["kind"] in ("layer", "join")]
        layers = [n for n in nodes if g.nodes[n]["kind"] == "layer"]
        joins = sorted((n for n in nodes if g.nodes[n]["kind"] == "join"), key=lambda n: (g.nodes[n]["depth"], order.index(n)))
        last = nodes[-1]
        facts.append({
            "block": b,
            "channels": g.nodes[last]["shape"][0],
            "convs": len(layers),
            "joins": [g.in_degree(n) for n in joins],
            "depth": max((g.nodes[n]["depth"] for n in layers), default=0),
            "shape": list(g.nodes[last]["shape"]),
            "params": sum(g.nodes[n]["params"] for n in nodes),
            "values": list(net.block_values[b - 1]) if b - 1 < len(net.block_values) else [],
        })
    return facts


def deepest_path(net: Network) -> int:
    """Layers with weights or activations on the longest input-to-output path (stem and head count)."""
    g = net.graph
    weight = {n: 1 if g.nodes[n]["kind"] in ("layer", "stem", "head") else 0 for n in g}
    best: dict[str, int] = {}
    for n in nx.topological_sort(g):
        best[n] = weight[n] + max((best[p] for p in g.predecessors(n)), default=0)
    return best["output"]


def describe(net: Network, module_names: dict[str, str] | None = None) -> dict:
    g = net.graph
    blocks = block_facts(net)
    nodes = []
    for n in net.nodes_in_order():
        a = g.nodes[n]
        node = {
            "id": n,
            "kind": a["kind"],
            "op": a["op"],
            "block": a["block"],
            "column": a["column"],
            "columns": list(a["columns"]),
            "depth": a["depth"],
            "shape": list(a["shape"]),
            "params": a["params"],
            "macs": a["macs"],
            "layers": [layer.describe() for layer in a["layers"]],
            "source": {"line": a["span"].line, "column": a["span"].column},
        }
        if module_names is not None and n in module_names:
            node["module"] = module_names[n]
        nodes.append(node)
    edges = [
        {"source": u, "target": v, "index": e["index"], "columns": list(e["columns"])}
        for u, v, e in sorted(g.edges(data=True), key=lambda t: (_pos(net, t[1]), t[2]["index"]))
    ]
    dp = net.droppath
    return {
        "name": net.name,
        "file": net.source_name,
        "input": list(net.input_shape),
        "classes": net.classes,
        "columns": net.columns,
        "depth": sum(b["depth"] for b in blocks),
        "deepest_path": deepest_path(net),
        "params": net.params,
        "macs": net.macs,
        "join": {"mode": net.join_mode, "flat": net.flat_joins},
        "droppath": {"enabled": dp.enabled, "local": dp.local, "global": dp.global_ratio, "per": dp.per},
        "init": net.init,
        "blocks": blocks,
        "graph": {"nodes": nodes, "edges": edges},
    }


def _pos(net: Network, node: str) -> int:
    cache = getattr(net, "_pos_cache", None)
    if cache is None:
        cache = {n: i for i, n in enumerate(net.nodes_in_order())}
        net._pos_cache = cache
    return cache[node]


def one_line(net: Network) -> str:
    depth = sum(b["depth"] for b in block_facts(net))
    return f"{net.name}: {_n(net.columns, 'column')}, {_n(net.blocks, 'block')}, depth {depth}, {net.params:,} parameters"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


def format_text(net: Network) -> str:
    d = describe(net)
    g = net.graph
    dp = net.droppath
    lines = [
        f"network {net.name}  ({net.source_name})",
        (
            f"  input {shape_str(net.input_shape)}, {_n(net.classes, 'class')}, {_n(net.columns, 'column')}, {_n(net.blocks, 'block')}, "
            f"join {net.join_mode} ({'flattened' if net.flat_joins else 'nested'})"
        ),
        "",
        f"  {'block':>5}  {'in':>12}  {'out':>12}  {'convs':>5}  {'depth':>5}  {'params':>12}  joins by depth (arity)",
    ]
    for b in d["blocks"]:
        first = next(n for n in net.nodes_in_order() if g.nodes[n]["block"] == b["block"])
        lines.append(
            f"  {b['block']:>5}  {shape_str(g.nodes[first]['in_shape']):>12}  {shape_str(tuple(b['shape'])):>12}  "
            f"{b['convs']:>5}  {b['depth']:>5}  {b['params']:>12,}  {' '.join(map(str, b['joins'])) or '-'}"
        )
    for special in ("stem", "head"):
        if special in g:
            a = g.nodes[special]
            lines.append(f"  {special:>5}  {shape_str(a['in_shape']):>12}  {shape_str(a['shape']):>12}  {'':>5}  {'':>5}  {a['params']:>12,}  "
                         + " . ".join(layer.describe() for layer in a["layers"]))
    lines += [
        "",
        f"  parameters      {net.params:,}",
        f"  MACs per sample {net.macs:,} ({net.macs / 1e9:.2f} G)",
        f"  depth           {d['depth']} layers in blocks; deepest path {d['deepest_path']} layers",
        "  drop-path       " + (f"local {dp.local:g}, global {dp.global_ratio:g}, per {dp.per}" if dp.enabled else "off"),
        f"  init            {net.init}",
    ]
    return "\n".join(lines)
