"""Shared helpers for the language tests: the examples, golden files, running the CLI."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fdsl"))
ACCEPT = os.environ.get("FDSL_ACCEPT") == "1"
# The anytime table's ONNX Runtime column exports every path (seconds each): off in the
# suite (also for the CLI the tests run) except where a test turns it on
# (tests/test_speed_options.py).
os.environ.setdefault("FDSL_NO_ORT", "1")

# tests/vision needs torchvision, which the default install leaves out: `.ci/run` runs it
# in a second virtual environment that has it (README, "Tests").
try:
    import torchvision  # noqa: F401
except ImportError:
    collect_ignore = ["vision"]


def assert_golden(path: Path, actual: str) -> None:
    """Compare ``actual`` with the golden file byte for byte, showing a unified diff.

    ``FDSL_ACCEPT=1`` rewrites the file and prints what changed; it is refused under CI
    (``CI`` set), where a golden must be checked, never written.
    """
    expected = path.read_bytes().decode("utf-8") if path.exists() else None
    if ACCEPT:
        if os.environ.get("CI"):
            pytest.fail("FDSL_ACCEPT=1 rewrites golden files and is refused under CI")
        if expected != actual:
            print(_diff(path, expected or "", actual))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(actual.encode("utf-8"))
        return
    assert expected is not None, f"missing golden file {path}; run the tests with FDSL_ACCEPT=1 to create it"
    assert actual == expected, f"{path} differs (rerun with FDSL_ACCEPT=1 if intended):\n{_diff(path, expected, actual)}"


def _diff(path: Path, expected: str, actual: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), f"{path.name} (golden)", f"{path.name} (now)")
    return "".join(list(lines)[:200])


@pytest.fixture(params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def example(request) -> Path:
    return request.param


# The slowest test files (pytest --durations=40, under `-n 2 --dist loadfile`), longest
# first: xdist hands whole files to the two processes in collection order, so starting with
# the long ones keeps one process from running a long file alone at the end.
SLOW_FIRST = (
    "test_train.py",
    "test_hostile_files.py",
    "test_sweep.py",
    "test_export.py",
    "test_deploy.py",
    "test_speed_options.py",
    "test_set.py",
    "test_anytime.py",
    "test_compare.py",
    "test_train_resume.py",
    "test_hostile.py",
    "test_codegen_export.py",
    "test_train_ddp.py",
    "test_train_examples.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
