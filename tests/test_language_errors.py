"""Bad programs and their exact diagnostics, as paired fixture files.

``fixtures/bad/NAME.fdsl`` is a broken program and ``NAME.err`` the exact stderr of
``fractal-dsl check NAME.fdsl`` (caret lines included).  Adding a case means adding the two
files; ``FDSL_ACCEPT=1`` writes the ``.err`` for a new or changed case.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from conftest import ROOT, assert_golden

from fractal_dsl import FractalError, load
from fractal_dsl.cli import main

BAD = ROOT / "tests" / "fixtures" / "bad"
CASES = sorted(BAD.glob("*.fdsl"))
HEAD = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): error: \S")


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_bad_program_diagnostics(case, monkeypatch):
    monkeypatch.chdir(BAD)
    result = CliRunner().invoke(main, ["check", case.name])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert HEAD.match(result.stderr), result.stderr
    assert_golden(case.with_suffix(".err"), result.stderr)


def test_every_fixture_has_its_expected_diagnostics():
    assert {p.stem for p in BAD.glob("*.err")} == {p.stem for p in CASES}


def test_all_errors_of_a_file_are_reported_together():
    with pytest.raises(FractalError) as info:
        load(BAD / "many_errors.fdsl")
    messages = [d.message for d in info.value.diagnostics]
    assert len(messages) == 4, messages
    assert any("unknown layer `cnov`" in m for m in messages)
    assert any("unknown layer `batchnrom`" in m for m in messages)
    assert any("block 2 gives no value for `p`" in m for m in messages)
    assert any("`extra` is defined in the key" in m for m in messages)
    spans = [d.span for d in info.value.diagnostics]
    assert spans == sorted(spans), "diagnostics come in source order"


def test_every_diagnostic_points_inside_the_file():
    for case in CASES:
        try:
            load(case)
        except FractalError as exc:
            lines = exc.source.text.split("\n")
            for d in exc.diagnostics:
                assert 1 <= d.span.line <= max(1, len(lines)), (case.name, d)
                assert 1 <= d.span.column <= len(lines[d.span.line - 1]) + 1, (case.name, d)
        else:
            pytest.fail(f"{case.name} loaded without an error")
