"""`fmt` is as careful with the user's files as every other command (issue 18, class 5).

It reads through the same reader as ``check`` (no FIFO, no device, 64 KiB), replaces a file
only if it is still what was read (an editor's save while it runs is kept), keeps the
owner, group and mode, leaves read-only and hard-linked files alone, and ``fmt --check DIR``
fails when part of the folder cannot be read. Every refusal is one line and exit 1.
"""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from fractal_dsl import fmt as fmt_module
from fractal_dsl import safeio
from fractal_dsl.cli import main
from fractal_dsl.fmt import format_text

MESSY = (ROOT / "tests" / "fixtures" / "fmt" / "messy.fdsl").read_text("utf-8")
FORMATTED = format_text(MESSY)
EDITED = MESSY.replace("columns", "columns  ", 1).replace("classes 10", "classes 11")  # the user's own change
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def proc(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "fractal_dsl.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=ENV, timeout=timeout, check=False)


@pytest.fixture
def messy(tmp_path) -> Path:
    path = tmp_path / "messy.fdsl"
    path.write_text(MESSY, "utf-8")
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- reading, as check reads -------------------------------------------------------------


def test_a_fifo_and_a_device_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.fdsl"
    os.mkfifo(fifo)
    for path, what in ((fifo, "a FIFO"), ("/dev/zero", "a character device")):
        r = proc("fmt", path)  # a hang would end in subprocess.TimeoutExpired
        assert r.returncode == 1
        assert r.stderr.splitlines()[0] == f"error: cannot read {path}: not a regular file ({what})"
        assert "Traceback" not in r.stderr


def test_a_huge_file_and_endless_input_are_refused_without_being_read_whole(tmp_path):
    big = tmp_path / "big.fdsl"
    with open(big, "wb") as fh:
        fh.truncate(1536 << 20)  # 1.5 GiB, sparse: reading it whole would take its size in memory
    started = time.monotonic()
    r = proc("fmt", big)
    assert r.returncode == 1 and time.monotonic() - started < 20
    assert r.stderr.splitlines()[0] == f"{big}:1:1: error: file is larger than 64 KiB; this is not a fractal-dsl program"
    assert big.stat().st_size == 1536 << 20
    r = subprocess.run(f"head -c 100000000 /dev/zero | {sys.executable} -m fractal_dsl.cli fmt -", shell=True,
                       capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=30, check=False)
    assert r.returncode == 1 and "<stdin>:1:1: error: file is larger than 64 KiB" in r.stderr


# ---- writing: the user's file keeps what makes it theirs ------------------------------------


def test_a_read_only_file_is_left_alone(messy):
    os.chmod(messy, 0o444)
    r = run("fmt", messy)
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == f"error: cannot write {messy}: it is read-only (mode 0444); left as it is"
    assert messy.read_text("utf-8") == MESSY and stat.S_IMODE(messy.stat().st_mode) == 0o444
    assert "1 file not formatted (errors above)" in r.stderr
    assert listing(messy.parent) == ["messy.fdsl"]


def test_a_hard_linked_file_is_left_alone_and_stays_linked(messy):
    twin = messy.parent / "twin.fdsl"
    os.link(messy, twin)
    r = run("fmt", messy)
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == (
        f"error: cannot write {messy}: it has 2 hard links, which replacing it would split; left as it is"
    )
    assert messy.read_text("utf-8") == MESSY and os.path.samefile(messy, twin) and messy.stat().st_nlink == 2


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file to another user")
def test_run_as_root_the_file_keeps_its_owner_group_and_mode(messy):
    os.chown(messy, 65534, 65534)
    os.chmod(messy, 0o640)
    r = run("fmt", messy)
    assert r.exit_code == 0, r.output
    st = messy.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o640)
    assert messy.read_text("utf-8") == FORMATTED


