"""A run killed (SIGKILL) or stopped (Ctrl-C) and then resumed ends with the very same weights
as one that ran straight through with the same seed."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from train_support import cli, popen, write_net

ARGS = ("--epochs", "5", "--seed", "3", "--augment", "--batch-size", "50", "-q")


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _metrics(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    net = write_net(folder)
    r = cli("train", net, "--out", folder / "run", *ARGS)
    assert r.returncode == 0, r.stderr
    return net, folder / "run"


def _stop_after_first_epoch(net: Path, out: Path, sig: int):
    proc = popen("train", net, "--out", out, *ARGS)
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, straight, sig):
    net, done = straight
    out = tmp_path / "run"
    code, err = _stop_after_first_epoch(net, out, sig)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 130, err
        assert "interrupted" in err and "continue with --resume" in err and "Traceback" not in err
    assert not (out / "summary.json").exists()  # it really stopped before the end
    r = cli("train", net, "--out", out, *ARGS, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming after epoch" in r.stdout
    assert _summary(out)["weights_sha256"] == _summary(done)["weights_sha256"]
    assert _metrics(out) == _metrics(done)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary files left
