"""GAN ``lr_scheduler`` (``schedules.LinearDecay``): both learning rates anneal over the last fraction of the run, one
scheduler step per batch, and a resumed run continues it."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from aigc_lightning.callbacks.resume import RNGState
from aigc_lightning.errors import UserError
from aigc_lightning.gan_regularizers import R1
from aigc_lightning.schedules import LinearDecay, build_scheduler
from conftest import flat, gan_trainer
from test_gan import loader, tiny_gan


def linear_decay_factor(batch: int, total: int, fraction: float) -> float:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return LinearDecay(optimizer, fraction, total_steps=total).factor(batch)


class RecordLR(Callback):
    """The lr of every optimizer during each batch: one row (lr_g, lr_d) per batch."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, ...]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rows.append(tuple(opt.param_groups[0]["lr"] for opt in trainer.optimizers))


class StopAfterFirstEpoch(Callback):  # an interruption that keeps the run's configured length
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_linear_decay_factor():
    assert [linear_decay_factor(b, 8, 0.5) for b in range(8)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert [linear_decay_factor(b, 4, 1.0) for b in range(4)] == [1, 0.75, 0.5, 0.25]
    assert all(linear_decay_factor(b, 8, 0.0) == 1 for b in range(8))


def test_build_scheduler_fills_in_only_an_unset_total():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert build_scheduler(partial(LinearDecay, fraction=0.5), opt, lambda: 8).total_steps == 8
    assert build_scheduler(partial(LinearDecay, fraction=0.5, total_steps=4), opt, lambda: 8).total_steps == 4
    cosine = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=3)  # no total_steps: left alone
    assert build_scheduler(cosine, opt, lambda: 1 / 0).T_max == 3
    with pytest.raises(UserError, match="total_steps"):
        LinearDecay(opt, 0.5)


@pytest.mark.parametrize(
    ("n_critic", "bounds"),
    [(1, {"max_steps": 16, "max_epochs": -1}), (2, {"max_steps": 24, "max_epochs": -1}),
     (1, {"max_steps": -1, "max_epochs": 2}), (1, {"max_steps": 1000, "max_epochs": 2})],
)  # fmt: skip
def test_lr_decays_over_the_last_fraction_of_the_run(n_critic, bounds):
    # 8 batches (4 per epoch) whichever bound ends the run; optimizer steps are n_critic + 1 per batch
    model = tiny_gan(lr_scheduler=partial(LinearDecay, fraction=0.5), n_critic=n_critic, optimizer_g=lambda p: torch.optim.Adam(p, lr=1e-3),
                     optimizer_d=lambda p: torch.optim.Adam(p, lr=4e-3))  # fmt: skip
    record = RecordLR()
    gan_trainer(8, callbacks=[record], **bounds).fit(model, loader())
    assert model.batches == 8
    factors = [linear_decay_factor(b, 8, 0.5) for b in range(8)]
    assert factors[-1] < factors[4] == 1
    torch.testing.assert_close(torch.tensor(record.rows), torch.tensor(factors)[:, None] * torch.tensor([1e-3, 4e-3]))


def test_unbounded_run_with_lr_decay_is_a_user_error():
    with pytest.raises(UserError, match="lr_scheduler needs a run of known length"):
        gan_trainer(1, max_steps=-1, max_epochs=-1).fit(tiny_gan(lr_scheduler=partial(LinearDecay, fraction=0.5)), loader())


def test_resume_continues_the_decay_bit_for_bit(tmp_path):
    def fit(folder, *callbacks, ckpt_path=None):
        model = tiny_gan(lr_scheduler=partial(LinearDecay, fraction=0.75), r1=R1(1.0, every=2))
        save = ModelCheckpoint(dirpath=tmp_path / folder, save_last=True)
        t = gan_trainer(8, max_steps=-1, max_epochs=2, enable_checkpointing=True, callbacks=[RNGState(), save, *callbacks])
        t.fit(model, loader(), ckpt_path=ckpt_path, weights_only=False)  # hparams hold the nets
        return model, t

    whole, t_whole = fit("whole")
    fit("parts", StopAfterFirstEpoch())
    resumed, t_resumed = fit("resumed", ckpt_path=tmp_path / "parts" / "last.ckpt")
    assert resumed.batches == whole.batches == 8
    assert torch.equal(flat(resumed.generator), flat(whole.generator))
    assert torch.equal(flat(resumed.discriminator), flat(whole.discriminator))
    for a, b in zip(t_whole.optimizers, t_resumed.optimizers):
        assert a.param_groups[0]["lr"] == b.param_groups[0]["lr"] < b.param_groups[0]["initial_lr"] / 4


def test_build_scheduler_fills_total_steps_of_a_command_line_factory_only_when_unset():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.cli import LRSchedulerCallable

    from aigc_lightning.schedules import build_scheduler

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--s", type=LRSchedulerCallable)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    for options, total in (([], 10), (["--s.total_steps", "4"], 4)):
        config = parser.parse_args(["--s", "aigc_lightning.schedules.WarmupCosine", "--s.warmup_steps", "2", *options])
        factory = parser.instantiate_classes(config).s  # what LightningCLI hands the module
        assert build_scheduler(factory, optimizer, lambda: 10).total_steps == total
