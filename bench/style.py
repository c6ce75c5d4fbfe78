"""Style transfer: Gatys against the PyTorch tutorial (time to its best loss, cost per evaluation, bfloat16 error,
plateau noise) and the feed-forward style network's speed and video flicker."""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lightning.losses import content_loss, gram_matrix, gram_matrix_fp32, style_loss
from aigc_lightning.modules import StyleTransfer, style_transfer
from aigc_lightning.modules.style_transfer import Run
from aigc_lightning.nets import VGGFeatures
from aigc_lightning.optim import BestImage, BoxLBFGS
from bench.baselines.nst_tutorial import CONTENT, PAIRS, STYLE, load, run_tutorial, shared_vgg, tutorial_model
from bench.common import interleaved, median

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
    """``StyleTransfer.stylize`` (the loop fit runs too), one optimizer step at a time, until ``target``, ``evals``
    evaluations or ``seconds`` (checked after each step).

    Coarse scales (if any) run their ``scale_steps`` first; their time counts, their losses (another objective)
    do not enter the trace. Returns the trace, the restarts and the cost: evaluations in bfloat16 and in float32
    (forward + backward each) and float32 re-scores (forward only).
    """
    start, objective = time.perf_counter(), m.objective
    m.evaluations, cost = 0, {"bf16": 0, "fp32": 0, "rescore": 0}

    def counted(image, problem, bf16=False):  # every objective call, by kind: what one run's time paid for
        cost["bf16" if bf16 else "fp32" if torch.is_grad_enabled() else "rescore"] += 1
        return objective(image, problem, bf16)

    m.objective, style_transfer.BestImage = counted, lambda: TracedBest(start, m)  # each scale's best, traced
    try:
        run, coarse = (
            Run(nn.Parameter(torch.empty(0)), best=TracedBest(start, m)),
            sum(m.hparams.scale_steps[:-1]),
        )
        while run.steps <= coarse or (
            m.evaluations < evals and run.best.loss > target and time.perf_counter() - start < seconds
        ):
            m.stylize(content, style, run=run, steps=1)
    finally:
        m.objective, style_transfer.BestImage = objective, BestImage
    return [e for e in run.best.trace if e[2] <= evals], run.restarts, cost


def first_reach(trace, target: float) -> tuple[float, int] | None:
    """(seconds, evaluations so far) of the first loss ≤ target in a trace of (seconds, loss[, evaluations])."""
    for i, (t, loss, *evals) in enumerate(trace):
        if loss <= target:
            return t, evals[0] if evals else i + 1
    return None


def best_so_far_at(trace, seconds: float) -> float:
    values = [e[1] for e in trace if e[0] <= seconds]
    return min(values) if values else math.inf


