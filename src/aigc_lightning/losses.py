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
# Adversarial terms take discriminator logits (B,); penalties take the discriminator itself (edm's `(net, images)`
# split) and run it in fp32 with autocast off, because second-order gradients underflow in fp16.


def d_nonsaturating(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−log σ(D(x)) − log(1 − σ(D(G(z)))) = softplus(−D(x)) + softplus(D(G(z))) (Goodfellow et al. 2014): (B,)."""
    return F.softplus(-real_logits) + F.softplus(fake_logits)


def g_nonsaturating(fake_logits: Tensor) -> Tensor:
    """The non-saturating generator loss −log σ(D(G(z))) = softplus(−D(G(z))) (Goodfellow et al. 2014): (B,)."""
    return F.softplus(-fake_logits)


def d_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """max(0, 1 − D(x)) + max(0, 1 + D(G(z))) (Lim & Ye 2017; Miyato et al. 2018): (B,)."""
    return F.relu(1 - real_logits) + F.relu(1 + fake_logits)


def g_hinge(fake_logits: Tensor) -> Tensor:
    """−D(G(z)), the generator side of the hinge loss: (B,)."""
    return -fake_logits


def d_wasserstein(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Critic loss D(G(z)) − D(x) (Arjovsky et al. 2017; add ``gradient_penalty`` for WGAN-GP): (B,)."""
    return fake_logits - real_logits


def g_wasserstein(fake_logits: Tensor) -> Tensor:
    """−D(G(z)), the WGAN generator loss: (B,)."""
    return -fake_logits


def _input_gradient(discriminator: torch.nn.Module, x: Tensor) -> Tensor:
    """∇_x Σ_b D(x_b) in fp32 with the graph kept (penalties are differentiated again): (B, C, H, W)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.detach().float().requires_grad_(True)
        logits = discriminator(x).float()
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad


def r1_penalty(discriminator: torch.nn.Module, real: Tensor) -> Tensor:
    """R1 = ‖∇_x D(x)‖² on real images (Mescheder et al. 2018, eq. 9, without the γ/2): (B,)."""
    return _input_gradient(discriminator, real).pow(2).flatten(1).sum(1)


def gradient_penalty(discriminator: torch.nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """(‖∇D(x̂)‖₂ − 1)² at x̂ = εx + (1−ε)G(z), ε ~ U(0, 1) per sample (Gulrajani et al. 2017, WGAN-GP): (B,)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = torch.lerp(fake.detach().float(), real.detach().float(), eps)  # εx + (1−ε)G(z)
    norm = _input_gradient(discriminator, x_hat).flatten(1).norm(2, dim=1)
    return (norm - 1).pow(2)


# ----------------------------------------------------------------------------------------------------------
# VAE: ELBO terms (summed over pixels / latents, per sample)
# -ELBO = bernoulli_nll or gaussian_nll  +  beta * kl_normal, all in nats per image (Kingma & Welling 2014).

LOG_2PI = 1.8378770664093453  # log(2π)


def kl_normal(mu: Tensor, logvar: Tensor, free_bits: float = 0.0) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) = ½ Σ_j (mu² + σ² − 1 − log σ²), summed over latents: (B,).

    ``free_bits`` > 0 floors each latent's KL at that many nats (Kingma et al. 2016, IAF, eq. 15; here per sample),
    a training objective only: it is no longer the KL, so log the plain value as the metric.
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)  # (B, D)
    if free_bits > 0:
        kl = kl.clamp(min=free_bits)
    return kl.flatten(1).sum(1)


def bernoulli_nll(logits: Tensor, x01: Tensor) -> Tensor:
    """−log Bernoulli(x | sigmoid(logits)) summed over pixels: (B,). Targets must lie in [0, 1].

    The logits form is exact for large |logits| and allowed under fp16 autocast (``binary_cross_entropy`` is not).
    """
    nll = F.binary_cross_entropy_with_logits(logits.float(), x01.float(), reduction="none")
    return nll.flatten(1).sum(1)


def gaussian_nll(mean: Tensor, x: Tensor, log_std: Tensor | float) -> Tensor:
    """−log N(x | mean, σ²) = Σ_pixels [½((x − mean)/σ)² + log σ + ½ log 2π], σ = exp(log_std): (B,).

    ``log_std`` is a float (fixed variance) or a tensor broadcastable to ``x`` (learned). A density over
    continuous pixels: its nats are not comparable with a discrete (Bernoulli) likelihood's.
    """
    log_std = torch.as_tensor(log_std, dtype=torch.float32, device=x.device)
    z = (x.float() - mean.float()) * torch.exp(-log_std)
    nll = 0.5 * z.pow(2) + log_std + 0.5 * LOG_2PI
    return nll.flatten(1).sum(1)


