"""Drop-path in the compiled module: sampling statistics, liveness, the two execution
modes, per-sample masks and per-sample skipping (its draws, outputs and what batch norm
sees), seeding, hooks, and the sum/max/concat joins."""

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


def _keep(module, sample) -> torch.Tensor:
    """A per-sample sample's masks as one (batch, join inputs) tensor, in ``_JOINS``' order."""
    return torch.cat([sample["masks"][name] for name, *_ in module._JOINS], 1)


def _joins_of(module, row) -> dict[str, tuple[int, ...]]:
    flags = row.tolist()
    return {name: tuple(i for i in range(n) if flags[a + i]) for name, a, n, *_ in module._JOINS}


def _users(net, module, keep) -> dict[str, list[int]]:
    """Per layer node: the examples whose drawn paths use it (networkx's liveness)."""
    users: dict[str, list[int]] = {}
    for b in range(keep.shape[0]):
        for node in _live_layers(net, {"joins": _joins_of(module, keep[b])}):
            users.setdefault(node, []).append(b)
    return users


def _record_batches(net, model) -> dict[str, list[int]]:
    """Per layer node: the batch size of each call, recorded by forward pre-hooks."""
    names = codegen.module_names(net)
    runs: dict[str, list[int]] = {}
    for node, name in names.items():
        if net.graph.nodes[node]["node"].kind == "layer":
            model.get_submodule(name).register_forward_pre_hook(
                lambda m, args, n=node: runs.setdefault(n, []).append(args[0].shape[0])
            )
    return runs


@pytest.mark.parametrize("mode", ["mean", "sum", "max", "concat"])
def test_per_sample_skips_and_gives_the_mask_mode_outputs(mode):
    # No batch norm: examples are independent, so skipping must not change any output.
    net = fractal_dsl.loads(JOIN_MODES.replace("MODE", mode).replace(" . bn", ""))
    module = codegen.load_module(codegen.generate(net), f"ps_{mode}")
    skip, masked = (
        module.build(
            dropout=False,
            drop_path_per="sample",
            drop_path_local=0.4,
            compute_all=all_,
            generator=torch.Generator().manual_seed(1),
        ).train()
        for all_ in (False, True)
    )
    masked.load_state_dict(skip.state_dict())
    runs = _record_batches(net, skip)
    layers = [n for n in net.graph if net.graph.nodes[n]["node"].kind == "layer"]
    x = torch.randn(16, 2, 8, 8)
    work = 0
    for _ in range(6):
        runs.clear()
        a, b = skip(x), masked(x)
        keep = _keep(module, skip.last_drop_path)
        assert torch.equal(keep, _keep(module, masked.last_drop_path))  # the same draws
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        a.square().sum().backward()
        b.square().sum().backward()
        # Each layer runs once, on the examples whose paths use it (on all of them when
        # only one does), and not at all when none does.
        users = _users(net, module, keep)
        assert runs == {n: [len(u) if len(u) > 1 else 16] for n, u in users.items()}
        work += sum(sum(v) for v in runs.values())
    assert work < 0.8 * 6 * 16 * len(layers)
    grads = dict(masked.named_parameters())
    for name, p in skip.named_parameters():
        if p.grad is None:  # on no example's path: masked to exactly zero
            assert grads[name].grad is None or not grads[name].grad.any(), name
        else:
            torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-3, atol=2e-4)


def test_per_sample_draws_keep_their_distribution():
    # Grouping only reorders the work: each example's path is drawn as before, global with
    # probability drop_path_global and then a uniform column, else every join input kept
    # with probability 1 - (p - p^n / n). Pearson's chi-square over 4,000 examples, fixed
    # generator; 16.27 is the 0.1% critical value with 3 degrees of freedom.
    net, module = compiled(ROOT / "examples" / "tiny.fdsl")
    model = module.build(dropout=False, drop_path_per="sample", drop_path_local=0.3,
                         drop_path_global=0.4, generator=torch.Generator().manual_seed(4)).train()
    x = torch.rand(16, 1, 16, 16)
    keeps, columns = [], []
    with torch.no_grad():
        for _ in range(250):
            model(x)
            keeps.append(_keep(module, model.last_drop_path))
            columns.append(model.last_drop_path["columns"])
    keep, column = torch.cat(keeps), torch.cat(columns)
    observed = torch.bincount(column, minlength=4).double()  # 0: local, k: global column k
    expected = torch.tensor([0.6, 0.4 / 3, 0.4 / 3, 0.4 / 3], dtype=torch.double) * len(column)
    assert float(((observed - expected) ** 2 / expected).sum()) < 16.27
    local = keep[column == 0]
    for _, a, n, *_ in module._JOINS:
        dropped = float((~local[:, a : a + n]).double().mean())
        assert abs(dropped - (0.3 - 0.3**n / n)) < 0.02
    for k in range(1, 4):  # a global example keeps exactly column k's path
        assert (keep[column == k] == torch.tensor(module._ON_PATH[k - 1])).all()


