"""Fashion-MNIST through the real loading path, on a tiny IDX set the test writes (no Debian package needed):
where the files may lie, a read-only folder, a damaged file, a missing dataset, the splits."""

from __future__ import annotations

import gzip
import os
import stat

import numpy as np
import pytest
import torch

from dasvit.errors import ConfigError, DataError
from dasvit.run.presets import load_config

PER_CLASS = {"train": 12, "test": 3}


def write_idx(folder, compress: bool = True, per_class=PER_CLASS) -> None:
    """The four Fashion-MNIST IDX files with `per_class` images of each of the 10 classes; class c's images are
    a bright c-th row band, so the classes can be told apart."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    for split, (img_name, lbl_name) in names.items():
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class[split])
        rng.shuffle(labels)
        images = rng.integers(0, 40, (len(labels), 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c : 2 * c + 3, :] = 250
        blobs = {
            img_name: bytes([0, 0, 8, 3]) + np.array([len(labels), 28, 28], ">i4").tobytes() + images.tobytes(),
            lbl_name: bytes([0, 0, 8, 1]) + np.array([len(labels)], ">i4").tobytes() + labels.tobytes(),
        }
        for name, blob in blobs.items():
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)


def fashion(root, *sets: str):
    return load_config("digits", ["data.name=fashion-mnist", f"data.root={root}", "data.image_size=28", *sets])


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """This machine may have Debian's copy installed; these tests are about data.root alone."""
    import dasvit.train.data

    monkeypatch.setattr(dasvit.train.data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")


def test_idx_files_load_from_a_read_only_folder_with_stratified_splits(tmp_path, no_debian):
    from dasvit.train.data import build_datasets, dataset_targets

    write_idx(tmp_path / "fm")
    for f in (tmp_path / "fm").iterdir():
        f.chmod(stat.S_IRUSR)
    (tmp_path / "fm").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        before = sorted(os.listdir(tmp_path / "fm"))
        s = build_datasets(fashion(tmp_path / "fm", "data.holdout=20", "data.subset=50").data)
        assert sorted(os.listdir(tmp_path / "fm")) == before  # nothing written there
    finally:
        (tmp_path / "fm").chmod(stat.S_IRWXU)
    assert (len(s.train), len(s.val), len(s.test), s.num_classes) == (50, 20, 30, 10)
    targets = dataset_targets(s.train.base)
    val = torch.bincount(torch.tensor([targets[i] for i in s.val.indices]), minlength=10)
    train = torch.bincount(torch.tensor([targets[i] for i in s.train.indices]), minlength=10)
    assert (val == 2).all() and (train == 5).all()  # class by class
    assert not set(s.val.indices) & set(s.train.indices)
    x, y = s.test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    # the image is the one written: class y's band is the brightest rows
    assert x[0].mean(dim=1).argmax().item() // 2 == y


def test_torchvision_layout_and_plain_files_load_too(tmp_path, no_debian):
    from dasvit.train.data import build_datasets

    write_idx(tmp_path / "FashionMNIST" / "raw", compress=False)
    s = build_datasets(fashion(tmp_path, "data.image_size=32", "space.patch_size=8").data)
    assert s.train[0][0].shape == (1, 32, 32) and len(s.test) == 30


def test_missing_or_damaged_fashion_mnist_is_one_sentence(tmp_path, no_debian):
    from dasvit.train.data import build_datasets

    with pytest.raises(DataError) as e:
        build_datasets(fashion(tmp_path / "empty", "data.download=false").data)
    msg = str(e.value)
    assert "data.download=true" in msg and "apt-get install dataset-fashion-mnist" in msg and "\n" not in msg
    write_idx(tmp_path / "fm")
    blob = (tmp_path / "fm" / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "fm" / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        build_datasets(fashion(tmp_path / "fm").data)
    (tmp_path / "fm" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\xff" * 12))
    with pytest.raises(DataError, match="damaged"):
        build_datasets(fashion(tmp_path / "fm").data)
    with pytest.raises(DataError, match="data.holdout"):
        write_idx(tmp_path / "ok")
        build_datasets(fashion(tmp_path / "ok", "data.holdout=500").data)
    with pytest.raises(ConfigError, match="data.holdout"):
        fashion(tmp_path, "data.holdout=2.5")


def test_debian_copy_is_used_when_data_root_lacks_it(tmp_path, monkeypatch):
    import dasvit.train.data
    from dasvit.train.data import build_datasets

    write_idx(tmp_path / "debian")
    monkeypatch.setattr(dasvit.train.data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    s = build_datasets(fashion(tmp_path / "nothing-here", "data.download=false").data)
    assert len(s.test) == 30 and any("Debian" in n and str(tmp_path / "debian") in n for n in s.notes)
