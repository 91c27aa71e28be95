"""`compile --column K`: a standalone module of column K alone, filled from the whole
network's weights, equal to the whole network's `model(x, column=K)`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT

import fractal_dsl
from fractal_dsl import codegen, semantics

TINY = (ROOT / "examples" / "tiny.fdsl").read_text()
CASES = {
    "tiny": TINY,
    "trunk": (ROOT / "examples" / "trunk.fdsl").read_text(),  # a shared trunk: units named by column 1
    "sum": TINY.replace("join = mean", "join = sum"),  # a kept input is scaled by inputs / survivors
    "concat": TINY.replace("join = mean", "join = concat"),  # dropped inputs become zeros
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_column_module_equals_the_whole_network_run_as_that_column(name):
    net = fractal_dsl.loads(CASES[name], f"{name}.fdsl")
    whole = codegen.load_module(codegen.generate(net), f"whole_{name}").build().eval()
    torch.manual_seed(0)
    x = torch.randn(3, *net.input_shape)
    for k in range(1, net.columns + 1):
        module = codegen.load_module(codegen.generate(net, column=k), f"col_{name}_{k}")
        model = module.load_full_state_dict(module.build(), whole.state_dict()).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), whole(x, column=k), rtol=0, atol=0)
        on_path = semantics.column_path(net, k)[0]
        assert sum(p.numel() for p in model.parameters()) == sum(net.node(n).params for n in on_path)
        assert set(model.state_dict()) < set(whole.state_dict()) or net.columns == 1
        with pytest.raises(ValueError, match=f"holds column {k} only"):
            model(x, column=k % net.columns + 1)
        model.train()(x)  # training runs the column too (no drop-path: one path has nothing to drop)


def test_compile_column_on_the_command_line(tmp_path):
    out = tmp_path / "tiny_col2.py"
    run = [sys.executable, "-m", "fractal_dsl.cli", "compile", "examples/tiny.fdsl", "--column", "2", "-o", str(out)]
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "ONLY_COLUMN = 2" in text and "def load_full_state_dict(" in text
    for ruff in (["check", "--isolated", "--no-cache"], ["format", "--isolated", "--no-cache", "--check"]):
        lint = subprocess.run([sys.executable, "-m", "ruff", *ruff, str(out)], capture_output=True, text=True, timeout=120)
        assert lint.returncode == 0, lint.stdout  # as clean as the whole network's module
    bad = subprocess.run(run[:-3] + ["9"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error: --column 9: tiny has columns 1 to 3" in bad.stderr


def test_a_column_module_costs_the_columns_macs():
    """torch's flop counter (2 FLOPs per multiply-accumulate, convolutions and linear
    layers) on the column module agrees with the graph's MACs of the nodes on the path."""
    from torch.utils.flop_counter import FlopCounterMode

    net = fractal_dsl.loads(TINY, "tiny.fdsl")
    for k in range(1, net.columns + 1):
        model = codegen.load_module(codegen.generate(net, column=k), f"col_macs_{k}").build().eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.randn(1, *net.input_shape))
        on_path = semantics.column_path(net, k)[0]
        assert counter.get_total_flops() == 2 * sum(net.node(n).macs for n in on_path)
