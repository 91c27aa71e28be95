"""Hostile names and strings in a .fdsl file, and the `compile` command."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT
from test_cli_check import PROBE  # runs the CLI, then lists the torch modules loaded

import fractal_dsl
from fractal_dsl import codegen
from fractal_dsl.cli import main

PROGRAM = """network NAME {
  input 1x8x8
  classes 3
  key {
    UNIT(c) = conv3x3(c, bias=false) . bn . relu
    join = mean
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }
  f[1] = UNIT
  f[C+1] = join(f[C] . f[C], UNIT)
  columns 2
  blocks 4
}
"""


def _program(name: str = "plain", unit: str = "conv") -> str:
    return PROGRAM.replace("NAME", name).replace("UNIT", unit)


def _code_without_docstring(source: str) -> str:
    """The module's code with every docstring and ``__all__`` (where the class name sorts
    in it depends on the name; checked on its own) removed, as an AST dump."""
    tree = ast.parse(source)
    tree.body = [n for n in tree.body if not (isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "__all__")]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("__import__", "Import"),
        ("os", "Os"),
        ("self", "Self"),
        ("tensor", "TensorNet"),
        ("named_tuple", "NamedTupleNet"),
        ("print", "Print"),
        ("None_", "NoneNet"),
        ("_9", "Net9"),
        ("exception", "ExceptionNet"),
    ],
)
def test_hostile_network_names_become_safe_class_names(name, cls):
    net = fractal_dsl.loads(_program(name))
    assert codegen.class_name(net) == cls
    source = codegen.generate(net)
    module = codegen.load_module(source, f"hostile_{cls}")
    classes = sorted([cls, "PathBatchNorm2d"])
    assert module.__all__ == ["INPUT_SHAPE", "NUM_COLUMNS", *classes, "build", "column_sample", "recalibrate_bn",
                              "sample_drop_path"]
    model = module.build()
    assert type(model).__name__ == cls
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    # The name changes the class name and the docstring, nothing else.
    plain = codegen.generate(fractal_dsl.loads(_program()))
    assert _code_without_docstring(source) == _code_without_docstring(plain).replace("'Plain'", repr(cls))


@pytest.mark.parametrize(
    ("unit", "function"),
    [
        ("forward", "forward"),
        ("torch", "torch_"),
        ("nn", "nn_"),
        ("self", "self_"),
        ("__class__", "unit__class__"),
        ("_live", "unit_live"),
        ("build", "build_"),
        ("exec", "exec_"),
        ("len", "len_"),
        ("dropout", "dropout_"),  # a local of __init__, where the unit functions are called
        ("column_sample", "column_sample_"),
        ("Plain", "Plain_"),  # the class's name
        ("DEFAULT_INIT", "DEFAULT_INIT_"),  # a default of __init__'s arguments
        ("units", "units_"),  # a local of __init__'s loop over _BLOCKS
        ("values", "values_"),
    ],
)
def test_hostile_key_names_become_safe_function_names(unit, function):
    net = fractal_dsl.loads(_program(unit=unit))
    source = codegen.generate(net)
    module = codegen.load_module(source, f"hostile_{unit}")
    model = module.build()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert sum(p.numel() for p in model.parameters()) == net.params
    assert callable(getattr(module, function))
    plain = codegen.generate(fractal_dsl.loads(_program()))
    # Only the unit function's name and the node ids in the data tables change.
    expected = _code_without_docstring(plain).replace("_conv'", f"_{unit}'").replace("'conv'", repr(function))
    assert _code_without_docstring(source) == expected


@pytest.mark.parametrize("param", ["nn", "in_channels", "dropout", "num_classes", "c_", "print"])
def test_hostile_parameter_names_stay_parameters(param):
    program = _program().replace("conv(c) = conv3x3(c,", f"conv({param}) = conv3x3({param},")
    net = fractal_dsl.loads(program)
    source = codegen.generate(net)
    model = codegen.load_module(source, f"hostile_param_{param}").build()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert sum(p.numel() for p in model.parameters()) == net.params
    reference = codegen.load_module(codegen.generate(fractal_dsl.loads(_program())), "hostile_param_plain").build()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]


def test_key_source_lines_reach_only_comments():
    """The source of a key entry is copied into a comment: as one ASCII line per comment
    line, without the source's own comments, whatever the definition holds."""
    hostile = 'conv(c) = conv3x3(c, bias=false)  # """ \\ \u00e9\u00a0 x\n     . bn   # \\\r\n\t. relu'
    # (a line separator U+2028 in a comment is refused by the parser itself: tests/test_hostile.py)
    program = _program().replace("conv(c) = conv3x3(c, bias=false) . bn . relu", hostile)
    net = fractal_dsl.loads(program)
    source = codegen.generate(net)
    assert source.isascii()
    plain = codegen.generate(fractal_dsl.loads(_program()))
    assert _code_without_docstring(source) == _code_without_docstring(plain)
    comment = [line for line in source.splitlines() if line.startswith("#   conv(c)")]
    assert comment == ["#   conv(c) = conv3x3(c, bias=false) . bn . relu"]