def style_speed(args) -> dict:
    """Style transfer: time to reach the PyTorch tutorial's *best* loss, over several image pairs.

    Reference: ``bench.baselines.nst_tutorial`` (the tutorial's loop, ``--evals`` loss evaluations). Its closure
    evaluates the clamped image, so each value it returns is the loss of a valid image; the target is the *lowest*
    of them (not the last: the tutorial sometimes runs away from its best) and the time it first reached it.


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

    Both sides use the SAME network: seeded random VGG19 filters (no weights can be downloaded here) written as a local torchvision-layout ``.pth``, loaded by torchvision's ``vgg19().features`` for the reference and
    by ``VGGFeatures(path)`` (max pooling) for ours. Both run in the same process, one thread, one after the other
    for each pair; the objective is checked to be the same function on both sides.

    Ours is scored by float32 values only: with ``feature_precision`` bf16 (the configs' "auto" on a CPU with
    AVX512-BF16), an image counts when its float32 re-score (a forward pass, timed as part of the run) or a float32
    evaluation says it is that good. The tutorial side is unchanged (float32, as published). Each run prints what
    it spent: bfloat16 and float32 evaluations (forward + backward) and float32 re-scores (forward only).


        OMP_NUM_THREADS=1 python -m bench style_speed --size 128 --variants box box32    # the 128 px table
        OMP_NUM_THREADS=1 python -m bench style_speed --size 256 --evals 150 --no-curves
        OMP_NUM_THREADS=1 python -m bench style_speed --size 64 --variants box box_h10 box_nm5 lbfgs_sw lbfgs
    """
    torch.set_num_threads(args.threads)
    pth, cnn = shared_vgg()

    def ours_model(variant: str) -> StyleTransfer:
        return StyleTransfer(VGGFeatures(str(pth)), content_layers=CONTENT, style_layers=STYLE, normalize_layers=False,
                             style_weight=1e6, content_weight=1.0, optimizer=VARIANTS[variant][0],
                             **VARIANTS[variant][1])  # fmt: skip

    # Warm-up (oneDNN primitives, allocator) on a small run of each side, so neither pays it inside the race.
    warm_c, warm_s = load(PAIRS[0][0], args.size), load(PAIRS[0][1], args.size)
    run_tutorial(cnn, warm_c, warm_s, 5)
    run_ours(ours_model(args.variants[0]), warm_c, warm_s, 5, -math.inf)
    rows, curves, fractions = [], [], (0.05, 0.1, 0.25, 0.5, 1.0)
    for content_name, style_name in [PAIRS[i] for i in args.pairs]:
        content, style = load(content_name, args.size), load(style_name, args.size)
        ref = run_tutorial(cnn, content, style, args.evals)[: args.evals]  # its best *within* --evals
        ref_best = min(loss for _, loss in ref)
        ref_time, ref_evals = first_reach(ref, ref_best)
        pair = f"{content_name} ← {style_name}"
        for variant in args.variants:
            m = ours_model(variant)
            with torch.no_grad():  # the same objective on both sides, at the content image
                t = m.problem(content, style, torch.ones(1), (args.size, args.size))
                ours0 = m.objective(content, t)["loss"].item()
            assert math.isclose(ours0, ref[0][1], rel_tol=1e-4), (ours0, ref[0][1])
            # Ours gets the tutorial's budget in time (T = its --evals evaluations' seconds): cheaper evaluations
            # may be more (capped at 4x), the race is to the tutorial's best loss.
            budget = ref[-1][0]
            trace, _, cost = run_ours(m, content, style, 4 * args.evals, ref_best, budget)
            reach = first_reach(trace, ref_best)
            trace = trace or [(math.nan, math.inf, 0)]  # nothing within --evals (coarse scales used them all)
            rows.append({
                "pair": pair, "variant": variant, "tutorial best (eval, s)": f"{ref_best:.4g} ({ref_evals}, {ref_time:.1f})",
                "tutorial last": ref[-1][1],
                "ours: evals, s to reach it": f"{reach[1]}, {reach[0]:.1f}" if reach else f"not within T (best {trace[-1][1]:.4g})",
                "time ratio": round(reach[0] / ref_time, 2) if reach else math.inf,
                "eval ratio": round(reach[1] / ref_evals, 2) if reach else math.inf,
                "ours' run: objective calls": f"{cost['bf16']} bf16 + {cost['fp32']} fp32 + {cost['rescore']} re-scores",
                "ms per eval: tutorial / ours": f"{1000 * ref[-1][0] / len(ref):.0f} / "
                                                f"{1000 * trace[-1][0] / max(1, trace[-1][2]):.0f}",
            })  # fmt: skip
            print(rows[-1], flush=True)
            if variant == args.variants[0] and not args.no_curves:  # ours again without the early stop
                full, _, _ = run_ours(m, content, style, 4 * args.evals, -math.inf, budget)
                total = ref[-1][0]
                curves.append({"pair": pair, **{f"{f:g}·T": f"{best_so_far_at(ref, f * total):.4g} / "
                                                f"{best_so_far_at(full, f * total):.4g}" for f in fractions},
                               "T (s)": round(total, 1)})  # fmt: skip
    summary = {}
    for variant in args.variants:
        ratios = [r["time ratio"] for r in rows if r["variant"] == variant]
        summary[f"{variant}: median time ratio over {len(ratios)} pairs"] = median(ratios)
        summary[f"{variant}: pairs at ≤ 0.5"] = sum(r <= 0.5 for r in ratios)
    result = {"rows": rows, "summary": summary}
    if curves:
        result["best-so-far loss at fractions of the tutorial's run time T (tutorial / ours)"] = curves
    return result


