"""The training loop: a validated Network -> compiled module -> trained weights and a results folder.

:func:`train` writes into ``out``: ``model.py`` (the compiled module), ``checkpoint.pt``
(after every epoch), ``metrics.jsonl`` (one line per epoch), ``curves.png``,
``summary.json`` (with the anytime table at the end) and ``anytime.png``.
:func:`evaluate_checkpoint` measures a saved run, column by column.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import fingerprint
from ..anytime import column_costs
from ..errors import UsageError, braces, cut, quoted
from ..ir import Network
from . import checkpoint, distributed, memory, ort, runfolder, speed, tblog
from . import data as datasets
from .checkpoint import compile_model, load_weights  # used here, and by export.py and the tests
from .config import (
    DATA_NAMES,
    EVAL_BATCH,
    RESUME_DEFAULTS,
    RESUME_KEYS,
    Interrupted,
    TrainConfig,
    TrainError,
    lr_factor,
)

MAX_SEED = 2**32 - 1  # numpy's and torch's generators and the sampler take any seed up to here
FLOAT32_MAX = torch.finfo(torch.float32).max  # the largest learning rate: see Run
LATENCY_REPEATS = 10  # latency: the median of this many timed forward passes


def train(net: Network, cfg: TrainConfig, out: str | Path, log=print, on_epoch=None, data=None) -> dict:
    """Train ``net`` as ``cfg`` says, writing into ``out``; returns the summary (also in summary.json).

    Under ``torchrun`` every process calls this; only rank 0 writes files and logs.
    ``on_epoch(record)`` is called after each epoch's checkpoint with its metrics.jsonl record
    (a sweep reports it to its pruner; an exception it raises ends the run, the checkpoint kept).
    ``data`` (a :class:`~fractal_dsl.train.data.Data`) replaces loading ``cfg.data`` (the
    user's own loaders, :mod:`fractal_dsl.train.custom`).
    """
    speed.use_threads(cfg.threads)
    ctx = distributed.setup(cfg.device)
    try:
        with runfolder.claimed(out, cfg.force, active=ctx.main) as folder:
            run = _Run(net, cfg, folder, ctx, log if ctx.main else _silent)
            run.on_epoch, run.given_data = on_epoch, data
            summary = run.run()
            distributed.barrier(ctx)  # no rank tears the group down while another still writes or reduces
        return summary
    finally:
        distributed.teardown(ctx)


def _silent(*_args, **_kwargs) -> None:
    pass


def make_optimizer(model, cfg: TrainConfig):
    """The paper's SGD with momentum (``cfg.optimizer == "sgd"``) or AdamW, at ``cfg.lr``."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _same_option(name: str, saved, now) -> bool:
    """Whether a resumed run's option matches the checkpoint's (an image folder saved as a
    relative path, before paths were stored absolute, matches the same folder now)."""
    if name == "data" and isinstance(saved, str) and saved not in DATA_NAMES and saved != now:
        return Path(saved).resolve() == Path(str(now)).resolve()
    return saved == now


def _seed(*parts: int) -> int:
    """One 63-bit seed from several integers (seed, epoch, rank, stream)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _Run:
    on_epoch = None  # called with each epoch's record (see train)
    given_data = None  # the data to train on, instead of loading cfg.data (see train)

    def __init__(
        self, net: Network, cfg: TrainConfig, folder: runfolder.RunFolder, ctx: distributed.Context, log
    ) -> None:
        self.net, self.cfg, self.folder, self.out, self.ctx, self.log = net, cfg, folder, folder.path, ctx, log
        self.amp = speed.amp_dtype(ctx.device, cfg.amp, log)  # float16 on CUDA, bfloat16 on a CPU that has it
        if cfg.epochs < 1 or cfg.batch_size < 1 or not (cfg.lr > 0):
            raise UsageError(
                "{epochs} and {batch_size} must be at least 1 and {lr} positive", "epochs", "batch_size", "lr"
            )
        if cfg.lr > FLOAT32_MAX:  # the optimizer multiplies float32 weights by it: past this, a RuntimeError
            raise UsageError(f"{{lr}} {cfg.lr:g}: must be at most {FLOAT32_MAX:.3g}, the largest float32", "lr")
        if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
            raise UsageError(f"{{seed}} {braces(repr(cfg.seed))}: must be a whole number from 0 to {MAX_SEED}", "seed")
        if cfg.batch_size % ctx.world:
            raise UsageError(
                f"{{batch_size}} {cfg.batch_size} must divide evenly over {ctx.world} processes", "batch_size"
            )
        self.ckpt = self.out / "checkpoint.pt"
        if cfg.tensorboard:
            tblog.require()
        if ctx.main:
            if cfg.resume and not self.ckpt.is_file():
                raise TrainError(f"{{resume}}: {braces(self.ckpt)} does not exist", "resume")
            if not cfg.resume and self.ckpt.exists():
                raise TrainError(
                    f"{braces(self.out)} already holds a run: continue it with {{resume}}, or pick another {{out}}",
                    "resume",
                    "out",
                )

    # ---- setup --------------------------------------------------------------------------

    def _data(self) -> datasets.Data:
        cfg = self.cfg
        budget = memory.budget(self.net, cfg.batch_size // self.ctx.world, cfg.max_memory, self.ctx.device)

        def load():
            return datasets.load(cfg.data, self.net.input_shape, self.net.classes, cfg.cache_dir, cfg.subset, budget)

        if self.given_data is not None:
            return datasets.subset(self.given_data, self.cfg.subset).to(self.ctx.device)
        if self.ctx.local_rank == 0:  # downloads happen once per machine
            d = load()
            distributed.barrier(self.ctx)
        else:
            distributed.barrier(self.ctx)
            d = load()
        return d.to(self.ctx.device)

    def run(self) -> dict:
        cfg, ctx = self.cfg, self.ctx
        data = self._data()
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        self.dp_gen = torch.Generator()
        try:
            source, model = compile_model(self.net, self.dp_gen, **cfg.model_overrides())
        except ValueError as exc:  # the module checks drop-path values
            raise TrainError(str(exc)) from None
        model.to(ctx.device)
        opt = make_optimizer(model, cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(cfg, e))
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)  # bfloat16 needs no scaling
        history: list[dict] = []
        if cfg.resume:
            history = self._restore(model, opt, sched, scaler)
        set_normalization(model, data)  # also for a checkpoint from before the module normalised
        if ctx.main:
            self.folder.write("model.py", source)
            self.folder.write("program.fdsl", _program_as_run(self.net))
            if history:  # rebuilt from the checkpoint, in case it was deleted (a finished run included)
                self._write_metrics(history)
        params = sum(p.numel() for p in model.parameters())
        if history:
            done = len(history)
            extended = self.saved_epochs != cfg.epochs
            self.log(
                f"resuming after epoch {done} of {cfg.epochs}"
                + (f" (the run had {self.saved_epochs}; the schedule is now that of {cfg.epochs})" if extended else "")
            )
        self.log(
            f"{self.net.name}: {params:,} parameters, {data.name} {len(data.y_train)} train / "
            f"{len(data.y_test)} test"
            + (f" ({data.conversion})" if data.conversion else "")
            + f", {ctx.device}"
            + (f" x {ctx.world} processes" if ctx.distributed else "")
        )
        # a --subset smoke test gets a batch that fits it; a small data set is said to be one
        n, steps = len(data.y_train), math.ceil(len(data.y_train) / cfg.batch_size)
        self.batch = fitted_batch(n, cfg.batch_size, ctx.world) if cfg.subset else cfg.batch_size
        few = f"{n} training images at batch size {cfg.batch_size} are {steps} step{'s' if steps > 1 else ''} an epoch"
        if self.batch != cfg.batch_size:
            self.log(
                f"{few}, too few to learn from: batch size {self.batch} instead ({math.ceil(n / self.batch)} steps)"
            )
        elif steps < MIN_STEPS:
            self.log(f"note: {few}, too few to learn from; a smaller --batch-size gives more")
        recal = min(cfg.recalibrate_bn, len(data.y_train))
        self.log(
            "evaluation: "
            + (
                f"BatchNorm statistics re-estimated per path on {recal} training images (kept in the checkpoint)"
                if recal
                else "BatchNorm statistics as training accumulated them, for every path"
            )
        )
        ddp = distributed.wrap(ctx, model, find_unused=bool(getattr(model, "drop_path", True)))
        with _StopFlag(self.log) as stop:
            for epoch in range(len(history), cfg.epochs):
                t0 = time.perf_counter()
                lr = opt.param_groups[0]["lr"]
                loss, acc = self._epoch(epoch, ddp, opt, scaler, data, stop)
                sched.step()
                distributed.broadcast_buffers(ctx, model)
                store_path_stats(model, data, cfg.recalibrate_bn)  # what the checkpoint keeps
                full, cols = evaluate(model, data, ctx, amp=self.amp)
                record = {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "train_loss": loss,
                    "train_acc": acc,
                    "test_acc": full,
                    "column_acc": cols,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
                history.append(record)
                if ctx.main:
                    self._save(model, opt, sched, scaler, history)
                self.log(_epoch_line(record, cfg.epochs))
                if self.on_epoch is not None:
                    self.on_epoch(record)
                if distributed.all_sum(ctx, [float(stop.is_set())])[0]:  # all ranks stop together
                    raise Interrupted(
                        f"interrupted: {braces(self.ckpt)} holds epoch {epoch + 1}; continue with {{resume}}", "resume"
                    )
        summary = _summary(self.net, data, cfg, ctx, params, history)
        summary["batch_size"] = self.batch
        summary["weights_sha256"] = weights_digest(model)
        if ctx.main:
            last = history[-1]
            accs = {None: last["test_acc"], **{k + 1: a for k, a in enumerate(last["column_acc"])}}
            repeats = max(1, cfg.latency_repeats)
            with speed.autocast(ctx.device, self.amp):
                rows = anytime_rows(self.net, model, data, accs, repeats)
            setup = {**latency_setup(data, repeats), **speed.precision(self.amp)}
            setup |= ort.add_latencies(
                rows, self.net, self.ckpt, data, setup["eval_batch"], repeats, self.log, cfg.ort_latency
            )
            summary["anytime"] = {**setup, "rows": rows}
            self.folder.write("summary.json", json.dumps(summary, indent=2) + "\n")
            self._write_anytime(summary["anytime"]["rows"])
        cols = ", ".join(f"{k}: {100 * a:.1f}%" for k, a in summary["column_acc"].items())
        self.log(f"test accuracy {100 * summary['test_acc']:.1f}% (columns {cols}); wrote {self.out}")
        return summary

    def _restore(self, model, opt, sched, scaler) -> list[dict]:
        state = checkpoint.load(self.ckpt)
        checkpoint.require(self.ckpt, state, "model", "optimizer", "scheduler", "history", "config", "epoch")
        checkpoint.verify(self.ckpt, state, self.net, model, self.cfg.allow_other_network, warn=self.log)
        saved = {**RESUME_DEFAULTS, **state["config"]}
        self.saved_epochs = saved.get("epochs")
        mine = {**self.cfg.as_dict(), "file_droppath": repr(self.net.droppath)}
        diffs = [k for k in (*RESUME_KEYS, "file_droppath") if not _same_option(k, saved.get(k), mine[k])]
        if diffs:
            was = ", ".join(f"{k}={saved.get(k)!r} (now {mine[k]!r})" for k in diffs)
            raise TrainError(f"{self.ckpt}: the run was started with {was}; resume with the same options")
        checkpoint.check_optimizer(self.ckpt, state["optimizer"], opt)
        try:
            load_weights(model, state["model"], self.log)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            history = list(state["history"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise TrainError(f"{self.ckpt}: damaged training state ({type(exc).__name__}: {exc})") from None
        if len(history) != state.get("epoch"):
            raise TrainError(f"{self.ckpt}: damaged training state (epoch and metrics disagree)")
        if self.cfg.epochs < len(history):
            raise TrainError(
                f"{braces(self.ckpt)} holds {len(history)} epochs; {{epochs}} {self.cfg.epochs} would end the run "
                "before that (give at least as many to resume it, more to extend it)",
                "epochs",
            )
        for group, base in zip(opt.param_groups, sched.base_lrs):  # the schedule of cfg.epochs from here on
            group["lr"] = base * lr_factor(self.cfg, len(history))
        return history

    def _save(self, model, opt, sched, scaler, history) -> None:
        config = {**self.cfg.as_dict(), "file_droppath": repr(self.net.droppath)}
        checkpoint.save(
            self.ckpt,
            {
                "network": self.net.name,
                "source_name": self.net.source_name,
                "source_sha256": fingerprint.source_sha256(self.net),
                "structure_sha256": fingerprint.structure_sha256(self.net),
                "config": config,
                "epoch": len(history),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "history": history,
            },
        )
        self.folder.saved = True
        self._write_metrics(history)

    def _write_metrics(self, history) -> None:
        """metrics.jsonl, curves.png (and the TensorBoard events), from the history of every finished epoch."""
        self.folder.write("metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        if self.cfg.tensorboard:
            self.folder.write(tblog.NAME, tblog.event_file(history))
        try:
            from .plots import curves

            png = io.BytesIO()
            curves(history, png, f"{self.net.name} on {self.cfg.data}")
            self.folder.write("curves.png", png.getvalue())
        except ImportError:
            self.log("note: matplotlib is not installed, so no curves.png (pip install 'fractal-dsl[train]')")

    def _write_anytime(self, rows) -> None:
        """anytime.png: accuracy against MACs per image, one point per column and the whole network."""
        try:
            from ..anytime import plot

            png = io.BytesIO()
            plot([(self.net.name, rows)], png, f"{self.net.name} on {self.cfg.data}: accuracy against compute")
            self.folder.write("anytime.png", png.getvalue())
        except ImportError:
            self.log("note: matplotlib is not installed, so no anytime.png (pip install 'fractal-dsl[train]')")

    # ---- one epoch ----------------------------------------------------------------------

    def _epoch(self, epoch, ddp, opt, scaler, data, stop) -> tuple[float, float]:
        cfg, ctx = self.cfg, self.ctx
        # every random stream restarts from (seed, epoch[, rank]): exact resume, no RNG state saved.
        self.dp_gen.manual_seed(_seed(cfg.seed, epoch, 1))  # drop-path: the same sample on every rank
        torch.manual_seed(_seed(cfg.seed, epoch, 2, ctx.rank))  # dropout: a different stream per rank
        order = datasets.epoch_order(len(data.y_train), cfg.seed, epoch, ctx.rank, ctx.world)
        flips = shifts = None
        if cfg.augment:
            flips, shifts = datasets.augmentation(len(data.y_train), cfg.seed, epoch)
        per_rank = self.batch // ctx.world
        steps = math.ceil(len(order) / per_rank)
        bar = _progress(steps, f"epoch {epoch + 1}/{cfg.epochs}", cfg.quiet or not ctx.main)
        ddp.train()
        total = [0.0, 0.0, 0.0]
        try:
            for step in range(steps):
                idx = order[step * per_rank : (step + 1) * per_rank]
                aug = (flips[idx], shifts[idx]) if flips is not None else ()
                idx = idx.to(ctx.device)
                x, y = data.prepare(data.x_train[idx], *aug), data.y_train[idx]
                with speed.autocast(ctx.device, self.amp):
                    logits = ddp(x)
                    loss = F.cross_entropy(logits, y)
                # one collective per step, before backward, so every rank agrees to go on or stop
                loss_sum, correct, n, stopping = distributed.all_sum(
                    ctx, [loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y), float(stop.is_set())]
                )
                if not math.isfinite(loss_sum):
                    raise TrainError(
                        f"the loss became {loss_sum / n} in epoch {epoch + 1}, step {step + 1}: training "
                        f"diverged (try a smaller {{lr}} than {cfg.lr:g}); "
                        + (f"{braces(self.ckpt)} holds epoch {epoch}" if epoch else "nothing was saved"),
                        "lr",
                    )
                if stopping:
                    raise Interrupted(
                        f"interrupted in epoch {epoch + 1}: "
                        + (
                            f"{braces(self.ckpt)} holds epoch {epoch}; continue with {{resume}}"
                            if epoch
                            else "no epoch had finished, nothing was saved"
                        ),
                        "resume",
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total = [total[0] + loss_sum, total[1] + correct, total[2] + n]
                bar.update(1)
                bar.set_postfix(loss=f"{total[0] / total[2]:.4f}", acc=f"{100 * total[1] / total[2]:.1f}%")
        finally:
            bar.close()
        return total[0] / total[2], total[1] / total[2]


MIN_STEPS = 10  # an epoch of fewer steps (a small --subset at the default batch) barely moves the weights


def fitted_batch(n: int, batch_size: int, world: int = 1) -> int:
    """The global batch for ``n`` training images: ``batch_size``, made smaller (a multiple
    of ``world``) when it would leave fewer than :data:`MIN_STEPS` steps an epoch; never
    below 2 a process, nor leaving a last batch of one image (BatchNorm cannot train on one
    value per channel)."""
    if math.ceil(n / batch_size) >= MIN_STEPS:
        return batch_size
    batch = max(2, n // (MIN_STEPS * world)) * world
    while n % batch == 1 and batch + world <= batch_size:
        batch += world
    return min(batch, batch_size)


def _progress(steps: int, desc: str, disable: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        disable = True
        tqdm = None
    if disable or not sys.stderr.isatty():  # without a terminal (a log file): the epoch lines alone
        return _NoBar()
    return tqdm(total=steps, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


class _NoBar:
    def update(self, _n) -> None:
        pass

    def set_postfix(self, **_kw) -> None:
        pass

    def close(self) -> None:
        pass


class _StopFlag:
    """SIGINT/SIGTERM ask the run to stop at the next step boundary (a second Ctrl-C aborts)."""

    def __init__(self, log) -> None:
        self.log = log
        self._event = threading.Event()
        self._old: dict = {}

    def is_set(self) -> bool:
        return self._event.is_set()

    def _handle(self, signum, _frame) -> None:
        if self._event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._event.set()
        self.log(f"\n{signal.Signals(signum).name}: stopping at the next step (Ctrl-C again to abort)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ---- evaluation -----------------------------------------------------------------------------


@torch.no_grad()
def accuracy(
    model, data: datasets.Data, ctx=None, column=None, amp=None, batch=EVAL_BATCH, recalibrate_bn: int = 0
) -> tuple[float, float]:
    """Test accuracy of the whole network (``column=None``) or one column, and samples per second.

    ``amp``: the autocast type (None: float32; see :func:`speed.amp_dtype`).
    Processes share the test set (every world-th sample) and sum their counts. With
    ``recalibrate_bn=N`` the path's BatchNorm statistics are first re-estimated on N training
    images, in place (see :func:`recalibrate`)."""
    rank, world = (ctx.rank, ctx.world) if ctx else (0, 1)
    device = data.x_test.device
    idx = torch.arange(rank, len(data.y_test), world, device=device)
    was_training = model.training
    correct, seconds = 0, 0.0
    recalibrate(model, data, column, recalibrate_bn)
    model.eval()
    for i in range(0, len(idx), batch):
        j = idx[i : i + batch]
        x = data.prepare(data.x_test[j])
        _sync(device)
        t0 = time.perf_counter()
        with speed.autocast(device, amp):
            pred = model(x, column=column).argmax(1)
        correct += (pred == data.y_test[j]).sum().item()  # .item() waits for the device
        seconds += time.perf_counter() - t0
    model.train(was_training)
    correct, n, seconds = (
        distributed.all_sum(ctx, [correct, len(idx), seconds]) if ctx else (correct, len(idx), seconds)
    )
    return correct / n, (n / seconds if seconds else float("inf"))


def set_normalization(model, data: datasets.Data) -> None:
    """Make the model normalise its input with the training images' mean and std per channel
    (buffers of the compiled module, so they travel with its weights)."""
    model.normalize.mean.copy_(data.mean)
    model.normalize.std.copy_(data.std)


def recalibrate(model, data: datasets.Data, column: int | None, samples: int) -> None:
    """Re-estimate the BatchNorm statistics of ``column``'s path (None: the whole network without
    drop-path) on the first ``samples`` training images, in place, with the compiled module's
    ``recalibrate_bn`` ("precise BN": an average over those images, not the running average of
    training, whose last few drop-path samples dominate it)."""
    samples = min(samples, len(data.y_train))
    if samples <= 0:
        return
    recalibrate_bn = type(model).__init__.__globals__["recalibrate_bn"]  # the model's own module's
    batches = (data.prepare(data.x_train[i : min(i + EVAL_BATCH, samples)]) for i in range(0, samples, EVAL_BATCH))
    recalibrate_bn(model, batches, column=column)


def store_path_stats(model, data: datasets.Data, samples: int) -> None:
    """Give every path (the whole network, each column) its own BatchNorm statistics, estimated on
    the first ``samples`` training images (:func:`recalibrate`); with ``samples=0`` each column's
    become a copy of the statistics training accumulated (the whole network's)."""
    if samples > 0:
        for column in (None, *range(1, model.num_columns + 1)):
            recalibrate(model, data, column, samples)
        return
    with torch.no_grad():
        for m in model.modules():
            for k in getattr(m, "paths", ()):  # a PathBatchNorm2d's columns
                for own, shared in zip(m.path_stats(k), m.path_stats(0)):
                    own.copy_(shared)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model, data, ctx=None, amp=None, recalibrate_bn: int = 0) -> tuple[float, list[float]]:
    """Accuracy of the whole network and of every column alone (the "anytime" predictors), each
    on its path's BatchNorm statistics (re-estimated first on ``recalibrate_bn`` images)."""
    full = accuracy(model, data, ctx, None, amp, recalibrate_bn=recalibrate_bn)[0]
    cols = [
        accuracy(model, data, ctx, k, amp, recalibrate_bn=recalibrate_bn)[0] for k in range(1, model.num_columns + 1)
    ]
    return full, cols


