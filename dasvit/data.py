"""Datasets, transforms, the DARTS split of the training set, and deterministic epoch loaders.

`cifar10` / `cifar100` come from torchvision (downloaded into `data.root`), `imagenet100` is an
ImageFolder over `root/train` and `root/val` restricted to the 100 CMC classes, `imagefolder` is any
`root/train/<class>/...`, `root/val/<class>/...` tree, `digits` is scikit-learn's 8x8 handwritten
digits (real scans that need no download), and `synthetic` is generated from the seed: a learnable task
(each class is a smooth pattern plus noise), so a demo shows accuracy rising.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


class InMemoryImages(Dataset):
    """Images and labels held in memory (`images`, `targets`, `classes`, `transform` set by the subclass)."""

    images: Any
    targets: Any
    classes: list[str]
    transform: Callable | None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])


class SyntheticImages(InMemoryImages):
    """A generated classification task that a small ViT can learn.

    Each class owns a smooth random pattern (a sum of a few 2-D sinusoids with class-specific
    frequencies, phases and colours). A sample is its class pattern, randomly shifted and scaled, plus
    Gaussian noise. Everything derives from `seed`, so the same config always gives the same data.
    """

    def __init__(self, n: int, classes: int, image_size: int, seed: int, split: str, transform: Callable | None = None):
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


class DigitsImages(InMemoryImages):
    """scikit-learn's handwritten digits (1,797 grayscale 8x8 scans, 10 classes), upscaled to `image_size`.

    Shipped with scikit-learn, so it needs no download: the small real dataset of the project. The split
    is stratified and drawn from `seed` (a fifth of each class for validation); images are upscaled once
    (bilinear) and kept as 8-bit single-channel images, so the usual image transforms apply.
    """

    VAL_FRACTION = 0.2

    def __init__(self, image_size: int, seed: int, split: str, transform: Callable | None = None):
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError(
                "the digits dataset comes with scikit-learn, which is not installed; "
                "pip install scikit-learn (or install dasvit with its dependencies)."
            ) from None
        from torchvision import tv_tensors

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
        labels = torch.tensor(digits.target, dtype=torch.long)
        g = torch.Generator().manual_seed(10_007 * seed + 3)
        chosen = []
        for c in range(10):
            idx = (labels == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n_val = round(self.VAL_FRACTION * len(idx))
            chosen.append(idx[:n_val] if split == "val" else idx[n_val:])
        keep = torch.cat(chosen).sort().values
        x = images[keep]
        if image_size != 8:
            x = torch.nn.functional.interpolate(x, size=image_size, mode="bilinear", align_corners=False)
        self.images = [tv_tensors.Image(im) for im in (x.clamp(0, 1) * 255).round().to(torch.uint8)]
        self.targets = labels[keep]
        self.classes = [str(c) for c in range(10)]
        self.transform = transform


def _tv():
    import torchvision  # imported lazily: torchvision is slow to import
    import torchvision.datasets
    import torchvision.transforms.v2

    return torchvision


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _first_image(directory: Path) -> Path | None:
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for f in sorted(class_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                return f
    return None


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def image_channels(cfg: DataConfig) -> int:
    """Channels the network reads: `data.channels`, or with "auto" the dataset's own (digits 1; an
    imagefolder tree 1 if its first training image is grayscale, else 3; the others 3)."""
    if cfg.channels != "auto":
        return int(cfg.channels)
    if cfg.name == "digits":
        return 1
    if cfg.name == "imagefolder":
        train = Path(cfg.root).expanduser() / "train"
        first = _first_image(train) if train.is_dir() else None
        if first is not None:
            from PIL import Image

            with Image.open(first) as im:
                return 1 if im.mode in GRAY_MODES else 3
    return 3


def native_channels(cfg: DataConfig) -> int:
    """Channels the dataset's images arrive with (ImageFolder's loader gives RGB; digits are grayscale)."""
    return 1 if cfg.name == "digits" else 3


def normalization(cfg: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel the network reads."""
    if cfg.name in ("cifar10", "cifar100"):
        mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    elif cfg.name == "digits":
        mean, std = (0.305,) * 3, (0.319,) * 3  # of the digits upscaled to 16 px
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


CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "imagenet100": 100, "digits": 10}


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


def build_datasets(
    cfg: DataConfig, seed: int = 0, train_transform: Callable | None = None, val_transform: Callable | None = None
) -> tuple[Dataset, Dataset, int]:
    """The (train, val, num_classes) of `cfg.name`; raises DataError with where it looked and how to fix it.

    Without `train_transform` the training images get the evaluation transform (no augmentation); the
    phases pass theirs (dasvit.augment.train_transform)."""
    root = Path(cfg.root).expanduser()
    vt = val_transform or eval_transform(cfg)
    tt = train_transform or vt
    if cfg.name == "synthetic":
        train = SyntheticImages(cfg.synthetic_train, cfg.synthetic_classes, cfg.image_size, seed, "train", tt)
        val = SyntheticImages(cfg.synthetic_val, cfg.synthetic_classes, cfg.image_size, seed, "val", vt)
        return train, val, cfg.synthetic_classes
    if cfg.name == "digits":
        train = DigitsImages(cfg.image_size, seed, "train", tt)
        return train, DigitsImages(cfg.image_size, seed, "val", vt), 10
    if cfg.name in ("cifar10", "cifar100"):
        cls = _tv().datasets.CIFAR10 if cfg.name == "cifar10" else _tv().datasets.CIFAR100
        label = "CIFAR-10" if cfg.name == "cifar10" else "CIFAR-100"
        try:
            train = cls(str(root), train=True, transform=tt, download=cfg.download)
            val = cls(str(root), train=False, transform=vt, download=cfg.download)
        except (RuntimeError, OSError) as e:  # offline download or missing files
            raise _missing(
                label,
                root,
                f"download it with data.download=true on a machine with internet (torchvision puts it there), "
                f"or point data.root at a folder holding it ({type(e).__name__}: {str(e).splitlines()[0][:120]}).",
            ) from None
        return train, val, CLASS_COUNTS[cfg.name]
    ImageFolder = _tv().datasets.ImageFolder
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
