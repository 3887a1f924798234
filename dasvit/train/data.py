"""From a `DataConfig` to the three splits (train, validation, test), their transforms and the loaders.

`cifar10` / `cifar100` come from torchvision (downloaded into `data.root`), `imagenet100` is an
ImageFolder over `root/train` and `root/val` restricted to the 100 CMC classes, `imagefolder` is any
`root/train/<class>/...`, `root/val/<class>/...` tree; `fashion-mnist`, `digits` and `synthetic` live
in memory (dasvit.datasets). Every dataset gives its own test split (reported only) and a validation
split held out of its training set (`data.holdout`: per-epoch figures and every selection are made on
it); `data.subset` trains on part of the training set. `EpochLoaders` gives deterministic epochs.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import DataError
from ..run.config import DataConfig
from ..run.jsonio import printable
from .datasets import DEBIAN_FASHION_MNIST, DigitsImages, FashionMNISTImages, SyntheticImages, fashion_folder
from .loop import mix_seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASS_LIST = Path(__file__).resolve().parent / "imagenet100_classes.txt"


def imagenet100_classes() -> list[str]:
    return [line.strip() for line in CLASS_LIST.read_text().splitlines() if line.strip()]


def _tv():
    import torchvision  # imported lazily: torchvision is slow to import
    import torchvision.datasets
    import torchvision.transforms.v2

    return torchvision


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _first_images(directory: Path, n: int = 16) -> list[Path]:
    """The first `n` image files of the first class folder that has any (walked as the dataset walks it)."""
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        files = [Path(f) for f in _walk_images(str(class_dir), _has_image_suffix)[0][:n]]
        if files:
            return files
    return []


def _class_samples(directory: Path, classes: int) -> list[Path]:
    """The first image file of each of the first `classes` class folders (walked as the dataset walks them)."""
    out = []
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir())[:classes]:
        files = _walk_images(str(class_dir), _has_image_suffix)[0][:1]
        out += [Path(f) for f in files]
    return out


def _has_image_suffix(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def _walk_images(class_dir: str, is_valid: Callable[[str], bool]) -> tuple[list[str], int]:
    """The image files under `class_dir` in torchvision's order, through directory links (a dataset linked in
    from elsewhere) but never into a folder twice nor into one above it: a link to `..` would list the tree
    again and again. Returns the files and how many links were skipped."""
    top = os.path.realpath(class_dir)
    seen = {top}
    found: list[tuple[str, list[str]]] = []
    skipped = 0
    for root, dirs, fnames in os.walk(class_dir, followlinks=True):
        kept = []
        for d in dirs:
            real = os.path.realpath(os.path.join(root, d))
            if real in seen or Path(top).is_relative_to(real):  # "/" too (real + os.sep would be "//")
                skipped += 1
                continue
            seen.add(real)
            kept.append(d)
        dirs[:] = kept
        found.append((root, sorted(fnames)))
    files = [os.path.join(root, f) for root, fnames in sorted(found) for f in fnames]
    return [f for f in files if is_valid(f)], skipped


UNREADABLE_TRIES = 16  # unreadable images of one class in a row before the folder is taken as damaged


class UnreadableImages(DataError):
    """Too many unreadable images in a row. Raised in a loader worker too, which DataLoader re-raises in the
    main process with the worker's traceback for a message: the sentence (its last line) is kept."""

    def __init__(self, message: str) -> None:
        if "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].partition(": ")[2] or message
        super().__init__(message)