def test_a_file_whose_owner_cannot_be_kept_is_left_alone(messy, monkeypatch):
    # what an ordinary user meets formatting a file of someone else's in a folder they may write
    def refuse(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(safeio.os, "fchown", refuse)
    monkeypatch.setattr(safeio.os, "fstat", lambda fd, real=os.fstat: _other_owner(real(fd)))
    r = run("fmt", messy)
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == f"error: cannot write {messy}: Operation not permitted; left as it is"
    assert messy.read_text("utf-8") == MESSY and listing(messy.parent) == ["messy.fdsl"]


def _other_owner(st: os.stat_result) -> os.stat_result:
    fields = list(st)
    fields[stat.ST_UID] = st.st_uid + 1
    return os.stat_result(fields)


# ---- an editor's save while fmt runs is never lost ----------------------------------------


def _editor_save(path: Path, text: str, by_rename: bool) -> None:
    if by_rename:  # how most editors save: a new file renamed over the old
        tmp = path.with_name(path.name + ".editor~")
        tmp.write_text(text, "utf-8")
        os.replace(tmp, path)
    else:  # in place, the same inode
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


@pytest.mark.parametrize("by_rename", [False, True], ids=["in place", "by rename"])
@pytest.mark.parametrize("when", ["while formatting", "while writing"])
def test_a_file_saved_while_fmt_runs_keeps_the_save(messy, monkeypatch, by_rename, when):
    if when == "while formatting":
        real = fmt_module.format_source
        monkeypatch.setattr(fmt_module, "format_source", lambda src: (real(src), _editor_save(messy, EDITED, by_rename))[0])
    else:  # the last moment: the formatted text is in the temporary file, not yet renamed
        real_fsync = os.fsync
        monkeypatch.setattr(safeio.os, "fsync", lambda fd: (real_fsync(fd), _editor_save(messy, EDITED, by_rename))[0])
    r = run("fmt", messy)
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == f"error: cannot write {messy}: it changed while fractal-dsl was reading it; left as it is"
    assert messy.read_text("utf-8") == EDITED
    assert listing(messy.parent) == ["messy.fdsl"]


def test_saves_at_random_moments_are_never_lost(messy):
    """The probe of the issue: 20 runs, each with an editor saving at a random moment."""
    rng = random.Random(18)
    for attempt in range(20):
        messy.write_text(MESSY, "utf-8")
        edited = EDITED.replace("classes 11", f"classes {12 + attempt}")
        saver = threading.Timer(rng.uniform(0, 0.05), _editor_save, (messy, edited, attempt % 2 == 0))
        saver.start()
        run("fmt", messy)
        saver.join()
        assert messy.read_text("utf-8") in (edited, format_text(edited)), f"attempt {attempt}: the save was lost"


# ---- folders ---------------------------------------------------------------------------------


def test_fmt_check_on_a_folder_fails_for_a_folder_it_cannot_read(tmp_path, monkeypatch):
    (tmp_path / "ok.fdsl").write_text(FORMATTED, "utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "hidden.fdsl").write_text(MESSY, "utf-8")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root reads any folder: make one unreadable as for a user
    r = run("fmt", "--check", tmp_path)
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        f"error: cannot read folder {locked}: Permission denied",
        "0 files would be reformatted, 1 file already formatted, 1 folder not read (errors above)",
    ]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a folder of mode 000")
def test_fmt_check_on_a_folder_fails_for_a_real_unreadable_subfolder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0)
    try:
        r = run("fmt", "--check", tmp_path)
    finally:
        os.chmod(locked, 0o755)
    assert r.exit_code == 1 and f"error: cannot read folder {locked}: Permission denied" in r.stderr


def test_fmt_check_on_a_folder_fails_for_a_file_it_cannot_read(tmp_path):
    (tmp_path / "ok.fdsl").write_text(FORMATTED, "utf-8")
    os.mkfifo(tmp_path / "pipe.fdsl")
    (tmp_path / "dangling.fdsl").symlink_to(tmp_path / "nowhere.fdsl")
    r = proc("fmt", "--check", tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: cannot read {tmp_path / 'dangling.fdsl'}: No such file or directory",
        f"error: cannot read {tmp_path / 'pipe.fdsl'}: not a regular file (a FIFO)",
        "0 files would be reformatted, 1 file already formatted, 2 files not formatted (errors above)",
    ]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a file of mode 000")
def test_fmt_check_on_a_folder_fails_for_a_real_unreadable_file(tmp_path):
    locked = tmp_path / "locked.fdsl"
    locked.write_text(FORMATTED, "utf-8")
    os.chmod(locked, 0)
    r = run("fmt", "--check", tmp_path)
    assert r.exit_code == 1 and f"error: cannot read {locked}: Permission denied" in r.stderr
