"""Drop-path in the compiled module: sampling statistics, liveness, the two execution
modes, per-sample masks, seeding, hooks, and the sum/max/concat joins."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from conftest import ROOT
from reference import check_train_samples, compiled, run

import fractal_dsl
from fractal_dsl import codegen

torch.set_num_threads(1)

JOIN_MODES = """network jm {
  input 2x8x8
  classes 4
  key {
    conv(c) = conv3x3(c) . bn . relu
    join = MODE
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns 3
  blocks 4 6
}"""


@pytest.fixture(scope="module")
def fractal4():
    return compiled(ROOT / "examples" / "fractal4.fdsl")


def _live_layers(net, sample) -> set[str]:
    """Layer nodes with a path to the output through kept join inputs (computed here with
    networkx, not with the module's own liveness table)."""
    g = net.graph
    kept = nx.DiGraph()
    kept.add_nodes_from(g)
    for u, v, edge in g.edges(data="edge"):
        if g.nodes[v]["node"].kind != "join" or edge.index in sample["joins"][v]:
            kept.add_edge(u, v)
    live = nx.ancestors(kept, "output")
    return {n for n in live if g.nodes[n]["node"].kind == "layer"}


def test_sampling_statistics_match_the_settings(fractal4):
    net, module = fractal4
    g = net.graph
    gen = torch.Generator().manual_seed(0)
    draws = [module.sample_drop_path(gen, local=0.3, global_ratio=0.25) for _ in range(3000)]
    global_ = [s for s in draws if s["mode"] == "global"]
    local = [s for s in draws if s["mode"] == "local"]
    assert abs(len(global_) / len(draws) - 0.25) < 0.03
    # Local: each input dropped with p, one revived at random if all were: p - p^n / n.
    for n_inputs in (2, 3, 4):
        joins = [j for j in g if g.nodes[j]["node"].kind == "join" and g.in_degree(j) == n_inputs]
        dropped = [n_inputs - len(s["joins"][j]) for s in local for j in joins]
        expected = 0.3 - 0.3**n_inputs / n_inputs
        assert abs(sum(dropped) / (len(dropped) * n_inputs) - expected) < 0.02, n_inputs
    assert all(s["joins"][j] for s in draws for j in s["joins"]), "a join lost every input"
    # Global: one column, uniform, and exactly that column's layers in every block.
    counts = [sum(s["column"] == k for s in global_) for k in range(1, 5)]
    assert max(counts) - min(counts) < 0.25 * len(global_) / 4
    for s in global_[:40]:
        live = _live_layers(net, s)
        assert live == {n for n in g if g.nodes[n]["node"].kind == "layer" and s["column"] in g.nodes[n]["node"].columns}
        assert {g.nodes[n]["node"].block for n in live} == set(range(1, net.blocks + 1))
    assert all(s["column"] is None for s in local)


def test_dead_layers_are_not_computed(fractal4):
    net, module = fractal4
    model = module.build(generator=torch.Generator().manual_seed(1)).train()
    names = codegen.module_names(net)
    calls: list[str] = []
    for node, name in names.items():
        if net.graph.nodes[node]["node"].kind == "layer":
            model.get_submodule(name).register_forward_hook(lambda *_, n=node: calls.append(n))
    x = torch.randn(2, 3, 32, 32)
    seen_modes = set()
    for _ in range(12):
        calls.clear()
        model(x)
        sample = model.last_drop_path
        seen_modes.add(sample["mode"])
        assert set(calls) == _live_layers(net, sample)
        assert len(calls) == len(set(calls))
    assert seen_modes == {"global", "local"}


def test_compute_all_and_skipping_give_the_same_result():
    _, module = compiled(ROOT / "examples" / "fractal3.fdsl")
    torch.manual_seed(0)
    skip = module.build(dropout=False, generator=torch.Generator().manual_seed(5)).train()
    full = module.build(dropout=False, compute_all=True, generator=torch.Generator().manual_seed(5)).train()
    full.load_state_dict(skip.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for _ in range(3):
        a, b = skip(x), full(x)
        assert skip.last_drop_path == full.last_drop_path
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        a.sum().backward()
        b.sum().backward()
    grads = dict(full.named_parameters())
    for name, p in skip.named_parameters():
        if p.grad is None:  # never on a kept path in these samples: masked to exactly zero
            assert grads[name].grad is None or not grads[name].grad.any(), name
        else:
            torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-3, atol=2e-4)


@pytest.mark.parametrize("mode", ["sum", "max", "concat"])
def test_join_modes_agree_with_reference(mode):
    net = fractal_dsl.loads(JOIN_MODES.replace("MODE", mode))
    module = codegen.load_module(codegen.generate(net), f"jm_{mode}")
    model = module.build(dropout=False).eval()
    state = model.state_dict()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), run(net, state, x), rtol=1e-4, atol=1e-5)
        for k in range(1, 4):
            expected = run(net, state, x, sample=module.column_sample(k))
            torch.testing.assert_close(model(x, column=k), expected, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(model.extract_column(k)(x), expected, rtol=1e-4, atol=1e-5)
    model.train()
    check_train_samples(net, module, model, x, torch.Generator().manual_seed(0))


def test_per_sample_masks_give_each_example_its_own_subnetwork():
    net, module = compiled(ROOT / "examples" / "tiny.fdsl")
    model = module.build(dropout=False, drop_path_per="sample", drop_path_local=0.4).train()
    for m in model.modules():  # batch norm in eval mode: examples stay independent
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    x = torch.randn(16, 1, 16, 16)
    torch.manual_seed(3)
    y = model(x)
    sample = model.last_drop_path
    assert sample["mode"] == "per-sample"
    assert sample["global"].shape == (16,) and 0 < int(sample["global"].sum()) < 16
    model(x[:1])  # one example: its own subnetwork, in the per-batch form
    assert model.last_drop_path["mode"] in ("global", "local")
    state = model.state_dict()
    for b in range(16):
        joins = {j: tuple(int(i) for i in m[b].nonzero()) for j, m in sample["masks"].items()}
        assert all(joins.values())
        if sample["global"][b]:
            assert joins == module.column_sample(int(sample["columns"][b]))["joins"]
        expected = run(net, state, x[b : b + 1], sample={"joins": joins})
        torch.testing.assert_close(y[b : b + 1], expected, rtol=1e-4, atol=1e-5)


def test_eval_drops_nothing_and_keeps_the_last_sample():
    net, module = compiled(ROOT / "examples" / "tiny.fdsl")
    model = module.build().eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert model.last_drop_path is None
        torch.testing.assert_close(model(x), run(net, model.state_dict(), x), rtol=1e-4, atol=1e-5)
        model.train()
        model(x)
        sample = model.last_drop_path
        model.eval()
        model(x)
    assert model.last_drop_path == sample


def test_sampling_is_seeded_by_torch():
    _, module = compiled(ROOT / "examples" / "tiny.fdsl")
    x = torch.randn(2, 1, 16, 16)

    def samples(model, seed):
        torch.manual_seed(seed)
        out = []
        for _ in range(8):
            model(x)
            out.append(model.last_drop_path)
        return out

    model = module.build().train()
    assert samples(model, 7) == samples(model, 7)
    assert samples(model, 7) != samples(model, 8)
    a = module.build(generator=torch.Generator().manual_seed(1)).train()
    b = module.build(generator=torch.Generator().manual_seed(1)).train()
    torch.manual_seed(0)
    first = [a(x) is not None and a.last_drop_path for _ in range(5)]
    torch.manual_seed(99)  # a generator of its own: the global seed does not matter
    assert first == [b(x) is not None and b.last_drop_path for _ in range(5)]
    gen = torch.Generator().manual_seed(4)
    assert module.sample_drop_path(gen) != module.sample_drop_path(gen)


def test_hooks_see_every_training_sample_and_can_be_removed():
    _, module = compiled(ROOT / "examples" / "tiny.fdsl")
    model = module.build().train()
    seen = []
    handle = model.register_drop_path_hook(lambda m, s: seen.append((m, s)))
    x = torch.randn(2, 1, 16, 16)
    model(x)
    model(x)
    assert [s for _, s in seen] != [] and all(m is model for m, _ in seen) and len(seen) == 2
    assert seen[-1][1] == model.last_drop_path
    model.eval()
    model(x)
    assert len(seen) == 2
    handle.remove()
    model.train()
    model(x)
    assert len(seen) == 2
    # Steering: a hook may return the sample to use; global column 1 runs only column 1.
    model.register_drop_path_hook(lambda m, s: module.column_sample(1))
    model(x)
    assert model.last_drop_path == {"mode": "global", "column": 1, "joins": module.column_sample(1)["joins"]}


def test_benchmark_prints_both_modes_and_the_ratio(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("droppath_speed", ROOT / "benchmarks" / "droppath_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(ROOT / "examples" / "tiny.fdsl"), "--batch", "2", "--steps", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("skip dead layers") and out[3].startswith("compute all + mask")
    assert float(out[3].split()[-1]) == 1.0  # compute-all runs every convolution
    assert 0 < float(out[2].split()[-1]) <= 1.0
    assert out[4].startswith("speed-up") and out[4].endswith("x")
    assert bench.main([str(ROOT / "examples" / "tiny.fdsl"), "--steps", "0"]) == 2


def test_steering_works_in_compute_all_mode():
    _, module = compiled(ROOT / "examples" / "tiny.fdsl")
    torch.manual_seed(0)
    model = module.build(dropout=False, compute_all=True).train()
    x = torch.randn(4, 1, 16, 16)
    seen = []
    handle = model.register_drop_path_hook(lambda m, s: seen.append(s) or module.column_sample(2))
    torch.manual_seed(2)  # draws a local sample: steering must replace it
    steered = model(x)
    handle.remove()
    assert seen[0]["mode"] == "local"
    assert model.last_drop_path == module.column_sample(2)
    torch.testing.assert_close(steered, model(x, column=2), rtol=1e-4, atol=1e-5)
