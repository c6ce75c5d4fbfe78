"""2-process CPU DDP (gloo) of every model through the CLI: weights identical across ranks after training, every
predicted sample written exactly once, validation metrics equal to the single-process values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torchvision.io import decode_image

from aigc_lightning.modules import GAN
from conftest import ROOT, child_env

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def cli(*args: str, cwd: Path) -> None:
    """``python -m aigc_lightning …`` in a subprocess (DDP launches one more process per extra rank)."""
    env = child_env()
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "aigc_lightning", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def same_weights(folder: Path) -> None:
    rank0, rank1 = torch.load(folder / "rank0.pt"), torch.load(folder / "rank1.pt")
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "ranks diverged"


def predicted_once(folder: Path, expected: list[str]) -> None:
    per_rank = [(folder / f"names{r}.txt").read_text().split() for r in (0, 1)]
    assert all(per_rank), "a rank predicted nothing: the data was not split"
    assert sorted(per_rank[0] + per_rank[1]) == sorted(expected)  # each exactly once, none missing


GAN_ARGS = [
    # explicit rather than configs/gan/dcgan_digits.yaml: that config's metric callbacks evolve independently
    "--seed_everything", "0", "--model", "aigc_lightning.modules.GAN",
    "--model.generator", "aigc_lightning.nets.Generator", "--model.generator.width", "8",
    "--model.discriminator", "aigc_lightning.nets.Discriminator", "--model.discriminator.width", "8",
    "--images.log_images_every_n_batches", "0", "--model.mean_latent_samples", "64", "--model.bn_stat_batches", "1",
    "--data", "aigc_lightning.datamodules.DigitsDataModule", "--data.image_size", "28", "--data.batch_size", "8", *QUIET,
]  # fmt: skip


def test_gan_ddp_fit_and_predict(tmp_path):
    cli("fit", *GAN_ARGS, *DDP, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "2",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks", "reliability_toy.SaveWeights",
        "--trainer.callbacks.folder", str(tmp_path), cwd=tmp_path)  # fmt: skip
    # G, D and the EMA generator; BN running statistics are per rank under DDP unless --trainer.sync_batchnorm
    same_weights(tmp_path)
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2 * 3  # 3 batches per rank, G + D steps

    out = tmp_path / "out"
    cli("predict", *GAN_ARGS, *DDP, "--ckpt_path", str(ckpt), "--output_dir", str(out), "--num_samples", "7",
        "--seed", "5", "--trainer.callbacks", "reliability_toy.RecordNames", "--trainer.callbacks.folder",
        str(tmp_path), cwd=tmp_path)  # fmt: skip
    names = [f"{i:06d}" for i in range(7)]
    predicted_once(tmp_path, names)  # 7 seeds over 2 ranks: no padding duplicates
    assert sorted(p.stem for p in out.glob("0*.png")) == names and (out / "grid.png").exists()
    # the same images a single process gives for seeds 5..11
    expected = GAN.load_from_checkpoint(ckpt, map_location="cpu").sample(7, seed=5)
    written = torch.stack([decode_image(str(out / f"{n}.png")).float() / 255 for n in names])
    assert (written - expected).abs().max() <= 1 / 255 + 1e-6  # PNG quantisation only


def test_torchrun_recipe(tmp_path):
    # configs/slurm/torchrun.sh on one CPU node: torchrun starts both ranks, Lightning must not start more
    from reliability_toy import toy_fit_args

    env = child_env()
    args = toy_fit_args(tmp_path, 1, 3, *DDP[2:], "--trainer.callbacks", "reliability_toy.SaveWeights",
                        "--trainer.callbacks.folder", str(tmp_path))  # fmt: skip
    args[args.index("--trainer.accelerator") + 1] = "cpu"
    # torchrun through the running interpreter: a venv that is not activated has no `torchrun` on PATH
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        "-m",
        "aigc_lightning",
    ]
    proc = subprocess.run(
        cmd + args, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    same_weights(tmp_path)
    assert len(list((tmp_path / "lightning_logs").iterdir())) == 1  # one run, not one per process


def test_slurm_environment_is_detected(monkeypatch):
    # what the sbatch script relies on: inside an srun task Lightning reads rank and world size from SLURM
    from lightning.pytorch import Trainer
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    slurm = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
             "SLURM_NODEID": "0", "SLURM_NNODES": "1", "SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "dcgan",
             "SLURM_NODELIST": "node001"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        # SLURMEnvironment writes these into os.environ; recorded here so monkeypatch removes them again; a
        # leftover MASTER_ADDR=node001 would hang every later DDP test of this session in rendezvous
        monkeypatch.setenv(key, "recorded")
        monkeypatch.delenv(key)
    trainer = Trainer(accelerator="cpu", devices=1, num_nodes=1, logger=False, enable_checkpointing=False)
    assert isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
    assert trainer._accelerator_connector.cluster_environment.main_address == "node001"


VAE_ARGS = [
    "--config", str(ROOT / "configs/vae/vae_digits.yaml"),
    "--model.encoder.init_args.hidden_dim", "16", "--model.decoder.init_args.hidden_dim", "16",
    "--model.val_importance_samples", "2", "--images.log_images_every_n_batches", "0",
    "--trainer.check_val_every_n_epoch", "1",
    "--data.batch_size", "30", "--data.val_fraction", "0.0495", *QUIET,
]  # fmt: skip


def test_vae_ddp_fit_and_metrics_match_single_process(tmp_path):
    # 89 validation images (odd): a padding DistributedSampler would count one of them twice on 2 ranks
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir(), single.mkdir()
    cli("fit", *VAE_ARGS, *DDP, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks+", "reliability_toy.SaveWeights",
        "--trainer.callbacks.folder", str(ddp), "--trainer.callbacks+", "reliability_toy.RecordMetrics",
        "--trainer.callbacks.folder", str(ddp), cwd=tmp_path)  # fmt: skip
    same_weights(ddp)
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    cli("validate", *VAE_ARGS, "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--ckpt_path", str(ckpt),
        "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks", "reliability_toy.RecordMetrics",
        "--trainer.callbacks.folder", str(single), cwd=tmp_path)  # fmt: skip
    both, one = torch.load(ddp / "metrics0.pt"), torch.load(single / "metrics0.pt")
    # the deterministic metrics (analytic KL, active units) over all 89 images, each counted once
    for key in ("val/kl", "val/active_units"):
        assert torch.allclose(both[key], one[key], rtol=1e-5, atol=1e-6), (key, both[key], one[key])
    # nelbo/recon/nll_iw draw z from each process's own RNG: equal only up to Monte-Carlo noise
    assert torch.allclose(both["val/nelbo"], one["val/nelbo"], rtol=0.1)


def test_style_transfer_ddp_predict_each_image_once(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["a", "b", "c"]  # 3 images over 2 ranks: uneven, nothing may be repeated or dropped
    for name in names:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(photos / f"{name}.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "style.png")
    out = tmp_path / "out"
    cli("predict", "--config", str(ROOT / "configs/style/gatys_offline.yaml"), *DDP, *QUIET,
        "--data.content", str(photos), "--data.style", str(tmp_path / "style.png"), "--data.image_size", "32",
        "--model.scales", "[1.0]", "--model.scale_steps", "[1]", "--model.optimizer.init_args.max_iter", "2",
        "--output_dir", str(out), "--trainer.callbacks", "reliability_toy.RecordNames",
        "--trainer.callbacks.folder", str(tmp_path), cwd=tmp_path)  # fmt: skip
    predicted_once(tmp_path, names)
    assert sorted(p.stem for p in out.glob("*.png") if p.stem != "grid") == names


def test_main_destroys_the_process_group(monkeypatch, tmp_path):
    """A gloo group left alive at exit aborts the process after a successful run (exit -6); main() closes it."""
    import torch.distributed as dist

    from aigc_lightning import cli as cli_module

    monkeypatch.setattr(
        cli_module,
        "AigcCLI",
        lambda args: dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1),
    )
    cli_module.main([])
    assert not dist.is_initialized()
