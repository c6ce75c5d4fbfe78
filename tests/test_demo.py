"""The Gradio demo: served for a GAN pretrained folder, called through ``gradio_client`` (a scripted user) and
driven in a headless Chromium (skipped with the reason when selenium or the browser is missing: ``apt-get install
chromium chromium-driver``, ``pip install selenium``; the screenshot goes to ``$AIGC_TEST_ARTIFACTS``); the VAE and
style-network apps build; ``python -m aigc_lightning demo`` dispatches before LightningCLI."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.cli import instantiate_module
from PIL import Image

from aigc_lightning.cli import main

gr = pytest.importorskip("gradio", reason="the demo needs gradio (the demo extra)")
if not hasattr(gr, "Blocks"):  # leftovers of an uninstalled gradio import as an empty namespace package
    pytest.skip("gradio is not installed (the demo extra)", allow_module_level=True)
pytest.importorskip("safetensors", reason="the demo loads a pretrained folder (safetensors)")
pytestmark = pytest.mark.usefixtures("one_thread")


def built(cls, config: dict):
    module = instantiate_module(cls, config)
    module.hparams.update(config)  # what LightningCLI leaves in hparams: the network configs
    return module.eval()


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aigc_lightning.modules import GAN

    net = {"channels": 1, "image_size": 28, "width": 4, "latent_dim": 8}
    gan = built(GAN, {
        "generator": {"class_path": "aigc_lightning.nets.Generator", "init_args": net},
        "discriminator": {"class_path": "aigc_lightning.nets.Discriminator",
                          "init_args": {k: net[k] for k in ("channels", "image_size", "width")}},
        "mean_latent_samples": 16, "bn_stat_batches": 1,
    })  # fmt: skip
    return gan.save_pretrained(tmp_path_factory.mktemp("demo") / "gan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gan_demo_answers_a_gradio_client_with_images(gan_dir: Path) -> None:
    from gradio_client import Client

    from aigc_lightning.demo import build_demo
    from aigc_lightning.modules.pretrained import load_model

    demo = build_demo(load_model(gan_dir))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        first = np.asarray(Image.open(client.predict(0, 1.0, 4, None, api_name="/sample")))
        again = np.asarray(Image.open(client.predict(0, 1.0, 4, None, api_name="/sample")))
        other = np.asarray(Image.open(client.predict(5, 1.0, 4, None, api_name="/sample")))
        assert first.shape[:2] == (
            (28 + 4) * 9,
            (4 * 28 + 5 * 2) * 9,
        )  # a row of 4 (2 px padding), shown 9x larger
        assert np.array_equal(first, again) and not np.array_equal(first, other)  # a seed gives one image
        video = client.predict(0, api_name="/walk")
        path = Path(video["video"] if isinstance(video, dict) else video)
        assert path.suffix == ".mp4" and path.stat().st_size > 0
    finally:
        demo.close()


def test_stylegan2_demo_mixes_and_edits_through_gradio_client() -> None:
    from gradio_client import Client

    from aigc_lightning.demo import build_demo
    from aigc_lightning.modules import GAN

    gan = built(GAN, {
        "generator": {"class_path": "aigc_lightning.nets.StyleGAN2Generator",
                      "init_args": {"image_size": 16, "channels": 1, "latent_dim": 8, "n_mlp": 1, "channel_max": 8}},
        "discriminator": {"class_path": "aigc_lightning.nets.StyleGAN2Discriminator",
                          "init_args": {"image_size": 16, "channels": 1, "channel_max": 8}},
        "latents": {"class_path": "aigc_lightning.gan_latents.StyleLatents"},
        "mean_latent_samples": 8, "bn_stat_batches": 0,
    })  # fmt: skip
    demo = build_demo(gan)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def edit(*args: object) -> np.ndarray:  # seed, psi, mixing seed, layers, direction, strength, class
            return np.asarray(Image.open(client.predict(*args, None, api_name="/edit")), dtype=np.float64)

        plain, mixed = edit(3, 1.0, -1, "coarse", 0, 0.0), edit(3, 1.0, 7, "coarse", 0, 0.0)
        edited = edit(3, 1.0, -1, "coarse", 1, 2.0)
        assert plain.shape[:2] == (16 * 16, 16 * 16)  # one image, shown 16x larger
        assert np.abs(mixed - plain).mean() > 0.1 and np.abs(edited - plain).mean() > 0.1
    finally:
        demo.close()


def style_network():
    from aigc_lightning.modules import StyleNetwork

    return built(StyleNetwork, {
        "network": {"class_path": "aigc_lightning.nets.TransformNet", "init_args": {"width": 4, "num_residual": 1}},
        "features": {"class_path": "aigc_lightning.nets.VGGFeatures", "init_args": {"weights": "none", "arch": "vgg16"}},
        "content_layers": ["relu1_2"], "style_layers": ["relu1_1"],
    })  # fmt: skip


def test_vae_and_style_apps_build() -> None:
    from aigc_lightning.demo import build_demo
    from aigc_lightning.modules import VAE

    vae = built(VAE, {
        "encoder": {"class_path": "aigc_lightning.nets.MLPEncoder", "init_args": {"hidden_dim": 8, "latent_dim": 3}},
        "decoder": {"class_path": "aigc_lightning.nets.MLPDecoder", "init_args": {"hidden_dim": 8, "latent_dim": 3}},
    })  # fmt: skip
    style = style_network()
    for model, endpoints in ((vae, {"/decode", "/reconstruct"}), (style, {"/stylize", "/stylize_video"})):
        demo = build_demo(model)
        assert endpoints <= {f"/{d['api_name']}" for d in demo.config["dependencies"] if d.get("api_name")}


def test_style_demo_stylises_an_uploaded_video_through_gradio_client(tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    from aigc_lightning.callbacks.video import write_frames
    from aigc_lightning.demo import build_demo

    source = tmp_path / "clip.mp4"
    frames = torch.linspace(0, 255, 6).round().to(torch.uint8).view(6, 1, 1, 1).expand(6, 16, 24, 3)
    write_frames(source, [frames], 6, 24, 16)
    demo = build_demo(style_network())
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        video = client.predict(handle_file(str(source)), api_name="/stylize_video")
        out = Path(video["video"] if isinstance(video, dict) else video)
        import av

        with av.open(str(out)) as c:
            stream = c.streams.video[0]
            got = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        assert len(got) == 6 and got[0].shape == (16, 24, 3)  # every frame, at the source's size
        assert source.exists() and out != source
    finally:
        demo.close()


def test_demo_subcommand_dispatches_before_lightning_cli(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="pretrained folder .*does not exist"):
        main(["demo", "--ckpt_path", str(tmp_path / "no_such_model")])


def browser() -> object:
    """A headless Chromium driven by Selenium, or a skip naming what is missing."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (pip)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no headless browser: apt-get install chromium chromium-driver (docs/share.md)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver)
    return webdriver.Chrome(options=options, service=service)


def test_gan_demo_in_a_headless_browser_draws_a_new_image_when_a_slider_moves(
    gan_dir: Path, tmp_path: Path
) -> None:
    """Load the page, move the ψ slider with the keyboard, wait for a new picture; the screenshot is kept."""
    import os

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from aigc_lightning.demo import build_demo
    from aigc_lightning.modules.pretrained import load_model

    driver = browser()
    demo = build_demo(load_model(gan_dir))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)
        slider = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=range]"))[0]

        def pictures(d) -> set[str]:
            return {img.get_attribute("src") for img in d.find_elements(By.TAG_NAME, "img")
                    if "file" in (img.get_attribute("src") or "")}  # fmt: skip

        before = pictures(driver)
        slider.send_keys(Keys.ARROW_LEFT)  # ψ 1.0 → 0.95: the grid is drawn again
        after = wait.until(lambda d: pictures(d) - before or False)
        assert after, "no new picture after the slider moved"
        folder = Path(os.environ.get("AIGC_TEST_ARTIFACTS", tmp_path))
        folder.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(folder / "demo_gan.png"))
    finally:
        driver.quit()
        demo.close()