def evaluate_checkpoint(
    net: Network,
    path,
    column: int | None = None,
    data_spec: str | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    recalibrate_bn: int = 0,
    allow_other_network: bool = False,
    warn=print,
    repeats: int = LATENCY_REPEATS,
    threads: int | None = None,
    amp: bool = False,
    ort_latency: bool = True,
    max_memory: float | None = None,
) -> dict:
    """Load ``path`` into ``net``'s compiled module and measure it on the test split it was trained with
    (or ``data_spec``): the anytime table (:func:`anytime_rows`) of the whole network and every column
    (or only ``column``), with the eval pass's samples/s, each path on the BatchNorm statistics the
    checkpoint keeps for it (``recalibrate_bn=N``: re-estimated on N training images). The
    checkpoint's weights must match their checksum and belong to ``net`` (see
    :func:`checkpoint.verify`). The keys are those of the schema in docs/results.md. ``threads``:
    torch's CPU threads (None: as they are); ``amp``: accuracy and latency under autocast
    (:func:`speed.amp_dtype`); ``ort_latency``: also each path's latency in ONNX Runtime where it
    is installed (:mod:`.ort`)."""
    speed.use_threads(threads)
    state = checkpoint.load(path)
    checkpoint.require(path, state, "model")
    _, model = compile_model(net)
    if column is not None and not 1 <= column <= model.num_columns:
        raise UsageError(f"{{column}} {column}: {net.name} has columns 1..{model.num_columns}", "column")
    if repeats < 1:
        raise UsageError("{repeats} must be at least 1", "repeats")
    checkpoint.verify(path, state, net, model, allow_other_network, warn=warn)
    load_weights(model, state["model"], warn)
    dev = distributed.pick_device(device)
    spec = data_spec or _checkpoint_data(path, state)
    budget = memory.budget(net, 0, max_memory, dev)  # no training batch: only the eval passes' activations
    data = datasets.load(spec, net.input_shape, net.classes, cache_dir, budget=budget).to(dev)
    model.to(dev)
    dtype = speed.amp_dtype(dev, amp, warn)
    if "normalize.mean" not in state["model"]:  # trained when the loop normalised the images
        set_normalization(model, data)
    accuracy(model, data, amp=dtype, batch=min(EVAL_BATCH, len(data.y_test)))  # warm-up: first-call costs stay out
    targets = [column] if column is not None else [None, *range(1, model.num_columns + 1)]
    measured = {k: accuracy(model, data, column=k, amp=dtype, recalibrate_bn=recalibrate_bn) for k in targets}
    with speed.autocast(dev, dtype):
        rows = anytime_rows(net, model, data, {k: a for k, (a, _) in measured.items()}, repeats)
    batch = min(EVAL_BATCH, len(data.y_test))
    in_ort = ort.add_latencies(rows, net, path, data, batch, repeats, warn, ort_latency)
    for row in rows:
        row["samples_per_second"] = measured[row["column"]][1]
    return {
        "network": net.name,
        "file": net.source_name,
        "checkpoint": str(path),
        "epoch": state.get("epoch"),
        "data": data.name,
        "test_samples": len(data.y_test),
        "device": str(dev),
        "recalibrate_bn": min(recalibrate_bn, len(data.y_train)),
        **latency_setup(data, repeats),
        **speed.precision(dtype),
        **in_ort,
        "rows": rows,
    }


