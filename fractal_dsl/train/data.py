"""Training data as in-memory tensors: the built-in digits, torchvision sets, image folders.

A :class:`Data` holds the whole train and test split on one device. Batches are cut from a
:class:`~torch.utils.data.DistributedSampler` order (one process is the one-replica case),
and the paper's "+" augmentation (mirror, up to 4 px translation) is drawn once per epoch
*per sample index* from ``(seed, epoch)``: the same image gets the same flip and shift no
matter how many processes share the epoch or whether the run was resumed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import safeio
from ..errors import UsageError, braces, quoted
from .config import TrainError

VISION = {"cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "svhn": ((3, 32, 32), 10)}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
SPLIT_SEED = 0  # the held-out split is fixed, whatever --seed says, so runs compare on one test set
TEST_FRACTION = 0.2
SHIFT = 4  # pixels of translation in the "+" augmentation


@dataclass
class Data:
    """Images (uint8 or float in [0, 1], N x C x H x W) and labels; ``mean`` and ``std`` are what
    the compiled module normalises them with."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    mean: torch.Tensor  # per channel, of the training images in [0, 1]
    std: torch.Tensor
    conversion: str = ""  # how the images were made to fit the network, said in the run's first line

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device) -> Data:
        return Data(
            self.name,
            *(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)),
            self.classes,
            self.mean.to(device),
            self.std.to(device),
            self.conversion,
        )

    def prepare(self, x: torch.Tensor, flips=None, shifts=None) -> torch.Tensor:
        """A batch as the compiled module takes it: floats in [0, 1], augmented if asked (the
        module normalises them with ``mean`` and ``std``, its buffers that train sets)."""
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        if flips is not None:
            x = augment(x, flips, shifts)
        return x


def load(
    spec: str,
    input_shape: tuple[int, ...],
    classes: int,
    cache_dir: str | None = None,
    first: int | None = None,
    budget=None,
) -> Data:
    """Load ``spec`` (digits, cifar10, cifar100, svhn or a folder) and check it fits the network.

    ``first`` keeps the first N images of each split (``--subset``, see :func:`subset`), chosen before any
    image is read, resized or converted. ``budget(n_train, n_test, bytes_per_image, what)``,
    if given, is called once the number of images is known and before they are converted; it
    raises to refuse a run that would not fit in memory (:mod:`.memory`)."""
    if spec == "digits":
        data = _digits(input_shape, classes, first, budget)
    elif spec in VISION:
        data = _vision(spec, cache_dir)
        data = subset(data, first)
        if budget is not None:
            budget(len(data.y_train), len(data.y_test), math.prod(data.shape), f"{data.name} images as uint8")
    elif os.path.isdir(spec):
        try:
            data = _folder(Path(spec), input_shape, first, budget)
        except OSError as exc:  # a folder that cannot be listed (images themselves are read by _read_image)
            raise TrainError(f"cannot read the image folder {exc.filename or spec}: {exc.strerror or exc}") from None
    else:
        raise UsageError(
            f"{{data}} {braces(quoted(spec))}: not digits, cifar10, cifar100, svhn or an existing folder", "data"
        )
    if data.shape != tuple(input_shape):
        raise TrainError(
            f"{data.name} images are {_shape(data.shape)} but the network takes {_shape(input_shape)}"
            " (change the `input` line, or pick data of that shape)"
        )
    if classes != data.classes:
        data = _classes_for(data, classes, "digits" if spec == "digits" else "classes")
    return data


def _classes_for(data: Data, classes: int, what: str = "classes") -> Data:
    """The data for a network with another number of classes (the digits, an image folder,
    a torchvision set alike): a wider classifier learns labels 0 to N - 1 of its outputs; a
    narrower one gets only the classes 0 to classes - 1 (an image folder's first class
    folders in sorted order).  The conversion is said in the run's first line."""
    if classes > data.classes:  # labels 0 to N - 1 are valid outputs of a wider classifier
        note = f"labels 0-{data.classes - 1} of the network's {classes} classes"
        return dataclasses.replace(data, conversion=_also(data.conversion, note))
    if classes < 2:
        raise TrainError(f"{data.name} needs a network of at least 2 classes, not {classes}")
    train, test = data.y_train < classes, data.y_test < classes
    note = f"{what} 0-{classes - 1} only" if what == "digits" else f"the first {classes} of its {data.classes} classes"
    return dataclasses.replace(
        data,
        x_train=data.x_train[train],
        y_train=data.y_train[train],
        x_test=data.x_test[test],
        y_test=data.y_test[test],
        classes=classes,
        conversion=_also(data.conversion, note),
    )


