"""Losses as pure tensor functions.

Every function returns **per-sample** values of shape (B,) (or a scalar where noted); the LightningModule reduces.
Networks never compute losses (the split of NVlabs edm's ``training/loss.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ----------------------------------------------------------------------------------------------------------
# GAN (logits form: safe under fp16 autocast)

# ----------------------------------------------------------------------------------------------------------
# VAE: ELBO terms (summed over pixels / latents, per sample)

# ----------------------------------------------------------------------------------------------------------
# Neural style transfer (Gatys et al. 2016)
