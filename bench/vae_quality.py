"""VAE likelihood: importance-weighted NLL of the configs against the seed's plain-PyTorch VAE, and its recipe search."""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
import torch.nn.functional as F
import yaml

from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import ImageFolderDataModule
from bench.baselines.vae import SeedVAE, iw_nll, train_reference
from bench.common import MNIST_PNGS, ROOT

CONFIG = ROOT / "configs/vae/vae_mlp_mnist.yaml"


def mnist(root: str, batch_size: int = 128) -> ImageFolderDataModule:
    """The 8,000 / 2,000 split of every VAE case: dynamically binarised training images, held-out binarised once."""
    dm = ImageFolderDataModule(root=root, image_size=28, channels=1, binarize=True, val_fraction=0.2, seed=0,
                               batch_size=batch_size)  # fmt: skip
    dm.setup("fit")
    return dm


def held_out(dm) -> torch.Tensor:
    return torch.cat([(x + 1) / 2 for x, _ in dm.val_dataloader()]).view(-1, 784)  # (2000, 784) in {0, 1}


def train_framework(root: str, epochs: int, recipe: bool, extra: list[str], test: bool = True):
    """Fit ``CONFIG`` on the folder; returns ``(model, train seconds, test metrics or {})``.

    ``recipe``: the config as shipped, its KL warm-up (if any) scaled to the first 10 % of batches and its cosine
    schedule (if any) to the run; otherwise the seed's recipe: no warm-up, no schedule, no extra callbacks.
    """
    config = yaml.safe_load(CONFIG.read_text())
    model_args = config["model"]["init_args"]
    batch_size = config["data"]["init_args"]["batch_size"]
    batches = 8000 // batch_size
    args = [
        "--config", str(CONFIG),
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule",
        "--data.root", root, "--data.image_size", "28", "--data.channels", "1", "--data.binarize", "true",
        "--data.val_fraction", "0.2", "--data.batch_size", str(batch_size), "--data.seed", "0",
        "--trainer.max_epochs", str(epochs), "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", tempfile.mkdtemp(),
        "--model.init_args.test_importance_samples", "1000",
    ]  # fmt: skip
    if recipe:
        if model_args.get("warmup_batches", 0) > 0:
            args += ["--model.init_args.warmup_batches", str(epochs * batches // 10)]
        scheduler = model_args.get("lr_scheduler") or {}
        if scheduler.get("class_path", "").endswith("CosineAnnealingLR"):
            args += ["--model.init_args.lr_scheduler.init_args.T_max", str(epochs)]
    else:
        args += ["--model.init_args.warmup_batches", "0", "--model.init_args.lr_scheduler", "null",
                 "--model.init_args.train_importance_samples", "1", "--trainer.callbacks=[]",
                 "--data.batch_size", "128", "--model.init_args.optimizer.init_args.lr", "0.001"]  # fmt: skip
    cli = AigcCLI(args=args + extra, run=False)
    # decode the PNGs before the clock starts (the reference gets them decoded too)
    cli.datamodule.setup("fit")
    start = time.process_time()  # CPU time of this process (1 thread: its wall time on a quiet machine)
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.process_time() - start
    result = cli.trainer.test(cli.model, cli.datamodule, verbose=False)[0] if test else {}
    return cli.model, seconds, result


def vae_nll(args) -> dict:
    """VAE quality: importance-weighted NLL of the MLP config vs a plain-PyTorch VAE of the same size and budget.

        python -m bench vae_nll [--root MNIST_PNGS] [--epochs 20] [--k 1000]
            [--variant "CLI OVERRIDES" ...] [--variants_only] [--seed_recipe] [--reference_epochs N] [--seed S]

    Data: the 10,000 real MNIST test PNGs through ``ImageFolderDataModule(image_size=28, channels=1, binarize=True,
    val_fraction=0.2, seed=0)``: a seeded 8,000 images train (dynamically binarised every epoch), the other 2,000 are
    the held-out evaluation set (binarised once, seeded). Both models see the same loaders.

    - reference: the seed's 784-400-20 VAE in plain PyTorch (its bugs fixed: BCE-with-logits on [0, 1] targets,
      summed over pixels, + analytic KL), Adam 1e-3, batch 128, ``--epochs`` epochs.
    - framework: ``configs/vae/vae_mlp_mnist.yaml`` as shipped (its batch size, optimizer, objective), through the
      CLI's parser, with the data pointed at the folder and trained by ``Trainer.fit`` for the same epochs; a KL
      warm-up in the config (if any) is scaled to the first 10 % of batches and a cosine schedule (if any) to the run
      (``T_max`` = ``--epochs``, as a user sets it to ``max_epochs``).
    - equal seconds: the reference once more, trained until it has used the CPU time the as-shipped row's ``fit``
      took (process CPU time, ``time.process_time``: with one thread it equals wall time on a quiet machine and is
      not inflated by other jobs on a shared one).
    - ``--variant "ARGS"`` (repeatable): another row, the config as shipped plus these CLI overrides, e.g.
      ``--variant "--model.init_args.train_importance_samples 5"``; ``--variants_only`` skips the as-shipped row.
    - ``--reference_epochs N``: the reference once more, trained N epochs (compares at equal training time).
    - ``--seed S``: the training seed of every row (framework ``seed_everything``, the reference's torch seed); the
      split and the held-out binarisation stay fixed.
    - ``--seed_recipe``: also the same config with the seed's batch 128, Adam 1e-3, no warm-up, schedule, IWAE or
      extra callbacks (checks the framework itself: with the same seed it reproduces the reference's numbers).

    Every model is scored by one independent function here (``iw_nll``, same seeded noise) and the as-shipped
    framework model also by its own ``Trainer.test`` (``test/nll_iw``): the two should agree within Monte-Carlo noise.
    Prints a table (epochs, training CPU seconds, −ELBO and IW-NLL in nats per image, lower is better, and the NLL's
    difference to the reference) and the as-shipped config against the seed recipe at equal epochs and at equal CPU
    seconds, side by side.
    """
    torch.set_num_threads(args.threads)
    dm = mnist(args.root)  # the seed recipe's batch 128; the same split and held-out images as the config's
    xs = held_out(dm)
    rows, shipped, framework_test = [], None, None

    def row(model: str, encode, decode, seconds: float, epochs: float) -> dict:
        nelbo, nll = iw_nll(encode, decode, xs, args.k)
        rows.append({"model": model, "epochs": round(epochs, 1), "CPU s": round(seconds, 1), "−ELBO": round(nelbo, 2),
                     "IW-NLL": round(nll, 2)})  # fmt: skip
        return rows[-1]

    def reference(model: str, epochs: float, cpu_seconds: float | None = None) -> dict:
        torch.manual_seed(args.seed)
        net, seconds, done = train_reference(dm, epochs, cpu_seconds)
        return row(model, net.encode, net.decode, seconds, done)

    def framework(model: str, recipe: bool, extra: list[str], test: bool):
        m, seconds, result = train_framework(
            args.root, args.epochs, recipe, ["--seed_everything", str(args.seed)] + extra, test
        )
        encode, decode = lambda x: m.encode(x.view(-1, 1, 28, 28)), lambda z: m.decode(z).view(-1, 784)
        return row(model, encode, decode, seconds, args.epochs), result

    ref = reference("reference: plain PyTorch, seed recipe", args.epochs)
    if not args.variants_only:
        shipped, result = framework("framework: as shipped", True, args.framework_args.split(), True)
        framework_test = result["test/nll_iw"]
        equal_time = reference("reference: seed recipe, the config's CPU seconds", 0, shipped["CPU s"])
    if args.reference_epochs:
        reference(f"reference: seed recipe, {args.reference_epochs} epochs", args.reference_epochs)
    for variant in args.variant:
        framework(f"framework: {variant}", True, variant.split(), False)
    if args.seed_recipe:
        framework("framework: same config, seed recipe", False, [], False)
    for r in rows:
        r["Δ NLL"] = round(r["IW-NLL"] - ref["IW-NLL"], 2)
    note = f"MNIST PNGs: 8,000 train / 2,000 held-out, {args.epochs} epochs, k = {args.k}; CPU s = process CPU time"
    result = {"rows": rows, "notes": [note]}
    if shipped is not None:
        result["budgets"] = [
            {"budget": f"equal epochs ({args.epochs})", "config IW-NLL": shipped["IW-NLL"],
             "plain recipe IW-NLL": ref["IW-NLL"], "Δ (config − plain)": round(shipped["IW-NLL"] - ref["IW-NLL"], 2)},
            {"budget": f"equal CPU seconds ({shipped['CPU s']:.0f} s; plain: {equal_time['epochs']} epochs)",
             "config IW-NLL": shipped["IW-NLL"], "plain recipe IW-NLL": equal_time["IW-NLL"],
             "Δ (config − plain)": round(shipped["IW-NLL"] - equal_time["IW-NLL"], 2)},
        ]  # fmt: skip
        result["summary"] = {
            "as-shipped row's own Trainer.test: test/nll_iw (k = 1000, its own noise)": framework_test
        }
    return result


def vae_nll_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=MNIST_PNGS, help="the MNIST PNGs in class folders")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--k", type=int, default=1000, help="importance samples of the NLL bound")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--framework_args", default="", help="extra CLI overrides for the as-shipped row, one string"
    )
    p.add_argument("--variant", action="append", default=[], metavar="ARGS",
                   help="another framework row: the config as shipped plus these CLI overrides (repeatable)")  # fmt: skip
    p.add_argument(
        "--reference_epochs", type=int, default=None, help="also the reference trained this many epochs"
    )
    p.add_argument("--variants_only", action="store_true", help="skip the as-shipped row")
    p.add_argument("--seed_recipe", action="store_true", help="add the framework/seed-recipe row")
    p.add_argument("--seed", type=int, default=0, help="training seed of every row (the data split stays)")


