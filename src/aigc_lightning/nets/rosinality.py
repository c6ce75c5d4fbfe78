"""Checkpoints of rosinality/stylegan2-pytorch ↔ ``StyleGAN2Generator`` / ``StyleGAN2Discriminator``.

Its ``convert_weight.py`` turns NVIDIA's official pickles into ``{"g_ema": …, "latent_avg": …[, "d": …]}`` and its
``train.py`` saves ``{"g", "d", "g_ema", …, "args"}``; both store parameters as ours do (equalized learning rate,
weights scaled at run time), so conversion is a table of renames plus reshapes of a few singleton dimensions. Size,
style dim, ``n_mlp`` and the width table are read off the tensors. Its networks are always RGB: a grey net
exports with the three colour channels tied, and imports with ``channels=1`` as the mean of the colours.
``python -m bench parity`` checks that both directions compute that implementation's images and logits.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.nets.stylegan2_layers import channel_table, fir_kernel
from aigc_lightning.torch_files import load_tensors

# our key → (their key, their shape as a function of ours); None = same shape. Blur kernels (constant buffers in
# their modules, absent from ours) are added on export and ignored on import.
_Rename = dict[str, tuple[str, Any]]


def _generator_renames(g: nn.Module) -> _Rename:
    def styled(ours: str, theirs: str, noise: int) -> _Rename:
        return {
            f"{ours}.conv.weight": (f"{theirs}.conv.weight", lambda t: t[None]),  # (1, out, in, K, K)
            f"{ours}.conv.affine.weight": (f"{theirs}.conv.modulation.weight", None),
            f"{ours}.conv.affine.bias": (f"{theirs}.conv.modulation.bias", None),
            f"{ours}.noise_strength": (f"{theirs}.noise.weight", lambda t: t.reshape(1)),
            f"{ours}.bias": (f"{theirs}.activate.bias", None),
            f"{ours}.noise_const": (f"noises.noise_{noise}", None),
        }

    def to_rgb(ours: str, theirs: str) -> _Rename:
        return {
            f"{ours}.conv.weight": (f"{theirs}.conv.weight", lambda t: t[None]),  # (1, 3, C, 1, 1)
            f"{ours}.conv.affine.weight": (f"{theirs}.conv.modulation.weight", None),
            f"{ours}.conv.affine.bias": (f"{theirs}.conv.modulation.bias", None),
            f"{ours}.bias": (f"{theirs}.bias", lambda t: t.reshape(1, -1, 1, 1)),
        }

    names: _Rename = {"const": ("input.input", None)}
    for i in range(len(g.mlp)):
        names[f"mlp.{i}.weight"] = (f"style.{i + 1}.weight", None)  # style.0 is their PixelNorm
        names[f"mlp.{i}.bias"] = (f"style.{i + 1}.bias", None)
    names |= styled("conv", "conv1", 0) | to_rgb("to_rgb", "to_rgb1")
    for j in range(len(g.blocks)):
        names |= styled(f"blocks.{j}.conv0", f"convs.{2 * j}", 2 * j + 1)
        names |= styled(f"blocks.{j}.conv1", f"convs.{2 * j + 1}", 2 * j + 2)
        names |= to_rgb(f"blocks.{j}.to_rgb", f"to_rgbs.{j}")
    return names


def _discriminator_renames(d: nn.Module) -> _Rename:
    names: _Rename = {
        "from_rgb.weight": ("convs.0.0.weight", None),
        "from_rgb.bias": ("convs.0.1.bias", None),
    }
    for j in range(len(d.blocks)):
        # their ResBlock: conv1 = [conv, act], conv2 = [blur, conv, act], skip = [blur, conv]
        names[f"blocks.{j}.conv0.weight"] = (f"convs.{j + 1}.conv1.0.weight", None)
        names[f"blocks.{j}.conv0.bias"] = (f"convs.{j + 1}.conv1.1.bias", None)
        names[f"blocks.{j}.conv1.weight"] = (f"convs.{j + 1}.conv2.1.weight", None)
        names[f"blocks.{j}.conv1.bias"] = (f"convs.{j + 1}.conv2.2.bias", None)
        names[f"blocks.{j}.skip.weight"] = (f"convs.{j + 1}.skip.1.weight", None)
    names |= {
        "conv.weight": ("final_conv.0.weight", None),
        "conv.bias": ("final_conv.1.bias", None),
        "fc.weight": ("final_linear.0.weight", None),
        "fc.bias": ("final_linear.0.bias", None),
        "out.weight": ("final_linear.1.weight", None),
        "out.bias": ("final_linear.1.bias", None),
    }
    return names


def load_checkpoint(path_or_state_dict: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    """The checkpoint dict of a ``.pt`` path (tensors only; ``train.py``'s ``args`` Namespace allowed) or the dict."""
    if isinstance(path_or_state_dict, Mapping):
        return path_or_state_dict
    expected = "a .pt saved by rosinality's convert_weight.py or train.py, or by save_rosinality"
    return load_tensors(
        path_or_state_dict, "rosinality checkpoint", expected, safe_globals=[argparse.Namespace]
    )


def _section(ckpt: Mapping[str, Any], keys: tuple[str, ...], probe: str, what: str) -> Mapping[str, Tensor]:
    for key in keys:
        if key in ckpt:
            return ckpt[key]
    if probe in ckpt:  # a bare state dict
        return ckpt
    raise UserError(
        f"the checkpoint has no {what} (looked for {', '.join(map(repr, keys))} or a bare state dict with "
        f"{probe!r}; found {sorted(ckpt)[:6]}); for a discriminator run convert_weight.py with --disc"
    )


def _infer_table(widths: dict[int, int], image_size: int) -> dict[str, int]:
    """channel_multiplier / channel_base / channel_max whose ``channel_table`` gives ``widths`` (res → width)."""
    c_max = widths[4]
    narrower = [res for res in sorted(widths) if widths[res] < c_max]
    if not narrower:
        options = {"channel_multiplier": 2, "channel_base": 16384, "channel_max": c_max}
    else:
        product = widths[narrower[0]] * narrower[0]  # = channel_base · channel_multiplier
        cm = product // 16384 if product % 16384 == 0 else 1
        options = {"channel_multiplier": cm, "channel_base": product // cm, "channel_max": c_max}
    if channel_table(image_size, **options) != widths:
        raise UserError(
            f"widths {widths} are not a StyleGAN2 width table min(base·cm/res, max); this checkpoint "
            "comes from a modified model and cannot be loaded"
        )
    return options


def _mean_of_colours(sd: Mapping[str, Tensor], keys: list[str]) -> dict[str, Tensor]:
    """Average dim 1 (their ToRGB outputs, (1, 3, …)) of ``keys`` to size 1: the grey image is the colours' mean."""
    return {**sd, **{key: sd[key].mean(1, keepdim=True) for key in keys}}


@contextlib.contextmanager
def _layout_errors(what: str):
    """A missing key or a shape that does not fit becomes one message naming the checkpoint kind it expects."""
    try:
        yield
    except UserError:
        raise
    except (KeyError, RuntimeError) as err:
        raise UserError(
            f"this {what} state dict does not have rosinality/stylegan2-pytorch's StyleGAN2 layout ({err!r}); pass "
            "a checkpoint from its convert_weight.py or train.py (SWAGAN and other variants are not supported)"
        ) from err


def _check_channels(channels: int | None) -> int:
    if channels not in (None, 1, 3):
        raise UserError(
            f"channels must be 1, 3 or None for a rosinality checkpoint (it is RGB), got {channels}"
        )
    return channels or 3


def generator_from_rosinality(
    cls: type[nn.Module], path_or_state_dict: str | Path | Mapping[str, Any], channels: int | None = None
) -> nn.Module:
    """A ``cls`` (``StyleGAN2Generator``, whose ``from_rosinality`` calls this) with the weights, constant noise
    and ``latent_avg`` (→ ``w_avg``) of a checkpoint.

    Without ``latent_avg`` (``train.py`` checkpoints), ``w_avg`` = ``mean_latent(10000, seed=0)``. ``channels=1``
    averages the three colour outputs (exact: ToRGB is linear, so the image is the mean of the RGB image).
    """
    channels = _check_channels(channels)
    ckpt = load_checkpoint(path_or_state_dict)
    sd = _section(ckpt, ("g_ema", "g"), "style.1.weight", "generator")
    with _layout_errors("generator"):
        return _generator(cls, sd, ckpt.get("latent_avg"), channels)


def _generator(
    cls: type[nn.Module], sd: Mapping[str, Tensor], latent_avg: Tensor | None, channels: int
) -> nn.Module:
    n_mlp = sum(1 for k in sd if re.fullmatch(r"style\.\d+\.weight", k))
    log_size = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)) + 2
    widths = {4: sd["input.input"].shape[1]} | {
        2 ** (j + 3): sd[f"convs.{2 * j}.conv.weight"].shape[1] for j in range(log_size - 2)
    }  # their modulated weights are (1, out, in, K, K)
    g = cls(
        image_size=2**log_size,
        channels=channels,
        latent_dim=sd["style.1.weight"].shape[1],
        n_mlp=n_mlp,
        **_infer_table(widths, 2**log_size),
    )
    if channels == 1:
        rgb_keys = [k for k in sd if re.fullmatch(r"to_rgb(1|s\.\d+)\.(conv\.weight|bias)", k)]
        sd = _mean_of_colours(sd, rgb_keys)
    shapes = g.state_dict()
    ours = {key: sd[theirs].reshape(shapes[key].shape) for key, (theirs, _) in _generator_renames(g).items()}
    ours["w_avg"] = shapes["w_avg"] if latent_avg is None else latent_avg.reshape(-1)
    g.load_state_dict(ours)  # strict: the rename table must cover every tensor of ours
    if latent_avg is None:
        g.w_avg.copy_(g.mean_latent(10000, seed=0)[0])
    return g.eval()