def _checkpoint_data(path, state: dict) -> str:
    """The data set ``eval`` reads when no ``--data`` is given: the checkpoint's, if it is a
    built-in name. A checkpoint is not trusted to choose a folder to read (or, through its
    cache folder, where a download is written), so a folder must be named on the command
    line, and downloads go to ``--cache-dir`` or the default cache, never to a stored path."""
    spec = state.get("config", {}).get("data", "digits")
    if spec == "digits" or spec in datasets.VISION:
        return spec
    named = braces(spec) if cut(spec) == spec and spec.isprintable() else "FOLDER"  # a long or odd one is not repeated
    raise UsageError(
        f"{braces(path)} was trained on {braces(quoted(spec))}; eval reads a folder only when it is given: "
        f"add {{data}} {named} to evaluate on it",
        "data",
    )


# ---- the anytime table ----------------------------------------------------------------------


def latency_setup(data: datasets.Data, repeats: int) -> dict:
    """How latency was measured: the two batch sizes, repeats, and torch's CPU threads."""
    return {
        "eval_batch": min(EVAL_BATCH, len(data.y_test)),
        "latency_repeats": repeats,
        "threads": torch.get_num_threads(),
    }


@torch.no_grad()
def latency(model, x, column: int | None, repeats: int) -> float:
    """Median seconds of ``repeats`` eval-mode forward passes of ``x`` (after one warm-up)."""
    was_training = model.training
    model.eval()
    times = []
    try:
        for i in range(repeats + 1):
            _sync(x.device)
            t0 = time.perf_counter()
            model(x, column=column)
            _sync(x.device)
            if i:
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times)


