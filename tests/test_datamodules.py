"""Image DataModules on data the tests write themselves (torchvision's on-disk layouts included)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lightning.datamodules import (
    CelebADataModule,
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from aigc_lightning.errors import UserError
from conftest import write_mnist, write_pngs


def first_batch(dm, split: str = "train"):
    dm.prepare_data()
    dm.setup("fit")
    return next(iter(getattr(dm, f"{split}_dataloader")()))


def test_digits_range_shape_and_split_are_deterministic():
    dm = DigitsDataModule(image_size=16, batch_size=32, val_fraction=0.2, seed=3)
    x, y = first_batch(dm)
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32 and y.shape == (32,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.9 and x.max() > 0.9
    assert dm.image_shape == (1, 16, 16)
    assert len(dm.train_set) + len(dm.val_set) == 1797 and len(dm.val_set) == round(1797 * 0.2)
    again = DigitsDataModule(image_size=16, val_fraction=0.2, seed=3)
    again.setup("fit")
    assert list(again.val_set.indices) == list(dm.val_set.indices)
    other = DigitsDataModule(image_size=16, val_fraction=0.2, seed=4)
    other.setup("fit")
    assert list(other.val_set.indices) != list(dm.val_set.indices)
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)


def test_digits_rgb_repeats_grey():
    x, _ = first_batch(DigitsDataModule(image_size=8, channels=3, batch_size=4))
    assert x.shape == (4, 3, 8, 8)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_binarize_dynamic_for_train_fixed_for_val():
    dm = DigitsDataModule(image_size=8, batch_size=2000, binarize=True, val_fraction=0.5)
    dm.setup("fit")
    x1, _ = next(iter(dm.train_dataloader()))
    assert set(x1.unique().tolist()) <= {-1.0, 1.0}
    # Dynamic: a second pass draws again, with the same mean intensity as the grey levels.
    grey = DigitsDataModule(image_size=8, batch_size=2000, val_fraction=0.5)
    grey.setup("fit")
    idx = torch.tensor(dm.train_set.indices)
    x_grey = grey.train_set.dataset.images[idx].float() / 255
    x_a = dm.train_set.dataset.__getitems__(idx.tolist())[0]
    x_b = dm.train_set.dataset.__getitems__(idx.tolist())[0]
    assert not torch.equal(x_a, x_b)
    assert ((x_a + 1) / 2).mean().item() == pytest.approx(x_grey.mean().item(), abs=0.01)
    # Fixed for validation: identical across passes and across DataModule instances with the same seed.
    v1 = next(iter(dm.val_dataloader()))[0]
    v2 = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(v1, v2) and set(v1.unique().tolist()) <= {-1.0, 1.0}


def test_mnist_from_idx_files_in_torchvision_layout(tmp_path):
    write_mnist(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), download=False, batch_size=8, val_fraction=0.25)
    x, _ = first_batch(dm)
    assert x.shape == (8, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert len(dm.train_set) == 30 and len(dm.val_set) == 10 and len(dm.test_set) == 12
    xt, _ = next(iter(dm.test_dataloader()))
    raw = np.frombuffer((tmp_path / "MNIST/raw/t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    expected = torch.from_numpy(raw[: 28 * 28].reshape(28, 28).copy()).float() / 255 * 2 - 1
    assert torch.allclose(xt[0, 0], expected)


def test_fashion_mnist_resized(tmp_path):
    write_mnist(tmp_path, "FashionMNIST")
    x, _ = first_batch(FashionMNISTDataModule(root=str(tmp_path), download=False, image_size=32, batch_size=4))
    assert x.shape == (4, 1, 32, 32)


@pytest.mark.parametrize("cls", [MNISTDataModule, CIFAR10DataModule, CelebADataModule])
def test_missing_dataset_offline_names_path_and_fix(tmp_path, cls):
    dm = cls(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(UserError) as e:
        dm.prepare_data()
    message = str(e.value)
    assert str(tmp_path / "nowhere") in message and "download" in message


def test_cifar10_from_pickles(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    # torchvision's md5 sums belong to the real archive; the on-disk layout is what is under test here.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, batch_size=4, val_fraction=0.25)
    x, _ = first_batch(dm)
    assert x.shape == (4, 3, 32, 32)
    assert len(dm.train_set) == 15 and len(dm.val_set) == 5 and len(dm.test_set) == 4
    grey = CIFAR10DataModule(root=str(tmp_path), download=False, channels=1, image_size=16, batch_size=2)
    assert first_batch(grey)[0].shape == (2, 1, 16, 16)


def test_celeba_layout_center_crop_and_resize(tmp_path, monkeypatch):
    from torchvision.datasets import CelebA

    monkeypatch.setattr(CelebA, "_check_integrity", lambda self: True)
    base = tmp_path / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    for i, name in enumerate(names):
        Image.new("RGB", (178, 218), (40 * i, 10, 200)).save(base / "img_align_celeba" / name)
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {0 if i < 4 else 2}\n" for i, n in enumerate(names)))
    # torchvision reads these headers even when target_type is empty.
    (base / "identity_CelebA.txt").write_text("".join(f"{n} 1\n" for n in names))
    attrs = "5_o_Clock_Shadow Bald\n" + "".join(f"{n} 1 -1\n" for n in names)
    (base / "list_attr_celeba.txt").write_text(f"{len(names)}\n{attrs}")
    (base / "list_bbox_celeba.txt").write_text(
        f"{len(names)}\nimage_id x_1 y_1 width height\n" + "".join(f"{n} 0 0 1 1\n" for n in names)
    )
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{len(names)}\nlefteye_x lefteye_y\n" + "".join(f"{n} 1 1\n" for n in names)
    )
    dm = CelebADataModule(root=str(tmp_path), download=False, image_size=16, batch_size=2, num_workers=0,
                          val_fraction=0.25)
    x, _ = first_batch(dm)
    assert x.shape == (2, 3, 16, 16)
    assert len(dm.train_set) == 3 and len(dm.val_set) == 1 and len(dm.test_set) == 2
    # Solid colour in, solid colour out: (200/255)*2-1 in the blue channel.
    assert torch.allclose(x[:, 2], torch.full_like(x[:, 2], 200 / 255 * 2 - 1), atol=0.02)


def test_image_folder_with_class_subfolders(tmp_path):
    write_pngs(tmp_path, size=(20, 30), classes=2, random=False)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, channels=1, batch_size=6, val_fraction=0)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 1, 16, 16) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]


def test_image_folder_flat_and_per_item_path_agree(tmp_path):
    write_pngs(tmp_path, size=(20, 30), random=False)
    kwargs = {"root": str(tmp_path), "image_size": 8, "channels": 3, "batch_size": 6, "val_fraction": 0}
    memory = ImageFolderDataModule(**kwargs)
    per_item = ImageFolderDataModule(**kwargs, in_memory_limit=0)
    memory.setup("fit")
    per_item.setup("fit")
    a = memory.train_set.dataset.__getitems__(list(range(6)))[0]
    b = torch.stack([per_item.train_set.dataset[i][0] for i in range(6)])
    assert a.shape == (6, 3, 8, 8) and torch.equal(a, b)


def test_image_modes_are_converted(tmp_path):
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent: composited on white
    rgba.save(tmp_path / "rgba.png")
    Image.new("P", (10, 10), 3).save(tmp_path / "palette.png")
    Image.fromarray(np.full((10, 10), 32896, np.uint16)).save(tmp_path / "sixteen.png")  # 16-bit mid-grey
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=8, channels=3, batch_size=3, val_fraction=0)
    x, _ = first_batch(dm)
    assert x.shape == (3, 3, 8, 8) and torch.isfinite(x).all()
    files = sorted(p.stem for p in tmp_path.iterdir())
    served = dm.train_set.dataset
    white = served.__getitems__([files.index("rgba")])[0]
    assert torch.allclose(white, torch.ones_like(white))  # transparent → white, not black or red
    grey = served.__getitems__([files.index("sixteen")])[0]
    assert torch.allclose(grey, torch.full_like(grey, 128 / 255 * 2 - 1), atol=0.01)  # not clipped to white


def test_missing_root_empty_folder_and_corrupt_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ImageFolderDataModule(root=str(tmp_path / "absent")).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found"):
        ImageFolderDataModule(root=str(tmp_path / "empty")).setup("fit")
    write_pngs(tmp_path / "bad", n=2)
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(UserError, match="broken.png"):
        ImageFolderDataModule(root=str(tmp_path / "bad"), image_size=8).setup("fit")
    truncated = tmp_path / "trunc"
    write_pngs(truncated, n=1)
    Image.new("RGB", (64, 64), (1, 2, 3)).save(truncated / "cut.jpg")
    data = (truncated / "cut.jpg").read_bytes()
    (truncated / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.jpg"):
        ImageFolderDataModule(root=str(truncated), image_size=8).setup("fit")


def test_loader_workers_serve_same_data(tmp_path):
    dm = DigitsDataModule(image_size=8, batch_size=16, num_workers=2, val_fraction=0.1)
    dm.setup("fit")
    x0, _ = next(iter(dm.val_dataloader()))
    dm0 = DigitsDataModule(image_size=8, batch_size=16, num_workers=0, val_fraction=0.1)
    dm0.setup("fit")
    assert torch.equal(x0, next(iter(dm0.val_dataloader()))[0])