def _also(conversion: str, note: str) -> str:
    return f"{conversion}, {note}" if conversion else note


def _first(tr: torch.Tensor, te: torch.Tensor, n: int | None):
    """The first ``n`` indices of each split (:func:`subset`'s choice, made on indices before
    any image is converted), and the note that says so (empty when nothing was cut)."""
    if n is None or (n >= len(tr) and n >= len(te)):
        return tr, te, ""
    return tr[:n], te[:n], f"first {n} images of each split"


def subset(data: Data, n: int | None) -> Data:
    """The first ``n`` images of each split (all of them for None): a quick check that a
    network trains, not a result."""
    if n is None or (n >= len(data.y_train) and n >= len(data.y_test)):
        return data
    note = f"first {n} images of each split"
    return Data(
        data.name,
        data.x_train[:n],
        data.y_train[:n],
        data.x_test[:n],
        data.y_test[:n],
        data.classes,
        data.mean,
        data.std,
        _also(data.conversion, note),
    )


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _finish(name, x_train, y_train, x_test, y_test, classes, conversion: str = "") -> Data:
    x = x_train.float() / 255 if x_train.dtype == torch.uint8 else x_train
    dims = (0, 2, 3)
    mean, std = x.mean(dims), x.std(dims).clamp_min(1e-6)
    return Data(name, x_train, y_train.long(), x_test, y_test.long(), classes, mean, std, conversion)


def _split(n: int, labels: torch.Tensor, names: list[str] | None = None):
    """A fixed, seeded, stratified train/test split of ``n`` samples."""
    from sklearn.model_selection import train_test_split

    counts = torch.bincount(labels)
    classes = int((counts > 0).sum())
    n_test = math.ceil(TEST_FRACTION * n)
    if counts.min() < 2 or n_test < classes or n - n_test < classes:
        k = int(counts.argmin())
        raise TrainError(
            f"too few images for a stratified {100 - 100 * TEST_FRACTION:.0f}/{100 * TEST_FRACTION:.0f} "
            f"train/test split: {n} images in {classes} classes (class "
            f"{names[k] if names else k!r} has {int(counts[k])}); each class needs at least 2 images "
            f"and the test share ({n_test}) at least one per class: add images, or give "
            "train/ and test/ folders"
        )
    idx = torch.arange(n)
    tr, te = train_test_split(idx.numpy(), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels.numpy())
    return torch.from_numpy(tr), torch.from_numpy(te)


