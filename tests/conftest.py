"""Shared helpers for the language tests: the examples, golden files, running the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fdsl"))
ACCEPT = os.environ.get("FDSL_ACCEPT") == "1"


def assert_golden(path: Path, actual: str) -> None:
    """Compare ``actual`` with the golden file byte for byte; ``FDSL_ACCEPT=1`` rewrites it."""
    if ACCEPT:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.exists(), f"missing golden file {path}; run the tests with FDSL_ACCEPT=1 to create it"
    expected = path.read_bytes().decode("utf-8")
    assert actual == expected, f"{path} differs; if the change is intended, rerun with FDSL_ACCEPT=1"


@pytest.fixture(params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def example(request) -> Path:
    return request.param
