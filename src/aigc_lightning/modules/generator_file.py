"""A frozen StyleGAN2 generator from a file: a project GAN checkpoint (``.ckpt``) or a rosinality ``.pt``."""

from __future__ import annotations

from pathlib import Path

from aigc_lightning.errors import UserError
from aigc_lightning.nets.stylegan2 import StyleGAN2Generator


def load_generator(path: str) -> StyleGAN2Generator:
    """The EMA generator of a GAN run's ``.ckpt`` (rebuilt from its hyper-parameters, as ``GAN.load_from_checkpoint``
    does) or the ``g_ema`` of a rosinality/stylegan2-pytorch ``.pt``; in eval mode, without gradients."""
    if not path:
        raise UserError("--model.generator_checkpoint is not set; pass a GAN run's .ckpt or a rosinality .pt")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(
            f"--model.generator_checkpoint {p} does not exist; pass a GAN run's .ckpt or a rosinality .pt"
        )
    if p.suffix == ".ckpt":
        from aigc_lightning.modules.gan import GAN  # a module may build on another module

        try:
            generator = GAN.load_from_checkpoint(p, map_location="cpu").generator_ema
        except Exception as err:  # a corrupt file, another model's checkpoint, an incompatible version
            raise UserError(
                f"cannot load --model.generator_checkpoint {p} as a GAN checkpoint ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); pass a checkpoint of a GAN run with a "
                "StyleGAN2Generator, or a rosinality .pt"
            ) from err
    else:
        generator = StyleGAN2Generator.from_rosinality(p)
    if not isinstance(generator, StyleGAN2Generator):
        raise UserError(
            f"--model.generator_checkpoint {p} holds a {type(generator).__name__}; projection needs a GAN run "
            "whose generator is a StyleGAN2Generator"
        )
    return generator.eval().requires_grad_(False)


__all__ = ["load_generator"]