def vae_sweep(args) -> dict:
    """The fast plain-PyTorch sweep that found ``vae_mlp_mnist.yaml``'s recipe: one variant per call, IW bound at k = 200.

    The seed's 784-400-20 VAE (``bench.baselines.vae.SeedVAE``) with the knobs swept: learning rate, per-step warm-up
    and decay (``--sched cos|lin|lin3|none``), Adam betas / eps / weight decay, batch size, decoder bias from the data
    (``--biasinit``), the encoder's learning-rate factor (``--enclr``), IWAE samples (``--k``), EMA, dropout, input
    centring, activation. Same data as ``vae_nll``. Reports the process CPU time of training and the held-out −ELBO
    and IW-NLL (k = ``--evalk``: cheaper than vae_nll's 1000 and a few tenths of a nat higher); ``--traineval`` adds
    the same on 2,000 training images.

        python -m bench vae_sweep --lr 1e-3                                                          # the seed recipe
        python -m bench vae_sweep --fused --biasinit --sched cos --lr 2e-2 --enclr 0.25 --warm 300 --b2 0.99  # the config's
    """
    torch.set_num_threads(1)
    dm = mnist(args.root)
    xtr = (dm.train_set.dataset.images[torch.tensor(dm.train_set.indices)].float() / 255).view(-1, 784)
    xva = held_out(dm)
    torch.manual_seed(args.seed)
    m = SeedVAE(args.act, args.center, args.indrop, args.hdrop)
    if args.lvbias is not None:
        m.fc22.bias.data.fill_(args.lvbias)
    if args.biasinit:
        p = xtr.mean(0).clamp(1e-3, 1 - 1e-3)
        m.fc4.bias.data.copy_(torch.log(p / (1 - p)))
    groups = [{"params": [*m.fc1.parameters(), *m.fc21.parameters(), *m.fc22.parameters()], "lr": args.lr * args.enclr},
              {"params": [*m.fc3.parameters(), *m.fc4.parameters()], "lr": args.lr}]  # fmt: skip
    kw = {
        "lr": args.lr,
        "betas": (args.b1, args.b2),
        "eps": args.eps,
        **({"fused": True} if args.fused else {}),
    }
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}[args.opt](
        groups, weight_decay=args.wd, **kw
    )
    per = len(xtr) // args.bs
    total = int(args.epochs * per)

    def lr_at(t: int) -> float:
        if t < args.warm:
            return (t + 1) / args.warm
        u = (t - args.warm) / max(1, total - args.warm)
        shape = {
            "none": 1.0,
            "cos": 0.5 * (1 + math.cos(math.pi * u)),
            "lin": 1 - u,
            "lin3": 1.0 if u < 2 / 3 else 1 - (u - 2 / 3) * 3,
        }[args.sched]  # lin3: flat, then the last third
        return 1.0 if args.sched == "none" else args.final + (1 - args.final) * shape

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema = None
    if args.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            m, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema)
        )
    start, t = time.process_time(), 0
    while t < total:
        perm = torch.randperm(len(xtr))
        for i in range(min(per, total - t)):
            x = torch.bernoulli(xtr[perm[i * args.bs : (i + 1) * args.bs]])
            mu, logvar = m.encode(x)
            logvar = logvar.clamp(-30, 20)
            std = torch.exp(0.5 * logvar)
            eps = torch.randn(args.k, *mu.shape)
            z = mu + std * eps  # (k, B, 20)
            logits = m.decode(z.view(-1, 20)).view(args.k, x.shape[0], 784)
            log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(
                -1
            )
            if args.k == 1:  # the ELBO with the analytic KL
                loss = (-log_px[0] + 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)).mean()
            else:  # the IWAE bound
                log_w = log_px - 0.5 * z.pow(2).sum(-1) + 0.5 * (eps.pow(2) + logvar).sum(-1)
                loss = -(torch.logsumexp(log_w, 0) - math.log(args.k)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            t += 1
            if ema is not None:
                ema.update_parameters(m)
    seconds = time.process_time() - start
    m.eval()
    row = {"train CPU s": round(seconds, 1)}
    row["−ELBO"], row[f"IW-NLL k={args.evalk}"] = iw_nll(m.encode, m.decode, xva, args.evalk)
    if args.traineval:
        xt = torch.bernoulli(xtr[:2000], generator=torch.Generator().manual_seed(1))
        row["train −ELBO"], row["train IW-NLL"] = iw_nll(m.encode, m.decode, xt, args.evalk)
    if ema is not None:
        row["EMA −ELBO"], row["EMA IW-NLL"] = iw_nll(ema.module.encode, ema.module.decode, xva, args.evalk)
    return {"rows": [row]}


def vae_sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=MNIST_PNGS, help="the MNIST PNGs in class folders")
    for name, kind, default in [("epochs", float, 20), ("bs", int, 128), ("lr", float, 1e-3), ("warm", int, 0),
                                ("final", float, 0.0), ("b1", float, 0.9), ("b2", float, 0.999), ("eps", float, 1e-8),
                                ("wd", float, 0.0), ("enclr", float, 1.0), ("ema", float, 0.0), ("k", int, 1),
                                ("evalk", int, 200), ("seed", int, 0), ("indrop", float, 0.0), ("hdrop", float, 0.0),
                                ("lvbias", float, None)]:  # fmt: skip
        p.add_argument(f"--{name}", type=kind, default=default)
    p.add_argument("--sched", default="none", choices=["none", "cos", "lin", "lin3"])
    p.add_argument("--opt", default="adam", choices=["adam", "adamw", "adamax"])
    p.add_argument("--act", default="relu")
    for flag in ("biasinit", "fused", "center", "traineval"):
        p.add_argument(f"--{flag}", action="store_true")
