"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable augmentation is applied to real and generated images before the discriminator
sees them (in both the D and the G step), so D cannot overfit a small training set and the generator still gets
gradients through the augmentation. Written by hand because torchvision's transforms are not differentiable per
sample on a batch; this follows the paper's reference implementation (github.com/mit-han-lab/data-efficient-gans)
for images in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval as Unit
from jsonargparse.typing import PositiveFloat, PositiveInt
from torch import Tensor

from aigc_lightning.errors import UserError

POLICIES = ("color", "translation", "cutout")


def rand_color(x: Tensor) -> Tensor:
    """Random brightness (±0.5), saturation (×[0, 2]) and contrast (×[0.5, 1.5]) per sample."""
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)  # saturation: a no-op on grey images
    x = (x - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def rand_translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size (integer pixels), filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device), torch.arange(h, device=x.device), torch.arange(w, device=x.device),
        indexing="ij",
    )  # each (B, H, W)
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])  # (B, C, H+2, W+2): the zero border is where shifted-out pixels read from
    return x_pad.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)  # (B, H, W, C) gathered → (B, C, H, W)


def rand_cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one random square of ``ratio`` × the image size per sample."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device), torch.arange(ch, device=x.device), torch.arange(cw, device=x.device),
        indexing="ij",
    )  # each (B, ch, cw)
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask[:, None]  # (B, 1, H, W) broadcast over channels


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """``"color,translation,cutout"`` → ("color", "translation", "cutout"); raises ``UserError`` on unknown names."""
    names = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise UserError(f"unknown DiffAugment policy {unknown}; use a comma-separated subset of {', '.join(POLICIES)}")
    return names


def diff_augment(x: Tensor, policy: tuple[str, ...] | str) -> Tensor:
    """Apply the DiffAugment ``policy`` (in order) to a batch (B, C, H, W); identity for an empty policy."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for name in names:
        x = {"color": rand_color, "translation": rand_translation, "cutout": rand_cutout}[name](x)
    return x.contiguous()


# ----------------------------------------------------------------------------------------------------------
# Adaptive augmentation (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data", ADA)


def augment_with_probability(x: Tensor, policy: tuple[str, ...], p: float) -> Tensor:
    """DiffAugment ``policy`` applied to each sample of (B, C, H, W) independently with probability ``p``.

    p = 1 is plain ``diff_augment``, p = 0 the identity (no random numbers drawn). The kept samples still pass
    through the graph unchanged, so gradients reach every input either way.
    """
    if p <= 0 or not policy:
        return x
    if p >= 1:
        return diff_augment(x, policy)
    keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= p  # (B, 1, 1, 1): True = not augmented
    return torch.where(keep, x, diff_augment(x, policy))


class AdaController:
    """ADA's overfitting heuristic r_t = E[sign(D(x_real))] steering the augmentation probability p.

    Every ``interval`` batches p moves by ``sign(r_t − target) · images / (ada_kimg · 1000)``, where ``images`` are
    the real images D saw since the last adjustment: p goes from 0 to 1 in ``ada_kimg`` thousand images at the
    fastest (NVlabs stylegan2-ada-pytorch ``training_loop.py``: target 0.6, interval 4, ada_kimg 500). A plain
    object with float state so the module can save it in ``checkpoint["counters"]`` and restore it exactly.
    A GAN config names it as ``model.ada`` (it steers the probability of ``model.augment``)::

        ada: {class_path: aigc_lightning.augment.AdaController, init_args: {target: 0.6, ada_kimg: 100}}

    Args:
        target: the r_t that p is driven toward (0.6 in the paper).
        ada_kimg: thousands of images for p to travel from 0 to 1 (NVlabs 500).
        interval: batches between adjustments (NVlabs 4).
        p: the initial probability (NVlabs' ``--p``).
    """

    def __init__(
        self, target: Unit = 0.6, ada_kimg: PositiveFloat = 500.0, interval: PositiveInt = 4, p: Unit = 0.0
    ) -> None:
        self.target, self.ada_kimg, self.interval = float(target), float(ada_kimg), int(interval)
        self.p = float(p)  # a plain float: constrained types do not unpickle under weights_only
        self.sign_sum = 0.0  # Σ sign(D(real)) since the last adjustment
        self.count = 0.0  # real images seen since the last adjustment

    def accumulate(self, real_logits: Tensor) -> None:
        """Add one D step's real logits (B,) to the running r_t."""
        self.sign_sum += float(real_logits.detach().float().sign().sum())
        self.count += real_logits.shape[0]

    def rt(self) -> float:
        """The current estimate of r_t (0 before any logits were seen)."""
        return self.sign_sum / self.count if self.count else 0.0

    def adjust(self, batches: int, all_reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        """After batch number ``batches`` (1-based): on every ``interval``-th batch update p and reset the sums.

        ``all_reduce`` sums (sign_sum, count) over DDP ranks first, so every rank computes the same p.
        """
        if batches % self.interval:  # the same on every rank, so all of them meet in all_reduce
            return
        sums = torch.tensor([self.sign_sum, self.count], dtype=torch.float64)
        if all_reduce is not None:
            sums = all_reduce(sums)
        if not sums[1]:
            return
        rt = float(sums[0] / sums[1])
        step = (1.0 if rt > self.target else -1.0 if rt < self.target else 0.0) * float(sums[1])
        self.p = min(max(self.p + step / (self.ada_kimg * 1000), 0.0), 1.0)
        self.sign_sum, self.count = 0.0, 0.0

    def __repr__(self) -> str:
        return f"AdaController(target={self.target}, ada_kimg={self.ada_kimg}, interval={self.interval})"

    def state_dict(self) -> dict[str, float]:
        return {"aug_p": self.p, "ada_sign_sum": self.sign_sum, "ada_count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p = state.get("aug_p", self.p)
        self.sign_sum, self.count = state.get("ada_sign_sum", 0.0), state.get("ada_count", 0.0)
