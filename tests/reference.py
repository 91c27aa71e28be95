"""An independent interpreter of the networkx DAG, to check the compiled module against.

It walks ``Network.graph`` node by node with ``torch.nn.functional``, taking weights from a
compiled model's ``state_dict`` through :func:`fractal_dsl.codegen.module_names`, and
shares no code with the generated file: joins, drop-path and the layer vocabulary are
written again here from docs/ARCHITECTURE.md and the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fractal_dsl import codegen


def run(net, state: dict, x: torch.Tensor, *, training: bool = False, sample: dict | None = None) -> torch.Tensor:
    """Evaluate ``net`` on ``x``.

    ``sample`` is a per-batch drop-path sample (``{"joins": {join id: kept inputs}}``);
    without one every join keeps all its inputs.  ``training`` makes batch norm use the
    batch statistics; dropout is never applied (build the model with ``dropout=False``).
    In eval mode a global sample of column k (``column_sample(k)``) normalises with column
    k's running statistics (``running_mean_ck``, where the layer has them), anything else
    with the whole network's; the input is first normalised by ``normalize.mean`` and
    ``normalize.std`` when the state has them.
    """
    g = net.graph
    names = codegen.module_names(net)
    kept = (sample or {}).get("joins", {})
    path = (sample or {}).get("column") if (sample or {}).get("mode") == "global" else None
    values: dict[str, torch.Tensor] = {}
    for n in net.nodes_in_order():
        a = g.nodes[n]["node"]
        preds = sorted(g.predecessors(n), key=lambda u: g.edges[u, n]["edge"].index)
        if a.kind == "input":
            if "normalize.mean" in state:
                x = (x - state["normalize.mean"][:, None, None]) / state["normalize.std"][:, None, None]
            values[n] = x
        elif a.kind == "join":
            keep = kept.get(n, tuple(range(len(preds))))
            if not keep:
                raise AssertionError(f"{n}: a sample must keep at least one input")
            values[n] = _join(net, n, [values[u] for u in preds], keep)
        elif a.kind == "output":
            values[n] = values[preds[0]]
        else:
            h = values[preds[0]]
            for i, layer in enumerate(a.layers):
                h = _layer(layer, h, state, f"{names[n]}.{i}", training, path)
            values[n] = h
    return values["output"]


def _join(net, n: str, xs: list[torch.Tensor], keep: tuple[int, ...]) -> torch.Tensor:
    mode = net.join_mode
    survivors = [xs[i] for i in keep]
    if mode == "mean":
        return torch.stack(survivors).mean(0)
    if mode == "sum":
        return torch.stack(survivors).sum(0) * len(xs) / len(survivors)
    if mode == "max":
        return torch.stack(survivors).amax(0)
    if mode == "concat":
        return torch.cat([x if i in keep else torch.zeros_like(x) for i, x in enumerate(xs)], 1)
    raise AssertionError(mode)


def _layer(layer, h: torch.Tensor, state: dict, prefix: str, training: bool, path=None) -> torch.Tensor:
    a = dict(layer.args)
    t = layer.type
    if t == "conv2d":
        return F.conv2d(
            h,
            state[f"{prefix}.weight"],
            state.get(f"{prefix}.bias"),
            stride=a["stride"],
            padding=a["padding"],
            dilation=a["dilation"],
            groups=a["groups"],
        )
    if t == "batchnorm2d":
        own = f"_c{path}" if path is not None and f"{prefix}.running_mean_c{path}" in state else ""
        return F.batch_norm(
            h,
            state[f"{prefix}.running_mean{own}"].clone(),
            state[f"{prefix}.running_var{own}"].clone(),
            state[f"{prefix}.weight"],
            state[f"{prefix}.bias"],
            training=training,
            eps=1e-5,
        )
    if t == "linear":
        return F.linear(h, state[f"{prefix}.weight"], state.get(f"{prefix}.bias"))
    if t == "maxpool2d":
        return F.max_pool2d(h, a["kernel"], a["stride"], a["padding"])
    if t == "avgpool2d":
        return F.avg_pool2d(h, a["kernel"], a["stride"], a["padding"])
    if t == "globalavgpool":
        return h.mean((2, 3), keepdim=True)
    if t == "flatten":
        return h.flatten(1)
    if t in ("dropout", "dropout2d", "identity"):
        return h
    if t == "leakyrelu":
        return F.leaky_relu(h, a["slope"])
    return {"relu": F.relu, "gelu": F.gelu, "elu": F.elu, "silu": F.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[
        t
    ](h)


def compiled(path, display_name: str | None = None):
    """``(net, module)``: the example at ``path`` loaded, compiled and imported (test helper)."""
    import fractal_dsl

    net = fractal_dsl.load(path, display_name)
    return net, codegen.load_module(codegen.generate(net), f"compiled_{net.name}")


def check_train_samples(net, module, model, x, generator) -> None:
    """Force four drawn samples on ``model`` (train mode, dropout off) through a steering
    hook and compare each training forward with :func:`run` on the same sample."""
    import torch

    for _ in range(4):
        sample = module.sample_drop_path(generator, local=0.5, global_ratio=0.3)
        handle = model.register_drop_path_hook(lambda m, s, fixed=sample: fixed)
        state = {k: v.clone() for k, v in model.state_dict().items()}  # before BN updates
        y = model(x)
        handle.remove()
        assert model.last_drop_path == sample
        torch.testing.assert_close(y, run(net, state, x, training=True, sample=sample), rtol=1e-4, atol=1e-5)
