"""`compare` on hostile run folders (issue 18, class 9): deeply nested JSON, well-formed JSON
with the wrong types or ranges, special files and oversized files each end in one line that
names the file, and exit 1 -- never a RecursionError, TypeError, ValueError or KeyError.

A run folder here is written the way ``train`` writes one (the fields of
``fractal_dsl/train/loop.py``'s summary and epoch records); ``tests/test_compare.py`` checks
that a real run passes the same checks.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fractal_dsl.cli import main
from fractal_dsl.compare import CompareError, format_table, read_run

SUMMARY = {
    "network": "small",
    "file": "small.fdsl",
    "data": "digits",
    "epochs": 2,
    "params": 12_345,
    "test_acc": 0.5,
    "column_acc": {"1": 0.4, "2": 0.5},
    "train_seconds": 1.5,
    "device": "cpu",
    "processes": 1,
    "anytime": {
        "batch": 64,
        "rows": [
            {"column": None, "layers": 4, "params": 12_345, "macs": 50_000, "accuracy": 0.5},
            {"column": 1, "layers": 1, "params": 3_000, "macs": 10_000, "accuracy": 0.4},
            {"column": 2, "layers": 2, "params": 9_000, "macs": 40_000, "accuracy": 0.5},
        ],
    },
}
RECORDS = [
    {"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_acc": 0.3, "test_acc": 0.5, "column_acc": [0.4, 0.5],
     "seconds": 0.7}
    for e in (1, 2)
]


def write_run(folder: Path, summary=SUMMARY, records=RECORDS, *, raw_summary: str | None = None,
              raw_metrics: str | bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(raw_summary if raw_summary is not None else json.dumps(summary))
    metrics = raw_metrics if raw_metrics is not None else "".join(json.dumps(r) + "\n" for r in records)
    if isinstance(metrics, bytes):
        (folder / "metrics.jsonl").write_bytes(metrics)
    else:
        (folder / "metrics.jsonl").write_text(metrics)
    return folder


def changed(path: str, value, base=SUMMARY):
    """``base`` with the field at dotted ``path`` (list indices as numbers) set to ``value``."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def compare(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def assert_one_line_naming(r, file: Path):
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {file}"), r.stderr
    assert "Traceback" not in r.output


def test_a_well_formed_run_is_compared(tmp_path):
    run = write_run(tmp_path / "run")
    r = compare(run, "-o", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1].split()[:4] == [str(run), "small", "12,345", "50,000"]


DEEP = {
    "array": "[" * 100_000 + "]" * 100_000,
    "object": '{"a": ' * 100_000 + "1" + "}" * 100_000,
    "inside a field": json.dumps(SUMMARY).replace('"device": "cpu"', '"device": ' + "[" * 50_000 + "]" * 50_000),
}


@pytest.mark.parametrize("where", ["summary.json", "metrics.jsonl"])
@pytest.mark.parametrize("shape", sorted(DEEP))
def test_deeply_nested_json_is_one_line(tmp_path, shape, where):
    run = tmp_path / "run"
    if where == "summary.json":
        write_run(run, raw_summary=DEEP[shape])
    else:
        write_run(run, raw_metrics=json.dumps(RECORDS[0]) + "\n" + DEEP[shape] + "\n")
    r = compare(run)
    assert_one_line_naming(r, run / where)
    if shape != "inside a field":  # the device field is not compare's to check
        assert "nested too deeply" in r.stderr or "must be" in r.stderr


WRONG_SUMMARY = [
    ("column_acc", [0.4, 0.5]), ("column_acc", "0.5"), ("column_acc", {}), ("column_acc", {"a": 0.5}),
    ("column_acc", {"1": 0.4, "3": 0.5}), ("column_acc", {str(k): 0.5 for k in range(1, 1001)}),
    ("column_acc.1", "high"), ("column_acc.1", None), ("column_acc.1", True), ("column_acc.1", 7),
    ("column_acc.1", -0.5), ("network", 3), ("network", "\x1b[31mred"), ("network", ["small"]),
    ("params", "many"), ("params", -1), ("params", 1.5), ("params", True), ("epochs", {}), ("test_acc", "x"),
    ("test_acc", 2), ("train_seconds", "soon"), ("train_seconds", -3), ("anytime", [1]), ("anytime", "x"),
    ("anytime.rows", {"0": 1}), ("anytime.rows", [1, 2]), ("anytime.rows", [{}] * 100),
    ("anytime.rows.0", None), ("anytime.rows.0.column", 0), ("anytime.rows.0.column", "1"),
    ("anytime.rows.0.macs", 1.5), ("anytime.rows.0.macs", None), ("anytime.rows.0.accuracy", "x"),
]


