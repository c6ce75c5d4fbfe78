"""AdaIN (one network for any style): statistics matched by AdaIN, the style loss against a closed form, the
decoder at odd sizes, ONNX parity of the two-input graph (fit and predict with any --data.style run in
tests/test_contract.py's adain_offline line). Tiny decoders (width 4), random VGG up to relu2_1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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
