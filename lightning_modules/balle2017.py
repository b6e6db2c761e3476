"""Ballé, Laparra, Simoncelli: End-to-end optimized image compression (ICLR 2017).

- Analysis g_a (§2, Fig. 1; the paper's RGB model): 9×9/4 conv + GDN, 5×5/2 conv + GDN,
  5×5/2 conv. Synthesis g_s mirrors it with inverse GDN and transposed convolutions.
- Quantization: additive uniform noise U(−½, ½) in training, rounding at test (§2.1).
- Entropy model: a non-parametric factorized density per channel — CompressAI's
  ``EntropyBottleneck`` — which also provides the CDFs for its rANS coder.
- ``N`` (hidden) and ``M`` (latent) channels: the paper uses one width (N = M = 192 for RGB,
  an assumption marked (?) in METHODS.md); both are configurable.
"""
from __future__ import annotations

import torch
from torch import nn
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models.utils import conv, deconv

from licbench.codec import CodecError
from licbench.lightning_modules.base import LearnedCodec, decode_canonical


class Balle2017(LearnedCodec):
    name = "balle2017"
    stride = 16

    def __init__(self, N: int = 192, M: int = 192, **training):
        super().__init__(**training)
        self.g_a = nn.Sequential(conv(3, N, 9, 4), GDN(N), conv(N, N, 5, 2), GDN(N), conv(N, M, 5, 2))
        self.g_s = nn.Sequential(deconv(M, N, 5, 2), GDN(N, inverse=True), deconv(N, N, 5, 2), GDN(N, inverse=True),
                                 deconv(N, 3, 9, 4))
        self.entropy_bottleneck = EntropyBottleneck(M)

    def forward(self, x: torch.Tensor) -> dict:
        y_hat, likelihoods = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": likelihoods}}

    def compress(self, x: torch.Tensor) -> list[bytes]:
        return self.entropy_bottleneck.compress(self.g_a(x))

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if len(sections) != 1:
            raise CodecError(f"{self.name} stream must have 1 section, got {len(sections)}")
        bottleneck = self.entropy_bottleneck
        indexes = bottleneck._build_indexes((1, self.hparams.M, height // self.stride, width // self.stride))
        symbols = decode_canonical(bottleneck, sections[0], indexes, self.name)
        return self.g_s(symbols + bottleneck._extend_ndims(bottleneck._get_medians(), 2))
