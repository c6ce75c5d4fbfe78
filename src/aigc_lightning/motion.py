"""Known motion for film effects: warp images by a flow, draw random smooth motions, and measure how well a
stylisation keeps structure (edges), takes the style's colours and stays stable from frame to frame.

A **flow** here is a backward sampling grid in ``grid_sample``'s normalised coordinates, (B, H, W, 2) with x then y
in [-1, 1]: ``warp(x, grid)[.., i, j] = x[.., grid[i, j]]``. Pixels whose source falls outside the frame are
occluded (newly revealed); ``valid_mask`` marks the rest. The temporal loss (Huang et al. 2017, "Real-time neural
style transfer for videos"; Gao et al. 2018, ReCoNet) compares ``stylise(warp(x))`` with ``warp(stylise(x))`` on
the valid pixels: a network that commutes with motion does not flicker on a pan. Pure tensor functions; no
weights, no flow network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lightning.pixels import rgb_to_yiq


def identity_grid(b: int, h: int, w: int, device=None) -> Tensor:
    """The grid that warps nothing: (B, H, W, 2)."""
    theta = torch.eye(2, 3, device=device).expand(b, 2, 3)
    return F.affine_grid(theta, [b, 1, h, w], align_corners=False)


def affine_grid(b: int, h: int, w: int, shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0,
                angle: float = 0.0, device=None) -> Tensor:  # fmt: skip
    """A camera motion as a grid (B, H, W, 2): frame content moves by ``shift`` = (dx, dy) pixels, is magnified by
    ``zoom`` (> 1: zoom in) and turned by ``angle`` radians about the centre (aspect kept)."""
    c, s = math.cos(angle) / zoom, math.sin(angle) / zoom
    # normalised coordinates have different pixel sizes in x and y: rotate in pixel units
    theta = torch.tensor(
        [[c, -s * h / w, -2 * shift[0] / w], [s * w / h, c, -2 * shift[1] / h]], device=device
    )
    return F.affine_grid(theta.expand(b, 2, 3), [b, 1, h, w], align_corners=False)


def random_motion(x: Tensor, max_shift: float = 0.04, max_zoom: float = 0.04, max_angle: float = 0.03,
                  flow_std: float = 0.01, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """A random smooth motion per image of ``x`` (B, C, H, W): an affine camera move (shift up to ``max_shift`` of
    the frame, zoom up to ``1 ± max_zoom``, rotation up to ``max_angle`` rad) plus a smooth non-rigid flow
    (Gaussian noise of std ``flow_std`` on a 4 × 4 grid, bicubically upsampled, in normalised units). (B, H, W, 2)."""
    b, _, h, w = x.shape
    g = {"generator": generator, "device": "cpu"}
    u = (torch.rand(b, 5, **g) * 2 - 1).to(x.device)  # (B, 5): dx, dy, zoom, angle, unused spare
    zoom = (1 + max_zoom * u[:, 2]).reciprocal()
    cos, sin = torch.cos(max_angle * u[:, 3]) * zoom, torch.sin(max_angle * u[:, 3]) * zoom
    theta = torch.stack([torch.stack([cos, -sin * h / w, 2 * max_shift * u[:, 0]], 1),
                         torch.stack([sin * w / h, cos, 2 * max_shift * u[:, 1]], 1)], 1)  # (B, 2, 3)  # fmt: skip
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    if flow_std > 0:
        coarse = (torch.randn(b, 2, 4, 4, **g) * flow_std).to(x.device)  # (B, 2, 4, 4)
        fine = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)  # (B, 2, H, W)
        grid = grid + fine.permute(0, 2, 3, 1)
    return grid


def warp(x: Tensor, grid: Tensor) -> Tensor:
    """``x`` (B, C, H, W) sampled at ``grid`` (B, H, W, 2), bilinear; outside the frame: border pixels."""
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def valid_mask(grid: Tensor, margin: float = 0.0) -> Tensor:
    """1 where ``grid`` samples inside the frame (shrunk by ``margin`` in normalised units), else 0: (B, 1, H, W)."""
    inside = (grid.abs() <= 1 - margin).all(-1)  # (B, H, W)
    return inside[:, None].to(grid.dtype)


def temporal_loss(warped_out: Tensor, out_of_warped: Tensor, mask: Tensor) -> Tensor:
    """Per-sample masked mean squared difference Σ m (a − b)² / (C Σ m) (Huang et al. 2017), (B,); 0 when the
    network commutes with the motion."""
    sq = (warped_out - out_of_warped).pow(2) * mask  # (B, C, H, W)
    return sq.flatten(1).sum(1) / (mask.flatten(1).sum(1) * warped_out.shape[1]).clamp_min(1)


# ----------------------------------------------------------------------------------------------------------
# Measurements (the bench harness and the tests use these)


def luma(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB → (B, 1, H, W) luma; one channel passes through."""
    return x if x.shape[1] == 1 else rgb_to_yiq(x)[:, :1]


