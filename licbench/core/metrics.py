"""Image-quality and rate metrics on float images, following CompressAI's evaluation conventions.

- PSNR over RGB: both images rounded to uint8, MSE pooled over the three channels,
  ``10 log10(255^2 / MSE)``.
- MS-SSIM: ``pytorch_msssim.ms_ssim`` on the uint8-rounded images with ``data_range=255``.
  Five scales need the shorter side to exceed 160 pixels; smaller images get NaN (see
  :data:`MS_SSIM_MIN_SIDE`) instead of an error.
- bpp: ``8 * bytes / (H * W)`` of the real bitstream, headers included.

Both are metrics of :mod:`licbench.core.quality`, the registry of every metric the benchmark can
measure (``metrics=``), here on ``[3, H, W]`` float tensors in [0, 1] (:func:`to_uint8` first).
"""
from __future__ import annotations

import numpy as np
import torch

from licbench.core import quality
from licbench.core.quality import MS_SSIM_MIN_SIDE  # noqa: F401  (re-exported)


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Float image in [0, 1] -> float tensor of integer levels 0..255 (rounded, clamped)."""
    return (x.detach().double().clamp(0, 1) * 255).round()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """A ``[3, H, W]`` float image in [0, 1] as the ``uint8 [H, W, 3]`` array the metrics take."""
    return to_uint8_levels(x).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def pair(x: torch.Tensor, x_hat: torch.Tensor) -> quality.Pair:
    return quality.Pair(to_uint8(x), to_uint8(x_hat))


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """RGB PSNR in dB of two [3, H, W] images in [0, 1]; inf for identical images."""
    return quality.REGISTRY["psnr"](pair(x, x_hat))


def ms_ssim(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """MS-SSIM of two [3, H, W] images in [0, 1]; NaN when the image is too small for 5 scales."""
    return quality.REGISTRY["ms_ssim"](pair(x, x_hat))


def evaluate(names, x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """The metrics ``names`` (:func:`licbench.core.quality.resolve`) of two [3, H, W] images in [0, 1]."""
    return quality.evaluate(names, to_uint8(x), to_uint8(x_hat))


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a bitstream of ``num_bytes`` for an image of ``height x width``."""
    return 8.0 * num_bytes / (height * width)
