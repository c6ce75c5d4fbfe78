"""How far style transfer's bfloat16 phase is from float32: loss and gradient errors of one evaluation.

For the benchmark's image pairs and three images each (the content image, a 70/30 content/style mix, the content
with 5 % noise), the tutorial's objective (``bench/style_speed.py``: its layers, style weight 1e6, the same random
VGG19) is evaluated in float32 and with bfloat16 features, the Gram products either in bfloat16 (what
``losses.gram_matrix_fp32`` does with bfloat16 features) or in float32 on the same bfloat16 features (what it did
before). Prints the loss's relative error and the gradient's relative error and cosine against float32.

    python bench/style_bf16_error.py --size 128
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from aigc_lightning.losses import content_loss, gram_matrix, gram_matrix_fp32, style_loss
from aigc_lightning.modules import StyleTransfer
from aigc_lightning.nets import VGGFeatures
from style_speed import CONTENT, PAIRS, STYLE, load, shared_vgg


def objective(m: StyleTransfer, t: dict, x: torch.Tensor, precision: str) -> torch.Tensor:
    """The tutorial's loss of ``x``: ``fp32``; ``bf16`` (bfloat16 features and Gram products, as the module's
    bfloat16 phase); ``bf16_fp32gram`` (bfloat16 features, float32 Gram products)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
        f = m.features(x.contiguous(memory_format=torch.channels_last), CONTENT + STYLE)
    gram = gram_matrix_fp32 if precision != "bf16_fp32gram" else lambda h: gram_matrix(h.float())
    c = sum(content_loss(f[n].float(), t["content"][n]) for n in CONTENT)
    return (c + 1e6 * sum(style_loss(gram(f[n]), t["grams"][n]) for n in STYLE)).sum()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    pth, _ = shared_vgg()
    m = StyleTransfer(VGGFeatures(str(pth)), content_layers=CONTENT, style_layers=STYLE, normalize_layers=False)
    print("| pair | image | float32 loss | variant | loss rel. error | gradient rel. error | gradient cosine |")
    print("|---|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for c_name, s_name in PAIRS:
        content, style = load(c_name, args.size), load(s_name, args.size)
        t = m.targets(content, style, torch.ones(1), (args.size, args.size))
        noise = torch.randn(content.shape, generator=g)
        images = {"content": content, "mix 70/30": 0.7 * content + 0.3 * style,
                  "noisy": (content + 0.05 * noise).clamp(0, 1)}  # fmt: skip
        for name, image in images.items():
            grads, losses = {}, {}
            for precision in ("fp32", "bf16", "bf16_fp32gram"):
                x = image.clone().requires_grad_(True)
                losses[precision] = objective(m, t, x, precision)
                (grads[precision],) = torch.autograd.grad(losses[precision], x)
            ref, g32 = float(losses["fp32"]), grads["fp32"].flatten()
            for precision in ("bf16", "bf16_fp32gram"):
                err = (float(losses[precision]) - ref) / ref
                g_err = float((grads[precision].flatten() - g32).norm() / g32.norm())
                cos = float(F.cosine_similarity(grads[precision].flatten(), g32, dim=0))
                print(f"| {c_name} ← {s_name} | {name} | {ref:.5g} | {precision} | {err:+.1e} | {g_err:.3f} | {cos:.5f} |")


if __name__ == "__main__":
    main()