def discriminator_from_rosinality(
    cls: type[nn.Module], path_or_state_dict: str | Path | Mapping[str, Any], channels: int | None = None
) -> nn.Module:
    """A ``cls`` (``StyleGAN2Discriminator``, whose ``from_rosinality`` calls this) with the weights of a
    checkpoint's ``d``.

    ``channels=1`` sums the three colour inputs' weights: D(grey) equals theirs on the grey image in all three.
    """
    channels = _check_channels(channels)
    sd = _section(load_checkpoint(path_or_state_dict), ("d",), "final_linear.0.weight", "discriminator")
    with _layout_errors("discriminator"):
        return _discriminator(cls, sd, channels)


def _discriminator(cls: type[nn.Module], sd: Mapping[str, Tensor], channels: int) -> nn.Module:
    n_blocks = sum(1 for k in sd if re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k))
    size = 2 ** (n_blocks + 2)
    widths = {4: sd["final_conv.0.weight"].shape[0], size: sd["convs.0.0.weight"].shape[0]}
    for j in range(n_blocks):
        widths[size // 2 ** (j + 1)] = sd[f"convs.{j + 1}.conv2.1.weight"].shape[0]
    d = cls(image_size=size, channels=channels, **_infer_table(widths, size))
    if channels == 1:
        # sum over the colour inputs; the stored weights are scaled by 1/√fan_in at run time, 1/√3 for theirs
        sd = {**sd, "convs.0.0.weight": sd["convs.0.0.weight"].sum(1, keepdim=True) / math.sqrt(3)}
    shapes = d.state_dict()
    d.load_state_dict(
        {key: sd[theirs].reshape(shapes[key].shape) for key, (theirs, _) in _discriminator_renames(d).items()}
    )
    return d.eval()


def _rosinality_widths(net: nn.Module) -> None:
    """Warn when rosinality's fixed table (512 up to 32 px, then 16384·cm / res) cannot hold ``net``."""
    ours = channel_table(net.image_size, **net.table_options)
    theirs = {res: 512 if res <= 32 else 16384 * net.channel_multiplier // res for res in ours}
    if ours != theirs:
        warnings.warn(
            f"widths {ours} differ from rosinality's table for channel_multiplier={net.channel_multiplier} "
            f"({theirs}): its Generator/Discriminator cannot load this state dict (this project's "
            "from_rosinality can)",
            stacklevel=3,
        )


def _export(net: Any, renames: _Rename) -> dict[str, Tensor]:
    sd = net.state_dict()
    out = {}
    for key, (theirs, shape) in renames.items():
        t = sd[key].detach().cpu().float().clone()
        out[theirs] = shape(t) if shape else t
    return out


def generator_to_rosinality(g: nn.Module) -> dict[str, Tensor]:
    """The state dict of rosinality's ``Generator(g.image_size, g.latent_dim, g.n_mlp, g.channel_multiplier)``.

    A grey generator exports with its ToRGB output copied to the three colours (each colour = the grey image).
    """
    _rosinality_widths(g)
    out = _export(g, _generator_renames(g))
    if g.channels == 1:
        for key in [k for k in out if re.fullmatch(r"to_rgb(1|s\.\d+)\.(conv\.weight|bias)", k)]:
            out[key] = out[key].repeat_interleave(3, dim=1)  # (1, 1, …) → (1, 3, …)
    for j in range(
        len(g.blocks)
    ):  # their blur kernels are saved buffers; ×4 restores the mean after zero insertion
        out[f"convs.{2 * j}.conv.blur.kernel"] = fir_kernel(gain=4.0)
        out[f"to_rgbs.{j}.upsample.kernel"] = fir_kernel(gain=4.0)
    return out


def discriminator_to_rosinality(d: nn.Module) -> dict[str, Tensor]:
    """The state dict of rosinality's ``Discriminator(d.image_size, d.channel_multiplier)``.

    A grey discriminator exports with its input weights split over the three colours: theirs on an RGB image
    equals ours on the mean of its colours.
    """
    _rosinality_widths(d)
    out = _export(d, _discriminator_renames(d))
    if d.channels == 1:
        # (C, 1, 1, 1) → (C, 3, 1, 1): a third of the effective weight each, stored ×√3 for their 1/√3 fan-in gain
        out["convs.0.0.weight"] = out["convs.0.0.weight"].repeat_interleave(3, dim=1) / math.sqrt(3)
    for j in range(len(d.blocks)):
        out[f"convs.{j + 1}.conv2.0.kernel"] = fir_kernel()
        out[f"convs.{j + 1}.skip.0.kernel"] = fir_kernel()
    return out


def save_rosinality(
    path: str | Path,
    generator: nn.Module,
    discriminator: nn.Module | None = None,
    latent_avg: Tensor | None = None,
) -> Path:
    """Write ``{"g_ema", "latent_avg"[, "d"]}`` as convert_weight.py does (``latent_avg`` defaults to ``w_avg``),
    for rosinality's generate.py, projector.py and closed_form_factorization.py."""
    ckpt: dict[str, Any] = {
        "g_ema": generator_to_rosinality(generator),
        "latent_avg": (generator.w_avg if latent_avg is None else latent_avg)
        .detach()
        .cpu()
        .float()
        .reshape(-1),
    }
    if discriminator is not None:
        ckpt["d"] = discriminator_to_rosinality(discriminator)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


__all__ = [
    "discriminator_from_rosinality",
    "discriminator_to_rosinality",
    "generator_from_rosinality",
    "generator_to_rosinality",
    "load_checkpoint",
    "save_rosinality",
]