def log_normal_diag(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z | mu, diag(exp(logvar))) summed over the last dimension: (...,). Defaults give the prior N(0, I)."""
    mu = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def importance_weighted_bound(log_w: Tensor) -> Tensor:
    """log (1/K) Σ_k w_k with log w_k = log p(x, z_k) − log q(z_k | x), z_k ~ q(z|x); (K, B) → (B,).

    Burda et al. 2016 (IWAE): a lower bound on log p(x) that equals the ELBO in expectation at K = 1 and
    tightens monotonically with K; −bound is the NLL that papers report.
    """
    return torch.logsumexp(log_w.double(), dim=0).float() - torch.log(torch.tensor(float(log_w.shape[0])))


def iwae_loss(log_px_z: Tensor, log_pz: Tensor, log_qz: Tensor, beta: float = 1.0) -> Tensor:
    """−(importance-weighted bound) per image from K samples z_k ~ q(z|x): (K, B) each → (B,) (IWAE training).

    log w_k = log p(x|z_k) + β (log p(z_k) − log q(z_k|x)); the bound averages the w_k over the K samples of *each
    image* (dim 0), never over the batch. K = 1, β = 1 is the one-sample ELBO with a Monte-Carlo KL; β < 1 (KL
    warm-up) tempers the prior/posterior ratio as β does in the ELBO.
    """
    return -importance_weighted_bound(log_px_z + beta * (log_pz - log_qz))


# ----------------------------------------------------------------------------------------------------------
# Neural style transfer (Gatys et al. 2016)


def gram_matrix(f: Tensor) -> Tensor:
    """Channel correlations G = F Fᵀ / (C·H·W) of features (B, C, H, W) → (B, C, C) (Gatys et al. 2016, eq. 3;
    normalised as in the PyTorch tutorial so losses of different layers and image sizes are comparable)."""
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)  # (B, C, HW)
    return flat @ flat.transpose(1, 2) / (c * h * w)  # (B, C, C)


def _gram2d(a: Tensor) -> Tensor:
    """aᵀa for a (K, C) of any strides, (C, C) in a's dtype.

    A Gram matrix is symmetric, so in float32 on a CPU with C ≥ 64 it is computed as 4 block rows on and above the
    diagonal (10 of 16 blocks) and mirrored: ~0.75x the time of one full product (torch has no symmetric rank-k
    update). The blocks are the same dot products; measured bit-identical to the full product here (C 64-256).
    Elsewhere one product: on a GPU more kernel launches would cost more than they save, and CPU bfloat16
    products of strided blocks are copied first.
    """
    c = a.shape[1]
    if a.device.type != "cpu" or a.dtype != torch.float32 or c < 64 or c % 4:
        return a.t() @ a
    s, g = c // 4, a.new_empty(c, c)
    for i in range(0, c, s):
        block = a[:, i : i + s].t() @ a[:, i:]  # (s, C - i)
        g[i : i + s, i:] = block
        g[i:, i : i + s] = block.t()
    return g


def _each(fn, *tensors: Tensor) -> Tensor:
    """``fn`` over the samples of (B, …) tensors, stacked (no copy for B = 1): CPU 2-D products are faster than
    batched ones for bfloat16 (and as fast for float32)."""
    out = [fn(*xs) for xs in zip(*tensors)]
    return out[0][None] if len(out) == 1 else torch.stack(out)


class _Gram32(torch.autograd.Function):
    """G = F Fᵀ / (C·H·W) as float32 for features of any dtype, with a one-product backward.

    autograd's backward of ``flat @ flat.T`` multiplies twice (once per operand) and adds a transposed copy; here
    dL/dF = (dG + dGᵀ) F / n is one product. Both products are done in float32, or in bfloat16 for bfloat16
    features (as autocast would do them). Channels-last features are read as (B, HW, C) without a copy.
    """

    @staticmethod
    def forward(ctx, f: Tensor) -> Tensor:
        b, c, h, w = f.shape
        last = f.dim() == 4 and not f.is_contiguous() and f.is_contiguous(memory_format=torch.channels_last)
        flat = f.permute(0, 2, 3, 1).reshape(b, h * w, c) if last else f.reshape(b, c, h * w)  # (B, HW, C) | (B, C, HW)
        ctx.save_for_backward(flat)
        ctx.last, ctx.shape, ctx.n = last, f.shape, c * h * w
        # bfloat16 features: a bfloat16 product (float32 accumulation, the result rounded once to bfloat16) is ~4x
        # faster on a CPU with AVX512-BF16 than a float32 one; style transfer re-scores such images in float32
        x = flat if flat.dtype == torch.bfloat16 else flat.float()
        return _each(lambda xi: _gram2d(xi if last else xi.t()), x).float() / ctx.n  # (B, C, C)

    @staticmethod
    def backward(ctx, dg: Tensor) -> Tensor:
        (flat,) = ctx.saved_tensors
        b, c, h, w = ctx.shape
        d = ((dg + dg.transpose(1, 2)) / ctx.n).to(flat.dtype)  # (B, C, C)
        if ctx.last:  # (B, HW, C) → channels-last (B, C, H, W)
            return _each(torch.mm, flat, d).view(b, h, w, c).permute(0, 3, 1, 2)
        return _each(lambda fi, di: di @ fi, flat, d).view(b, c, h, w)


def gram_matrix_fp32(f: Tensor) -> Tensor:
    """``gram_matrix`` of features (B, C, H, W) of any dtype, returned in float32 (B, C, C), with a cheaper backward
    (one matrix product instead of two). float32 features: float32 products (on a CPU, the symmetric half only).
    bfloat16 features: a bfloat16 product accumulated in float32 and rounded once (~0.2 % per entry), the loss
    on it in float32: style transfer's fast phase, whose images are re-scored in float32."""
    return _Gram32.apply(f)


