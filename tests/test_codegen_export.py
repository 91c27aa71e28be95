"""The compiled module under torch.fx, torch.export and torch.compile, checked against
tests/reference.py on CPU."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from reference import compiled, run

torch.set_num_threads(1)


def _model(name: str, **kw):
    net, module = compiled(ROOT / "examples" / f"{name}.fdsl")
    torch.manual_seed(0)
    return net, module.build(**kw)


@pytest.mark.parametrize("per", ["batch", "sample"])
def test_fx_symbolic_trace_in_compute_all_mode(per):
    # compute_all=True keeps per-sample drop-path one graph of tensor ops (no grouping, no host sync)
    net, model = _model("nested", compute_all=True, dropout=False, drop_path_per=per)
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


def test_per_path_statistics_under_compile_fx_and_export():
    """Each path's BatchNorm statistics (issue 17) are picked statically per call: torch.compile
    without graph breaks, torch.fx (the whole network, or a column through concrete_args) and
    torch.export give the reference's output on that path's statistics."""
    net, module = compiled(ROOT / "examples" / "tiny.fdsl")
    torch.manual_seed(0)
    model = module.build()
    g = torch.Generator().manual_seed(1)
    for name, buf in model.named_buffers():
        if "running_mean" in name:
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.3)
        elif "running_var" in name:
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    model.normalize.mean.fill_(0.3)
    model.normalize.std.fill_(0.25)
    model.eval()
    state = model.state_dict()
    x = torch.rand(2, *net.input_shape)
    fast = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for k in (None, 1, 3):
            expected = run(net, state, x, sample=module.column_sample(k) if k else None)
            torch.testing.assert_close(model(x, column=k), expected, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(fast(x, column=k), expected, rtol=1e-4, atol=1e-5)
            exported = torch.export.export(model, (x,), {"column": k} if k else None)
            got = exported.module()(x, column=k) if k else exported.module()(x)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            traced = torch.fx.symbolic_trace(model, concrete_args={"column": k})
            torch.testing.assert_close(traced(x, k), expected, rtol=1e-4, atol=1e-5)
