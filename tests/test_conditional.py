"""Class-conditional generation: labels from the data, the conditional DCGAN's networks, ``GAN.sample(labels=…)`` and
``predict --class_label`` through the CLI (docs/conditional.md)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from aigc_lightning.callbacks.class_metrics import ClassAccuracy, class_accuracy
from aigc_lightning.cli import main
from aigc_lightning.datamodules import DigitsDataModule, ImageFolderDataModule
from aigc_lightning.errors import UserError
from aigc_lightning.labels import resolve_labels
from aigc_lightning.modules import GAN
from aigc_lightning.nets import Discriminator, Generator
from conftest import CONFIGS, write_pngs

CONFIG = str(CONFIGS / "gan" / "cdcgan_digits.yaml")
TINY = ["--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4",
        "--model.generator.init_args.embed_dim", "4", "--model.mean_latent_samples", "64",
        "--model.bn_stat_batches", "1", "--trainer.callbacks", "[]", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--images.log_images_every_n_batches", "0"]  # fmt: skip


def tiny_gan(num_classes: int = 3) -> GAN:
    torch.manual_seed(0)
    g = Generator(latent_dim=8, channels=1, image_size=28, width=4, num_classes=num_classes, embed_dim=4)
    d = Discriminator(channels=1, image_size=28, width=4, num_classes=num_classes)
    return GAN(g, d, mean_latent_samples=16, bn_stat_batches=1, conditional=num_classes > 0)


def test_label_changes_the_image_and_label_plus_seed_fixes_it():
    gan = tiny_gan()
    a, b = gan.sample(4, seed=3, labels=1), gan.sample(4, seed=3, labels=1)
    assert torch.equal(a, b)
    assert not torch.allclose(a, gan.sample(4, seed=3, labels=2))
    # labels=None cycles the classes: image i has class i mod 3
    assert torch.equal(gan.sample(4, seed=3), gan.sample(4, seed=3, labels=[0, 1, 2, 0]))
    assert gan.sample(4, seed=3, truncation_psi=0.5, labels=1).shape == (4, 1, 28, 28)


def test_unconditional_networks_are_unchanged_by_the_option():
    torch.manual_seed(0)
    g0 = Generator(latent_dim=8, width=4)
    torch.manual_seed(0)
    g1 = Generator(latent_dim=8, width=4, num_classes=0)
    assert not hasattr(g1, "embed") and g0.state_dict().keys() == g1.state_dict().keys()
    assert all(torch.equal(g0.state_dict()[k], g1.state_dict()[k]) for k in g0.state_dict())
    with pytest.raises(UserError, match="unconditional"):
        tiny_gan(0).sample(2, seed=0, labels=1)


def test_projection_discriminator_closed_form():
    """D(x, y) = ψ(φ(x)) + ⟨V_y, Σ_hw φ(x)⟩: with V_0 = 0 and V_1 = 1, D(x, 1) − D(x, 0) = Σ φ(x) over C, H, W,
    and D(x, 0) is the unconditional network with the same weights."""
    torch.manual_seed(0)
    d = Discriminator(channels=1, image_size=28, width=2, norm="none", num_classes=2).eval()
    plain = Discriminator(channels=1, image_size=28, width=2, norm="none")
    plain.load_state_dict({k: v for k, v in d.state_dict().items() if not k.startswith("embed")})
    with torch.no_grad():
        d.embed.weight.copy_(torch.stack([torch.zeros(4), torch.ones(4)]))
        x = torch.rand(3, 1, 28, 28) * 2 - 1
        features = d.net[:-1](x)  # φ(x): (3, 4, 7, 7)
        zero, one = d(x, torch.zeros(3, dtype=torch.long)), d(x, torch.ones(3, dtype=torch.long))
        torch.testing.assert_close(zero, plain(x))
        torch.testing.assert_close(one - zero, features.sum((1, 2, 3)))
    with pytest.raises(UserError, match="labels"):
        d(x)


def test_labels_rules():
    assert resolve_labels(None, 5, 3).tolist() == [0, 1, 2, 0, 1]
    assert resolve_labels("b", 2, 3, ["a", "b", "c"]).tolist() == [1, 1]
    assert resolve_labels(torch.tensor([2, 0]), 2, 3).tolist() == [2, 0]
    for bad in (7, "zebra", [0, 1, 2]):
        with pytest.raises(UserError):
            resolve_labels(bad, 2, 3, ["a", "b", "c"])


def test_datamodules_name_their_classes(tmp_path):
    assert DigitsDataModule().num_classes == 10
    folder = tmp_path / "labelled"
    for name in ("zebra", "cat", "dog"):
        write_pngs(folder / name, n=2)
    dm = ImageFolderDataModule(root=str(folder), image_size=8, channels=1)
    assert dm.class_names == ["cat", "dog", "zebra"] and dm.num_classes == 3  # sorted, as torchvision
    flat = ImageFolderDataModule(root=str(write_pngs(tmp_path / "flat", n=2)))
    assert flat.class_names is None and flat.num_classes == 0


def test_flat_folder_gives_one_line(tmp_path, capsys):
    flat = write_pngs(tmp_path / "flat", n=4, size=8)
    args = ["fit", "--config", CONFIG, *TINY, "--data", "aigc_lightning.datamodules.ImageFolderDataModule",
            "--data.root", str(flat), "--data.image_size", "32", "--data.channels", "1",
            "--trainer.default_root_dir", str(tmp_path / "runs")]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(args)
    message = str(e.value.code)
    assert message.startswith("error: image folder") and str(flat) in message and "sub-folder per class" in message
    assert "\n" not in message


def test_fit_then_predict_class_label(tmp_path):
    folder = tmp_path / "classes"
    for name in ("one", "seven"):
        write_pngs(folder / name, n=8, size=8)
    runs = tmp_path / "runs"
    data = ["--data", "aigc_lightning.datamodules.ImageFolderDataModule", "--data.root", str(folder),
            "--data.image_size", "28", "--data.channels", "1", "--data.batch_size", "4", "--data.val_fraction", "0"]  # fmt: skip
    main(["fit", "--config", CONFIG, *TINY, *data, "--trainer.max_steps", "4", "--trainer.default_root_dir", str(runs),
          "--checkpoint.dirpath", str(runs / "ckpt")])  # fmt: skip
    ckpt = runs / "ckpt" / "last.ckpt"
    gan = GAN.load_from_checkpoint(ckpt, map_location="cpu")
    assert gan.num_classes == 2 and gan.hparams.class_names == ["one", "seven"]
    assert gan.generator.num_classes == gan.discriminator.num_classes == 2
    for label, out in (("seven", "by_name"), ("1", "by_index")):
        main(["predict", "--config", CONFIG, *TINY, *data, "--ckpt_path", str(ckpt), "--output_dir",
              str(tmp_path / out), "--num_samples", "3", "--seed", "5", "--class_label", label])  # fmt: skip
    expected = gan.sample(3, seed=5, labels=1)
    for out in ("by_name", "by_index"):
        for i in range(3):
            png = torch.tensor(list(Image.open(tmp_path / out / f"{i:06d}.png").getdata()), dtype=torch.float32)
            assert (png.view(28, 28) / 255 - expected[i, 0]).abs().max() <= 1 / 255 + 1e-6
    assert (tmp_path / "by_name" / "grid.png").is_file()
    with pytest.raises(SystemExit) as e:
        main(["predict", "--config", CONFIG, *TINY, *data, "--ckpt_path", str(ckpt), "--output_dir",
              str(tmp_path / "bad"), "--class_label", "eight"])  # fmt: skip
    assert "one, seven" in str(e.value.code)


def test_conditional_training_uses_the_labels(tmp_path):
    """A few batches through Lightning: both networks and the label embeddings change, and D saw labels."""
    from lightning.pytorch import Trainer

    gan = tiny_gan(10)
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    dm = DigitsDataModule(image_size=28, batch_size=16)
    trainer = Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, accelerator="cpu")  # fmt: skip
    trainer.fit(gan, datamodule=dm)
    for key in ("generator.embed.weight", "discriminator.embed.weight"):
        assert not torch.equal(before[key], gan.state_dict()[key]), key


def test_class_accuracy_counts_and_logs():
    class Fixed(torch.nn.Module):  # "classifies" every image as class 1
        def forward(self, x):
            return x, torch.nn.functional.one_hot(torch.ones(len(x), dtype=torch.long), 3).float()

    hits, count = class_accuracy(Fixed(), torch.zeros(5, 1, 4, 4), torch.tensor([0, 1, 2, 1, 1]), 3)
    assert hits.tolist() == [0, 3, 0] and count.tolist() == [1, 3, 1]

    from lightning.pytorch import Trainer

    gan = tiny_gan(10)
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                      limit_val_batches=1, callbacks=[ClassAccuracy(num_samples=20, batch_size=10)])  # fmt: skip
    metrics = trainer.validate(gan, datamodule=DigitsDataModule(image_size=28, batch_size=16), verbose=False)[0]
    assert 0 <= metrics["val/class_acc_min"] <= metrics["val/class_acc"] <= 1
    with pytest.raises(UserError, match="class-conditional"):
        ClassAccuracy().setup(trainer, tiny_gan(0), "validate")


def test_conditional_vae_labels_and_bounds():
    from aigc_lightning.modules import VAE
    from aigc_lightning.nets import MLPDecoder, MLPEncoder

    torch.manual_seed(0)
    vae = VAE(MLPEncoder(1, 8, 16, 4, num_classes=3), MLPDecoder(1, 8, 16, 4, num_classes=3), conditional=True)
    a = vae.sample(4, seed=2, labels=1)
    assert torch.equal(a, vae.sample(4, seed=2, labels=1)) and not torch.allclose(a, vae.sample(4, seed=2, labels=2))
    x01, y = torch.rand(5, 1, 8, 8).round(), torch.tensor([0, 1, 2, 0, 1])
    recon, kl, _, _ = vae.elbo_terms(x01, y)
    assert recon.shape == kl.shape == (5,)
    assert vae.log_likelihood_iw(x01, 3, y).shape == (5,)
    assert set(vae.images_to_log(16)) == {"prior_samples", "class_traversal"}
    with pytest.raises(UserError, match="num_classes"):
        VAE(MLPEncoder(1, 8, 16, 4, num_classes=3), MLPDecoder(1, 8, 16, 4))
    torch.manual_seed(0)
    plain = MLPEncoder(1, 8, 16, 4).state_dict()
    torch.manual_seed(0)
    same = MLPEncoder(1, 8, 16, 4, num_classes=0).state_dict()
    assert plain.keys() == same.keys() and all(torch.equal(v, same[k]) for k, v in plain.items())


def test_conditional_stylegan2_as_nvlabs():
    from aigc_lightning.gan_latents import StyleLatents
    from aigc_lightning.nets import StyleGAN2Discriminator, StyleGAN2Generator

    torch.manual_seed(0)
    sizes = {"image_size": 8, "channels": 1, "channel_max": 8}
    g = StyleGAN2Generator(latent_dim=8, n_mlp=2, num_classes=3, **sizes)
    d = StyleGAN2Discriminator(num_classes=3, **sizes)
    gan = GAN(g, d, latents=StyleLatents(), mean_latent_samples=30, conditional=True)
    a = gan.sample(2, seed=1, labels=0)
    assert torch.equal(a, gan.sample(2, seed=1, labels=0)) and not torch.allclose(a, gan.sample(2, seed=1, labels=1))
    # psi 0: every z becomes its class's own mean w, so two seeds of one class give one image, two classes two
    centre = gan.sample(4, seed=3, truncation_psi=0, labels=[2, 2, 0, 0])
    torch.testing.assert_close(centre[0], centre[1])
    assert not torch.allclose(centre[0], centre[2])
    x = torch.rand(2, 1, 8, 8)
    assert d(x, torch.tensor([0, 1])).shape == (2,)
    with pytest.raises(UserError, match="rosinality"):
        g.to_rosinality()


SHRINK = {
    "gan/cdcgan_mnist": ["--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4"],
    "gan/cdcgan_cifar10": ["--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4"],
    "gan/stylegan2_cond_cifar10": ["--model.generator.init_args.latent_dim", "8",
                                   "--model.generator.init_args.channel_max", "8",
                                   "--model.discriminator.init_args.channel_max", "8",
                                   "--trainer.precision", "32-true"],
    "vae/cvae_mnist": [],
}  # fmt: skip


@pytest.mark.parametrize("config", list(SHRINK))
def test_gpu_configs_run_on_generated_class_folders(tmp_path, config):
    """The configs whose data is downloaded: one batch on generated class folders, classes linked in."""
    channels, size = (3, 32) if "cifar" in config else (1, 28)
    for name in ("a", "b"):
        write_pngs(tmp_path / "data" / name, n=4, size=size, channels=channels)
    main(["fit", "--config", str(CONFIGS / f"{config}.yaml"), *SHRINK[config], "--trainer.fast_dev_run", "1",
          "--trainer.accelerator", "cpu", "--trainer.callbacks", "[]", "--trainer.default_root_dir", str(tmp_path),
          "--data", "aigc_lightning.datamodules.ImageFolderDataModule", "--data.root", str(tmp_path / "data"),
          "--data.image_size", str(size), "--data.channels", str(channels), "--data.batch_size", "4",
          "--data.num_workers", "0", "--trainer.enable_progress_bar", "false"])  # fmt: skip


def test_conditional_gan_resume_is_bit_for_bit(tmp_path, monkeypatch):
    """test_resume_models' GAN run, conditional: labels drawn for fakes come from the restored RNG states too."""
    import test_resume_models

    monkeypatch.setitem(
        test_resume_models.MODELS, "gan", [*test_resume_models.MODELS["gan"], "--model.conditional", "true"]
    )
    test_resume_models.test_model_resume_is_bit_for_bit(tmp_path, "gan")
    ckpt = torch.load(tmp_path / "whole/lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert "generator.embed.weight" in ckpt["state_dict"] and "discriminator.embed.weight" in ckpt["state_dict"]
