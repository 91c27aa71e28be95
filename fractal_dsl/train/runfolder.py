"""The ``--out`` folder of a training run: claimed, locked, written through safeio, cleaned up.

* A folder is *a run folder* if fractal-dsl made it: it holds :data:`LOCK` (``fractal-dsl-run.lock``).
  An absent or empty folder becomes one. Any other folder with files in it, or a run folder
  holding files other than the tool's own (:data:`TOOL_FILES`), is refused unless
  ``force`` (``--force``), so a user's own ``model.py`` or ``metrics.jsonl`` is never
  overwritten by accident.
* While a run lives it holds an exclusive ``flock`` on :data:`LOCK`; a second run into the
  same folder is refused at once (the lock goes with the process, even when it is killed).
* A run that fails or is interrupted before it saved its first checkpoint removes what it
  wrote, the lock file, and the folders it created, so no empty ``--out`` is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from pathlib import Path

from .. import safeio
from ..errors import braces
from .config import TrainError

LOCK = "fractal-dsl-run.lock"
TOOL_FILES = (
    "model.py",
    "checkpoint.pt",
    "metrics.jsonl",
    "summary.json",
    "curves.png",
    "anytime.png",
    "events.out.tfevents.fractal-dsl",
    "program.fdsl",
)
_TEMP = re.compile(r"^\.(?:" + "|".join(re.escape(n) for n in TOOL_FILES) + r")\..*\.tmp$")


class RunFolder:
    """One claimed ``--out`` folder (on the main process; other ranks get ``active=False``)."""

    def __init__(self, path: Path, active: bool) -> None:
        self.path = path
        self.active = active
        self.created: list[Path] = []  # folders this run made, outermost first
        self.written: set[str] = set()
        self.had_lock_file = False
        self.saved = False  # a checkpoint was written by this run
        self._fd: int | None = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- claiming ---------------------------------------------------------------------------
    def claim(self, force: bool) -> None:
        self._make()
        self._lock()
        try:
            self._check_contents(force)
        except BaseException:
            self.release(failed=True)
            raise

    def _make(self) -> None:
        out = self.path
        if out.exists() and not out.is_dir():
            raise TrainError(f"{{out}} {braces(out)} is a file, not a folder", "out")
        missing = []
        for p in (out, *out.parents):
            if p.exists():
                break
            missing.append(p)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainError(
                f"cannot create {{out}} {braces(out)}: {braces(exc.strerror or exc)}"
                + (f" ({braces(exc.filename)})" if exc.filename and str(exc.filename) != str(out) else ""),
                "out",
            ) from None
        self.created = list(reversed(missing))

    def _lock(self) -> None:
        lock = self.path / LOCK
        self.had_lock_file = lock.exists()
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            self._remove_created()
            raise TrainError(
                f"cannot write in {{out}} {braces(self.path)}: {braces(exc.strerror or exc)}", "out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TrainError(
                    f"another fractal-dsl train is running in {braces(self.path)} (it holds {braces(lock)}); "
                    "wait for it to finish or pick another {out}",
                    "out",
                ) from None
            raise TrainError(f"cannot lock {lock}: {exc.strerror or exc}") from None
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{safeio.marker_text()}: training run, process {os.getpid()}\n".encode())

    def _check_contents(self, force: bool) -> None:
        names = sorted(p.name for p in self.path.iterdir() if p.name != LOCK)
        for name in names:
            if _TEMP.match(name):  # a temporary file of a run that was killed mid-write
                (self.path / name).unlink(missing_ok=True)
        names = [n for n in names if not _TEMP.match(n)]
        foreign = [n for n in names if not (self.had_lock_file and n in TOOL_FILES and self._plain(n))]
        if foreign and not force:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            why = (
                "files fractal-dsl did not write"
                if self.had_lock_file
                else "files, and it is not a fractal-dsl run folder"
            )
            raise TrainError(
                f"{{out}} {braces(self.path)} holds {why} ({braces(shown)}); pick another {{out}}, "
                "or add {force} to write the run's files there anyway",
                "out",
                "force",
            )

    def _plain(self, name: str) -> bool:
        """A regular file, not a link: a ``model.py`` linking elsewhere is not the tool's to replace."""
        path = self.path / name
        return path.is_file() and not path.is_symlink()

    # -- writing ----------------------------------------------------------------------------
    def write(self, name: str, data: bytes | str) -> None:
        self.write_with(name, lambda fh: fh.write(data.encode("utf-8") if isinstance(data, str) else data))

    def write_with(self, name: str, writer) -> None:
        try:
            safeio.write_output_with(self.path / name, writer, owned=True)
        except safeio.OutputError as exc:
            raise TrainError(str(exc)) from None
        self.written.add(name)

    # -- releasing --------------------------------------------------------------------------
    def release(self, failed: bool) -> None:
        """Unlock; after a failure before the first checkpoint, remove what this run made."""
        if failed and not self.saved and not (self.path / "checkpoint.pt").exists():
            for name in self.written:
                (self.path / name).unlink(missing_ok=True)
            if not self.had_lock_file:
                (self.path / LOCK).unlink(missing_ok=True)
            self._remove_created()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _remove_created(self) -> None:
        for folder in reversed(self.created):  # innermost first; only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def claimed(path: str | Path, force: bool, active: bool = True):
    """The run folder ``path``, claimed and locked for the ``with`` block (see the module doc)."""
    folder = RunFolder(Path(path), active)
    if not active:
        yield folder
        return
    folder.claim(force)
    failed = True
    try:
        yield folder
        failed = False
    finally:
        folder.release(failed)
