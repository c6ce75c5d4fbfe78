"""Flat GAN options that configs may still name, and what to write instead: one line per key.

The recipe is objects (``gan_losses``, ``gan_latents``, ``gan_regularizers``, ``augment.AdaController``) chosen
by ``class_path``; a config that names a flat option such as ``r1_gamma`` fails to parse on that key. ``renamed_option_line`` gives
that parse error's one line: the key, and the ``class_path`` block that replaces it (docs/gan.md). It is a table of
*hints*, not a translation: configs name their objects themselves.
"""

from __future__ import annotations

R1 = "model.r1: {class_path: aigc_lightning.gan_regularizers.R1, init_args: {gamma: …, every: …}}"
PATH_LENGTH = (
    "model.path_length: {class_path: aigc_lightning.gan_regularizers.PathLength, init_args: "
    "{weight: …, every: …, decay: …, batch_shrink: …}} (with model.latents StyleLatents)"
)
ADA = "model.ada: {class_path: aigc_lightning.augment.AdaController, init_args: {target: …, ada_kimg: …, interval: …, p: …}}"
LOSS = (
    "model.loss: {class_path: aigc_lightning.gan_losses.NonSaturating}, or aigc_lightning.gan_losses.Hinge, or "
    "{class_path: aigc_lightning.gan_losses.WassersteinGP, init_args: {gp_weight: …}}"
)

# old key → what replaces it
RENAMED_OPTIONS: dict[str, str] = {
    "r1_gamma": f"{R1} (gamma)",
    "r1_every": f"{R1} (every)",
    "lazy_reg_correction": (
        "model.r1: {class_path: aigc_lightning.gan_regularizers.R1, init_args: {…, lazy_correction: true}}, and the "
        "same in model.path_length"
    ),
    "style_mixing_prob": (
        "model.latents: {class_path: aigc_lightning.gan_latents.StyleLatents, init_args: {mixing_prob: …}}"
    ),
    "pl_weight": f"{PATH_LENGTH} (weight)",
    "pl_every": f"{PATH_LENGTH} (every)",
    "pl_decay": f"{PATH_LENGTH} (decay)",
    "pl_batch_shrink": f"{PATH_LENGTH} (batch_shrink)",
    "ada_target": f"{ADA} (target)",
    "ada_kimg": f"{ADA} (ada_kimg)",
    "ada_interval": f"{ADA} (interval)",
    "ada_p": f"{ADA} (p)",
    "gp_weight": "model.loss: {class_path: aigc_lightning.gan_losses.WassersteinGP, init_args: {gp_weight: …}}",
    "lr_decay": (
        "model.lr_scheduler: {class_path: aigc_lightning.schedules.LinearDecay, init_args: {fraction: …}}"
    ),
    "loss": LOSS,  # the old string values nonsaturating / hinge / wgan-gp
}


def renamed_option_line(key: str) -> str | None:
    """One line for an old GAN option ``key`` (``r1_gamma``, ``model.init_args.pl_weight`` …), or None."""
    name = key.rpartition(".")[2].lstrip("-")
    if name not in RENAMED_OPTIONS:
        return None
    what = "takes an object, not a name" if name == "loss" else "is not a GAN option"
    return f"--model.{name} {what}; write {RENAMED_OPTIONS[name]} (docs/gan.md)"


__all__ = ["RENAMED_OPTIONS", "renamed_option_line"]
