"""Style transfer on a plateau: is the tutorial's best loss within 300 evaluations a property of its optimiser, or of
one trajectory? (issue #16)

On the texture pairs of ``bench/style_speed.py`` (coffee ← brick, camera ← gravel) both sides crawl along a plateau
and the tutorial's best is its last evaluation. This runs each optimiser on the *same* objective (the tutorial's
own loss modules, see ``style_speed.tutorial_model``; no box is active on these pairs) from the content image and
from copies perturbed by 1e-4 Gaussian noise (seeds 1, 2, ...), and prints the best loss after k evaluations:

- ``torch``: ``torch.optim.LBFGS`` as in the tutorial (lr 1, max_iter 20, history 100, clamp inside the closure);
- ``box``: ``BoxLBFGS`` as in the configs (same step budget and history).

If the spread across perturbations is as large as the gap between the two optimisers, a race to the tutorial's
300-evaluation loss on such a pair is decided by trajectory noise, not by the optimiser.

    OMP_NUM_THREADS=1 python bench/style_plateau_noise.py --pairs 3 5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics

import torch

from aigc_lightning.optim import BoxLBFGS
from style_speed import PAIRS, load, shared_vgg, tutorial_model

CHECKPOINTS = (50, 100, 200, 300)


def run(optimizer: str, cnn, content, style, seed: int, evals: int) -> list[float]:
    """Losses of ``evals`` evaluations of the tutorial's objective, from the content image (+ noise if seed > 0)."""
    model, style_losses, content_losses = tutorial_model(cnn, style, content)
    model.requires_grad_(False)
    x = content.clone()
    if seed:
        x += 1e-4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    x = x.clamp(0, 1).requires_grad_(True)
    opt = torch.optim.LBFGS([x]) if optimizer == "torch" else BoxLBFGS([x], max_iter=20, history_size=100)
    losses: list[float] = []
    while len(losses) < evals:

        def closure():
            with torch.no_grad():
                x.clamp_(0, 1)  # the tutorial's clamp; a no-op for BoxLBFGS, whose points are in the box
            opt.zero_grad()
            model(x)
            loss = sum(sl.loss for sl in style_losses) * 1e6 + sum(cl.loss for cl in content_losses)
            loss.backward()
            losses.append(loss.item())
            return loss

        opt.step(closure)
    return losses[:evals]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, nargs="+", default=[3, 5], help="indices into style_speed.PAIRS")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="0: the content image itself")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--evals", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    _, cnn = shared_vgg()
    checkpoints = [k for k in CHECKPOINTS if k <= args.evals]
    print("| pair | optimiser | start | " + " | ".join(f"best after {k}" for k in checkpoints) + " |")
    print("|---|---|---|" + "---|" * len(checkpoints))
    for i in args.pairs:
        content, style = load(PAIRS[i][0], args.size), load(PAIRS[i][1], args.size)
        finals: dict[str, list[float]] = {}
        for optimizer in ("torch", "box"):
            for seed in args.seeds:
                losses = run(optimizer, cnn, content, style, seed, args.evals)
                best = [min(losses[:k]) for k in checkpoints]
                finals.setdefault(optimizer, []).append(best[-1])
                start = "content" if seed == 0 else f"content + noise (seed {seed})"
                print(f"| {PAIRS[i][0]} ← {PAIRS[i][1]} | {optimizer} | {start} | "
                      + " | ".join(f"{b:.6f}" for b in best) + " |", flush=True)  # fmt: skip
        for optimizer, values in finals.items():
            spread = max(values) - min(values)
            print(f"  {PAIRS[i][0]} ← {PAIRS[i][1]}, {optimizer}: best after {checkpoints[-1]} evaluations, median "
                  f"{statistics.median(values):.6f}, spread {spread:.2g} over {len(values)} starts")  # fmt: skip


if __name__ == "__main__":
    main()
