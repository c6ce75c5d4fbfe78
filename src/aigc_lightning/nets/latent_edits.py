"""Latent-space edits of a StyleGAN2 generator: closed-form directions (SeFa), direction files, layer groups.

SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs", eq. 5): every synthesis layer
turns w into a style with an affine map A_i; the directions n that change those styles the most maximise
‖A n‖² under ‖n‖ = 1 for A = [A_1; A_2; …], i.e. they are the eigenvectors of AᵀA (the right singular vectors of
A), strongest first. As rosinality's ``closed_form_factorization.py``, the ToRGB affines are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lightning.errors import UserError
from aigc_lightning.nets.stylegan2 import StyleGAN2Generator
from aigc_lightning.nets.stylegan2_layers import StyledConv
from aigc_lightning.torch_files import load_tensors

LAYER_GROUPS = ("coarse", "middle", "fine")


def sefa_directions(generator: StyleGAN2Generator) -> Tensor:
    """Unit directions in w space, (w_dim, w_dim): row k is SeFa's k-th semantic, strongest first."""
    weights = [
        m.conv.affine.weight * m.conv.affine.weight_gain  # (in_channels, w_dim): the affine as it is applied
        for m in generator.modules()
        if isinstance(m, StyledConv)
    ]
    a = torch.cat(weights).detach().double()  # (Σ channels, w_dim)
    _, _, vh = torch.linalg.svd(a, full_matrices=False)  # rows of vh: eigenvectors of AᵀA, descending
    return vh.float()


def load_directions(path: str | Path, w_dim: int) -> Tensor:
    """Linear directions from a file (e.g. InterFaceGAN attribute normals): a tensor (K, w_dim) or (w_dim,), or a
    dict holding one under ``"directions"``, saved with ``torch.save``; each row is scaled to unit length."""
    p = Path(path).expanduser()
    obj = load_tensors(p, "--model.directions", f"a .pt holding a (K, {w_dim}) tensor saved with torch.save")
    d = obj.get("directions") if isinstance(obj, dict) else obj
    if not isinstance(d, Tensor) or d.shape[-1] != w_dim or d.ndim > 2:
        shape = tuple(d.shape) if isinstance(d, Tensor) else type(d).__name__
        raise UserError(f"--model.directions {p} holds {shape}; expected a (K, {w_dim}) tensor for this generator")
    d = d.float().reshape(-1, w_dim)  # (K, w_dim)
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)


def read_latent(path: str | Path, generator: StyleGAN2Generator) -> dict[str, Any]:
    """A latent file written by projection (``{"ws": (num_ws, w_dim), "noise": {name: map}, …}``), checked against
    ``generator``; a bare (num_ws, w_dim) or (w_dim,) tensor is accepted too (noise maps then the generator's)."""
    p = Path(path).expanduser()
    obj = load_tensors(p, "latent file", "a .pt written by projection (fit)")
    latent = dict(obj) if isinstance(obj, dict) else {"ws": obj}
    ws = latent.get("ws")
    if isinstance(ws, Tensor) and ws.ndim == 1:
        ws = ws[None].expand(generator.num_ws, -1)  # one w for every layer
    if not isinstance(ws, Tensor) or tuple(ws.shape) != (generator.num_ws, generator.w_dim):
        got = tuple(ws.shape) if isinstance(ws, Tensor) else type(ws).__name__
        raise UserError(
            f"latent file {p} holds ws of shape {got}, but this {generator.image_size} px generator needs "
            f"({generator.num_ws}, {generator.w_dim}); project with the same generator"
        )
    latent["ws"] = ws.float()
    latent["noise"] = dict(latent.get("noise") or {})
    return latent


def layer_group(group: str, num_ws: int) -> Tensor:
    """Indices of the ws that a layer group drives.

    The StyleGAN paper (§3.1) splits 1024 px at coarse 4–8 px, middle 16–32 px, fine 64–1024 px, i.e. 2, 2 and
    5 of 9 resolutions; here the same fractions of the generator's resolutions, two ws per resolution (so a 32 px
    generator has coarse 4 px, middle 8 px, fine 16–32 px).
    """
    if group not in LAYER_GROUPS:
        raise UserError(f"layer group must be one of {', '.join(LAYER_GROUPS)}, got {group!r}")
    octaves = num_ws // 2
    coarse_end, middle_end = round(octaves * 2 / 9), round(octaves * 4 / 9)
    coarse_end = max(coarse_end, 1)
    middle_end = max(middle_end, coarse_end + 1)
    start, end = {"coarse": (0, coarse_end), "middle": (coarse_end, middle_end), "fine": (middle_end, octaves)}[group]
    return torch.arange(2 * start, 2 * end)


__all__ = ["LAYER_GROUPS", "layer_group", "load_directions", "read_latent", "sefa_directions"]
