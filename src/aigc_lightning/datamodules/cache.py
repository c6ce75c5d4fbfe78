"""The prepared dataset cache (``--data.cache_dir DIR``): each image decoded, converted and resized once, kept as
uint8 pixels and int64 labels in ``.npy`` files that later runs memory-map.

The idea of NVlabs' ``dataset_tool.py`` (decode once, read raw pixels ever after), as plain NumPy files: no pickle,
readable with ``np.load(path, mmap_mode="r")``, and larger-than-RAM sets are paged in by the OS. One entry is three
files in the cache folder, named ``<stem>-<key>``::

    <stem>-<key>.images.npy   uint8 (N, C, H, W)
    <stem>-<key>.labels.npy   int64 (N,)
    <stem>-<key>.json         the manifest, written last: format, key, shape, byte sizes, a digest of sampled blocks

The key hashes everything the pixels depend on: every source file's relative path, size and modification time,
the labels, the image size, the channel count and the crop. A changed folder, size or channel count gives another
key, so a stale entry is never served; after a rebuild the older entries of the same folder and size are deleted.
Files are written under temporary names and renamed into place, manifest last, so a killed build leaves no entry;
an entry whose files disagree with its manifest (truncated, overwritten) is refused and rebuilt. Builders take an
exclusive lock on ``<stem>.lock``: under DDP (or two runs at once) one process builds, the others wait and then
memory-map what it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from aigc_lightning.datamodules.datasets import ImageFiles, TensorImages
from aigc_lightning.errors import UserError

FORMAT = 1
# the digest reads 64 blocks of 4 KiB spread over the file: cheap at any size, catches truncation and overwrites
_SAMPLED_BLOCKS, _BLOCK = 64, 4096


class CacheEntry:
    """One prepared set in ``cache_dir``: ``open()`` memory-maps it, ``build()`` writes it atomically.

    Args:
        cache_dir: the cache folder (created when absent).
        stem: readable part of the file names (folder name, size, channels): entries that differ only in key share
            it, and a rebuild deletes the other keys of its stem.
        key: hex digest of everything the pixels depend on (``key_of``).
    """

    def __init__(self, cache_dir: str | Path, stem: str, key: str) -> None:
        self.folder = Path(cache_dir).expanduser()
        self.stem, self.key = re.sub(r"[^A-Za-z0-9_-]+", "_", stem), key
        base = f"{self.stem}-{key[:20]}"
        self.images_path, self.labels_path = (
            self.folder / f"{base}.images.npy",
            self.folder / f"{base}.labels.npy",
        )
        self.manifest_path = self.folder / f"{base}.json"
        self._arrays: tuple[Tensor, Tensor] | None = None

    @property
    def arrays(self) -> tuple[Tensor, Tensor]:
        """The memory-mapped (images uint8 (N, C, H, W), labels int64 (N,)) of a prepared entry."""
        if self._arrays is None:
            self._arrays = self.open()
            if self._arrays is None:
                raise UserError(
                    f"dataset cache {self.manifest_path} is missing or damaged; rerun to rebuild it"
                )
        return self._arrays

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}  # a pickled entry maps its files again where it is loaded

    def open(self) -> tuple[Tensor, Tensor] | None:
        """The memory-mapped (images, labels), or ``None`` when the entry is absent or does not match its manifest."""
        if not self.manifest_path.exists():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text())
            assert manifest["format"] == FORMAT and manifest["key"] == self.key, "written for another key"
            for path, size in (
                (self.images_path, manifest["images_bytes"]),
                (self.labels_path, manifest["labels_bytes"]),
            ):
                assert path.stat().st_size == size, f"{path.name} has {path.stat().st_size} bytes, not {size}"
            assert _digest(self.images_path) == manifest["digest"], "sampled pixel blocks changed"
            # mode "c" (copy-on-write): a writable view whose pages are shared and never written back
            images = np.load(self.images_path, mmap_mode="c", allow_pickle=False)
            labels = np.load(self.labels_path, mmap_mode="c", allow_pickle=False)
            assert list(images.shape) == manifest["shape"] and images.dtype == np.uint8, (
                "image array shape or dtype"
            )
            assert labels.shape == (images.shape[0],) and labels.dtype == np.int64, (
                "label array shape or dtype"
            )
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            print(f"dataset cache {self.manifest_path} is unusable ({e}); rebuilding it", file=sys.stderr)
            return None
        return torch.from_numpy(images), torch.from_numpy(labels)

    def build(self, shape: tuple[int, ...], fill: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Write the entry: ``fill(images, labels)`` fills writable arrays of ``shape`` (N, C, H, W) and (N,)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (self.images_path, self.labels_path)]
        try:
            images = np.lib.format.open_memmap(tmp[0], mode="w+", dtype=np.uint8, shape=shape)
            labels = np.lib.format.open_memmap(tmp[1], mode="w+", dtype=np.int64, shape=shape[:1])
            fill(images, labels)
            for array in (images, labels):
                array.flush()
            del images, labels
            for path in tmp:
                _fsync(path)
            manifest = {"format": FORMAT, "key": self.key, "shape": list(shape), "images_bytes": tmp[0].stat().st_size,
                        "labels_bytes": tmp[1].stat().st_size, "digest": _digest(tmp[0])}  # fmt: skip
            os.replace(tmp[0], self.images_path)
            os.replace(tmp[1], self.labels_path)
            _write_atomic(
                self.manifest_path, json.dumps(manifest, indent=1)
            )  # last: it makes the entry valid
        finally:
            for path in tmp:
                path.unlink(missing_ok=True)
        entry_file = re.compile(rf"{re.escape(self.stem)}-([0-9a-f]{{20}})\.(images\.npy|labels\.npy|json)")
        for old in self.folder.iterdir():
            match = entry_file.fullmatch(old.name)
            if match and match.group(1) != self.key[:20]:
                old.unlink(missing_ok=True)  # another key of the same folder and size: the folder changed

    def prepare(self, shape: tuple[int, ...], fill: Callable[[np.ndarray, np.ndarray], None]) -> CacheEntry:
        """``open()``, building the entry first when needed; one builder at a time (the others wait, then open)."""
        self._arrays = self.open()
        if self._arrays is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        with _locked(self.folder / f"{self.stem}.lock"):
            opened = self.open()  # another process may have built it while this one waited for the lock
            if opened is None:
                self.build(shape, fill)
                opened = self.open()
        if opened is None:
            raise UserError(f"dataset cache {self.manifest_path} cannot be read back after writing it; check the disk "
                            "(space, permissions) or pass another --data.cache_dir")  # fmt: skip
        self._arrays = opened
        return self


class CachedImages(TensorImages):
    """``TensorImages`` over a prepared cache entry's memory-mapped arrays (``entry.arrays``).

    Pickles as the entry's file paths: a DataLoader worker started with spawn maps the files itself instead of
    receiving a copy of every pixel.
    """

    def __init__(self, entry: CacheEntry, binarize: bool = False, seed: int | None = None) -> None:
        super().__init__(*entry.arrays, binarize, seed)
        self.entry = entry

    def __getstate__(self) -> dict:
        return {**self.__dict__, "images": None, "labels": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.images, self.labels = self.entry.arrays


def key_of(files: Sequence[Path], root: Path, **params: object) -> str:
    """sha256 over the files' relative paths, sizes and modification times (ns) and ``params`` (JSON)."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, **params}, sort_keys=True, default=str).encode())
    prefix = len(os.path.join(str(root), ""))  # the files lie under root: their relative path is a suffix
    lines = []
    for f in map(str, files):
        st = os.stat(f)
        lines.append(f"{f[prefix:]}\0{st.st_size}\0{st.st_mtime_ns}\n")
    h.update("".join(lines).encode())
    return h.hexdigest()


