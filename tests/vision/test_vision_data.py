"""The paper's data sets through torchvision, on files made here in their on-disk formats.

Run in a second virtual environment that has torchvision (`.ci/run` makes `.venv-vision`
with torch 2.14.1 and torchvision 0.29.1); the default install has no torchvision and does
not collect this folder (tests/conftest.py). torchvision checks a downloaded file's md5,
which made-up files cannot match, so the check is patched out here; everything else (the
folder layout, the pickled CIFAR batches, SVHN's .mat files, the loaders, "+"
augmentation, training and per-column evaluation) runs as for a user with internet.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torchvision.datasets.cifar as cifar
import torchvision.datasets.svhn as svhn
import torchvision.datasets.utils as tv_utils
from conftest import ROOT

import fractal_dsl
from fractal_dsl.train import TrainConfig, train

N_TRAIN, N_TEST = 40, 20


def _cifar10(root) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", N_TRAIN // 5) for i in range(1, 6)), ("test_batch", N_TEST)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def _cifar100(root) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", N_TRAIN), ("test", N_TEST)):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(rng.integers(0, 100, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))


def _svhn(root) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # SVHN writes the digit 0 as 10
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})


MAKERS = {"cifar10": (_cifar10, 10), "cifar100": (_cifar100, 100), "svhn": (_svhn, 10)}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_train_on_the_papers_data_sets(name, tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(svhn, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_utils, "check_integrity", lambda *a, **k: True)  # SVHN's download_url asks here
    make, classes = MAKERS[name]
    cache = tmp_path / "data"
    cache.mkdir()
    make(cache)
    text = (ROOT / "examples" / "tiny.fdsl").read_text().replace("input 1x16x16", "input 3x32x32")
    net = fractal_dsl.loads(text.replace("classes 10", f"classes {classes}"), "tiny32.fdsl")
    cfg = TrainConfig(data=name, cache_dir=str(cache), augment=True, epochs=1, batch_size=10, recalibrate_bn=0, quiet=True)
    lines = []
    summary = train(net, cfg, tmp_path / "run", log=lines.append)
    assert summary["data"] == name and summary["epochs"] == 1
    assert f"{name} {N_TRAIN} train / {N_TEST} test" in lines[0]
    assert len(summary["column_acc"]) == 3
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["augment"] is True
