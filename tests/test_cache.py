"""The prepared dataset cache (``--data.cache_dir``): hits, rebuilds, pixels equal to the decode path, damaged
entries refused, interrupted builds, one builder among concurrent processes, DDP shards, the CLI flag."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import ImageFolderDataModule, MNISTDataModule
from aigc_lightning.datamodules.cache import CachedImages
from aigc_lightning.datamodules.datasets import ImageFiles
from conftest import write_mnist, write_pngs

pytestmark = pytest.mark.usefixtures("one_thread")


def served(dm: ImageFolderDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole training set (val_fraction=0) as the DataModule serves it: pixels in [-1, 1] and labels."""
    dm.setup("fit")
    return dm.train_set.dataset.__getitems__(list(range(len(dm.train_set))))


def folder_dm(root, cache, **kwargs) -> ImageFolderDataModule:
    options = {"image_size": 16, "channels": 3, "val_fraction": 0, "batch_size": 4, **kwargs}
    return ImageFolderDataModule(str(root), cache_dir=None if cache is None else str(cache), **options)


def entries(cache) -> list[str]:
    return sorted(p.name for p in cache.glob("*.json"))


@pytest.fixture()
def photos(tmp_path):
    """Ten small RGB JPEGs of different sizes in two class folders."""
    rng = np.random.default_rng(1)
    for i in range(10):
        folder = tmp_path / "photos" / f"class_{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (20 + i, 30 - i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return tmp_path / "photos"


def test_cache_serves_the_decode_paths_pixels_and_is_reused(photos, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    x, y = served(folder_dm(photos, cache))
    ref_x, ref_y = served(folder_dm(photos, None))
    assert isinstance(folder_dm(photos, cache).load(True, False, None), CachedImages)
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y) and sorted(set(y.tolist())) == [0, 1]
    assert len(entries(cache)) == 1

    def no_decode(self, index):
        raise AssertionError("a cache hit decoded an image")

    monkeypatch.setattr(ImageFiles, "load_uint8", no_decode)
    again_x, again_y = served(folder_dm(photos, cache))  # a second run: memory-mapped, nothing decoded
    assert torch.equal(again_x, x) and torch.equal(again_y, y)


def test_added_file_changed_size_or_channels_rebuild(photos, tmp_path):
    cache = tmp_path / "cache"
    served(folder_dm(photos, cache))
    first = entries(cache)
    Image.new("RGB", (24, 24), (255, 0, 0)).save(photos / "class_1" / "new.jpg")
    x, _ = served(folder_dm(photos, cache))
    assert len(x) == 11 and torch.equal(x, served(folder_dm(photos, None))[0])
    assert len(entries(cache)) == 1 and entries(cache) != first  # the stale entry of the old folder is gone
    for options in ({"image_size": 8}, {"channels": 1}):
        x, _ = served(folder_dm(photos, cache, **options))
        assert torch.equal(x, served(folder_dm(photos, None, **options))[0]), options
    assert len(entries(cache)) == 3  # another size or channel count is another entry, not a replacement


def test_rewritten_file_with_new_mtime_rebuilds(photos, tmp_path):
    cache = tmp_path / "cache"
    served(folder_dm(photos, cache))
    target = photos / "class_0" / "0.jpg"
    Image.new("RGB", (20, 30), (0, 0, 0)).save(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    x, _ = served(folder_dm(photos, cache))
    assert torch.equal(x, served(folder_dm(photos, None))[0]) and (x[0] == -1).all()


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "manifest", "labels"])
def test_damaged_entry_is_refused_and_rebuilt(photos, tmp_path, capsys, damage):
    cache = tmp_path / "cache"
    x, y = served(folder_dm(photos, cache))
    images = next(cache.glob("*.images.npy"))
    if damage == "truncate":
        images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    elif damage == "overwrite":  # same size, other pixels: only the sampled digest can tell
        data = bytearray(images.read_bytes())
        data[200:] = bytes(len(data) - 200)
        images.write_bytes(bytes(data))
    elif damage == "manifest":
        next(cache.glob("*.json")).write_text("{not json")
    else:
        next(cache.glob("*.labels.npy")).unlink()
    capsys.readouterr()
    again_x, again_y = served(folder_dm(photos, cache))
    assert "rebuilding" in capsys.readouterr().err
    assert torch.equal(again_x, x) and torch.equal(again_y, y)


