"""The metric card of a ``test`` run: ``GenerativeMetrics`` hands its test hooks to ``TestEvaluation``.

``python -m aigc_lightning test --config RUN/config.yaml --ckpt_path CKPT`` on a model with ``sample(n, seed=...)``
and a ``GenerativeMetrics`` callback:

1. every test batch (x in [-1, 1]) is scored as a real image (8-bit, the card's resize, the callback's extractor);
2. ``test_num_samples`` images come from ``sample`` — rank r makes a contiguous slice of the seeds, so the set is
   the same for any number of devices — and StyleGAN generators also get their perceptual path length;
3. features are gathered from every rank, every rank computes the same values (seeded), they are logged as
   ``test/fid``, ``test/kid``, … and rank 0 prints the table and writes the card (``metrics.json`` in the run's
   log folder unless ``card_path`` names another file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from aigc_lightning.errors import UserError
from aigc_lightning.evaluation.card import (
    Reference,
    Settings,
    describe_set,
    format_table,
    make_card,
    score,
    write_card,
)
from aigc_lightning.evaluation.extract import Extractor, ResizeMode, features_of, quantize
from aigc_lightning.evaluation.metrics import bootstrap_mean
from aigc_lightning.evaluation.ppl import path_lengths, ppl_value, supports_ppl
from aigc_lightning.pixels import to_unit


def gather_rows(trainer: Trainer, x: Tensor) -> Tensor:
    """Rows of ``x`` from every rank, rank 0's first (ranks may hold different numbers of rows)."""
    if trainer.world_size == 1:
        return x
    counts = trainer.strategy.all_gather(torch.tensor([len(x)], device=x.device)).flatten().tolist()
    padded = torch.zeros(max(counts), *x.shape[1:], dtype=x.dtype, device=x.device)
    padded[: len(x)] = x
    rows = trainer.strategy.all_gather(padded)  # (world, max, ...)
    return torch.cat([rows[r, :n] for r, n in enumerate(counts)])


def image_digests(x01: Tensor) -> Tensor:
    """A 63-bit digest of each 8-bit image (N,): the reference hash is over the sorted digests, so it does not
    depend on how the test set was split across ranks."""
    pixels = (x01 * 255).round().to(torch.uint8).cpu()
    return torch.tensor(
        [int.from_bytes(hashlib.sha256(p.numpy().tobytes()).digest()[:8], "big") >> 1 for p in pixels]
    )


