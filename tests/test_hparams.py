"""Plain checkpoints: hyper-parameters and checkpoints hold plain values whatever a module was given, so
``torch.load`` (``weights_only=True``) and ``load_from_checkpoint`` work for CLI runs, Python-built modules and
modules loaded, trained further and saved again."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from jsonargparse import Namespace
from jsonargparse.typing import ClosedUnitInterval, PositiveInt
from lightning.pytorch import Trainer

from aigc_lightning.cli import main
from aigc_lightning.datamodules import DigitsDataModule
from aigc_lightning.modules import GAN
from aigc_lightning.modules.hparams import plain
from aigc_lightning.nets import Discriminator, Generator
from conftest import CONFIGS


def test_plain_turns_constrained_numbers_into_ints_and_floats_at_any_depth():
    value = {
        "a": PositiveInt(3),
        "b": [ClosedUnitInterval(0.5), (PositiveInt(2), "x")],
        "n": Namespace(k=PositiveInt(1)),
    }
    out = plain(value)
    assert out == {"a": 3, "b": [0.5, (2, "x")], "n": {"k": 1}}
    assert type(out["a"]) is int and type(out["b"][0]) is float and type(out["b"][1][0]) is int
    assert type(out["n"]["k"]) is int and out["b"][1][1] == "x"
    state = OrderedDict(w=torch.ones(2))
    state._metadata = {"": {"version": 1}}  # what load_state_dict reads; an unchanged dict is the same object
    assert plain(state) is state and plain(True) is True


def tiny_trainer(root: Path, batches: int) -> Trainer:
    return Trainer(accelerator="cpu", max_steps=2 * batches, limit_val_batches=0, default_root_dir=root,
                   enable_progress_bar=False, enable_model_summary=False, logger=False)  # fmt: skip


def test_a_python_built_module_saves_plain_values_and_loads_with_its_networks(tmp_path):
    nets = {
        "generator": Generator(latent_dim=8, image_size=32, width=4),
        "discriminator": Discriminator(width=4),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Lightning's "is an instance of nn.Module" warning
        model = GAN(**nets, n_critic=PositiveInt(1), ema_decay=ClosedUnitInterval(0.9), mean_latent_samples=64)
    assert "generator" not in model.hparams and type(model.hparams.n_critic) is int
    trainer = tiny_trainer(tmp_path, batches=1)
    trainer.fit(model, DigitsDataModule(image_size=32, batch_size=8))
    path = tmp_path / "python.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path)  # weights_only=True: no pickled network, no constrained number
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = GAN.load_from_checkpoint(path, **nets)
    torch.testing.assert_close(loaded.sample(2, seed=0), model.sample(2, seed=0))


def test_a_loaded_cli_checkpoint_saved_again_still_loads_without_arguments(tmp_path):
    main(["fit", "--config", str(CONFIGS / "gan/dcgan_digits.yaml"), "--trainer.max_steps", "2",
          "--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4",
          "--model.mean_latent_samples", "64", "--model.bn_stat_batches", "1", "--trainer.callbacks", "[]",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    model = GAN.load_from_checkpoint(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")
    assert model.hparams.generator["class_path"] == "aigc_lightning.nets.Generator"  # the config, taken back
    trainer = tiny_trainer(tmp_path / "again", batches=2)
    trainer.fit(model, DigitsDataModule(image_size=32, batch_size=8))
    path = tmp_path / "again.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path)
    again = GAN.load_from_checkpoint(path)
    assert again.batches == model.batches
    torch.testing.assert_close(again.sample(2, seed=0), model.sample(2, seed=0))
