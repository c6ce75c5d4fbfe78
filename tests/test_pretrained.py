"""Pretrained folders: a checkpoint exported with ``--format pretrained`` loads with ``from_pretrained`` without any
unpickling and samples exactly what the checkpoint samples; VAE and style network round trips; refusals."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from lightning.pytorch.cli import instantiate_module

from aigc_lightning.errors import UserError
from aigc_lightning.export import main as export_main
from aigc_lightning.modules import GAN, VAE, StyleNetwork
from aigc_lightning.modules.pretrained import load_pretrained

pytest.importorskip("safetensors", reason="pretrained folders need safetensors (the share or dev extra)")
pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture
def gan_checkpoint(tiny_dcgan_checkpoint: Path) -> Path:
    """last.ckpt of a tiny DCGAN digits fit through the CLI (its hyper-parameters hold the network configs)."""
    return tiny_dcgan_checkpoint


def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way to unpickle (torch.load, pickle.load/loads, Unpickler) fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained unpickled something")

    for owner, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(owner, name, refuse)


def test_exported_gan_folder_samples_exactly_as_the_checkpoint(
    gan_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "my_gan"
    export_main([str(gan_checkpoint), str(folder), "--format", "pretrained"])
    assert capsys.readouterr().out.strip() == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["module"] == "aigc_lightning.modules.gan.GAN"
    assert config["hyper_parameters"]["generator"]["class_path"] == "aigc_lightning.nets.Generator"
    card = (folder / "README.md").read_text()
    assert "training batches: 2" in card and "GAN.from_pretrained" in card

    expected = GAN.load_from_checkpoint(gan_checkpoint, map_location="cpu").sample(6, seed=4)
    with monkeypatch.context() as m:
        no_unpickling(m)
        model = GAN.from_pretrained(folder)
        loaded_any = load_pretrained(folder)
    assert torch.equal(model.sample(6, seed=4), expected)
    assert isinstance(loaded_any, GAN) and torch.equal(loaded_any.sample(6, seed=4), expected)
    # a folder of one model is refused by another model's class, with the class to use
    with pytest.raises(UserError, match="holds a GAN, not a VAE; use GAN.from_pretrained"):
        VAE.from_pretrained(folder)


def test_vae_round_trip_samples_and_reconstructs_the_same(tmp_path: Path) -> None:
    config = {
        "encoder": {
            "class_path": "aigc_lightning.nets.MLPEncoder",
            "init_args": {"hidden_dim": 8, "latent_dim": 3},
        },
        "decoder": {
            "class_path": "aigc_lightning.nets.MLPDecoder",
            "init_args": {"hidden_dim": 8, "latent_dim": 3},
        },
    }
    vae = instantiate_module(VAE, config)
    vae.hparams.update(config)  # what LightningCLI leaves in hparams: the network configs
    vae.save_pretrained(tmp_path / "vae")
    loaded = VAE.from_pretrained(tmp_path / "vae")
    assert torch.equal(loaded.sample(5, seed=7), vae.eval().sample(5, seed=7))
    x = torch.rand(2, *loaded.sample(1).shape[1:])
    assert torch.equal(loaded.reconstruct(x), vae.reconstruct(x))


def test_style_network_round_trip_stylizes_the_same_and_downloads_nothing(tmp_path: Path) -> None:
    config = {
        "network": {
            "class_path": "aigc_lightning.nets.TransformNet",
            "init_args": {"width": 4, "num_residual": 1},
        },
        "features": {"class_path": "aigc_lightning.nets.VGGFeatures", "init_args": {"weights": "none"}},
        "content_layers": ["relu1_2"],
        "style_layers": ["relu1_1"],
    }
    net = instantiate_module(StyleNetwork, config)
    net.hparams.update(config)
    with torch.no_grad():
        for p in net.network.parameters():
            p.add_(0.1 * torch.randn_like(p))  # not the initial weights
    net.save_pretrained(tmp_path / "style")
    saved = json.loads((tmp_path / "style" / "config.json").read_text())
    saved["hyper_parameters"]["features"]["init_args"]["weights"] = (
        "imagenet"  # would download if rebuilt as is
    )
    (tmp_path / "style" / "config.json").write_text(json.dumps(saved))
    loaded = StyleNetwork.from_pretrained(tmp_path / "style")
    x = torch.rand(1, 3, 12, 14)
    assert torch.equal(loaded.stylize(x), net.eval().stylize(x))


def test_models_built_in_python_without_configs_are_refused_with_the_way_out(tmp_path: Path) -> None:
    from aigc_lightning.nets import Discriminator, Generator

    gan = GAN(Generator(latent_dim=4, width=4), Discriminator(width=4), mean_latent_samples=8)
    with pytest.raises(UserError, match="cannot describe GAN.generator"):
        gan.save_pretrained(tmp_path / "x")


def test_untrusted_class_paths_missing_folders_and_offline_hub_ids_are_one_line_errors(
    gan_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "f"
    export_main([str(gan_checkpoint), str(folder), "--format", "pretrained"])
    config = json.loads((folder / "config.json").read_text())
    config["hyper_parameters"]["generator"]["class_path"] = "os.system"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="names class 'os.system'.*refused"):
        GAN.from_pretrained(folder)
    with pytest.raises(UserError, match="does not exist"):
        GAN.from_pretrained(tmp_path / "nothing_here")
    pytest.importorskip("huggingface_hub", reason="Hub ids need huggingface_hub (the share or dev extra)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="cannot fetch Hub repo someone/some-gan") as info:
        GAN.from_pretrained("someone/some-gan")
    assert "\n" not in str(info.value)


def test_push_to_hub_uploads_the_folder(gan_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub", reason="push_to_hub needs huggingface_hub")
    uploaded: dict = {}

    class FakeApi:  # the two HfApi calls push_to_hub makes; no network
        def __init__(self, token=None):
            uploaded["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False):
            uploaded["repo"] = (repo_id, private, exist_ok)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path):
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    url = GAN.load_from_checkpoint(gan_checkpoint, map_location="cpu").push_to_hub("me/gan", token="t")
    assert url == "https://huggingface.co/me/gan"
    assert uploaded == {"token": "t", "repo": ("me/gan", False, True),
                        "files": ["README.md", "config.json", "model.safetensors"]}  # fmt: skip