class TestEvaluation:
    """Collects a test run's real features, generates and scores samples, writes the card (see module doc)."""

    def __init__(
        self,
        extractor: Extractor,
        mode: ResizeMode,
        num_samples: int,
        batch_size: int,
        settings: Settings,
        ppl_samples: int,
        card_path: str | None,
    ) -> None:
        self.extractor, self.mode, self.num_samples, self.batch_size = (
            extractor,
            mode,
            num_samples,
            batch_size,
        )
        self.settings, self.ppl_samples, self.card_path = settings, ppl_samples, card_path
        self.real: list[Tensor] = []
        self.digests: list[Tensor] = []
        self.real_size: tuple[int, int] | None = None
        self.card: dict | None = None

    def start(self) -> None:
        self.real, self.digests, self.real_size, self.card = [], [], None, None

    def add_real(self, batch) -> None:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch  # (B, C, H, W) in [-1, 1]
        x01 = quantize(to_unit(x))
        self.real.append(features_of(x01, self.extractor, self.mode)[0])
        self.digests.append(image_digests(x01))
        self.real_size = tuple(x.shape[-2:])

    def generated(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """This rank's slice of the samples: features, logits and image size."""
        from aigc_lightning.callbacks.metrics import rank_slice

        first, last = rank_slice(self.num_samples, trainer.global_rank, trainer.world_size)
        feats, logits, size = [], [], None
        for i in range(first, last, self.batch_size):
            x01 = quantize(pl_module.sample(min(self.batch_size, last - i), seed=self.settings.seed + i))
            f, lg = features_of(x01.to(pl_module.device), self.extractor, self.mode)
            feats.append(f)
            logits.append(lg)
            size = tuple(x01.shape[-2:])
        d, k = self.extractor.num_features, self.extractor.net.num_classes
        empty = pl_module.device
        f = torch.cat(feats) if feats else torch.empty(0, d, device=empty)
        lg = torch.cat(logits) if logits else torch.empty(0, k, device=empty)
        return f, lg, size or (0, 0)

    def finish(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        device = pl_module.device
        d = self.extractor.num_features
        real_local = torch.cat(self.real) if self.real else torch.empty(0, d, device=device)
        real = gather_rows(trainer, real_local)
        digests = gather_rows(
            trainer,
            torch.cat(self.digests).to(device)
            if self.digests
            else torch.empty(0, dtype=torch.long, device=device),
        )
        # one order whatever the sharding (by image digest): KID's subsets pick the same images on 1 or 8 devices
        order = digests.argsort(stable=True)
        real, digests = real[order], digests[order]
        if len(real) < 2:
            raise UserError(
                f"the test run saw {len(real)} real image(s); the metric card needs the test (or validation) split "
                "of the data: give the data one (e.g. --data.val_fraction 0.1)"
            )
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.settings.seed)
            fake_local, logits_local, size = self.generated(trainer, pl_module)
        fake, logits = gather_rows(trainer, fake_local), gather_rows(trainer, logits_local)
        if trainer.world_size == 1 and size != self.real_size:
            raise UserError(
                f"the model samples {size[1]}x{size[0]} px but the test images are "
                f"{self.real_size[1]}x{self.real_size[0]} px; set --data.image_size to the model's size"
            )
        values = score(Reference.of_features(real, {}), fake, logits, self.settings)
        generator = getattr(pl_module, "generator_ema", None)
        if self.ppl_samples > 0 and supports_ppl(generator):
            from aigc_lightning.callbacks.metrics import rank_slice

            first, last = rank_slice(self.ppl_samples, trainer.global_rank, trainer.world_size)
            lengths = path_lengths(generator, self.extractor, self.mode, first, last, seed=self.settings.seed)
            lengths = gather_rows(trainer, lengths.to(device)).cpu()
            value, kept = ppl_value(lengths)
            values["ppl"] = {"value": value, "ci95": bootstrap_mean(kept, 1000, self.settings.seed),
                             "ci_method": "bootstrap of the filtered path lengths, 1000 resamples",
                             "space": "w", "sampling": "end", "epsilon": 1e-4, "distance": "squared L2 of the features",
                             "num_samples": self.ppl_samples}  # fmt: skip
        set_hash = hashlib.sha256(digests.cpu().numpy().tobytes()).hexdigest()
        datamodule = trainer.datamodule
        source = f"{type(datamodule).__name__ if datamodule else 'test'} test split" + (
            f" ({datamodule.root})" if getattr(datamodule, "root", None) else "")  # fmt: skip
        checkpoint = getattr(trainer, "ckpt_path", None)
        self.card = make_card(
            values,
            describe_set(
                f"{type(pl_module).__name__}.sample(n, seed={self.settings.seed} + i)",
                len(fake),
                size,
                None,
                checkpoint=str(checkpoint) if checkpoint else None,
            ),
            describe_set(source, len(real), self.real_size or (0, 0), set_hash, split="test"),
            self.extractor,
            self.mode,
            self.settings,
            device,
        )
        # trainer.log_dir broadcasts from rank 0: every rank reads it
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            path = Path(self.card_path) if self.card_path else folder / "metrics.json"
            write_card(self.card, path)
            print(format_table(self.card))
            print(f"metric card: {path}")
        return {f"test/{name}": entry["value"] for name, entry in values.items()}


__all__ = ["TestEvaluation", "gather_rows", "image_digests"]
