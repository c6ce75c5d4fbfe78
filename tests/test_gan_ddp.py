"""GAN under the plain ``--trainer.strategy ddp``: 2 CPU processes (gloo) through the CLI, ranks end bit-identical."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

from conftest import ROOT, child_env


class SaveRankState(Callback):
    """Saves every rank's final module state and what its data loader served (used by the child processes)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.first_batch_sum: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch_sum is None:
            self.first_batch_sum = float(batch[0].double().sum())

    def on_fit_end(self, trainer, pl_module) -> None:  # after GAN.on_train_end's buffer sync
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        info = {
            "world_size": trainer.world_size,
            "batches": pl_module.batches,
            "num_training_batches": trainer.num_training_batches,
            "sampler": type(trainer.train_dataloader.sampler).__name__,
            "first_batch_sum": self.first_batch_sum,
        }
        torch.save({"state": state, "info": info}, self.out_dir / f"rank{trainer.global_rank}.pt")


def test_plain_ddp_two_processes_end_bit_identical(tmp_path):
    env = child_env()
    env["OMP_NUM_THREADS"] = "1"
    callback = f'{{"class_path": "test_gan_ddp.SaveRankState", "init_args": {{"out_dir": "{tmp_path}"}}}}'
    cmd = [
        sys.executable, "-m", "aigc_lightning", "fit", "--config", str(ROOT / "configs/gan/dcgan_digits.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_steps", "6", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "logs"), f"--trainer.callbacks+={callback}",
        "--model.init_args.generator.init_args.width", "4", "--model.init_args.discriminator.init_args.width", "4",
        "--images.log_images_every_n_batches", "2", "--model.init_args.r1",
        '{"class_path": "aigc_lightning.gan_regularizers.R1", "init_args": {"gamma": 1.0, "every": 2}}',
        "--data.init_args.batch_size", "16",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for info in (r0["info"], r1["info"]):
        # max_steps counts optimizer steps: 6 = 3 batches of (D step + G step).
        assert info["world_size"] == 2 and info["batches"] == 3
        assert info["sampler"] == "DistributedSampler"
        assert info["num_training_batches"] == (1617 + 1) // 2 // 16  # each rank gets half of the 1617 images
    assert r0["info"]["first_batch_sum"] != r1["info"]["first_batch_sum"]  # different shards
    assert r0["state"].keys() == r1["state"].keys()
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    # Training did happen: the trained generator differs from its EMA, which differs from a fresh init.
    g = [k for k in r0["state"] if k.startswith("generator.") and k.endswith("weight")]
    assert any(not torch.equal(r0["state"][k], r0["state"][k.replace("generator.", "generator_ema.", 1)]) for k in g)
    assert (tmp_path / "logs/lightning_logs/version_0/checkpoints/last.ckpt").exists()
