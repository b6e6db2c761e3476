"""JPEG, WebP and AVIF through Pillow, writing their native files (a real .jpg/.webp/.avif).

Encoder settings follow CompressAI's Pillow baselines (``compressai.utils.bench``): Pillow
defaults plus ``quality``, so JPEG uses 4:2:0 chroma subsampling and standard tables.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError, features

from licbench.core.bitstream import DEFAULT_MAX_PIXELS
from licbench.core.codec import Codec, CodecError, UnknownFormat, check_image
from licbench.core.images import from_uint8_hwc, to_uint8_hwc

FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
_FEATURES = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}


class PillowCodec(Codec):
    """One quality setting of a Pillow image codec; ``rate`` is the quality (1..100)."""

    def __init__(self, format: str = "jpeg", rate: int = 75, name: str | None = None):
        key = format.lower()
        if key not in FORMATS:
            raise CodecError(f"unknown Pillow format {format!r}; choose one of {sorted(FORMATS)}")
        self.format = FORMATS[key]
        if not features.check(_FEATURES[self.format]):
            raise CodecError(f"this Pillow build cannot write {self.format}; install a Pillow wheel with {key} support")
        if not 0 <= int(rate) <= 100:
            raise CodecError(f"{key} quality must be in 0..100, got {rate}")
        self.name, self.rate = name or key, int(rate)

    def encode(self, x: torch.Tensor) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(to_uint8_hwc(check_image(x))).save(buf, format=self.format, quality=self.rate)
        return buf.getvalue()

    def decode(self, data: bytes) -> torch.Tensor:
        return decode_pillow(data, self.format)


def decode_pillow(data: bytes, expected_format: str | None = None) -> torch.Tensor:
    """Decode a JPEG/WebP/AVIF file's bytes to [3, H, W] in [0, 1]; a declared size over the
    container's pixel limit is refused before anything is decoded."""
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnknownFormat(f"not a {expected_format or 'Pillow-readable'} file") from None
    except (OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError) as err:
        raise CodecError(f"cannot read the {expected_format or 'image'} header: {err}") from None
    with img:
        if expected_format and img.format != expected_format:
            raise UnknownFormat(f"expected a {expected_format} file, got {img.format}")
        if img.width * img.height > DEFAULT_MAX_PIXELS:
            raise CodecError(f"declared image size {img.height}x{img.width} exceeds the limit of "
                             f"{DEFAULT_MAX_PIXELS} pixels")
        try:
            pixels = np.asarray(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError, RuntimeError) as err:  # AVIF's plugin raises RuntimeError
            raise CodecError(f"cannot decode {img.format} bytes: {err}") from None
    return from_uint8_hwc(pixels)