def test_interrupted_build_leaves_no_entry(photos, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    decode = ImageFiles.load_uint8

    def interrupted(self, index):
        if index == 5:
            raise KeyboardInterrupt
        return decode(self, index)

    monkeypatch.setattr(ImageFiles, "load_uint8", interrupted)
    monkeypatch.setattr("aigc_lightning.datamodules.cache.build_workers", lambda: 1)  # decode in this process
    with pytest.raises(KeyboardInterrupt):
        served(folder_dm(photos, cache))
    assert [
        p.name for p in cache.iterdir() if not p.name.endswith(".lock")
    ] == []  # no entry, no temporary file
    monkeypatch.setattr(ImageFiles, "load_uint8", decode)
    assert torch.equal(served(folder_dm(photos, cache))[0], served(folder_dm(photos, None))[0])


def test_unreadable_image_names_the_file(photos, tmp_path):
    from aigc_lightning.errors import UserError

    (photos / "class_0" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.png"):
        served(folder_dm(photos, tmp_path / "cache"))
    assert not list((tmp_path / "cache").glob("*.json"))


def _setup_in_child(root, cache, queue) -> None:
    x, _ = served(folder_dm(root, cache, image_size=8))
    queue.put(float(x.double().sum()))


def test_concurrent_processes_build_once(tmp_path, capfd):
    # two processes set up the same uncached folder at once (DDP ranks, two runs): one builds, the other waits
    root = write_pngs(tmp_path / "pngs", n=200, size=24, channels=3, classes=2)
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_setup_in_child, args=(root, cache, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    sums = [queue.get(timeout=5) for _ in procs]
    assert sums[0] == sums[1] == float(served(folder_dm(root, None, image_size=8))[0].double().sum())
    assert capfd.readouterr().err.count("preparing dataset cache") == 1 and len(entries(cache)) == 1


def test_ddp_ranks_get_disjoint_shards_of_the_cached_set(photos, tmp_path):
    dm = folder_dm(photos, tmp_path / "cache", val_fraction=0.2)
    dm.setup("fit")
    train = dm.train_dataloader().dataset  # what Lightning wraps with a DistributedSampler under DDP
    shards = [list(DistributedSampler(train, num_replicas=2, rank=r, shuffle=True, seed=3)) for r in range(2)]
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[0]) | set(shards[1]) == set(range(len(train)))
    x, _ = train.__getitems__(shards[0])
    assert x.shape == (4, 3, 16, 16)


def test_mnist_cache_equals_in_memory_path_and_binarisation_is_unchanged(tmp_path):
    write_mnist(tmp_path)
    options = {
        "root": str(tmp_path),
        "download": False,
        "image_size": 16,
        "val_fraction": 0.25,
        "binarize": True,
    }
    cached, plain = MNISTDataModule(cache_dir=str(tmp_path / "cache"), **options), MNISTDataModule(**options)
    for dm in (cached, plain):
        dm.setup("fit")
    assert torch.equal(cached.train_set.dataset.images, plain.train_set.dataset.images)
    val = list(range(len(cached.val_set)))
    assert torch.equal(
        cached.val_set.dataset.__getitems__(val)[0], plain.val_set.dataset.__getitems__(val)[0]
    )
    assert set(cached.train_set.dataset.__getitems__(val)[0].unique().tolist()) == {-1.0, 1.0}
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*.json")]
    assert sorted(m["shape"][0] for m in manifests) == [12, 40]  # train and test


def test_cli_flag_fits_from_the_cache(photos, tmp_path):
    cache = tmp_path / "cache"
    AigcCLI(args=["fit", "--model", "tiny_models.TinyGenerator", "--model.net", "tiny_models.TinyNet",
                  "--data", "aigc_lightning.datamodules.ImageFolderDataModule", "--data.root", str(photos),
                  "--data.image_size", "16", "--data.cache_dir", str(cache), "--data.batch_size", "4",
                  "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path),
                  "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2"])  # fmt: skip
    assert len(entries(cache)) == 1