def sobel_magnitude(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of the luma of ``x`` (B, C, H, W): (B, 1, H − 2, W − 2)."""
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device)
    kernels = torch.stack([k, k.t()])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(luma(x.float()), kernels)  # (B, 2, H − 2, W − 2)
    return g.pow(2).sum(1, keepdim=True).sqrt()


def edge_correlation(output: Tensor, reference: Tensor) -> Tensor:
    """Pearson correlation of the Sobel edge magnitudes of ``output`` and ``reference`` (same size), per image
    (B,): 1 for the same edges, about 0 for unrelated ones."""
    a, b = (sobel_magnitude(t).flatten(1) for t in (output, reference))
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def colour_stats(x: Tensor) -> Tensor:
    """Per-channel RGB mean and std of each image (B, 3, H, W): (B, 6)."""
    flat = x.float().flatten(2)  # (B, 3, H·W)
    return torch.cat([flat.mean(2), flat.std(2)], 1)


def colour_gap_ratio(output: Tensor, content: Tensor, style: Tensor) -> Tensor:
    """|stats(output) − stats(style)| / |stats(content) − stats(style)| per image (B,), stats = RGB means and
    stds: 1 keeps the content's colours, 0 has the style's, ≤ 0.5 moved at least halfway."""
    s = colour_stats(style)
    return (colour_stats(output) - s).norm(dim=1) / (colour_stats(content) - s).norm(dim=1).clamp_min(1e-6)


def warping_error(frames: Tensor, grids: Tensor, margin: float = 0.02) -> Tensor:
    """Mean |y_t − warp(y_{t−1}, grid_t)| over valid pixels, per frame pair, for frames (T, C, H, W) and the
    backward grids (T − 1, H, W, 2) from frame t to frame t − 1 (known motion or optical flow): (T − 1,)."""
    prev = warp(frames[:-1].float(), grids)
    mask = valid_mask(grids, margin)  # (T − 1, 1, H, W)
    diff = (frames[1:].float() - prev).abs() * mask
    return diff.flatten(1).sum(1) / (mask.flatten(1).sum(1) * frames.shape[1]).clamp_min(1)


def farneback_grids(frames: Tensor) -> Tensor:
    """Backward grids (T − 1, H, W, 2) from frame t to t − 1 of uint8 RGB frames (T, H, W, 3), by OpenCV's
    Farnebäck optical flow (no learnt weights; needs ``opencv-python-headless``, the ``dev`` extra)."""
    import cv2

    gray = [cv2.cvtColor(f.numpy(), cv2.COLOR_RGB2GRAY) for f in frames]
    t, h, w = len(frames), frames.shape[1], frames.shape[2]
    base = identity_grid(t - 1, h, w)
    flows = [
        cv2.calcOpticalFlowFarneback(gray[i + 1], gray[i], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        for i in range(t - 1)
    ]
    flow = torch.from_numpy(np.stack(flows)).float()  # (T − 1, H, W, 2) in pixels
    return base + flow * torch.tensor([2 / w, 2 / h])
