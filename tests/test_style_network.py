"""Feed-forward style network: net shapes (odd sizes), VGG16 features, a fit that lowers the style loss, the
fixed images for the ImageLogger, checkpoint counters, the CLI contract of fast_offline.yaml, ONNX parity.

Tiny widths (4–8 channels), 16–32 px crops and random VGG features truncated early keep each test a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aigc_lightning.cli import main
from aigc_lightning.datamodules import ContentDataModule
from aigc_lightning.errors import UserError
from aigc_lightning.modules import StyleNetwork
from aigc_lightning.nets import TransformNet, VGGFeatures
from aigc_lightning.nets.vgg import vgg19_layer_names

skdata = pytest.importorskip("skimage.data")
REPO = Path(__file__).resolve().parents[1]
LAYERS = {"content_layers": ("conv2_1",), "style_layers": ("relu1_1", "relu2_1")}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fast_images")
    photos = root / "photos"
    (photos / "nested").mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).resize((40, 40)).save(photos / "astronaut.png")
    Image.fromarray(skdata.coffee()).resize((48, 32)).save(photos / "coffee.png")
    Image.fromarray(skdata.rocket()).resize((36, 40)).save(photos / "nested" / "rocket.jpg")
    # A style unlike any photo: saturated diagonal stripes, so "took the style" is measurable.
    y, x = np.mgrid[:48, :48]
    stripes = np.stack([(np.sin((x + y) / 2) > 0) * 255, np.zeros_like(x), (np.sin((x - y) / 3) > 0) * 255], -1)
    Image.fromarray(stripes.astype(np.uint8)).save(root / "style.png")
    return {"photos": photos, "style": root / "style.png", "root": root}


def tiny_model(**kw) -> StyleNetwork:
    features = VGGFeatures("none", pool="avg")
    args = {**LAYERS, "style_weight": 10.0, "optimizer": lambda p: torch.optim.Adam(p, lr=1e-2), **kw}
    return StyleNetwork(TransformNet(width=8, num_residual=1), features, **args)


def test_network_keeps_any_size_and_trains():
    net = TransformNet(width=4, num_residual=2)
    for h, w in [(16, 16), (17, 23), (31, 5)]:  # 5 px: the least the 9×9 reflection padding allows
        x = torch.rand(2, 3, h, w) * 2 - 1
        y = net(x)
        assert y.shape == x.shape and y.abs().max() <= 1
    y.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(UserError, match="width"):
        TransformNet(width=0)


def test_vgg16_layers_and_pickle():
    f = VGGFeatures("none", arch="vgg16")
    names = vgg19_layer_names("vgg16")
    assert "relu4_3" in names and "conv4_4" not in names and len(f.layers) == len(names)
    out = f(torch.rand(1, 3, 32, 32), ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    assert [o.shape[1] for o in out.values()] == [64, 128, 256, 512]
    small = torch.load(_roundtrip(f.truncate(["relu2_2"])), weights_only=False)
    assert small.arch == "vgg16" and list(small.layers)[-1] == "relu2_2"
    with pytest.raises(UserError, match="unknown VGG16 layer"):
        VGGFeatures("none", arch="vgg16").truncate(["conv5_4"])


def _roundtrip(obj) -> Path:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def style_loss_on(model: StyleNetwork, batch) -> float:
    model.eval()
    with torch.no_grad():
        _, losses = model._step_losses(batch)
    return float(losses["style"])


def test_fit_lowers_style_loss_and_keeps_counters(images, tmp_path):
    L.seed_everything(0)
    data = ContentDataModule(str(images["photos"]), str(images["style"]), image_size=24, style_size=48,
                             batch_size=2, epoch_size=16, val_images=1)  # fmt: skip
    model = tiny_model()
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    before = style_loss_on(model, batch)
    trainer = L.Trainer(max_epochs=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0, log_every_n_steps=1)  # fmt: skip
    trainer.fit(model, data)
    after = style_loss_on(model, batch)
    assert after < 0.5 * before, (before, after)  # on a held-out photo: the network learnt the style
    assert model.batches == 4 * 8
    assert model.images_to_log(3) == {}  # ImageLogger passes its fixed batch; without one there is nothing
    shown = model.images_to_log(3, batch=batch[0])
    assert shown["stylized"].shape == shown["content"].shape == (1, 3, 24, 24)  # one held-out photo
    assert 0 <= shown["stylized"].min() and shown["stylized"].max() <= 1
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    raw = torch.load(ckpt)  # torch's default, weights_only=True: no network object pickled in the hparams
    assert raw["counters"] == {"batches": 32} and not any("features." in k for k in raw["state_dict"])
    # made from Python, its networks are not in the hyper-parameters (CLI runs hold their configs): pass them
    loaded = StyleNetwork.load_from_checkpoint(ckpt, map_location="cpu", network=tiny_model().network,
                                               features=VGGFeatures("none", pool="avg"))  # fmt: skip
    assert loaded.batches == 32
    x = torch.rand(1, 3, 19, 27)
    assert torch.allclose(loaded.stylize(x), model.stylize(x), atol=1e-6)


def test_style_layer_weights_must_match():
    with pytest.raises(UserError, match="one weight per style layer"):
        tiny_model(style_layer_weights=[1.0])


def config(name: str = "fast_offline.yaml") -> str:
    return str(REPO / "configs/style" / name)


TINY = ["--model.network.init_args.width", "4", "--model.network.init_args.num_residual", "1",
        "--data.image_size", "24", "--data.style_size", "32", "--data.batch_size", "2", "--data.epoch_size", "4",
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]  # fmt: skip


def test_cli_fit_offline_config_and_predict_folder(images, tmp_path):
    cfg = config()
    main(["fit", "--config", cfg, "--data.content", str(images["photos"]), "--data.style", str(images["style"]),
          "--trainer.default_root_dir", str(tmp_path), "--images.log_images_every_n_batches", "1",
          "--trainer.log_every_n_steps", "1", *TINY])  # fmt: skip
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "last.ckpt").exists()
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"train/content", "train/stylized"} <= set(events.Tags()["images"])  # the held-out photo, via ImageLogger
    assert {"train/loss", "train/style_loss", "val/loss"} <= set(events.Tags()["scalars"])
    out = tmp_path / "out"
    main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
          "--data.content", str(images["photos"]), "--output_dir", str(out),
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    written = {p.name: Image.open(p).size for p in out.glob("*.png")}
    assert written == {"astronaut.png": (40, 40), "coffee.png": (48, 32), "nested_rocket.png": (36, 40)}


def test_onnx_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from aigc_lightning.export import UnitRangeNetwork, export_onnx, export_torchscript

    torch.manual_seed(0)
    net = TransformNet(width=4, num_residual=1).eval()
    with torch.no_grad():  # non-trivial affine norms, so parity is not a coincidence of the init
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = export_onnx(net, tmp_path / "style.onnx", example_size=32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = UnitRangeNetwork(net)
    for shape in [(1, 3, 32, 34), (2, 3, 17, 23), (1, 3, 48, 20)]:  # sizes other than the example's: dynamic
        x = torch.rand(shape)
        (y,) = session.run(None, {"image": x.numpy()})
        assert y.shape == shape
        assert np.abs(y - reference(x).detach().numpy()).max() < 1e-4
    scripted = torch.jit.load(str(export_torchscript(net, tmp_path / "style.pt")))
    x = torch.rand(1, 3, 19, 21)
    assert torch.allclose(scripted(x), reference(x), atol=1e-6)


def test_vgg16_config_runs_offline(images, tmp_path):
    """configs/style/fast_vgg16.yaml end to end (fast_dev_run) with random VGG16 features instead of the
    download, tiny crops and fp32 (bf16 on a CPU is slow)."""
    cfg = config("fast_vgg16.yaml")
    main(["fit", "--config", cfg, "--data.content", str(images["photos"]), "--data.style", str(images["style"]),
          "--model.features.init_args.weights", "none", "--trainer.fast_dev_run", "1", "--trainer.precision",
          "32-true", "--data.num_workers", "0", "--data.image_size", "32", "--data.style_size", "32",
          "--model.network.init_args.width", "4", "--trainer.default_root_dir", str(tmp_path),
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
