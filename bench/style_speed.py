"""Style transfer: time to reach the PyTorch tutorial's *best* loss, over several image pairs (issue #16).

Reference: a plain-PyTorch reimplementation of the loop of the PyTorch "Neural Transfer" tutorial
(pytorch.org/tutorials/advanced/neural_style_tutorial.html): a ``nn.Sequential`` with loss modules after the conv
layers (trimmed after the last one), target Grams computed once, ``optim.LBFGS([input_img])`` with its defaults
(lr 1, max_iter 20, history 100, no line search), the image clamped *inside* the closure, content init, style
weight 1e6, content weight 1, its layers ``conv_4`` (= conv2_2) for content and ``conv_1…conv_5`` (= conv1_1,
conv1_2, conv2_1, conv2_2, conv3_1) for style, ``--evals`` loss evaluations. Its closure evaluates the clamped
image, so each value it returns is the loss of a valid image; the target is the *lowest* of them (not the last:
the tutorial sometimes runs away from its best) and the time it first reached it.

Ours: ``StyleTransfer`` with the same layers and weights, through its own optimisation loop
(``new_optimizer`` + ``optimizer_step_on``, exactly what ``fit`` and ``stylize`` run), timed from the target
computation on, until its best-so-far loss reaches the tutorial's best or the tutorial's run time T (its
``--evals`` evaluations) passes: the race is in time, so cheaper evaluations may be more of them (at most 4x).

Both sides use the SAME network: seeded random VGG19 filters (no weights can be downloaded here) written by this
script as a local torchvision-layout ``.pth``, loaded by torchvision's ``vgg19().features`` for the reference and
by ``VGGFeatures(path)`` (max pooling) for ours. Both run in the same process, one thread, one after the other
for each pair; the objective is checked to be the same function on both sides.

Ours is scored by float32 values only: with ``feature_precision`` bf16 (the configs' "auto" on a CPU with
AVX512-BF16), an image counts when its float32 re-score (a forward pass, timed as part of the run) or a float32
evaluation says it is that good. The tutorial side is unchanged (float32, as published). Each run prints what
it spent: bfloat16 and float32 evaluations (forward + backward) and float32 re-scores (forward only).

    OMP_NUM_THREADS=1 python bench/style_speed.py --size 128 --variants box box32    # the 128 px table (docs)
    OMP_NUM_THREADS=1 python bench/style_speed.py --size 256 --evals 150 --no-curves     # 256 px
    OMP_NUM_THREADS=1 python bench/style_speed.py --size 64 --variants box box_h10 box_nm5 lbfgs_sw lbfgs
    OMP_NUM_THREADS=1 python bench/style_speed.py --speed 128 256            # ms / evaluation, each kind
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from aigc_lightning.datamodules.style import cover_crop
from aigc_lightning.losses import content_loss, gram_matrix, style_loss
from aigc_lightning.modules import StyleTransfer
from aigc_lightning.modules.style_precision import Schedule
from aigc_lightning.modules.style_transfer import resize
from aigc_lightning.nets import VGGFeatures
from aigc_lightning.nets.vgg import IMAGENET_MEAN, IMAGENET_STD, vgg19_layer_names
from aigc_lightning.optim import BestImage, BoxLBFGS

CONTENT, STYLE = ["conv2_2"], ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]  # the tutorial's layers
# (content, style) from scikit-image's bundled samples, fixed before any measurement.
PAIRS = [("astronaut", "coffee"), ("chelsea", "astronaut"), ("rocket", "immunohistochemistry"),
         ("coffee", "brick"), ("immunohistochemistry", "grass"), ("camera", "gravel")]  # fmt: skip
VARIANTS = {  # name -> (optimizer factory over the image, StyleTransfer options)
    # the configs' optimizer and feature_precision "auto" (bf16 then float32 here: the CPU has AVX512-BF16)
    "box": (lambda p: BoxLBFGS(p, lr=1.0, max_iter=20, history_size=100), {}),
    "box32": (lambda p: BoxLBFGS(p, lr=1.0, max_iter=20, history_size=100), {"feature_precision": "32"}),
    "box_bf16_only": (lambda p: BoxLBFGS(p, max_iter=20), {"feature_precision": "bf16", "bf16_until": 0.0}),
    "box_h10": (lambda p: BoxLBFGS(p, max_iter=20, history_size=10), {}),
    "box_h30": (lambda p: BoxLBFGS(p, max_iter=20, history_size=30), {}),  # less two-loop work per evaluation
    "box_nm5": (lambda p: BoxLBFGS(p, max_iter=20, history_size=100, nonmonotone=5), {}),
    # coarse-to-fine: 3 steps (≤ 60 evaluations at a quarter of the cost) at half size first
    "box_ms": (lambda p: BoxLBFGS(p, max_iter=20), {"scales": (0.5, 1.0), "scale_steps": (3, 1)}),
    "lbfgs_sw": (
        lambda p: torch.optim.LBFGS(p, max_iter=20, line_search_fn="strong_wolfe"),
        {},
    ),  # clamp after
    "lbfgs": (lambda p: torch.optim.LBFGS(p, max_iter=20), {}),  # the previous default: clamp after each step
}


def load(name: str, size: int) -> torch.Tensor:
    """A scikit-image sample as (1, 3, size, size) RGB in [0, 1] (grey images repeated, centre square)."""
    from skimage import data

    a = getattr(data, name)()
    a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255  # (3, H, W)
    return cover_crop(x, (size, size))[None]


# ----------------------------------------------------------------------------------------------------------
# The tutorial's recipe


def tutorial_gram(x):
    a, b, c, d = x.size()
    features = x.view(a * b, c * d)
    return torch.mm(features, features.t()).div(a * b * c * d)


class ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


class StyleLoss(nn.Module):
    def __init__(self, target_feature):
        super().__init__()
        self.target = tutorial_gram(target_feature).detach()

    def forward(self, x):
        self.loss = F.mse_loss(tutorial_gram(x), self.target)
        return x


class Normalization(nn.Module):
    def __init__(self):
        super().__init__()
        self.mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean) / self.std


def tutorial_model(cnn, style_img, content_img):
    content_losses, style_losses = [], []
    model = nn.Sequential(Normalization())
    i = 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            name, layer = f"relu_{i}", nn.ReLU(inplace=False)
        elif isinstance(layer, nn.MaxPool2d):
            name = f"pool_{i}"
        else:
            name = f"bn_{i}"
        model.add_module(name, layer)
        if name == "conv_4":
            cl = ContentLoss(model(content_img).detach())
            model.add_module(f"content_loss_{i}", cl)
            content_losses.append(cl)
        if name in ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5"):
            sl = StyleLoss(model(style_img).detach())
            model.add_module(f"style_loss_{i}", sl)
            style_losses.append(sl)
    for i in range(len(model) - 1, -1, -1):
        if isinstance(model[i], (ContentLoss, StyleLoss)):
            break
    return model[: i + 1], style_losses, content_losses


def run_tutorial(cnn, content_img, style_img, num_steps, style_weight=1e6, content_weight=1):
    """The tutorial's ``run_style_transfer``; returns [(seconds, loss)] per evaluation and the final image."""
    trace, start = [], time.perf_counter()
    input_img = content_img.clone()
    model, style_losses, content_losses = tutorial_model(cnn, style_img, content_img)
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = torch.optim.LBFGS([input_img])
    run = [0]
    while run[0] < num_steps:

        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = sum(sl.loss for sl in style_losses) * style_weight
            content_score = sum(cl.loss for cl in content_losses) * content_weight
            loss = style_score + content_score
            loss.backward()
            run[0] += 1
            trace.append((time.perf_counter() - start, loss.item()))
            return loss

        optimizer.step(closure)
    return trace


