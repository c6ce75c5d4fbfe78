"""The one optimisation loop of style transfer: steps of an optimizer over an image's pixels.

``fit``'s ``training_step`` and ``stylize`` (``predict``) both run ``optimizer_step_on``: one optimizer step
(``BoxLBFGS`` by default: up to ``max_iter`` loss evaluations inside the [0, 1] pixel box), every float32 loss
offered to the kept best image, the bfloat16 → float32 schedule of ``style_precision``, and a step that reaches a
NaN or infinite image rejected: the image goes back to the best one and the caller makes a fresh optimizer with
half the step size (``new_optimizer(image, restarts)``), at most ``MAX_RESTARTS`` times.

``PixelLoop`` is the part of ``StyleTransfer`` that runs it, kept in its own file because it does not depend on
the Gatys objective or on Lightning: it uses the module's ``optimizer`` factory, ``objective(image, t, bf16)``,
``hparams.feature_precision`` and ``hparams.bf16_until``, and counts ``evaluations`` and ``rescores``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from aigc_lightning.errors import NonFiniteLossError
from aigc_lightning.modules.style_precision import Schedule
from aigc_lightning.optim import BestImage

MAX_RESTARTS = 20  # rejected (non-finite) steps, each retried with half the step size, before giving up


class PixelLoop:
    """Optimizer steps over an image's pixels for ``StyleTransfer`` (see the module docstring)."""

    # What the host module provides (annotations only: nothing is defined here)
    optimizer: Callable[[list[Tensor]], Optimizer]
    objective: Callable[..., dict[str, Tensor]]  # objective(image, t, bf16=False) -> {"loss": …, …}
    hparams: Any  # reads feature_precision and bf16_until
    evaluations: int
    rescores: int

    def new_optimizer(self, image: Tensor, restarts: int = 0) -> Optimizer:
        """A fresh optimizer over ``image``, its step size halved once per non-finite restart so far."""
        opt = self.optimizer([image])
        for group in opt.param_groups:
            group["lr"] *= 0.5**restarts
        return opt

    def rescore(self, image: Tensor, t: dict, best: BestImage) -> float:
        """Offer ``image`` to ``best`` with its float32 losses (a forward pass only); returns its float32 loss."""
        with torch.no_grad(), torch.autocast(image.device.type, enabled=False):
            losses = self.objective(image.detach().clamp(0, 1), t)
        self.rescores += 1
        best.offer(losses, image)
        return float(losses["loss"])

    def optimizer_step_on(
        self,
        image: Tensor,
        opt,
        t: dict,
        best: BestImage,
        backward: Callable[[Tensor], None],
        restarts: int,
        schedule: Schedule | None = None,
    ) -> int:
        """One step of ``opt`` (a torch or Lightning optimizer over ``image``) against targets ``t``.

        Every float32 evaluation offers its image to ``best``; in the bfloat16 phase of ``schedule`` (``None``:
        float32 only) images are offered with float32 re-scores (``style_precision``), and a step that gains
        less than ``bf16_until`` ends that phase. Returns ``restarts``, plus one when the step is rejected (the
        image or its last loss is NaN/inf): ``image`` is then reset to ``best`` and the caller makes a fresh
        optimizer with a smaller step, ``new_optimizer(image, restarts)``.
        """
        schedule = schedule or Schedule(bf16=False)
        bf16 = schedule.start_step(self.hparams.feature_precision, image.device)
        last: dict[str, Tensor] = {}

        def closure() -> Tensor:
            opt.zero_grad()
            # The loss is that of the clamped image, but clamp only when needed: clamp's gradient is 0 *at* the
            # bounds, which would freeze every saturated pixel of BoxLBFGS's in-box image. Autocast is this
            # module's own choice (bf16), never the Trainer's.
            inside = bool(((image >= 0) & (image <= 1)).all())
            with torch.autocast(image.device.type, enabled=False):
                losses = self.objective(image if inside else image.clamp(0, 1), t, bf16=bf16)
            backward(losses["loss"])
            self.evaluations += 1
            last["loss"] = losses["loss"].detach()
            if not bf16:
                best.offer(losses, image)
            elif schedule.rescore_now(float(last["loss"])):
                schedule.first_score(self.rescore(image, t, best))
            return losses["loss"]

        opt.step(closure=closure)
        with torch.no_grad():
            finite = bool(torch.isfinite(image).all()) and math.isfinite(float(last["loss"]))
            if finite:
                image.clamp_(0, 1)  # after the step, never inside the closure; BoxLBFGS's image already is
                loss = self.rescore(image, t, best) if bf16 else None  # the step's image, scored in float32
                if bf16 and schedule.end_step(loss, self.hparams.bf16_until) and hasattr(opt, "refresh"):
                    opt.refresh()  # BoxLBFGS: re-evaluate here in float32, keep the (bfloat16) history
                return restarts
            if best.image is None or restarts >= MAX_RESTARTS:
                raise NonFiniteLossError(
                    f"the style transfer loss became {float(last['loss'])} after {restarts} retries with ever "
                    "smaller steps; check the content/style images, lower the optimizer's lr or the style weight"
                )
            image.copy_(best.image)
        return restarts + 1
