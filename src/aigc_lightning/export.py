"""Export a trained model: a pretrained folder (GAN, VAE, style network), or a style network as ONNX / TorchScript.

``--format pretrained`` writes ``DIR/model.safetensors``, ``config.json`` and a model card ``README.md``
(``aigc_lightning.modules.pretrained``; load with ``GAN.from_pretrained(DIR)``, likewise VAE, StyleNetwork)::

    python -m aigc_lightning.export RUN/checkpoints/last.ckpt my_gan --format pretrained

ONNX / TorchScript (feed-forward style network only):

The exported graph takes and returns what a user has, not the project's internal range: RGB float (B, 3, H, W)
in [0, 1], any batch size, height and width (dynamic axes; odd sizes too). Needs the ``[export]`` extra
(onnx, onnxscript; onnxruntime to check or run the result)::

    python -m aigc_lightning.export RUN/checkpoints/last.ckpt style.onnx
    python -m aigc_lightning.export RUN/checkpoints/last.ckpt style.pt --format torchscript
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

import torch
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.pixels import to_signed, to_unit


class UnitRangeNetwork(nn.Module):
    """Wraps a [-1, 1] → [-1, 1] image network as [0, 1] → [0, 1] (what ONNX users feed and display).

    Args:
        network: the image network (e.g. ``StyleNetwork.network``).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return to_unit(self.network(to_signed(x))).clamp(0, 1)


def _network(model: nn.Module) -> nn.Module:
    """The image network of a ``StyleNetwork`` (or the network itself), in eval mode on the CPU, as fp32; an
    ``AdaIN`` model's ``AdaINNet`` (content and style in [0, 1] already) as it is."""
    network = getattr(model, "network", model)
    if getattr(network, "takes_style", False):
        return network.eval().float().cpu()
    return UnitRangeNetwork(network).eval().float().cpu()


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18, example_size: int = 64) -> Path:
    """Write ``model``'s network (a ``StyleNetwork`` or a bare ``TransformNet``) to ONNX at ``path`` with dynamic
    batch, height and width; input ``"image"`` and output ``"stylized"``, both (B, 3, H, W) in [0, 1]. An ``AdaIN``
    model's graph has a second input ``"style"`` (1, 3, h, w) in [0, 1], any size, and its ``alpha`` built in."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it; imported here for one clear message)
    except ImportError as e:
        raise UserError('ONNX export needs the export extra: pip install "aigc-lightning[export]"') from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, example_size, example_size + 2)
    h, w = torch.export.Dim("height", min=4), torch.export.Dim("width", min=4)
    inputs, names, shapes = (x,), ["image"], [{0: torch.export.Dim("batch", min=1), 2: h, 3: w}]
    network = _network(model)
    if getattr(network, "takes_style", False):  # AdaIN: the style image is an input too
        inputs, names = (x, torch.rand(1, 3, example_size + 4, example_size)), ["image", "style"]
        shapes.append({2: torch.export.Dim("style_height", min=8), 3: torch.export.Dim("style_width", min=8)})
    with torch.no_grad():
        program = torch.onnx.export(
            network,
            inputs,
            dynamo=True,
            input_names=names,
            output_names=["stylized"],
            dynamic_shapes=tuple(shapes),
            opset_version=opset,
            verbose=False,
        )
    program.save(str(path))
    return path


def export_torchscript(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s network as a scripted TorchScript module ([0, 1] in and out, any size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(_network(model)).save(str(path))
    return path


class OneLineParser(argparse.ArgumentParser):
    """argparse with its error as one ``error: …`` line (exit status 2), like the main CLI's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (`python -m aigc_lightning.export --help` lists the arguments)\n")


def load_style_network(path: str) -> nn.Module:
    """The ``StyleNetwork`` in the checkpoint ``path``, on the CPU; a ``UserError`` naming the file for a
    missing, truncated or non-checkpoint file, or a checkpoint of another model."""
    from aigc_lightning.callbacks.checkpoint import check_checkpoint_file
    from aigc_lightning.modules import StyleNetwork
    from aigc_lightning.modules.adain import AdaIN

    try:
        check_checkpoint_file(path)
    except UserError as e:  # its message names the fit/predict option; here the file is an argument
        raise UserError(str(e).replace("--ckpt_path ", "checkpoint ", 1)) from e
    hparams = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
    cls = AdaIN if str(hparams.get("_class_path", "")).endswith(".AdaIN") else StyleNetwork
    try:
        return cls.load_from_checkpoint(path, map_location="cpu")
    except Exception as e:  # a GAN's or VAE's checkpoint: other hyper-parameters and weights
        raise UserError(
            f"checkpoint {path} is not a StyleNetwork checkpoint ({type(e).__name__}: "
            f"{(str(e).splitlines() or [''])[0][:200]}); pass the last.ckpt of a configs/style/fast_*.yaml run"
        ) from e


def export_pretrained(path: str, folder: str | Path) -> Path:
    """Write the pretrained folder of the GAN, VAE or StyleNetwork checkpoint ``path`` into ``folder``, with a model
    card of its training (epochs, batches, data, best monitored metrics)."""
    from aigc_lightning.model_card import model_card
    from aigc_lightning.modules.pretrained import checkpoint_class

    cls, checkpoint = checkpoint_class(path)
    model = cls.load_from_checkpoint(path, map_location="cpu")
    if Path(folder).resolve() == Path(path).resolve().parent:
        raise UserError(f"{folder} holds the checkpoint; pass a new folder for the pretrained files")
    card = model_card(model.pretrained_config(), model, checkpoint, source=path)
    return model.save_pretrained(folder, card=card)


def main(argv: list[str] | None = None) -> None:
    """``python -m aigc_lightning.export CKPT OUT [--format onnx|torchscript|pretrained]``."""
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint (RUN/checkpoints/last.ckpt)")
    parser.add_argument("output", help="the file to write (.onnx or .pt), or the folder (pretrained)")
    parser.add_argument("--format", choices=("onnx", "torchscript", "pretrained"), default="onnx")
    args = parser.parse_args(argv)
    try:
        if args.format == "pretrained":
            out = export_pretrained(args.checkpoint, args.output)
        else:
            model = load_style_network(args.checkpoint)
            out = (export_onnx if args.format == "onnx" else export_torchscript)(model, args.output)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    except OSError as e:  # the output's folder cannot be created or written
        raise SystemExit(
            f"error: cannot write {args.output} ({e.strerror or e}); pass an output path in a folder you can write to"
        ) from None
    print(out)


if __name__ == "__main__":
    main()
