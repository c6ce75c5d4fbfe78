"""No code from files: a crafted pickle through every option that takes a file runs nothing.

Each test feeds ``evil``: a torch file whose unpickling would create ``marker`` (``torch.load(weights_only=False)``
does create it: the fixture checks), and asserts one clear refusal and that ``marker`` never appears.
"""

from __future__ import annotations

import http.server
import pathlib
import threading
from pathlib import Path

import pytest
import torch

from aigc_lightning.cli import main
from aigc_lightning.errors import UserError
from aigc_lightning.modules import GAN
from aigc_lightning.nets import StyleGAN2Generator, VGGFeatures
from aigc_lightning.nets.features import DomainFeatures
from aigc_lightning.nets.latent_edits import load_directions, read_latent
from conftest import CONFIGS


class Payload:
    """Unpickles as ``Path(marker).touch()``: what a crafted checkpoint could do with any other call."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    return tmp_path / "payload-ran"


@pytest.fixture()
def evil(tmp_path: Path, marker: Path) -> Path:
    """A Lightning-checkpoint-shaped torch file with a payload among its hyper-parameters."""
    path = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {}, "pytorch-lightning_version": "2.6.0", "hyper_parameters": {"x": Payload(marker)}},
        path,
    )
    torch.load(path, weights_only=False)  # the payload is real: unpickling it without restriction runs it
    assert marker.exists()
    marker.unlink()
    return path


def refused(call, match: str = "can run code") -> str:
    with pytest.raises(UserError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_python_loaders_refuse_the_file_and_say_how_to_convert_it(evil: Path, marker: Path) -> None:
    message = refused(lambda: DomainFeatures(checkpoint=str(evil)))
    assert str(evil) in message and "weights_only=False" in message  # how to convert a file the user trusts
    refused(lambda: StyleGAN2Generator.from_rosinality(evil))
    refused(lambda: VGGFeatures(weights=str(evil)))
    refused(lambda: load_directions(evil, 8))
    refused(lambda: read_latent(evil, StyleGAN2Generator(image_size=8, latent_dim=8, n_mlp=1, channel_max=8)))
    with pytest.raises(
        Exception, match="Unsupported global"
    ):  # Lightning's load: torch's weights_only default
        GAN.load_from_checkpoint(evil)
    assert not marker.exists()


def error_line(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code not in (0, None)
    lines = [
        line for line in (str(info.value.code) + capsys.readouterr().err).splitlines() if "error:" in line
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_ckpt_path_refuses_a_crafted_checkpoint(evil: Path, marker: Path, tmp_path: Path, capsys) -> None:
    line = error_line(["fit", "--config", str(CONFIGS / "gan/dcgan_digits.yaml"), "--ckpt_path", str(evil),
                       "--trainer.default_root_dir", str(tmp_path)], capsys)  # fmt: skip
    assert str(evil) in line
    assert not marker.exists()


def test_remote_ckpt_path_is_refused_before_anything_is_downloaded(
    evil: Path, marker: Path, tmp_path, capsys
):
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # serves the crafted checkpoint to whoever asks
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(evil.read_bytes())

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/evil.ckpt"
        line = error_line(["fit", "--config", str(CONFIGS / "gan/dcgan_digits.yaml"), "--ckpt_path", url,
                           "--trainer.default_root_dir", str(tmp_path)], capsys)  # fmt: skip
    finally:
        server.shutdown()
    assert url in line and requests == []
    assert not marker.exists()


def test_generator_checkpoint_and_export_refuse_a_crafted_file(
    evil: Path, marker: Path, tmp_path, capsys
) -> None:
    rosinality = evil.with_suffix(".pt")
    evil.rename(rosinality)
    line = error_line(["predict", "--config", str(CONFIGS / "gan/stylegan2_pretrained.yaml"),
                       "--model.generator_checkpoint", str(rosinality), "--output_dir", str(tmp_path / "out")],
                      capsys)  # fmt: skip
    assert "can run code" in line
    rosinality.rename(evil)
    from aigc_lightning.export import main as export

    with pytest.raises(SystemExit) as info:
        export([str(evil), str(tmp_path / "style.onnx")])
    assert info.value.code not in (0, None)
    assert not marker.exists()
