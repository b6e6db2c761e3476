"""Semantic-perceptual JPEG: Prakash, Moran, Garber, DiLillo & Storer, "Semantic Perceptual Image Compression
using Deep Convolution Networks", DCC 2017 (arXiv:1612.08712), after its public code (iamaaditya/image-compression-cnn,
``combine_images.py``).

A multi-structure region-of-interest map (the paper's MS-ROI section) splits the image into levels at percentiles of
the map; the image is JPEG-coded at one quality per level and each region takes its pixels from its level's decoding,
so the background loses the detail that costs bits while the regions of interest keep theirs; that composite is then
written as **one standard baseline JPEG at a single final quality** (Sec. 4), so any JPEG decoder reads it and no
side information is sent. The bytes are that JPEG file — Pillow with the ``jpeg`` baseline's settings (4:2:0,
standard tables) — and :meth:`Prakash2017.decode` is Pillow's.

Rate point ``q<Q>s<S>``: final quality ``Q`` and spread ``S``. The lowest map level is pre-coded at ``Q − S``
(at least 1), the levels between at evenly spaced qualities up to the top one, which keeps the original pixels;
``S = 0`` is (up to re-compression) plain JPEG at ``Q``. The label in tables adds the map's tag
(:data:`licbench.baselines.saliency.MAPS`): ``q50s20-sr`` is the default map, OpenCV's spectral-residual saliency —
*not* the paper's CNN, whose weights are not available here (``map=msroi`` with ``map_weights=PATH`` runs it).

Deviations from the paper and its code:

- The map (MS-ROI section): spectral-residual saliency by default, not the MS-ROI CNN trained on Caltech-256; the
  CNN of :class:`~licbench.baselines.saliency.MSROI` uses VGG-16's dense 3×3 convolutions, not the code's depthwise
  ("3D") ones, no dropout at inference, torchvision's RGB input normalisation instead of VGG's BGR means, and
  weights the top class's activation map most (the code's loop gives the second class twice the first's weight).
- Selection (Sec. 4; the code's ``make_quality_compression``): per 16×16 block — the 4:2:0 JPEG macroblock, aligned
  with the final file's DCT blocks — by the block's mean map value, instead of per pixel, so no final DCT block
  mixes two pre-codings; percentiles are taken over blocks. The code's default model (two levels split at the
  median, ``percentiles: [50]``) is ours.
- Qualities: relative to the final ``Q`` (background ``Q − S``, top level the original pixels), where the code
  fixes them (80 and 100 for its default model) and the top level is a quality-100 JPEG rather than the original.
- Final quality: a rate point, not searched. The code lowers the final quality from 90 until the file is within
  ``threshold_pct`` (1 % for a fair comparison, 20 % by default) of plain JPEG at quality 50, as the paper's
  experiments compare at equal size; here each ``Q`` is one point of a curve and equal size is the benchmark's
  BD-rate against ``jpeg``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from licbench.baselines.pillow import PillowCodec, decode_pillow
from licbench.baselines.saliency import MAPS, roi_map
from licbench.core.codec import Codec, CodecError, check_image, weights_id
from licbench.core.images import from_uint8_hwc, to_uint8_hwc

BLOCK = 16  # the 4:2:0 JPEG macroblock: one luma 2×2 of 8×8 DCT blocks and one 8×8 block of each chroma
RATE = re.compile(r"q(\d+)s(\d+)(?:-(\w+))?")


def block_levels(roi: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """The level of each pixel's ``BLOCK``² block, ``[H, W]`` in 0..len(percentiles): how many of the
    ``percentiles`` of the block means of ``roi`` its block's mean reaches."""
    height, width = roi.shape
    pad = ((0, -height % BLOCK), (0, -width % BLOCK))
    means = np.pad(roi, pad, mode="edge").reshape(-(-height // BLOCK), BLOCK, -(-width // BLOCK), BLOCK).mean((1, 3))
    levels = np.digitize(means, np.percentile(means, percentiles))
    return levels.repeat(BLOCK, 0).repeat(BLOCK, 1)[:height, :width]


class Prakash2017(Codec):
    """One rate point ``q<Q>s<S>`` (final quality, spread) with one region-of-interest map."""

    name = "prakash2017"

    def __init__(self, rate: str = "q50s20", map: str = "spectral_residual", map_weights: str | None = None,
                 percentiles: Sequence[float] = (50,), top_k: int = 2):
        found = RATE.fullmatch(str(rate))
        if found is None:
            raise CodecError(f"prakash2017 rate must be q<final quality>s<spread>, e.g. q50s20; got {rate!r}")
        quality, spread = int(found[1]), int(found[2])
        if not 1 <= quality <= 100:
            raise CodecError(f"prakash2017 final quality must be in 1..100, got {quality}")
        if map not in MAPS or found[3] not in (None, MAPS[map]):
            raise CodecError(f"prakash2017 map must be one of {', '.join(MAPS)} (its tag, if the rate names one: "
                             f"{', '.join(MAPS.values())}); got map={map!r}, rate={rate!r}")
        self.percentiles = sorted(float(p) for p in percentiles)
        if not self.percentiles or not all(0 < p < 100 for p in self.percentiles):
            raise CodecError(f"prakash2017 percentiles must be one or more values strictly between 0 and 100, "
                             f"got {list(percentiles)}")
        self.roi, self.network = roi_map(map, map_weights, top_k)
        if self.network is not None:
            self.model_id = weights_id(f"{self.name}-{map}", self.network.state_dict())
        self.final = PillowCodec("jpeg", quality)
        lowest, steps = max(quality - spread, 1), len(self.percentiles)  # levels 0..steps-1 pre-coded
        self.levels = [PillowCodec("jpeg", round(lowest + (quality - lowest) * i / steps)) for i in range(steps)]
        self.rate = f"q{quality}s{spread}-{MAPS[map]}"

    def composite(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The variable-quality image (uint8 ``[H, W, 3]``) the final JPEG codes, and its block levels ``[H, W]``."""
        pixels = to_uint8_hwc(check_image(x))
        levels = block_levels(self.roi(pixels), self.percentiles)
        mixed = pixels.copy()
        for level, jpeg in enumerate(self.levels):
            if (where := levels == level).any():
                mixed[where] = to_uint8_hwc(jpeg.decode(jpeg.encode(x)))[where]
        return mixed, levels

    def encode(self, x: torch.Tensor) -> bytes:
        return self.final.encode(from_uint8_hwc(self.composite(x)[0]))

    def decode(self, data: bytes) -> torch.Tensor:
        return decode_pillow(data, "JPEG")