def style_speed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--size", type=int, default=128, help="image side in pixels (the tutorial's CPU size: 128)"
    )
    p.add_argument("--evals", type=int, default=300, help="loss evaluations per run (both sides)")
    p.add_argument(
        "--pairs", type=int, nargs="+", default=list(range(len(PAIRS))), help="indices into PAIRS (all)"
    )
    p.add_argument("--variants", nargs="+", default=["box"], choices=sorted(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--no-curves", action="store_true", help="skip the full-length runs behind the curve table"
    )


def eval_cost_rows(size: int, pth, cnn, rounds: int) -> list[dict]:
    """One size's rows of ``style_eval_cost``: each objective variant's median milliseconds per evaluation."""
    content, style = load("astronaut", size), load("coffee", size)
    model, style_losses, content_losses = tutorial_model(cnn, style, content)
    model.requires_grad_(False)
    m = StyleTransfer(
        VGGFeatures(str(pth)), content_layers=CONTENT, style_layers=STYLE, normalize_layers=False
    )
    t = m.problem(content, style, torch.ones(1), (size, size))
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
        loss = sum(content_loss(f[n], t.targets.content[n]) for n in CONTENT)
        (loss + 1e6 * sum(style_loss(gram_matrix(f[n]), t.targets.grams[n]) for n in STYLE)).sum().backward()

    def rescore():
        with torch.no_grad():
            m.objective(content, t)

    times = interleaved({"tutorial (float32, as published)": tutorial, "previous objective (float32)": previous,
                         "ours, float32": lambda: ours(False), "ours, bfloat16 features": lambda: ours(True),
                         "ours, float32 re-score (forward only)": rescore}, rounds, warmup=2)  # fmt: skip
    ref = median(times["tutorial (float32, as published)"])
    return [{"px": size, "variant": name, "ms / evaluation": round(1000 * median(v), 1),
              "vs tutorial": round(median(v) / ref, 2)} for name, v in times.items()]  # fmt: skip


def style_eval_cost(args) -> dict:
    """Milliseconds per loss evaluation (forward + backward to the pixels): the tutorial's closure (float32, as
    published) against ours in float32, with bfloat16 features, and our float32 re-score (forward only); and the
    previous objective (``losses.gram_matrix``, contiguous layout) for the record. The variants take turns, one
    evaluation each per round (2 warm-up rounds), and the median is reported.

        OMP_NUM_THREADS=1 python -m bench style_eval_cost --sizes 128 256
    """
    torch.set_num_threads(args.threads)
    pth, cnn = shared_vgg()
    return {"rows": [row for size in args.sizes for row in eval_cost_rows(size, pth, cnn, args.rounds)]}


def style_eval_cost_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)