@pytest.mark.parametrize(
    "filename",
    [
        'a"""b.fdsl',
        'x"""\nimport os; os.system(\'echo hi\')\n""".fdsl',
        "back\\slash\\.fdsl",
        "new\nline.fdsl",
        "ünï cødé '\".fdsl",
        'end"',
        "tab\there\\",
    ],
)
def test_hostile_file_names_stay_inside_the_docstring(filename):
    net = fractal_dsl.loads(_program(), name=filename)
    source = codegen.generate(net)
    tree = ast.parse(source)
    doc = ast.get_docstring(tree)
    assert doc.splitlines()[2].startswith("Source: ")
    assert source.isascii()
    plain = codegen.generate(fractal_dsl.loads(_program(), name="plain.fdsl"))
    assert _code_without_docstring(source) == _code_without_docstring(plain)
    assert len(source.splitlines()) == len(plain.splitlines())


def test_generated_module_runs_nothing_at_import_but_definitions():
    tree = ast.parse(codegen.generate(fractal_dsl.loads(_program())))
    allowed = (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.FunctionDef, ast.ClassDef)
    assert all(isinstance(stmt, allowed) for stmt in tree.body)
    calls = {
        node.func.id
        for stmt in tree.body
        if isinstance(stmt, (ast.Assign, ast.AnnAssign))
        for node in ast.walk(stmt)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert calls <= {"tuple", "sum", "len", "range", "enumerate", "any", "_Plan", "_expand"}, calls


def test_compile_writes_the_file_imports_no_torch_and_is_deterministic(tmp_path):
    expected = codegen.generate(fractal_dsl.load(ROOT / "examples" / "fractal4.fdsl", "examples/fractal4.fdsl"))
    for seed in ("1", "2"):  # set and dict order must not leak into the output
        out = tmp_path / f"model{seed}.py"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        command = [sys.executable, "-c", PROBE, "compile", "examples/fractal4.fdsl", "-o", str(out)]
        proc = subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert proc.stderr.strip().endswith("exit=0 torch=[]"), proc.stderr
        assert out.read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model1.py", "model2.py"]  # no temporary file left


def test_compile_prints_to_stdout_and_fails_on_bad_programs(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    result = runner.invoke(main, ["compile", "examples/tiny.fdsl"])
    assert result.exit_code == 0
    assert result.stdout == codegen.generate(fractal_dsl.load("examples/tiny.fdsl"))
    bad = tmp_path / "bad.fdsl"
    bad.write_text("network bad {\n  columns 0\n}\n")
    out = tmp_path / "bad.py"
    result = runner.invoke(main, ["compile", str(bad), "-o", str(out)])
    assert result.exit_code == 1
    assert f"{bad}:" in result.stderr and "error:" in result.stderr
    assert "Traceback" not in result.output and not out.exists()
    result = runner.invoke(main, ["compile", "examples/tiny.fdsl", "-o", str(tmp_path / "no" / "such" / "dir.py")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot write") and "Traceback" not in result.stderr
