"""What a run ships delivers what it reports (issue 17): a trained run's ``model.py`` and
``checkpoint.pt``, loaded in a fresh Python that does not import fractal_dsl, its
``compile --column K`` modules and its ONNX files in onnxruntime all score the anytime
table of ``summary.json`` on the test images as the data set gives them; per-path
BatchNorm statistics, the input's normalisation in the module, old checkpoints, the input
check and training unchanged by the per-path statistics."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from train_support import ROOT, SMALL, cli, write_net

import fractal_dsl
from fractal_dsl import codegen, loads
from fractal_dsl.train import TrainConfig, evaluate_checkpoint, train
from fractal_dsl.train import data as datasets
from fractal_dsl.train.loop import compile_model

torch.set_num_threads(1)

spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "benchmarks" / "deploy_check.py")
deploy_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(deploy_check)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The small network trained with drop-path for a few epochs on part of the digits."""
    root = tmp_path_factory.mktemp("deploy")
    cfg = TrainConfig(epochs=3, subset=400, batch_size=25, lr=0.05, recalibrate_bn=300, latency_repeats=1, quiet=True)
    summary = train(loads(SMALL, "small.fdsl"), cfg, root / "run", log=lambda *a: None)
    return root, write_net(root), summary


def test_a_deployer_gets_the_anytime_table_from_model_py_compile_column_and_onnx(run, tmp_path):
    root, fdsl, _ = run
    pytest.importorskip("onnxruntime")
    out = deploy_check.measure(fdsl, root / "run", tmp_path, onnx=True)
    table = out["table"]
    assert set(table) == {"None", "1", "2"}
    for way in ("model.py", "onnx"):
        assert set(out[way]) == set(table), way
    assert set(out["compile --column"]) == {"1", "2"}
    for way in ("model.py", "compile --column", "onnx"):
        for path, acc in out[way].items():
            assert abs(acc - table[path]) <= 0.01, (way, path, acc, table[path])
    assert deploy_check.main([str(fdsl), str(root / "run")]) == 0


def test_the_checkpoint_keeps_statistics_per_path_and_the_normalisation(run):
    root, _, _ = run
    state = torch.load(root / "run" / "checkpoint.pt", weights_only=True)["model"]
    data = datasets.load("digits", (1, 8, 8), 10, first=400)  # the normalisation of the images the run kept
    torch.testing.assert_close(state["normalize.mean"], data.mean)
    torch.testing.assert_close(state["normalize.std"], data.std)
    # a layer on both columns' paths (block 2's first unit of column 1 reads block 1's join)
    name = "block2.column2.layer1.2"
    assert {f"{name}.running_mean_c2", f"{name}.num_batches_tracked_c2"} <= set(state)
    assert f"{name}.running_mean_c1" not in state  # not on column 1's path
    assert not torch.allclose(state[f"{name}.running_mean_c2"], state[f"{name}.running_mean"])
    assert state[f"{name}.num_batches_tracked_c2"].item() == 1  # 300 images, one batch: estimated, not trained


def test_eval_uses_the_stored_statistics_and_re_estimates_when_asked(run):
    root, fdsl, summary = run
    net = fractal_dsl.load(fdsl)
    stored = evaluate_checkpoint(net, root / "run" / "checkpoint.pt", device="cpu", repeats=1)
    assert stored["recalibrate_bn"] == 0
    assert [r["accuracy"] for r in stored["rows"]] == [r["accuracy"] for r in summary["anytime"]["rows"]]
    again = evaluate_checkpoint(net, root / "run" / "checkpoint.pt", device="cpu", repeats=1, recalibrate_bn=300)
    assert again["recalibrate_bn"] == 300
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in stored["rows"]]  # the same images
    r = cli("eval", fdsl, "--checkpoint", root / "run" / "checkpoint.pt", "--device", "cpu", "--repeats", "1",
            "--recalibrate-bn", "200")
    assert r.returncode == 0 and "BatchNorm re-estimated per path on 200 training images" in r.stdout


def test_a_checkpoint_without_per_path_statistics_evaluates_with_a_note(tmp_path):
    """A checkpoint of an older fractal-dsl (the fixture's state_dict, normalisation in the
    loop): eval loads it, says so in one line, and normalises the images as it was trained."""
    from fractal_dsl.fingerprint import structure_sha256
    from fractal_dsl.train import checkpoint

    old = torch.load(ROOT / "tests" / "fixtures" / "state_dict" / "tiny.pt", weights_only=True)
    net = fractal_dsl.load(ROOT / "examples" / "tiny.fdsl")
    checkpoint.save(tmp_path / "old.pt", {"model": old, "network": "tiny", "epoch": 1, "config": {"data": "digits"},
                                          "structure_sha256": structure_sha256(net)})
    said = []
    result = evaluate_checkpoint(net, tmp_path / "old.pt", column=1, device="cpu", repeats=1, warn=said.append)
    assert len(result["rows"]) == 1
    notes = [s for s in said if "per-path" in s]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "\n" not in notes[0]


def test_the_module_checks_its_input_in_one_line():
    model = fractal_dsl.build(SMALL).eval()
    with pytest.raises(ValueError, match=r"^expected images of shape N x 1x8x8 \(floats in \[0, 1\]\), got 2x3x8x8$"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="got 8x8"):
        model(torch.rand(8, 8))
    # images as a decoder gives them (0-255 integers) would give wrong answers silently
    with pytest.raises(ValueError, match=r"^expected images as floats in \[0, 1\], got torch.uint8 \(divide by 255\?\)$"):
        model(torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8))


