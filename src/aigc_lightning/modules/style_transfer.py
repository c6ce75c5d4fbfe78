"""Neural style transfer (Gatys, Ecker & Bethge 2016): the parameter *is* the output image.

``fit`` stylises one content image: every training step is one optimizer step (LBFGS: up to ``max_iter``
loss evaluations, shown as ``evals`` in the progress bar), the image is clamped to [0, 1] after the step (never
inside the closure: that breaks LBFGS's curvature pairs), the stylised image goes to TensorBoard every
``log_every_n_steps`` steps and to ``<log_dir>/stylized.png``. ``predict`` stylises every image its DataModule
serves with the same recipe, inside ``predict_step``.

Quality options: several blended styles (their target Grams are averaged with the blend weights), colour
preservation by luminance-only transfer (Gatys et al. 2017, "Controlling perceptual factors in neural style
transfer", sec. 5), coarse-to-fine scales (optimise small, upsample, continue), total variation.

``max_steps`` counts optimizer steps (one per training step); with ``scales``, step s runs at the scale whose
``scale_steps`` cover it and the last scale continues until ``max_steps``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchvision.utils import save_image

from aigc_lightning.callbacks import log_image_grid
from aigc_lightning.errors import UserError, check_finite
from aigc_lightning.losses import content_loss, gram_matrix, style_loss, total_variation

# RGB → YIQ (NTSC): Y is luma, I/Q the chroma that colour preservation keeps from the content.
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB → YIQ."""
    return torch.einsum("ij,bjhw->bihw", RGB_TO_YIQ.to(x), x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    """(B, 3, H, W) YIQ → RGB (the exact inverse of ``rgb_to_yiq``)."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(RGB_TO_YIQ).to(x), x)


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, antialiased resize of (B, C, H, W) to ``size``; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


class StyleTransfer(LightningModule):
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
        optimizer: optimizer factory over the image; LBFGS (``max_iter`` evaluations per step) or e.g. Adam.
        log_every_n_steps: TensorBoard image / ``stylized.png`` period, in optimizer steps.
        seed: seed of the ``noise`` initialisation.
    """

    def __init__(
        self,
        features: nn.Module,
        content_layers: Sequence[str] = ("conv4_2",),
        style_layers: Sequence[str] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
        style_layer_weights: Sequence[float] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        tv_weight: float = 0.0,
        normalize_layers: bool | None = None,
        init: str = "content",
        preserve_color: bool = False,
        scales: Sequence[float] = (1.0,),
        scale_steps: Sequence[int] = (50,),
        optimizer: OptimizerCallable = torch.optim.LBFGS,
        log_every_n_steps: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # truncated before saving hyperparameters: their copy is then the small net too
        if hasattr(features, "truncate"):
            features = features.truncate(list(content_layers) + list(style_layers))
        self.save_hyperparameters()
        self.automatic_optimization = False  # LBFGS needs a closure; one training step = one LBFGS step
        if init not in ("content", "noise", "style"):
            raise UserError(f"model.init must be 'content', 'noise' or 'style', got {init!r}")
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
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.features = features
        self.layer_weights = (
            list(style_layer_weights) if style_layer_weights is not None else [1.0] * len(style_layers)
        )
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.normalize_layers = (
            bool(getattr(features, "random_features", False))
            if normalize_layers is None
            else normalize_layers
        )
        self.init, self.preserve_color, self.seed = init, preserve_color, seed
        self.scales, self.scale_steps = list(scales), list(scale_steps)
        self.optimizer, self.log_every_n_steps = optimizer, log_every_n_steps
        # The image being optimised (fit): sized from the first batch in ``setup``, resized by multi-scale.
        self.image = nn.Parameter(torch.empty(0))
        self.register_buffer("evaluations", torch.zeros((), dtype=torch.long))  # loss evaluations, for resume
        self._targets: dict[tuple[int, int], dict] = {}  # per image size; recomputed from the data on resume
        self._warned_fp32 = False

    # ------------------------------------------------------------------------------------------------------
    # Targets and objective (shared by fit and predict)

    def targets(self, content: Tensor, styles: Tensor, weights: Tensor, size: tuple[int, int]) -> dict:
        """Content features, blended style Grams and loss normalisers at ``size``, computed once per size.

        content (1, 3, H, W) and styles (S, 3, H, W) in [0, 1]; weights (S,) sum to 1.
        """
        content, styles = resize(content, size), resize(styles, size)
        chroma = None
        if self.preserve_color:
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
        norm_c = {n: f_c[n].pow(2).mean().clamp_min(1e-12) if self.normalize_layers else 1.0 for n in f_c}
        norm_s = {n: grams[n].pow(2).mean().clamp_min(1e-12) if self.normalize_layers else 1.0 for n in grams}
        return {"content": f_c, "grams": grams, "norm_c": norm_c, "norm_s": norm_s, "chroma": chroma,
                "content_image": content[:, :1] if self.preserve_color else content, "style_image": styles[:1]}  # fmt: skip

    def objective(self, image: Tensor, t: dict) -> dict[str, Tensor]:
        """Weighted losses of ``image`` (1, C, h, w) in [0, 1] against targets ``t``; ``"loss"`` is their sum."""
        rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        f = self.features(rgb, self.content_layers + self.style_layers)
        c = sum(content_loss(f[n], t["content"][n]) / t["norm_c"][n] for n in self.content_layers)
        s = sum(w * style_loss(gram_matrix(f[n]), t["grams"][n]) / t["norm_s"][n]
                for n, w in zip(self.style_layers, self.layer_weights))  # fmt: skip
        tv = total_variation(image) if self.tv_weight else torch.zeros_like(c)
        losses = {"content": self.content_weight * c.sum(), "style": self.style_weight * s.sum(),
                  "tv": self.tv_weight * tv.sum()}  # fmt: skip
        losses["loss"] = losses["content"] + losses["style"] + losses["tv"]
        return losses

    def initial_image(self, t: dict) -> Tensor:
        """The start image for targets ``t``: content, seeded uniform noise or the style (luma when preserving)."""
        if self.init == "content":
            x = t["content_image"]
        elif self.init == "style":
            x = t["style_image"][:, :1] if self.preserve_color else t["style_image"]
        else:
            g = torch.Generator().manual_seed(self.seed)
            x = torch.rand(t["content_image"].shape, generator=g).to(t["content_image"])
        return x.detach().clone().contiguous()  # LBFGS flattens grads with .view(-1): must be contiguous

    def render(self, image: Tensor, t: dict) -> Tensor:
        """The displayable RGB output in [0, 1]: with colour preservation, optimised luma + content chroma."""
        if t["chroma"] is not None:
            image = yiq_to_rgb(torch.cat([image, t["chroma"]], 1))
        return image.detach().clamp(0, 1)

    def scale_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """Image size at each scale; at least 16 px a side so five VGG blocks still see a pixel."""
        return [(max(16, round(size[0] * s)), max(16, round(size[1] * s))) for s in self.scales]

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
        """Refuse fp16 with LBFGS in one message (Lightning's GradScaler path raises for LBFGS). Every loss is
        computed in fp32 anyway (autocast is off in the closure), so bf16-mixed runs, in fp32."""
        if precision in ("16-mixed", "16-true", "16", "half") and self._is_lbfgs():
            raise UserError(
                f"--trainer.precision {precision} cannot drive LBFGS (fp16 needs a GradScaler, which LBFGS's "
                "line search cannot use) and style transfer optimises the pixels in fp32 anyway: use precision "
                "32-true (default), or an Adam optimizer"
            )

    def _is_lbfgs(self) -> bool:
        probe = self.optimizer([nn.Parameter(torch.zeros(1))])
        return isinstance(probe, torch.optim.LBFGS)

    def configure_optimizers(self):
        return self.optimizer([self.image])

    @staticmethod
    def _unpack(batch) -> tuple[Tensor, Tensor, Tensor]:
        """A DataModule batch in [-1, 1] → content (1, 3, H, W), styles (S, 3, H, W) in [0, 1], weights (S,)."""
        content, styles, weights = batch[:3]
        return (content[:1].float() + 1) / 2, (styles[0].float() + 1) / 2, weights[0].float()

    def _scale_index(self, step: int) -> int:
        ends = torch.tensor(self.scale_steps).cumsum(0)
        return min(int((ends <= step).sum()), len(self.scales) - 1)

    def training_step(self, batch, batch_idx: int) -> None:
        content, styles, weights = self._unpack(batch)
        size = self.scale_sizes(tuple(content.shape[-2:]))[self._scale_index(self.global_step)]
        t = self._targets.get(size)
        if t is None:
            t = self._targets[size] = self.targets(content, styles, weights, size)
        opt = self.optimizers()
        if tuple(self.image.shape[-2:]) != size:
            # Coarse-to-fine: upsample the result and start the optimizer afresh (its history has the old size).
            self.image.data = resize(self.image.data, size).clamp(0, 1).contiguous()
            opt.optimizer.state.clear()
            if hasattr(opt.optimizer, "_numel_cache"):
                opt.optimizer._numel_cache = None  # LBFGS caches the parameter count; it has no public reset

        last: dict[str, Tensor] = {}

        def closure() -> Tensor:
            opt.zero_grad()
            # fp32 losses: LBFGS's line search compares values that bf16 rounding would make noise.
            with torch.autocast(self.device.type, enabled=False):
                losses = self.objective(self.image, t)
            check_finite(losses["loss"], "train/loss", self.global_step)
            self.manual_backward(losses["loss"])
            self.evaluations += 1
            last.update(losses)
            return losses["loss"]

        opt.step(closure=closure)
        with torch.no_grad():
            self.image.clamp_(0, 1)  # after the step, never inside the closure (see the module docstring)
        for name, value in last.items():
            self.log(
                f"train/{name}_loss" if name != "loss" else "train/loss",
                value.detach(),
                prog_bar=name == "loss",
            )
        self.log("train/evals", self.evaluations.float(), prog_bar=True)
        if (self.global_step + 1) % self.log_every_n_steps == 0:
            self._save_output(t)

    def on_train_end(self) -> None:
        if self.image.numel():
            size = tuple(self.image.shape[-2:])
            t = self._targets.get(size)
            if t is not None:
                self._save_output(t)

    def _save_output(self, t: dict) -> None:
        if self.trainer.global_rank != 0:
            return
        image = self.render(self.image, t)
        log_image_grid(self, "train/stylized", image, self.global_step, nrow=1)
        # The contract: fit leaves the stylised image as a PNG in the run's log dir (rewritten as it improves).
        log_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        save_image(image, log_dir / "stylized.png")

    # ------------------------------------------------------------------------------------------------------
    # Checkpoints: the frozen features are rebuilt from the config, so only the image and counters are saved.

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("features.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.features.state_dict(prefix="features.").items():
            state.setdefault(key, value)
        if "image" in state:  # the checkpoint's image may be at a coarser scale than a fresh setup's
            self.image.data = torch.empty_like(state["image"])

    # ------------------------------------------------------------------------------------------------------
    # predict / Python API

    def stylize(self, content: Tensor, styles: Tensor, weights: Tensor | None = None) -> Tensor:
        """Stylise content (1, 3, H, W) in [0, 1] with styles (S, 3, H, W) in [0, 1] → (1, 3, H, W) in [0, 1].

        Runs every scale for its ``scale_steps`` with a fresh optimizer from ``optimizer``, in fp32.
        """
        weights = (
            torch.full((len(styles),), 1 / len(styles), device=content.device) if weights is None else weights
        )
        sizes, image, t = self.scale_sizes(tuple(content.shape[-2:])), None, None
        for size, steps in zip(sizes, self.scale_steps):
            t = self.targets(content, styles, weights, size)
            x = self.initial_image(t) if image is None else resize(image, size).clamp(0, 1).contiguous()
            image = nn.Parameter(x)
            opt = self.optimizer([image])

            def closure(opt=opt, image=image, t=t) -> Tensor:  # bound now: runs inside this iteration
                opt.zero_grad()
                loss = self.objective(image, t)["loss"]
                check_finite(loss, "predict/loss", 0)
                loss.backward()
                return loss

            for _ in range(steps):
                opt.step(closure)
                with torch.no_grad():
                    image.clamp_(0, 1)
        return self.render(image, t)

    def predict_step(self, batch, batch_idx: int) -> dict:
        if torch.is_autocast_enabled(batch[0].device.type) and not self._warned_fp32:
            warnings.warn(
                "style transfer optimises in fp32: autocast is disabled inside predict", stacklevel=1
            )
            self._warned_fp32 = True
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
                c, s, w = (
                    (content[i : i + 1].float() + 1) / 2,
                    (styles[i].float() + 1) / 2,
                    weights[i].float(),
                )
                outputs.append(self.stylize(c, s, w))
        return {"images": torch.cat(outputs), "names": list(batch[3])}
