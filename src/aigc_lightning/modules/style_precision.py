"""Mixed precision for style transfer: bfloat16 VGG features while the loss falls fast, float32 for the finish.

A loss evaluation is a VGG forward and backward to the pixels. With bfloat16 features (autocast) it costs about
half as much on hardware with native bfloat16 products (the Gram products too, accumulated in float32; the
losses on them are float32: ``losses.gram_matrix_fp32``), but the features carry bfloat16's rounding (~0.4 % per
value): loss values wobble by up to ~1e-3 relative and gradients by ~1 % (``python -m bench style_bf16_error``). That
is harmless while an optimizer step lowers the loss by percents, and noise once L-BFGS crawls along a plateau
where steps gain less than 0.1 %. So a run starts in bfloat16 and switches to float32 for good at the first step
that gained less than ``bf16_until`` (``StyleTransfer``'s option). The kept best image is always chosen by
float32 values: in the bfloat16 phase the image at each step's end, and an evaluated image whose bfloat16 loss
fell by ``RESCORE_DROP`` since the last re-score (at most every ``RESCORE_EVERY`` evaluations), is re-scored by a
float32 forward pass (no backward).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

# Re-score a bfloat16-phase image in float32 when its loss fell by RESCORE_DROP since the last re-scored one and
# at least RESCORE_EVERY evaluations passed: early, fast-falling steps offer a better image every few evaluations
# (a re-score, a float32 forward pass, costs about half a bfloat16 evaluation); on a plateau only step ends are.
RESCORE_DROP, RESCORE_EVERY = 0.05, 2


@dataclass
class Schedule:
    """Where one optimisation is in the bfloat16 → float32 schedule (fit saves it in its checkpoints).

    Args:
        bf16: evaluating in bfloat16 now; ``None`` until the first step decides from ``feature_precision``
            and the device.
        scored: bfloat16 loss of the last image re-scored in float32.
        since: evaluations since that re-score.
        last: float32 loss of the image at the end of the previous bfloat16 step (first: of the start image).
    """

    bf16: bool | None = None
    scored: float = math.inf
    since: int = RESCORE_EVERY
    last: float = math.inf

    def start_step(self, feature_precision: str, device: torch.device) -> bool:
        """Whether the next step evaluates in bfloat16 (decided at the first step, from the option and device)."""
        if self.bf16 is None:
            self.bf16 = feature_precision == "bf16" or (feature_precision == "auto" and fast_bfloat16(device))
        return self.bf16

    def rescore_now(self, loss: float) -> bool:
        """After a bfloat16 evaluation with loss ``loss``: whether to re-score its image in float32 now."""
        self.since += 1
        if self.since >= RESCORE_EVERY and loss < (1 - RESCORE_DROP) * self.scored:  # NaN compares False
            self.scored, self.since = loss, 0
            return True
        return False

    def first_score(self, loss: float) -> None:
        """A float32 re-score made inside a step: the run's first one (its start image) is the reference of the
        first step's gain."""
        if self.last == math.inf:
            self.last = loss

    def end_step(self, loss: float, until: float) -> bool:
        """After a bfloat16 step whose image scores ``loss`` in float32: True when it gained less than ``until``
        (relative), i.e. when the float32 phase starts now."""
        crawl = self.last - loss < until * self.last
        self.last, self.bf16 = loss, not crawl
        return crawl



@functools.cache
def _cpu_has_bf16() -> bool:
    # torch has no public query; the kernel's CPU flags name the instructions oneDNN uses (Linux only: elsewhere
    # "auto" stays float32, which is always correct and only slower).
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", text) is not None


def fast_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 convolutions are native (faster than float32) on ``device``: a CUDA GPU of compute
    capability ≥ 8 (Ampere and later), or a CPU with AVX512-BF16 or AMX (Zen 4, Sapphire Rapids and later)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == "cpu" and _cpu_has_bf16()
