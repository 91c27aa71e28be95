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
    """Non-trivial running statistics, so eval-mode batch norm is not the identity."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
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
            sample = module._column_sample(k)
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
    assert type(seq) is torch.nn.Sequential
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
    assert roots <= {"__future__", "functools", "collections", "typing", "torch"}, roots


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