class _Decode(Dataset):
    """Item i → (i, uint8 (C, H, W)), or (i, message) when the file cannot be read (raised in the main process)."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return i, self.files.load_uint8(i)
        except UserError as e:
            return i, str(e)


def _collate(items: list) -> tuple[int, Tensor | str]:
    bad = [x for _, x in items if isinstance(x, str)]
    return items[0][0], bad[0] if bad else torch.stack([x for _, x in items])  # (B, C, H, W)


def build_workers() -> int:
    """Decode processes for a build: every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cached_files(
    cache_dir: str | Path,
    root: Path,
    files: ImageFiles,
    tag: str = "",
    workers: int | None = None,
) -> CacheEntry:
    """The cache entry of ``files`` (an ``ImageFiles`` set under ``root``), built if needed by ``workers`` decode
    processes (default: every core) with a progress bar. Pixels equal ``files.load_uint8(i)`` exactly."""
    crop = f"-crop{files.center_crop}" if files.center_crop else ""
    where = hashlib.sha256(str(Path(root).expanduser().resolve()).encode()).hexdigest()[:8]
    stem = f"{Path(root).resolve().name or 'root'}{tag}-{where}-{files.image_size}px-{files.channels}ch{crop}"
    key = key_of(files.files, Path(root).expanduser(), labels=files.labels, image_size=files.image_size,
                 channels=files.channels, center_crop=files.center_crop)  # fmt: skip
    entry = CacheEntry(cache_dir, stem, key)
    n, shape = len(files), (len(files), files.channels, files.image_size, files.image_size)

    def fill(images: np.ndarray, labels: np.ndarray) -> None:
        labels[:] = files.labels
        # a few hundred images decode faster than worker processes start
        count = (build_workers() if n >= 512 else 1) if workers is None else workers
        batch = max(1, min(64, n // max(1, 4 * count)))
        loader = DataLoader(_Decode(files), batch_size=batch, num_workers=count if count > 1 else 0,
                            collate_fn=_collate)  # fmt: skip
        print(
            f"preparing dataset cache {entry.images_path} ({n:,} images, {count} processes)", file=sys.stderr
        )
        with _progress(n, entry.stem) as bar:
            for start, x in loader:
                if isinstance(x, str):
                    raise UserError(x)
                images[start : start + len(x)] = x.numpy()
                bar.update(len(x))

    return entry.prepare(shape, fill)


def cached_arrays(
    cache_dir: str | Path, root: Path, sources: Sequence[Path], tag: str, shape: tuple[int, ...],
    make: Callable[[], Iterator[tuple[Tensor, Tensor]]],
) -> CacheEntry:  # fmt: skip
    """The cache entry of a set computed in this process (MNIST, CIFAR-10: arrays already in memory), keyed by its
    ``sources`` files; ``make()`` yields (images uint8 (B, C, H, W), labels (B,)) chunks in order."""
    where = hashlib.sha256(str(Path(root).expanduser().resolve()).encode()).hexdigest()[:8]
    stem = f"{tag}-{where}-{shape[2]}px-{shape[1]}ch"
    entry = CacheEntry(cache_dir, stem, key_of(sources, Path(root).expanduser(), tag=tag, shape=shape))

    def fill(images: np.ndarray, labels: np.ndarray) -> None:
        start = 0
        with _progress(shape[0], entry.stem) as bar:
            for x, y in make():
                images[start : start + len(x)], labels[start : start + len(x)] = x.numpy(), y.numpy()
                start += len(x)
                bar.update(len(x))

    return entry.prepare(shape, fill)


@contextmanager
def _progress(total: int, what: str):
    from tqdm import tqdm

    with tqdm(total=total, desc=f"caching {what}", unit="img", mininterval=1.0, file=sys.stderr) as bar:
        yield bar


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): builders may race, but each writes a whole entry and renames it
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _digest(path: Path) -> str:
    """blake2b of the file size and 64 blocks of 4 KiB spread evenly over it (the header included)."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        for i in range(_SAMPLED_BLOCKS):
            f.seek(max(0, size - _BLOCK) * i // (_SAMPLED_BLOCKS - 1))
            h.update(f.read(_BLOCK))
    return h.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["CacheEntry", "CachedImages", "build_workers", "cached_arrays", "cached_files", "key_of"]