def test_per_sample_batch_norm_normalises_over_the_examples_that_use_it():
    net, module = compiled(ROOT / "examples" / "tiny.fdsl")
    skip, masked = (
        module.build(
            dropout=False, drop_path_per="sample", compute_all=all_, generator=torch.Generator().manual_seed(2)
        ).train()
        for all_ in (False, True)
    )
    masked.load_state_dict(skip.state_dict())
    state = {k: v.clone() for k, v in skip.state_dict().items()}
    runs = _record_batches(net, skip)
    x = torch.rand(16, 1, 16, 16)
    skip(x)
    keep = _keep(module, skip.last_drop_path)
    users = _users(net, module, keep)
    # Each batch norm sees the examples whose paths use its layer (the whole batch where
    # one example alone does), and updates the whole network's running statistics once.
    assert runs == {n: [len(u) if len(u) > 1 else 16] for n, u in users.items()}
    assert any(len(u) < 16 for u in users.values())
    names = codegen.module_names(net)
    for node, name in names.items():
        if net.graph.nodes[node]["node"].kind != "layer":
            continue
        bn = next(m for m in skip.get_submodule(name).modules() if isinstance(m, module.PathBatchNorm2d))
        assert int(bn.num_batches_tracked) == (node in users), name
        assert all(int(getattr(bn, f"num_batches_tracked_c{k}")) == 0 for k in bn.paths)
    masked(x)  # mask mode: every batch norm, the whole batch, once
    assert all(int(m.num_batches_tracked) == 1 for m in masked.modules() if isinstance(m, module.PathBatchNorm2d))
    # So with every example global, an example of column 1 does not see one of column 3
    # through batch norm when skipping (their paths share no layer), and does in mask mode.
    skip.drop_path_global = masked.drop_path_global = 1.0
    skip.generator.manual_seed(3)
    skip(x)
    columns = skip.last_drop_path["columns"].tolist()
    col1, other = [b for b in range(16) if columns[b] == 1], columns.index(3)
    assert len(col1) > 1
    x2 = x.clone()
    x2[other] += 1.0
    for model, changes in ((skip, False), (masked, True)):
        outputs = []
        for images in (x, x2):
            model.load_state_dict(state)
            model.generator.manual_seed(3)
            outputs.append(model(images)[col1])
            assert model.last_drop_path["columns"].tolist() == columns
        assert (not torch.allclose(*outputs, atol=1e-6)) == changes


def test_per_sample_never_leaves_batch_norm_one_example():
    # Batch norm over 1x1 maps (one value per channel and example) trains at batch 3 with
    # every example global: a column drawn once must not run on that example alone.
    one = JOIN_MODES.replace("input 2x8x8", "input 2x1x1").replace("maxpool(2)", "maxpool(1)")
    net = fractal_dsl.loads(one.replace("MODE", "mean"))
    small = codegen.load_module(codegen.generate(net), "ps_one")
    model = small.build(
        dropout=False, drop_path_per="sample", drop_path_global=1.0, generator=torch.Generator().manual_seed(0)
    ).train()
    with pytest.raises(ValueError, match="more than 1 value"):  # what one example alone does
        model(torch.rand(1, 2, 1, 1))
    runs = _record_batches(net, model)
    alone = 0
    for _ in range(20):
        runs.clear()
        model(torch.rand(3, 2, 1, 1)).sum().backward()
        users = _users(net, small, _keep(small, model.last_drop_path))
        alone += sum(len(u) == 1 for u in users.values())
        assert runs == {n: [len(u) if len(u) > 1 else 3] for n, u in users.items()}
    assert alone  # some layer had a single user and ran on all three


def test_per_sample_benchmark_prints_the_modes_ratios_and_work(capsys):
    import importlib.util
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))  # for its `_timing`
    spec = importlib.util.spec_from_file_location("droppath_per_sample", ROOT / "benchmarks" / "droppath_per_sample.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = [str(ROOT / "examples" / "tiny.fdsl"), "--batch", "8", "--threads", "1", "--blocks", "2", "--per-block", "1"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out[1:4]] == ["batch", "sample", "sample,"]
    assert out[4].startswith("per sample / per batch: ") and out[5].startswith("per sample, masked / per batch: ")
    work = dict(part.rsplit(" ", 1) for part in out[6].split(": ", 1)[1].split("; "))
    assert work["per batch"] == "1.00x"
    assert float(work["per sample"][:-1]) < float(work["per sample, masked"][:-1])
    assert bench.main([str(ROOT / "examples" / "tiny.fdsl"), "--blocks", "0"]) == 2