def content_loss(f: Tensor, target: Tensor) -> Tensor:
    """Feature reconstruction loss mean((F − P)²) per sample, (B,) (Gatys et al. 2016, eq. 1)."""
    return (f - target).pow(2).flatten(1).mean(1)


def style_loss(gram: Tensor, target_gram: Tensor) -> Tensor:
    """Gram matching loss mean((G − A)²) per sample, (B,) (Gatys et al. 2016, eq. 4, up to a constant)."""
    return (gram - target_gram).pow(2).flatten(1).mean(1)


def total_variation(x: Tensor) -> Tensor:
    """Smoothness prior mean((∂x/∂h)²) + mean((∂x/∂w)²) per image, (B,); 0 for a constant image (squared, so
    it stays differentiable for LBFGS; Mahendran & Vedaldi 2015)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).flatten(1).mean(1)
    return dh + dw


# ----------------------------------------------------------------------------------------------------------
# StyleGAN2 path-length regularisation (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
# §3.2 and eq. 4). The running mean `a` is training state: the module keeps it (and its decay), these stay pure.


def path_lengths(images: Tensor, ws: Tensor, noise: Tensor | None = None) -> Tensor:
    """‖J_wᵀ y‖₂ per sample with y ~ N(0, I)/√(H·W) and J = ∂images/∂w, the squared norm averaged over the
    ``num_ws`` copies of w as NVlabs does: (B,). (StyleGAN2, eq. 4.)

    ``images`` (B, C, H, W) must be computed from ``ws`` (B, num_ws, w_dim) with the graph kept; the lengths keep
    theirs (``create_graph``), so the penalty trains the generator. Pass ``noise`` for seeded y. +1e-8 under the
    root keeps its gradient finite where a length is 0 (tiny or fp16 batches).
    """
    if noise is None:
        noise = torch.randn_like(images, dtype=torch.float32) / (images.shape[2] * images.shape[3]) ** 0.5
    (grad,) = torch.autograd.grad((images.float() * noise).sum(), ws, create_graph=True)  # (B, num_ws, w_dim)
    return grad.float().square().sum(2).mean(1).add(1e-8).sqrt()


def path_length_penalty(lengths: Tensor, pl_mean: Tensor | float) -> Tensor:
    """(‖J_wᵀ y‖₂ − a)² with ``a`` the running mean of the path lengths (StyleGAN2, eq. 4): (B,)."""
    return (lengths - pl_mean).square()


def perceptual_distance(f_x: dict[str, Tensor], f_y: dict[str, Tensor]) -> Tensor:
    """Σ_layers mean_hw ‖f̂_x − f̂_y‖² with f̂ the features scaled to unit length per pixel across channels (LPIPS,
    Zhang et al. 2018, eq. 1, with all channel weights 1): (B,)."""
    total = 0
    for name, fx in f_x.items():
        a = fx / fx.norm(dim=1, keepdim=True).clamp_min(1e-10)
        b = f_y[name] / f_y[name].norm(dim=1, keepdim=True).clamp_min(1e-10)
        total = total + (a - b).square().sum(1).mean((1, 2))
    return total


def noise_autocorrelation(noise: Tensor, min_size: int = 8) -> Tensor:
    """NVlabs' projector noise regulariser: Σ over a pyramid (halved down to ``min_size``) of the squared mean
    products of the maps with themselves shifted by one pixel along x and along y; 0 for white noise. noise
    (B, 1, H, W) → (B,)."""
    total = 0
    while True:
        total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean((1, 2, 3)).square()
        total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean((1, 2, 3)).square()
        if noise.shape[2] <= min_size:
            return total
        noise = F.avg_pool2d(noise, kernel_size=2)
