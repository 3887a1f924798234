"""Datasets, transforms, the DARTS split of the training set, and deterministic epoch loaders.

`cifar10` / `cifar100` come from torchvision (downloaded into `data.root`), `imagenet100` is an
ImageFolder over `root/train` and `root/val` restricted to the 100 CMC classes, `imagefolder` is any
`root/train/<class>/...`, `root/val/<class>/...` tree, and `synthetic` is generated from the seed: a
learnable task (each class is a smooth pattern plus noise), so a demo shows accuracy rising.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .config import DataConfig
from .errors import DataError
from .training import mix_seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASS_LIST = Path(__file__).resolve().parent / "imagenet100_classes.txt"


def imagenet100_classes() -> list[str]:
    return [line.strip() for line in CLASS_LIST.read_text().splitlines() if line.strip()]


class SyntheticImages(Dataset):
    """A generated classification task that a small ViT can learn.

    Each class owns a smooth random pattern (a sum of a few 2-D sinusoids with class-specific
    frequencies, phases and colours). A sample is its class pattern, randomly shifted and scaled, plus
    Gaussian noise. Everything derives from `seed`, so the same config always gives the same data.
    """

    def __init__(self, n: int, classes: int, image_size: int, seed: int, split: str,
                 transform: Callable | None = None):
        g = torch.Generator().manual_seed(10_007 * seed + 17)
        s = image_size
        yy, xx = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
        protos = torch.zeros(classes, 3, s, s)
        for c in range(classes):
            for _ in range(3):
                fy, fx = torch.randint(1, 4, (2,), generator=g).float()
                phase = torch.rand(2, generator=g) * 6.283
                colour = torch.randn(3, 1, 1, generator=g)
                wave = torch.sin(6.283 * fy * yy + phase[0]) * torch.cos(6.283 * fx * xx + phase[1])
                protos[c] += colour * wave
        protos /= protos.flatten(1).std(dim=1).view(-1, 1, 1, 1)
        gs = torch.Generator().manual_seed(10_007 * seed + (1 if split == "train" else 2))
        self.targets = torch.randint(0, classes, (n,), generator=gs)
        shift = torch.randint(-s // 8, s // 8 + 1, (n, 2), generator=gs)
        amp = 0.6 + 0.8 * torch.rand(n, generator=gs)
        images = torch.empty(n, 3, s, s)
        for i in range(n):
            img = torch.roll(protos[self.targets[i]], shifts=(int(shift[i, 0]), int(shift[i, 1])), dims=(1, 2))
            images[i] = amp[i] * img
        images += 0.7 * torch.randn(images.shape, generator=gs)
        self.images = images
        self.classes = [f"class_{c}" for c in range(classes)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])


def _tv():
    import torchvision  # imported lazily: torchvision is slow to import
    import torchvision.datasets
    import torchvision.transforms.v2

    return torchvision


def image_transforms(cfg: DataConfig, train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Standard transforms for image files: random resized crop + flip for training, resize + centre crop for eval."""
    T = _tv().transforms.v2
    s = cfg.image_size
    if cfg.name in ("cifar10", "cifar100"):
        mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
        ops = [T.ToImage()]
        if s != 32:
            ops.append(T.Resize(s, antialias=True))
        if train:
            ops += [T.RandomCrop(s, padding=s // 8), T.RandomHorizontalFlip()]
    else:
        ops = [T.ToImage()]
        if train:
            ops += [T.RandomResizedCrop(s, antialias=True), T.RandomHorizontalFlip()]
        else:
            ops += [T.Resize(int(s * 256 / 224), antialias=True), T.CenterCrop(s)]
    ops += [T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]
    return T.Compose(ops)


CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "imagenet100": 100}


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


def build_datasets(cfg: DataConfig, seed: int = 0,
                   train_transform: Callable | None = None,
                   val_transform: Callable | None = None) -> tuple[Dataset, Dataset, int]:
    """The (train, val, num_classes) of `cfg.name`; raises DataError with where it looked and how to fix it."""
    root = Path(cfg.root).expanduser()
    if cfg.name == "synthetic":
        train = SyntheticImages(cfg.synthetic_train, cfg.synthetic_classes, cfg.image_size, seed, "train", train_transform)
        val = SyntheticImages(cfg.synthetic_val, cfg.synthetic_classes, cfg.image_size, seed, "val", val_transform)
        return train, val, cfg.synthetic_classes
    tt = train_transform or image_transforms(cfg, True)
    vt = val_transform or image_transforms(cfg, False)
    if cfg.name in ("cifar10", "cifar100"):
        cls = _tv().datasets.CIFAR10 if cfg.name == "cifar10" else _tv().datasets.CIFAR100
        label = "CIFAR-10" if cfg.name == "cifar10" else "CIFAR-100"
        try:
            train = cls(str(root), train=True, transform=tt, download=cfg.download)
            val = cls(str(root), train=False, transform=vt, download=cfg.download)
        except (RuntimeError, OSError) as e:  # offline download or missing files
            raise _missing(
                label, root,
                f"download it with data.download=true on a machine with internet (torchvision puts it there), "
                f"or point data.root at a folder holding it ({type(e).__name__}: {str(e).splitlines()[0][:120]}).",
            ) from None
        return train, val, CLASS_COUNTS[cfg.name]
    ImageFolder = _tv().datasets.ImageFolder
    split_dirs = {"train": root / "train", "val": root / "val"}
    for split, d in split_dirs.items():
        if not d.is_dir():
            how = ("put the ILSVRC-2012 train/ and val/ class folders (n01440764/...) there, or set data.root."
                   if cfg.name == "imagenet100"
                   else "it needs root/train/<class>/<image> and root/val/<class>/<image>; set data.root.")
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

        train, val = ImageNet100(str(split_dirs["train"]), tt), ImageNet100(str(split_dirs["val"]), vt)
        return train, val, 100
    try:
        train, val = ImageFolder(str(split_dirs["train"]), tt), ImageFolder(str(split_dirs["val"]), vt)
    except FileNotFoundError as e:
        raise DataError(f"{root}: {e}") from None
    if train.classes != val.classes:
        raise DataError(f"{root}: train/ and val/ must hold the same class folders.")
    return train, val, len(train.classes)


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
        order = order[self.rank: per_rank * self.world: self.world]
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