def test_a_column_is_taken_as_a_number_or_refused():
    """``column`` given as an integer tensor (say, from a data loader) runs that column on its
    own batch-norm statistics, as the int does; it once ran with the whole network's. A bool,
    a float, a string or a number out of range is refused, also by ``column_sample`` (where 0
    once gave the last column's sample) and ``extract_column``."""
    source = codegen.generate(loads(SMALL, "small.fdsl"))
    module = codegen.load_module(source, "deploy_columns")
    model = module.build().eval()
    for m in model.modules():
        if isinstance(m, module.PathBatchNorm2d):
            for k in m.paths:  # every path's statistics its own
                m.path_stats(k)[0].normal_()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x, column=torch.tensor(2)), model(x, column=2))
        assert not torch.equal(model(x, column=2), model(x))
    for bad in (0, 3, -1, True, 1.0, "1", torch.tensor(1.5)):
        with pytest.raises(ValueError, match=r"^column must be 1\.\.2, not "):
            model(x, column=bad)
        with pytest.raises(ValueError, match=r"^column must be 1\.\.2, not "):
            module.column_sample(bad)
        with pytest.raises(ValueError, match=r"^column must be 1\.\.2, not "):
            model.extract_column(bad)


def test_recalibration_that_sees_no_batch_or_fails_leaves_the_statistics_as_they_were():
    """An exhausted iterator, a batch of the wrong shape or a loader that fails midway must not
    leave a path with reset or half-estimated statistics; the model's modes come back too."""
    module = codegen.load_module(codegen.generate(loads(SMALL, "small.fdsl")), "deploy_recalibrate")
    model = module.build().eval()
    for m in model.modules():
        if isinstance(m, module.PathBatchNorm2d):
            for k in (0, *m.paths):
                m.path_stats(k)[0].normal_()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def failing():
        yield torch.rand(4, 1, 8, 8)
        raise OSError("the loader failed")

    def cases():
        return [(iter([]), ValueError, "no batches"), ([torch.rand(4, 3, 8, 8)], ValueError, "expected images"),
                (failing(), OSError, "the loader failed")]

    for column in (None, 2):
        for batches, error, message in cases():
            with pytest.raises(error, match=message):
                module.recalibrate_bn(model, batches, column=column)
            assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
            assert not model.training and model.drop_path
            assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, module.PathBatchNorm2d))
    module.recalibrate_bn(model, [torch.rand(4, 1, 8, 8)], column=2)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def _bn_buffers(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k}


@pytest.mark.parametrize("options", [{}, {"drop_path_per": "sample"}, {"compute_all": True}],
                         ids=["per-batch", "per-sample", "compute-all"])
def test_training_with_drop_path_updates_the_whole_networks_statistics_only(options):
    """Training is as before: drop-path's forward passes update the usual running statistics
    (those of nn.BatchNorm2d); the per-path ones change only when a path is re-estimated."""
    _, model = compile_model(loads(SMALL, "small.fdsl"), **options)
    before = _bn_buffers(model)
    model.train()
    torch.manual_seed(0)
    for _ in range(3):
        model(torch.rand(6, 1, 8, 8))
    after = _bn_buffers(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and not any("_c" in k.rsplit(".", 1)[1] for k in changed)


def test_recalibrate_bn_touches_one_path_and_the_column_module_uses_its_own():
    net = loads(SMALL, "small.fdsl")
    whole = codegen.load_module(codegen.generate(net), "deploy_whole")
    alone = codegen.load_module(codegen.generate(net, 2), "deploy_col2")
    torch.manual_seed(0)
    model = whole.build().eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        fresh = model(x, column=2), model(x)
    batches = [torch.rand(16, 1, 8, 8) for _ in range(3)]
    before = _bn_buffers(model)
    whole.recalibrate_bn(model, batches, column=2)
    assert not model.training  # left in the mode it was in
    after = _bn_buffers(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith("_c2") for k in changed)
    column2 = alone.load_full_state_dict(alone.build(), model.state_dict()).eval()
    with torch.no_grad():
        assert not torch.allclose(model(x, column=2), fresh[0])  # column 2 uses its new statistics
        torch.testing.assert_close(model(x), fresh[1])  # the whole network its own
        torch.testing.assert_close(column2(x), model(x, column=2))
        torch.testing.assert_close(model.extract_column(2)(x), model(x, column=2))
    # the column module re-estimates its own (column 2's) statistics, to the same values
    alone.recalibrate_bn(column2, batches)
    with torch.no_grad():
        torch.testing.assert_close(column2(x), model(x, column=2))


def test_an_exported_column_carries_its_own_statistics_and_the_normalisation(run):
    """``export --column K``'s file gives ``model(x, column=K)`` on column K's statistics, for
    images in [0, 1]; the whole network's file the whole network's."""
    ort = pytest.importorskip("onnxruntime")
    from fractal_dsl.export import export_bytes

    root, fdsl, _ = run
    net = fractal_dsl.load(fdsl)
    _, model = compile_model(net)
    model.load_state_dict(torch.load(root / "run" / "checkpoint.pt", weights_only=True)["model"])
    model.eval()
    x = torch.rand(5, *net.input_shape, generator=torch.Generator().manual_seed(0))
    got = {}
    for column in (2, None):
        session = ort.InferenceSession(export_bytes(net, root / "run" / "checkpoint.pt", column),
                                       providers=["CPUExecutionProvider"])
        got[column] = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        with torch.no_grad():
            torch.testing.assert_close(got[column], model(x, column=column), rtol=1e-4, atol=1e-4)
    for m in model.modules():  # column 2 on the whole network's statistics: another network
        if hasattr(m, "paths"):
            m.paths = ()
    with torch.no_grad():
        assert (got[2] - model(x, column=2)).abs().max() > 1e-3