@functools.cache
def _image_folder_class():
    """torchvision's ImageFolder, walked without loops (`_walk_images`) and reading an unreadable image (a
    zero-byte file, a truncated or corrupt one) as another image of its class, with a warning naming it.

    Skip, not stop: real folders hold a few broken files, met only when an epoch reaches them (hours in,
    on a large set) and costly to find beforehand (every image opened); one image standing in for another
    changes a figure by less than one image in the split, and the warning says which file to fix. Many in a
    row (UNREADABLE_TRIES) is a damaged folder: one sentence."""
    from PIL import Image

    class SafeImageFolder(_tv().datasets.ImageFolder):
        warned: set[str] = set()

        def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            is_valid = is_valid_file or (lambda path: path.lower().endswith(tuple(extensions)))
            samples, self.skipped_links = [], 0
            for name in sorted(class_to_idx):
                class_dir = os.path.join(directory, name)
                if os.path.isdir(class_dir):
                    files, skipped = _walk_images(class_dir, is_valid)
                    samples += [(f, class_to_idx[name]) for f in files]
                    self.skipped_links += skipped
            present = {t for _, t in samples}
            empty = sorted(c for c, t in class_to_idx.items() if t not in present)
            if empty and not allow_empty:
                raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}.")
            return samples

        def __getitem__(self, index: int):
            target = self.samples[index][1]
            for path in self._stand_ins(index):
                try:
                    sample = self.loader(path)
                except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                    why = printable(str(e) or type(e).__name__, newlines=False)[:160]
                    if path not in self.warned:
                        self.warned.add(path)
                        print(
                            f"warning: {printable(path, newlines=False)} is not an image that can be read ({why}); "
                            "another image of its class stands in for it: remove or replace the file.",
                            file=sys.stderr,
                            flush=True,
                        )
                    continue
                sample = self.transform(sample) if self.transform is not None else sample
                return sample, target
            size = len(list(self._stand_ins(index)))
            raise UnreadableImages(
                f"{printable(self.samples[index][0], newlines=False)} and the {size - 1} images of its class after "
                f"it cannot be read ({why}); the image folder {printable(self.root, False)} looks damaged: check it."
            )

        def _stand_ins(self, index: int):
            """The image at `index`, then (only if that one cannot be read) the next ones of its class."""
            yield self.samples[index][0]
            target, first, last = self.samples[index][1], index, index
            while first > 0 and self.samples[first - 1][1] == target:
                first -= 1
            while last + 1 < len(self.samples) and self.samples[last + 1][1] == target:
                last += 1
            size = last - first + 1
            for k in range(1, min(UNREADABLE_TRIES, size)):
                yield self.samples[first + (index - first + k) % size][0]

    return SafeImageFolder


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def image_channels(cfg: DataConfig) -> int:
    """Channels the network reads: `data.channels`, or with "auto" the dataset's own (digits and
    Fashion-MNIST 1; an imagefolder tree 1 if its first training image is grayscale, else 3; the others 3)."""
    if cfg.channels != "auto":
        return int(cfg.channels)
    return image_info(cfg).channels


@dataclass(frozen=True)
class ImageInfo:
    """What a dataset's images are, known before any training: the augmentation policy's `auto` follows it.

    size: the side of the images as the dataset stores them (pixels; the shorter side of a file), before
    any resize to `data.image_size`; channels: 1 (grayscale) or 3; mirror_keeps_label: whether a mirror
    image shows the same class (photographs of objects and clothing: yes; digits, glyphs: no), None when
    the images do not say (an image folder: then grayscale is taken for scans and glyphs, colour for
    photographs); tensor: the images are already normalised float tensors (the generated task)."""

    size: int
    channels: int
    mirror_keeps_label: bool | None = None
    tensor: bool = False


# the built-in datasets, whose images are known; an image folder is looked at (its first training image)
KNOWN_IMAGES = {
    "cifar10": ImageInfo(32, 3, True),
    "cifar100": ImageInfo(32, 3, True),
    "imagenet100": ImageInfo(256, 3, True),  # ILSVRC photographs: about 400 x 350 px, 256 the usual floor
    "digits": ImageInfo(8, 1, False),
    "fashion-mnist": ImageInfo(28, 1, True),  # a mirrored shirt is a shirt
}


def _is_gray(im) -> bool:
    """Whether an image is grayscale: a grayscale mode, or colour channels that are equal at every pixel (a
    scan or a glyph saved as RGB, as many real datasets are stored)."""
    from PIL import ImageChops

    if im.mode in GRAY_MODES:
        return True
    r, g, b = im.convert("RGB").split()
    return ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(g, b).getbbox() is None


GRAY_SAMPLE = 8  # images an image folder's `auto` looks at: the first of each of the first 8 classes


def image_info(cfg: DataConfig) -> ImageInfo:
    """The images of `cfg`'s dataset (see ImageInfo); an image folder's from its first training images: their
    size from the first readable one, grayscale when every one looked at is (`_is_gray`: by its pixels, not
    its file mode)."""
    if cfg.name == "synthetic":
        return ImageInfo(cfg.image_size, 3, False, tensor=True)
    if cfg.name in KNOWN_IMAGES:
        return KNOWN_IMAGES[cfg.name]
    train = Path(cfg.root).expanduser() / "train"
    candidates = _first_images(train) if train.is_dir() else []
    if not candidates:
        return ImageInfo(cfg.image_size, 3)
    from PIL import Image

    for first in candidates:  # the first readable one (the loader warns about the others when it meets them)
        try:
            with Image.open(first) as im:
                size, gray = min(im.size), _is_gray(im)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
        for path in _class_samples(train, GRAY_SAMPLE) if gray else []:  # one colour image makes it colour
            try:
                with Image.open(path) as im:
                    gray = _is_gray(im)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                continue
            if not gray:
                break
        return ImageInfo(size, 1 if gray else 3)
    raise DataError(
        f"{printable(candidates[0], newlines=False)} and the {len(candidates) - 1} images after it cannot be read; "
        "the image folder looks damaged: check it."
    )