@pytest.mark.parametrize(("field", "value"), WRONG_SUMMARY, ids=[f"{f}={v!r}"[:40] for f, v in WRONG_SUMMARY])
def test_a_summary_field_of_the_wrong_type_or_range_is_one_line(tmp_path, field, value):
    run = write_run(tmp_path / "run", changed(field, value))
    r = compare(run, "-o", tmp_path / "c.png")
    assert_one_line_naming(r, run / "summary.json")
    assert f"`{field.split('.')[0]}" in r.stderr and "must be" in r.stderr
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("raw", ["", "[1, 2]", "null", "{", "NaN", '{"column_acc": {"1": NaN}}',
                                 '{"column_acc": {"1": Infinity}}', "1" * 5000])
def test_a_summary_that_is_not_a_summary_is_one_line(tmp_path, raw):
    run = write_run(tmp_path / "run", raw_summary=raw)
    assert_one_line_naming(compare(run), run / "summary.json")


WRONG_RECORD = [
    ("0", "not an object"), ("0.epoch", None), ("0.epoch", 0), ("0.epoch", "1"), ("0.test_acc", None),
    ("0.test_acc", 1.5), ("0.train_loss", "low"), ("0.train_loss", -1.0), ("0.column_acc", [0.4]), ("0.column_acc", []),
    ("0.column_acc", "0.4"), ("0.column_acc.1", None), ("1.column_acc", [0.4, 0.5, 0.6]),
]


@pytest.mark.parametrize(("field", "value"), WRONG_RECORD, ids=[f"{f}={v!r}" for f, v in WRONG_RECORD])
def test_an_epoch_record_of_the_wrong_type_is_one_line_naming_its_line(tmp_path, field, value):
    run = write_run(tmp_path / "run", records=changed(field, value, RECORDS))
    r = compare(run, "-o", tmp_path / "c.png")
    line = int(field.split(".")[0]) + 1
    assert_one_line_naming(r, run / "metrics.jsonl")
    assert r.stderr.startswith(f"error: {run / 'metrics.jsonl'}:{line}: cannot read the run: "), r.stderr


@pytest.mark.parametrize("raw", [b"{not json}\n", b"\xff\xfe\n", b'{"epoch": 1e999}\n', b"[]\n"])
def test_metrics_that_are_not_metrics_are_one_line(tmp_path, raw):
    run = write_run(tmp_path / "run", raw_metrics=raw)
    assert_one_line_naming(compare(run), run / "metrics.jsonl")


@pytest.mark.parametrize("name", ["summary.json", "metrics.jsonl"])
@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "too large"])
def test_run_files_that_are_not_regular_files_or_too_large_are_one_line(tmp_path, name, kind):
    run = write_run(tmp_path / "run")
    target = run / name
    target.unlink()
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")
    else:
        with open(target, "wb") as fh:
            fh.truncate(100 << 20)  # sparse
    assert_one_line_naming(compare(run), target)


# ---- generated: any JSON anywhere compare looks ------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)
SUMMARY_FIELDS = ["column_acc", "column_acc.1", "network", "params", "epochs", "test_acc", "train_seconds",
                  "anytime", "anytime.rows", "anytime.rows.0", "anytime.rows.1.column", "anytime.rows.0.macs",
                  "anytime.rows.2.accuracy"]
RECORD_FIELDS = ["1", "1.epoch", "1.test_acc", "1.train_loss", "1.column_acc", "1.column_acc.0"]


def _outcome(run: Path) -> None:
    """read_run gives a run whose table and facts can be shown, or one CompareError line naming a file."""
    try:
        got = read_run(run)
    except CompareError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(str(run / "")), message
        return
    format_table([got])
    assert got.best_epoch is None or math.isfinite(got.best_epoch[1])
    assert got.macs is None or got.macs >= 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SUMMARY_FIELDS + RECORD_FIELDS), JSON)
def test_any_json_in_any_field_is_a_run_or_one_line(tmp_path, field, value):
    run = tmp_path / "run"
    if field in RECORD_FIELDS:
        write_run(run, records=changed(field, value, RECORDS))
    else:
        write_run(run, changed(field, value))
    _outcome(run)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON, JSON)
def test_any_json_as_the_files_is_a_run_or_one_line(tmp_path, summary, record):
    _outcome(write_run(tmp_path / "run", raw_summary=json.dumps(summary), raw_metrics=json.dumps(record) + "\n"))
