"""What a run ships, loaded as a deployer would, against what the run reports.

    fractal-dsl train examples/tiny.fdsl --epochs 15 --out runs/tiny
    python benchmarks/deploy_check.py examples/tiny.fdsl runs/tiny

Writes the run's test images as the data set gives them (floats in [0, 1], channels
first) and their labels to ``test.pt`` in a temporary folder, exports the whole network
and every column to ONNX (``fractal-dsl export``, with and without ``--column K``) and
compiles each column alone (``compile --column K``). Then, in a fresh ``python`` that does
not import fractal_dsl (it checks), it loads the run's ``model.py`` and ``checkpoint.pt``
as the README's "Deploying" script does (``build()``, ``load_state_dict``, ``eval()``,
``model(x, column=k)``), the column modules through ``load_full_state_dict``, and the ONNX
files in onnxruntime, and scores every path on the test images. Prints one row per path:
the accuracy in ``summary.json``'s anytime table and each way of deploying it, and exits 1
if any differs from the table by more than ``--tolerance`` points (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs in a fresh interpreter: torch, onnxruntime and the run's files only.
DEPLOYER = r"""
import importlib.util, json, sys
import numpy as np, torch

run, tmp, columns, onnx = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "onnx"

def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

test = torch.load(f"{tmp}/test.pt", weights_only=True)
x, y = test["images"], test["labels"]
weights = torch.load(f"{run}/checkpoint.pt", weights_only=True)["model"]
model = load(f"{run}/model.py", "shipped").build()
model.load_state_dict(weights)
model.eval()
out = {"model.py": {}, "compile --column": {}, "onnx": {}}
with torch.no_grad():
    for k in [None, *range(1, columns + 1)]:
        pred = torch.cat([model(x[i : i + 500], column=k).argmax(1) for i in range(0, len(y), 500)])
        out["model.py"][str(k)] = (pred == y).float().mean().item()
        if k is not None:
            col = load(f"{tmp}/col{k}.py", f"col{k}")
            alone = col.load_full_state_dict(col.build(), weights).eval()
            pred = torch.cat([alone(x[i : i + 500]).argmax(1) for i in range(0, len(y), 500)])
            out["compile --column"][str(k)] = (pred == y).float().mean().item()
try:
    import onnxruntime as ort
except ImportError:
    ort = None
ort = ort if onnx else None
for k in [None, *range(1, columns + 1)] if ort else []:
    session = ort.InferenceSession(f"{tmp}/column{k}.onnx", providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": x.numpy()})
    out["onnx"][str(k)] = float((logits.argmax(1) == y.numpy()).mean())
assert not any(m.split(".")[0] == "fractal_dsl" for m in sys.modules), "the deployer imported fractal_dsl"
print(json.dumps(out))
"""


def measure(fdsl: str | Path, run: str | Path, tmp: str | Path, onnx: bool = True) -> dict:
    """``{way: {path: accuracy}}`` for the ways a run is deployed (``model.py``, ``compile
    --column``, ``onnx``; paths ``"None"`` for the whole network, ``"1"``... for columns), and
    ``"table"``: the accuracies of ``summary.json``'s anytime table."""
    import torch

    import fractal_dsl
    from fractal_dsl import codegen
    from fractal_dsl.export import export_bytes
    from fractal_dsl.train import data as datasets

    run, tmp = Path(run), Path(tmp)
    net = fractal_dsl.load(fdsl)
    summary = json.loads((run / "summary.json").read_text())
    config = summary["config"]
    data = datasets.subset(datasets.load(config["data"], net.input_shape, net.classes), config.get("subset"))
    torch.save({"images": data.prepare(data.x_test), "labels": data.y_test}, tmp / "test.pt")
    for k in range(1, net.columns + 1):
        (tmp / f"col{k}.py").write_text(codegen.generate(net, k), encoding="utf-8")
    for k in [None, *range(1, net.columns + 1)] if onnx else []:
        (tmp / f"column{k}.onnx").write_bytes(export_bytes(net, run / "checkpoint.pt", k, warn=lambda *_: None))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [sys.executable, "-I", "-c", DEPLOYER, str(run), str(tmp), str(net.columns), "onnx" if onnx else "-"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp,
        timeout=600,
    )
    if r.returncode:
        raise RuntimeError(f"the deployer failed:\n{r.stderr}")
    out = json.loads(r.stdout)
    out["table"] = {str(row["column"]): row["accuracy"] for row in summary["anytime"]["rows"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fdsl", help="the .fdsl file the run trained")
    ap.add_argument("run", help="the run's --out folder")
    ap.add_argument("--tolerance", type=float, default=1.0, help="points of accuracy allowed apart from the table")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX files (no onnx extra)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = measure(args.fdsl, os.path.abspath(args.run), tmp, onnx=not args.no_onnx)  # the deployer runs elsewhere
    ways = [w for w in ("model.py", "compile --column", "onnx") if out[w]]
    print(f"{'path':<15}{'anytime table':>15}" + "".join(f"{w:>18}" for w in ways))
    worst = 0.0
    for path, acc in out["table"].items():
        name = "whole network" if path == "None" else f"column {path}"
        cells = []
        for w in ways:
            got = out[w].get(path)
            cells.append(f"{100 * got:>18.1f}" if got is not None else f"{'-':>18}")
            if got is not None:
                worst = max(worst, abs(got - acc) * 100)
        print(f"{name:<15}{100 * acc:>15.1f}" + "".join(cells))
    print(f"largest difference from the table: {worst:.2f} points (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
