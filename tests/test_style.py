"""Neural style transfer: losses in closed form, VGG weights handling, fit / predict / resume, CLI contract.

Tiny images (16–32 px), random VGG filters truncated at conv3_1 and a few LBFGS evaluations keep every test at a
few seconds on a shared 2-core CPU. Images are scikit-image's bundled samples (no download).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import lightning as L
import pytest
import torch
from PIL import Image

from aigc_lightning.callbacks.style import StylizedImageSaver
from aigc_lightning.cli import main
from aigc_lightning.datamodules import StyleDataModule
from aigc_lightning.errors import UserError
from aigc_lightning.losses import content_loss, gram_matrix, gram_matrix_fp32, style_loss, total_variation
from aigc_lightning.modules import StyleTransfer
from aigc_lightning.modules.style_transfer import Run
from aigc_lightning.nets import VGGFeatures
from aigc_lightning.nets.vgg import vgg19_layer_names
from aigc_lightning.optim import BoxLBFGS
from aigc_lightning.pixels import rgb_to_yiq

skdata = pytest.importorskip("skimage.data")
REPO = Path(__file__).resolve().parents[1]
SMALL = {"content_layers": ("conv2_1",), "style_layers": ("conv1_1", "conv2_1", "conv3_1")}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("style_images")
    (root / "photos").mkdir()
    paths = {
        "astronaut": root / "photos" / "astronaut.png",
        "chelsea": root / "photos" / "chelsea.png",
        "style": root / "coffee.png",
    }
    Image.fromarray(skdata.astronaut()).resize((32, 32)).save(paths["astronaut"])
    Image.fromarray(skdata.chelsea()).resize((30, 24)).save(paths["chelsea"])
    Image.fromarray(skdata.coffee()).resize((40, 30)).save(paths["style"])
    return paths


def lbfgs(max_iter: int = 4):
    return lambda params: torch.optim.LBFGS(params, max_iter=max_iter)


def model(**kwargs) -> StyleTransfer:
    args = dict(SMALL, style_weight=10.0, scale_steps=(2,), optimizer=lbfgs())
    args.update(kwargs)
    return StyleTransfer(VGGFeatures("none"), **args)


def trainer(tmp_path: Path, max_steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_steps=max_steps, default_root_dir=tmp_path, enable_progress_bar=False,
                     enable_model_summary=False, log_every_n_steps=1, **kwargs)  # fmt: skip


def load01(path: Path, size: int = 24) -> torch.Tensor:
    img = Image.open(path).convert("RGB").resize((size, size))
    return torch.from_numpy(__import__("numpy").asarray(img).copy()).permute(2, 0, 1)[None].float() / 255


# ----------------------------------------------------------------------------------------------------------
# Losses


def test_gram_matrix_of_known_features():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # (B, C, H, W): two channels, two positions
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / (2 * 1 * 2)
    assert torch.allclose(gram_matrix(f)[0], expected)
    assert gram_matrix(torch.randn(3, 4, 5, 6)).shape == (3, 4, 4)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("batch, channels", [(2, 5), (1, 64), (2, 128)])  # 64 and 128: the symmetric blocks
def test_gram_matrix_fp32_has_the_value_and_gradient_of_gram_matrix(layout, batch, channels):
    f = torch.randn(batch, channels, 6, 7).contiguous(memory_format=layout)
    a, b = f.clone().requires_grad_(True), f.clone().requires_grad_(True)
    weight = torch.randn(batch, channels, channels)  # non-symmetric upstream gradient: the backward symmetrises it
    (gram_matrix(a) * weight).sum().backward()
    (gram_matrix_fp32(b) * weight).sum().backward()
    assert torch.allclose(gram_matrix_fp32(f), gram_matrix(f), atol=1e-6)
    assert torch.allclose(b.grad, a.grad, atol=1e-5)
    # bfloat16 features: a bfloat16 product (float32 accumulation, rounded once), returned as float32
    half = gram_matrix_fp32(f.bfloat16().requires_grad_(True))
    exact = gram_matrix(f.bfloat16().float())
    assert half.dtype == torch.float32 and torch.allclose(half, exact, rtol=2**-8, atol=1e-6)


def test_losses_are_per_sample_and_zero_at_target():
    f, g = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert (
        content_loss(f, f).eq(0).all() and content_loss(f, g).shape == (2,) and content_loss(f, g).gt(0).all()
    )
    assert torch.allclose(content_loss(f, g), ((f - g) ** 2).mean((1, 2, 3)))
    assert style_loss(gram_matrix(f), gram_matrix(f)).eq(0).all()
    assert style_loss(gram_matrix(f), gram_matrix(g)).gt(0).all()


def test_total_variation_of_constant_image_is_zero():
    assert total_variation(torch.full((2, 3, 8, 8), 0.7)).eq(0).all()
    x = torch.zeros(1, 1, 4, 4)
    x[..., ::2] = 1.0  # vertical stripes: every horizontal neighbour pair differs by 1
    assert torch.allclose(total_variation(x), torch.tensor([1.0]))


# ----------------------------------------------------------------------------------------------------------
# VGG features


def test_vgg_random_features_truncate_and_are_seeded():
    f = VGGFeatures("none").truncate(["conv2_1", "conv1_1"])
    assert list(f.layers.keys())[-1] == "conv2_1" and f.pool == "avg" and f.random_features
    out = f(torch.rand(2, 3, 16, 16), ["conv1_1", "conv2_1"])
    assert out["conv1_1"].shape == (2, 64, 16, 16) and out["conv2_1"].shape == (2, 128, 8, 8)
    assert not any(p.requires_grad for p in f.parameters())
    same, other = (
        VGGFeatures("none").layers["conv1_1"].weight,
        VGGFeatures("none", seed=1).layers["conv1_1"].weight,
    )
    assert torch.equal(f.layers["conv1_1"].weight, same) and not torch.equal(same, other)
    with pytest.raises(UserError, match="unknown VGG19 layer"):
        VGGFeatures("none").truncate(["conv9_9"])


def test_vgg_local_pth_in_torchvision_layout(tmp_path):
    src = VGGFeatures("none", seed=3)
    index = {n: i for i, n in enumerate(vgg19_layer_names())}
    state = {
        f"features.{index[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in src.layers.state_dict().items()
    }
    torch.save(state, tmp_path / "vgg19.pth")
    f = VGGFeatures(str(tmp_path / "vgg19.pth"))
    assert f.pool == "max" and not f.random_features
    assert torch.equal(f.layers["conv5_4"].weight, src.layers["conv5_4"].weight)
    with pytest.raises(UserError, match="does not exist"):
        VGGFeatures(str(tmp_path / "missing.pth"))


def test_vgg_imagenet_offline_names_cache_and_alternatives(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError) as e:
        VGGFeatures("imagenet")
    message = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "weights none" in message and ".pth" in message and "\n" not in message


# ----------------------------------------------------------------------------------------------------------
# Optimisation


def test_style_loss_falls_and_output_differs_from_content(images):
    content, style = load01(images["astronaut"]), load01(images["style"])
    m = model(scale_steps=(3,))
    t = m.problem(content, style, torch.ones(1), (24, 24))
    before = m.objective(t.content, t)
    out = m.stylize(content, style)
    after = m.objective(out, t)
    assert out.shape == content.shape and 0 <= out.min() and out.max() <= 1
    assert after["style"] < 0.5 * before["style"] and after["loss"] < before["loss"]
    assert (out - content).abs().mean() > 0.01


def test_preserve_color_keeps_content_chroma(images):
    content, style = load01(images["astronaut"]), load01(images["style"])
    chroma = rgb_to_yiq(content)[:, 1:]
    kept = model(preserve_color=True, style_weight=100.0).stylize(content, style)
    free = model(preserve_color=False, style_weight=100.0).stylize(content, style)
    assert (rgb_to_yiq(kept)[:, 0] - rgb_to_yiq(content)[:, 0]).abs().mean() > 0.01  # the luma did change
    kept_err, free_err = ((rgb_to_yiq(x)[:, 1:] - chroma).abs().mean() for x in (kept, free))
    assert kept_err < 0.01 and kept_err < 0.3 * free_err  # only RGB clipping may move the chroma


def test_multiscale_blended_styles_and_noise_init(images):
    content, style = load01(images["astronaut"], 32), load01(images["style"], 32)
    m = model(scales=(0.5, 1.0), scale_steps=(1, 1), init="noise")
    out = m.stylize(content, torch.cat([style, style.flip(-1)]), torch.tensor([0.7, 0.3]))
    assert out.shape == content.shape and torch.isfinite(out).all()
    with pytest.raises(UserError, match="scales"):
        model(scales=(1.0, 0.5), scale_steps=(1, 1))


def sample(name: str, size: int) -> torch.Tensor:
    a = __import__("numpy").asarray(
        Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((size, size))
    )
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255


def test_box_lbfgs_stays_in_the_box_and_reaches_the_bounded_minimum():
    c = torch.tensor([-0.5, 0.3, 0.7, 1.8])  # minimiser of |x - c|² in [0, 1]⁴: clamp(c)
    x = torch.nn.Parameter(torch.full((4,), 0.5))
    opt, seen = BoxLBFGS([x], max_iter=15), []

    def closure():
        opt.zero_grad()
        seen.append(x.detach().clone())
        loss = ((x - c) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert all(0 <= v.min() and v.max() <= 1 for v in seen)  # never evaluated outside the box
    assert torch.allclose(x.detach(), c.clamp(0, 1), atol=1e-4)


def test_box_lbfgs_retries_a_non_finite_step_shorter():
    x = torch.nn.Parameter(torch.zeros(1))
    opt, values = BoxLBFGS([x], max_iter=30), []

    def closure():  # minimum at 0.8, but the loss is infinite beyond 0.6: the answer is just below 0.6
        opt.zero_grad()
        loss = (x - 0.8).pow(2).sum() + torch.where(x > 0.6, torch.inf, 0.0).sum()
        loss.backward()
        values.append(loss.item())
        return loss

    for _ in range(3):
        opt.step(closure)
    assert any(v == float("inf") for v in values)  # it did try a non-finite point ...
    assert torch.isfinite(x).all() and 0.5 < float(x) <= 0.6  # ... rejected it and kept going


@pytest.mark.parametrize(
    "pair", [("astronaut", "coffee"), ("chelsea", "astronaut"), ("rocket", "immunohistochemistry")]
)
def test_more_steps_never_give_a_worse_image(pair):
    # The tutorial's setting (max pooling, its layers, style weight 1e6) where the old loop got worse with more
    # steps or diverged (issue #16): the result's loss must not rise with the step count.
    content, style = sample(pair[0], 32), sample(pair[1], 32)
    losses = []
    for steps in (1, 2, 4):
        m = StyleTransfer(VGGFeatures("none", pool="max"), content_layers=("conv2_2",),
                          style_layers=("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"), normalize_layers=False,
                          style_weight=1e6, scale_steps=(steps,), optimizer=lambda p: BoxLBFGS(p, max_iter=5))  # fmt: skip
        out = m.stylize(content, style)
        t = m.problem(content, style, torch.ones(1), (32, 32))
        assert out.min() >= 0 and out.max() <= 1
        with torch.no_grad():
            losses.append(m.objective(out, t)["loss"].item())
        start = m.objective(content, t)["loss"].item()
    assert losses[0] < start and losses[2] <= losses[1] <= losses[0], losses


def test_box_lbfgs_refresh_re_evaluates_in_place_and_keeps_its_history():
    c = torch.tensor([0.2, 0.4, 0.9])
    x = torch.nn.Parameter(torch.full((3,), 0.5))
    opt, seen, scale = BoxLBFGS([x], max_iter=3), [], [1.0]

    def closure():
        opt.zero_grad()
        seen.append(x.detach().clone())
        loss = scale[0] * (((x - c) * torch.tensor([1.0, 3.0, 9.0])) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    history, where = len(opt.state[x]["s"]), x.detach().clone()
    scale[0] = 1.001  # "the closure now computes a slightly different function" (float32 after bfloat16)
    opt.refresh()
    seen.clear()
    opt.step(closure)
    assert history > 0 and torch.equal(seen[0], where)  # first: the same point, re-evaluated
    assert len(opt.state[x]["s"]) >= history  # the curvature pairs survived
    opt.refresh(keep_history=False)
    assert opt.state[x]["s"] == []


@pytest.mark.parametrize("until", [0.0, 1.0])
def test_bf16_features_keep_float32_scored_best_and_reach_the_float32_result(until):
    # The tutorial's setting at 32 px: bfloat16 features (until 0: never switch; 1: float32 after one step) must
    # end within 2 % of the float32-only run, the kept best must carry its float32 loss, and never rise.
    content, style = sample("astronaut", 32), sample("coffee", 32)
    kwargs = {"content_layers": ("conv2_2",), "style_layers": ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"),
              "normalize_layers": False, "optimizer": lambda p: BoxLBFGS(p, max_iter=8)}  # fmt: skip
    m = StyleTransfer(VGGFeatures("none", pool="max"), feature_precision="bf16", bf16_until=until, **kwargs)
    t = m.problem(content, style, torch.ones(1), (32, 32))
    run, kept, phases = Run(torch.nn.Parameter(torch.empty(0))), [], []
    for _ in range(5):
        phases.append(run.schedule.bf16 is not False)
        m.stylize(content, style, run=run, steps=1)
        kept.append(run.best.loss)
        with torch.no_grad():
            assert run.best.loss == pytest.approx(m.objective(run.best.image, t)["loss"].item(), rel=1e-6)  # float32
    assert all(b <= a for a, b in itertools.pairwise(kept)) and m.rescores >= 5
    assert phases == ([True] * 5 if until == 0 else [True] + [False] * 4)
    ref = StyleTransfer(VGGFeatures("none", pool="max"), feature_precision="32", scale_steps=(5,), **kwargs)
    ref_out = ref.stylize(content, style)
    with torch.no_grad():
        ref_loss, start = ref.objective(ref_out, t)["loss"].item(), m.objective(content, t)["loss"].item()
    assert ref.rescores == 0 and kept[-1] < 0.1 * start and kept[-1] < 1.02 * ref_loss, (kept, ref_loss)


def test_a_nan_step_is_rejected_and_the_run_goes_on(images):
    content, style = load01(images["astronaut"]), load01(images["style"])
    m = model(scale_steps=(4,), optimizer=lambda p: torch.optim.LBFGS(p, max_iter=3))
    objective, calls = m.objective, []

    def flaky(image, t, bf16=False):  # the 5th evaluation is NaN: plain LBFGS would carry the NaN into the image
        calls.append(1)
        losses = objective(image, t, bf16)
        return {k: v * torch.nan for k, v in losses.items()} if len(calls) == 5 else losses

    m.objective = flaky
    out = m.stylize(content, style)
    m.objective = objective
    t = m.problem(content, style, torch.ones(1), (24, 24))
    assert torch.isfinite(out).all() and len(calls) > 6  # it went on after the NaN
    assert m.objective(out, t)["loss"] < m.objective(content, t)["loss"]


# ----------------------------------------------------------------------------------------------------------
# fit, resume, precision


def data(images, **kwargs) -> StyleDataModule:
    args = {"content": str(images["astronaut"]), "style": str(images["style"]), "image_size": 24}
    args["steps_per_epoch"] = 2
    args.update(kwargs)
    return StyleDataModule(**args)


def test_fit_writes_png_and_resumes_exactly(images, tmp_path):
    run = trainer(tmp_path / "a", 4, callbacks=[StylizedImageSaver(every_n_batches=2)])
    m = model(scales=(0.5, 1.0), scale_steps=(2, 2))
    run.fit(m, data(images))
    png = Path(run.log_dir) / "stylized.png"
    assert png.is_file() and Image.open(png).size == (24, 24)
    assert int(m.evaluations) > 4 and run.logged_metrics["train/evals"] == m.evaluations
    shown = m.images_to_log(4)["stylized"]  # what the image logger shows: the best image, in [0, 1]
    assert shown.shape == (1, 3, 24, 24) and 0 <= shown.min() and shown.max() <= 1
    assert torch.equal(shown, m.stylized()) and run.logged_metrics["hp_metric"] == pytest.approx(m.run.best.loss)

    first = trainer(tmp_path / "b", 2)
    first.fit(model(scales=(0.5, 1.0), scale_steps=(2, 2)), data(images))
    ckpt = Path(first.checkpoint_callback.best_model_path)  # after step 2: the coarse scale's end
    saved = torch.load(ckpt, weights_only=False)
    state = saved["state_dict"]
    assert saved["counters"]["batches"] == 2 and saved["counters"]["evaluations"] > 2
    assert "image" in state and not any("features." in k for k in state)  # frozen VGG is rebuilt
    resumed = model(scales=(0.5, 1.0), scale_steps=(2, 2))
    trainer(tmp_path / "b", 4).fit(resumed, data(images), ckpt_path=str(ckpt))
    assert torch.equal(resumed.image, m.image) and int(resumed.evaluations) == int(m.evaluations)
    assert torch.equal(resumed.stylized(), m.stylized())


def test_fp16_is_one_clear_message_and_mixed_precision_runs_in_fp32(images, tmp_path):
    with pytest.raises(UserError, match="16-mixed cannot drive LBFGS"):
        model().check_precision(
            "16-mixed"
        )  # what a GPU run gets (on CPU Lightning itself turns 16 into bf16)
    m = model(scale_steps=(1,))
    trainer(tmp_path, 2, precision="bf16-mixed").fit(m, data(images))
    assert m.image.dtype == torch.float32 and int(m.evaluations) > 2 and torch.isfinite(m.image).all()
    out = trainer(tmp_path, 1, precision="bf16-mixed").predict(model(scale_steps=(1,)), data(images))
    assert out[0]["images"].dtype == torch.float32 and out[0]["names"] == ["astronaut"]


def test_fit_refuses_a_folder_and_missing_style(images, tmp_path):
    with pytest.raises(UserError, match="use predict"):
        data(images, content=str(images["astronaut"].parent)).train_dataloader()
    with pytest.raises(UserError, match="--data.style"):
        data(images, style=str(tmp_path / "nope.png")).setup()


# ----------------------------------------------------------------------------------------------------------
# CLI contract (offline config; the ImageNet config is checked for its offline message only)


def cli_overrides(tmp_path: Path) -> list[str]:
    return ["--data.image_size", "24", "--model.init_args.scales", "[0.5, 1.0]", "--model.init_args.scale_steps", "[1, 1]",
            "--model.init_args.optimizer.init_args.max_iter", "2", "--model.init_args.content_layers", "[conv2_1]",
            "--model.init_args.style_layers", "[conv1_1, conv2_1]", "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip


def test_cli_fit_and_predict_offline_config(images, tmp_path):
    cfg = str(REPO / "configs/style/gatys_offline.yaml")
    main(["fit", "--config", cfg, "--data.content", str(images["astronaut"]), "--data.style", str(images["style"]),
          "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false", *cli_overrides(tmp_path)])  # fmt: skip
    assert len(list(tmp_path.glob("lightning_logs/version_*/stylized.png"))) == 1
    assert len(list(tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt"))) == 1
    out = tmp_path / "out"
    main(["predict", "--config", cfg, "--data.content", str(images["astronaut"].parent), "--data.style",
          str(images["style"]), "--output_dir", str(out), "--trainer.enable_progress_bar", "false",
          *cli_overrides(tmp_path)])  # fmt: skip
    assert sorted(p.name for p in out.glob("*.png")) == [
        "astronaut.png",
        "chelsea.png",
    ]  # sizes differ: no grid
    assert Image.open(out / "chelsea.png").size == (24, 19)  # aspect kept, longer side = image_size


@pytest.mark.parametrize(
    "option, value",
    [("--model.init_args.style_weight", "-1"), ("--model.init_args.scale_steps", "[0]"),
     ("--model.init_args.init", "zeros"), ("--data.steps_per_epoch", "0"), ("--data.image_size", "0")],
)  # fmt: skip
def test_cli_refuses_bad_numbers_naming_the_option(images, tmp_path, option, value, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs/style/gatys_offline.yaml"), "--data.content",
              str(images["astronaut"]), "--data.style", str(images["style"]), option, value])  # fmt: skip
    assert option.split(".")[-1] in capsys.readouterr().err


def test_cli_imagenet_config_offline_is_one_line(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(URLError("offline"))
    )
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(REPO / "configs/style/gatys_vgg19.yaml"), "--data.content",
              str(images["astronaut"]), "--data.style", str(images["style"])])  # fmt: skip
    message = str(e.value.code)
    assert message.startswith("error: cannot get the ImageNet VGG19 weights") and "\n" not in message
    assert "weights none" in message


COUNTER = '''
from pathlib import Path
from lightning.pytorch import Callback

class Counter(Callback):
    """Records which rank stylised which image, to prove every image is done exactly once."""
    def __init__(self, path: str = "") -> None:
        self.path = path
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        with open(Path(self.path) / f"rank{trainer.global_rank}.txt", "a") as f:
            f.writelines(f"{name}\\n" for name in outputs["names"])
'''


def test_predict_folder_with_two_processes_does_each_image_once(images, tmp_path):
    (tmp_path / "counter.py").write_text(COUNTER)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "aigc_lightning", "predict", "--config", str(REPO / "configs/style/gatys_offline.yaml"),
           "--data.content", str(images["astronaut"].parent), "--data.style", str(images["style"]),
           "--output_dir", str(out), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false",
           "--trainer.callbacks+=counter.Counter", f"--trainer.callbacks.init_args.path={tmp_path}",
           *cli_overrides(tmp_path)]  # fmt: skip
    env = dict(
        os.environ,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        OMP_NUM_THREADS="1",
    )
    result = subprocess.run(
        cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    per_rank = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert sorted(per_rank[0] + per_rank[1]) == ["astronaut", "chelsea"] and all(
        len(r) == 1 for r in per_rank
    )
    assert sorted(p.name for p in out.glob("*.png")) == ["astronaut.png", "chelsea.png"]
