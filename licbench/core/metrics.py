"""Image-quality and rate metrics, following CompressAI's evaluation conventions.

- PSNR over RGB: both images rounded to uint8, MSE pooled over the three channels,
  ``10 log10(255^2 / MSE)``.
- MS-SSIM: ``pytorch_msssim.ms_ssim`` on the uint8-rounded images with ``data_range=255``.
  Five scales need the shorter side to exceed 160 pixels; smaller images get NaN (see
  :data:`MS_SSIM_MIN_SIDE`) instead of an error.
- bpp: ``8 * bytes / (H * W)`` of the real bitstream, headers included.
"""
from __future__ import annotations

import math

import torch
from pytorch_msssim import ms_ssim as _ms_ssim

MS_SSIM_MIN_SIDE = 161  # pytorch_msssim: smaller side must be > (win_size - 1) * 2**4 = 160


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Float image in [0, 1] -> float tensor of integer levels 0..255 (rounded, clamped)."""
    return (x.detach().double().clamp(0, 1) * 255).round()


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """RGB PSNR in dB of two [3, H, W] images in [0, 1]; inf for identical images."""
    mse = (to_uint8_levels(x) - to_uint8_levels(x_hat)).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def ms_ssim(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """MS-SSIM of two [3, H, W] images in [0, 1]; NaN when the image is too small for 5 scales."""
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return math.nan
    # [1, H, W, 3] memory seen as [1, 3, H, W]: pytorch_msssim's depthwise Gaussian convolutions run
    # ~3x faster on CPU than on NCHW memory (and ~2x faster than .contiguous(channels_last), whose
    # batch stride of 3 the convolution does not recognise); see python -m licbench.tools.suite_speed
    a, b = (to_uint8_levels(t).float().permute(1, 2, 0).contiguous().unsqueeze(0).permute(0, 3, 1, 2)
            for t in (x, x_hat))
    return _ms_ssim(a, b, data_range=255).item()


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a bitstream of ``num_bytes`` for an image of ``height x width``."""
    return 8.0 * num_bytes / (height * width)
