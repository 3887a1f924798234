"""From a `DataConfig` to the three splits (train, validation, test), their transforms and the loaders.

`cifar10` / `cifar100` come from torchvision (downloaded into `data.root`), `imagenet100` is an
ImageFolder over `root/train` and `root/val` restricted to the 100 CMC classes, `imagefolder` is any
`root/train/<class>/...`, `root/val/<class>/...` tree; `fashion-mnist`, `digits` and `synthetic` live
in memory (dasvit.train.datasets). Every dataset gives its own test split (reported only) and a validation
split held out of its training set (`data.holdout`: per-epoch figures and every selection are made on
it); `data.subset` trains on part of the training set. `EpochLoaders` gives deterministic epochs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import DataError
from ..run.config import DataConfig
from ..run.jsonio import printable
from .datasets import (
    DEBIAN_FASHION_MNIST,
    FASHION_CLASSES,
    DigitsImages,
    FashionMNISTImages,
    SyntheticImages,
    fashion_folder,
)
from .images import eval_transform, image_folder_class, tv
from .loop import mix_seed

CLASS_LIST = Path(__file__).resolve().parent / "imagenet100_classes.txt"


def imagenet100_classes() -> list[str]:
    return [line.strip() for line in CLASS_LIST.read_text().splitlines() if line.strip()]


CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "imagenet100": 100, "digits": 10, "fashion-mnist": 10}


def num_classes(cfg: DataConfig) -> int | None:
    """The number of classes of `cfg`'s dataset without loading it (None: an image folder not there)."""
    if cfg.name == "synthetic":
        return cfg.synthetic_classes
    if cfg.name in CLASS_COUNTS:
        return CLASS_COUNTS[cfg.name]
    train = Path(cfg.root).expanduser() / "train"
    return sum(1 for c in train.iterdir() if c.is_dir()) if train.is_dir() else None


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_names(cfg: DataConfig) -> list[str] | None:
    """The names of `cfg`'s classes in label order, without loading the images: the built-in datasets' own,
    an image folder's class folders (sorted, as ImageFolder numbers them); None where the data has none to
    give cheaply (CIFAR-100, the generated task, an image folder not there)."""
    if cfg.name == "fashion-mnist":
        return list(FASHION_CLASSES)
    if cfg.name == "digits":
        return [str(d) for d in range(10)]
    if cfg.name == "cifar10":
        return list(CIFAR10_CLASSES)
    if cfg.name == "imagenet100":
        return imagenet100_classes()
    train = Path(cfg.root).expanduser() / "train"
    if cfg.name == "imagefolder" and train.is_dir():
        return sorted(e.name for e in os.scandir(train) if e.is_dir())
    return None


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
    phases pass theirs (dasvit.train.augment.train_transform). The validation images are held out of the
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
        cls = tv().datasets.CIFAR10 if cfg.name == "cifar10" else tv().datasets.CIFAR100
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
    ImageFolder = image_folder_class()  # no loops through directory links, unreadable images skipped
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
            tv().datasets.FashionMNIST(str(root), train=True, download=True)
            tv().datasets.FashionMNIST(str(root), train=False, download=True)
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
