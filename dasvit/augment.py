"""Retrain-time augmentation, built from `config.retrain` with torchvision.transforms.v2.

Per image: the dataset's standard training transform (`dasvit.data.image_transforms`) with RandAugment
inserted before the conversion to float, and random erasing after the normalisation. Per batch: Mixup
and CutMix (one of the two, chosen at random, when both are on); they make the targets soft.
Each is switched off by its config value: `randaugment: false`, `random_erasing: 0`, `mixup: 0`,
`cutmix: 0`. The `synthetic` dataset is already a float tensor, not an image: RandAugment (whose ops
are defined on 8-bit pixels) does not apply to it, the others do.
"""

from __future__ import annotations

from typing import Callable

import torch

from .config import Config
from .data import image_transforms

RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 9  # DeiT's rand-m9


def _v2():
    import torchvision.transforms.v2 as T

    return T


def train_transform(cfg: Config) -> tuple[Callable | None, list[str]]:
    """The per-image training transform, and notes on what was left out and why."""
    T = _v2()
    r = cfg.retrain
    notes: list[str] = []
    if cfg.data.name == "synthetic":
        if r.randaugment:
            notes.append("RandAugment does not apply to the synthetic dataset (float tensors, not images); skipped.")
        ops = []
    else:
        ops = list(image_transforms(cfg.data, train=True).transforms)
        if r.randaugment:
            at = next(i for i, t in enumerate(ops) if isinstance(t, T.ToDtype))
            ops.insert(at, T.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE))
    if r.random_erasing > 0:
        ops.append(T.RandomErasing(p=r.random_erasing, value=0))
    if not ops:
        return None, notes
    return T.Compose(ops), notes


def batch_mixer(cfg: Config, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """Mixup / CutMix on a batch: (images, labels) → (mixed images, soft targets [B, classes]); None when off."""
    T = _v2()
    r = cfg.retrain
    mixers = []
    if r.mixup > 0:
        mixers.append(T.MixUp(alpha=r.mixup, num_classes=num_classes))
    if r.cutmix > 0:
        mixers.append(T.CutMix(alpha=r.cutmix, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else T.RandomChoice(mixers)