# ----------------------------------------------------------------------------------------------------------
# Ours


class TracedBest(BestImage):
    """``BestImage`` that also records (seconds, best-so-far loss, evaluations so far) at every offer.

    Only float32 losses are offered (every float32 evaluation, and the float32 re-scores of bfloat16-phase images),
    so a time in the trace is when an image *known* in float32 to be this good existed.
    """

    def __init__(self, start: float, m: StyleTransfer) -> None:
        super().__init__()
        self.start, self.m, self.trace = start, m, []

    def offer(self, losses, image) -> None:
        super().offer(losses, image)
        self.trace.append((time.perf_counter() - self.start, self.loss, self.m.evaluations))


def run_ours(m: StyleTransfer, content, style, evals: int, target: float, seconds: float = math.inf):
    """``StyleTransfer``'s loop (the code fit and stylize run) until ``target``, ``evals`` full-size evaluations
    or ``seconds`` (checked after each optimizer step).

    Coarse scales (if any) run their ``scale_steps`` first; their time counts, their losses (another objective)
    do not enter the trace. Returns the trace, the restarts and the cost: evaluations in bfloat16 and in float32
    (forward + backward each) and float32 re-scores (forward only).
    """
    start, best, restarts = time.perf_counter(), None, 0
    m.evaluations, cost, objective = 0, {"bf16": 0, "fp32": 0, "rescore": 0}, m.objective

    def counted(image, t, bf16=False):  # every objective call, by kind: what one run's time paid for
        cost["bf16" if bf16 else "fp32" if torch.is_grad_enabled() else "rescore"] += 1
        return objective(image, t, bf16)

    m.objective = counted
    sizes = m.scale_sizes(tuple(content.shape[-2:]))
    for k, size in enumerate(sizes):
        t = m.targets(content, style, torch.ones(1), size)
        x = m.initial_image(t) if best is None else resize(best.image, size)
        image, best, restarts = nn.Parameter(x.clamp(0, 1).contiguous()), TracedBest(start, m), 0
        opt, steps, schedule = m.new_optimizer(image), 0, Schedule()
        last = k == len(sizes) - 1
        while (last and m.evaluations < evals and best.loss > target and time.perf_counter() - start < seconds) or (
            not last and steps < m.hparams.scale_steps[k]
        ):
            r = m.optimizer_step_on(image, opt, t, best, torch.Tensor.backward, restarts, schedule)
            if r != restarts:  # a rejected (non-finite) step: retried from the best image with a smaller step
                restarts, opt = r, m.new_optimizer(image, r)
            steps += 1
    m.objective = objective
    return [e for e in best.trace if e[2] <= evals], restarts, cost


