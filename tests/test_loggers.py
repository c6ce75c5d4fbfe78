"""Image grids reach every logger's own store: one short DCGAN fit with TensorBoard, W&B (offline), MLflow (a local
``file:`` store) and CSV loggers at once, then each store is read back."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lightning.callbacks import images as images_module
from aigc_lightning.cli import main
from conftest import CONFIGS, TINY_DCGAN

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_WANDB = importlib.util.find_spec("wandb") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
GRID_TAGS = ("train/samples_ema", "train/interpolation")


def loggers(root: Path) -> list[dict]:
    """The ``--trainer.logger`` list: every logger whose package is installed, each writing under ``root``."""
    chosen = [
        {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": f"{root}/tb"},
        },
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": f"{root}/csv"}},
    ]
    if HAS_WANDB:
        wandb_args = {"save_dir": f"{root}/wandb", "offline": True, "project": "aigc-test"}
        chosen.append({"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": wandb_args})
    if HAS_MLFLOW:
        mlflow_args = {"tracking_uri": f"file:{root}/mlruns", "experiment_name": "aigc-test"}
        chosen.append({"class_path": "lightning.pytorch.loggers.MLFlowLogger", "init_args": mlflow_args})
    return chosen


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fit of 3 batches, grids after the first batch and at the end (batch 3), with all loggers."""
    root = tmp_path_factory.mktemp("loggers")
    mp = pytest.MonkeyPatch()
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root / "wandb"),
                       "WANDB_CONFIG_DIR": str(root / "wandb_config"), "WANDB_CACHE_DIR": str(root / "wandb_cache"),
                       "MLFLOW_ALLOW_FILE_STORE": "true"}.items():  # fmt: skip
        mp.setenv(key, value)
    (root / "wandb").mkdir()
    torch.set_num_threads(1)
    try:
        main([
            "fit", "--config", str(CONFIGS / "gan/dcgan_digits.yaml"), *TINY_DCGAN,
            "--trainer.max_steps", "6", "--trainer.limit_val_batches", "0", "--trainer.callbacks", "[]",
            "--trainer.enable_progress_bar", "false", "--images.num_images", "8", "--trainer.log_every_n_steps", "1",
            "--trainer.logger", json.dumps(loggers(root)), "--trainer.default_root_dir", str(root),
        ])  # fmt: skip
        if HAS_WANDB:  # what the end of the process does: the run's last media reach its folder
            import wandb

            wandb.finish()
    finally:
        mp.undo()
    return root


def grid_ok(path: Path) -> None:
    """A readable RGB PNG holding an 8-image grid of 32 px digits (2 px padding: 8·34+2 wide, 36 high)."""
    image = np.asarray(Image.open(path))
    assert image.shape == (36, 274, 3), (path, image.shape)
    assert image.std() > 0, path  # not a blank picture


def test_tensorboard_events_hold_the_grids(run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (run / "tb").rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    for tag in GRID_TAGS:
        steps = [event.step for event in acc.Images(tag)]
        assert steps == [1, 3], (tag, steps)


def test_csv_logger_gets_png_files_beside_metrics_csv(run: Path) -> None:
    (metrics,) = (run / "csv").rglob("metrics.csv")
    for tag in GRID_TAGS:
        files = sorted((metrics.parent / "images" / tag).glob("*.png"))
        assert [f.name for f in files] == ["step_000001.png", "step_000003.png"]
        for f in files:
            grid_ok(f)


@pytest.mark.skipif(not HAS_WANDB, reason="wandb is not installed (pip install wandb, or the dev extra)")
def test_wandb_offline_run_has_the_image_files(run: Path) -> None:
    (offline,) = (run / "wandb").rglob("offline-run-*")
    media = sorted((offline / "files" / "media" / "images" / "train").glob("*.png"))
    for tag in ("samples_ema", "interpolation"):  # file names: <tag>_<W&B's own step>_<hash>.png
        mine = [f for f in media if f.name.startswith(f"{tag}_")]
        assert len(mine) == 2, [f.name for f in media]
        for f in mine:
            grid_ok(f)


@pytest.mark.skipif(
    not HAS_MLFLOW, reason="mlflow is not installed (pip install mlflow-skinny, or the dev extra)"
)
def test_mlflow_run_has_the_image_artifacts(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the local file store behind this
    client = MlflowClient(tracking_uri=f"file:{run}/mlruns")
    (experiment,) = [e for e in client.search_experiments() if e.name == "aigc-test"]
    (run_info,) = client.search_runs([experiment.experiment_id])
    for tag in GRID_TAGS:
        names = [a.path for a in client.list_artifacts(run_info.info.run_id, tag)]
        assert names == [f"{tag}/step_000001.png", f"{tag}/step_000003.png"]
        grid_ok(Path(client.download_artifacts(run_info.info.run_id, names[-1], str(run / "download"))))


def test_a_logger_without_images_is_warned_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoImages:  # a logger with neither a known class nor an add_image
        experiment = object()

    monkeypatch.setattr(images_module, "_WARNED", set())
    module = SimpleNamespace(trainer=SimpleNamespace(global_rank=0), loggers=[NoImages()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            images_module.log_image_grid(module, "train/x", torch.rand(2, 1, 4, 4), step)
    lines = [str(w.message) for w in caught if "NoImages" in str(w.message)]
    assert len(lines) == 1 and "not logged there" in lines[0]
