"""One variant of ``configs/gan/dcgan_mnist.yaml`` on real MNIST digits: the FID of its EMA and raw generators.

    python bench/gan_sweep.py [--batches 1500] [--extractor mnist28_classifier.pt] -- [CLI options of the variant]
    python bench/gan_sweep.py -- --model.init_args.loss hinge
    python bench/gan_sweep.py -- --seed_everything 1 --model.init_args.r1_gamma 0

Same data, width 32, batch 64, extractor and 2,000 scored samples as ``bench/gan_fid.py`` (so its numbers compare
with that bench's rows); the options after ``--`` go to the CLI after the config, so they override it. The
extractor is trained once (``configs/classifier/digits.yaml``'s classifier, 3 epochs, seed 0) and cached at
``--extractor``. This is how the learning rate and R1 of ``dcgan_mnist.yaml`` were chosen; the README lists the
variants tried. Last line: ``variant: EMA FID X, raw FID Y``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from aigc_lightning.callbacks import evaluate_images
from aigc_lightning.nets import DomainFeatures

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gan_fid  # the bench next to this one: data, extractor, training and sampling helpers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(gan_fid.REPO.parent / "shared/data/mnist_t10k_png"))
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--num_samples", type=int, default=2000)
    parser.add_argument("--extractor", default="mnist28_classifier.pt", help="cached here after the first run")
    parser.add_argument("cli_args", nargs="*", help="options of the variant, after --")
    args = parser.parse_args()

    torch.set_num_threads(1)
    dm = gan_fid.data(args.root)
    held_out = (gan_fid.stack(dm.val_dataloader()) + 1) / 2  # (2000, 1, 28, 28) in [0, 1]
    with tempfile.TemporaryDirectory() as folder:
        if not Path(args.extractor).is_file():
            path, acc = gan_fid.train_extractor(dm, 3, folder)
            shutil.copy(path, args.extractor)
            print(f"extractor held-out accuracy {acc:.4f}, saved to {args.extractor}")
        feature = DomainFeatures(args.extractor)
        gan, seconds = gan_fid.train_framework(args.root, args.batches, args.width, folder, args.cli_args)
        ema = evaluate_images(held_out, gan.sample(args.num_samples, seed=0), feature=feature)
        raw = evaluate_images(held_out, gan_fid.plain_samples(gan.generator, args.num_samples), feature=feature)
    print("| generator | train s | FID | KID | IS |")
    print("|---|---|---|---|---|")
    for name, m in (("EMA", ema), ("raw", raw)):
        print(f"| {name} | {seconds:.0f} | {m['fid']:.2f} | {m['kid']:.3f} | {m['is']:.2f} |")
    print(f"{' '.join(args.cli_args) or 'as configured'}: EMA FID {ema['fid']:.2f}, raw FID {raw['fid']:.2f}")


if __name__ == "__main__":
    main()
