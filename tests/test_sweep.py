"""`fractal-dsl sweep`: a study of tiny trials, its files, continuing it, two workers on one
storage, a worker that dies, and the errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_support import ENV, ROOT

import fractal_dsl
from fractal_dsl.cli import main
from fractal_dsl.sweep import Dimension, parse_space

pytest.importorskip("optuna")

PROGRAM = """\
network mini {
  input 1x8x8
  classes 10
  key {
    conv(c) = conv3x3(c, bias=false) . batchnorm . relu
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns 2
  blocks 4 4
  droppath local 0.1
}
"""
TRAIN = ["--epochs", "1", "--subset", "64", "--batch-size", "32", "-q", "--recalibrate-bn", "0"]
SPACE = ["--space", "columns=1..3", "--space", "droppath.local=0..0.3"]


@pytest.fixture
def program(tmp_path) -> Path:
    path = tmp_path / "mini.fdsl"
    path.write_text(PROGRAM)
    return path


def sweep_args(program: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return ["sweep", str(program), *SPACE, "--trials", str(trials), "--out", str(out), *TRAIN, *extra]


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fractal_dsl.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=timeout)  # fmt: skip


def rows(out: Path) -> list[dict]:
    with open(out / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_parse_space_keeps_ints_ints_and_floats_floats():
    dims = parse_space(["columns=2..5", "droppath.local=0..0.3", "c=16,32", "init=xavier,kaiming", "p=0..1.0"])
    assert dims[0] == Dimension("columns", low=2, high=5)
    assert isinstance(dims[0].low, int) and isinstance(dims[0].high, int)
    assert dims[1] == Dimension("droppath.local", low=0.0, high=0.3) and isinstance(dims[1].low, float)
    assert dims[2].choices == (16, 32) and dims[3].choices == ("xavier", "kaiming")
    assert isinstance(dims[4].low, float)


@pytest.mark.parametrize("space", ["columns", "columns=5..2", "columns=a..b", "columns=", "c=1,1", "c=1,,2"])
def test_bad_space_is_command_line_misuse(space, program, tmp_path):
    r = CliRunner().invoke(main, ["sweep", str(program), "--space", space, "--out", str(tmp_path / "s")])
    assert r.exit_code == 2, r.output
    assert "--space" in r.stderr
    assert not (tmp_path / "s").exists()


def test_a_bad_name_or_value_stops_the_sweep_before_training(program, tmp_path):
    r = CliRunner().invoke(main, ["sweep", str(program), "--space", "colums=1..3", "--out", str(tmp_path / "s"), *TRAIN])
    assert r.exit_code == 1
    assert r.stderr.startswith("--set colums: error: unknown name") and "did you mean `columns`?" in r.stderr
    r = CliRunner().invoke(main, ["sweep", str(program), "--space", "columns=1..99", "--out", str(tmp_path / "t"), *TRAIN])
    assert r.exit_code == 1 and "columns 99 is far too many" in r.stderr
    assert list((tmp_path / "t" / "trials").iterdir()) == []


def test_prune_needs_one_objective(program, tmp_path):
    r = CliRunner().invoke(main, [*sweep_args(program, tmp_path / "s", 1), "--prune"])
    assert r.exit_code == 2 and "--prune needs one objective" in r.output


def test_without_optuna_a_one_line_message(program, tmp_path):
    probe = "import sys\nsys.modules['optuna'] = None\nfrom fractal_dsl.cli import main\nmain(sys.argv[1:])\n"
    r = subprocess.run([sys.executable, "-c", probe, *sweep_args(program, tmp_path / "s", 1)], capture_output=True,
                       text=True, env=ENV, cwd=ROOT, timeout=120)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip() == "error: sweep needs Optuna: pip install 'fractal-dsl[sweep]'"


def test_a_sweep_writes_its_files_and_continues(program, tmp_path):
    out = tmp_path / "sweep"
    r = CliRunner().invoke(main, sweep_args(program, out, 3))
    assert r.exit_code == 0, r.output
    assert "trial 1 of 3" in r.stdout and "trial 3 of 3" in r.stdout and "best so far: trial" in r.stdout
    assert "Pareto front (accuracy against MACs):" in r.stdout
    got = rows(out)
    assert [g["trial"] for g in got] == ["0", "1", "2"]
    assert list(got[0]) == ["trial", "columns", "droppath.local", "accuracy", "macs", "params", "seconds", "state"]
    for g in got:
        assert g["state"] == "complete"
        assert g["columns"] in ("1", "2", "3")  # an int, never 2.0
        assert 0 <= float(g["droppath.local"]) <= 0.3 and "." in g["droppath.local"]
        summary = json.loads((out / "trials" / f"{int(g['trial']):04d}" / "summary.json").read_text())
        assert float(g["accuracy"]) == pytest.approx(summary["test_acc"], abs=1e-4)
        assert summary["set"] == {"columns": g["columns"], "droppath.local": g["droppath.local"]}
        net = fractal_dsl.load(out / "trials" / f"{int(g['trial']):04d}" / "program.fdsl")
        assert int(g["macs"]) == net.macs and net.columns == int(g["columns"])
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG")

    # best.fdsl: the front's most accurate program, values written in; it checks and trains
    front = [g for g in got if g["state"] == "complete"]
    best_acc = max(float(g["accuracy"]) for g in front)
    best = fractal_dsl.load(out / "best.fdsl")
    best_rows = [g for g in front if float(g["accuracy"]) == best_acc]
    assert any(best.columns == int(g["columns"]) and best.droppath.local == float(g["droppath.local"]) for g in best_rows)
    others = sorted(p.name for p in (out / "front").iterdir())
    assert all(fractal_dsl.load(out / "front" / name) for name in others)
    trained = CliRunner().invoke(main, ["train", str(out / "best.fdsl"), "--out", str(tmp_path / "best"), *TRAIN])
    assert trained.exit_code == 0, trained.output

    # calling it again continues the study
    r = CliRunner().invoke(main, sweep_args(program, out, 1))
    assert r.exit_code == 0, r.output
    assert [g["trial"] for g in rows(out)] == ["0", "1", "2", "3"]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001", "0002", "0003"]
    # --trials 0 writes the reports again from the study, training nothing
    before = (out / "trials.csv").read_text()
    (out / "best.fdsl").unlink()
    r = CliRunner().invoke(main, sweep_args(program, out, 0))
    assert r.exit_code == 0 and (out / "trials.csv").read_text() == before and (out / "best.fdsl").exists()
    # compare reads every trial's run
    c = CliRunner().invoke(main, ["compare", str(out / "trials")])
    assert c.exit_code == 0 and len(c.stdout.splitlines()) == 5


def test_objective_column_and_single_objective_pruning(program, tmp_path):
    out = tmp_path / "s"
    r = CliRunner().invoke(main, [*sweep_args(program, out, 2), "--objective", "column:1", "--no-macs", "--prune",
                                  "--epochs", "2", "--set", "block2.c=6"])  # fmt: skip
    assert r.exit_code == 0, r.output
    for g in rows(out):
        assert g["state"] in ("complete", "pruned")
        if g["state"] == "complete":
            run = out / "trials" / f"{int(g['trial']):04d}"
            summary = json.loads((run / "summary.json").read_text())
            assert float(g["accuracy"]) == pytest.approx(summary["column_acc"]["1"], abs=1e-4)
            assert summary["set"]["block2.c"] == "6" and "blocks 4 6" in (run / "program.fdsl").read_text()
            column1 = next(r for r in summary["anytime"]["rows"] if r["column"] == 1)
            assert int(g["macs"]) == column1["macs"]
    r = CliRunner().invoke(main, sweep_args(program, out, 1))  # now with two objectives: not this study
    assert r.exit_code == 2 and "study 'mini' was started with one objective (accuracy): add --no-macs" in r.stderr


def test_another_folder_is_refused(program, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    r = CliRunner().invoke(main, sweep_args(program, tmp_path / "full", 1))
    assert r.exit_code == 2 and "is not a sweep folder" in r.stderr
    r = CliRunner().invoke(main, [*sweep_args(program, tmp_path / "s", 0)])
    assert r.exit_code == 0
    r = CliRunner().invoke(main, [*sweep_args(program, tmp_path / "s", 0), "--study", "other"])
    assert r.exit_code == 2 and "holds the sweep of study 'mini', not 'other'" in r.stderr


@pytest.mark.parametrize("storage", ["sqlite", "journal", "sqlite-url", "postgresql"])
def test_two_workers_share_one_study(program, tmp_path, storage):
    """Two processes on one storage (the sweep folder's SQLite file, a journal file, one SQLite
    URL with a sweep folder each, or a PostgreSQL database as on many machines): every trial
    runs once, in its own run folder. The PostgreSQL case runs where FDSL_TEST_POSTGRES_URL
    names a database it may write (and psycopg is installed), e.g.
    postgresql://postgres@127.0.0.1:54329/sweeps; CI has none, so it is skipped there."""
    outs = [tmp_path / "shared"] * 2
    extra = []
    if storage == "postgresql":
        url = os.environ.get("FDSL_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("no FDSL_TEST_POSTGRES_URL")
        pytest.importorskip("psycopg")  # SQLAlchemy's driver for postgresql:// URLs
        outs = [tmp_path / "a", tmp_path / "b"]
        extra = ["--storage", url, "--study", f"test-{os.getpid()}-{time.time_ns()}"]
    elif storage == "journal":
        extra = ["--storage", str(tmp_path / "study.journal")]
    elif storage == "sqlite-url":
        outs = [tmp_path / "a", tmp_path / "b"]
        extra = ["--storage", f"sqlite:///{tmp_path / 'study.db'}", "--study", "together"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "fractal_dsl.cli", *sweep_args(program, out, 2, *extra)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)  # fmt: skip
        for out in outs
    ]
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
    folders = [p for out in set(outs) for p in (out / "trials").iterdir()]
    assert sorted(f.name for f in folders) == ["0000", "0001", "0002", "0003"]  # no trial twice
    for f in folders:
        assert json.loads((f / "summary.json").read_text())["epochs"] == 1
    last = max(set(outs), key=lambda out: (out / "trials.csv").stat().st_mtime)
    got = rows(last)  # the worker that finished last saw every trial finished
    assert sorted(int(g["trial"]) for g in got) == [0, 1, 2, 3]
    assert all(g["state"] == "complete" for g in got)
    assert (tmp_path / "shared" / "study.db").exists() == (storage == "sqlite")


def test_a_worker_that_dies_leaves_its_trial_failed(program, tmp_path):
    out = tmp_path / "s"
    slow = ["--epochs", "30"]  # long enough to be killed in its first trial
    proc = subprocess.Popen([sys.executable, "-m", "fractal_dsl.cli", *sweep_args(program, out, 1), *slow],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out / "trials" / "0000" / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    r = cli(*sweep_args(program, out, 1))
    assert r.returncode == 0, r.stderr
    got = rows(out)
    assert [(g["trial"], g["state"]) for g in got] == [("0", "fail"), ("1", "complete")]
    assert os.path.isdir(out / "trials" / "0000") and (out / "trials" / "0001" / "summary.json").exists()


def test_ctrl_c_stops_the_sweep_and_fails_its_trial(program, tmp_path):
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "fractal_dsl.cli", *sweep_args(program, out, 3), "--epochs", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out / "trials" / "0000" / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: trial 0 is recorded as failed" in err and "Traceback" not in err
    r = CliRunner().invoke(main, sweep_args(program, out, 0))
    assert r.exit_code == 0
    assert [(g["trial"], g["state"]) for g in rows(out)] == [("0", "fail")]
