"""Exact resume: an end-of-epoch ``last.ckpt`` continues the run bit for bit (weights, EMA, optimizer and LR
schedule states, counters, RNG states), and the RNG states round-trip through a checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from aigc_lightning.callbacks.resume import RNGState
from aigc_lightning.cli import main
from reliability_toy import toy_fit_args


def last_ckpt(root: Path, version: int) -> Path:
    return root / "lightning_logs" / f"version_{version}" / "checkpoints" / "last.ckpt"


def draws() -> tuple:
    return torch.rand(3), np.random.rand(3), random.random(), torch.randn(2)


def test_rng_state_round_trips_through_a_checkpoint_file(tmp_path):
    callback = RNGState()
    torch.save(callback.state_dict(), tmp_path / "rng.pt")
    first = draws()
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))  # the CLI loads weights_only
    again = draws()
    assert torch.equal(first[0], again[0]) and torch.equal(first[3], again[3])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]
    assert not torch.equal(draws()[0], first[0])  # and the generators move on from there


def compare(a, b, path: str = "") -> list[str]:
    """Paths where two checkpoint trees differ: every tensor bit for bit, every number exactly; strings (file
    paths of the two runs) are skipped."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [path]
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return [path + " (keys)"]
        return [d for k in a for d in compare(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [path + " (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in compare(x, y, f"{path}[{i}]")]
    if isinstance(a, str) or a is None:
        return []
    return [] if a == b else [path]


def resumed_run(tmp_path: Path, strip_rng: bool = False) -> tuple[dict, dict]:
    """(uninterrupted 3-epoch checkpoint, 1 epoch + resumed to 3 epochs checkpoint)."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    main(toy_fit_args(whole, 3))
    main(toy_fit_args(parts, 1))
    ckpt = last_ckpt(parts, 0)
    if strip_rng:
        state = torch.load(ckpt, weights_only=False)
        del state["callbacks"]["RNGState"]
        torch.save(state, ckpt)
    main(toy_fit_args(parts, 3, 4, "--ckpt_path", str(ckpt)))
    return torch.load(last_ckpt(whole, 0), weights_only=False), torch.load(
        last_ckpt(parts, 1), weights_only=False
    )


def test_end_of_epoch_resume_is_bit_for_bit(tmp_path):
    a, b = resumed_run(tmp_path)
    assert a["global_step"] == b["global_step"] == 3 * 4 * 2  # two optimizer steps per batch
    assert a["epoch"] == b["epoch"] == 2
    checked = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks")
    differences = [d for key in checked for d in compare(a[key], b[key], key)]
    assert differences == []
    assert int(b["state_dict"]["batches"]) == 12  # the module's own counter came back too
    assert len(b["callbacks"]["RNGState"]["ranks"]) == 1


@pytest.mark.slow
def test_resume_without_rng_states_is_not_exact(tmp_path):
    # negative control for the test above: it can tell the difference (shuffle, dropout, noise change)
    a, b = resumed_run(tmp_path, strip_rng=True)
    assert compare(a["state_dict"], b["state_dict"], "state_dict") != []


def test_ckpt_path_last_resumes_the_newest_run_not_from_scratch(tmp_path):
    main(toy_fit_args(tmp_path, 1))
    main(toy_fit_args(tmp_path, 2, 2))  # version_1, the newest last.ckpt: two epochs of two batches
    main(toy_fit_args(tmp_path, 3, 4, "--ckpt_path", "last"))  # Lightning alone looks only in version_2
    final = torch.load(last_ckpt(tmp_path, 2), weights_only=True)
    assert int(final["state_dict"]["batches"]) == 2 * 2 + 4  # went on from version_1 (from scratch: 12)
    assert final["global_step"] == 2 * (2 * 2 + 4)


def test_ckpt_path_last_with_no_earlier_run_starts_from_scratch(tmp_path):
    main(toy_fit_args(tmp_path, 1, 4, "--ckpt_path", "last"))
    assert torch.load(last_ckpt(tmp_path, 0), weights_only=True)["global_step"] == 4 * 2


@pytest.mark.parametrize("url", ["https://example.invalid/x.ckpt", "s3://bucket/last.ckpt"])
def test_remote_ckpt_path_is_refused_in_one_line(tmp_path, url):
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 1, 4, "--ckpt_path", url))
    message = str(stop.value.code)
    assert message.startswith(f"error: --ckpt_path {url} is a remote URL") and "download it yourself" in message
    assert "\n" not in message and not (tmp_path / "lightning_logs").exists()  # refused before any work


def test_file_url_names_the_local_path(tmp_path):
    main(toy_fit_args(tmp_path, 1))
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 2, 4, "--ckpt_path", last_ckpt(tmp_path, 0).as_uri()))
    assert str(stop.value.code) == (
        f"error: --ckpt_path {last_ckpt(tmp_path, 0).as_uri()} is a URL; pass the local path instead: "
        f"--ckpt_path {last_ckpt(tmp_path, 0)}"
    )
