"""python -m aigc_lightning.evaluate (folders, statistics files, refusals), the Inception extractor against
torch-fidelity's with one weights file, and the metric card of a ``test`` run on a StyleGAN2 checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from PIL import Image

from aigc_lightning.evaluate import main as evaluate
from aigc_lightning.seeds import randn_from_seeds

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def write_digits(folder: Path, first: int, n: int, size: int = 32, noise: float = 0.0) -> Path:
    """``n`` scikit-learn digits from index ``first`` as PNGs in class folders (noise: Gaussian, in [0, 1] units)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(first)
    for i in range(first, first + n):
        img = np.kron(digits.images[i] / 16, np.ones((size // 8, size // 8)))
        img = np.clip(img + noise * rng.standard_normal(img.shape), 0, 1)
        path = folder / str(digits.target[i]) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(path)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("digits")
    return write_digits(root / "real", 0, 120), write_digits(root / "fake", 120, 100)


SMALL = ["--kid_subset_size", "50", "--kid_subsets", "5", "--bootstrap", "4", "--is_splits", "2"]


def test_folder_against_folder_and_against_saved_statistics(folders, tmp_path, capsys):
    real, fake = folders
    stats = tmp_path / "ref.safetensors"
    card = evaluate(["--generated", str(fake), "--reference", str(real), "--out", str(tmp_path / "a.json"),
                     "--save_stats", str(stats), *SMALL])  # fmt: skip
    table = capsys.readouterr().out
    assert table.count("| fid |") == 1 and "95% CI" in table
    written = json.loads((tmp_path / "a.json").read_text())
    assert written == json.loads(json.dumps(card))
    for name in ("fid", "kid", "is", "precision", "recall", "density", "coverage"):
        entry = written["metrics"][name]
        assert np.isfinite(entry["value"]) and entry["ci95"][0] <= entry["value"] <= entry["ci95"][1], name
    assert written["generated"]["num_images"] == 100 and written["reference"]["num_images"] == 120
    assert written["generated"]["image_size"] == [32, 32] and len(written["reference"]["sha256"]) == 64
    assert written["features"]["name"] == "digits" and len(written["features"]["weights_sha256"]) == 64
    assert written["resize"]["mode"] == "clean" and "bicubic" in written["resize"]["filter"]
    assert written["settings"]["seed"] == 0 and "torch" in written["versions"]
    # the statistics file (safetensors + its JSON card) gives the same values without the reference images
    assert json.loads(stats.with_suffix(".json").read_text())["features"]["name"] == "digits"
    again = evaluate(
        ["--generated", str(fake), "--reference", str(stats), "--out", str(tmp_path / "b.json"), *SMALL]
    )
    for name, entry in card["metrics"].items():
        assert again["metrics"][name]["value"] == pytest.approx(entry["value"], rel=1e-6), name
    # --num_samples takes the first N generated images
    few = evaluate(["--generated", str(fake), "--reference", str(stats), "--out", str(tmp_path / "c.json"),
                    "--num_samples", "60", *SMALL])  # fmt: skip
    assert few["generated"]["num_images"] == 60


def test_refusals_are_one_line(folders, tmp_path, capsys):
    real, fake = folders
    stats = tmp_path / "ref.safetensors"
    evaluate(["--reference", str(real), "--save_stats", str(stats)])  # statistics only
    assert stats.is_file()
    cases = {
        "resize clean vs legacy": ["--generated", str(fake), "--reference", str(stats), "--resize", "legacy"],
        "reference images 32x32 px vs generated 16x16 px": [
            "--generated", str(write_digits(tmp_path / "small", 0, 20, size=16)), "--reference", str(stats)],
        "is one of the inputs": ["--generated", str(fake), "--reference", str(stats), "--out", str(stats)],
        "cannot read reference statistics": ["--generated", str(fake), "--reference", str(tmp_path / "x.json")],
        "fewer than --num_samples": ["--generated", str(fake), "--reference", str(stats), "--num_samples", "500"],
    }  # fmt: skip
    (tmp_path / "x.json").write_text("{}")
    for expected, argv in cases.items():
        with pytest.raises(SystemExit) as e:
            evaluate([*argv, "--out", str(tmp_path / "out.json")] if "--out" not in argv else argv)
        message = str(e.value)
        assert message.startswith("error: ") and expected in message and "\n" not in message, message


# ----------------------------------------------------------------------------------------------------------
# Inception: our extractor vs torch-fidelity's, one randomly initialised weights file in its format


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", return_value={}),
        mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict"),
    ):
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    torch.manual_seed(0)
    for (
        m
    ) in net.modules():  # He init keeps activations O(1) through the 94 layers (PyTorch's default fades them)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_features_equal_torch_fidelity_with_the_same_weights(inception_weights):
    import torch_fidelity
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    from aigc_lightning.evaluation.extract import features_of, load_extractor, tf1_bilinear

    x = torch.rand(2, 3, 21, 17)
    assert torch.allclose(
        tf1_bilinear(x, 40),
        interpolate_bilinear_2d_like_tensorflow1x(x, (40, 40), align_corners=False),
        atol=1e-6,
    )
    ours = load_extractor("inception", str(inception_weights))
    theirs = torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["2048", "logits_unbiased"],
        feature_extractor_weights_path=str(inception_weights),
    )
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        f_ref, logits_ref = theirs(images.expand(-1, 3, -1, -1))
    f, logits = features_of(images.float() / 255, ours, "legacy")
    assert f_ref.std() > 1e-3  # the random weights give non-degenerate features
    assert torch.allclose(f, f_ref, rtol=1e-4, atol=1e-5 * f_ref.abs().max().item())
    assert torch.allclose(logits, logits_ref, rtol=1e-4, atol=1e-5 * logits_ref.abs().max().item())
    assert len(ours.weights_sha256) == 64


def test_inception_weights_holding_code_are_refused(tmp_path):
    from aigc_lightning.errors import UserError
    from aigc_lightning.evaluation.extract import load_extractor

    path = tmp_path / "evil.pth"
    torch.save({"conv": torch.zeros(1), "object": mock.sentinel}, path)  # a pickled Python object
    with pytest.raises(UserError, match="pickled Python objects"):
        load_extractor("inception", str(path))


@pytest.mark.slow  # ~1 min: 56 Inception forward passes at 299 px on a CPU; the features and formulas are tested above
def test_inception_card_equals_torch_fidelity_end_to_end(inception_weights, tmp_path):
    import torch_fidelity

    real, fake = write_digits(tmp_path / "real", 0, 16), write_digits(tmp_path / "fake", 16, 12)
    kw = {"kid_subsets": 5, "kid_subset_size": 10, "isc_splits": 2, "samples_shuffle": True, "rng_seed": 0}
    ref = torch_fidelity.calculate_metrics(
        input1=str(fake), input2=str(real), fid=True, kid=True, isc=True, verbose=False, cuda=False,
        feature_extractor_weights_path=str(inception_weights), samples_find_deep=True, **kw,
    )  # fmt: skip
    card = evaluate(["--generated", str(fake), "--reference", str(real), "--features", "inception",
                     "--inception_weights", str(inception_weights), "--resize", "legacy", "--out", str(tmp_path / "c.json"),
                     "--kid_subsets", "5", "--kid_subset_size", "10", "--is_splits", "2", "--bootstrap", "0"])  # fmt: skip
    assert card["metrics"]["fid"]["value"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-3)
    assert card["metrics"]["kid"]["value"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    assert card["metrics"]["is"]["value"] == pytest.approx(ref["inception_score_mean"], rel=1e-3)


# ----------------------------------------------------------------------------------------------------------
# test on a checkpoint


def test_test_run_on_a_stylegan2_checkpoint_writes_the_card_with_ppl(tmp_path):
    from aigc_lightning.cli import main

    override = tmp_path / "eval.yaml"
    override.write_text(
        "trainer:\n  callbacks:\n    - class_path: aigc_lightning.callbacks.GenerativeMetrics\n      init_args:\n"
        "        num_samples: 48\n        batch_size: 24\n        ppl_samples: 24\n        bootstrap: 3\n"
        "        kid_subset_size: 24\n        is_splits: 2\n"
    )
    tiny = ["--model.generator.init_args.channel_max", "8", "--model.generator.init_args.latent_dim", "16",
            "--model.discriminator.init_args.channel_max", "8", "--model.mean_latent_samples", "64"]  # fmt: skip
    main(["fit", "--config", str(ROOT / "configs/gan/stylegan2_digits.yaml"), "--config", str(override), *tiny,
          "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar",
          "false", "--trainer.limit_val_batches", "0", "--trainer.enable_model_summary", "false"])  # fmt: skip
    run = tmp_path / "lightning_logs" / "version_0"
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    card = json.loads((tmp_path / "lightning_logs" / "version_1" / "metrics.json").read_text())
    assert set(card["metrics"]) == {"fid", "kid", "is", "precision", "recall", "density", "coverage", "ppl"}
    assert card["metrics"]["ppl"]["value"] > 0 and card["metrics"]["ppl"]["epsilon"] == 1e-4
    assert card["generated"]["num_images"] == 48 and card["reference"]["split"] == "test"
    assert card["generated"]["checkpoint"].endswith("last.ckpt") and card["reference"]["num_images"] == 180


class TinySampler(LightningModule):
    """A linear 'generator' with ``sample(n, seed)`` and an empty ``test_step``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, 16 * 16)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        z = randn_from_seeds(torch.arange(seed, seed + n), (8,), self.device)
        return torch.sigmoid(self.net(z)).view(n, 1, 16, 16)

    def test_step(self, batch, batch_idx) -> None:
        pass


def _test_card(tmp_path: Path, devices: int) -> dict:
    from aigc_lightning.callbacks import GenerativeMetrics
    from aigc_lightning.datamodules import DigitsDataModule

    out = tmp_path / f"card{devices}.json"
    metrics = GenerativeMetrics(num_samples=90, batch_size=20, kid_subset_size=40, is_splits=2, bootstrap=3,
                                card_path=str(out))  # fmt: skip
    trainer = Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                      logger=False, callbacks=[metrics], enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)  # fmt: skip
    trainer.test(TinySampler(), DigitsDataModule(image_size=16, batch_size=32), verbose=False)
    return json.loads(out.read_text())


@pytest.mark.slow  # ~1 min of process start-up on 2 CPU cores
def test_test_run_card_is_the_same_on_two_ddp_processes(tmp_path):
    # each process scores half the test images and half the seeds; gathered and put in one order, every value,
    # the reference hash and N equal the single-process card's (and nothing hangs)
    one, two = _test_card(tmp_path, 1), _test_card(tmp_path, 2)
    assert two["reference"]["num_images"] == one["reference"]["num_images"] == 180
    assert two["reference"]["sha256"] == one["reference"]["sha256"]
    for name, entry in one["metrics"].items():
        assert two["metrics"][name]["value"] == pytest.approx(entry["value"], rel=1e-5, abs=1e-9), name
