"""Two CPU processes under torchrun (gloo): every rank ends with the same weights, and they match
one process trained on the same data.

Equality holds when the maths says it should: the global batch is the union of the ranks'
batches (same DistributedSampler permutation), DDP averages the ranks' mean gradients, which
is the mean over the union when the ranks' batches are equal in size (100 training images,
batch 20). The network has no BatchNorm (each rank would normalise by its own half-batch's
statistics, unlike one process) and no dropout (each rank draws its own masks). Drop-path
stays on: all ranks draw the same sample, so it is exactly the single process's sample, and
the layers it skips have no gradient on any rank (find_unused_parameters).
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from train_support import ENV, ROOT

NET = """
network ddp {
  input 1x8x8
  classes 10
  key {
    conv(c) = conv3x3(c) . relu
    join = mean
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns 3
  blocks 8 16
  droppath local 0.15 global 0.5 per batch
}
"""

SCRIPT = """
import json, os, sys
import torch
torch.set_num_threads(1)
from fractal_dsl import loads
from fractal_dsl.train import TrainConfig, train
net = loads(open(sys.argv[1]).read(), "ddp.fdsl")
summary = train(net, TrainConfig(**json.loads(sys.argv[3])), sys.argv[2], log=lambda *a: None)
with open(os.path.join(sys.argv[4], "rank%s.json" % os.environ.get("RANK", "0")), "w") as f:
    json.dump(summary, f)
"""


def _image_folder(root):
    """digits as PNG files: train/ with 10 per class, test/ with 4 per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen = {}
    for image, label in zip(digits.images, digits.target):
        n = seen.get(label, 0)
        if n >= 14:
            continue
        seen[label] = n + 1
        folder = root / ("train" if n < 10 else "test") / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype("uint8"), mode="L").save(folder / f"{n}.png")


def test_two_gloo_processes_match_one_process(tmp_path):
    _image_folder(tmp_path / "images")
    (tmp_path / "ddp.fdsl").write_text(NET)
    (tmp_path / "script.py").write_text(SCRIPT)
    cfg = {"data": str(tmp_path / "images"), "epochs": 3, "batch_size": 20, "lr": 0.05, "weight_decay": 1e-3,
           "augment": True, "seed": 1, "device": "cpu", "quiet": True}
    runs = {}
    for name, launcher in (("one", [sys.executable]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", "2"])):
        folder = tmp_path / name
        folder.mkdir()
        r = subprocess.run([*launcher, str(tmp_path / "script.py"), str(tmp_path / "ddp.fdsl"), str(folder / "out"),
                            json.dumps(cfg), str(folder)], check=False, capture_output=True, text=True, env=ENV,
                           cwd=ROOT, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = folder
    ranks = [json.loads((runs["two"] / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["processes"] == 2
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # every rank holds the same weights
    one = torch.load(runs["one"] / "out" / "checkpoint.pt", weights_only=True)
    two = torch.load(runs["two"] / "out" / "checkpoint.pt", weights_only=True)
    assert one["model"].keys() == two["model"].keys()
    for name, w in one["model"].items():
        torch.testing.assert_close(two["model"][name], w, rtol=1e-4, atol=1e-5, msg=name)
    # the runs learnt something, so the equality above is not that of untouched weights
    assert one["history"][-1]["train_loss"] < one["history"][0]["train_loss"]
    for a, b in zip(one["history"], two["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and a["test_acc"] == b["test_acc"]
