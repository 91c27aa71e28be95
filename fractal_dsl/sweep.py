"""``fractal-dsl sweep``: which variant of a program is best for its cost, on Optuna.

A sweep is an Optuna study over ``--set`` names (:mod:`fractal_dsl.overrides`). Each trial
picks values from the ``--space``, loads the program with them written in and trains it
into an ordinary run folder, ``OUT/trials/NNNN`` (NNNN: the trial's number in the study,
which the storage hands out once, so workers never share a folder). A trial is scored by
test accuracy (of the whole network, or of column K) and, unless ``--no-macs``, by the
network's MACs per image (from the graph): two objectives, whose best trades are the
Pareto front (``study.best_trials``).

The study lives in ``OUT/study.db`` (SQLite) unless ``--storage`` names another: a
database URL (``postgresql://...``, for workers on many machines) or a file path (an Optuna
journal file, for processes of one machine). Calling ``sweep`` again adds ``--trials``
more. A worker that dies leaves its trial failed: with a database, through Optuna's
heartbeat (a trial whose worker stopped beating for two ``--heartbeat`` periods is failed
by the next worker that starts a trial); with a journal file, by the next ``sweep`` on the
same machine, which fails the running trials of processes that no longer exist.

After its trials a worker writes, from every trial in the study: ``trials.csv``,
``pareto.png``, ``best.fdsl`` (the front's most accurate program, values written in) and
``front/trial-NNNN.fdsl`` for the front's other programs, and prints the front.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import safeio
from .errors import Error, FractalError, RunError, UsageError, braces, cut, quoted

SWEEP_FILE = "sweep.json"
_RANGE = re.compile(r"^(?P<name>[^=]+)=(?P<low>[^,]+?)\.\.(?P<high>[^,]+)$")  # LOW may be 0.05
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class SweepError(RunError):
    """The sweep could not run (a folder, a storage, a study): exit 1."""


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise SweepError("sweep needs Optuna: pip install 'fractal-dsl[sweep]'") from None
    return optuna


# ---- the search space ------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """One ``--space`` entry: ``NAME=LOW..HIGH`` (whole numbers: an int range, else a float
    range) or ``NAME=A,B,C`` (a choice)."""

    name: str
    low: int | float | None = None
    high: int | float | None = None
    choices: tuple | None = None

    def suggest(self, trial):
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high)
        # four significant digits: the value written into the program is the one Optuna records
        return float(f"{trial.suggest_float(self.name, self.low, self.high):.4g}")

    @property
    def corners(self) -> tuple:
        return self.choices if self.choices is not None else (self.low, self.high)

    def __str__(self) -> str:
        if self.choices is not None:
            return f"{self.name}={','.join(map(str, self.choices))}"
        return f"{self.name}={self.low}..{self.high}"


def _literal(text: str):
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def parse_space(items: Iterable[str]) -> list[Dimension]:
    """The ``--space`` values; malformed ones are a :class:`UsageError` (exit 2)."""
    dims: list[Dimension] = []
    for item in items:
        item = item.strip()
        m = _RANGE.match(item)
        if m:
            name, low, high = m["name"].strip(), _literal(m["low"].strip()), _literal(m["high"].strip())
            if isinstance(low, str) or isinstance(high, str) or not low < high or not math.isfinite(high - low):
                raise UsageError(
                    f"{{space}} {braces(quoted(item))}: a range is LOW..HIGH with finite numbers LOW < HIGH, "
                    "e.g. columns=2..5",
                    "space",
                )
            if isinstance(low, int) != isinstance(high, int):
                low, high = float(low), float(high)
            dims.append(Dimension(name, low=low, high=high))
            continue
        name, eq, rest = item.partition("=")
        choices = tuple(_literal(c.strip()) for c in rest.split(","))
        if not eq or not name.strip() or not rest or any(c == "" for c in choices):
            raise UsageError(
                f"{{space}} {braces(quoted(item))}: write NAME=LOW..HIGH or NAME=A,B,C, "
                "e.g. columns=2..5 or init=xavier,kaiming",
                "space",
            )
        if len(set(choices)) != len(choices):
            raise UsageError(f"{{space}} {braces(quoted(item))}: a choice is given twice", "space")
        dims.append(Dimension(name.strip(), choices=choices))
    names = [d.name for d in dims]
    if not dims:
        raise UsageError("give at least one {space}, e.g. columns=2..5", "space")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UsageError(f"{{space}} {braces(cut(dup))} is given twice", "space")
    return dims


def parse_objective(text: str) -> int | None:
    """``whole`` (None) or ``column:K`` (K)."""
    if text == "whole":
        return None
    m = re.fullmatch(r"column:([0-9]+)", text)
    if not m or int(m[1]) < 1:
        raise UsageError(f"{{objective}} {braces(text)!r}: use whole or column:K, e.g. column:1", "objective")
    return int(m[1])


# ---- the study -------------------------------------------------------------------------------


@dataclass
class Sweep:
    """One ``sweep`` call (one worker)."""

    file: Path
    space: list[Dimension]
    out: Path
    options: dict  # TrainConfig fields for every trial
    fixed: dict  # --set values for every trial
    column: int | None = None
    macs: bool = True
    prune: bool = False
    storage: str | None = None
    study_name: str | None = None
    heartbeat: int = 60
    seed: int = 0
    log: Callable = print

    # -- the folder and the storage ---------------------------------------------------------
    def claim(self) -> None:
        """Make ``out`` a sweep folder, or check that it is this study's."""
        out = self.out
        name = self.study_name or self.file.stem
        self.study_name = name
        meta = out / SWEEP_FILE
        if out.exists() and not out.is_dir():
            raise UsageError(f"{{out}} {braces(out)} is a file, not a folder", "out")
        try:
            out.mkdir(parents=True, exist_ok=True)
            if not meta.exists():
                others = [p for p in out.iterdir() if not p.name.startswith(".")]
                if others and not meta.exists():  # (a worker starting beside this one may have made it)
                    raise UsageError(
                        f"{{out}} {braces(out)} holds files and is not a sweep folder; pick another {{out}}", "out"
                    )
                _create_once(meta, json.dumps({"study": name, "file": str(self.file)}, indent=2) + "\n")
            try:
                saved_name = json.loads(safeio.read_input(meta, 1 << 20))["study"]
            except (ValueError, TypeError, KeyError):
                raise SweepError(f"{braces(meta)} is damaged; pick another {{out}}", "out") from None
            if saved_name != name:
                raise UsageError(
                    f"{braces(out)} holds the sweep of study {braces(saved_name)!r}, not {braces(name)!r}: "
                    "pick another {out}, or the same {study}",
                    "out",
                    "study",
                )
            (out / "trials").mkdir(exist_ok=True)
        except OSError as exc:
            raise SweepError(f"cannot use {braces(out)}: {braces(exc.strerror or exc)}") from None

    def storage_object(self, raw=lambda exc: False):
        """The Optuna storage; an exception for which ``raw(exc)`` holds is raised as it is."""
        import warnings

        optuna = require_optuna()
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat
        url = self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"
        # what the messages name: the option as given (its password hidden), or the default file
        shown = "{storage} " + braces(cut(hide_password(url))) if self.storage else braces(cut(self.out / "study.db"))
        if "://" in url:
            kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
            try:
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=self.heartbeat, grace_period=2 * self.heartbeat
                )
            except ImportError as exc:
                hint = " (for postgresql://: pip install 'psycopg[binary]')" if url.startswith("postgresql") else ""
                raise SweepError(
                    f"{shown}: its database driver is not installed{hint}: {braces(cut(_first_line(exc, url)))}",
                    "storage",
                ) from None
            except Exception as exc:  # sqlalchemy's errors: a bad URL, an unreachable server
                if raw(exc):
                    raise
                raise SweepError(
                    f"{shown}: cannot open the study storage ({braces(type(exc).__name__)}: "
                    f"{braces(cut(_first_line(exc, url)))})",
                    "storage",
                ) from None
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url)
        if not path.parent.is_dir():
            raise SweepError(f"{shown}: no folder {braces(cut(path.parent))}", "storage")
        if path.exists() and not path.is_file():  # a FIFO would block the open; a folder, a device
            raise SweepError(f"{shown}: not a regular file (a journal file or a database URL)", "storage")
        return JournalStorage(JournalFileBackend(str(path)))

    def study(self):
        optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        directions = ["maximize", "minimize"] if self.macs else ["maximize"]
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if self.prune else None
        # workers of one machine create the storage's tables and the study one at a time (for
        # workers on several machines, start one first: it creates them)
        with self._locked():
            for attempt in range(5):
                try:
                    storage = self.storage_object(raw=_racing)
                    study = optuna.create_study(
                        storage=storage,
                        study_name=self.study_name,
                        directions=directions,
                        pruner=pruner,
                        load_if_exists=True,
                    )
                    break
                except Error:
                    raise
                except ValueError as exc:  # another number of objectives than the study was made with
                    raise SweepError(f"study {braces(self.study_name)!r}: {braces(exc)}") from None
                except Exception as exc:  # a worker of another folder or machine creating the tables too
                    if attempt == 4 or not _racing(exc):
                        what = f"{type(exc).__name__}: {_first_line(exc, self.storage)}"
                        raise SweepError(f"cannot open the study: {braces(cut(what))}") from None
                    time.sleep(1 + attempt)
        if len(study.directions) != len(directions):
            fix = (
                "one objective (accuracy): add {no_macs}"
                if len(study.directions) == 1
                else ("two objectives (accuracy and MACs): drop {no_macs}")
            )
            raise UsageError(f"study {braces(self.study_name)!r} was started with " + fix, "no_macs")
        _fail_dead_local_trials(study)
        # a worker's own random stream: the study's size and this process make it differ
        # between workers, and a fresh single-worker sweep is reproducible from --seed
        shared = self.storage is not None
        seed = hash((self.seed, len(study.trials), os.getpid() if shared else 0)) & 0x7FFFFFFF
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
        return study

    # -- running -------------------------------------------------------------------------------
    def run(self, trials: int) -> list:
        """Run ``trials`` trials, then write the reports; returns the Pareto front."""
        from .anytime import column_costs

        self.claim()
        self.check_space()
        study = self.study()
        optuna = require_optuna()
        from .overrides import value_text
        from .pipeline import load
        from .train import TrainConfig
        from .train import train as train_run
        from .train.config import Interrupted

        done = [0]

        def objective(trial):
            values = {d.name: d.suggest(trial) for d in self.space}
            settings = {**self.fixed, **{k: value_text(v) for k, v in values.items()}}
            folder = self.out / "trials" / f"{trial.number:04d}"
            trial.set_user_attr("set", settings)
            trial.set_user_attr("run", str(folder))
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            shown = ", ".join(f"{k}={value_text(v)}" for k, v in values.items())
            self.log(f"trial {done[0] + 1} of {trials} (study trial {trial.number}): {shown}")
            try:
                net = load(self.file, set=settings)
                costs = {r["column"]: r for r in column_costs(net)}
                if self.column not in costs:
                    raise _TrialFailed(f"the network has columns 1..{net.columns}, no column {self.column}")
                trial.set_user_attr("macs", costs[self.column]["macs"])
                trial.set_user_attr("params", costs[self.column]["params"])

                def on_epoch(record):
                    acc = _accuracy(record["test_acc"], record["column_acc"], self.column)
                    if self.prune:
                        trial.report(acc, record["epoch"])
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")

                cfg = TrainConfig(**self.options, overrides=settings)
                summary = train_run(net, cfg, folder, log=self._train_log, on_epoch=on_epoch)
            except Interrupted:  # Ctrl-C: the trial is failed and the sweep stops (its checkpoint stays)
                raise Interrupted(
                    f"interrupted: trial {trial.number} is recorded as failed ({braces(folder)} keeps its last "
                    "checkpoint); call sweep again to go on with more trials"
                ) from None
            except FractalError as exc:
                raise _TrialFailed(exc.show()) from None
            except Error as exc:
                raise _TrialFailed(exc.show()) from None
            acc = _accuracy(summary["test_acc"], list(summary["column_acc"].values()), self.column)
            trial.set_user_attr("accuracy", acc)
            return (acc, costs[self.column]["macs"]) if self.macs else acc

        def progress(study, frozen) -> None:
            done[0] += 1
            self.log(f"trial {done[0]} of {trials}: {_outcome(frozen)}; {_best_so_far(study, self.macs)}")

        with _storage_errors(self.storage):
            study.optimize(objective, n_trials=trials, catch=(_TrialFailed,), callbacks=[progress])
        return self.report(study)

    def _train_log(self, line: str) -> None:
        self.log("    " + line)

    def check_space(self) -> None:
        """Load the program at every corner of the space (each name at its lowest and highest,
        or each choice), so an unknown name or a value the program refuses stops the sweep
        before any training, as a diagnostic."""
        from .pipeline import load

        load(self.file, set=self.fixed)
        for d in self.space:
            for value in d.corners:
                load(self.file, set={**self.fixed, d.name: value})

    # -- reports ---------------------------------------------------------------------------------
    def report(self, study) -> list:
        optuna = require_optuna()
        with self._locked():  # the study as it is once this worker may write (another may just have)
            trials = study.get_trials(deepcopy=False)
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            front = sorted(
                study.best_trials if complete else [], key=lambda t: (-t.user_attrs["accuracy"], t.user_attrs["macs"])
            )
            self._write("trials.csv", self._csv(trials))
            if front:
                self._write_programs(front)
            self._plot(complete, front)
        self.log(format_front(front, self.space))
        return front

    def _csv(self, trials) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        names = [d.name for d in self.space]
        w.writerow(["trial", *names, "accuracy", "macs", "params", "seconds", "state"])
        for t in trials:
            seconds = (
                round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
                if t.datetime_complete and t.datetime_start
                else ""
            )
            acc = t.user_attrs.get("accuracy")
            w.writerow(
                [
                    t.number,
                    *(t.user_attrs.get("set", {}).get(n, t.params.get(n, "")) for n in names),
                    "" if acc is None else f"{acc:.4f}",
                    t.user_attrs.get("macs", ""),
                    t.user_attrs.get("params", ""),
                    seconds,
                    t.state.name.lower(),
                ]
            )
        return buf.getvalue()

    def _program(self, trial) -> str:
        from .overrides import apply, program_as_run
        from .syntax import read_source

        source = apply(read_source(self.file), trial.user_attrs["set"])
        return program_as_run(source.text, source.name)

    def _write_programs(self, front) -> None:
        folder = self.out / "front"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("trial-*.fdsl"):
            old.unlink()
        self._write("best.fdsl", self._program(front[0]))
        for t in front[1:]:
            self._write(f"front/trial-{t.number:04d}.fdsl", self._program(t))

    def _plot(self, complete, front) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            import matplotlib.ticker
        except ImportError:
            self.log("note: matplotlib is not installed, so no pareto.png (pip install 'fractal-dsl[train]')")
            return
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        ax.scatter(
            [t.user_attrs["macs"] for t in complete],
            [100 * t.user_attrs["accuracy"] for t in complete],
            color="0.6",
            label="trial",
            zorder=2,
        )
        line = sorted(front, key=lambda t: t.user_attrs["macs"])
        if line:
            ax.plot(
                [t.user_attrs["macs"] for t in line],
                [100 * t.user_attrs["accuracy"] for t in line],
                "o-",
                color="tab:red",
                label="Pareto front" if self.macs else "best",
                zorder=3,
            )
            at: dict[tuple, list[str]] = {}  # front points on one spot share one label
            for t in line:
                spot = (t.user_attrs["macs"], 100 * t.user_attrs["accuracy"])
                at.setdefault(spot, []).append(", ".join(str(t.user_attrs["set"].get(d.name)) for d in self.space))
            for spot, labels in at.items():
                ax.annotate("; ".join(labels), spot, fontsize=7, textcoords="offset points", xytext=(5, -9))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("MACs per image" + (f" (column {self.column})" if self.column else ""))
        ax.set_ylabel("test accuracy (%)" + (f", column {self.column}" if self.column else ""))
        ax.set_title(f"{self.file.stem}: {len(complete)} trials, accuracy against MACs", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        names = ", ".join(d.name for d in self.space)
        ax.legend(fontsize=8, loc="best", title=f"front points: {names}", title_fontsize=7)
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", metadata={"Software": None})
        plt.close(fig)
        self._write("pareto.png", safeio.mark_png(png.getvalue()))

    def _write(self, name: str, data: str | bytes) -> None:
        try:
            safeio.write_output(self.out / name, data, owned=True)
        except safeio.OutputError as exc:
            raise SweepError(str(exc)) from None

    @contextlib.contextmanager
    def _locked(self):
        """One worker of this machine at a time (creating the study, writing the reports)."""
        fd = os.open(self.out / ".sweep.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class _TrialFailed(Exception):
    """A trial's program or run failed: Optuna records the trial as failed and goes on."""


@contextlib.contextmanager
def _storage_errors(url: str | None):
    try:
        yield
    except (Error, KeyboardInterrupt):
        raise
    except Exception as exc:  # a storage that failed mid-sweep (a lost database connection)
        if type(exc).__module__.split(".")[0] not in ("optuna", "sqlalchemy"):
            raise
        what = f"{type(exc).__name__}: {_first_line(exc, url)}"
        raise SweepError(f"the study storage failed: {braces(cut(what))}") from None


def hide_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part written ``***`` (everything
    between the user's ``:`` and the last ``@``, as a password may hold an unescaped ``@``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{colon}{'***' if colon else ''}@{host}"


def _first_line(exc: Exception, url: str | None = None) -> str:
    """The first line of ``exc``'s message, a password of ``url`` in it written ``***``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if url and "://" in url and "@" in url:
        password = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
        if password:
            text = text.replace(password, "***")
    return text


def _racing(exc: Exception) -> bool:
    """Whether ``exc`` is what a worker meets when another creates the same tables or study."""
    name = type(exc).__name__
    racing = ("locked", "already exists")  # SQLite: the file is locked; another worker created a table first
    return name in ("IntegrityError", "DuplicatedStudyError") or (
        name == "OperationalError" and any(r in str(exc) for r in racing)
    )


def _create_once(path: Path, text: str) -> None:
    """Write ``path`` unless it exists, atomically: two workers starting together agree on one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _accuracy(whole: float, columns: list, column: int | None) -> float:
    return whole if column is None else columns[column - 1]


def _outcome(t) -> str:
    state = t.state.name.lower()
    if state == "complete":
        return f"{100 * t.user_attrs['accuracy']:.1f}%, {t.user_attrs['macs']:,} MACs"
    return state


def _best_so_far(study, macs: bool) -> str:
    try:
        best = study.best_trials
    except ValueError:
        best = []
    if not best:
        return "no finished trial yet"
    top = max(best, key=lambda t: (t.user_attrs["accuracy"], -t.user_attrs["macs"]))
    what = f"best so far: trial {top.number}, {100 * top.user_attrs['accuracy']:.1f}%"
    if macs:
        what += f" at {top.user_attrs['macs']:,} MACs (front: {len(best)} trial{'s' if len(best) != 1 else ''})"
    return what


def format_front(front, space: list[Dimension]) -> str:
    """The Pareto front as a table, most accurate first."""
    if not front:
        return "no trial finished, so no front"
    names = [d.name for d in space]
    head = ["trial", *names, "accuracy", "MACs/image", "parameters"]
    rows = [head]
    for t in front:
        rows.append(
            [
                str(t.number),
                *(str(t.user_attrs["set"].get(n, "")) for n in names),
                f"{100 * t.user_attrs['accuracy']:.1f}%",
                f"{t.user_attrs['macs']:,}",
                f"{t.user_attrs['params']:,}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return "Pareto front (accuracy against MACs):\n" + "\n".join(lines)


def _fail_dead_local_trials(study) -> None:
    """Trials left running by a process of this machine that no longer exists are failed (a
    journal file has no heartbeat; a database's heartbeat does this for every machine)."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        name, _, pid = worker.rpartition(":")
        if name != host or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(Exception):  # another worker may have failed it first
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
