"""Neural style transfer (Gatys, Ecker & Bethge 2016): the parameter *is* the output image.

One loop, ``stylize``: coarse-to-fine scales, each a run of optimizer steps over the pixels (``BoxLBFGS`` by
default: up to ``max_iter`` loss evaluations inside the [0, 1] pixel box, see ``aigc_lightning.optim``), the best
image seen so far kept, a step that reaches a NaN or infinite image rejected: the image goes back to the best one
and the optimizer starts afresh with half the step size. ``predict`` calls it once per image; ``fit`` calls it for
one step per training step on its own ``Run`` (the image is then this module's parameter, the optimizer
Lightning's, and the run's state goes into the checkpoints), so ``max_steps`` counts optimizer steps and the last
scale continues until then.

Every loss is that of a displayable (clamped) image; the best-so-far never rises. ``feature_precision`` runs the
VGG in bfloat16 while steps gain much, then float32 (``style_precision``). The objective is ``PerceptualLoss``
(``aigc_lightning.perceptual``); every image here, the data's included, is RGB in [0, 1].

Quality options: several blended styles (their target Grams are averaged with the blend weights), colour
preservation by luminance-only transfer (Gatys et al. 2017, "Controlling perceptual factors in neural style
transfer", sec. 5), coarse-to-fine scales (optimise small, upsample, continue), total variation. Observers are
callbacks: the image logger asks ``images_to_log``, ``callbacks.StylizedImageSaver`` writes ``stylized()``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim import Optimizer

from aigc_lightning.errors import NonFiniteLossError, UserError
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.modules.style_precision import Schedule
from aigc_lightning.optim import BestImage, BoxLBFGS, restart
from aigc_lightning.perceptual import PerceptualLoss, Targets
from aigc_lightning.pixels import rgb_to_yiq, yiq_to_rgb

MAX_RESTARTS = 20  # rejected (non-finite) steps at one scale, each retried with half the step size, before giving up

def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, antialiased resize of (B, C, H, W) to ``size``; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


@dataclass
class Problem:
    """One content/style pair at one image size: the targets, and the images a run starts from and renders with."""

    targets: Targets
    content: Tensor  # (1, C, h, w): the content image, or its luma with colour preservation
    style: Tensor  # (1, C, h, w): the first style image, or its matched luma
    chroma: Tensor | None  # (1, 2, h, w): the content's chroma, kept by colour preservation


@dataclass
class Run:
    """One coarse-to-fine optimisation of ``image`` (``stylize`` makes one per image; ``fit`` keeps its own)."""

    image: nn.Parameter
    optimizer: Optimizer | None = None  # over [image]; ``None``: made from the module's factory
    backward: Callable[[Tensor], None] = Tensor.backward
    steps: int = 0  # optimizer steps, all scales
    restarts: int = 0  # rejected steps at the current scale
    best: BestImage = field(default_factory=BestImage)  # at the current scale
    schedule: Schedule = field(default_factory=Schedule)  # bfloat16 → float32, at the current scale
    problems: dict[tuple[int, int], Problem] = field(default_factory=dict)  # per size, from the data


class StyleTransfer(PlainHyperparameters, LightningModule):
    """Gatys-style transfer: optimise the output pixels against VGG content and Gram-matrix style targets.

    Args:
        features: frozen feature extractor ``f(x, layers) -> {name: (B, C, h, w)}`` for RGB in [0, 1]
            (``aigc_lightning.nets.VGGFeatures``); truncated after the deepest layer used here.
        content_layers: layers whose activations the output must match (paper: conv4_2).
        style_layers: layers whose Gram matrices the output must match (paper: conv1_1 … conv5_1).
        style_layer_weights: weight per style layer; ``None``: 1 each (summed, as the PyTorch tutorial does).
        content_weight: weight α of the content loss.
        style_weight: weight β of the style loss (1e6 with ImageNet VGG; ~1e1 with normalised layers).
        tv_weight: weight of the total-variation smoothness prior (0: off).
        normalize_layers: divide each layer's loss by its target's mean square, so layers with tiny activations
            (random filters) count as much as the others; ``None``: on exactly for random features.
        init: start image: ``"content"``, ``"noise"`` (uniform, seeded) or ``"style"`` (the first style image).
        preserve_color: luminance-only transfer: optimise the luma against the content's luma and the
            style's mean/std-matched luma, then recombine with the content's chroma.
        scales: coarse-to-fine image scales (fractions of the content size, ascending, last 1.0).
        scale_steps: optimizer steps at each scale; ``predict`` runs ``sum(scale_steps)`` per image, ``fit``
            continues the last scale until ``trainer.max_steps``.
        optimizer: optimizer factory over the image: ``aigc_lightning.optim.BoxLBFGS`` (bounded, never
            diverges; ``max_iter`` evaluations per step), or e.g. ``torch.optim.LBFGS`` / Adam (clamped after
            each step).
        seed: seed of the ``noise`` initialisation.
        feature_precision: precision of the VGG forward/backward inside the optimisation. ``"bf16"``: bfloat16
            features and Gram products (autocast) while the loss still falls fast, then float32 to the end
            (losses, line search and the kept best image are float32 throughout; each bfloat16 step's image is
            re-scored in float32). ``"32"``: float32 only. ``"auto"``: bf16 where bfloat16 products are native
            (a CUDA GPU of compute capability ≥ 8, a CPU with AVX512-BF16 / AMX), else 32. The Trainer's
            ``precision`` does not change this (16-mixed is refused with LBFGS).
        bf16_until: the bfloat16 phase ends at the first optimizer step whose float32 loss fell by less than
            this fraction (bfloat16's rounding makes smaller steps noise); 0: never switch, 1: switch after
            the first step.
    """

    def __init__(
        self,
        features: nn.Module,
        content_layers: Sequence[str] = ("conv4_2",),
        style_layers: Sequence[str] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
        style_layer_weights: Sequence[NonNegativeFloat] | None = None,
        content_weight: NonNegativeFloat = 1.0,
        style_weight: NonNegativeFloat = 1e6,
        tv_weight: NonNegativeFloat = 0.0,
        normalize_layers: bool | None = None,
        init: Literal["content", "noise", "style"] = "content",
        preserve_color: bool = False,
        scales: Sequence[PositiveFloat] = (1.0,),
        scale_steps: Sequence[PositiveInt] = (50,),
        optimizer: OptimizerCallable = BoxLBFGS,
        seed: NonNegativeInt = 0,
        feature_precision: Literal["32", "bf16", "auto"] = "auto",
        bf16_until: ClosedUnitInterval = 0.01,
    ) -> None:
        super().__init__()
        if not scales or len(scales) != len(scale_steps) or list(scales) != sorted(scales) or scales[-1] != 1.0:
            raise UserError(
                f"scales {list(scales)} must ascend to 1.0 and pair with scale_steps {list(scale_steps)} "
                "(one step count per scale)"
            )
        # built (and the features truncated) before saving hyperparameters: their copy is then the small net too
        self.perceptual = PerceptualLoss(features, content_layers, style_layers, style_layer_weights,
                                         content_weight, style_weight, tv_weight, normalize_layers)  # fmt: skip
        self.save_hyperparameters()
        self.automatic_optimization = False  # LBFGS needs a closure; one training step = one optimizer step
        self.optimizer = optimizer
        # fit's image: sized by its first step (or the checkpoint), resized by coarse-to-fine scales
        self.image = nn.Parameter(torch.empty(0))
        self.run = Run(self.image)
        self.evaluations = self.rescores = 0  # loss evaluations; float32 forward passes re-scoring bfloat16 images

    @property
    def batches(self) -> int:  # fit's optimizer steps so far (one per training batch)
        return self.run.steps

    # ------------------------------------------------------------------------------------------------------
    # The problem and its objective

    def problem(self, content: Tensor, styles: Tensor, weights: Tensor, size: tuple[int, int]) -> Problem:
        """Targets and start images at ``size`` for content (1, 3, H, W), styles (S, 3, H, W) in [0, 1] and blend
        weights (S,) summing to 1."""
        content, styles = resize(content, size), resize(styles, size)
        chroma = None
        if self.hparams.preserve_color:
            yiq_c, yiq_s = rgb_to_yiq(content), rgb_to_yiq(styles)
            chroma = yiq_c[:, 1:]  # (1, 2, h, w)
            y_c, y_s = yiq_c[:, :1], yiq_s[:, :1]
            # Match each style's luma mean/std to the content's (Gatys et al. 2017, eq. 5).
            mu_s, sd_s = y_s.mean((1, 2, 3), keepdim=True), y_s.std((1, 2, 3), keepdim=True)
            content, styles = y_c, (y_s - mu_s) * y_c.std() / sd_s.clamp_min(1e-6) + y_c.mean()
        targets = self.perceptual.targets(content, self.perceptual.style_grams(styles, weights))
        return Problem(targets, content, styles[:1], chroma)

    def objective(self, image: Tensor, problem: Problem, bf16: bool = False) -> dict[str, Tensor]:
        """Weighted losses of ``image`` (1, C, h, w) in [0, 1] for ``problem``; ``"loss"`` is their sum.

        ``bf16``: the VGG features and Gram products in bfloat16 (about half the cost); the losses stay float32.
        """
        losses = {name: value.sum() for name, value in self.perceptual(image, problem.targets, bf16).items()}
        losses["loss"] = losses["content"] + losses["style"] + losses["tv"]
        return losses

    def initial_image(self, problem: Problem) -> Tensor:
        """The start image: the content, seeded uniform noise or the style (their luma when preserving colour)."""
        if self.hparams.init == "noise":
            g = torch.Generator().manual_seed(self.hparams.seed)
            x = torch.rand(problem.content.shape, generator=g).to(problem.content)
        else:
            x = problem.content if self.hparams.init == "content" else problem.style
        return x.detach().clone().contiguous()  # LBFGS flattens grads with .view(-1): must be contiguous

    def render(self, image: Tensor, problem: Problem | None) -> Tensor:
        """The displayable RGB output in [0, 1]: with colour preservation, optimised luma + content chroma."""
        if problem is not None and problem.chroma is not None:
            image = yiq_to_rgb(torch.cat([image, problem.chroma], 1))
        return image.detach().clamp(0, 1)

    def scale_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """Image size at each scale; at least 16 px a side so five VGG blocks still see a pixel."""
        return [(max(16, round(size[0] * s)), max(16, round(size[1] * s))) for s in self.hparams.scales]

    # ------------------------------------------------------------------------------------------------------
    # The loop

    def stylize(self, content: Tensor, styles: Tensor, weights: Tensor | None = None, run: Run | None = None,
                steps: int | None = None) -> Tensor:  # fmt: skip
        """Stylise content (1, 3, H, W) in [0, 1] with styles (S, 3, H, W) in [0, 1] → (1, 3, H, W) in [0, 1].

        Each scale runs its ``scale_steps`` from the previous scale's best image, upsampled, with a fresh optimizer
        and a fresh bfloat16 → float32 schedule (see ``feature_precision``); the last scale continues as long as
        steps are asked for. Returns the best image of the current scale, chosen by float32 losses.

        Args:
            content: the content image.
            styles: the style images, already at the content's size.
            weights: blend weight per style (S,) summing to 1; ``None``: equal weights.
            run: the optimisation to continue (``fit``'s); ``None``: a fresh one.
            steps: optimizer steps to take; ``None``: ``sum(scale_steps)``.
        """
        if weights is None:
            weights = torch.full((len(styles),), 1 / len(styles), device=content.device)
        run = run or Run(nn.Parameter(torch.empty(0, device=content.device)))
        run.optimizer = run.optimizer or self.optimizer([run.image])
        sizes, ends = self.scale_sizes(tuple(content.shape[-2:])), torch.tensor(self.hparams.scale_steps).cumsum(0)
        problem = None
        for _ in range(sum(self.hparams.scale_steps) if steps is None else steps):
            size = sizes[min(int((ends <= run.steps).sum()), len(sizes) - 1)]
            if size not in run.problems:
                run.problems[size] = self.problem(content, styles, weights, size)
            problem = run.problems[size]
            if tuple(run.image.shape[-2:]) != size:  # the first step, or the first of a finer scale
                start = self.initial_image(problem) if run.best.image is None else resize(run.best.image, size)
                run.image.data = start.clamp(0, 1).contiguous()
                run.best, run.restarts, run.schedule = BestImage(), 0, Schedule()
                restart(run.optimizer, 0)
            self.optimizer_step(run, problem)
            run.steps += 1
        image = run.best.image if run.best.image is not None else run.image
        return self.render(image, problem)

    def rescore(self, image: Tensor, problem: Problem, best: BestImage) -> float:
        """Offer ``image`` to ``best`` with its float32 losses (a forward pass only); returns its float32 loss."""
        with torch.no_grad(), torch.autocast(image.device.type, enabled=False):
            losses = self.objective(image.detach().clamp(0, 1), problem)
        self.rescores += 1
        best.offer(losses, image)
        return float(losses["loss"])

    def optimizer_step(self, run: Run, problem: Problem) -> None:
        """One step of ``run.optimizer`` on ``run.image``.

        Every float32 evaluation offers its image to ``run.best``; in the bfloat16 phase of ``run.schedule``
        images are offered with float32 re-scores (``style_precision``), and a step that gains less than
        ``bf16_until`` ends that phase. A step that leaves a NaN/inf image or loss is rejected: the image goes
        back to the best one and the optimizer restarts with a smaller step.
        """
        image, opt, best, schedule = run.image, run.optimizer, run.best, run.schedule
        bf16 = schedule.start_step(self.hparams.feature_precision, image.device)
        last: dict[str, Tensor] = {}

        def closure() -> Tensor:
            opt.zero_grad()
            # The loss is that of the clamped image, but clamp only when needed: clamp's gradient is 0 *at* the
            # bounds, which would freeze every saturated pixel of BoxLBFGS's in-box image. Autocast is this
            # module's own choice (bf16), never the Trainer's.
            inside = bool(((image >= 0) & (image <= 1)).all())
            with torch.autocast(image.device.type, enabled=False):
                losses = self.objective(image if inside else image.clamp(0, 1), problem, bf16=bf16)
            run.backward(losses["loss"])
            self.evaluations += 1
            last["loss"] = losses["loss"].detach()
            if not bf16:
                best.offer(losses, image)
            elif schedule.rescore_now(float(last["loss"])):
                schedule.first_score(self.rescore(image, problem, best))
            return losses["loss"]

        opt.step(closure=closure)
        with torch.no_grad():
            if bool(torch.isfinite(image).all()) and math.isfinite(float(last["loss"])):
                image.clamp_(0, 1)  # after the step, never inside the closure; BoxLBFGS's image already is
                loss = self.rescore(image, problem, best) if bf16 else None  # the step's image, in float32
                torch_opt = getattr(opt, "optimizer", opt)
                if bf16 and schedule.end_step(loss, self.hparams.bf16_until) and hasattr(torch_opt, "refresh"):
                    torch_opt.refresh()  # BoxLBFGS: re-evaluate here in float32, keep the (bfloat16) history
                return
            if best.image is None or run.restarts >= MAX_RESTARTS:
                raise NonFiniteLossError(
                    f"the style transfer loss became {float(last['loss'])} after {run.restarts} retries with ever "
                    "smaller steps; check the content/style images, lower the optimizer's lr or the style weight"
                )
            image.copy_(best.image)
        run.restarts += 1
        restart(opt, run.restarts)

    # ------------------------------------------------------------------------------------------------------
    # fit

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        if self.trainer.world_size > 1:
            raise UserError(
                "style transfer fit optimises one image on one device; drop --trainer.devices / strategy, or use "
                "predict --trainer.devices N to stylise a folder of images across devices"
            )
        self.check_precision(str(self.trainer.precision))

    def check_precision(self, precision: str) -> None:
        """Refuse fp16 with LBFGS in one message (Lightning's GradScaler path raises for LBFGS). The Trainer's
        autocast is off in the closure, so bf16-mixed runs, with the numerics ``feature_precision`` sets."""
        lbfgs = isinstance(self.optimizer([nn.Parameter(torch.zeros(1))]), (torch.optim.LBFGS, BoxLBFGS))
        if precision in ("16-mixed", "16-true", "16", "half") and lbfgs:
            raise UserError(
                f"--trainer.precision {precision} cannot drive LBFGS (fp16 needs a GradScaler, which LBFGS's "
                "line search cannot use) and style transfer sets its own precision (--model.feature_precision, "
                "bf16 where it is fast): use precision 32-true (default), or an Adam optimizer"
            )

    def configure_optimizers(self):
        return self.optimizer([self.image])

    @staticmethod
    def _unpack(batch) -> tuple[Tensor, Tensor, Tensor]:
        """A DataModule batch → content (1, 3, H, W), styles (S, 3, H, W) in [0, 1], weights (S,)."""
        content, styles, weights = batch[:3]
        return content[:1].float(), styles[0].float(), weights[0].float()

    def training_step(self, batch, batch_idx: int) -> None:
        self.run.optimizer, self.run.backward = self.optimizers(), self.manual_backward
        self.stylize(*self._unpack(batch), run=self.run, steps=1)
        best = self.run.best
        for name, value in best.losses.items():
            self.log("train/loss" if name == "loss" else f"train/{name}_loss", value, prog_bar=name == "loss")
        self.log("train/evals", float(self.evaluations), prog_bar=True)
        self.log("hp_metric", best.loss)  # the run's headline number in TensorBoard's HParams tab

    def stylized(self) -> Tensor:
        """fit's current result: the best image so far, rendered, (1, 3, H, W) in [0, 1]."""
        image = self.run.best.image if self.run.best.image is not None else self.image.detach()
        return self.render(image, self.run.problems.get(tuple(image.shape[-2:])))

    def images_to_log(self, n: int) -> dict[str, Tensor]:
        """The image logger's view of fit: the stylised image so far (one image whatever ``n``)."""
        return {"stylized": self.stylized()} if self.image.numel() else {}

    # ------------------------------------------------------------------------------------------------------
    # Checkpoints: the image, fit's run state and the counters (the frozen features are rebuilt from the config)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        run = self.run
        checkpoint["counters"] = {"batches": run.steps, "evaluations": self.evaluations,
                                  "restarts": run.restarts, "rescores": self.rescores}  # fmt: skip
        checkpoint["schedule"] = asdict(run.schedule)
        checkpoint["best"] = {"loss": run.best.loss, "image": run.best.image, "losses": run.best.losses}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("features.")]:
            del state[key]  # frozen weights saved by a run that kept them: the config rebuilds them
        if "image" in state:  # the checkpoint's image may be at another scale than a fresh module's
            self.image.data = torch.empty_like(state["image"])
        counters = checkpoint.get("counters", {"evaluations": int(state.pop("evaluations", 0))})
        self.evaluations, self.rescores = counters.get("evaluations", 0), counters.get("rescores", 0)
        self.run.steps, self.run.restarts = counters.get("batches", 0), counters.get("restarts", 0)
        self.run.schedule = Schedule(**checkpoint.get("schedule", {"bf16": False}))
        if "best" in checkpoint:
            self.run.best = BestImage(**checkpoint["best"])

    # ------------------------------------------------------------------------------------------------------
    # predict

    def predict_step(self, batch, batch_idx: int) -> dict:
        if torch.is_autocast_enabled(batch[0].device.type):  # Python shows a warning once per place
            warnings.warn(
                "style transfer sets its own precision (feature_precision): the Trainer's autocast is off inside "
                "predict", stacklevel=1
            )
        outputs = []
        # Lightning predicts under inference_mode / no_grad: the optimisation needs autograd back, and tensors
        # made in inference mode must be cloned outside it before autograd may save them.
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            torch.autocast(batch[0].device.type, enabled=False),
        ):
            content, styles, weights = (x.clone() for x in batch[:3])
            for i in range(len(content)):
                outputs.append(
                    self.stylize(*self._unpack((content[i : i + 1], styles[i : i + 1], weights[i : i + 1])))
                )
        return {"images": torch.cat(outputs), "names": list(batch[3])}
