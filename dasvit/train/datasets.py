"""The datasets that live in memory: the generated task, scikit-learn's digits and Fashion-MNIST.

Each is an `InMemoryImages` (images, targets, classes) whose items are 8-bit images (or, for the
generated task, normalised float tensors), so the phases' transforms apply as to any image file.
`dasvit.train.data` turns a `DataConfig` into the train / validation / test splits of these and of the
torchvision and ImageFolder datasets.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

# Debian's `dataset-fashion-mnist` package puts the four IDX files here
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_MAX_BYTES = 1 << 31  # 2 GiB: far above any IDX dataset; a header asking for more is damaged


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
    """A generated classification task that a small ViT learns, but not perfectly in a few epochs.

    There are 2 x `classes` shared components, plane waves (up to 3 cycles across the image in each
    direction, random phase and colour), and each class is a random mixture of all of them, so classes
    differ in proportions, not in parts. A sample takes its class's mixture with every weight perturbed
    (`VARY`: within-class variation), shifted circularly by a random offset anywhere in the image (where a
    pattern sits says nothing), scaled by a random amplitude, plus Gaussian noise (`NOISE`). Everything
    derives from `seed`, so the same config always gives the same data. With the demo's sizes (16 px, 10
    classes, 1,024 training images) a ViT-block retrain of 6 epochs ends below 100 % top-1 (the demo
    preset's header has the measured figures), so cells can differ.
    """

    VARY = 0.35  # within-class spread of each mixture weight (the class weights are unit normal)
    NOISE = 0.7  # pixel noise, against unit-variance images

    def __init__(self, n: int, classes: int, image_size: int, seed: int, split: str, transform: Callable | None = None):
        g = torch.Generator().manual_seed(10_007 * seed + 17)
        s = image_size
        grid = torch.arange(s, dtype=torch.float32) / s
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        k = 2 * classes
        parts = torch.empty(k, 3, s, s)
        for i in range(k):
            fy, fx = (int(f) for f in torch.randint(0, 4, (2,), generator=g))
            fx = fx or (0 if fy else 1)  # a plane wave, not a constant
            phase = float(torch.rand(1, generator=g)) * 2 * math.pi
            colour = torch.randn(3, 1, 1, generator=g)
            parts[i] = colour * torch.sin(2 * math.pi * (fy * yy + fx * xx) + phase)
        mixtures = torch.randn(classes, k, generator=g)
        gs = torch.Generator().manual_seed(10_007 * seed + (1 if split == "train" else 2))
        self.targets = torch.randint(0, classes, (n,), generator=gs)
        weights = mixtures[self.targets] + self.VARY * torch.randn(n, k, generator=gs)
        images = torch.einsum("nk,kchw->nchw", weights, parts)
        images /= images.flatten(1).std(dim=1).clamp(min=1e-6).view(-1, 1, 1, 1)
        shift = torch.randint(0, s, (n, 2), generator=gs)
        for i in range(n):
            images[i] = torch.roll(images[i], shifts=(int(shift[i, 0]), int(shift[i, 1])), dims=(1, 2))
        amp = 0.6 + 0.8 * torch.rand(n, generator=gs)
        images = amp.view(-1, 1, 1, 1) * images + self.NOISE * torch.randn(images.shape, generator=gs)
        self.images = images
        self.classes = [f"class_{c}" for c in range(classes)]
        self.transform = transform


class DigitsImages(InMemoryImages):
    """scikit-learn's handwritten digits (1,797 grayscale 8x8 scans, 10 classes), upscaled to `image_size`.

    Shipped with scikit-learn, so it needs no download: the small real dataset of the project. The test
    split is a stratified fifth of each class drawn from `seed`; images are upscaled once (bilinear) and
    kept as 8-bit single-channel images, so the usual image transforms apply.
    """

    TEST_FRACTION = 0.2

    def __init__(self, image_size: int, seed: int, split: str, transform: Callable | None = None):
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError(
                "the digits dataset comes with scikit-learn, which is not installed; "
                "pip install scikit-learn (or install dasvit with its dependencies)."
            ) from None
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
        labels = torch.tensor(digits.target, dtype=torch.long)
        g = torch.Generator().manual_seed(10_007 * seed + 3)
        chosen = []
        for c in range(10):
            idx = (labels == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n_test = round(self.TEST_FRACTION * len(idx))
            chosen.append(idx[:n_test] if split == "test" else idx[n_test:])
        keep = torch.cat(chosen).sort().values
        x = images[keep]
        if image_size != 8:
            x = torch.nn.functional.interpolate(x, size=image_size, mode="bilinear", align_corners=False)
        self.images = _as_images((x.clamp(0, 1) * 255).round().to(torch.uint8))
        self.targets = labels[keep]
        self.classes = [str(c) for c in range(10)]
        self.transform = transform


def _as_images(x: torch.Tensor) -> list:
    from torchvision import tv_tensors

    return [tv_tensors.Image(im) for im in x]


# ---------------------------------------------------------------------------------------------
# IDX files (MNIST's format): Fashion-MNIST


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzip-compressed) as an array; a damaged file is a DataError naming it. Only
    what its header promises is read (a small gzip may hold gigabytes of zeros)."""

    def damaged(why: str) -> DataError:
        return DataError(f"{path} is damaged: {why}; fetch it again.")

    try:
        with open(path, "rb") as f, gzip.open(f) if path.suffix == ".gz" else f as data:
            head = data.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES or not 1 <= head[3] <= 4:
                raise DataError(f"{path} is not an IDX file (its first four bytes are {head.hex()}); fetch it again.")
            ndim, dtype = head[3], np.dtype(IDX_DTYPES[head[2]])
            shape = data.read(4 * ndim)
            if len(shape) < 4 * ndim:
                raise damaged("its header is cut short")
            dims = [int.from_bytes(shape[4 * k : 4 * k + 4], "big") for k in range(ndim)]
            size = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if size > IDX_MAX_BYTES:
                raise damaged(f"its header promises {dims} values, more than {IDX_MAX_BYTES >> 20} MiB")
            raw = data.read(size + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); fetch the file again.") from None
    if len(raw) != size:
        raise damaged(
            f"its header promises {dims} values of {dtype.itemsize} byte(s), the file holds {'more' if len(raw) > size else len(raw)} bytes after it"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def fashion_folder(root: Path) -> Path | None:
    """The folder holding the four Fashion-MNIST IDX files (plain or .gz): `root` itself, or
    `root/FashionMNIST/raw` (where torchvision downloads them); None when neither has all four."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        if all(_idx_file(folder, n) for pair in FASHION_FILES.values() for n in pair):
            return folder
    return None


class FashionMNISTImages(InMemoryImages):
    """Fashion-MNIST (Zalando: 70,000 28x28 grayscale photographs of clothing, 10 classes; 60,000 train,
    10,000 test), read from its IDX files in `folder` without writing anything there, so a read-only
    folder (Debian's) serves as it is. Images are resized to `image_size` once if it is not 28."""

    def __init__(self, folder: Path, split: str, image_size: int = 28, transform: Callable | None = None):
        images_name, labels_name = FASHION_FILES["test" if split == "test" else "train"]
        images = read_idx(_idx_file(folder, images_name))
        labels = read_idx(_idx_file(folder, labels_name))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{folder}: {images_name} holds {images.shape} and {labels_name} {labels.shape}; "
                "they must be N images and N labels."
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_CLASSES)):
            raise DataError(f"{folder}: {labels_name} holds labels outside 0-9; fetch it again.")
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1)  # [N, 1, 28, 28]
        if image_size != x.shape[-1]:
            x = torch.nn.functional.interpolate(x.float(), size=image_size, mode="bilinear", align_corners=False)
            x = x.round().clamp(0, 255).to(torch.uint8)
        self.images = _as_images(x)
        self.targets = torch.from_numpy(labels.astype(np.int64))
        self.classes = list(FASHION_CLASSES)
        self.transform = transform
