"""The snippets of the docs about editors run as written: README "Editors", LANGUAGE.md "Layout and `fmt`"."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES, ROOT

from fractal_dsl import loads
from fractal_dsl.cli import main
from fractal_dsl.fmt import format_text
from fractal_dsl.summary import describe

README = (ROOT / "README.md").read_text("utf-8")
LANGUAGE = (ROOT / "docs" / "LANGUAGE.md").read_text("utf-8")


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.DOTALL)


def test_layout_example_in_the_language_reference():
    before, after = _blocks(_section(LANGUAGE, "## Layout and `fmt`"))
    assert format_text(before) == after
    assert format_text(after) == after
    facts = [describe(loads(t, "small.fdsl")) for t in (before, after)]
    for f in facts:
        for node in f["graph"]["nodes"]:
            node.pop("source")
    assert facts[0] == facts[1]


def test_editors_commands_in_the_readme_run(tmp_path, monkeypatch):
    (commands,) = _blocks(_section(README, "## Editors"), "sh")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for line in commands.strip().splitlines():
        words = shlex.split(line, comments=True)
        assert words[0] == "fractal-dsl", line
        stdin = None
        if "<" in words:
            at = words.index("<")
            stdin = (tmp_path / words[at + 1]).read_bytes()
            words = words[:at]
        result = CliRunner().invoke(main, words[1:], input=stdin)
        assert result.exit_code == 0, (line, result.output)
        if words[1:3] == ["fmt", "-"]:
            assert result.stdout == (ROOT / "examples" / "tiny.fdsl").read_text("utf-8")
        if words[1:3] == ["check", "-"]:
            assert result.stdout.startswith("<stdin>: ok: tiny:")
        ran += 1
    assert ran == 5
    for path in EXAMPLES:  # the examples are formatted, so nothing changed
        assert (tmp_path / "examples" / path.name).read_bytes() == path.read_bytes()


def test_readme_install_names_exist():
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    for extra in re.findall(r"pip install -e '\.\[(\w+)\]'", _section(README, "## Editors") + _section(README, "## Commands")):
        assert re.search(rf"^{extra} = \[", text, re.MULTILINE), extra
    vscode = (ROOT / "editors" / "vscode" / "README.md").read_text("utf-8")
    pkg = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text("utf-8"))
    assert f"code --install-extension {pkg['name']}-{pkg['version']}.vsix" in vscode


@pytest.mark.parametrize("command", ["fmt", "lsp"])
def test_readme_lists_the_editor_commands(command):
    assert f"| `fractal-dsl {command}" in _section(README, "## Commands")
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
