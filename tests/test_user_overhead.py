"""``python -m bench user_overhead``: the plain StyleGAN2 and style-network scripts (bench/baselines/) train and
save, and the case hands both sides the same inputs and epochs."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from conftest import ROOT

pytest.importorskip("skimage.data")


def bench_module(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # the bench package lives at the repository root
    return importlib.import_module(f"bench.{name}")


def run_main(module, monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["script", *args])
    module.main()


def changed(initial: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(initial[k], trained[k]) for k in initial if initial[k].is_floating_point())


def test_commands_give_both_sides_the_same_inputs_and_epochs(monkeypatch, tmp_path):
    bench = bench_module("user_overhead", monkeypatch)
    framework, plain = bench.commands("stylenet", 2, tmp_path)
    content = framework[framework.index("--data.content") + 1]
    assert plain[plain.index("--content") + 1] == content
    assert framework[framework.index("--data.style") + 1] == plain[plain.index("--style") + 1]
    assert len(list((tmp_path / "photos").glob("*.png"))) == len(bench.PHOTOS)
    assert framework[framework.index("--trainer.max_epochs") + 1] == plain[plain.index("--epochs") + 1] == "2"
    framework, plain = bench.commands("sg2", None, tmp_path)  # the config's epochs: nothing overridden
    assert "--trainer.max_epochs" not in framework and "--epochs" not in plain
    assert framework[framework.index("--config") + 1].endswith("configs/gan/stylegan2_digits.yaml")
    assert plain[plain.index("-m") + 1] == "bench.baselines.stylegan2"  # run from the repository root


def test_plain_stylegan2_trains_with_the_configs_regulariser_cadence(monkeypatch, tmp_path, capsys):
    script = bench_module("baselines.stylegan2", monkeypatch)
    out = tmp_path / "sg2.pt"
    run_main(script, monkeypatch, "--epochs", "1", "--max_batches", "0", "--out", str(out))
    initial = torch.load(out)["g"]  # the script's G as initialised: what training must change
    run_main(script, monkeypatch, "--epochs", "1", "--max_batches", "5", "--out", str(out))
    # R1 on D steps 0 (every 16th), path length on batches 0 and 4 (every 4th): the module's schedule
    assert "5 batches, 5 D steps, 1 R1, 2 path length" in capsys.readouterr().out
    saved = torch.load(out)
    assert changed(initial, saved["g"]) and changed(initial, saved["g_ema"])
    assert saved["pl_mean"] > 0  # the path-length mean moved off 0
    assert all(torch.isfinite(v).all() for v in saved["g"].values())


def test_plain_style_network_trains_on_the_benchs_inputs(monkeypatch, tmp_path, capsys):
    inputs = bench_module("user_overhead", monkeypatch).write_inputs(tmp_path)
    script = bench_module("baselines.style_network", monkeypatch)
    out = tmp_path / "style.pt"
    args = ["--content", str(inputs["photos"]), "--style", str(inputs["style"]), "--image_size", "64"]
    run_main(script, monkeypatch, *args, "--epochs", "1", "--max_batches", "0", "--out", str(out))
    initial = torch.load(out)["network"]
    run_main(script, monkeypatch, *args, "--epochs", "1", "--max_batches", "2", "--out", str(out))
    assert "2 batches on 3 photos" in capsys.readouterr().out  # one of the four held out, as the config's
    assert changed(initial, torch.load(out)["network"])
