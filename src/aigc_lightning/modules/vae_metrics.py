"""What the VAE reports at validation and test: mean −ELBO, reconstruction, KL and importance-weighted NLL per image
(nats), and the number of active latent units. torchmetrics states, so every number is reduced over all DDP
processes before it is logged."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

STAGES, MEANS = ("val", "test"), ("nelbo", "recon", "kl", "nll_iw")


class ActiveUnits(Metric):
    """Number of latents j with Var_x(E_q[z_j | x]) > ``threshold`` (Burda et al. 2016, section 5.2).

    A torchmetrics ``Metric`` so that the sums are reduced over all DDP processes before the variance is taken.
    """

    full_state_update = False

    def __init__(self, latent_dim: int, threshold: float = 0.01) -> None:
        super().__init__()
        self.threshold = threshold
        # float64: the variance is E[mu²] − E[mu]², which cancels badly in float32.
        self.add_state("total", torch.zeros(latent_dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total_sq", torch.zeros(latent_dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, mu: Tensor) -> None:
        mu = mu.detach().double()
        self.total += mu.sum(0)
        self.total_sq += mu.pow(2).sum(0)
        self.count += mu.shape[0]

    def compute(self) -> Tensor:
        mean = self.total / self.count.clamp(min=1)
        var = self.total_sq / self.count.clamp(min=1) - mean.pow(2)
        return (var > self.threshold).sum().float()


class VAEMetrics(nn.Module):
    """Per-stage means of ``nelbo``, ``recon``, ``kl``, ``nll_iw`` and (validation) ``active_units``."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.means = nn.ModuleDict({f"{stage}_{name}": MeanMetric() for stage in STAGES for name in MEANS})
        self.active_units = ActiveUnits(latent_dim)

    def update(self, stage: str, recon: Tensor, kl: Tensor, mu: Tensor, nll_iw: Tensor | None) -> None:
        values = {"nelbo": recon + kl, "recon": recon, "kl": kl, "nll_iw": nll_iw}
        for name, value in values.items():
            if value is not None:
                self.means[f"{stage}_{name}"].update(value)
        if stage == "val":
            self.active_units.update(mu)

    def reset(self, stage: str) -> None:
        # Outside inference mode: states created by ``validate``/``test`` (inference mode) would otherwise be
        # inference tensors that the next ``fit`` validation (plain no_grad) cannot update in place.
        with torch.inference_mode(False):
            for name in MEANS:
                self.means[f"{stage}_{name}"].reset()
            self.active_units.reset()

    def compute(self, stage: str) -> dict[str, Tensor]:
        """``{"<stage>/<name>": value}`` for every mean that was updated (``nll_iw`` stays empty when k = 0), plus
        ``val/active_units``; then resets the stage."""
        logs = {}
        for name in MEANS:
            metric = self.means[f"{stage}_{name}"]
            if metric.update_count > 0:
                logs[f"{stage}/{name}"] = metric.compute()
        if stage == "val":
            logs["val/active_units"] = self.active_units.compute()
        self.reset(stage)
        return logs


__all__ = ["ActiveUnits", "VAEMetrics"]