def native_channels(cfg: DataConfig) -> int:
    """Channels the dataset's images arrive with (ImageFolder's loader gives RGB; the in-memory grayscale
    sets give 1)."""
    return 1 if cfg.name in ("digits", "fashion-mnist") else 3


def normalization(cfg: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel the network reads."""
    if cfg.name in ("cifar10", "cifar100"):
        mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    elif cfg.name == "digits":
        mean, std = (0.305,) * 3, (0.319,) * 3  # of the digits upscaled to 16 px
    elif cfg.name == "fashion-mnist":
        mean, std = (0.286,) * 3, (0.353,) * 3  # of the 60,000 training images
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if image_channels(cfg) == 1:
        return (sum(mean) / 3,), (sum(std) / 3,)
    return mean, std


def to_size_ops(cfg: DataConfig) -> list:
    """From the dataset's image to a uint8 image of `data.channels` channels: channel conversion, and for
    image files of any size a resize (and centre crop) to `data.image_size`."""
    T = _tv().transforms.v2
    s = cfg.image_size
    ops: list = [T.ToImage()]
    have, want = native_channels(cfg), image_channels(cfg)
    if want == 1 and have == 3:
        ops.append(T.Grayscale(1))
    elif want == 3 and have == 1:
        ops.append(T.RGB())
    if cfg.name in ("cifar10", "cifar100"):
        if s != 32:
            ops.append(T.Resize(s, antialias=True))
    elif cfg.name in ("imagenet100", "imagefolder"):
        ops += [T.Resize(int(s * 256 / 224), antialias=True), T.CenterCrop(s)]
    return ops


def to_float_ops(cfg: DataConfig) -> list:
    T = _tv().transforms.v2
    mean, std = normalization(cfg)
    return [T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]


def eval_transform(cfg: DataConfig):
    """The transform of evaluation (and of training without augmentation): to size, to float, normalise.

    The synthetic task is generated as normalised float tensors: None, except for a channel conversion."""
    T = _tv().transforms.v2
    if cfg.name == "synthetic":
        return None if image_channels(cfg) == 3 else T.Grayscale(1)
    return T.Compose(to_size_ops(cfg) + to_float_ops(cfg))


CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "imagenet100": 100, "digits": 10, "fashion-mnist": 10}


def num_classes(cfg: DataConfig) -> int | None:
    """The number of classes of `cfg`'s dataset without loading it (None: an image folder not there)."""
    if cfg.name == "synthetic":
        return cfg.synthetic_classes
    if cfg.name in CLASS_COUNTS:
        return CLASS_COUNTS[cfg.name]
    train = Path(cfg.root).expanduser() / "train"
    return sum(1 for c in train.iterdir() if c.is_dir()) if train.is_dir() else None


def _missing(what: str, where: Path, how: str) -> DataError:
    return DataError(f"{what} was not found in {where}; {how}")


# ---------------------------------------------------------------------------------------------
# the splits: train, validation (held out of the training set), test


class Transformed(Dataset):
    """`indices` of `base` (a dataset without a transform of its own) through `transform`."""

    def __init__(self, base: Dataset, indices: list[int], transform: Callable | None):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, y = self.base[self.indices[i]]
        return (self.transform(x) if self.transform is not None else x), y


@dataclass
class Splits:
    """A dataset's three splits, each with its transform.

    train: what the weights (and the search's α) learn from; `data.subset` of the training set, without
    the validation images. val: `data.holdout` of the training set, held out: every per-epoch figure and
    every selection (a retrain's best epoch, the FocusFormer specialization) is made on it; None when
    `data.holdout` is 0. test: the dataset's own test split (cifar's and Fashion-MNIST's test set, the
    `val/` folder of an image tree, a fifth of digits): only reported, never selected on.
    notes: what the loading chose and the user should know (where the files were found)."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    num_classes: int
    notes: list[str]

    @property
    def selection(self) -> Dataset:
        """The split per-epoch figures are measured on: the validation split, or the test split without one."""
        return self.val if self.val is not None else self.test

    def describe(self) -> str:
        val = (
            f"{len(self.val):,} validation (held out of the training set)" if self.val is not None else "no validation"
        )
        return f"data: {len(self.train):,} train, {val}, {len(self.test):,} test images"


def dataset_targets(ds: Dataset) -> list[int]:
    """Class index of every item, without loading images (torchvision and in-memory sets keep them)."""
    targets = getattr(ds, "targets", None)
    if targets is None:
        return [int(ds[i][1]) for i in range(len(ds))]
    return [int(t) for t in (targets.tolist() if hasattr(targets, "tolist") else targets)]


def stratified_split(targets: list[int], n: int, seed: int) -> tuple[list[int], list[int]]:
    """(n indices drawn class by class in proportion, the others), both sorted; drawn from `seed`.

    Each item gets the key (its place among its class in a random order + 0.5) / class size; the n smallest
    keys are taken, so every class gives its share to within one image."""
    total = len(targets)
    n = max(0, min(n, total))
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(mix_seed(seed, 4242))).tolist()
    size: dict[int, int] = {}
    for t in targets:
        size[t] = size.get(t, 0) + 1
    seen: dict[int, int] = {}
    key = [0.0] * total
    for i in perm:
        t = targets[i]
        key[i] = (seen.get(t, 0) + 0.5) / size[t]
        seen[t] = seen.get(t, 0) + 1
    rank = {i: r for r, i in enumerate(perm)}
    order = sorted(range(total), key=lambda i: (key[i], rank[i]))
    return sorted(order[:n]), sorted(order[n:])


def holdout_count(holdout: float, n: int) -> int:
    """`data.holdout` as a number of images: a fraction of the training set (< 1) or a count (>= 1)."""
    return round(holdout * n) if holdout < 1 else int(holdout)


def build_datasets(cfg: DataConfig, train_transform: Callable | None = None, eval_tf: Callable | None = None) -> Splits:
    """The train / validation / test splits of `cfg` (see Splits); raises DataError with where it looked
    and how to fix it.

    Without `train_transform` the training images get the evaluation transform (no augmentation); the
    phases pass theirs (dasvit.augment.train_transform). The validation images are held out of the
    training set class by class (`data.holdout`, drawn from `data.seed`), then `data.subset` training
    images are drawn from the rest the same way."""
    vt = eval_tf or eval_transform(cfg)
    tt = train_transform or vt
    train, test, classes, notes = _load(cfg)
    targets = dataset_targets(train)
    n_val = holdout_count(cfg.holdout, len(targets))
    if n_val >= len(targets):
        raise DataError(
            f"data.holdout ({cfg.holdout:g}) asks for {n_val:,} of the {len(targets):,} training images; "
            "leave some to train on."
        )
    val_idx, rest = stratified_split(targets, n_val, cfg.seed)
    if cfg.subset and cfg.subset < len(rest):
        picked, _ = stratified_split([targets[i] for i in rest], cfg.subset, mix_seed(cfg.seed, 1))
        rest = [rest[k] for k in picked]
    val = Transformed(train, val_idx, vt) if val_idx else None
    return Splits(Transformed(train, rest, tt), val, Transformed(test, list(range(len(test))), vt), classes, notes)


def _load(cfg: DataConfig) -> tuple[Dataset, Dataset, int, list[str]]:
    """The dataset's (training set, test set, classes, notes), both without transforms."""
    root = Path(cfg.root).expanduser()
    if cfg.name == "synthetic":
        train = SyntheticImages(cfg.synthetic_train, cfg.synthetic_classes, cfg.image_size, cfg.seed, "train")
        test = SyntheticImages(cfg.synthetic_val, cfg.synthetic_classes, cfg.image_size, cfg.seed, "test")
        return train, test, cfg.synthetic_classes, []
    if cfg.name == "digits":
        return DigitsImages(cfg.image_size, cfg.seed, "train"), DigitsImages(cfg.image_size, cfg.seed, "test"), 10, []
    if cfg.name == "fashion-mnist":
        return _fashion(cfg, root)
    if cfg.name in ("cifar10", "cifar100"):
        cls = _tv().datasets.CIFAR10 if cfg.name == "cifar10" else _tv().datasets.CIFAR100
        label = "CIFAR-10" if cfg.name == "cifar10" else "CIFAR-100"
        try:
            train = cls(str(root), train=True, download=cfg.download)
            test = cls(str(root), train=False, download=cfg.download)
        except (RuntimeError, OSError) as e:  # offline download or missing files
            raise _missing(
                label,
                root,
                f"download it with data.download=true on a machine with internet (torchvision puts it there), "
                f"or point data.root at a folder holding it ({type(e).__name__}: {str(e).splitlines()[0][:120]}).",
            ) from None
        return train, test, CLASS_COUNTS[cfg.name], []
    ImageFolder = _image_folder_class()  # no loops through directory links, unreadable images skipped
    split_dirs = {"train": root / "train", "val": root / "val"}
    for split, d in split_dirs.items():
        if not d.is_dir():
            how = (
                "put the ILSVRC-2012 train/ and val/ class folders (n01440764/...) there, or set data.root."
                if cfg.name == "imagenet100"
                else "it needs root/train/<class>/<image> and root/val/<class>/<image>; set data.root."
            )
            raise _missing(f"the {split} split of {cfg.name}", d, how)
    if cfg.name == "imagenet100":
        wanted = imagenet100_classes()

        class ImageNet100(ImageFolder):  # type: ignore[misc, valid-type]
            def find_classes(self, directory):
                missing = [c for c in wanted if not (Path(directory) / c).is_dir()]
                if missing:
                    raise DataError(
                        f"{directory} lacks {len(missing)} of the 100 ImageNet-100 classes (first: {missing[0]}); "
                        "it must hold the ILSVRC-2012 class folders."
                    )
                return list(wanted), {c: i for i, c in enumerate(wanted)}

        train, test = ImageNet100(str(split_dirs["train"])), ImageNet100(str(split_dirs["val"]))
        return train, test, 100, _loop_notes(train, test)
    try:
        train, test = ImageFolder(str(split_dirs["train"])), ImageFolder(str(split_dirs["val"]))
    except FileNotFoundError as e:
        raise DataError(f"{root}: {e}") from None
    if train.classes != test.classes:
        raise DataError(f"{root}: train/ and val/ must hold the same class folders.")
    return train, test, len(train.classes), _loop_notes(train, test)


def _loop_notes(*splits) -> list[str]:
    """A note for each split whose walk skipped directory links into a loop."""
    return [
        f"{printable(ds.root, newlines=False)}: skipped {ds.skipped_links} directory link(s) leading back into "
        "folders already read (a loop); each image is read once"
        for ds in splits
        if ds.skipped_links
    ]


def _fashion(cfg: DataConfig, root: Path) -> tuple[Dataset, Dataset, int, list[str]]:
    """Fashion-MNIST's IDX files from `data.root` (the files themselves, or torchvision's
    FashionMNIST/raw/ below it), else from Debian's package, else downloaded by torchvision."""
    notes = []
    folder = fashion_folder(root)
    if folder is None and fashion_folder(DEBIAN_FASHION_MNIST) is not None:
        folder = DEBIAN_FASHION_MNIST
        notes.append(f"Fashion-MNIST: not in data.root ({root}); reading Debian's copy in {folder}")
    if folder is None and cfg.download:
        try:
            _tv().datasets.FashionMNIST(str(root), train=True, download=True)
            _tv().datasets.FashionMNIST(str(root), train=False, download=True)
        except (RuntimeError, OSError):
            pass  # offline: the sentence below says both ways to get it
        folder = fashion_folder(root)
        if folder is not None:
            notes.append(f"Fashion-MNIST: downloaded into {folder}")
    if folder is None:
        raise _missing(
            "Fashion-MNIST (train-images-idx3-ubyte.gz and its three companions)",
            root,
            "download it with data.download=true on a machine with internet, or install Debian's "
            f"dataset-fashion-mnist package (apt-get install dataset-fashion-mnist: {DEBIAN_FASHION_MNIST}) "
            "or set data.root to a folder holding the four IDX files.",
        )
    train = FashionMNISTImages(folder, "train", cfg.image_size)
    return train, FashionMNISTImages(folder, "test", cfg.image_size), 10, notes


def split_halves(n: int, seed: int) -> tuple[list[int], list[int]]:
    """DARTS: halve the training set; the first half trains weights, the second trains α."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, 1234))).tolist()
    half = n // 2
    return sorted(perm[:half]), sorted(perm[half:])


@dataclass
class EpochLoaders:
    """Deterministic loaders: the order of epoch e depends only on (seed, e), so a resumed run sees
    the same batches as one never interrupted. With several ranks each takes every world-th sample."""

    dataset: Dataset
    batch_size: int
    workers: int
    seed: int
    rank: int = 0
    world: int = 1
    shuffle: bool = True
    drop_last: bool = True

    def __len__(self) -> int:
        n = len(self.dataset) // self.world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> DataLoader:
        n = len(self.dataset)
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        per_rank = n // self.world
        order = order[self.rank : per_rank * self.world : self.world]
        return DataLoader(
            Subset(self.dataset, order),
            batch_size=self.batch_size,
            shuffle=False,
            drop_last=self.drop_last,
            num_workers=self.workers,
            generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch, 7)),
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )
