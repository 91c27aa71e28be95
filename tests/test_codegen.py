"""The compiled module: every example compiles, runs, and agrees with tests/reference.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import EXAMPLES, ROOT, assert_golden
from reference import check_train_samples, compiled, run

import fractal_dsl
from fractal_dsl import codegen

torch.set_num_threads(1)
# The ImageNet-size example is slow on CPU: it runs forward/backward once, at batch 1.
SMALL = [p for p in EXAMPLES if p.stem != "fractalnet34"]


def _build(module, **kw):
    torch.manual_seed(0)
    model = module.build(**kw)
    _randomise_bn(model)
    return model


def _randomise_bn(model) -> None:
    """Non-trivial running statistics, so eval-mode batch norm is not the identity, and
    different ones per path (the whole network's and each column's)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for name, buf in m.named_buffers():
                if name.startswith("running_mean"):
                    buf.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                elif name.startswith("running_var"):
                    buf.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _input(net, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_trains_and_evaluates(path):
    net, module = compiled(path)
    model = _build(module)
    assert sum(p.numel() for p in model.parameters()) == net.params
    assert model.num_columns == net.columns
    batch = 1 if path.stem == "fractalnet34" else 2
    x = _input(net, batch)
    for training in (True, False):
        model.train(training)
        model.zero_grad()
        y = model(x)
        assert y.shape == (batch, net.classes)
        y.square().mean().backward()
        assert torch.isfinite(y).all()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("path", SMALL, ids=[p.stem for p in SMALL])
def test_eval_agrees_with_reference(path):
    net, module = compiled(path)
    model = _build(module).eval()
    state = model.state_dict()
    x = _input(net)
    with torch.no_grad():
        torch.testing.assert_close(model(x), run(net, state, x), rtol=1e-4, atol=1e-5)
        for k in range(1, net.columns + 1):
            sample = module.column_sample(k)
            expected = run(net, state, x, sample=sample)
            torch.testing.assert_close(model(x, column=k), expected, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(model.extract_column(k)(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", SMALL, ids=[p.stem for p in SMALL])
def test_train_sample_agrees_with_reference(path):
    """A fixed drop-path sample in train mode (batch statistics, dropout off)."""
    net, module = compiled(path)
    model = _build(module, dropout=False, drop_path_per="batch").train()
    x = _input(net, 4)
    check_train_samples(net, module, model, x, torch.Generator().manual_seed(0))


def test_extract_column_is_sequential_and_shares_weights():
    net, module = compiled(ROOT / "examples" / "fractal3.fdsl")
    model = _build(module)
    seq = model.extract_column(3)
    assert isinstance(seq, torch.nn.Sequential)
    assert len(list(seq.parameters())) and all(any(p is q for q in model.parameters()) for p in seq.parameters())
    convs = [m for m in seq.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 * 4  # column 3 of a C = 3 block holds 2^2 convs
    with pytest.raises(ValueError, match="column must be 1..3"):
        model.extract_column(4)
    with pytest.raises(ValueError, match="column must be 1..3"):
        model(_input(net), column=0)


def test_module_names_point_at_submodules():
    net, module = compiled(ROOT / "examples" / "trunk.fdsl")
    model = module.build()
    names = codegen.module_names(net)
    g = net.graph
    for node, name in names.items():
        sub = model.get_submodule(name)
        expected = sum(p.numel() for p in sub.parameters())
        assert expected == g.nodes[node]["node"].params, node
    assert names["b1_c3_d3_wide"] == "block1.column3.layer2"
    assert {g.nodes[n]["node"].kind for n in names} == {"layer", "pool", "head"}


def test_state_dict_round_trips(tmp_path):
    net, module = compiled(ROOT / "examples" / "tiny.fdsl")
    a, b = _build(module).eval(), module.build().eval()
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b.load_state_dict(torch.load(tmp_path / "w.pt"))
    x = _input(net)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_build_overrides_and_bad_arguments():
    _, module = compiled(ROOT / "examples" / "tiny.fdsl")
    model = module.build(num_classes=3)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="drop_path_per"):
        module.build(drop_path_per="epoch")
    with pytest.raises(ValueError, match="drop_path_local"):
        module.build(drop_path_local=1.5)
    with pytest.raises(TypeError):
        module.Tiny(10)  # keyword-only


def test_weight_initialisation_follows_the_file_and_the_override():
    text = (ROOT / "examples" / "tiny.fdsl").read_text()
    assert "init" not in text  # the default is the paper's Xavier initialisation
    net, module = compiled(ROOT / "examples" / "tiny.fdsl")
    assert module.DEFAULT_INIT == net.init == "xavier"

    def convs(model):
        return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    torch.manual_seed(0)
    xavier = module.build()
    for conv in convs(xavier):
        fan_in = conv.in_channels * 9
        fan_out = conv.out_channels * 9
        bound = (6 / (fan_in + fan_out)) ** 0.5  # Glorot and Bengio's uniform range
        w = conv.weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    linear = xavier.head[-1]
    assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
    assert linear.weight.abs().max() <= (6 / (linear.in_features + linear.out_features)) ** 0.5

    torch.manual_seed(0)
    default = module.build(init="torch")  # PyTorch's own: uniform within 1/sqrt(fan_in)
    first = convs(default)[0]
    assert first.weight.abs().max() > (6 / (first.in_channels * 9 + first.out_channels * 9)) ** 0.5
    torch.manual_seed(0)
    kaiming = module.build(init="kaiming")
    assert not torch.equal(convs(kaiming)[1].weight, convs(xavier)[1].weight)

    kaiming_file = fractal_dsl.loads(text.replace("  columns 3", "  init kaiming\n  columns 3"), "k.fdsl")
    assert kaiming_file.init == "kaiming"
    assert 'DEFAULT_INIT = "kaiming"' in codegen.generate(kaiming_file)
    with pytest.raises(ValueError, match="init"):
        module.build(init="zeros")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_golden_code(path):
    net = fractal_dsl.load(path, f"examples/{path.name}")
    source = codegen.generate(net)
    assert codegen.generate(fractal_dsl.load(path, f"examples/{path.name}")) == source
    assert_golden(ROOT / "tests" / "golden" / "codegen" / f"{path.stem}.py", source)


def test_generated_code_passes_ruff(tmp_path):
    for path in EXAMPLES:
        (tmp_path / f"{path.stem}.py").write_text(codegen.generate(fractal_dsl.load(path)))
    (tmp_path / "units.py").write_text(codegen.generate(fractal_dsl.loads(UNITS)))
    ruff = [sys.executable, "-m", "ruff"]
    files = sorted(str(p) for p in tmp_path.glob("*.py"))
    check = subprocess.run(
        [*ruff, "check", "--isolated", "--no-cache", *files], check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [*ruff, "format", "--isolated", "--no-cache", "--check", *files], check=False, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_generated_code_imports_only_torch_and_stdlib():
    import ast

    tree = ast.parse(codegen.generate(fractal_dsl.load(ROOT / "examples" / "fractal4.fdsl")))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "functools", "itertools", "collections", "operator", "typing", "warnings", "torch"}, roots


EDGE = """network edge {
  input 2x8x8
  classes 4
  key {
    conv(c) = conv3x3(c) . bn . relu
    head = gap . flatten . linear(classes)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns COLUMNS
  blocks 4 6
}"""


@pytest.mark.parametrize("columns", [1, 3])
@pytest.mark.parametrize("mode", [{}, {"compute_all": True}, {"drop_path_per": "sample"}])
def test_networks_without_pools_or_joins(columns, mode):
    """One column (no joins at all) and no `pool` key: every mode still trains and agrees."""
    net = fractal_dsl.loads(EDGE.replace("COLUMNS", str(columns)))
    module = codegen.load_module(codegen.generate(net), f"edge{columns}")
    model = _build(module, **mode).train()
    x = _input(net)
    model(x).sum().backward()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), run(net, model.state_dict(), x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.extract_column(columns)(x), model(x, column=columns))


# Key entries whose arguments come from everywhere a unit function must cover: a nested key
# entry, a parameter used twice and in keyword position, a dilation that sets the padding,
# a pool stride and padding from parameters, `classes` in a body, a block value written as
# an integer where a float is wanted, explicit arguments in a rule, and a built-in called
# in a rule.
UNITS = """network units {
  input 3x16x16
  classes 6
  key {
    stem = conv(8, kernel=3, padding=1, bias=false) . bn
    act(s) = leakyrelu(s)
    unit(c, p, d) = conv3x3(c, dilation=d, groups=1, bias=false) . dropout2d(p) . bn . act(0.2)
    wide(c, p, d) = conv1x1(c) . dropout(p) . conv(c, stride=1, kernel=3, dilation=d)
    join = mean
    pool(d) = avgpool(2, stride=d, padding=1)
    head = flatten . linear(classes, bias=false)
  }
  f[1] = unit
  f[2] = join(unit . wide(8, 0.5, 1), conv3x3(8) . relu)
  f[C] = join(unit . f[C-1], wide)
  columns 3
  blocks (8, 0, 2) (8, 0.25, 1)
}"""


def _layer_facts(m: torch.nn.Module) -> tuple:
    if isinstance(m, torch.nn.Conv2d):
        shape = (m.kernel_size, m.stride, m.padding, m.dilation)
        return ("conv2d", m.in_channels, m.out_channels, *shape, m.groups, m.bias is not None)
    if isinstance(m, torch.nn.Linear):
        return ("linear", m.in_features, m.out_features, m.bias is not None)
    if isinstance(m, torch.nn.BatchNorm2d):
        return ("batchnorm2d", m.num_features)
    if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)):
        return (type(m).__name__.lower(), float(m.p))
    if isinstance(m, torch.nn.LeakyReLU):
        return ("leakyrelu", m.negative_slope)
    if isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
        return (type(m).__name__.lower(), m.kernel_size, m.stride, m.padding)
    return (type(m).__name__,)


def _expected_facts(layer, in_shape, dropout: bool) -> tuple:
    a = dict(layer.args)
    t = layer.type
    if t == "conv2d":
        k, s, p, d = a["kernel"], a["stride"], a["padding"], a["dilation"]
        return (t, in_shape[0], a["out_channels"], (k, k), (s, s), (p, p), (d, d), a["groups"], a["bias"])
    if t == "linear":
        return (t, in_shape[0], a["out_features"], a["bias"])
    if t == "batchnorm2d":
        return (t, in_shape[0])
    if t in ("dropout", "dropout2d"):
        return (t, a["p"] if dropout else 0.0)
    if t == "leakyrelu":
        return (t, a["slope"])
    if t in ("maxpool2d", "avgpool2d"):
        return (t, a["kernel"], a["stride"], a["padding"])
    names = {"globalavgpool": "AdaptiveAvgPool2d", "flatten": "Flatten", "relu": "ReLU", "identity": "Identity"}
    return (names.get(t, t),)


@pytest.mark.parametrize("program", [*EXAMPLES, "units"], ids=[*(p.stem for p in EXAMPLES), "units"])
@pytest.mark.parametrize("dropout", [True, False])
def test_unit_functions_build_the_resolved_layers(program, dropout):
    """Every unit, built by its key entry's function, holds exactly the layers the compiler
    resolved for it (checked against the graph, independently of the generated text)."""
    net = fractal_dsl.loads(UNITS) if program == "units" else fractal_dsl.load(program)
    source = codegen.generate(net)
    module = codegen.load_module(source, f"units_{net.name}")
    model = module.build(dropout=dropout)
    names = codegen.module_names(net)
    checked = 0
    for node in net.nodes():
        if not node.is_unit:
            continue
        unit = model.get_submodule(names[node.id])
        shapes = (node.in_shape, *node.layer_shapes)
        expected = [_expected_facts(layer, shapes[i], dropout) for i, layer in enumerate(node.layers)]
        assert [_layer_facts(m) for m in unit] == expected, node.id
        checked += 1
    assert checked == sum(1 for n in net.nodes() if n.is_unit)
    if program == "units":
        assert "def wide(in_channels: int, c: int, p: float, d: int, dropout: bool)" in source
        assert "nn.Conv2d(c, c, 3, padding=d, dilation=d)" in source
        model(torch.randn(2, 3, 16, 16)).sum().backward()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_node_table_and_on_path_table_match_the_graph(path):
    """The tables the module rebuilds from its shared block graphs (``_expand``) are the
    graph's own: every node's submodule, columns, inputs and join, every join's first
    input, input count and rank, and semantics' on-path table; blocks built alike share
    one graph and one forward method."""
    from fractal_dsl import semantics

    net = fractal_dsl.load(path)
    source = codegen.generate(net)
    module = codegen.load_module(source, f"tables_{path.stem}")
    order = net.nodes_in_order()
    index = {n: i for i, n in enumerate(order)}
    joins = semantics.joins(net)
    names = codegen.module_names(net)
    expected = []
    for n in order:
        inputs = tuple(index[u] for u in net.inputs(n))
        expected.append((n, names.get(n, ""), net.node(n).columns, inputs, joins.index(n) if n in joins else -1))
    assert module._NODES == tuple(expected)
    first = 0
    for j, (name, a, n, rank, *_) in enumerate(module._JOINS):
        assert (name, a, n, rank) == (joins[j], first, len(net.inputs(joins[j])), len(net.node(joins[j]).shape) + 1)
        first += n
    assert module._ON_PATH == semantics.on_path_table(net)
    assert source.count("def _forward_graph") == 1 == source.count("\n_GRAPH")


def test_the_module_grows_with_the_kinds_of_blocks_not_the_blocks_or_joins():
    """Issue 20: a block built like another adds its entry in ``_BLOCKS`` and its forward
    call, never its units', nodes' or joins' rows; a wider network adds its one block
    graph's rows (tiny at C = 10, 768 joins: at most 5,000 lines, issue 20's bound)."""
    from fractal_dsl import semantics

    tiny = (ROOT / "examples" / "tiny.fdsl").read_text()
    three = codegen.generate(fractal_dsl.loads(tiny, "tiny.fdsl"))
    four = tiny.replace("blocks (16, 0.0) (32, 0.1) (64, 0.2)", "blocks (16, 0.0) (32, 0.1) (64, 0.2) (64, 0.3)")
    assert four != tiny
    grown = codegen.generate(fractal_dsl.loads(four, "tiny.fdsl"))
    assert 0 < grown.count("\n") - three.count("\n") <= 4
    wide = fractal_dsl.loads(tiny, "tiny.fdsl", set={"columns": 10})
    source = codegen.generate(wide)
    assert source.count("\n") <= 5000
    module = codegen.load_module(source, "tiny_c10")
    assert len(module._JOINS) == len(semantics.joins(wide)) == 768
    assert source.count("join_d") == 256  # one row per join of the one block graph


def test_the_output_is_checked_once(monkeypatch):
    """generate() refuses source that does not compile; with check=False it leaves that to
    load_module, which compiles it anyway (one syntax check either way, issue 22)."""
    net = fractal_dsl.load(ROOT / "examples" / "tiny.fdsl")
    assert codegen.generate(net, check=False) == codegen.generate(net)
    monkeypatch.setattr(codegen, "_literal", lambda value: "(")  # a template or naming bug
    with pytest.raises(SyntaxError):
        codegen.generate(net)
    broken = codegen.generate(net, check=False)
    with pytest.raises(SyntaxError):
        codegen.load_module(broken, "broken")
