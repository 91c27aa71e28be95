"""Shared pieces of the training tests (no tests here): a small, fast network and running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# 2 columns, 2 blocks, 8x8 grey input (the digits' own size, so no resizing): ~1 s an epoch.
SMALL = """
network small {
  input 1x8x8
  classes 10
  key {
    conv(c, p) = conv3x3(c, bias=false) . dropout(p) . batchnorm . relu
    join = mean
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns 2
  blocks (8, 0.1) (16, 0.1)
  droppath local 0.15 global 0.5 per batch
}
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def write_net(folder: Path, text: str = SMALL, name: str = "small.fdsl") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fractal_dsl.cli", *map(str, args)], check=False,
                          capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=timeout)


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fractal_dsl.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
