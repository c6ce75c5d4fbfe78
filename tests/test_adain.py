"""AdaIN (one network for any style): statistics matched by AdaIN, the decoder at odd sizes, a tiny model trained
on photos + styles that stylises with a style it never saw (CLI fit and predict with --model.alpha), ONNX parity
of the two-input graph. Tiny decoders (width 4–8), 32 px crops, random VGG up to relu2_1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lightning.cli import main
from aigc_lightning.modules.adain import AdaIN
from aigc_lightning.nets import VGGFeatures
from aigc_lightning.nets.adain import AdaINDecoder, AdaINNet, adain, channel_stats
from aigc_lightning.perceptual import moment_loss

skdata = pytest.importorskip("skimage.data")
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def features() -> VGGFeatures:
    return VGGFeatures("none", pool="avg").truncate(["relu2_1"])


def test_adain_matches_the_styles_statistics():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 5, 9, 11, generator=g) * 3 + 1
    style = torch.randn(1, 5, 6, 7, generator=g) * torch.arange(1.0, 6.0).view(1, 5, 1, 1) - 2
    out = adain(content, style)
    (mu, sd), (mu_s, sd_s) = channel_stats(out), channel_stats(style)
    assert torch.allclose(mu, mu_s.expand_as(mu), atol=1e-4) and torch.allclose(
        sd, sd_s.expand_as(sd), atol=1e-3
    )
    # the content's normalised pattern is kept: AdaIN of a content with itself is the content
    assert torch.allclose(adain(content, content), content, atol=1e-3)
    assert moment_loss(out, mu_s, sd_s).abs().max() < 1e-5
    assert moment_loss(content, mu_s, sd_s).min() > 1


def test_decoder_sizes_and_alpha(features):
    net = AdaINNet(features, AdaINDecoder(level=2, width=4))
    for h, w in [(16, 16), (17, 23), (31, 9)]:
        y = net(torch.rand(2, 3, h, w), torch.rand(1, 3, 20, 24))
        assert y.shape == (2, 3, h, w) and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match="level"):
        AdaINDecoder(level=5)


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adain")
    for sub, images in {
        "photos": {"coffee": skdata.coffee(), "rocket": skdata.rocket(), "camera": skdata.camera()},
        "styles": {"ihc": skdata.immunohistochemistry(), "hubble": skdata.hubble_deep_field()},
    }.items():
        (root / sub).mkdir()
        for name, a in images.items():
            Image.fromarray(_rgb(a)).resize((64, 48)).save(root / sub / f"{name}.png")
    # unseen in training: a photo and a style (scikit-image's retina: red-orange)
    Image.fromarray(skdata.astronaut()).resize((40, 40)).save(root / "astronaut.png")
    Image.fromarray(skdata.retina()).resize((48, 48)).save(root / "retina.png")
    return {"root": root, "photos": root / "photos", "styles": root / "styles"}


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None] / 255.0


def test_cli_fit_then_unseen_style_and_alpha(folders, tmp_path):
    """adain_offline.yaml shrunk: fit on photos + styles, then predict an unseen photo with an unseen style. The
    output's channel statistics (the style loss, in the model's own features) come closer to that style's than the
    photo's are, and less so with a smaller --model.alpha. (48 steps of a width-8 decoder: a direction, not a
    look; docs/style_network.md has a real run.)"""
    cfg = str(REPO / "configs/style/adain_offline.yaml")
    main(["fit", "--config", cfg, "--data.content", str(folders["photos"]), "--data.style", str(folders["styles"]),
          "--model.decoder.init_args.level", "2", "--model.decoder.init_args.width", "8",
          "--model.style_layers", "[conv1_1, relu1_1, relu2_1]", "--data.image_size", "32", "--data.style_size", "48",
          "--data.batch_size", "4", "--data.epoch_size", "48", "--trainer.max_epochs", "4",
          "--model.optimizer.init_args.lr", "0.005", "--trainer.default_root_dir", str(tmp_path),
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])  # fmt: skip
    run = tmp_path / "lightning_logs" / "version_0"
    ckpt = run / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt)  # weights_only=True; the frozen encoder is not in it
    assert not any("encoder" in k for k in raw["state_dict"]) and raw["counters"] == {"batches": 48}
    model = AdaIN.load_from_checkpoint(ckpt, map_location="cpu")
    photo, style = _read(folders["root"] / "astronaut.png"), _read(folders["root"] / "retina.png")

    def style_distance(image: torch.Tensor) -> float:
        f, f_s = model._encode(image), model._encode(style)
        return sum(float(moment_loss(f[n], *channel_stats(f_s[n]))) for n in model.hparams.style_layers)

    distances = {}
    for alpha in ("1.0", "0.2"):
        out = tmp_path / f"out{alpha}"
        main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt), "--data.content",
              str(folders["root"] / "astronaut.png"), "--data.style", str(folders["root"] / "retina.png"),
              "--model.alpha", alpha, "--output_dir", str(out), "--trainer.enable_progress_bar", "false"])  # fmt: skip
        y = _read(out / "astronaut.png")
        assert y.shape == (1, 3, 40, 40)
        distances[alpha] = style_distance(y)
    assert distances["1.0"] < 0.9 * style_distance(photo) and distances["1.0"] < distances["0.2"], distances


def test_onnx_matches_pytorch(features, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from aigc_lightning.export import export_onnx

    torch.manual_seed(0)
    model = AdaIN(features, AdaINDecoder(level=2, width=4), style_layers=["relu1_1", "relu2_1"], alpha=0.8)
    model.eval()
    path = export_onnx(model, tmp_path / "adain.onnx", example_size=32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape, style_shape in [((1, 3, 32, 34), (1, 3, 36, 32)), ((2, 3, 17, 23), (1, 3, 40, 28))]:
        x, s = torch.rand(shape), torch.rand(style_shape)
        (y,) = session.run(None, {"image": x.numpy(), "style": s.numpy()})
        with torch.no_grad():
            expected = model.stylize(x, s).numpy()
        assert y.shape == shape and np.abs(y - expected).max() < 1e-4
