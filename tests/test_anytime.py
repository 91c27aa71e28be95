"""The anytime table: the graph's MACs against torch's flop counter, eval's table and its
JSON schema (docs/results.md), and what train writes (summary.json's table, anytime.png)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from train_support import ROOT, SMALL, cli, write_net

from fractal_dsl import load, loads
from fractal_dsl.anytime import column_costs, format_table
from fractal_dsl.train import TrainConfig, train
from fractal_dsl.train.loop import compile_model

torch.set_num_threads(1)


def schema() -> dict:
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"^```json\n(.*?)^```", text, re.DOTALL | re.MULTILINE)]
    (found,) = [b for b in blocks if b.get("title") == "fractal-dsl eval --json"]
    return found


@pytest.mark.parametrize("name", ["tiny", "kernels", "residual", "shortcut"])
def test_graph_macs_are_half_the_flop_counters_flops(name):
    """FlopCounterMode counts convolutions and matrix multiplies at 2 FLOPs per MAC and
    nothing for BatchNorm, pooling or the joins' means; the graph counts the same layers'
    multiply-accumulates. So for the whole network and every column alone (eval mode, one
    image) its count is exactly twice the graph's."""
    net = load(ROOT / "examples" / f"{name}.fdsl")
    _, model = compile_model(net)
    model.eval()
    x = torch.randn(1, *net.input_shape)
    costs = column_costs(net)
    assert costs[0]["macs"] == net.macs and costs[0]["params"] == net.params
    assert [r["column"] for r in costs] == [None, *range(1, net.columns + 1)]
    for row in costs:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, column=row["column"])
        assert counter.get_total_flops() == 2 * row["macs"], row
        if row["column"] is not None:  # a column's parameters: those of the layers its path runs through
            extracted = model.extract_column(row["column"])
            assert sum(p.numel() for p in extracted.parameters()) == row["params"]


def test_columns_cost_what_the_paper_says():
    rows = column_costs(load(ROOT / "examples" / "tiny.fdsl"))
    assert [r["layers"] for r in rows] == [21, 3, 6, 12]
    assert rows[1]["macs"] < rows[2]["macs"] < rows[3]["macs"] < rows[0]["macs"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("anytime") / "run"
    summary = train(loads(SMALL, "small.fdsl"), TrainConfig(epochs=1, subset=100, recalibrate_bn=0, quiet=True), out,
                    log=lambda *a: None)
    return out, summary


def test_eval_json_follows_the_documented_schema(tmp_path, small_run):
    out, _ = small_run
    net_file = write_net(tmp_path)
    r = cli("eval", net_file, "--checkpoint", out / "checkpoint.pt", "--recalibrate-bn", "0", "--repeats", "2", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    jsonschema.validate(result, schema())
    assert result["latency_repeats"] == 2 and result["threads"] == 1  # OMP_NUM_THREADS=1 in the tests
    costs = column_costs(loads(SMALL, "small.fdsl"))
    assert [(r["column"], r["params"], r["macs"]) for r in result["rows"]] == [
        (c["column"], c["params"], c["macs"]) for c in costs]
    assert result["test_samples"] == result["eval_batch"] == 360  # eval tests on the whole split, not --subset's
    one = json.loads(cli("eval", net_file, "--checkpoint", out / "checkpoint.pt", "--recalibrate-bn", "0",
                         "--repeats", "1", "--column", "2", "--json").stdout)
    jsonschema.validate(one, schema())
    assert [r["column"] for r in one["rows"]] == [2]


def test_eval_prints_the_table(tmp_path, small_run):
    out, _ = small_run
    r = cli("eval", write_net(tmp_path), "--checkpoint", out / "checkpoint.pt", "--recalibrate-bn", "0", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "MACs/image" in lines[1] and "ms/image (batch 1)" in lines[1] and "ms/image (batch 360)" in lines[1]
    assert [line.split()[0:2] for line in lines[2:5]] == [["whole", "network"], ["column", "1"], ["column", "2"]]
    assert "median of 1 runs, 1 CPU thread" in lines[-1]


def test_train_writes_the_table_and_the_figure(small_run):
    out, summary = small_run
    written = json.loads((out / "summary.json").read_text())
    assert written["anytime"] == summary["anytime"]
    table = written["anytime"]
    assert table["threads"] >= 1 and table["eval_batch"] == 100 and table["latency_repeats"] == 10
    rows_schema = schema()["properties"]["rows"]["items"]
    for row in table["rows"]:
        jsonschema.validate({**row, "samples_per_second": 0.0}, rows_schema)
    assert [r["accuracy"] for r in table["rows"]] == [summary["test_acc"], *summary["column_acc"].values()]
    assert (out / "anytime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = format_table(table["rows"], table["eval_batch"])
    assert "whole network" in text and "column 2" in text


def test_a_rerun_into_a_finished_folder_keeps_the_figure_as_the_tools_own(small_run):
    from fractal_dsl.train import runfolder

    assert "anytime.png" in runfolder.TOOL_FILES
