"""Prediction writer: one PNG per predicted image, plus a grid of seeded samples; videos are encoded by
``callbacks/video.py``.

Predict never destroys a file. Before any work, ``ImageWriter.check(plan)`` refuses, in one line each: two inputs
that map to one output name, an output folder that is, contains or is inside an input folder, an output that is
an input file, and (unless ``overwrite``) outputs that already exist; then it creates the folder and proves it
writable. Every file is written to a fresh temporary file in the folder and moved over its name in one step, so a
symlink in the output folder is replaced, never written through, and a failed run leaves no half-written file.

``grid.png`` sits only beside seeded samples (``000000.png`` …): their names are digits, so no input can take the
grid's name. Predict on files (style transfer, the style network, projections) writes exactly one output per
input and no grid, so ``OUT/grid.png`` can only be the output of an input called ``grid``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from jsonargparse.typing import PositiveInt
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torchvision.io import decode_image
from torchvision.utils import make_grid

from aigc_lightning.callbacks.clips import write_clip, write_clip_grid
from aigc_lightning.callbacks.video import write_video
from aigc_lightning.datamodules.io import PredictPlan, replacing
from aigc_lightning.errors import UserError

GRID = "grid"


def _save_png(x: torch.Tensor, path: Path) -> None:
    """(C, H, W) uint8 → ``path`` as PNG: the format is named, so a name like ``...png`` (no extension to PIL's
    eyes) saves too; grey stays one channel."""
    with replacing(path) as tmp:
        Image.fromarray(x.permute(1, 2, 0).squeeze(-1).numpy()).save(tmp, format="PNG")


def _relation(out: Path, folder: Path) -> str | None:
    """How the output folder overlaps an input folder (both resolved): "is", "is inside", "contains" or None."""
    if out == folder:
        return "is"
    if out.is_relative_to(folder):
        return "is inside"
    return "contains" if folder.is_relative_to(out) else None


class ImageWriter(BasePredictionWriter):
    """Saves what ``predict_step`` returns — ``{"images": (B, C, H, W) in [0, 1], "names": list[str]}`` — as
    ``output_dir/<name>.png`` (``{"videos": …}`` as ``<name>.mp4``); after the last batch, global rank 0
    assembles ``output_dir/grid.png`` from every rank's files (names are gathered across processes, so DDP
    prediction gives one complete grid).

    Args:
        output_dir: folder for the outputs (created; must not be a file).
        grid: also write ``grid.png`` (the CLI sets it for seeded samples only; never when an output is
            called ``grid``).
        nrow: images per grid row (``None``: about square).
        overwrite: replace outputs that exist already; otherwise such a file ends the run before any work
            (``check``) or, without a plan, before that file is written.
    """

    def __init__(
        self, output_dir: str, grid: bool = True, nrow: PositiveInt | None = None, overwrite: bool = False
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir).expanduser()
        self.grid, self.nrow, self.overwrite = grid, nrow, overwrite
        self.names: list[str] = []
        self.clip_fps: float | None = None  # set when the outputs are generated clips (MP4s and grid.mp4)
        self.written: set[str] = set()  # file names written by this run, to refuse a second write to one name
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise UserError(f"--output_dir {self.output_dir} is a file; pass a folder path (it is created)")

    def check(self, plan: PredictPlan | None) -> None:
        """Refuse data loss before any work (see the module docstring), then create the folder and prove it
        writable. Every rank checks the same files, so all refuse or none does."""
        out = self.output_dir.resolve()  # symlinks and ``..`` resolved: OUT may be a link to the photos
        if plan is not None:
            for name, sources in plan.outputs.items():
                if len(sources) > 1:
                    raise UserError(
                        f"{sources[0]} and {sources[1]} would both be written to {self.output_dir / name}; rename "
                        "one of them (outputs are named by file stem, sub-folders joined by '_')"
                    )
            for given in plan.inputs:
                folder = given.resolve()
                relation = _relation(out, folder) if folder.is_dir() else None
                if relation:
                    raise UserError(
                        f"--output_dir {self.output_dir} {relation} the input folder {given}; pass an output "
                        "folder outside the inputs (predict never writes among the files it reads)"
                    )
            inputs = {p.resolve() for p in plan.inputs} | {
                f.resolve() for fs in plan.outputs.values() for f in fs
            }
            for name in plan.outputs:
                if out / name in inputs:  # the entry itself is an input; a symlink to one is only replaced
                    raise UserError(
                        f"{self.output_dir / name} would replace the input file of that name; pass another "
                        "--output_dir"
                    )
            for name in plan.outputs:
                self._check_target(self.output_dir / name)
        try:
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
                pass  # unique per process: DDP ranks probe at once
        except OSError as e:
            raise UserError(
                f"cannot write to --output_dir {self.output_dir} ({e.strerror or e}); pass a folder you can create "
                "and write to"
            ) from e

    def _check_target(self, path: Path) -> None:
        if not os.path.lexists(path):
            return
        if path.is_dir() and not path.is_symlink():
            raise UserError(
                f"{path} is a folder where an output file goes; move it, or pass another --output_dir"
            )
        if not self.overwrite:
            raise UserError(
                f"{path} already exists (the first output that does); pass --overwrite true to replace the "
                "existing outputs, or another --output_dir"
            )

    def _target(self, name: str, suffix: str) -> Path:
        """The output path for ``name``, refused when this run already wrote it or (without ``overwrite``) it
        exists."""
        file_name = f"{name}{suffix}"
        if not name or "/" in name or os.sep in name:
            raise UserError(f"the prediction name {name!r} is not a file name; rename that input")
        if file_name in self.written:
            raise UserError(f"two predictions are both named {file_name}; rename one of their inputs")
        path = self.output_dir / file_name
        self._check_target(path)
        self.written.add(file_name)
        return path

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(None)
        self.names, self.written, self.clip_fps = [], set(), None

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        try:
            self._write(prediction)
        except OSError as e:
            raise UserError(
                f"cannot write {e.filename or 'an output'} ({e.strerror or e}); free space or pass a writable "
                "--output_dir (outputs written so far are kept)"
            ) from e

    def _write(self, prediction: dict) -> None:
        if "videos" in prediction:  # StyleNetwork: lazy stylised frames, encoded as they are pulled (no grid)
            for video, name in zip(prediction["videos"], prediction["names"]):
                write_video(self._target(name, ".mp4"), video["source"], video["frames"])
            return
        if "clips" in prediction:  # VideoGAN: clips (B, C, T, H, W) in [0, 1], one MP4 each, then grid.mp4
            self.clip_fps = float(prediction["fps"])
            for clip, name in zip(prediction["clips"], prediction["names"]):
                write_clip(self._target(name, ".mp4"), clip, self.clip_fps)
                self.names.append(name)
            return
        # Rounded like ``save_image``, but grey stays one channel (``save_image`` would write RGB).
        images = prediction["images"].detach().float().clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu()
        for image, name in zip(images, prediction["names"]):
            _save_png(image, self._target(name, ".png"))
            self.names.append(name)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        names = self.names
        if dist.is_available() and dist.is_initialized():
            every_rank: list[list[str]] = [[] for _ in range(dist.get_world_size())]
            dist.all_gather_object(every_rank, names)
            names = [n for rank_names in every_rank for n in rank_names]
        if not self.grid or trainer.global_rank != 0 or not names or GRID in names:
            return
        suffix = ".png" if self.clip_fps is None else ".mp4"
        path = self.output_dir / f"{GRID}{suffix}"
        if os.path.lexists(path) and not self.overwrite:
            raise UserError(
                f"{path} already exists; pass --overwrite true to replace it, or another --output_dir"
            )
        if self.clip_fps is not None:
            clips = [self.output_dir / f"{n}.mp4" for n in sorted(set(names))]
            write_clip_grid(clips, path, self.clip_fps, self.nrow)
            return
        images = [decode_image(str(self.output_dir / f"{n}.png")).float() / 255 for n in sorted(set(names))]
        images = [i.expand(3, -1, -1) if len(i) == 1 else i for i in images]
        if len({tuple(i.shape) for i in images}) > 1:
            return  # differently sized outputs: no grid
        nrow = self.nrow or max(1, round(len(images) ** 0.5))
        grid = make_grid(torch.stack(images), nrow=nrow, padding=2)  # (3, H', W') in [0, 1]
        _save_png(grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8), path)