def _digits(input_shape, classes: int = 10, first: int | None = None, budget=None) -> Data:
    """scikit-learn's 1,797 8x8 handwritten digits, grey, made to fit any CxHxW input:
    resized (bilinear) to HxW and the grey channel repeated C times. Only the images the run
    keeps (digits below ``classes``, the ``first`` of each split) are converted."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TrainError("the built-in digits need scikit-learn: pip install 'fractal-dsl[train]'") from None
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(digits.target)
    channels, size = input_shape[0], tuple(input_shape[1:])
    done = []
    if size != (8, 8):
        done.append(f"resized from 8x8 to {_shape(size)}")
    if channels != 1:
        done.append(f"grey repeated to {channels} channels")
    tr, te = _split(len(y), y)
    if 2 <= classes < 10:  # the digits a narrower network keeps (see _classes_for), before converting
        tr, te = tr[y[tr] < classes], te[y[te] < classes]
    tr, te, cut = _first(tr, te, first)
    if budget is not None and len(input_shape) == 3:
        budget(len(tr), len(te), 4 * math.prod(input_shape), f"digits of {_shape(input_shape)} as float32")

    def fit(x):
        if size != (8, 8):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        return x.expand(-1, channels, -1, -1).contiguous() if channels != 1 else x

    conversion = ", ".join(done + [cut] if cut else done)
    return _finish("digits", fit(x[tr]), y[tr], fit(x[te]), y[te], 10, conversion)


def _vision(name: str, cache_dir: str | None) -> Data:
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise TrainError(f"{{data}} {name} needs torchvision: pip install 'fractal-dsl[vision]'", "data") from None
    root = cache_dir or default_cache_dir()
    try:
        if name == "svhn":
            train, test = (tvd.SVHN(root, split=s, download=True) for s in ("train", "test"))
            xs = [torch.from_numpy(d.data) for d in (train, test)]  # already N x 3 x 32 x 32
            ys = [torch.as_tensor(d.labels) for d in (train, test)]
        else:
            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            train, test = (cls(root, train=t, download=True) for t in (True, False))
            xs = [torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous() for d in (train, test)]
            ys = [torch.as_tensor(d.targets) for d in (train, test)]
    except (OSError, RuntimeError) as exc:
        raise TrainError(f"could not load {name} into {root}: {exc}") from None
    return _finish(name, xs[0], ys[0], xs[1], ys[1], VISION[name][1])


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fractal-dsl")


def _folder(root: Path, input_shape, first: int | None = None, budget=None) -> Data:
    """An image folder read with Pillow: ``root/CLASS/*`` (split 80/20, seeded) or
    ``root/train/CLASS/*`` and ``root/test/CLASS/*``. Images are converted to the network's
    channels (1: grey, 3: RGB) and resized to its height and width."""
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise TrainError(f"image folders need a network input of 1xHxW or 3xHxW, not {_shape(input_shape)}")
    try:
        from PIL import Image
    except ImportError:
        raise TrainError("{data} FOLDER needs Pillow: pip install 'fractal-dsl[train]'", "data") from None
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_names(root / "train")
        only_test = sorted(set(_class_names(root / "test")) - set(classes))
        if only_test:
            raise TrainError(
                f"{root}/test has class folders that {root}/train lacks ({', '.join(only_test[:3])}): "
                "the network could never learn them; add their training images or remove them"
            )
        p_tr, y_tr = _list_images(root / "train", classes)
        p_te, y_te = _list_images(root / "test", classes)
        tr, te = torch.arange(len(y_tr)), torch.arange(len(y_te))
    else:
        classes = _class_names(root)
        p_tr, y_tr = p_te, y_te = _list_images(root, classes)
        tr, te = _split(len(y_tr), y_tr, classes)
    tr, te, cut = _first(tr, te, first)  # only the images the run keeps are read and resized
    if budget is not None:
        budget(len(tr), len(te), math.prod(input_shape), f"images of {_shape(input_shape)} as uint8")
    x_tr = _read_images([p_tr[i] for i in tr], input_shape, Image)
    x_te = _read_images([p_te[i] for i in te], input_shape, Image)
    return _finish(str(root), x_tr, y_tr[tr], x_te, y_te[te], len(classes), cut)


def _class_names(root: Path) -> list[str]:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise TrainError(f"{root}: no class folders (expected {root}/CLASS/image.png)")
    return names


def _list_images(root: Path, classes: list[str]) -> tuple[list[Path], torch.Tensor]:
    """The image files of ``root``'s class folders and their labels, nothing read yet."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise TrainError(f"{root}: class folder {name!r} is missing (it exists in train/)")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            paths.append(path)
            labels.append(label)
    if not paths:
        raise TrainError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
    return paths, torch.tensor(labels)


def _read_images(paths: list[Path], input_shape, Image) -> torch.Tensor:
    mode = "L" if input_shape[0] == 1 else "RGB"
    size = (input_shape[2], input_shape[1])
    images = [_read_image(path, mode, size, Image) for path in paths]
    return torch.stack(images).permute(0, 3, 1, 2).contiguous()


def _read_image(path: Path, mode: str, size: tuple[int, int], Image) -> torch.Tensor:
    """One image as H x W x C uint8; a FIFO, a device, a decompression bomb or a broken file is a TrainError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # > 89 Mpixels: refuse, do not decode
            with safeio.open_input(path) as fh, Image.open(fh) as im:
                im = im.convert(mode).resize(size, Image.BILINEAR)
                return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size[1], size[0], -1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TrainError(f"{path}: image too large to decode safely ({exc})") from None
    except OSError as exc:
        raise TrainError(
            f"{path}: not a readable image ({exc.strerror if isinstance(exc, safeio.InputError) else exc})"
        ) from None


# ---- batches ------------------------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """This process's sample indices for ``epoch``: DistributedSampler's seeded permutation,
    trimmed so every process gets the same number (else DDP would wait on a missing batch)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def augmentation(n: int, seed: int, epoch: int):
    """Per-sample flips (0/1) and shifts (dy, dx in [-4, 4]) for one epoch, by sample index."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7)
    return torch.randint(0, 2, (n,), generator=g), torch.randint(-SHIFT, SHIFT + 1, (n, 2), generator=g)


def augment(x: torch.Tensor, flips: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Mirror where ``flips`` is 1, then translate by ``shifts`` with zero padding (the paper's "+")."""
    x = torch.where(flips.to(x.device).bool()[:, None, None, None], x.flip(3), x)
    b, _, h, w = x.shape
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT))
    shifts = shifts.to(x.device)
    rows = torch.arange(h, device=x.device)[None, :] + SHIFT - shifts[:, 0:1]
    cols = torch.arange(w, device=x.device)[None, :] + SHIFT - shifts[:, 1:2]
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)
