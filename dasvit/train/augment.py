"""Training-image augmentation as a policy per phase and per dataset (`search.augment`, `retrain.augment`).

`resolve_policy` turns a phase's `AugmentConfig` into concrete choices for the dataset ("auto" values
resolved: see `dasvit.run.config.AugmentConfig`); `train_transform` builds the per-image transform with
torchvision.transforms.v2, in this order: to size and channels, crop, flip, RandAugment (on 8-bit
pixels), to float and normalise, random erasing. `batch_mixer` builds Mixup / CutMix for a batch (one of
the two, chosen at random, when both are on); they make the targets soft. The `synthetic` dataset is
already a normalised float tensor, not an image: RandAugment (whose ops are defined on 8-bit pixels)
does not apply to it, the others do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from ..run.config import AugmentConfig, Config
from .images import eval_transform, image_channels, image_info, to_float_ops, to_size_ops

Phase = Literal["search", "retrain"]
RANDAUGMENT_OPS = 2  # DeiT's rand-m9-n2


@dataclass(frozen=True)
class Policy:
    """One phase's augmentation with every "auto" resolved for one dataset."""

    flip: bool
    crop: Literal["pad", "resized", "none"]
    padding: int  # pixels on each side (pad)
    scale: float  # smallest crop area fraction (resized)
    randaugment: int | None  # magnitude, or None when off
    random_erasing: float
    mixup: float
    cutmix: float

    def describe(self) -> str:
        parts = [
            {
                "pad": f"pad-and-crop {self.padding} px",
                "resized": f"random-resized crop {self.scale:g}-1",
                "none": "no crop",
            }[self.crop],
            "horizontal flip" if self.flip else "no flip",
        ]
        if self.randaugment is not None:
            parts.append(f"RandAugment m{self.randaugment}")
        if self.random_erasing:
            parts.append(f"random erasing {self.random_erasing:g}")
        if self.mixup:
            parts.append(f"Mixup {self.mixup:g}")
        if self.cutmix:
            parts.append(f"CutMix {self.cutmix:g}")
        return ", ".join(parts)


# photographs at least this size (their stored side, px) get the random-resized crop in the retrain: an 8 %
# crop of a 256 px photograph is 72 px and still shows the object; of a 28 px image it is 8 px
RESIZED_CROP_MIN_SIZE = 64


def resolve_policy(aug: AugmentConfig, cfg: Config, phase: Phase) -> Policy:
    """The concrete augmentation of `phase` on `cfg`'s data: every "auto" decided from what the images
    are (dasvit.train.images.ImageInfo: their stored size and channels, whether a mirror keeps the label), never
    from the dataset's name, so a folder of a user's images gets what a built-in of the same kind gets.

    - flip: horizontal where a mirror image keeps the label; for an image folder, which cannot say, colour
      images are taken for photographs (flipped) and grayscale ones for scans and glyphs (not flipped).
    - crop: the retrain pads and crops small images and takes the random-resized crop of photographs of at
      least RESIZED_CROP_MIN_SIZE px; the search does not crop: a ViT's patch grid is not shift-equivariant
      and the supernet cannot learn that invariance within a stage's few epochs (digits: 0.13 validation
      accuracy after 3 epochs of stage 1 with a 2 px shift at patch 4, 0.25 without; a 1 px shift at 8 px
      also kept the tiny search below 0.25; Fashion-MNIST in RESULTS.md). The generated task (float
      tensors, already shifted at random) is neither cropped nor flipped."""
    info = image_info(cfg.data)
    mirror = info.mirror_keeps_label if info.mirror_keeps_label is not None else info.channels == 3
    flip = (mirror and not info.tensor) if aug.flip == "auto" else aug.flip == "horizontal"
    padding = round(aug.crop_padding * cfg.data.image_size)
    crop = aug.crop
    if crop == "auto":
        if info.tensor:
            crop = "none"
        elif phase == "retrain":
            crop = "resized" if info.size >= RESIZED_CROP_MIN_SIZE else "pad"
        else:
            crop = "none"
    if crop == "pad" and padding == 0:
        crop = "none"
    return Policy(
        flip=flip,
        crop=crop,
        padding=padding,
        scale=aug.crop_scale,
        randaugment=aug.randaugment_magnitude if aug.randaugment else None,
        random_erasing=aug.random_erasing,
        mixup=aug.mixup,
        cutmix=aug.cutmix,
    )


def _v2():
    import torchvision.transforms.v2 as T

    return T


def phase_augment(cfg: Config, phase: Phase) -> AugmentConfig:
    return cfg.search.augment if phase == "search" else cfg.retrain.augment


def train_transform(cfg: Config, phase: Phase = "retrain") -> tuple[Callable | None, list[str]]:
    """The per-image training transform of `phase`, and notes on what was left out and why."""
    T = _v2()
    d = cfg.data
    p = resolve_policy(phase_augment(cfg, phase), cfg, phase)
    notes: list[str] = []
    s = d.image_size
    geometric: list = []
    if p.crop == "pad":
        geometric.append(T.RandomCrop(s, padding=p.padding))
    if p.flip:
        geometric.append(T.RandomHorizontalFlip())
    if d.name == "synthetic":  # normalised float tensors: geometry and erasing only
        if p.randaugment is not None:
            notes.append("RandAugment does not apply to the synthetic dataset (float tensors, not images); skipped.")
        if p.crop == "resized":
            geometric.insert(0, T.RandomResizedCrop(s, scale=(p.scale, 1.0), antialias=True))
        base = eval_transform(d)
        ops = ([base] if base is not None else []) + geometric
    else:
        ops = to_size_ops(d)
        if p.crop == "resized":  # from the full image, not the centre crop
            ops = [o for o in ops if not isinstance(o, (T.Resize, T.CenterCrop))]
            ops.append(T.RandomResizedCrop(s, scale=(p.scale, 1.0), antialias=True))
        ops += geometric
        if p.randaugment is not None:
            ops.append(T.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=p.randaugment))
        ops += to_float_ops(d)
    if p.random_erasing > 0:
        ops.append(T.RandomErasing(p=p.random_erasing, value=0))
    if not ops:
        return None, notes
    return T.Compose(ops), notes


def batch_mixer(
    cfg: Config, num_classes: int, phase: Phase = "retrain"
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """Mixup / CutMix on a batch: (images, labels) → (mixed images, soft targets [B, classes]); None when off."""
    T = _v2()
    a = phase_augment(cfg, phase)
    mixers = []
    if a.mixup > 0:
        mixers.append(T.MixUp(alpha=a.mixup, num_classes=num_classes))
    if a.cutmix > 0:
        mixers.append(T.CutMix(alpha=a.cutmix, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else T.RandomChoice(mixers)


def describe(cfg: Config, phase: Phase) -> str:
    """One line for the progress output: what the phase's augmentation resolved to, from which images, and
    the channels the network reads."""
    p = resolve_policy(phase_augment(cfg, phase), cfg, phase)
    info = image_info(cfg.data)
    seen = (
        "generated tensors"
        if info.tensor
        else f"{info.size} px {'grayscale' if info.channels == 1 else 'colour'} images"
    )
    if info.mirror_keeps_label is None and not info.tensor:
        seen += ", taken for " + ("photographs" if info.channels == 3 else "scans or glyphs (no mirror)")
    chans = image_channels(cfg.data)
    return (
        f"{phase} augmentation on {cfg.data.name} ({seen}): {p.describe()}; {chans} channel{'s' if chans > 1 else ''}"
    )
