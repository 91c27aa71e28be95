"""Shapes and parameter counts from the graph agree with PyTorch itself.

An independent reference, separate from the code generator: each node's resolved
``layers`` are built as plain torch modules and the whole graph is run on a random batch;
every node's inferred shape and parameter count must match what torch reports.
"""

from __future__ import annotations

import pytest
from conftest import ROOT

from fractal_dsl import load, loads
from fractal_dsl.layers import Layer

torch = pytest.importorskip("torch")  # torch is a hard dependency of the package; this only guards odd installs
nn = torch.nn

SMALL = ["tiny", "ternary", "trunk", "maxjoin", "nested", "fractal3"]


def module(layer: Layer, in_shape: tuple[int, ...]):
    a = dict(layer.args)
    t = layer.type
    if t == "conv2d":
        return nn.Conv2d(in_shape[0], a["out_channels"], a["kernel"], a["stride"], a["padding"], a["dilation"], a["groups"], a["bias"])
    if t == "batchnorm2d":
        return nn.BatchNorm2d(in_shape[0])
    if t == "linear":
        return nn.Linear(in_shape[0], a["out_features"], a["bias"])
    if t in ("maxpool2d", "avgpool2d"):
        cls = nn.MaxPool2d if t == "maxpool2d" else nn.AvgPool2d
        return cls(a["kernel"], a["stride"], a["padding"])
    if t in ("dropout", "dropout2d"):
        return (nn.Dropout if t == "dropout" else nn.Dropout2d)(a["p"])
    if t == "leakyrelu":
        return nn.LeakyReLU(a["slope"])
    simple = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
              "identity": nn.Identity, "flatten": nn.Flatten, "globalavgpool": lambda: nn.AdaptiveAvgPool2d(1)}
    return simple[t]()


def join(mode: str, ins):
    if mode == "concat":
        return torch.cat(ins, 1)
    stack = torch.stack(ins)
    return {"mean": stack.mean(0), "sum": stack.sum(0), "max": stack.max(0).values}[mode]


def run_graph(net):
    g = net.graph
    values = {}
    params = {}
    for n in net.nodes_in_order():
        a = g.nodes[n]["node"]
        ins = [values[p] for p in sorted(g.predecessors(n), key=lambda p: g.edges[p, n]["edge"].index)]
        if a.kind == "input":
            values[n] = torch.randn(2, *net.input_shape)
            continue
        if a.kind == "join":
            values[n] = join(net.join_mode, ins)
            params[n] = 0
            continue
        (x,) = ins
        mods = []
        for layer in a.layers:
            m = module(layer, tuple(x.shape[1:]))
            x = m(x)
            mods.append(m)
        values[n] = x
        params[n] = sum(p.numel() for m in mods for p in m.parameters())
    return values, params


@pytest.mark.parametrize("name", SMALL)
def test_shapes_and_params_match_torch(name):
    torch.manual_seed(0)
    net = load(ROOT / "examples" / f"{name}.fdsl")
    with torch.no_grad():
        values, params = run_graph(net)
    g = net.graph
    for n, v in values.items():
        assert tuple(v.shape[1:]) == g.nodes[n]["node"].shape, n
        if n in params:
            assert params[n] == g.nodes[n]["node"].params, n
    assert sum(params.values()) == net.params
    assert tuple(values["output"].shape) == (2, net.classes)


def test_concat_and_strided_layers_match_torch():
    net = loads(
        """network t {
  input 3x17x13
  classes 5
  key {
    stem = conv5x5(6, stride=2, padding=1, bias=false) . bn . gelu
    conv(c, s) = conv(c, stride=s, dilation=2) . avgpool(3, stride=1, padding=1) . leakyrelu(0.3)
    join = concat
    pool = maxpool(3, stride=2, padding=1)
    head = gap . flatten . dropout(0.5) . linear(classes, bias=false)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns 3
  blocks (4, 1) (8, 1)
}""",
        "t.fdsl",
    )
    torch.manual_seed(0)
    with torch.no_grad():
        values, params = run_graph(net)
    for n, v in values.items():
        assert tuple(v.shape[1:]) == net.graph.nodes[n]["node"].shape, n
    assert sum(params.values()) == net.params
