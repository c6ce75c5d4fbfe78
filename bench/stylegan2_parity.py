"""StyleGAN2 parity with rosinality/stylegan2-pytorch: ``python -m bench parity`` (see ``parity``)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.utils.cpp_extension

from aigc_lightning.nets import StyleGAN2Discriminator, StyleGAN2Generator

TOLERANCE = 1e-4

# An `op` package with rosinality's names and CPU semantics, written here (fused bias + leaky ReLU × √2,
# upfirdn2d with (x0, x1, y0, y1) padding, plain convolutions).
SHIM = """
import contextlib
import types

import torch
import torch.nn.functional as F
from torch import nn


def fused_leaky_relu(input, bias=None, negative_slope=0.2, scale=2 ** 0.5):
    if bias is not None:
        input = input + bias.view(1, -1, *[1] * (input.ndim - 2))
    return F.leaky_relu(input, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, input):
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)


def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
    x0, x1, y0, y1 = pad if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
    b, c, h, w = input.shape
    x = input.new_zeros(b, c, h * up, w * up)
    x[:, :, ::up, ::up] = input                      # zero insertion by strided assignment
    x = F.pad(x, [x0, x1, y0, y1])                   # negative padding crops
    x = F.conv2d(x.reshape(b * c, 1, *x.shape[2:]), torch.flip(kernel, [0, 1])[None, None].to(x))
    return x.reshape(b, c, *x.shape[2:])[:, :, ::down, ::down]


def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)


