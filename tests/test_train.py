"""fractal-dsl train / eval on the built-in digits: it learns, writes its files, and refuses bad input."""

from __future__ import annotations

import json

import pytest
import torch
from train_support import ROOT, SMALL, cli, write_net

from fractal_dsl import codegen, load, loads
from fractal_dsl.errors import UsageError
from fractal_dsl.train import TrainConfig, TrainError, evaluate_checkpoint, paper_milestones, train
from fractal_dsl.train import checkpoint as ckpt
from fractal_dsl.train import data as datasets

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The example network trained briefly; shared by the tests that read its files."""
    out = tmp_path_factory.mktemp("tiny")
    net = load(ROOT / "examples" / "tiny.fdsl")
    cfg = TrainConfig(epochs=3, batch_size=25, lr=0.05, quiet=True, drop_path=False, dropout=False)
    return net, out, train(net, cfg, out, log=lambda *a: None)


def test_training_learns_the_digits(tiny_run):
    _, _, summary = tiny_run
    assert summary["test_acc"] > 0.6  # chance is 0.1
    # without drop-path (this run) single columns are weak, but the best is still well above chance
    assert sorted(summary["column_acc"]) == ["1", "2", "3"] and max(summary["column_acc"].values()) > 0.25
    assert summary["params"] == load(ROOT / "examples" / "tiny.fdsl").params


def test_run_folder_holds_every_file(tiny_run):
    net, out, summary = tiny_run
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert all(len(r["column_acc"]) == 3 for r in lines)
    assert [r["lr"] for r in lines] == pytest.approx([0.05, 0.05, 0.005])  # paper_milestones(3) == (2,)
    assert json.loads((out / "summary.json").read_text())["test_acc"] == summary["test_acc"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "model.py").read_text() == codegen.generate(net)
    # the checkpoint is safe to load and holds the weights the compiled module.py takes
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    model = codegen.load_module((out / "model.py").read_text(), "trained").build()
    model.load_state_dict(state["model"])
    assert state["epoch"] == 3 and len(state["history"]) == 3


def test_eval_reproduces_training_accuracy(tiny_run):
    net, out, summary = tiny_run
    result = evaluate_checkpoint(net, out / "checkpoint.pt", device="cpu")
    accs = [r["accuracy"] for r in result["rows"]]
    assert accs == pytest.approx([summary["test_acc"], *summary["column_acc"].values()])
    assert all(r["samples_per_second"] > 0 for r in result["rows"])
    one = evaluate_checkpoint(net, out / "checkpoint.pt", column=2, device="cpu")
    assert [r["column"] for r in one["rows"]] == [2] and one["rows"][0]["accuracy"] == pytest.approx(accs[2])


def test_eval_cli(tiny_run):
    _, out, _ = tiny_run
    r = cli("eval", ROOT / "examples" / "tiny.fdsl", "--checkpoint", out / "checkpoint.pt", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "whole network" in r.stdout and "column 3" in r.stdout and "MACs/image" in r.stdout and "ms/image (batch 1)" in r.stdout
    assert "each path on the BatchNorm statistics the checkpoint keeps" in r.stdout  # the default
    r = cli("eval", ROOT / "examples" / "tiny.fdsl", "--checkpoint", out / "checkpoint.pt", "--device", "cpu",
            "--recalibrate-bn", "300", "--column", "2")
    assert r.returncode == 0 and "BatchNorm re-estimated per path on 300 training images" in r.stdout
    assert "column 3" not in r.stdout


def test_paper_schedule():
    assert paper_milestones(400) == (200, 300, 350, 375)
    assert paper_milestones(20) == (10, 15, 18, 19)
    assert paper_milestones(3) == (2,)
    assert paper_milestones(1) == ()


def test_augmentation_mirrors_and_shifts():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8) + 1
    out = datasets.augment(x, torch.tensor([1, 0]), torch.tensor([[0, 0], [1, -2]]))
    assert torch.equal(out[0], x[0].flip(2))
    assert torch.equal(out[1, :, 1:, :6], x[1, :, :7, 2:])  # down 1, left 2
    assert out[1, :, 0].abs().sum() == 0 and out[1, :, :, 6:].abs().sum() == 0  # zero padding comes in


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("input 3x16x16", "resized from 8x8 to 16x16, grey repeated to 3 channels"),
        ("classes 5", "digits 0-4 only"),
    ],
)
def test_the_built_in_digits_fit_any_network_and_say_how(tmp_path, change, said):
    key = change.split()[0]
    text = "\n".join(change if line.strip().startswith(key + " ") else line for line in SMALL.splitlines())
    r = cli("train", write_net(tmp_path, text), "--out", tmp_path / "run", "--epochs", "1", "--subset", "20",
            "--recalibrate-bn", "0", "-q")
    assert r.returncode == 0, r.stderr
    assert said in r.stdout.splitlines()[0]
    assert said in json.loads((tmp_path / "run" / "summary.json").read_text())["data_conversion"]


def test_a_subset_gets_a_batch_that_fits_and_a_log_file_gets_one_line_an_epoch(tmp_path):
    """--subset 100 at the default batch of 100 would be one step an epoch: the batch shrinks
    to 10 and says so; without a terminal there is no progress bar, one line per epoch."""
    r = cli("train", write_net(tmp_path), "--out", tmp_path / "run", "--epochs", "2", "--subset", "100",
            "--recalibrate-bn", "0")  # not -q: stderr is a pipe, not a terminal
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress-bar updates in a log
    said = ("100 training images at batch size 100 are 1 step an epoch, too few to learn from: "
            "batch size 10 instead (10 steps)")
    assert said in r.stdout.splitlines()
    assert [line.split()[1] for line in r.stdout.splitlines() if line.startswith("epoch ")] == ["1/2", "2/2"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["batch_size"] == 10 and summary["config"]["batch_size"] == 100


def test_the_batch_fits_a_subset_and_the_bar_needs_a_terminal(monkeypatch):
    from fractal_dsl.train import loop

    assert loop.fitted_batch(100, 100) == 10 and loop.fitted_batch(5000, 100) == 100
    assert loop.fitted_batch(100, 100, world=4) == 8 and loop.fitted_batch(7, 100) == 4  # 2 and 3 leave one image last
    assert loop.fitted_batch(101, 100) == 11  # 10 would leave a last batch of one image
    assert loop.fitted_batch(2, 2) == 2

    class Terminal:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

        def write(self, text):
            return len(text)

        def flush(self):
            pass

    monkeypatch.setattr("sys.stderr", Terminal(False))
    assert isinstance(loop._progress(10, "epoch 1/1", False), loop._NoBar)
    monkeypatch.setattr("sys.stderr", Terminal(True))
    bar = loop._progress(10, "epoch 1/1", False)
    assert not isinstance(bar, loop._NoBar)
    bar.close()


def test_missing_torchvision_or_folder_is_one_line(tmp_path):
    r = cli("train", write_net(tmp_path), "--out", tmp_path / "run", "--data", "nowhere/at/all")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not digits, cifar10" in r.stderr
    try:
        import torchvision  # noqa: F401
    except ImportError:
        r = cli("train", write_net(tmp_path), "--out", tmp_path / "run", "--data", "cifar10")
        assert r.returncode == 1 and "pip install 'fractal-dsl[vision]'" in r.stderr and "Traceback" not in r.stderr


def test_bad_options_exit_2(tmp_path):
    net = write_net(tmp_path)
    r = cli("train", net, "--no-regularization", "--drop-path-local", "0.1")
    assert r.returncode == 2 and "--no-regularization turns drop-path off" in r.stderr
    r = cli("train", net, "--epochs", "0")
    assert r.returncode == 2
    r = cli("train", net, "--init", "zeros")
    assert r.returncode == 2 and "'zeros' is not one of 'xavier', 'kaiming', 'torch'" in r.stderr


def test_init_override_reaches_the_model():
    assert TrainConfig().model_overrides() == {"dropout": True}  # the file's init (xavier by default)
    assert TrainConfig(init="torch").model_overrides()["init"] == "torch"


def test_diverging_loss_stops_with_a_clear_message(tmp_path):
    r = cli("train", write_net(tmp_path), "--out", tmp_path / "run", "--epochs", "2", "--lr", "1e30", "-q")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the loss became" in r.stderr and "training diverged" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    net = loads(SMALL, "small.fdsl")
    train(net, TrainConfig(epochs=1, quiet=True), out, log=lambda *a: None)
    return out


def _eval_error(tmp_path, checkpoint_path, net_text=SMALL) -> str:
    r = cli("eval", write_net(tmp_path, net_text, "n.fdsl"), "--checkpoint", checkpoint_path)
    assert r.returncode == 1, r.stdout
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    return r.stderr


def test_corrupt_checkpoints_are_clear_errors(tmp_path, small_run):
    good = (small_run / "checkpoint.pt").read_bytes()
    torn = tmp_path / "torn.pt"
    torn.write_bytes(good[: len(good) // 2])
    assert "not a readable checkpoint (truncated or corrupt?)" in _eval_error(tmp_path, torn)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    assert "not a readable checkpoint" in _eval_error(tmp_path, garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert "not a fractal-dsl checkpoint" in _eval_error(tmp_path, foreign)
    assert "no such checkpoint" in _eval_error(tmp_path, tmp_path / "absent.pt")


def test_checkpoint_of_another_network_is_refused(tmp_path, small_run):
    wider = SMALL.replace("blocks (8, 0.1) (16, 0.1)", "blocks (8, 0.1) (32, 0.1)")
    err = _eval_error(tmp_path, small_run / "checkpoint.pt", wider)
    assert "checkpoint of network 'small' does not fit network 'small'" in err
    assert "block2.column1.layer1.0.weight is 16x8x3x3 here 32x8x3x3" in err


def test_a_finished_run_is_not_overwritten_and_resume_needs_same_options(tmp_path, small_run):
    net = write_net(tmp_path)
    r = cli("train", net, "--out", small_run, "--epochs", "1")
    assert r.returncode == 1 and "already holds a run: continue it with --resume" in r.stderr
    r = cli("train", net, "--out", small_run, "--epochs", "1", "--lr", "0.1", "--resume")
    assert r.returncode == 1 and "the run was started with lr=0.02 (now 0.1)" in r.stderr


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    ckpt.save(path, {"epoch": 1})

    def dies(*_args, **_kw):
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(path, {"epoch": 2})
    assert ckpt.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_bn_recalibration_is_per_path_and_touches_only_that_path(small_run):
    from fractal_dsl.train.loop import compile_model, recalibrate

    net = loads(SMALL, "small.fdsl")
    _, model = compile_model(net)
    model.load_state_dict(torch.load(small_run / "checkpoint.pt", weights_only=True)["model"])
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = datasets.load("digits", net.input_shape, net.classes)
    name, bn = next((n, m) for n, m in model.named_modules() if n.startswith("block1.column2.") and
                    isinstance(m, torch.nn.BatchNorm2d))
    recalibrate(model, data, 2, 700)
    assert bn.num_batches_tracked_c2.item() == 2  # 500 + 200 images, a plain average
    assert not torch.equal(bn.running_mean_c2, before[f"{name}.running_mean_c2"])
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.rsplit(".", 1)[1].endswith("_c2") for k in changed)  # column 2's path only
    seen = bn.running_var_c2.clone()
    recalibrate(model, data, 2, 700)
    assert torch.equal(bn.running_var_c2, seen)  # the same images give the same statistics
    assert not model.training and model.drop_path and bn.momentum == 0.1
    result = evaluate_checkpoint(net, small_run / "checkpoint.pt", device="cpu", recalibrate_bn=700)
    assert len(result["rows"]) == 3 and result["recalibrate_bn"] == 700


def test_image_folder_without_split_is_split_and_converted(tmp_path):
    from PIL import Image

    for c in range(3):
        (tmp_path / f"class{c}").mkdir()
        for i in range(5):
            Image.new("RGB", (12, 20), (40 * c, 10 * i, 200)).save(tmp_path / f"class{c}" / f"{i}.png")
    (tmp_path / "class0" / "notes.txt").write_text("not an image")
    data = datasets.load(str(tmp_path), (1, 8, 8), 3)
    assert data.shape == (1, 8, 8) and len(data.y_train) == 12 and len(data.y_test) == 3
    assert sorted(data.y_test.tolist()) == [0, 1, 2]  # stratified
    # another class count is fitted as the digits' is, and said
    wider = datasets.load(str(tmp_path), (1, 8, 8), 10)
    assert wider.classes == 3 and wider.conversion.endswith("labels 0-2 of the network's 10 classes")
    narrower = datasets.load(str(tmp_path), (1, 8, 8), 2)
    assert narrower.classes == 2 and narrower.conversion.endswith("the first 2 of its 3 classes")
    assert len(narrower.y_train) == 8 and sorted(set(narrower.y_test.tolist())) == [0, 1]
    (tmp_path / "class1" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TrainError, match=r"broken.png: not a readable image"):
        datasets.load(str(tmp_path), (3, 8, 8), 3)


def test_column_must_exist(tmp_path, small_run):
    """(--amp on the CPU: tests/test_speed_options.py.)"""
    net = loads(SMALL, "small.fdsl")
    with pytest.raises(UsageError, match=r"`column` 3: small has columns 1..2"):
        evaluate_checkpoint(net, small_run / "checkpoint.pt", column=3, device="cpu")


def test_cli_defaults_match_the_config():
    from fractal_dsl import cli

    default = next(p.default for p in cli.train.params if p.name == "recalibrate_bn")
    assert default == TrainConfig().recalibrate_bn == 1000
    # eval uses the statistics the checkpoint keeps per path unless asked to re-estimate
    assert next(p.default for p in cli.evaluate.params if p.name == "recalibrate_bn") == 0


def test_bad_option_values_exit_2_in_every_command(tmp_path, small_run):
    """One rule: a value that does not fit the network or the other options is bad usage
    (exit 2), in eval as in render; a run that fails is exit 1."""
    net = write_net(tmp_path, SMALL, "n.fdsl")
    eval_column = cli("eval", net, "--checkpoint", small_run / "checkpoint.pt", "--column", "4", "--recalibrate-bn", "0")
    assert eval_column.returncode == 2 and "error: --column 4: small has columns 1..2" in eval_column.stderr
    render_column = cli("render", net, "--column", "9", "-o", tmp_path / "x.dot")
    assert render_column.returncode == 2 and "error: --column 9:" in render_column.stderr
    unknown_data = cli("train", net, "--data", "mnist-nope", "--out", tmp_path / "run", "-q")
    assert unknown_data.returncode == 2 and "error: --data 'mnist-nope': not digits" in unknown_data.stderr
    assert not (tmp_path / "run").exists()  # a failed start leaves no folder behind
