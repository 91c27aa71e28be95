"""The wheel carries the grammar: an installed fractal-dsl works from any directory.

Builds a wheel from the checkout (offline, with the hatchling from the dev extras), installs
it into a temporary folder with pip, and runs its ``fractal-dsl`` console script from a
directory outside the checkout, so only the copy of the grammar inside the package
(``fractal_dsl/grammars``, force-included by pyproject.toml) can be found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT


def _run(args, **kw):
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    dist, target = tmp / "dist", tmp / "site"
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(dist), str(ROOT)])
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("fractal_dsl-*.whl")
    install = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)])
    assert install.returncode == 0, install.stderr
    return wheel, target


def test_wheel_holds_the_grammar_and_the_console_script(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "fractal-dsl = fractal_dsl.cli:main" in zf.read(entry).decode()
        grammar = zf.read("fractal_dsl/grammars/fractal.lark").decode()
    assert grammar == (ROOT / "grammars" / "fractal.lark").read_text("utf-8")
    assert not any(n.startswith(("grammars/", "tests/", "examples/")) for n in names)
    for asset in ("view.html", "view.css", "view.js"):  # the interactive page (webview.py)
        assert zf_text(wheel, f"fractal_dsl/{asset}") == (ROOT / "fractal_dsl" / asset).read_text("utf-8")


def zf_text(wheel, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name).decode()


def test_installed_command_checks_an_example_outside_the_checkout(installed, tmp_path):
    _, target = installed
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(ROOT / "examples" / "fractal3.fdsl", work / "net.fdsl")
    (work / "bad.fdsl").write_text("network x {\n  colums 3\n}\n", "utf-8")
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = _run([sys.executable, "-c", "import fractal_dsl._resources as r; print(r.__file__); print(r.resource_dir('grammars'))"], cwd=work, env=env)
    module_file, grammars = where.stdout.split()
    assert module_file.startswith(str(target)) and grammars == str(target / "fractal_dsl" / "grammars")

    script = target / "bin" / "fractal-dsl"
    ok = _run([str(script), "check", "net.fdsl"], cwd=work, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("net.fdsl: ok: fractal3: 3 columns, 5 blocks, depth 20, ")
    bad = _run([str(script), "check", "bad.fdsl"], cwd=work, env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("bad.fdsl:2:3: error: unknown statement `colums`; did you mean `columns`?")


def test_installed_wheel_registers_the_pygments_lexer_and_formats(installed, tmp_path):
    """`pygmentize -l fdsl` finds the lexer through the wheel's entry point; `fmt` works outside the checkout."""
    wheel, target = installed
    with zipfile.ZipFile(wheel) as zf:
        entry = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "[pygments.lexers]\nfdsl = fractal_dsl.lexer:FdslLexer" in zf.read(entry).decode()
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(ROOT / "examples" / "fractal4.fdsl", work / "net.fdsl")
    env = {**os.environ, "PYTHONPATH": str(target)}
    raw = _run([sys.executable, "-m", "pygments", "-l", "fdsl", "-f", "raw", "net.fdsl"], cwd=work, env=env)
    assert raw.returncode == 0, raw.stderr
    assert "Token.Name.Builtin\t'conv3x3'" in raw.stdout and "Token.Error" not in raw.stdout
    fmt = _run([str(target / "bin" / "fractal-dsl"), "fmt", "--check", "."], cwd=work, env=env)
    assert fmt.returncode == 0, fmt.stderr
    assert fmt.stderr == "0 files would be reformatted, 1 file already formatted\n"