def first_reach(trace, target: float) -> tuple[float, int] | None:
    """(seconds, evaluations so far) of the first loss ≤ target in a trace of (seconds, loss[, evaluations])."""
    for i, (t, loss, *evals) in enumerate(trace):
        if loss <= target:
            return t, evals[0] if evals else i + 1
    return None


def best_so_far_at(trace, seconds: float) -> float:
    values = [e[1] for e in trace if e[0] <= seconds]
    return min(values) if values else math.inf


# ----------------------------------------------------------------------------------------------------------


def shared_vgg() -> tuple[Path, nn.Module]:
    """The same seeded random VGG19 for both sides: a local torchvision-layout .pth and torchvision's features."""
    index = {n: i for i, n in enumerate(vgg19_layer_names())}
    source = VGGFeatures("none", pool="max", seed=0)
    state = {
        f"features.{index[k.split('.')[0]]}.{k.split('.')[1]}": v
        for k, v in source.layers.state_dict().items()
    }
    pth = Path(tempfile.mkdtemp()) / "vgg19_random.pth"
    torch.save(state, pth)
    vgg = torchvision.models.vgg19(weights=None)
    vgg.load_state_dict(state, strict=False)
    return pth, vgg.features.eval()


def speed(size: int, rounds: int = 15) -> None:
    """Milliseconds per loss evaluation (forward + backward to the pixels): the tutorial's closure (float32, as
    published) against ours in float32, with bfloat16 features, and our float32 re-score (forward only); and the
    previous objective (``losses.gram_matrix``, contiguous layout) for the record. The variants take turns, one
    evaluation each per round, and the median is reported, so a load change on a shared machine hits them all
    alike."""
    pth, cnn = shared_vgg()
    content, style = load("astronaut", size), load("coffee", size)
    model, style_losses, content_losses = tutorial_model(cnn, style, content)
    model.requires_grad_(False)
    m = StyleTransfer(VGGFeatures(str(pth)), content_layers=CONTENT, style_layers=STYLE, normalize_layers=False)
    t = m.targets(content, style, torch.ones(1), (size, size))
    old = VGGFeatures(str(pth)).truncate(CONTENT + STYLE)

    def tutorial():
        x = content.clone().requires_grad_(True)
        model(x)
        (sum(sl.loss for sl in style_losses) * 1e6 + sum(cl.loss for cl in content_losses)).backward()

    def ours(bf16: bool):
        x = content.clone().requires_grad_(True)
        m.objective(x, t, bf16=bf16)["loss"].backward()

    def previous():  # the objective before gram_matrix_fp32 and channels-last features
        x = content.clone().requires_grad_(True)
        f = old(x, CONTENT + STYLE)
        loss = sum(content_loss(f[n], t["content"][n]) for n in CONTENT)
        (loss + 1e6 * sum(style_loss(gram_matrix(f[n]), t["grams"][n]) for n in STYLE)).sum().backward()

    def rescore():
        with torch.no_grad():
            m.objective(content, t)

    variants = {"tutorial (float32, as published)": tutorial, "previous objective (float32)": previous,
                "ours, float32": lambda: ours(False), "ours, bfloat16 features": lambda: ours(True),
                "ours, float32 re-score (forward only)": rescore}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds + 2):
        for name, fn in variants.items():
            begin = time.perf_counter()
            fn()
            if r >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - begin)
    print(f"\nMilliseconds per loss evaluation, {size} px, tutorial layers, {torch.get_num_threads()} thread(s), "
          f"median of {rounds} interleaved rounds\n\n| variant | ms / evaluation | vs tutorial |\n|---|---|---|")
    ref = statistics.median(times["tutorial (float32, as published)"])
    for name, values in times.items():
        print(f"| {name} | {1000 * statistics.median(values):.1f} | {statistics.median(values) / ref:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--size", type=int, default=128, help="image side in pixels (the tutorial's CPU size: 128)"
    )
    p.add_argument("--evals", type=int, default=300, help="loss evaluations per run (both sides)")
    p.add_argument("--pairs", type=int, nargs="+", default=range(len(PAIRS)), help="indices into PAIRS (all)")
    p.add_argument("--variants", nargs="+", default=["box"], choices=sorted(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--no-curves", action="store_true", help="skip the full-length runs behind the curve table"
    )
    p.add_argument("--speed", type=int, nargs="*", help="only print seconds per evaluation at these sizes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.speed:
        for s in args.speed:
            speed(s)
        return

    # The same seeded random VGG19 on both sides, through a local torchvision-layout .pth.
    pth, cnn = shared_vgg()

    def ours_model(variant: str) -> StyleTransfer:
        return StyleTransfer(VGGFeatures(str(pth)), content_layers=CONTENT, style_layers=STYLE, normalize_layers=False,
                             style_weight=1e6, content_weight=1.0, optimizer=VARIANTS[variant][0],
                             **VARIANTS[variant][1])  # fmt: skip

    # Warm-up (oneDNN primitives, allocator) on a small run of each side, so neither pays it inside the race.
    warm_c, warm_s = load(PAIRS[0][0], args.size), load(PAIRS[0][1], args.size)
    run_tutorial(cnn, warm_c, warm_s, 5)
    run_ours(ours_model(args.variants[0]), warm_c, warm_s, 5, -math.inf)

    rows, curves = [], []
    for content_name, style_name in [PAIRS[i] for i in args.pairs]:
        content, style = load(content_name, args.size), load(style_name, args.size)
        ref = run_tutorial(cnn, content, style, args.evals)[: args.evals]  # its best *within* --evals
        ref_best = min(loss for _, loss in ref)
        ref_time, ref_evals = first_reach(ref, ref_best)
        pair = f"{content_name} ← {style_name}"
        for variant in args.variants:
            m = ours_model(variant)
            with torch.no_grad():  # the same objective on both sides, at the content image
                t = m.targets(content, style, torch.ones(1), (args.size, args.size))
                ours0 = m.objective(content, t)["loss"].item()
            assert math.isclose(ours0, ref[0][1], rel_tol=1e-4), (ours0, ref[0][1])
            # Ours gets the tutorial's budget in time (its --evals evaluations took ref[-1][0] s): cheaper evaluations
            # may be more (capped at 4x), the race is to the tutorial's best loss.
            budget = ref[-1][0]
            trace, restarts, cost = run_ours(m, content, style, 4 * args.evals, ref_best, budget)
            reach = first_reach(trace, ref_best)
            ratio = reach[0] / ref_time if reach else math.inf
            spent = f"{cost['bf16']} bf16 + {cost['fp32']} fp32 + {cost['rescore']} re-scores"
            rows.append((pair, variant, ref_best, ref_evals, ref_time, ref[-1][1], trace[-1][1],
                         reach[1] if reach else None, reach[0] if reach else None, ratio, restarts, spent,
                         ref[-1][0] / len(ref), trace[-1][0] / max(1, trace[-1][2])))  # fmt: skip
            print(f"{pair:34s} {variant:8s} tutorial best {ref_best:.4g} at eval {ref_evals} ({ref_time:.1f} s), "
                  f"last {ref[-1][1]:.4g} | ours {trace[-1][1]:.4g}, reached at eval "
                  f"{reach[1] if reach else '-'} ({reach[0] if reach else math.nan:.1f} s): ratio {ratio:.2f} "
                  f"| ours spent {spent}", flush=True)  # fmt: skip
            if variant == args.variants[0] and not args.no_curves:
                # Ours again without the early stop, for the loss-vs-time curve.
                full, _, _ = run_ours(m, content, style, 4 * args.evals, -math.inf, budget)
                curves.append((pair, ref, full))

    print(f"\n{args.size} px, tutorial: {args.evals} evaluations per run (T s), ours: until its best or T s, "
          f"{args.threads} thread(s)\n")  # fmt: skip
    print("| pair | variant | tutorial best (eval, s) | tutorial last | ours: evals, s to reach it | time ratio |"
          " eval ratio | ours' run: objective calls | ms per eval: tutorial / ours |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for (pair, variant, best, ref_evals, ref_time, last, ours_last, evals, secs, ratio, restarts, spent, ms_ref,
         ms_ours) in rows:  # fmt: skip
        reached = f"{evals}, {secs:.1f}" if evals else f"not within T (best {ours_last:.4g})"
        eval_ratio = f"{evals / ref_evals:.2f}" if evals else "∞"
        print(f"| {pair} | {variant} | {best:.4g} ({ref_evals}, {ref_time:.1f}) | {last:.4g} | {reached} | "
              f"{ratio:.2f} | {eval_ratio} | {spent} | {1000 * ms_ref:.0f} / {1000 * ms_ours:.0f} |")  # fmt: skip
    for variant in args.variants:
        ratios = [r[9] for r in rows if r[1] == variant]
        print(f"\n{variant}: median time ratio {statistics.median(ratios):.2f} over {len(ratios)} pairs; "
              f"pairs at ≤ 0.5: {sum(r <= 0.5 for r in ratios)}")  # fmt: skip

    print("\nBest-so-far loss at fractions of the tutorial's run time (tutorial / ours, first variant)\n")
    fractions = (0.05, 0.1, 0.25, 0.5, 1.0)
    print("| pair | " + " | ".join(f"{f:g}·T" for f in fractions) + " | T (s) |")
    print("|---|" + "---|" * (len(fractions) + 1))
    for pair, ref, full in curves:
        total = ref[-1][0]
        cells = [
            f"{best_so_far_at(ref, f * total):.4g} / {best_so_far_at(full, f * total):.4g}" for f in fractions
        ]
        print(f"| {pair} | " + " | ".join(cells) + f" | {total:.1f} |")


if __name__ == "__main__":
    main()
