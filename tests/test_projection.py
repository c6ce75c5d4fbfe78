"""StyleGAN2 projection and editing with tiny random generators (16 px): recovery of a known latent (w and w+),
noise regularisation, SeFa directions, the CLI round trip fit → latent file → predict, both generator file kinds,
2-process DDP over a folder, and one-line errors for bad paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torchvision.utils import save_image

from aigc_lightning import losses
from aigc_lightning.callbacks import ProjectionWriter
from aigc_lightning.cli import AigcCLI, main
from aigc_lightning.datamodules import ProjectionDataModule
from aigc_lightning.modules import Projector
from aigc_lightning.modules.generator_file import load_generator
from aigc_lightning.nets import StyleGAN2Generator
from aigc_lightning.nets.latent_edits import layer_group, load_directions, sefa_directions
from aigc_lightning.nets.rosinality import save_rosinality
from conftest import CONFIGS
from test_ddp import DDP, QUIET, cli

CONFIG = str(CONFIGS / "gan" / "stylegan2_project.yaml")
FAST = ["--model.w_avg_samples", "500", "--images.log_images_every_n_batches", "0", *QUIET]


def tiny_generator(seed: int = 0, channels: int = 3) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    g = StyleGAN2Generator(image_size=16, channels=channels, latent_dim=16, n_mlp=2, channel_max=16).eval()
    g.w_avg.copy_(g.mean_latent(500, seed=1)[0])
    return g


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    return save_rosinality(tmp_path_factory.mktemp("g") / "g.pt", tiny_generator())


def write_sample(g: StyleGAN2Generator, path: Path, seed: int) -> Path:
    """A PNG the generator made from seed ``seed`` (its own sample, clipped to the viewable range)."""
    with torch.no_grad():
        x = g(torch.randn(1, g.latent_dim, generator=torch.Generator().manual_seed(seed)), noise_mode="const")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(((x + 1) / 2).clamp(0, 1), path)
    return path


def project(generator_file: Path, target: Path, root: Path, steps: int, **options) -> dict:
    torch.manual_seed(0)  # the exploration noise on w and the initial noise maps
    model = Projector(str(generator_file), perceptual="none", mse_weight=1.0, w_avg_samples=500, **options)
    data = ProjectionDataModule(target=str(target), steps=steps)
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, default_root_dir=root, enable_checkpointing=False,
                      callbacks=[ProjectionWriter()], enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, data)
    return torch.load(root / "projections" / f"{target.stem}.pt")


@pytest.mark.parametrize("latent_space", ["w", "w+"])
def test_projecting_a_generated_image_recovers_it(generator_file, tmp_path, latent_space):
    target = write_sample(load_generator(str(generator_file)), tmp_path / "sample.png", seed=2)
    latent = project(generator_file, target, tmp_path, steps=150, latent_space=latent_space)
    assert latent["mse"] < latent["mse_w_avg"] / 10, (latent["mse"], latent["mse_w_avg"])
    assert latent["ws"].shape == (6, 16) and latent["latent_space"] == latent_space
    if latent_space == "w":  # one w for every layer
        assert torch.equal(latent["ws"], latent["ws"][:1].expand(6, -1))
    assert (tmp_path / "projections" / "sample.png").is_file()


def test_noise_regularisation(generator_file, tmp_path):
    white = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(white[..., ::4, ::4], size=16, mode="bilinear")
    assert losses.noise_autocorrelation(white).item() < 0.1 * losses.noise_autocorrelation(smooth).item()
    # After a projection the optimised maps stay white noise of unit variance (renormalised, regularised).
    target = write_sample(load_generator(str(generator_file)), tmp_path / "t.png", seed=7)
    latent = project(generator_file, target, tmp_path, steps=40)
    assert len(latent["noise"]) == 5  # one map per styled conv of a 16 px generator
    for m in latent["noise"].values():
        assert abs(m.mean().item()) < 1e-4 and abs(m.var(unbiased=False).item() - 1) < 1e-3
        assert losses.noise_autocorrelation(m).item() < 0.05


def test_sefa_directions_are_orthonormal_and_edit(tmp_path):
    g = tiny_generator()
    d = sefa_directions(g)
    assert d.shape == (16, 16)
    assert torch.allclose(d @ d.T, torch.eye(16), atol=1e-5)
    ws = g.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        x, x_edit = g.synthesis(ws, "const"), g.synthesis(ws + 3 * d[0], "const")
    assert (x - x_edit).abs().mean() > 0.01
    # a direction file: rows scaled to unit length; a wrong width is one UserError
    torch.save(torch.randn(4, 16) * 5, tmp_path / "dirs.pt")
    loaded = load_directions(tmp_path / "dirs.pt", 16)
    assert torch.allclose(loaded.norm(dim=1), torch.ones(4))
    with pytest.raises(Exception, match="expected a"):
        load_directions(tmp_path / "dirs.pt", 32)
    # layer groups split the ws without overlap
    groups = [layer_group(n, g.num_ws).tolist() for n in ("coarse", "middle", "fine")]
    assert sorted(i for group in groups for i in group) == list(range(g.num_ws)) and all(groups)


def test_cli_round_trip_fit_latent_predict(generator_file, tmp_path):
    target = write_sample(load_generator(str(generator_file)), tmp_path / "in" / "digit.png", seed=2)
    run = tmp_path / "run"
    AigcCLI(args=["fit", "--config", CONFIG, "--model.generator_checkpoint", str(generator_file),
                  "--data.target", str(target), "--data.steps", "20", "--trainer.default_root_dir", str(run), *FAST])  # fmt: skip
    folder = next(run.glob("lightning_logs/version_*/projections"))
    assert sorted(p.name for p in folder.iterdir()) == ["digit.png", "digit.pt"]
    base = ["predict", "--config", CONFIG, "--model.generator_checkpoint", str(generator_file), *QUIET]
    AigcCLI(args=[*base, "--data.latent", str(folder / "digit.pt"), "--output_dir", str(tmp_path / "out")])
    projected = torch.tensor(list(Image.open(folder / "digit.png").getdata()))
    predicted = torch.tensor(list(Image.open(tmp_path / "out" / "digit.png").getdata()))
    assert torch.equal(projected, predicted)  # the saved latent (ws + noise maps) reproduces the projection
    # ψ, mixing and an edit strip each change it; the strip has edit_steps images side by side
    AigcCLI(args=[*base, "--data.latent", str(folder), "--output_dir", str(tmp_path / "edit"),
                  "--model.truncation_psi", "0.7", "--model.mix_seed", "4", "--model.mix_layers", "coarse",
                  "--model.edit_direction", "0", "--model.edit_steps", "3"])  # fmt: skip
    strip = Image.open(tmp_path / "edit" / "digit.png")
    assert strip.size == (48, 16)
    middle = torch.tensor(list(strip.crop((16, 0, 32, 16)).getdata()))
    assert not torch.equal(middle, projected)


def test_project_checkpoint_of_a_gan_run_loads(tmp_path):
    gan_args = ["--model", "aigc_lightning.modules.GAN", "--model.generator", "aigc_lightning.nets.StyleGAN2Generator",
                "--model.generator.latent_dim", "16", "--model.generator.n_mlp", "2", "--model.generator.channel_max", "8",
                "--model.discriminator", "aigc_lightning.nets.StyleGAN2Discriminator",
                "--model.discriminator.channel_max", "8", "--model.mean_latent_samples", "16",
                "--data", "aigc_lightning.datamodules.DigitsDataModule", "--data.image_size", "16", "--data.batch_size", "8",
                "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(tmp_path),
                "--images.log_images_every_n_batches", "0", *QUIET]  # fmt: skip
    gan = AigcCLI(args=["fit", *gan_args]).model
    ckpt = next(tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    g = load_generator(str(ckpt))
    assert (g.image_size, g.channels, g.w_dim) == (16, 1, 16)
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.allclose(g(z, noise_mode="const"), gan.generator_ema.cpu()(z, noise_mode="const"), atol=1e-6)
    assert not any(p.requires_grad for p in g.parameters())


def test_ddp_folder_projection_writes_each_file_once(generator_file, tmp_path):
    g = load_generator(str(generator_file))
    targets = [write_sample(g, tmp_path / "targets" / f"t{i}.png", seed=i) for i in range(3)]
    cli("fit", "--config", CONFIG, "--model.generator_checkpoint", str(generator_file),
        "--data.target", str(tmp_path / "targets"), "--data.steps", "3", *FAST, *DDP, cwd=tmp_path)  # fmt: skip
    folder = next(tmp_path.glob("lightning_logs/version_*/projections"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t.stem}{s}" for t in targets for s in (".png", ".pt"))
    # t0 (rank 0) and t1 (rank 1) were optimised side by side: averaged gradients would have made them equal
    assert not torch.allclose(torch.load(folder / "t0.pt")["ws"], torch.load(folder / "t1.pt")["ws"])
    # the shards are disjoint, cover every target, and are equally long (the short one padded)
    shards = []
    for rank in (0, 1):
        data = ProjectionDataModule(target=str(tmp_path / "targets"), steps=2)
        data.trainer = type("T", (), {"global_rank": rank, "world_size": 2})()
        items = list(data.train_dataloader())
        shards.append([b["name"][0] for b in items if not bool(b["pad"][0])])
        assert len(items) == 4  # two targets × two steps on each rank
    assert sorted(set(shards[0]) | set(shards[1])) == ["t0", "t1", "t2"] and not set(shards[0]) & set(shards[1])


@pytest.mark.parametrize("option", ["--model.generator_checkpoint", "--data.target"])
def test_bad_paths_are_one_line(generator_file, tmp_path, option):
    args = {"--model.generator_checkpoint": str(generator_file), "--data.target": str(tmp_path)}
    args[option] = str(tmp_path / "absent.png")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", CONFIG, *[x for kv in args.items() for x in kv], "--data.steps", "1", *FAST,
              "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message and "absent.png" in message


def test_predict_plan_refuses_the_latent_folder_and_existing_renders_before_any_work(tmp_path):
    from aigc_lightning.callbacks.writer import ImageWriter
    from aigc_lightning.errors import UserError

    latents = tmp_path / "projections"
    latents.mkdir()
    torch.save({"ws": torch.zeros(4, 8)}, latents / "face.pt")
    plan = ProjectionDataModule(latent=str(latents)).predict_plan()
    assert list(plan.outputs) == ["face.png"]
    with pytest.raises(UserError, match="input folder"):
        ImageWriter(str(latents)).check(plan)  # fit's projections/ holds face.png beside face.pt
    (tmp_path / "out").mkdir()
    (tmp_path / "out/face.png").write_bytes(b"a render from yesterday")
    with pytest.raises(UserError, match="face.png"):
        ImageWriter(str(tmp_path / "out")).check(plan)
    assert (tmp_path / "out/face.png").read_bytes() == b"a render from yesterday"
