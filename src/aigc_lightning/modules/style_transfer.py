"""Neural style transfer (Gatys, Ecker & Bethge 2016): the parameter *is* the output image.

``fit`` stylises one content image, ``predict`` / ``stylize`` every image their data serves; both run the same
loop, ``optimizer_step_on`` (``style_loop``): one optimizer step (``BoxLBFGS`` by default: up to ``max_iter`` loss
evaluations inside the [0, 1] pixel box, see ``aigc_lightning.optim``), the best image seen so far kept, a step
that reaches a NaN or infinite image restarted from that best image with half the step size (a rejected step, not
the end of the run).
Every loss is that of a displayable (clamped) image; the best-so-far never rises. ``torch.optim.LBFGS`` or Adam
work too (clamped after each step). ``feature_precision`` runs the VGG in bfloat16 while steps gain much, then
float32; the kept image is always chosen by float32 losses (``style_precision``).

Quality options: several blended styles (their target Grams are averaged with the blend weights), colour
preservation by luminance-only transfer (Gatys et al. 2017, "Controlling perceptual factors in neural style
transfer", sec. 5), coarse-to-fine scales (optimise small, upsample, continue), total variation.

``max_steps`` counts optimizer steps (one per training step); with ``scales``, step s runs at the scale whose
``scale_steps`` cover it and the last scale continues until ``max_steps``. Observers are callbacks: the image
logger asks ``images_to_log``, ``callbacks.StylizedImageSaver`` writes ``stylized()`` as a PNG.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Literal

import torch
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

from aigc_lightning.errors import UserError
from aigc_lightning.losses import content_loss, gram_matrix, gram_matrix_fp32, style_loss, total_variation
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.modules.style_images import resize, rgb_to_yiq, yiq_to_rgb
from aigc_lightning.modules.style_loop import PixelLoop
from aigc_lightning.modules.style_precision import Schedule
from aigc_lightning.optim import BestImage, BoxLBFGS


class StyleTransfer(PlainHyperparameters, PixelLoop, LightningModule):
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
        # truncated before saving hyperparameters: their copy is then the small net too
        if hasattr(features, "truncate"):
            features = features.truncate(list(content_layers) + list(style_layers))
        # channels-last convolutions and pooling are faster (oneDNN, cuDNN), and the Gram reads them without a copy
        features = features.to(memory_format=torch.channels_last)
        self.save_hyperparameters()
        self.automatic_optimization = False  # LBFGS needs a closure; one training step = one optimizer step
        if style_layer_weights is not None and len(style_layer_weights) != len(style_layers):
            raise UserError(f"style_layer_weights needs {len(style_layers)} numbers (one per style layer)")
        if (
            len(scales) != len(scale_steps)
            or not scales
            or list(scales) != sorted(scales)
            or scales[-1] != 1.0
        ):
            raise UserError(
                f"scales {list(scales)} must ascend to 1.0 and pair with scale_steps {list(scale_steps)} "
                "(one step count per scale)"
            )
        self.features = features
        self.optimizer = optimizer
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.layer_weights = (
            list(style_layer_weights) if style_layer_weights is not None else [1.0] * len(style_layers)
        )
        random_features = bool(getattr(features, "random_features", False))
        self.normalize = random_features if normalize_layers is None else normalize_layers
        # The image being optimised (fit): sized from the first batch in ``setup``, resized by multi-scale.
        self.image = nn.Parameter(torch.empty(0))
        self.batches = self.evaluations = self.restarts = 0  # optimizer steps, loss evaluations, rejections
        self.rescores = 0  # float32 forward passes that score bfloat16-phase images (no backward)
        self.best = BestImage()  # fit's best image at the current scale (saved in checkpoint["best"])
        self.schedule = Schedule()  # fit's bfloat16 → float32 schedule at the current scale
        self._targets: dict[tuple[int, int], dict] = {}  # per image size; recomputed from the data on resume

    # ------------------------------------------------------------------------------------------------------
    # Targets and objective (shared by fit and predict)

    def targets(self, content: Tensor, styles: Tensor, weights: Tensor, size: tuple[int, int]) -> dict:
        """Content features, blended style Grams and loss normalisers at ``size``, computed once per size.

        content (1, 3, H, W) and styles (S, 3, H, W) in [0, 1]; weights (S,) sum to 1.
        """
        content, styles = resize(content, size), resize(styles, size)
        chroma = None
        if self.hparams.preserve_color:
            yiq_c, yiq_s = rgb_to_yiq(content), rgb_to_yiq(styles)
            chroma = yiq_c[:, 1:]  # (1, 2, h, w)
            y_c, y_s = yiq_c[:, :1], yiq_s[:, :1]
            # Match each style's luma mean/std to the content's (Gatys et al. 2017, eq. 5).
            mu_s, sd_s = y_s.mean((1, 2, 3), keepdim=True), y_s.std((1, 2, 3), keepdim=True)
            y_s = (y_s - mu_s) * y_c.std() / sd_s.clamp_min(1e-6) + y_c.mean()
            content, styles = y_c.expand(-1, 3, -1, -1), y_s.expand(-1, 3, -1, -1)
        with torch.no_grad():
            f_c = self.features(content, self.content_layers)
            f_s = self.features(styles, self.style_layers)
            grams = {
                n: (gram_matrix(f_s[n]) * weights.view(-1, 1, 1)).sum(0, keepdim=True)
                for n in self.style_layers
            }
        norm_c = {n: f_c[n].pow(2).mean().clamp_min(1e-12) if self.normalize else 1.0 for n in f_c}
        norm_s = {n: grams[n].pow(2).mean().clamp_min(1e-12) if self.normalize else 1.0 for n in grams}
        return {"content": f_c, "grams": grams, "norm_c": norm_c, "norm_s": norm_s, "chroma": chroma,
                "content_image": content[:, :1] if self.hparams.preserve_color else content,
                "style_image": styles[:1]}  # fmt: skip

    def objective(self, image: Tensor, t: dict, bf16: bool = False) -> dict[str, Tensor]:
        """Weighted losses of ``image`` (1, C, h, w) in [0, 1] against targets ``t``; ``"loss"`` is their sum.

        ``bf16``: the VGG features and Gram products in bfloat16 (about half the cost); the losses stay float32.
        """
        rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        rgb = rgb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16):
            f = self.features(rgb, self.content_layers + self.style_layers)
        c = sum(content_loss(f[n].float(), t["content"][n]) / t["norm_c"][n] for n in self.content_layers)
        s = sum(w * style_loss(gram_matrix_fp32(f[n]), t["grams"][n]) / t["norm_s"][n]
                for n, w in zip(self.style_layers, self.layer_weights))  # fmt: skip
        tv = total_variation(image) if self.hparams.tv_weight else torch.zeros_like(c)
        losses = {"content": self.hparams.content_weight * c.sum(), "style": self.hparams.style_weight * s.sum(),
                  "tv": self.hparams.tv_weight * tv.sum()}  # fmt: skip
        losses["loss"] = losses["content"] + losses["style"] + losses["tv"]
        return losses

    def initial_image(self, t: dict) -> Tensor:
        """The start image for targets ``t``: content, seeded uniform noise or the style (luma when preserving)."""
        if self.hparams.init == "content":
            x = t["content_image"]
        elif self.hparams.init == "style":
            x = t["style_image"][:, :1] if self.hparams.preserve_color else t["style_image"]
        else:
            g = torch.Generator().manual_seed(self.hparams.seed)
            x = torch.rand(t["content_image"].shape, generator=g).to(t["content_image"])
        return x.detach().clone().contiguous()  # LBFGS flattens grads with .view(-1): must be contiguous

    def render(self, image: Tensor, t: dict) -> Tensor:
        """The displayable RGB output in [0, 1]: with colour preservation, optimised luma + content chroma."""
        if t["chroma"] is not None:
            image = yiq_to_rgb(torch.cat([image, t["chroma"]], 1))
        return image.detach().clamp(0, 1)

    def scale_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """Image size at each scale; at least 16 px a side so five VGG blocks still see a pixel."""
        return [(max(16, round(size[0] * s)), max(16, round(size[1] * s))) for s in self.hparams.scales]

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
        if self.image.numel() == 0:  # a fresh run (a resumed one gets its image from the checkpoint)
            content, styles, weights = self._unpack(next(iter(self.trainer.datamodule.train_dataloader())))
            size = tuple(content.shape[-2:])
            t = self.targets(content, styles, weights, self.scale_sizes(size)[0])
            self.image.data = self.initial_image(t)

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
        return self.new_optimizer(self.image, self.restarts)

    @staticmethod
    def _unpack(batch) -> tuple[Tensor, Tensor, Tensor]:
        """A DataModule batch in [-1, 1] → content (1, 3, H, W), styles (S, 3, H, W) in [0, 1], weights (S,)."""
        content, styles, weights = batch[:3]
        return (content[:1].float() + 1) / 2, (styles[0].float() + 1) / 2, weights[0].float()

    def _fit_targets(self, batch) -> dict:
        content, styles, weights = self._unpack(batch)
        ends = torch.tensor(self.hparams.scale_steps).cumsum(0)
        scale = min(int((ends <= self.batches).sum()), len(self.hparams.scales) - 1)
        size = self.scale_sizes(tuple(content.shape[-2:]))[scale]
        if size not in self._targets:
            self._targets[size] = self.targets(content, styles, weights, size)
        return self._targets[size]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        t = self._fit_targets(batch)
        size = tuple(t["content_image"].shape[-2:])
        if tuple(self.image.shape[-2:]) != size:
            # Coarse-to-fine: upsample the best image and start a fresh optimizer (its history has the old size).
            # Swapped in before Lightning's manual-optimization loop wraps this batch's optimizers.
            start = self.best.image if self.best.image is not None else self.image.data
            self.image.data = resize(start, size).clamp(0, 1).contiguous()
            self.best, self.restarts, self.schedule = BestImage(), 0, Schedule()
            self.trainer.optimizers = [self.new_optimizer(self.image)]

    def training_step(self, batch, batch_idx: int) -> None:
        t = self._fit_targets(batch)
        restarts = self.optimizer_step_on(
            self.image, self.optimizers(), t, self.best, self.manual_backward, self.restarts, self.schedule
        )
        if (
            restarts != self.restarts
        ):  # rejected: from the next batch on, a fresh optimizer with a smaller step
            self.restarts = restarts
            self.trainer.optimizers = [self.new_optimizer(self.image, restarts)]
        self.batches += 1
        for name, value in self.best.losses.items():
            self.log("train/loss" if name == "loss" else f"train/{name}_loss", value, prog_bar=name == "loss")
        self.log("train/evals", float(self.evaluations), prog_bar=True)
        self.log("hp_metric", self.best.loss)  # the run's headline number in TensorBoard's HParams tab

    def stylized(self) -> Tensor:
        """fit's current result: the best image so far, rendered, (1, 3, H, W) in [0, 1]."""
        image = self.best.image if self.best.image is not None else self.image.detach()
        t = self._targets.get(tuple(image.shape[-2:]))
        return self.render(image, t) if t is not None else image.clamp(0, 1)

    def images_to_log(self, n: int) -> dict[str, Tensor]:
        """The image logger's view of fit: the stylised image so far (one image whatever ``n``)."""
        return {"stylized": self.stylized()} if self.image.numel() else {}

    # ------------------------------------------------------------------------------------------------------
    # Checkpoints: the frozen features are rebuilt from the config, so only the image and counters are saved.

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("features.")]:
            del state[key]
        checkpoint["counters"] = {"batches": self.batches, "evaluations": self.evaluations,
                                  "restarts": self.restarts, "rescores": self.rescores}  # fmt: skip
        checkpoint["schedule"] = asdict(self.schedule)
        checkpoint["best"] = {"loss": self.best.loss, "image": self.best.image, "losses": self.best.losses}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key, value in self.features.state_dict(prefix="features.").items():
            state.setdefault(key, value)
        if "image" in state:  # the checkpoint's image may be at a coarser scale than a fresh setup's
            self.image.data = torch.empty_like(state["image"])
        old_buffer = int(state.pop("evaluations", 0))  # older checkpoints: a buffer
        counters = checkpoint.get("counters", {"evaluations": old_buffer})
        self.batches, self.evaluations, self.restarts, self.rescores = (
            counters.get(k, 0) for k in ("batches", "evaluations", "restarts", "rescores")
        )
        self.schedule = Schedule(**checkpoint.get("schedule", {"bf16": False}))  # older runs: float32
        if "best" in checkpoint:
            self.best = BestImage(**checkpoint["best"])

    # ------------------------------------------------------------------------------------------------------
    # predict / Python API

    def stylize(self, content: Tensor, styles: Tensor, weights: Tensor | None = None) -> Tensor:
        """Stylise content (1, 3, H, W) in [0, 1] with styles (S, 3, H, W) in [0, 1] → (1, 3, H, W) in [0, 1].

        Runs every scale for its ``scale_steps`` with a fresh optimizer from ``optimizer`` (each scale starts
        a fresh bfloat16 → float32 schedule, see ``feature_precision``) and returns the best image of the last
        scale, chosen by float32 losses.
        """
        weights = (
            torch.full((len(styles),), 1 / len(styles), device=content.device) if weights is None else weights
        )
        sizes, best, t = self.scale_sizes(tuple(content.shape[-2:])), None, None
        for size, steps in zip(sizes, self.hparams.scale_steps):
            t = self.targets(content, styles, weights, size)
            x = self.initial_image(t) if best is None else resize(best.image, size).clamp(0, 1).contiguous()
            image, best, restarts, schedule = nn.Parameter(x), BestImage(), 0, Schedule()
            opt = self.new_optimizer(image)
            for _ in range(steps):
                r = self.optimizer_step_on(image, opt, t, best, Tensor.backward, restarts, schedule)
                if r != restarts:
                    restarts, opt = r, self.new_optimizer(image, r)
        return self.render(best.image, t)

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
