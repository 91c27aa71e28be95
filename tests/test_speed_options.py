"""Speed options of train and eval: --threads, --amp on the CPU (bfloat16)."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_support import SMALL, cli, write_net

from fractal_dsl import loads
from fractal_dsl.errors import UsageError
from fractal_dsl.train import TrainConfig, evaluate_checkpoint, speed, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    train(loads(SMALL, "small.fdsl"), TrainConfig(epochs=1, quiet=True, subset=200), out, log=lambda *a: None)
    return out


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_reach_torch_and_the_table(small_run, threads_restored):
    net = loads(SMALL, "small.fdsl")
    torch.set_num_threads(1)
    result = evaluate_checkpoint(net, small_run / "checkpoint.pt", column=1, device="cpu", repeats=1, threads=2)
    assert result["threads"] == 2 == torch.get_num_threads()
    assert speed.use_threads(None) == 2  # None leaves torch's setting alone
    with pytest.raises(UsageError, match="`threads` 0: must be at least 1"):
        speed.use_threads(0)


def test_threads_on_the_command_line(tmp_path, small_run):
    net = write_net(tmp_path, SMALL, "n.fdsl")
    ok = cli("eval", net, "--checkpoint", small_run / "checkpoint.pt", "--column", "1", "--threads", "2",
             "--recalibrate-bn", "0", "--repeats", "1", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["threads"] == 2
    plain = cli("eval", net, "--checkpoint", small_run / "checkpoint.pt", "--column", "1", "--recalibrate-bn", "0",
                "--repeats", "1", "--threads", "0")
    assert plain.returncode == 2 and "--threads" in plain.stderr and "Traceback" not in plain.stderr
    trained = cli("train", net, "--out", tmp_path / "run", "--epochs", "1", "--subset", "100", "--threads", "1",
                  "--recalibrate-bn", "0", "-q")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["threads"] == 1 and summary["anytime"]["threads"] == 1
