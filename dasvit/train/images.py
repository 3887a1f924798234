"""What a dataset's images are (`ImageInfo`: size, channels, whether a mirror keeps the label), how an image
folder is read (torchvision's ImageFolder, walked without link loops, an unreadable file standing in for
another of its class), and the evaluation transform from a stored image to a normalised tensor."""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import DataError
from ..run.config import DataConfig
from ..run.jsonio import printable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tv():
    """torchvision, imported on first use (it is slow to import)."""
    import torchvision
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
def image_folder_class():
    """torchvision's ImageFolder, walked without loops (`_walk_images`) and reading an unreadable image (a
    zero-byte file, a truncated or corrupt one) as another image of its class, with a warning naming it.

    Skip, not stop: real folders hold a few broken files, met only when an epoch reaches them (hours in,
    on a large set) and costly to find beforehand (every image opened); one image standing in for another
    changes a figure by less than one image in the split, and the warning says which file to fix. Many in a
    row (UNREADABLE_TRIES) is a damaged folder: one sentence."""
    from PIL import Image

    class SafeImageFolder(tv().datasets.ImageFolder):
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
    T = tv().transforms.v2
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
    T = tv().transforms.v2
    mean, std = normalization(cfg)
    return [T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]


def eval_transform(cfg: DataConfig):
    """The transform of evaluation (and of training without augmentation): to size, to float, normalise.

    The synthetic task is generated as normalised float tensors: None, except for a channel conversion."""
    T = tv().transforms.v2
    if cfg.name == "synthetic":
        return None if image_channels(cfg) == 3 else T.Grayscale(1)
    return T.Compose(to_size_ops(cfg) + to_float_ops(cfg))
