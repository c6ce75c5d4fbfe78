"""Image files → uint8 tensors: finding images in folders, decoding any PIL mode, fitting them to one size; what
a predict run reads and writes (``PredictPlan``) and writing an output without ever writing through a symlink."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from aigc_lightning.errors import UserError
from aigc_lightning.pixels import convert_channels, resize_crop

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
# Where PIL itself refuses a file (2 × Image.MAX_IMAGE_PIXELS): the guard against decompression bombs (a few KB of
# PNG that decode to gigabytes) refuses nothing PIL would open, and a user can raise it per DataModule.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970
_PIL_LIMIT = threading.Lock()  # PIL's limit is a module global: swapped under a lock, restored at once


def fit_uint8(images: Tensor, image_size: int, channels: int, crop: int | None = None) -> Tensor:
    """Convert channels, (optionally centre-crop ``crop`` px,) resize the shorter side and centre-crop a uint8
    (N, C, H, W) batch to (N, ``channels``, ``image_size``, ``image_size``), rounded back to uint8."""
    x = convert_channels(images.float(), channels)
    x = resize_crop(x, image_size, crop)
    return x.round().clamp(0, 255).to(torch.uint8).contiguous()


def _open(path: Path) -> Image.Image:
    """``Image.open`` (header only) without PIL's own pixel limit, which ``load_image`` replaces."""
    with _PIL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def load_image(
    path: Path, channels: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, limit_option: str | None = None
) -> Image.Image:
    """Open any PIL image as 'L' or 'RGB': palette, alpha (composited on white) and 16-bit modes are converted.

    PIL rather than ``torchvision.io.decode_image``: the latter reads neither BMP, TIFF nor PPM, and keeps alpha
    and 16-bit values as they are, which each would need handling here anyway. A file declaring more than
    ``max_pixels`` pixels is refused from its header, before decoding; ``limit_option`` names the option that
    raises the limit.
    """
    try:
        with _open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                fix = f"if the file is genuine, raise {limit_option} to {w * h} or more" if limit_option else (
                    "shrink the image")  # fmt: skip
                raise UserError(
                    f"image file {path} declares {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                    f"(a guard against decompression bombs); {fix}"
                )
            img.load()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image file {path} ({e}); delete or replace it") from e
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit greyscale: PIL's convert("L") clips at 255 (a white 16-bit image turns white only by accident,
        # mid-greys saturate); scale the 16-bit range into 8 bits instead.
        t = np.asarray(img, dtype=np.float32)
        if img.mode.startswith("I;16") or t.max() > 255:
            t = t * (255 / 65535)
        img = Image.fromarray(np.clip(t.round(), 0, 255).astype(np.uint8))
    if img.mode == "P" or img.mode in ("LA", "PA") or (img.mode == "RGBA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("L" if channels == 1 else "RGB")


def pil_to_uint8(img: Image.Image) -> Tensor:
    """PIL 'L'/'RGB' image → uint8 tensor (C, H, W)."""
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return t.view(img.size[1], img.size[0], len(img.getbands())).permute(2, 0, 1)  # (C, H, W)


def find_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under ``root``: class sub-folders (label = sorted folder index) or a flat folder (label 0)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"image folder {root} does not exist; pass an existing folder with --data.root")
    if not root.is_dir():
        raise UserError(f"--data.root {root} is a file; pass the folder that contains the images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise UserError(
            f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} files, also in sub-folders); "
            "point --data.root at a folder of images"
        )
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(p.relative_to(root).parts[0], 0) if len(p.relative_to(root).parts) > 1 else 0 for p in files]
    return files, labels, classes


def list_files(path: str, suffixes: tuple[str, ...], option: str, what: str) -> list[Path]:
    """``[path]`` for one file, the sorted matching files under a folder; ``UserError`` naming ``option``.

    Shared by every input that takes "a file or a folder of them" (style, content, projection targets, latents).
    """
    if not path:
        raise UserError(f"{option} is not set; pass {what} or a folder of them with {option} PATH")
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{option} {p} does not exist; pass {what} or a folder of them")
    if p.is_file():
        if p.suffix.lower() not in suffixes:
            raise UserError(f"{option} {p} is not {what} (expected {', '.join(suffixes)})")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in suffixes and f.is_file())
    if not files:
        raise UserError(f"no files ({', '.join(suffixes)}) found in {p}; pass {option} a folder that holds {what}")
    return files


def output_names(files: list[Path], root: str) -> list[str]:
    """Output names: file stems, with the sub-folder path (``a/b.png`` → ``a_b``) inside a folder.

    Not one-to-one (``x.png``/``x.jpg``, ``a/b.png``/``a_b.png``): ``PredictPlan`` finds the collisions."""
    base = Path(root).expanduser()
    if base.is_file():
        return [files[0].stem]
    return ["_".join(f.relative_to(base).parent.parts + (f.stem,)) for f in files]


@dataclass(frozen=True)
class PredictPlan:
    """What a predict run will write and what it reads, known before any work, so ``ImageWriter.check`` can
    refuse data loss up front (colliding names, outputs among the inputs, existing files).

    Args:
        outputs: output file name (``x.png``) → the input files that would be written to it (more than one: a
            collision). Seeded samples have no input file.
        inputs: the paths the user named as inputs: files or folders.
    """

    outputs: dict[str, list[Path]]
    inputs: list[Path]

    @staticmethod
    def of_files(
        files: list[Path], names: list[str], inputs: list[str], videos: tuple[str, ...] = ()
    ) -> PredictPlan:
        """One output per file: ``<name>.mp4`` for suffixes in ``videos``, ``<name>.png`` for the rest."""
        outputs: dict[str, list[Path]] = {}
        for f, name in zip(files, names):
            outputs.setdefault(name + (".mp4" if f.suffix.lower() in videos else ".png"), []).append(f)
        return PredictPlan(outputs, [Path(p).expanduser() for p in inputs if p])


def _fresh_file(folder: Path, tag: str) -> Path:
    """Create a new empty file in ``folder`` (``O_EXCL``: never an existing file, never through a symlink)."""
    while True:
        path = folder / f".partial-{secrets.token_hex(4)}-{tag[:40]}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A fresh temporary file beside ``target`` to write to; on success it replaces ``target`` in one step.

    ``os.replace`` swaps the directory entry: a symlink at ``target`` is replaced, the file it points to is never
    written, and nobody ever sees half a file. On failure the temporary file is deleted.
    """
    tmp = _fresh_file(target.parent, target.name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "IMAGE_EXTENSIONS", "PredictPlan", "find_images", "fit_uint8", "list_files",
           "load_image", "output_names", "pil_to_uint8", "replacing"]  # fmt: skip
