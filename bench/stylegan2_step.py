"""StyleGAN2 training speed on the CPU against rosinality/stylegan2-pytorch's own ``train()`` on the same config."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from bench.common import lightning_quiet, load_average, median
from bench.stylegan2_parity import import_their_model


def import_their_narrow_model(rosinality_dir: Path, channel_max: int, tmp: Path) -> types.ModuleType:
    """Their ``model.py`` with the 512 entries of both channel tables (4 to 32 px) set to ``channel_max``: the only
    edit, made in memory in a temporary copy next to a link to their ``op``; 512 keeps their file as it is."""
    source = (rosinality_dir / "model.py").read_text()
    narrow = tmp / "rosinality_narrow"
    narrow.mkdir(exist_ok=True)
    (narrow / "model.py").write_text(re.sub(r"(\b(?:4|8|16|32)): 512,", rf"\1: {channel_max},", source))
    if not (narrow / "op").exists():
        (narrow / "op").symlink_to(rosinality_dir / "op")
    return import_their_model(narrow, "theirs", tmp)


def import_their_train(rosinality_dir: Path) -> types.ModuleType:
    """Their ``train.py`` as a module (after ``import_their_model``: their ``op`` is loaded); ``dataset`` (LMDB) is
    replaced by an empty module, as no dataset file is read."""
    sys.modules["dataset"] = types.SimpleNamespace(MultiResolutionDataset=None)
    sys.path.insert(0, str(rosinality_dir))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("rosinality_train", rosinality_dir / "train.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(rosinality_dir))
        del sys.modules["dataset"]
    return module


def their_run(train, model, args, batches: list[torch.Tensor]):
    """Their nets and optimizers as their ``train.py`` builds them (lazy-regularisation ratios included), and a
    function running their ``train()`` over ``len(batches)`` iterations."""
    size, batch, latent, cm = args.size, args.batch_size, args.latent_dim, args.channel_multiplier
    g = model.Generator(size, latent, 8, channel_multiplier=cm)
    d = model.Discriminator(size, channel_multiplier=cm)
    g_ema = model.Generator(size, latent, 8, channel_multiplier=cm).eval()
    train.accumulate(g_ema, g, 0)
    g_ratio, d_ratio = 4 / 5, 16 / 17
    g_optim = torch.optim.Adam(g.parameters(), lr=0.002 * g_ratio, betas=(0.0, 0.99**g_ratio))
    d_optim = torch.optim.Adam(d.parameters(), lr=0.002 * d_ratio, betas=(0.0, 0.99**d_ratio))
    # train.py's defaults: r1 10 every 16, path length 2 every 4 (batch shrink 2), mixing 0.9; start_iter 1 keeps
    # the i = 0 sample grid and checkpoint out; iterations 1..16 hold one R1 and four path-length steps
    options = argparse.Namespace(iter=len(batches), start_iter=1, batch=batch, latent=latent, mixing=0.9, augment=False,
                                 augment_p=0, d_reg_every=16, g_reg_every=4, r1=10.0, path_regularize=2.0,
                                 path_batch_shrink=2, n_sample=1, distributed=False, wandb=False)  # fmt: skip

    def run() -> None:
        train.train(options, batches, g, d, g_optim, d_optim, g_ema, "cpu")

    return run


def our_run(args, batches: list[torch.Tensor]):
    """The GAN module with StyleGAN2 nets of the same widths and the same recipe, run by ``Trainer.fit`` over the
    batches; returns a function giving the wall seconds from the first batch's start to the last batch's end."""
    from aigc_lightning.gan_latents import StyleLatents
    from aigc_lightning.gan_regularizers import R1, PathLength
    from aigc_lightning.modules import GAN
    from aigc_lightning.nets import StyleGAN2Discriminator, StyleGAN2Generator
    from bench.overhead import BatchTimer, cpu_trainer

    size, cm = args.size, args.channel_multiplier
    adam = lambda params: torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))
    g = StyleGAN2Generator(size, 3, args.latent_dim, 8, cm, channel_max=args.channel_max)
    gan = GAN(g, StyleGAN2Discriminator(size, 3, cm, channel_max=args.channel_max), adam, adam,
              latents=StyleLatents(mixing_prob=0.9), r1=R1(10.0, 16, lazy_correction=True),
              path_length=PathLength(2.0, 4, batch_shrink=2, lazy_correction=True),
              ema_decay=0.5 ** (32 / 10_000), mean_latent_samples=64)  # fmt: skip
    x = torch.cat(batches)
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=len(batches[0]))

    def run() -> float:
        timer = BatchTimer(0)
        cpu_trainer(timer).fit(gan, loader)
        return timer.end - timer.start

    return run


def stylegan2_vs_rosinality(args) -> dict:
    """StyleGAN2 G+D training on the CPU: ours (GAN module + ``Trainer.fit``) against rosinality's ``train()``.

    Same config on both sides: their defaults (8 mapping layers, channel multiplier 2, style mixing 0.9,
    R1 γ = 10 every 16 D steps, path length 2 every 4 G steps with batch shrink 2, EMA each step), at ``--size`` px,
    batch ``--batch_size``, latent ``--latent_dim``, widths capped at ``--channel_max`` (their channel table's 512
    entries replaced in a temporary copy of their ``model.py``: the full 512-wide nets take minutes per batch on a
    shared CPU; ``--channel_max 512 --latent_dim 512`` runs their file unedited), random images. One round = 16 batches on each side (one R1 and four path-length steps
    each), the two sides taking turns; the first round is warm-up. Their ``op`` package runs its CPU code paths
    (``upfirdn2d_native``, the CPU branch of ``fused_leaky_relu``: the compiler is stubbed as in ``parity``).
    Our time excludes Trainer set-up (first batch start to last batch end); theirs is the whole ``train()`` call.

        git clone https://github.com/rosinality/stylegan2-pytorch /tmp/rosinality
        OMP_NUM_THREADS=1 python -m bench stylegan2_vs_rosinality --rosinality_dir /tmp/rosinality
    """
    lightning_quiet()
    torch.set_num_threads(args.threads)
    root = args.rosinality_dir.resolve()
    if not (root / "model.py").is_file():
        sys.exit(f"{root}/model.py not found; pass --rosinality_dir of a stylegan2-pytorch checkout")
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(args.batch_size, 3, args.size, args.size, generator=gen) * 2 - 1 for _ in range(16)]
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        if args.channel_max == 512:
            model = import_their_model(root, "theirs", Path(tmp))
        else:
            model = import_their_narrow_model(root, args.channel_max, Path(tmp))
        train = import_their_train(root)
        torch.manual_seed(0)
        theirs, ours = their_run(train, model, args, batches), our_run(args, batches)
        times: dict[str, list[float]] = {"ours": [], "rosinality": []}
        os.chdir(tmp)  # their train() writes sample/ and checkpoint/ files only at i % 100 == 0; none here
        try:
            for r in range(args.rounds + 1):
                t = ours()
                start = time.perf_counter()
                theirs()
                t_theirs = time.perf_counter() - start
                if r:
                    times["ours"].append(t)
                    times["rosinality"].append(t_theirs)
                print(f"round {r}: ours {t:.2f} s, rosinality {t_theirs:.2f} s", flush=True)
        finally:
            os.chdir(cwd)
    n = 16 * args.batch_size
    ratios = [b / a for a, b in zip(times["ours"], times["rosinality"])]
    rows = [{"implementation": name, "px": args.size, "batch": args.batch_size, "s per 16 batches (median)":
             round(median(ts), 2), "img/s": round(n / median(ts), 2), "rounds": len(ts)}
            for name, ts in times.items()]  # fmt: skip
    return {"rows": rows, "summary": {"speed ratio ours/rosinality (median of per-round ratios)":
                                      round(median(ratios), 3), "per-round ratios": [round(r, 3) for r in ratios]},
            "notes": [f"{args.threads} torch thread(s); load average {load_average()} on a shared machine: compare "
                      + "within a round", f"their checkout: {root}"]}  # fmt: skip


def stylegan2_vs_rosinality_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rosinality_dir", type=Path, required=True, help="a checkout of stylegan2-pytorch")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--channel_multiplier", type=int, default=2)
    p.add_argument("--channel_max", type=int, default=64, help="widest layer (512 = their file unedited)")
    p.add_argument("--latent_dim", type=int, default=128, help="z and w width (their style_dim)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
