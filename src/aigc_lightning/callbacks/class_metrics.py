"""Class accuracy of a conditional generator: does "draw me a 7" give a 7? (``val/class_acc`` next to FID).

``ClassAccuracy`` generates ``num_samples`` images with ``pl_module.sample(n, seed, labels)`` (image i of class
i mod num_classes) and logs the share a classifier assigns to the requested class, averaged over classes
(``val/class_acc``), with the worst class (``val/class_acc_min``). The classifier is the packaged digits one (digits
and MNIST-sized data, classes "0" … "9" in that order) or any ``Classifier`` checkpoint or exported ``.pt`` the
user names, read as tensors only (``nets.features.load_classifier``); its class k must be the model's class k.
"""

from __future__ import annotations

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from aigc_lightning.callbacks.metrics import rank_slice
from aigc_lightning.errors import UserError
from aigc_lightning.nets.features import DomainFeatures


def class_accuracy(
    classifier: DomainFeatures, images01: Tensor, labels: Tensor, num_classes: int
) -> tuple[Tensor, Tensor]:
    """Per class: (hits, count), each (num_classes,), of ``classifier``'s argmax on images in [0, 1]."""
    predicted = classifier(images01)[1].argmax(1)
    hits = torch.bincount(labels[predicted == labels], minlength=num_classes)
    return hits, torch.bincount(labels, minlength=num_classes)


class ClassAccuracy(Callback):
    """Logs ``val/class_acc`` (mean over classes) and ``val/class_acc_min`` of a conditional model's samples.

    Runs with the validations of every ``every_n_epochs``-th epoch of ``fit`` and in ``validate``, under a forked,
    seeded RNG (training's random stream is unchanged); under DDP each rank makes a slice of the samples and the
    counts are summed. A model without classes (``num_classes`` 0) is refused at setup.

    Args:
        every_n_epochs: compute at the validations of epochs N-1, 2N-1, … (zero-based), as ``GenerativeMetrics``.
        num_samples: generated images per evaluation, over all ranks (image i of class i mod num_classes).
        classifier: ``None`` for the packaged digits classifier, or a ``Classifier`` ``.ckpt`` / exported ``.pt``.
        seed: seed of sample 0 (sample i from seed + i).
        batch_size: images generated per call.
    """

    def __init__(
        self,
        every_n_epochs: PositiveInt = 1,
        num_samples: PositiveInt = 500,
        classifier: str | None = None,
        seed: int = 0,
        batch_size: PositiveInt = 100,
    ) -> None:
        self.every_n_epochs, self.num_samples, self.seed = every_n_epochs, num_samples, seed
        self.classifier_path, self.batch_size = classifier, batch_size
        self.classifier: DomainFeatures | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        classes = getattr(pl_module, "num_classes", 0)
        if not classes or not hasattr(pl_module, "sample"):
            raise UserError(
                f"ClassAccuracy needs a class-conditional model with sample(n, seed, labels); "
                f"{type(pl_module).__name__} has no classes: set --model.conditional true or drop the callback"
            )
        if self.classifier is None:
            self.classifier = DomainFeatures(self.classifier_path)
        if self.classifier.num_classes != classes:
            raise UserError(
                f"the ClassAccuracy classifier knows {self.classifier.num_classes} classes, the model {classes}; "
                "pass a classifier of the model's classes (init_args.classifier)"
            )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        fitting = trainer.state.fn == "fit"
        if trainer.sanity_checking or (fitting and (trainer.current_epoch + 1) % self.every_n_epochs):
            return
        classes, device = pl_module.num_classes, pl_module.device
        first, last = rank_slice(self.num_samples, trainer.global_rank, trainer.world_size)
        hits = torch.zeros(classes, dtype=torch.long, device=device)
        count = torch.zeros_like(hits)
        classifier = self.classifier.to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(self.seed)
            for start in range(first, last, self.batch_size):
                n = min(self.batch_size, last - start)
                labels = torch.arange(start, start + n, device=device) % classes
                images = pl_module.sample(n, seed=self.seed + start, labels=labels).to(device)
                h, c = class_accuracy(classifier, images, labels, classes)
                hits, count = hits + h, count + c
        hits = trainer.strategy.reduce(hits, reduce_op="sum")
        count = trainer.strategy.reduce(count, reduce_op="sum")
        per_class = hits.float() / count.clamp(min=1).float()  # (classes,)
        seen = count > 0
        pl_module.log("val/class_acc", per_class[seen].mean(), sync_dist=True)  # equal on every rank (summed)
        pl_module.log("val/class_acc_min", per_class[seen].min(), sync_dist=True)


__all__ = ["ClassAccuracy", "class_accuracy"]
