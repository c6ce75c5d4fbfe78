"""The data path at scale: per-item JPEG decoding against the prepared dataset cache (``--data.cache_dir``)."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

# What a GPU step consumes, for the comparison column; the source of each number is in ``GPU_NOTES``.
GPU_RATES = {256: ("StyleGAN2 config-f, one V100", 8.9)}
GPU_NOTES = [
    (
        "GPU consumption, StyleGAN2 256 px: NVlabs/stylegan2's README training-time table (config-f, 256x256, 25,000 "
        "kimg in 32 d 13 h on one V100 = 8.9 real images/s). DCGAN 64 px on a GPU: no measured number here (no GPU "
        "lent); `python bench/gpu_check.py` prints it on one"
    )
]


def make_jpegs(folder: Path, n: int, width: int, height: int) -> Path:
    """``n`` JPEGs (quality 90) of random crops of scikit-image's sample photos, in 10 class folders; reused when
    ``folder`` already holds them."""
    import numpy as np
    from PIL import Image
    from skimage import data

    done = folder / f".complete-{n}-{width}x{height}"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    photos = [Image.fromarray(getattr(data, name)()).convert("RGB")
              for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")]  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(n):
        photo = photos[i % len(photos)]
        scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.6)
        big = photo.resize((round(photo.width * scale) + 1, round(photo.height * scale) + 1))
        x, y = rng.integers(0, big.width - width), rng.integers(0, big.height - height)
        target = folder / f"class_{i % 10}"
        target.mkdir(parents=True, exist_ok=True)
        big.crop((x, y, x + width, y + height)).save(target / f"{i:06d}.jpg", quality=90)
    done.touch()
    return folder


def images_per_second(loader, limit: int | None = None) -> float:
    """Images/s over one pass of ``loader`` (at most ``limit`` images), the first batch not timed (worker start)."""
    count, start = 0, None
    for x, _ in loader:
        x.sum()  # touch the batch
        if start is None:
            start = time.perf_counter()
            continue
        count += len(x)
        if limit is not None and count >= limit:
            break
    return count / (time.perf_counter() - start)


def data_cache(args) -> dict:
    """Images/s of the data path: per-item decode vs the prepared cache, one process and all worker processes.

    For each size a folder of JPEGs (random crops of scikit-image's photos; 64 px: ``--images`` of 178x218 like
    CelebA; 256 px: ``--images_256`` of 512x512) is served by ``ImageFolderDataModule`` twice: decoded per item
    (``in_memory_limit=0``, timed over ``--decode_images`` images) and from ``--data.cache_dir`` (cache built with
    every core, then a second run: a fresh DataModule opening the cache, timed over two epochs). Batch 64,
    shuffled; one torch thread per process; "workers 0" is one core (the main process).

        python -m bench data_cache [--images 20000] [--images_256 5000] [--sizes 64 256]
    """
    import torch

    from aigc_lightning.datamodules import ImageFolderDataModule
    from aigc_lightning.datamodules.cache import build_workers
    from bench.common import load_average

    torch.set_num_threads(1)
    all_workers = build_workers()
    base = Path(args.folder or Path(tempfile.gettempdir()) / "aigc_bench_jpegs")
    rows, notes = [], []
    for size in args.sizes:
        n, (w, h) = (args.images, (178, 218)) if size <= 128 else (args.images_256, (512, 512))
        folder = make_jpegs(base / f"{n}_{w}x{h}", n, w, h)
        cache = Path(tempfile.mkdtemp(prefix="aigc_bench_cache_"))
        try:
            options = {"image_size": size, "channels": 3, "val_fraction": 0, "batch_size": 64}
            start = time.perf_counter()
            ImageFolderDataModule(str(folder), cache_dir=str(cache), **options).setup("fit")
            build = time.perf_counter() - start
            for workers in (0, all_workers):
                decode = ImageFolderDataModule(str(folder), in_memory_limit=0, num_workers=workers, **options)
                decode.setup("fit")
                decode_rate = images_per_second(decode.train_dataloader(), args.decode_images)
                start = time.perf_counter()
                cached = ImageFolderDataModule(
                    str(folder), cache_dir=str(cache), num_workers=workers, **options
                )
                cached.setup("fit")  # the second run: hashes the folder listing, maps the cache
                open_s = time.perf_counter() - start
                loader = cached.train_dataloader()
                epochs = [images_per_second(loader) for _ in range(2)]
                rows.append({"size px": size, "images": n, "source": f"{w}x{h} JPEG", "workers": workers,
                             "decode img/s": round(decode_rate), "cache img/s, epoch 1": round(epochs[0]),
                             "cache img/s, epoch 2": round(epochs[1]), "speed-up (epoch 2)": round(epochs[1] / decode_rate, 1),
                             "cache build s": round(build, 1), "cache open s": round(open_s, 2),
                             "GPU consumes img/s": GPU_RATES.get(size, ("", ""))[1]})  # fmt: skip
                print(rows[-1], flush=True)
            size_mb = sum(p.stat().st_size for p in cache.glob("*.npy")) / 2**20
            notes.append(
                f"{size} px: cache {size_mb:.0f} MiB for {n} images, built with {all_workers} processes"
            )
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    load = (f"{os.cpu_count()} CPUs; load average at the end {load_average()} (shared machine: the absolute rates "
            "are noisy, the speed-ups within one row are the result)")  # fmt: skip
    notes += [*GPU_NOTES, load]
    return {"rows": rows, "notes": notes}


def data_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=int, default=20_000, help="JPEGs in the folder for sizes up to 128 px")
    p.add_argument("--images_256", type=int, default=5_000, help="JPEGs in the folder for larger sizes")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument(
        "--decode_images", type=int, default=3_000, help="images timed on the per-item decode path"
    )
    p.add_argument("--folder", default=None, help="where the JPEG folders are made (kept for the next run)")
