"""`fractal-dsl check` and `inspect`: output, golden JSON, exit codes, and no torch import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES, ROOT, assert_golden

from fractal_dsl.cli import main

GOLDEN = ROOT / "tests" / "golden" / "inspect"
BAD = ROOT / "tests" / "fixtures" / "bad"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # file names in the output are relative, as a user would type them


def test_inspect_json_matches_golden(example):
    result = run("inspect", "--json", f"examples/{example.name}")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for field in ("name", "columns", "depth", "params", "macs", "blocks", "graph"):
        assert field in data
    for block in data["blocks"]:
        assert {"channels", "convs", "joins", "depth"} <= set(block)
    for node in data["graph"]["nodes"]:
        assert {"id", "op", "block", "column", "depth", "shape", "params"} <= set(node)
    assert data["params"] == sum(n["params"] for n in data["graph"]["nodes"])
    assert_golden(GOLDEN / f"{example.stem}.json", result.stdout)


def test_check_prints_one_line_per_valid_file():
    result = run("check", *[f"examples/{p.name}" for p in EXAMPLES])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(EXAMPLES)
    assert "examples/fractal4.fdsl: ok: fractal4: 4 columns, 5 blocks, depth 40, " in result.stdout
    assert result.stderr == ""


def test_check_reports_bad_files_and_still_checks_the_rest():
    result = run("check", "tests/fixtures/bad/unknown_layer.fdsl", "examples/tiny.fdsl")
    assert result.exit_code == 1
    assert result.stdout.startswith("examples/tiny.fdsl: ok: tiny: 3 columns")
    assert result.stderr.startswith("tests/fixtures/bad/unknown_layer.fdsl:")
    assert result.stderr.endswith("1 error in tests/fixtures/bad/unknown_layer.fdsl\n")


def test_inspect_text_summarises_blocks_and_totals():
    result = run("inspect", "examples/fractal4.fdsl")
    assert result.exit_code == 0
    out = result.stdout
    assert "joins by depth (arity)" in out
    assert "15 conv                   8" in out and "2 3 2 4" in out
    assert "parameters      76,106,634" in out and "deepest path 41 weight layers" in out


def test_inspect_of_a_bad_program_exits_1():
    for args in (("inspect", "tests/fixtures/bad/empty.fdsl"), ("inspect", "--json", "tests/fixtures/bad/empty.fdsl")):
        result = run(*args)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.startswith("tests/fixtures/bad/empty.fdsl:1:1: error: empty program")


@pytest.mark.parametrize(
    "args",
    [
        ("check",),
        ("check", "no/such/file.fdsl"),
        ("check", "examples"),
        ("check", "--frobnicate", "examples/tiny.fdsl"),
        ("inspect",),
        ("inspect", "no/such/file.fdsl"),
        ("inspect", "examples/tiny.fdsl", "examples/fractal3.fdsl"),
        ("inspect", "--yaml", "examples/tiny.fdsl"),
        ("no-such-command",),
    ],
)
def test_bad_command_line_use_exits_2(args):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Usage:")


PROBE = """
import sys
from fractal_dsl.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(f"exit={code} torch={heavy}", file=sys.stderr)
"""


@pytest.mark.parametrize("args", [("check", "examples/fractal4.fdsl", "examples/trunk.fdsl"), ("inspect", "--json", "examples/fractal4.fdsl"),
                                  ("fmt", "--diff", "tests/fixtures/fmt/messy.fdsl", "examples/")])
def test_check_inspect_and_fmt_do_not_import_torch_and_are_deterministic(args):
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert proc.stderr.strip().endswith("exit=0 torch=[]"), proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1] and outs[0]
