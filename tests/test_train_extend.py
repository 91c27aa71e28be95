"""Runs that extend and travel: `train --resume --epochs N` extends a finished run, the
optimizer and schedule options, data paths stored absolute, `compare DIR` over a several-file
`train`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_support import SMALL, write_net

import fractal_dsl
from fractal_dsl.cli import main
from fractal_dsl.train import TrainConfig, TrainError, train
from fractal_dsl.train.config import lr_factor, paper_milestones

QUICK = dict(subset=100, batch_size=50, quiet=True, recalibrate_bn=0, latency_repeats=1, seed=1)


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _lrs(out: Path) -> list[float]:
    return [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_extending_a_finished_run_is_the_longer_run(tmp_path):
    """paper_milestones(1) and (3) agree on epoch 1, so a 1-epoch run extended to 3 is a 3-epoch run."""
    net = fractal_dsl.loads(SMALL)
    train(net, TrainConfig(epochs=1, **QUICK), tmp_path / "ext", log=lambda *a: None)
    lines = []
    train(net, TrainConfig(epochs=3, resume=True, **QUICK), tmp_path / "ext", log=lines.append)
    assert any("resuming after epoch 1 of 3 (the run had 1; the schedule is now that of 3)" in x for x in lines)
    train(net, TrainConfig(epochs=3, **QUICK), tmp_path / "straight", log=lambda *a: None)
    ext, straight = _summary(tmp_path / "ext"), _summary(tmp_path / "straight")
    assert ext["epochs"] == 3 and ext["config"]["epochs"] == 3
    assert ext["weights_sha256"] == straight["weights_sha256"]
    assert _lrs(tmp_path / "ext") == pytest.approx([0.02, 0.02, 0.002])
    with pytest.raises(TrainError, match="holds 3 epochs; `epochs` 2 would end the run before that"):
        train(net, TrainConfig(epochs=2, resume=True, **QUICK), tmp_path / "ext", log=lambda *a: None)


def test_an_extended_run_follows_the_schedule_of_its_new_length(tmp_path):
    """The rule: from the epoch it stopped at, the run takes the learning rates of an N-epoch run."""
    net = fractal_dsl.loads(SMALL)
    train(net, TrainConfig(epochs=2, **QUICK), tmp_path / "r", log=lambda *a: None)
    assert _lrs(tmp_path / "r") == pytest.approx([0.02, 0.002])  # paper_milestones(2) == (1,)
    train(net, TrainConfig(epochs=4, resume=True, **QUICK), tmp_path / "r", log=lambda *a: None)
    assert paper_milestones(4) == (2, 3)
    assert _lrs(tmp_path / "r") == pytest.approx([0.02, 0.002, 0.002, 0.0002])


def test_adamw_and_cosine(tmp_path):
    net = fractal_dsl.loads(SMALL)
    cfg = TrainConfig(epochs=3, optimizer="adamw", schedule="cosine", **QUICK)
    assert cfg.lr == 0.001  # AdamW's default rate
    train(net, cfg, tmp_path / "r", log=lambda *a: None)
    want = [0.001 * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in range(3)]
    assert _lrs(tmp_path / "r") == pytest.approx(want)
    assert [lr_factor(cfg, e) for e in range(3)] == pytest.approx([w / 0.001 for w in want])
    state = __import__("torch").load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert "exp_avg" in next(iter(state["optimizer"]["state"].values()))  # really AdamW's state
    with pytest.raises(TrainError, match="optimizer='adamw' \\(now 'sgd'\\)"):
        train(net, TrainConfig(epochs=4, resume=True, schedule="cosine", **QUICK), tmp_path / "r", log=print)
    with pytest.raises(TrainError, match="`optimizer` 'adam': use one of sgd, adamw"):
        TrainConfig(optimizer="adam")


def test_the_cli_takes_optimizer_and_schedule(tmp_path):
    net = write_net(tmp_path)
    args = ["train", str(net), "--epochs", "2", "--subset", "100", "-q", "--recalibrate-bn", "0"]
    r = CliRunner().invoke(main, [*args, "--optimizer", "adamw", "--schedule", "cosine", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    config = _summary(tmp_path / "a")["config"]
    assert (config["optimizer"], config["schedule"], config["lr"]) == ("adamw", "cosine", 0.001)
    assert _lrs(tmp_path / "a") == pytest.approx([0.001, 0.0005])
    bad = CliRunner().invoke(main, [*args, "--optimizer", "adam", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2


def test_data_paths_are_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(data="images", cache_dir="cache")
    assert cfg.data == str(tmp_path / "images") and os.path.isabs(cfg.data)
    assert cfg.cache_dir == str(tmp_path / "cache")
    assert TrainConfig(data="digits").data == "digits"  # a built-in name stays a name


def test_compare_a_several_file_train_folder(tmp_path):
    a = write_net(tmp_path, name="a.fdsl")
    b = write_net(tmp_path, SMALL.replace("columns 2", "columns 1"), name="b.fdsl")
    runner = CliRunner()
    out = tmp_path / "both"
    r = runner.invoke(main, ["train", str(a), str(b), "--epochs", "1", "--subset", "64", "-q", "--out", str(out)])
    assert r.exit_code == 0, r.output
    c = runner.invoke(main, ["compare", str(out)])
    assert c.exit_code == 0, c.output
    rows = [line.split()[0] for line in c.stdout.splitlines()[1:]]
    assert rows == [str(out / "a"), str(out / "b")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(main, ["compare", str(empty)]).exit_code == 1
