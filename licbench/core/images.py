"""Reading and writing image files as [3, H, W] float tensors in [0, 1].

Inputs that are not 8-bit RGB are converted here, and the conversion is returned so it can
be stated in the tables: grayscale is replicated to three channels, alpha is dropped,
palette and CMYK images are converted to RGB, 16-bit images are scaled to 8 bits, and EXIF
orientation is applied.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from licbench.core.codec import CodecError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp"}


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] float in [0, 1] -> numpy uint8 [H, W, 3] (round to nearest)."""
    return (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def from_uint8_hwc(a: np.ndarray) -> torch.Tensor:
    """numpy uint8 [H, W, 3] -> [3, H, W] float in [0, 1]."""
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255)


def load_image(path: str | Path) -> tuple[torch.Tensor, str]:
    """Load an image file; returns (tensor [3, H, W] in [0, 1], conversion note or "")."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"no such image file: {path}")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return pil_to_tensor(img)
    except (UnidentifiedImageError, OSError) as err:
        raise CodecError(f"{path} is not a readable image ({err})") from None
    except Image.DecompressionBombError as err:
        raise CodecError(f"{path} is too large to load: {err}") from None


def pil_to_tensor(img: Image.Image) -> tuple[torch.Tensor, str]:
    mode, note = img.mode, ""
    if mode == "I" or mode.startswith("I;16"):
        a = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if a.max() > 255 or mode.startswith("I;16") else 255.0
        a = np.clip(np.round(a / scale * 255), 0, 255).astype(np.uint8)
        img, note = Image.fromarray(a, "L"), f"{mode} scaled to 8 bits, gray replicated to RGB"
    elif mode in ("RGBA", "LA", "PA"):
        note = f"{mode}: alpha dropped"
    elif mode in ("L", "1"):
        note = "gray replicated to RGB"
    elif mode not in ("RGB",):
        note = f"{mode} converted to RGB"
    return from_uint8_hwc(np.asarray(img.convert("RGB"))), note


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Save a [3, H, W] image in [0, 1] (rounded to 8 bits); the format follows the suffix."""
    Image.fromarray(to_uint8_hwc(x)).save(path)
