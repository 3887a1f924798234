"""Augmentation as a policy per phase and dataset, image channels, and the built-in digits dataset."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import REPO
from dasvit.config import load_config, load_run_config
from dasvit.errors import ConfigError, DataError


def _types(transform) -> list[str]:
    return [type(t).__name__ for t in transform.transforms]


def test_auto_policy_fits_each_dataset_and_phase():
    from dasvit.augment import resolve_policy

    def policy(preset, phase, *sets):
        cfg = load_config(preset, list(sets))
        return resolve_policy(cfg.search.augment if phase == "search" else cfg.retrain.augment, cfg.data, phase)

    # a mirrored digit is another symbol: never flipped, and never cropped to a fraction of its area;
    # the short search does not shift it either (half a patch), the retrain pads and crops by 2 px
    s, r = policy("digits", "search"), policy("digits", "retrain")
    assert not s.flip and not r.flip and s.crop == "none" and r.crop == "pad" and r.padding == 2
    # photographs: flipped; the search crops lightly, the retrain of full-size images uses the resized crop
    assert policy("cifar10", "search").crop == "pad" and policy("cifar10", "search").flip
    assert policy("imagenet100", "search").crop == "pad"
    assert policy("imagenet100", "retrain").crop == "resized" and policy("imagenet100", "retrain").flip
    # the search is light, the retrain strong, by default
    s, r = policy("cifar10", "search"), policy("cifar10", "retrain")
    assert s.randaugment is None and not (s.mixup or s.cutmix or s.random_erasing)
    assert r.randaugment == 9 and r.mixup > 0 and r.cutmix > 0 and r.random_erasing > 0
    # every part is switchable
    p = policy(
        "digits",
        "retrain",
        "retrain.augment.flip=horizontal",
        "retrain.augment.crop=resized",
        "retrain.augment.crop_scale=0.5",
        "retrain.augment.randaugment=true",
    )
    assert p.flip and p.crop == "resized" and p.scale == 0.5 and p.randaugment == 9


def test_digits_search_transform_neither_flips_nor_loses_the_digit():
    from dasvit.augment import train_transform

    cfg = load_config("digits")
    search, _ = train_transform(cfg, "search")
    assert "RandomHorizontalFlip" not in _types(search) and "RandomResizedCrop" not in _types(search)
    cifar, _ = train_transform(load_config("cifar10"), "search")
    assert "RandomHorizontalFlip" in _types(cifar) and "RandAugment" not in _types(cifar)
    # a one-pixel-wide vertical bar on the left stays on the left half under every draw
    img = torch.zeros(1, 16, 16, dtype=torch.uint8)
    img[:, 4:12, 4] = 255
    for _ in range(50):
        out = search(img)
        assert out.shape == (1, 16, 16)
        col = out[0].argmax(dim=1)[out[0].amax(dim=1) > 0]
        assert (col < 8).all()


def test_legacy_retrain_keys_still_load_and_set():
    cfg = load_run_config(REPO / "tests" / "recorded_run" / "config.yaml")  # written before retrain.augment
    assert cfg.retrain.augment.randaugment is False and cfg.retrain.augment.mixup == 0.0
    cfg = load_config("demo", ["retrain.mixup=0.5", "retrain.randaugment=true"])
    assert cfg.retrain.augment.mixup == 0.5 and cfg.retrain.augment.randaugment is True
    with pytest.raises(ConfigError, match="old name"):
        load_config("demo", ["retrain={mixup: 0.5, augment: {mixup: 0.2}}"])
    with pytest.raises(ConfigError, match="hard labels"):
        load_config("digits", ["search.augment.mixup=0.8"])
    with pytest.raises(ConfigError, match="crop_scale"):
        load_config("digits", ["retrain.augment.crop_scale=0"])
    with pytest.raises(ConfigError, match="data.channels"):
        load_config("digits", ["data.channels=2"])


def test_digits_are_a_stratified_seeded_split_read_as_one_channel():
    from dasvit.data import build_datasets, image_channels

    cfg = load_config("digits").data
    train, val, classes = build_datasets(cfg, seed=0)
    assert classes == 10 and len(train) + len(val) == 1797 and image_channels(cfg) == 1
    x, y = val[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and 0 <= y < 10
    counts = torch.bincount(val.targets, minlength=10).float() / torch.bincount(
        torch.cat([train.targets, val.targets]), minlength=10
    )
    assert ((counts - 0.2).abs() < 0.01).all()  # a fifth of every class
    again, _, _ = build_datasets(cfg, seed=0)
    other, _, _ = build_datasets(cfg, seed=1)
    assert torch.equal(again[5][0], train[5][0]) and not all(torch.equal(other[i][0], train[i][0]) for i in range(20))
    rgb = load_config("digits", ["data.channels=3"]).data
    assert build_datasets(rgb, seed=0)[1][0][0].shape == (3, 16, 16)


def test_missing_scikit_learn_is_a_data_error(monkeypatch):
    from dasvit.data import build_datasets

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # what an install without scikit-learn sees
    with pytest.raises(DataError, match="scikit-learn"):
        build_datasets(load_config("digits").data)


def test_grayscale_imagefolder_is_read_as_one_channel_and_networks_take_it(tmp_path):
    from PIL import Image

    from dasvit.data import build_datasets, image_channels
    from dasvit.genotype import load_genotype
    from dasvit.network import build_network
    from dasvit.profile import count_flops
    from dasvit.supernet import Supernet

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                pixels = torch.randint(0, 256, (20, 20), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels, mode="L").save(tmp_path / split / c / f"{i}.png")
    cfg = load_config("digits", ["data.name=imagefolder", f"data.root={tmp_path}"])
    assert image_channels(cfg.data) == 1
    train, val, classes = build_datasets(cfg.data)
    x, _ = train[0]
    assert classes == 2 and x.shape == (1, 16, 16)
    rgb = load_config("digits", ["data.name=imagefolder", f"data.root={tmp_path}", "data.channels=3"])
    assert build_datasets(rgb.data)[0][0][0].shape == (3, 16, 16)

    net = build_network(load_genotype("vit_b16"), cfg, classes)
    assert net(x[None]).shape == (1, 2) and count_flops(net, 16) > 0
    sup = Supernet(classes, 16, 4, 24, 3, cfg.space.ops, 1, pts_dim=8, in_chans=1)
    assert sup(x[None]).shape == (1, 2)