def anytime_rows(
    net: Network, model, data: datasets.Data, accuracies: dict, repeats: int = LATENCY_REPEATS
) -> list[dict]:
    """One row per key of ``accuracies`` (None: the whole network, k: column k alone, in that
    order): the graph's layers, parameters and MACs per image (:func:`anytime.column_costs`),
    the given accuracy, and the measured latency per image at batch 1 and at the eval batch
    (the median of ``repeats`` runs on the first test images, in milliseconds)."""
    costs = {r["column"]: r for r in column_costs(net)}
    batch = min(EVAL_BATCH, len(data.y_test))
    one, many = data.prepare(data.x_test[:1]), data.prepare(data.x_test[:batch])
    rows = []
    for k, acc in accuracies.items():
        rows.append(
            {
                **costs[k],
                "accuracy": acc,
                "latency_ms_batch1": 1000 * latency(model, one, k, repeats),
                "latency_ms_per_image": 1000 * latency(model, many, k, repeats) / batch,
            }
        )
    return rows


# ---- files and lines ------------------------------------------------------------------------


def weights_digest(model) -> str:
    """sha256 of every parameter and buffer, bit for bit: equal runs give equal digests."""
    return checkpoint.tensors_sha256(model.state_dict())


def _epoch_line(r: dict, epochs: int) -> str:
    cols = " ".join(f"{100 * a:.1f}" for a in r["column_acc"])
    return (
        f"epoch {r['epoch']}/{epochs}  lr {r['lr']:.3g}  loss {r['train_loss']:.4f}  train {100 * r['train_acc']:.1f}%"
        f"  test {100 * r['test_acc']:.1f}%  columns {cols}  {r['seconds']:.1f}s"
    )


def _summary(net: Network, data, cfg: TrainConfig, ctx, params: int, history: list[dict]) -> dict:
    last = history[-1]
    return {
        "network": net.name,
        "file": net.source_name,
        "data": data.name,
        "data_conversion": data.conversion,
        "epochs": last["epoch"],
        "params": params,
        "test_acc": last["test_acc"],
        "column_acc": {str(k + 1): a for k, a in enumerate(last["column_acc"])},
        "train_seconds": round(sum(h["seconds"] for h in history), 2),
        "device": str(ctx.device),
        "processes": ctx.world,
        "config": cfg.as_dict(),
        "set": dict(cfg.overrides),
    }


def _program_as_run(net: Network) -> str:
    """program.fdsl: the program the network was loaded from, --set values written in, laid out by fmt."""
    from ..overrides import program_as_run

    return program_as_run(net.source_text, net.source_name)
