"""The facts ``check`` and ``inspect`` print: per-block structure and whole-network totals.

:func:`describe` returns a plain dict (the ``inspect --json`` object); :func:`format_text`
lays the same facts out for people.  Nothing here imports torch.
"""

from __future__ import annotations

from . import semantics
from .ir import JOIN, LAYER, POOL, Network
from .layers import shape_str


def block_facts(net: Network) -> list[dict]:
    """Per block: channels, layer units by kind, joins, depth (rows), parameters (the
    pool's included, for a pool that holds weights), block values."""
    facts = []
    for b in range(1, net.blocks + 1):
        nodes = [n for n in net.nodes() if n.block == b and n.kind in (LAYER, JOIN)]
        units = [n for n in nodes if n.kind == LAYER]
        joins = sorted((n for n in nodes if n.kind == JOIN), key=lambda n: (n.depth, net.position(n.id)))
        pool = next((n for n in net.nodes() if n.block == b and n.kind == POOL), None)
        kinds = [semantics.unit_kind(n) for n in units]
        last = nodes[-1]
        facts.append(
            {
                "block": b,
                "channels": last.shape[0],
                "convs": kinds.count("conv"),
                "units": {kind: kinds.count(kind) for kind in semantics.UNIT_KINDS},
                "joins": [len(net.inputs(n.id)) for n in joins],
                "depth": semantics.block_depth(net, b),
                "shape": list(last.shape),
                "params": sum(n.params for n in nodes) + (pool.params if pool else 0),
                "pool": None
                if pool is None
                else {"layers": [layer.describe() for layer in pool.layers], "params": pool.params},
                "values": dict(net.block_values[b - 1]) if b - 1 < len(net.block_values) else {},
            }
        )
    return facts


def describe(net: Network) -> dict:
    """The ``inspect --json`` object: structure, totals and the whole graph."""
    blocks = block_facts(net)
    nodes = []
    for n in net.nodes():
        node = {
            "id": n.id,
            "kind": n.kind,
            "op": n.op,
            "block": n.block,
            "column": n.column,
            "columns": list(n.columns),
            "depth": n.depth,
            "shape": list(n.shape),
            "params": n.params,
            "macs": n.macs,
            "layers": [layer.describe() for layer in n.layers],
            "source": {"line": n.span.line, "column": n.span.column},
        }
        if n.module is not None:
            node["module"] = n.module
        nodes.append(node)
    edges = [
        {"source": u, "target": v, "index": e.index, "columns": list(e.columns)}
        for u, v, e in sorted(
            ((u, v, net.edge(u, v)) for u, v in net.graph.edges), key=lambda t: (net.position(t[1]), t[2].index)
        )
    ]
    dp = net.droppath
    return {
        "name": net.name,
        "file": net.source_name,
        "input": list(net.input_shape),
        "classes": net.classes,
        "columns": net.columns,
        "depth": sum(b["depth"] for b in blocks),
        "deepest_path": semantics.deepest_path(net),
        "params": net.params,
        "macs": net.macs,
        "join": {"mode": net.join_mode, "flat": net.flat_joins},
        "droppath": {"enabled": dp.enabled, "local": dp.local, "global": dp.global_ratio, "per": dp.per},
        "init": net.init,
        "blocks": blocks,
        "graph": {"nodes": nodes, "edges": edges},
    }


def one_line(net: Network) -> str:
    depth = sum(b["depth"] for b in block_facts(net))
    return (
        f"{net.name}: {plural(net.columns, 'column')}, {plural(net.blocks, 'block')}, depth {depth}, "
        f"{net.params:,} parameters"
    )


def plural(count: int, noun: str) -> str:
    """``1 block``, ``3 blocks``."""
    return f"{count} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


def format_text(net: Network) -> str:
    d = describe(net)
    dp = net.droppath
    lines = [
        f"network {net.name}  ({net.source_name})",
        (
            f"  input {shape_str(net.input_shape)}, {plural(net.classes, 'class')}, {plural(net.columns, 'column')}, "
            f"{plural(net.blocks, 'block')}, join {net.join_mode} ({'flattened' if net.flat_joins else 'nested'})"
        ),
        "",
        f"  {'block':>5}  {'in':>12}  {'out':>12}  {'units':<20}  {'depth':>5}  {'params':>12}  joins by depth (arity)",
    ]
    for b in d["blocks"]:
        first = next(n for n in net.nodes() if n.block == b["block"])
        units = ", ".join(f"{count} {kind}" for kind, count in b["units"].items() if count) or "-"
        pool = b["pool"]
        weighted_pool = f"; pool {' . '.join(pool['layers'])}" if pool and pool["params"] else ""
        lines.append(
            f"  {b['block']:>5}  {shape_str(first.in_shape):>12}  {shape_str(tuple(b['shape'])):>12}  "
            f"{units:<20}  {b['depth']:>5}  {b['params']:>12,}  {' '.join(map(str, b['joins'])) or '-'}{weighted_pool}"
        )
    for special in ("stem", "head"):
        if special in net.graph:
            a = net.node(special)
            lines.append(
                (
                    f"  {special:>5}  {shape_str(a.in_shape):>12}  {shape_str(a.shape):>12}  {'':<20}  {'':>5}  "
                    f"{a.params:>12,}  "
                )
                + " . ".join(layer.describe() for layer in a.layers)
            )
    lines += [
        "",
        f"  parameters      {net.params:,}",
        f"  MACs per sample {net.macs:,} ({net.macs / 1e9:.2f} G)",
        f"  depth           {d['depth']} rows of units in blocks; deepest path {d['deepest_path']} weight layers",
        "  drop-path       "
        + (f"local {dp.local:g}, global {dp.global_ratio:g}, per {dp.per}" if dp.enabled else "off"),
        f"  init            {net.init}",
    ]
    return "\n".join(lines)