def bf16_objective(m: StyleTransfer, t: dict, x: torch.Tensor, precision: str) -> torch.Tensor:
    """The tutorial's loss of ``x``: ``fp32``; ``bf16`` (bfloat16 features and Gram products, as the module's
    bfloat16 phase); ``bf16_fp32gram`` (bfloat16 features, float32 Gram products)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
        f = m.perceptual.features(x.contiguous(memory_format=torch.channels_last), CONTENT + STYLE)
    gram = gram_matrix_fp32 if precision != "bf16_fp32gram" else lambda h: gram_matrix(h.float())
    c = sum(content_loss(f[n].float(), t.targets.content[n]) for n in CONTENT)
    return (c + 1e6 * sum(style_loss(gram(f[n]), t.targets.grams[n]) for n in STYLE)).sum()


def style_bf16_error(args) -> dict:
    """How far style transfer's bfloat16 phase is from float32: loss and gradient errors of one evaluation.

    For the image pairs and three images each (the content image, a 70/30 content/style mix, the content with 5 %
    noise), the tutorial's objective (its layers, style weight 1e6, the same random VGG19) is evaluated in float32 and
    with bfloat16 features, the Gram products in bfloat16 (what ``losses.gram_matrix_fp32`` does with bfloat16
    features) or in float32 on the same bfloat16 features. Reports the loss's relative error and the gradient's
    relative error and cosine against float32.

        python -m bench style_bf16_error --size 128
    """
    pth, _ = shared_vgg()
    m = StyleTransfer(
        VGGFeatures(str(pth)), content_layers=CONTENT, style_layers=STYLE, normalize_layers=False
    )
    rows, g = [], torch.Generator().manual_seed(0)
    for c_name, s_name in PAIRS:
        content, style = load(c_name, args.size), load(s_name, args.size)
        t = m.problem(content, style, torch.ones(1), (args.size, args.size))
        noise = torch.randn(content.shape, generator=g)
        images = {"content": content, "mix 70/30": 0.7 * content + 0.3 * style,
                  "noisy": (content + 0.05 * noise).clamp(0, 1)}  # fmt: skip
        for name, image in images.items():
            grads, losses = {}, {}
            for precision in ("fp32", "bf16", "bf16_fp32gram"):
                x = image.clone().requires_grad_(True)
                losses[precision] = bf16_objective(m, t, x, precision)
                (grads[precision],) = torch.autograd.grad(losses[precision], x)
            ref, g32 = float(losses["fp32"]), grads["fp32"].flatten()
            for precision in ("bf16", "bf16_fp32gram"):
                rows.append({"pair": f"{c_name} ← {s_name}", "image": name, "float32 loss": ref, "variant": precision,
                             "loss rel. error": f"{(float(losses[precision]) - ref) / ref:+.1e}",
                             "gradient rel. error": round(float((grads[precision].flatten() - g32).norm() / g32.norm()), 3),
                             "gradient cosine": round(float(F.cosine_similarity(grads[precision].flatten(), g32, dim=0)), 5)})  # fmt: skip
    return {"rows": rows}


def style_bf16_error_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=128)


def plateau_losses(optimizer: str, cnn, content, style, seed: int, evals: int) -> list[float]:
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


def style_plateau(args) -> dict:
    """Style transfer on a plateau: is the tutorial's best loss within 300 evaluations a property of its optimiser,
    or of one trajectory?

    On texture pairs (coffee ← brick, camera ← gravel) both sides crawl along a plateau and the tutorial's best is its
    last evaluation. This runs ``torch`` (``torch.optim.LBFGS`` as in the tutorial, clamp inside the closure) and
    ``box`` (``BoxLBFGS`` as in the configs) on the *same* objective from the content image and from copies perturbed
    by 1e-4 Gaussian noise (seeds 1, 2, ...), and reports the best loss after k evaluations. If the spread across
    perturbations is as large as the gap between the optimisers, the race is decided by trajectory noise.

        OMP_NUM_THREADS=1 python -m bench style_plateau --pairs 3 5 --seeds 0 1 2
    """
    torch.set_num_threads(1)
    _, cnn = shared_vgg()
    checkpoints = [k for k in (50, 100, 200, 300) if k <= args.evals] or [args.evals]
    rows, summary = [], {}
    for i in args.pairs:
        content, style = load(PAIRS[i][0], args.size), load(PAIRS[i][1], args.size)
        pair = f"{PAIRS[i][0]} ← {PAIRS[i][1]}"
        for optimizer in ("torch", "box"):
            finals = []
            for seed in args.seeds:
                losses = plateau_losses(optimizer, cnn, content, style, seed, args.evals)
                best = [min(losses[:k]) for k in checkpoints]
                finals.append(best[-1])
                rows.append({"pair": pair, "optimiser": optimizer,
                             "start": "content" if seed == 0 else f"content + noise (seed {seed})",
                             **{f"best after {k}": f"{b:.6f}" for k, b in zip(checkpoints, best)}})  # fmt: skip
            summary[f"{pair}, {optimizer}: median best after {checkpoints[-1]}"] = f"{median(finals):.6f}"
            summary[f"{pair}, {optimizer}: spread over {len(finals)} starts"] = (
                f"{max(finals) - min(finals):.2g}"
            )
    return {"rows": rows, "summary": summary}


def style_plateau_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", type=int, nargs="+", default=[3, 5], help="indices into the image pairs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="0: the content image itself")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--evals", type=int, default=300)