conv2d_gradfix = types.SimpleNamespace(
    conv2d=_conv2d, conv_transpose2d=_conv_transpose2d, no_weight_gradients=contextlib.nullcontext
)
"""


def import_their_model(rosinality_dir: Path, ops: str, tmp: Path) -> types.ModuleType:
    """Their ``model.py`` as a fresh module, with ``op`` from their checkout (compiler stubbed) or the shim."""
    for name in [m for m in sys.modules if m == "op" or m.startswith("op.")]:
        del sys.modules[name]
    if ops == "shim":
        (tmp / "op").mkdir(exist_ok=True)
        (tmp / "op" / "__init__.py").write_text(SHIM)
        op_root = tmp
    else:
        op_root = rosinality_dir
    load = torch.utils.cpp_extension.load
    torch.utils.cpp_extension.load = lambda *a, **k: None  # their CPU paths never call the compiled module
    sys.path.insert(0, str(op_root))
    try:
        spec = importlib.util.spec_from_file_location(f"rosinality_model_{ops}", rosinality_dir / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(op_root))
        torch.utils.cpp_extension.load = load
    return module


@torch.no_grad()
def randomise(net: torch.nn.Module) -> None:
    """Make the zero-/one-initialised tensors (noise strengths, biases, style biases) matter too."""
    for name, p in net.named_parameters():
        if name.endswith(("noise.weight", "noise_strength")):
            p.normal_(0, 0.5)
        elif name.endswith(("modulation.bias", "affine.bias")):
            p.normal_(1, 0.2)
        elif name.endswith("bias"):
            p.normal_(0, 0.2)


def their_images(g, z, psi, latent_avg, noise: str) -> torch.Tensor:
    kwargs = {"truncation": psi, "truncation_latent": latent_avg[None], "randomize_noise": False}
    if noise == "none":  # zero tensors as their noise inputs
        kwargs["noise"] = [torch.zeros_like(getattr(g.noises, f"noise_{i}")) for i in range(g.num_layers)]
    return g([z], **kwargs)[0]


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def run_case(model, size: int, cm: int, batch: int, tmp: Path) -> list[tuple[str, float, float]]:
    """(check, max |ours − theirs|, max |theirs|) rows for one size and channel multiplier."""
    rows = []
    g, d = model.Generator(size, 512, 8, channel_multiplier=cm).eval(), model.Discriminator(size, cm).eval()
    randomise(g)
    randomise(d)
    latent_avg = g.mean_latent(4096)[0]  # (512,), as convert_weight.py stores it
    path = tmp / f"rosinality_{size}_{cm}.pt"
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict(), "latent_avg": latent_avg}, path)

    ours_g, ours_d = StyleGAN2Generator.from_rosinality(path), StyleGAN2Discriminator.from_rosinality(path)
    z = torch.randn(batch, 512)
    for psi, noise in [(1.0, "const"), (0.7, "const"), (1.0, "none")]:
        theirs = their_images(g, z, psi, latent_avg, noise)
        ours = ours_g(z, truncation_psi=psi, noise_mode=noise)
        rows.append(
            (f"import G: images ψ={psi} noise={noise}", _diff(ours, theirs), theirs.abs().max().item())
        )
    images = torch.cat(
        [their_images(g, z, 1.0, latent_avg, "const"), torch.rand(batch, 3, size, size) * 2 - 1]
    )
    rows.append(
        ("import D: logits", _diff(ours_d(images), d(images).flatten()), d(images).abs().max().item())
    )

    # export: nets built here → their freshly built nets (strict load_state_dict)
    mine_g, mine_d = (
        StyleGAN2Generator(size, 3, 512, 8, cm).eval(),
        StyleGAN2Discriminator(size, 3, cm).eval(),
    )
    randomise(mine_g)
    randomise(mine_d)
    mine_g.w_avg.copy_(mine_g.mean_latent(4096, seed=1)[0])
    g2, d2 = model.Generator(size, 512, 8, channel_multiplier=cm).eval(), model.Discriminator(size, cm).eval()
    g2.load_state_dict(mine_g.to_rosinality())
    d2.load_state_dict(mine_d.to_rosinality())
    for psi in (1.0, 0.7):
        theirs = their_images(g2, z, psi, mine_g.w_avg, "const")
        ours = mine_g(z, truncation_psi=psi, noise_mode="const")
        rows.append((f"export G: images ψ={psi} noise=const", _diff(ours, theirs), theirs.abs().max().item()))
    rows.append(
        ("export D: logits", _diff(mine_d(images), d2(images).flatten()), d2(images).abs().max().item())
    )

    # a grey net exports with the colours tied: their RGB image is ours in every channel, and their D on a grey
    # image copied to the three colours is ours on it
    grey_g, grey_d = (
        StyleGAN2Generator(size, 1, 512, 8, cm).eval(),
        StyleGAN2Discriminator(size, 1, cm).eval(),
    )
    randomise(grey_g)
    randomise(grey_d)
    g2.load_state_dict(grey_g.to_rosinality())
    d2.load_state_dict(grey_d.to_rosinality())
    theirs = their_images(g2, z, 1.0, grey_g.w_avg, "const")
    ours = grey_g(z, noise_mode="const").expand_as(theirs)
    rows.append(("export grey G: images ψ=1.0 noise=const", _diff(ours, theirs), theirs.abs().max().item()))
    grey, theirs = images[:, :1], d2(images[:, :1].expand(-1, 3, -1, -1)).flatten()
    rows.append(("export grey D: logits", _diff(grey_d(grey), theirs), theirs.abs().max().item()))
    return rows


def parity(args) -> dict:
    """Parity of ``nets/stylegan2.py`` with rosinality/stylegan2-pytorch's ``model.py``, both directions, on the CPU.

        git clone https://github.com/rosinality/stylegan2-pytorch /tmp/rosinality     # or any checkout of it
        python -m bench parity --rosinality_dir /tmp/rosinality

    For each case (size, channel_multiplier) it builds *their* Generator and Discriminator with random weights (noise
    strengths, biases and style biases randomised too, so every tensor matters), saves a checkpoint in their format
    (``g_ema``, ``d``, ``latent_avg`` = their ``mean_latent(4096)``), loads it with ``from_rosinality`` and prints the
    max |diff| of images (ψ = 1 and ψ = 0.7 around ``latent_avg``, their ``randomize_noise=False`` vs our
    ``noise_mode="const"``; zero noise vs ``"none"``) and of D logits. The other way, a generator and discriminator built
    here (random weights) are exported with ``to_rosinality`` into their freshly built networks (``load_state_dict``,
    strict) and compared the same way. Every difference must be ≤ 1e-4 (exit status 1 otherwise, after the record is written).

    Their ``op`` package compiles CUDA kernels at import. ``--ops theirs`` stubs the compiler and runs their own CPU
    code paths (``upfirdn2d_native``, the CPU branch of ``fused_leaky_relu``); ``--ops shim`` puts a temporary ``op``
    package first on ``sys.path`` that implements the four names with our own few lines of PyTorch, independent of the
    project's ``upfirdn2d``. Not part of the test suite.
    """
    if not (args.rosinality_dir / "model.py").is_file():
        sys.exit(
            f"{args.rosinality_dir}/model.py not found; pass --rosinality_dir of a stylegan2-pytorch checkout"
        )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ops in args.ops:
            model = import_their_model(args.rosinality_dir.resolve(), ops, Path(tmp))
            for case in args.cases:
                size, cm = map(int, case.split(":"))
                torch.manual_seed(args.seed)
                for check, diff, scale in run_case(model, size, cm, args.batch, Path(tmp)):
                    rows.append({"ops": ops, "size": size, "cm": cm, "check": check, "max abs diff": f"{diff:.2e}",
                                 "max abs value": round(scale, 2), "diff": diff})  # fmt: skip
                    print(rows[-1], flush=True)
    worst = max(r.pop("diff") for r in rows)
    return {"rows": rows, "failed": worst > TOLERANCE, "summary": {"worst": f"{worst:.2e}", "tolerance": TOLERANCE,
                                      "result": "PASS" if worst <= TOLERANCE else "FAIL"}}  # fmt: skip


def parity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rosinality_dir", type=Path, required=True, help="a checkout of stylegan2-pytorch")
    p.add_argument("--ops", nargs="+", choices=["theirs", "shim"], default=["theirs", "shim"])
    p.add_argument("--cases", nargs="+", default=["32:2", "64:2", "64:1"], help="size:channel_multiplier")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
