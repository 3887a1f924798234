"""Training-image augmentation as a policy per phase and per dataset (`search.augment`, `retrain.augment`).

`resolve_policy` turns a phase's `AugmentConfig` into concrete choices for the dataset ("auto" values
resolved: see `dasvit.config.AugmentConfig`); `train_transform` builds the per-image transform with
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

from .config import AugmentConfig, Config, DataConfig
from .data import eval_transform, image_channels, to_float_ops, to_size_ops

Phase = Literal["search", "retrain"]
RANDAUGMENT_OPS = 2  # DeiT's rand-m9-n2

# a mirrored photograph shows the same class; a mirrored digit or glyph is another symbol or none
FLIP_KEEPS_LABEL = {
    "cifar10": True,
    "cifar100": True,
    "imagenet100": True,
    "imagefolder": True,
    "digits": False,
    "synthetic": False,
}


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


def resolve_policy(aug: AugmentConfig, data: DataConfig, phase: Phase) -> Policy:
    """The concrete augmentation of `phase` on `data.name` (see AugmentConfig for what "auto" means)."""
    name = data.name
    flip = FLIP_KEEPS_LABEL[name] if aug.flip == "auto" else aug.flip == "horizontal"
    crop = aug.crop
    if crop == "auto":
        if name == "synthetic" or (name == "digits" and phase == "search"):
            crop = "none"  # digits: a 2 px shift is half a patch; within a stage's few epochs it halves the accuracy
        elif phase == "search" or name in ("cifar10", "cifar100", "digits"):
            crop = "pad"
        else:
            crop = "resized"
    padding = round(aug.crop_padding * data.image_size)
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
    p = resolve_policy(phase_augment(cfg, phase), d, phase)
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
    """One line for the progress output: what the phase's augmentation resolved to, and the channels."""
    p = resolve_policy(phase_augment(cfg, phase), cfg.data, phase)
    return (
        f"{phase} augmentation on {cfg.data.name}: {p.describe()}; "
        f"{image_channels(cfg.data)} channel{'s' if image_channels(cfg.data) > 1 else ''}"
    )
