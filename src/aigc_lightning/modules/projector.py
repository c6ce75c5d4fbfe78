"""StyleGAN2 projection (Karras et al. 2020, §5 and NVlabs' ``projector.py``): the parameters *are* the latent.

``fit`` finds, for each target image, the w (one vector for every layer) or w+ (one per layer) and the per-layer
noise maps whose image matches the target; the generator stays frozen. One training step is one Adam step: the
``ProjectionDataModule`` serves each target for ``--data.steps`` batches, each batch carrying its step index, and
a new target restarts the optimisation from ``w_avg`` with fresh noise maps and a fresh Adam state. Schedule as
NVlabs: the learning rate ramps up over the first ``lr_rampup`` of the steps and down (cosine) over the last
``lr_rampdown``; Gaussian noise of ``w_std · noise_factor · (1 − t / noise_ramp)²`` on w explores early. The
``ProjectionWriter`` callback saves ``<run dir>/projections/<name>.png`` and ``<name>.pt`` (``projection()``).

``predict`` renders saved latents (``--data.latent``) with truncation, style mixing and edits (``render``).

DDP: every rank projects its own targets, so gradients must not be averaged across ranks; ``setup`` turns DDP's
gradient synchronisation off in every step (``compat.disable_gradient_sync``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from aigc_lightning import compat, losses
from aigc_lightning.constraints import UnitIntervalBelowOne
from aigc_lightning.errors import UserError, check_finite, checked_optimizer
from aigc_lightning.modules.generator_file import load_generator
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.nets.latent_edits import layer_group, load_directions, read_latent, sefa_directions
from aigc_lightning.nets.stylegan2 import StyleGAN2Generator
from aigc_lightning.perceptual import PerceptualLoss
from aigc_lightning.pixels import convert_channels, resize_crop, to_unit
from aigc_lightning.schedules import RampUpDown
from aigc_lightning.seeds import randn_from_seeds


@contextmanager
def noise_maps(generator: StyleGAN2Generator, maps: dict[str, Tensor]) -> Iterator[None]:
    """Run the generator with ``maps`` (buffer name → (1, 1, r, r)) as its constant noise, then restore it."""
    saved = {}
    for name, value in maps.items():
        owner, _, attr = name.rpartition(".")
        module = generator.get_submodule(owner)
        saved[name] = getattr(module, attr)
        setattr(module, attr, value)  # a registered buffer name: the tensor replaces the buffer
    try:
        yield
    finally:
        for name, value in saved.items():
            owner, _, attr = name.rpartition(".")
            setattr(generator.get_submodule(owner), attr, value)


class Projector(PlainHyperparameters, LightningModule):
    """Project images into a frozen StyleGAN2's latent space; render saved latents with truncation, mixing, edits.

    Args:
        generator_checkpoint: the generator: a GAN run's ``.ckpt`` (its ``generator_ema``) or a rosinality ``.pt``.
        features: frozen feature extractor ``f(x, layers) -> {name: (B, C, h, w)}`` for RGB in [0, 1]
            (``aigc_lightning.nets.VGGFeatures``: ImageNet weights, a local file or ``weights: none``); ``null``
            with ``perceptual: lpips`` or ``none``.
        perceptual: the perceptual distance: ``vgg`` (LPIPS-style unit-normalised ``features``), ``lpips``
            (the ``lpips`` package, VGG variant) or ``none``.
        perceptual_layers: ``features`` layers compared (LPIPS-VGG's five).
        perceptual_weight: weight of the perceptual distance.
        mse_weight: weight of the pixel mean squared error (in [-1, 1] units).
        noise_weight: weight of NVlabs' noise regulariser (1e5), which keeps the noise maps white.
        latent_space: ``w`` (one w for all layers, NVlabs) or ``w+`` (one per layer: closer fits, less editable).
        optimize_noise: optimise the per-layer noise maps too (NVlabs); otherwise the generator's own.
        optimizer: optimizer factory for the latent and noise maps; its lr is the peak of the schedule.
            ``None``: NVlabs' Adam, lr 0.1, betas (0.9, 0.999).
        lr_rampup: fraction of the steps of linear learning-rate warm-up (0.05).
        lr_rampdown: fraction of the steps of cosine ramp-down to 0 (0.25).
        noise_factor: initial std of the exploration noise on w, in units of the std of w (0.05).
        noise_ramp: fraction of the steps over which that noise fades to 0 (0.75).
        w_avg_samples: random z whose mapped w give ``w_avg`` (the start) and the std of w.
        truncation_psi: predict: pull the latent towards the generator's ``w_avg`` (0.7 is the article's setting).
        mix_seed: predict: style mixing: the ``mix_layers`` of each latent come from the seed's w.
        mix_latent: predict: style mixing with a saved latent (a ``.pt`` written by fit) instead of a seed.
        mix_layers: the layers the mixing source drives: ``coarse`` (pose, shape), ``middle``, ``fine`` (colour,
            texture); see ``nets.latent_edits.layer_group``.
        edit_direction: predict: move along direction K: SeFa's K-th (0 = strongest) or row K of ``directions``.
        edit_strength: distance moved along the unit direction, in w units.
        edit_steps: 1 renders the edit at ``edit_strength``; N > 1 a strip of N images from −S to +S.
        directions: a ``.pt`` with linear directions (K, w_dim) (e.g. InterFaceGAN) used instead of SeFa.
    """

    def __init__(
        self,
        generator_checkpoint: str = "",
        features: nn.Module | None = None,
        perceptual: Literal["vgg", "lpips", "none"] = "vgg",
        perceptual_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
        perceptual_weight: NonNegativeFloat = 1.0,
        mse_weight: NonNegativeFloat = 0.0,
        noise_weight: NonNegativeFloat = 1e5,
        latent_space: Literal["w", "w+"] = "w",
        optimize_noise: bool = True,
        optimizer: OptimizerCallable | None = None,
        lr_rampup: UnitIntervalBelowOne = 0.05,
        lr_rampdown: PositiveFloat = 0.25,
        noise_factor: NonNegativeFloat = 0.05,
        noise_ramp: PositiveFloat = 0.75,
        w_avg_samples: PositiveInt = 10000,
        truncation_psi: NonNegativeFloat = 1.0,
        mix_seed: NonNegativeInt | None = None,
        mix_latent: str | None = None,
        mix_layers: Literal["coarse", "middle", "fine"] = "fine",
        edit_direction: NonNegativeInt | None = None,
        edit_strength: float = 3.0,
        edit_steps: PositiveInt = 1,
        directions: str | None = None,
    ) -> None:
        if features is not None and hasattr(features, "truncate") and perceptual == "vgg":
            features = features.truncate(list(perceptual_layers))
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # the schedule sets the lr each step and restarts Adam per target
        if mix_seed is not None and mix_latent is not None:
            raise UserError("pass either --model.mix_seed or --model.mix_latent, not both")
        self.generator = load_generator(generator_checkpoint)
        # the same perceptual loss as style transfer (its LPIPS-style distance); frozen, so out of checkpoints
        self.perceptual = PerceptualLoss(features, perceptual_layers) if perceptual == "vgg" and features else None
        if perceptual == "vgg" and features is None:
            raise UserError("--model.perceptual vgg needs --model.features (aigc_lightning.nets.VGGFeatures)")
        self.lpips = self._lpips() if perceptual == "lpips" else None
        self.optimizer = optimizer
        g = self.generator
        self.noise_names = [n for n, _ in g.named_buffers() if n.endswith("noise_const")]
        # The optimisation variables; ``start`` fills them for each target.
        self.w = nn.Parameter(torch.zeros(1, 1 if latent_space == "w" else g.num_ws, g.w_dim))
        self.noise = nn.ParameterList(
            [nn.Parameter(torch.zeros_like(g.get_buffer(n))) for n in self.noise_names] if optimize_noise else []
        )
        self.w_avg: Tensor | None = None  # (w_dim,) and the scalar std of w: ``setup("fit")``
        self.w_std = 1.0
        self.target: Tensor | None = None  # (1, C, H, W) in [-1, 1], the target being projected
        self.name: str | None = None
        self.last: dict[str, Tensor] = {}

    @staticmethod
    def _lpips() -> nn.Module:
        try:
            import lpips  # optional: pip install lpips (its VGG backbone needs torchvision's ImageNet weights)

            return lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)
        except Exception as err:  # not installed, or the backbone weights cannot be downloaded
            raise UserError(
                f"--model.perceptual lpips needs the lpips package and its VGG weights ({type(err).__name__}: "
                f"{err}); pip install lpips while online once, or use --model.perceptual vgg"
            ) from err

    # ------------------------------------------------------------------------------------------------------
    # fit

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        g = self.generator
        # w_avg and the std of w from seeded samples (NVlabs: 10,000 z, seed 123): the same on every rank
        gen = torch.Generator().manual_seed(123)
        z = torch.randn(self.hparams.w_avg_samples, g.latent_dim, generator=gen).to(g.w_avg.device)
        with torch.no_grad():
            w = g.mapping(z, update_w_avg=False)[:, 0]  # (N, w_dim)
        self.w_avg = w.mean(0)
        self.w_std = float((w - self.w_avg).square().sum(1).mean().sqrt())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        factory = self.optimizer or partial(torch.optim.Adam, lr=0.1, betas=(0.9, 0.999))
        return checked_optimizer(factory, [self.w, *self.noise], "model.optimizer")

    def start(self, target: Tensor, name: str) -> None:
        """Restart from ``w_avg`` with white noise maps and a fresh Adam state for a new target (1, C, H, W)."""
        self.target, self.name = target, name
        with torch.no_grad():
            self.w.copy_(self.w_avg.to(self.w).expand_as(self.w))
            for p in self.noise:
                p.normal_()
        self.optimizers().optimizer.state.clear()

    def prepare_target(self, image: Tensor) -> Tensor:
        """A served image (1, C, H, W) in [-1, 1] → the generator's channels and size (centre crop, resize)."""
        g = self.generator
        x = resize_crop(convert_channels(image.float(), g.channels), g.image_size)
        return x.clamp(-1, 1)

    def synthesize(self, ws: Tensor, noise: Sequence[Tensor] | None = None) -> Tensor:
        """ws (B, num_ws or 1, w_dim) → images (B, C, H, W) in [-1, 1], with ``noise`` maps if given."""
        g = self.generator
        ws = ws.expand(-1, g.num_ws, -1) if ws.shape[1] == 1 else ws  # (B, num_ws, w_dim)
        # as plain tensors: assigning an nn.Parameter to a buffer's name would try to register a parameter
        maps = {n: m.view_as(m) for n, m in zip(self.noise_names, noise)} if noise else {}
        with noise_maps(g, maps):
            return g.synthesis(ws, noise_mode="const")

    def distance(self, x: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Perceptual distance and pixel MSE of images x to ``target``, both (1, C, H, W) in [-1, 1]."""
        out = {"mse": (x - target).square().mean()}
        rgb_x, rgb_t = convert_channels(x, 3), convert_channels(target, 3)
        if x.shape[-1] > 256:  # as NVlabs: VGG was built for 224 px
            rgb_x, rgb_t = resize_crop(rgb_x, 256), resize_crop(rgb_t, 256)
        if self.perceptual is not None:
            out["perceptual"] = self.perceptual.distance(to_unit(rgb_x), to_unit(rgb_t)).sum()
        elif self.lpips is not None:
            out["perceptual"] = self.lpips(rgb_x, rgb_t).sum()  # lpips takes [-1, 1]
        else:
            out["perceptual"] = torch.zeros_like(out["mse"])
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if bool(batch["pad"][0]):
            return  # this rank has fewer targets than another: wait in step
        step, steps, name = int(batch["step"][0]), int(batch["steps"][0]), batch["name"][0]
        h, opt = self.hparams, self.optimizers()
        if step == 0 or name != self.name:
            self.start(self.prepare_target(batch["image"][:1]), name)
            # NVlabs' ramp over this target's steps, restarted per target at the served step (a resumed run starts
            # mid-target); the peak lr is recorded in the groups, so it survives a resume
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
            self.lr_schedule = RampUpDown(opt.optimizer, h.lr_rampup, h.lr_rampdown, steps, last_epoch=step - 1)
        compat.disable_gradient_sync(self.trainer.strategy)  # each rank projects its own targets: no averaging
        t = step / steps
        w_noise_scale = self.w_std * h.noise_factor * max(0.0, 1.0 - t / h.noise_ramp) ** 2
        x = self.synthesize(self.w + torch.randn_like(self.w) * w_noise_scale, list(self.noise))
        d = self.distance(x, self.target)
        reg = sum(losses.noise_autocorrelation(p).sum() for p in self.noise) if len(self.noise) else torch.zeros(())
        loss = h.perceptual_weight * d["perceptual"] + h.mse_weight * d["mse"] + h.noise_weight * reg
        check_finite(loss, f"projection loss of {name}", batch_idx)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self.lr_schedule.step()
        with torch.no_grad():  # NVlabs: renormalise the noise maps to zero mean, unit variance after each step
            for p in self.noise:
                p.sub_(p.mean()).mul_(p.square().mean().rsqrt())
        self.last = {"image": x.detach()}
        scalars = {"loss": loss, "perceptual": d["perceptual"], "mse": d["mse"], "noise_reg": reg}
        if step == 0 or compat.logger_records_batch(self.trainer):
            self.log_dict({f"train/{k}": v.detach() for k, v in scalars.items()}, batch_size=1)

    def images_to_log(self, n: int) -> dict[str, Tensor]:
        """The target next to its current reconstruction (without the exploration noise on w)."""
        if self.target is None:
            return {}
        x = self.synthesize(self.w, list(self.noise))
        return {"projection": to_unit(torch.cat([self.target, x]))}

    @torch.no_grad()
    def projection(self) -> dict[str, Any]:
        """The current target's result: ``image`` (1, C, H, W) in [0, 1] and the reusable latent file's content
        (``ws`` (num_ws, w_dim), ``noise`` name → map, the pixel ``mse`` and that of the ``w_avg`` image)."""
        g = self.generator
        ws = self.w.expand(-1, g.num_ws, -1)  # (1, num_ws, w_dim)
        x = self.synthesize(ws, list(self.noise))
        x_avg = self.synthesize(self.w_avg.to(ws)[None, None, :], list(self.noise))
        latent = {
            "ws": ws[0].detach().cpu().clone(),
            "noise": {n: p.detach().cpu().clone() for n, p in zip(self.noise_names, self.noise)},
            "mse": float((x - self.target).square().mean()),
            "mse_w_avg": float((x_avg - self.target).square().mean()),
            "latent_space": self.hparams.latent_space,
        }
        return {"name": self.name, "image": to_unit(x).clamp(0, 1), "latent": latent}

    # ------------------------------------------------------------------------------------------------------
    # predict

    def edit_directions(self) -> Tensor:
        """Unit directions (K, w_dim): the ``directions`` file's or SeFa's."""
        if self.hparams.directions:
            return load_directions(self.hparams.directions, self.generator.w_dim)
        return sefa_directions(self.generator)

    def mixing_source(self) -> Tensor | None:
        """ws (1, num_ws, w_dim) of the style-mixing source, or None."""
        g, h = self.generator, self.hparams
        if h.mix_seed is not None:
            z = randn_from_seeds(torch.tensor([h.mix_seed]), (g.latent_dim,), g.w_avg.device)
            return g.mapping(z, update_w_avg=False)
        if h.mix_latent:
            return read_latent(h.mix_latent, g)["ws"][None]
        return None

    @torch.no_grad()
    def render(self, ws: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """A saved latent ws (1, num_ws, w_dim) → image (1, C, H, W·edit_steps) in [0, 1]: mixing, truncation,
        edit (a strip of ``edit_steps`` strengths from −S to +S when > 1)."""
        g, h = self.generator, self.hparams
        source = self.mixing_source()
        if source is not None:
            ws = ws.clone()
            idx = layer_group(h.mix_layers, g.num_ws)
            if len(idx) == 0:
                raise UserError(f"a {g.image_size} px generator has no {h.mix_layers} layers; pick another --model.mix_layers")
            ws[:, idx] = source.to(ws)[:, idx]
        ws = g.truncate(ws, h.truncation_psi)
        if h.edit_direction is not None:
            directions = self.edit_directions()
            if h.edit_direction >= len(directions):
                raise UserError(f"--model.edit_direction {h.edit_direction} is out of range; there are "
                                f"{len(directions)} directions (0 … {len(directions) - 1})")  # fmt: skip
            d = directions[h.edit_direction].to(ws)  # (w_dim,)
            s = h.edit_strength
            strengths = torch.linspace(-s, s, h.edit_steps) if h.edit_steps > 1 else torch.tensor([s])
            ws = ws + strengths.to(ws)[:, None, None] * d  # (N, num_ws, w_dim)
        maps = [noise[n].to(ws).expand(1, -1, -1, -1) for n in self.noise_names] if noise else None
        x = to_unit(self.synthesize(ws, maps)).clamp(0, 1)  # (N, C, H, W)
        return torch.cat(list(x), dim=-1)[None]  # (1, C, H, N·W): a strip

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        images = [
            self.render(ws[None], {n: m[i] for n, m in batch["noise"].items()}) for i, ws in enumerate(batch["ws"])
        ]
        return {"images": torch.cat(images), "names": list(batch["name"])}
