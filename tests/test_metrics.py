import math

import pytest
import torch

from licbench.core import metrics


def test_psnr_matches_hand_computation():
    x = torch.zeros(3, 4, 4)
    y = x.clone()
    y[0, 0, 0] = 10 / 255  # one value off by 10 levels: MSE = 100 / 48
    assert metrics.psnr(x, y) == pytest.approx(10 * math.log10(255**2 * 48 / 100), abs=1e-9)


def test_psnr_rounds_to_uint8_first():
    x = torch.full((3, 8, 8), 0.4)  # level 102
    assert metrics.psnr(x, x + 0.4 / 255) == math.inf  # same 8-bit value after rounding
    assert metrics.psnr(x, x + 1 / 255) == pytest.approx(10 * math.log10(255**2), abs=1e-9)


def test_ms_ssim_identity_and_degradation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 192, 200, generator=g)
    assert metrics.ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.2 * torch.randn(3, 192, 200, generator=g)).clamp(0, 1)
    assert 0 < metrics.ms_ssim(x, noisy) < 0.95


def test_ms_ssim_is_nan_for_images_too_small_for_five_scales():
    x = torch.rand(3, 160, 300)
    assert math.isnan(metrics.ms_ssim(x, x))


def test_bpp_counts_every_byte():
    assert metrics.bpp(1000, 100, 80) == 1.0
    assert metrics.bpp(393216 // 8, 512, 768) == 1.0


def test_the_default_metrics_are_the_registrys_psnr_and_ms_ssim():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 170, 180, generator=g)
    y = (x + 0.05 * torch.randn(3, 170, 180, generator=g)).clamp(0, 1)
    assert metrics.evaluate(["psnr", "ms_ssim"], x, y) == {"psnr": metrics.psnr(x, y), "ms_ssim": metrics.ms_ssim(x, y)}
    assert metrics.to_uint8(x).shape == (170, 180, 3) and metrics.to_uint8(x).dtype.name == "uint8"
