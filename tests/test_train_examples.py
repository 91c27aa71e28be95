"""Every example, and every whole program the README and docs/LANGUAGE.md show, trains one
epoch on the built-in data as it comes (the digits are resized and their grey channel
repeated to fit any input), in-process, on a few images (`--subset`)."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES, ROOT
from test_docs import SNIPPETS, code_lines

import fractal_dsl
from fractal_dsl.fingerprint import structure_sha256
from fractal_dsl.train import TrainConfig, train


def programs() -> list[tuple[str, fractal_dsl.Network]]:
    found, seen = [], set()
    nets = [(p.stem, fractal_dsl.load(p)) for p in EXAMPLES]
    for where, info, body in SNIPPETS:
        lines = code_lines(body)
        if info == "" and lines and lines[0].startswith("network "):
            nets.append((where, fractal_dsl.loads(body, "snippet.fdsl")))
    for name, net in nets:
        key = structure_sha256(net)
        if key not in seen:  # a snippet that is an example is trained once
            seen.add(key)
            found.append((name, net))
    return found


PROGRAMS = programs()


@pytest.mark.parametrize(("name", "net"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_trains_one_epoch_on_the_default_data(name, net, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=2, subset=2, recalibrate_bn=0, quiet=True, latency_repeats=1)
    lines = []
    summary = train(net, cfg, tmp_path / "run", log=lines.append)
    assert summary["epochs"] == 1 and summary["data"] == "digits"
    assert len(summary["column_acc"]) == net.columns
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    c, h, w = net.input_shape
    if (h, w) != (8, 8):
        assert f"resized from 8x8 to {h}x{w}" in lines[0] and f"resized from 8x8 to {h}x{w}" in written["data_conversion"]
    if c != 1:
        assert f"grey repeated to {c} channels" in lines[0] and f"grey repeated to {c} channels" in written["data_conversion"]


def test_the_programs_include_three_channel_networks():
    assert any(net.input_shape[0] == 3 for _, net in PROGRAMS) and len(PROGRAMS) >= len(EXAMPLES)
    assert ROOT.exists()
