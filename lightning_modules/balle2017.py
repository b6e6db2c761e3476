"""Ballé, Laparra, Simoncelli: End-to-end optimized image compression (ICLR 2017).

- Analysis g_a (§2, Fig. 1; the paper's RGB model): 9×9/4 conv + GDN, 5×5/2 conv + GDN,
  5×5/2 conv. Synthesis g_s mirrors it with inverse GDN and transposed convolutions.
- Quantization: additive uniform noise U(−½, ½) in training, rounding at test (§2.1).
- Entropy model: a non-parametric factorized density per channel — CompressAI's
  ``EntropyBottleneck`` — which also provides the CDFs for its rANS coder. A stream decodes as in
  CompressAI's ``FactorizedPrior``, through ``entropy.decode_bottleneck``'s guards on hostile bytes.
- ``N`` (hidden) and ``M`` (latent) channels: the paper uses one width (N = M = 192 for RGB,
  an assumption marked (?) in METHODS.md); both are configurable.
"""
from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import nn

from licbench.core.codec import CodecError
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.entropy import decode_bottleneck


class Balle2017(LearnedCodec):
    name = "balle2017"
    stride = 16

    def __init__(self, N: int = 192, M: int = 192, **training):
        super().__init__(**training)
        self.g_a = nn.Sequential(  # analysis transform (§2, Fig. 1)
            conv(3, N, 9, 4),
            GDN(N),
            conv(N, N, 5, 2),
            GDN(N),
            conv(N, M, 5, 2),
        )
        self.g_s = nn.Sequential(  # synthesis transform: the mirror image
            deconv(M, N, 5, 2),
            GDN(N, inverse=True),
            deconv(N, N, 5, 2),
            GDN(N, inverse=True),
            deconv(N, 3, 9, 4),
        )
        self.entropy_bottleneck = EntropyBottleneck(M)  # quantizer and factorized density (§2.1)

    def forward(self, x: torch.Tensor) -> dict:
        y_hat, likelihoods = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": likelihoods}}

    def compress(self, x: torch.Tensor) -> list[bytes]:
        return self.entropy_bottleneck.compress(self.g_a(x))

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if len(sections) != 1:
            raise CodecError(f"{self.name} stream must have 1 section, got {len(sections)}")
        size = (height // self.stride, width // self.stride)
        return self.g_s(decode_bottleneck(self.entropy_bottleneck, sections[0], size, self.name))
