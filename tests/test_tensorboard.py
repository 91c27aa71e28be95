"""train --tensorboard: an event file TensorBoard reads (TFRecord framing, scalar summaries), rebuilt
from metrics.jsonl; without tensorboardX, one line saying what to install and nothing left behind."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
from train_support import ENV, ROOT, SMALL, write_net

from fractal_dsl import loads
from fractal_dsl.train import TrainConfig, tblog, train

pytest.importorskip("tensorboardX", reason="the tensorboard extra (the dev extra has it)")
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import masked_crc32c


def read_events(data: bytes) -> list:
    """Parse a TFRecord file of Event protos, checking both CRCs of every record."""
    events, i = [], 0
    while i < len(data):
        header = data[i:i + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[i + 8:i + 12])[0] == masked_crc32c(header)
        body = data[i + 12:i + 12 + length]
        assert struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] == masked_crc32c(body)
        events.append(Event.FromString(body))
        i += 16 + length
    return events


def test_the_event_file_holds_every_epochs_scalars(tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(epochs=2, subset=60, recalibrate_bn=0, quiet=True, tensorboard=True)
    train(loads(SMALL, "small.fdsl"), cfg, out, log=lambda *a: None)
    data = (out / tblog.NAME).read_bytes()
    events = read_events(data)
    assert events[0].file_version == "brain.Event:2"
    logged = {(e.step, v.tag): v for e in events[1:] for v in e.summary.value}
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tags = {"loss/train", "accuracy/train", "accuracy/whole_network", "accuracy/column_1", "accuracy/column_2", "lr"}
    assert {t for _, t in logged} == tags and {s for s, _ in logged} == {1, 2}
    for h in history:
        for tag, value in tblog.scalars(h):
            v = logged[(h["epoch"], tag)]
            got = v.simple_value if v.HasField("simple_value") else v.tensor.float_val[0]
            assert got == pytest.approx(value, rel=1e-6)
    assert data == tblog.event_file(history)  # rebuilt from the metrics: a resumed run writes the same file


def test_without_tensorboardx_one_line_and_no_folder(tmp_path):
    code = ("import sys; sys.modules['tensorboardX'] = None\nfrom fractal_dsl.cli import main\n"
            "main(['train', sys.argv[1], '--out', sys.argv[2], '--epochs', '1', '--tensorboard', '-q'])")
    r = subprocess.run([sys.executable, "-c", code, str(write_net(tmp_path)), str(tmp_path / "run")], check=False,
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert r.returncode == 1
    assert r.stderr == "error: --tensorboard needs tensorboardX: pip install 'fractal-dsl[tensorboard]'\n"
    assert not (tmp_path / "run").exists()
