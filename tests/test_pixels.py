"""The ground floor: pixel-range conversion, channel conversion, the one resize, seeded noise."""

from __future__ import annotations

import torch

from aigc_lightning.pixels import convert_channels, resize_crop, to_signed, to_unit
from aigc_lightning.seeds import interpolation_latents, randn_from_seeds


def test_ranges_round_trip_and_binary_values_stay_exact():
    x01 = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(to_unit(to_signed(x01)), x01)
    binary = torch.tensor([-1.0, 1.0])
    assert torch.equal(to_unit(binary), torch.tensor([0.0, 1.0]))  # Bernoulli targets exactly 0 / 1
    assert to_unit(binary.half()).dtype == torch.float32


def test_resize_crop_keeps_the_centre_of_the_shorter_side():
    x = torch.zeros(1, 1, 20, 40)
    x[..., 10:30] = 1.0  # a centred 20x20 white square on a 20x40 black image
    out = resize_crop(x, 10)
    assert out.shape == (1, 1, 10, 10) and out.min() > 0.5  # no black border: the centre was kept
    assert torch.allclose(out[..., 1:-1], torch.ones(1, 1, 10, 8))  # only the antialiased edge columns blend
    crop = resize_crop(torch.arange(36.0).view(1, 1, 6, 6), 2, crop=2)  # the centre 2x2, already the size
    assert torch.equal(crop, torch.tensor([[[[14.0, 15.0], [20.0, 21.0]]]]))


def test_channel_conversion_uses_luma():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert convert_channels(rgb, 1).item() == torch.tensor(0.299).item()
    assert convert_channels(torch.ones(1, 1, 2, 2), 3).shape == (1, 3, 2, 2)


def test_seeded_rows_do_not_depend_on_the_batch():
    a = randn_from_seeds(torch.tensor([3, 4, 5]), (2, 2))
    b = randn_from_seeds(torch.tensor([5]), (2, 2))
    assert torch.equal(a[2], b[0]) and not torch.equal(a[0], a[1])


def test_interpolation_rows_run_from_seed_i_to_seed_rows_plus_i_on_the_sphere():
    z = interpolation_latents(rows=2, dim=16, steps=5)  # (2 * 5, 16)
    seeds = randn_from_seeds(torch.arange(4), (16,))
    assert z.shape == (10, 16)
    for row, (start, end) in enumerate([(0, 2), (1, 3)]):  # row i: seed i → seed rows + i
        torch.testing.assert_close(z[5 * row], seeds[start])
        torch.testing.assert_close(z[5 * row + 4], seeds[end])
    # slerp, not lerp: the midpoint keeps the norm of its ends (a straight line would shrink it)
    mid, lerp = z[2], (seeds[0] + seeds[2]) / 2
    assert abs(mid.norm() - seeds[[0, 2]].norm(dim=1).mean()) < 0.2 * mid.norm() and mid.norm() > lerp.norm()
