"""Export a trained feed-forward style network to ONNX (and TorchScript) for use outside PyTorch.

The exported graph takes and returns what a user has, not the project's internal range: RGB float (B, 3, H, W)
in [0, 1], any batch size, height and width (dynamic axes; odd sizes too). Needs the ``[export]`` extra
(onnx, onnxscript; onnxruntime to check or run the result)::

    python -m aigc_lightning.export RUN/checkpoints/last.ckpt style.onnx
    python -m aigc_lightning.export RUN/checkpoints/last.ckpt style.pt --format torchscript
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    """The image network of a ``StyleNetwork`` (or the network itself), in eval mode on the CPU, as fp32."""
    network = getattr(model, "network", model)
    return UnitRangeNetwork(network).eval().float().cpu()


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18, example_size: int = 64) -> Path:
    """Write ``model``'s network (a ``StyleNetwork`` or a bare ``TransformNet``) to ONNX at ``path`` with dynamic
    batch, height and width; input ``"image"`` and output ``"stylized"``, both (B, 3, H, W) in [0, 1]."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it; imported here for one clear message)
    except ImportError as e:
        raise UserError('ONNX export needs the export extra: pip install "aigc-lightning[export]"') from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, example_size, example_size + 2)
    h, w = torch.export.Dim("height", min=4), torch.export.Dim("width", min=4)
    with torch.no_grad():
        program = torch.onnx.export(
            _network(model),
            (x,),
            dynamo=True,
            input_names=["image"],
            output_names=["stylized"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1), 2: h, 3: w},),
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


def main(argv: list[str] | None = None) -> None:
    """``python -m aigc_lightning.export CKPT OUT [--format onnx|torchscript]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a StyleNetwork checkpoint (RUN/checkpoints/last.ckpt)")
    parser.add_argument("output", help="the file to write (.onnx or .pt)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    args = parser.parse_args(argv)
    from aigc_lightning.modules import StyleNetwork

    try:
        model = StyleNetwork.load_from_checkpoint(args.checkpoint, map_location="cpu")
        out = (export_onnx if args.format == "onnx" else export_torchscript)(model, args.output)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(out)


if __name__ == "__main__":
    main()
