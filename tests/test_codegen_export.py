"""The compiled module under torch.fx, torch.export and torch.compile, checked against
tests/reference.py on CPU."""

from __future__ import annotations

import torch
from conftest import ROOT
from reference import compiled, run

torch.set_num_threads(1)


def _model(name: str, **kw):
    net, module = compiled(ROOT / "examples" / f"{name}.fdsl")
    torch.manual_seed(0)
    return net, module.build(**kw)


def test_fx_symbolic_trace_in_compute_all_mode():
    net, model = _model("nested", compute_all=True, dropout=False)
    x = torch.randn(2, *net.input_shape)
    traced = torch.fx.symbolic_trace(model.eval())
    with torch.no_grad():
        torch.testing.assert_close(traced(x), run(net, model.state_dict(), x), rtol=1e-4, atol=1e-5)
    # Traced in train mode, the graph still draws a new sample on every call (no baked-in mask).
    train = torch.fx.symbolic_trace(model.train())
    assert any(n.target in (torch.rand,) for n in train.graph.nodes)
    torch.manual_seed(1)
    outs = [train(x) for _ in range(6)]
    assert all(o.shape == (2, net.classes) for o in outs)
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def test_torch_export_eval():
    net, model = _model("trunk")
    model.eval()
    x = torch.randn(2, *net.input_shape)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), run(net, model.state_dict(), x), rtol=1e-4, atol=1e-5)


def test_torch_compile_eval():
    net, model = _model("tiny")
    model.eval()
    x = torch.randn(2, *net.input_shape)
    compiled_model = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled_model(x), run(net, model.state_dict(), x), rtol=1e-4, atol=1e-5)
