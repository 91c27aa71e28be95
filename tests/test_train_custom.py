"""`fractal_dsl.train(program, train_loader, test_loader, ...)`: the CLI's run on the user's own DataLoaders."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from train_support import SMALL

import fractal_dsl
from fractal_dsl.train import TrainError


def loaders(n=120, shape=(1, 8, 8), classes=10, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *shape, generator=g)
    x = (x * 255).to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    cut = n * 3 // 4
    return (DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=16),
            DataLoader(TensorDataset(x[cut:], y[cut:]), batch_size=16))  # fmt: skip


QUIET = dict(quiet=True, recalibrate_bn=0, latency_repeats=1, log=lambda *a: None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_a_run_on_loaders_is_a_cli_run(tmp_path, dtype):
    tl, te = loaders(dtype=dtype)
    summary = fractal_dsl.train(SMALL, tl, te, tmp_path / "run", epochs=1, set={"columns": 3}, **QUIET)
    out = tmp_path / "run"
    for name in ("model.py", "checkpoint.pt", "metrics.jsonl", "summary.json", "program.fdsl"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary
    assert summary["data"] == "custom" and summary["set"] == {"columns": 3}
    assert len(summary["column_acc"]) == 3 and len(summary["anytime"]["rows"]) == 4
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    # the test set really is the loader's: 30 images
    assert all(round(a * 30) == pytest.approx(a * 30, abs=1e-6) for a in summary["column_acc"].values())
    again = fractal_dsl.train(SMALL, tl, te, out, epochs=2, set={"columns": 3}, resume=True, **QUIET)
    assert again["epochs"] == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: loaders(shape=(3, 8, 8)), "images of shape (16, 3, 8, 8); the network takes N x 1 x 8 x 8"),
        (lambda: loaders(classes=12), "labels must be 0 to 9"),
        (lambda: ([torch.zeros(2, 1, 8, 8)], [torch.zeros(2, 1, 8, 8)]), "expected a pair (images, labels)"),
        (lambda: (5, 5), "train_loader is not iterable"),
        (lambda: ([], []), "train_loader gave no images"),
    ],
)
def test_bad_loaders_are_one_line_errors(tmp_path, make, message):
    tl, te = make()
    with pytest.raises(TrainError) as err:
        fractal_dsl.train(SMALL, tl, te, tmp_path / "run", epochs=1, **QUIET)
    assert message in str(err.value)
    assert not (tmp_path / "run").exists()
