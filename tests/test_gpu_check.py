"""python -m bench gpu_check --cpu: the one-command accelerator check runs its jobs and reports what it measured."""

from __future__ import annotations

import json
import sys

from conftest import ROOT


def run_check(monkeypatch, tmp_path, *args: str) -> dict:
    monkeypatch.syspath_prepend(str(ROOT))  # the bench package lives at the repository root
    from bench.__main__ import main

    monkeypatch.setattr(sys, "argv", ["python -m bench"])  # LightningCLI warns about pytest's own arguments
    out = tmp_path / "gpu_check.json"
    main(["gpu_check", "--cpu", "--json", str(out), *args])
    record = json.loads(out.read_text())
    assert record["name"] == "gpu_check" and record["command"].startswith("python -m bench gpu_check --cpu")
    return record["results"]


def test_cpu_run_times_each_precision_and_skips_fp16(monkeypatch, tmp_path):
    result = run_check(
        monkeypatch, tmp_path, "--jobs", "vae", "--batches", "3", "--warmup", "1",
        "--precisions", "32-true", "bf16-mixed", "16-mixed", "--set", "--data.batch_size 16",
    )  # fmt: skip
    rows = {row["precision"]: row for row in result["rows"]}
    assert set(rows) == {"32-true", "bf16-mixed"}
    for row in rows.values():
        assert row["job"] == "vae" and row["batches"] == 3 and row["ranks"] == 1
        assert row["finite"] and row["error"] is None
        assert row["img_per_s"] > 0 and row["peak_mib"] > 0
    assert any("16-mixed: skipped on CPU" in note for note in result["notes"])


def test_cpu_run_reports_a_diverging_loss(monkeypatch, tmp_path):
    result = run_check(
        monkeypatch, tmp_path, "--jobs", "vae", "--batches", "3", "--warmup", "1", "--precisions", "32-true",
        "--set", "--data.batch_size 16 --model.init_args.optimizer.init_args.lr 1e30",
    )  # fmt: skip
    (row,) = result["rows"]
    assert not row["finite"]
    assert "NonFiniteLossError" in row["error"]


def test_cpu_sized_jobs_at_real_size_configs_run_with_a_plain_reference(monkeypatch, tmp_path):
    # DCGAN 64 px (through the dataset cache), StyleGAN2 256 px and Gatys 512 px configs, shrunk by --cpu
    result = run_check(monkeypatch, tmp_path, "--jobs", "dcgan64", "stylegan2_256", "gatys512", "--batches", "2",
                       "--warmup", "1", "--precisions", "32-true")  # fmt: skip
    rows = {row["job"]: row for row in result["rows"]}
    assert set(rows) == {"dcgan64", "stylegan2_256", "gatys512"}
    for row in rows.values():
        assert row["finite"] and row["error"] is None and row["img_per_s"] > 0, row
    assert rows["dcgan64"]["plain_img_per_s"] > 0 and rows["gatys512"]["plain_img_per_s"] is None
