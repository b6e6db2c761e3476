"""Akyazi & Ebrahimi: Learning-based image compression using convolutional autoencoder and
wavelet decomposition (WCAE, CVPR Workshops / CLIC 2019), and its ablation NoWCAE.

The paper's text was not at hand to cite by section: this follows its summary in METHODS.md.

- Input: RGB scaled to [−1, 1], then a 3-scale 2-D Haar (db1) transform per channel —
  orthonormal, as ``pywt.wavedec2(x, "haar", level=3)`` — in torch, so it is differentiable.
  The coarsest scale feeds 12 channels (LL3 and LH3, HL3, HH3 of R, G, B), the second and the
  finest scale 9 channels each (their three detail bands of R, G, B).
- Analysis (the architecture figure): one branch per scale of 3×3 convolutions with GDN; the
  coarsest, second and finest branches downsample 2, 3 and 4 times, so all land at
  H/32 × W/32, each with ``M`` = 32 outputs; the code is their concatenation (96 channels).
  The synthesis mirrors each branch (inverse GDN, stride-2 transposed convolutions), splits the
  code back into the three scales and merges them with the inverse Haar transform.
- Quantization: additive uniform noise in training, rounding at test.
- Entropy model: one Gaussian per image (not per channel) with the code's mean and standard
  deviation. Both are rounded to float16 before any use — rate estimate, training and coder
  alike — and sent as the stream's first section (4 bytes, counted in the bytes and in the
  rate: the ``params`` likelihood). Coding is CompressAI's ``GaussianConditional`` (rANS) with
  CDF tables of 256 scales from 0.11 to 64, 2.5 % apart (the coder's scale is at most that much
  above the estimate's; CompressAI's default 64 scales, 13 % apart, cost up to ~3 % more bits).
  Symbols are the code rounded on the grid ``mean + ℤ``. The paper's header also carries the
  code's minimum; rANS codes signed symbols, so it is not sent. The decoder re-encodes what it
  decoded and refuses a payload that does not reproduce itself.
- Loss: the paper's Σ(X − X̂)² + λR with λ = 0.0025 does not state its units; read as mean
  squared error on [0, 1] plus λ·bpp, it is the base's ``lmbda·255²·MSE + bpp`` with
  ``lmbda = 1 / (0.0025·255²) ≈ 0.00615`` (the default). Adam 1e-4, batch 8, 256² patches.
  Weights start from CompressAI's/PyTorch's default initialisation.

Assumptions (the paper gives no per-layer table; all configurable): each branch is a stem
3×3 conv + GDN, then per downsampling a stride-1 3×3 conv + GDN and a stride-2 3×3 conv + GDN;
``N`` = 16 channels in the stem and the first downsampling, 2N = 32 from the second on ("the
number of outputs is doubled once"), the last conv outputs ``M`` with no GDN. With N = 16,
M = 32 this has 254,718 parameters against the paper's 256,606 (−1,888, −0.7 %): per branch
``2·Σ 9·cᵢ·cᵢ₊₁ + 2·Σ (cᵢ + cᵢ²) + Σ biases`` over the widths ``[c, N, N, N, 2N, …, 2N, M]``;
the paper lists no per-layer widths, biases or GDN placement, so the gap is left unexplained
(no simple variant of this reading — GDN or bias on/off, where the doubling happens — gives
exactly 256,606).

NoWCAE (the paper's ablation, "no wavelets"): the finest branch's net — stem and four
downsamplings, ``M`` outputs — on the [−1, 1] RGB image itself, so its code is H/16 × W/16 × M
(stride 16). A variant with a fifth downsampling and 96 outputs (WCAE's code size) had ten
inverse GDNs in a row and diverged to NaN within 80–200 steps at learning rates 1e-3 to 3e-3.
"""
from __future__ import annotations

import struct

import torch
from compressai.entropy_models import GaussianConditional
from compressai.layers import GDN
from compressai.models.base import get_scale_table
from compressai.models.utils import conv, deconv
from torch import nn

from licbench.core.codec import CodecError
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.entropy import MAX_CODE, decode_canonical
from licbench.lightning_modules.layers import haar_dwt, haar_idwt


def _branch(channels: int, downsamplings: int, N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """An analysis branch and its mirrored synthesis (widths ``[channels, N, N, N, 2N, ..., 2N, M]``)."""
    widths = [channels, N] + [w for k in range(downsamplings) for w in [N if k == 0 else 2 * N] * 2]
    widths[-1] = M
    analysis, synthesis = [], []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        stride = 2 if i % 2 == 0 and i > 0 else 1  # the stem, then (stride 1, stride 2) per downsampling
        analysis += [conv(a, b, 3, stride), GDN(b)]
        synthesis = [deconv(b, a, 3, 2) if stride == 2 else conv(b, a, 3, 1), GDN(a, inverse=True)] + synthesis
    return nn.Sequential(*analysis[:-1]), nn.Sequential(*synthesis[:-1])


SCALES = get_scale_table(0.11, 64, 256)  # the Gaussian's scales with a CDF table


def _float16(t: torch.Tensor) -> torch.Tensor:
    """The value the stream carries: float16 (finite), back in float32."""
    return t.clamp(-6e4, 6e4).half().float()


class WCAE(LearnedCodec):
    name = "wcae"
    stride = 32

    def __init__(self, N: int = 16, M: int = 32, lmbda: float = 0.00615, **training):
        super().__init__(lmbda=lmbda, **training)
        pairs = [_branch(c, d, N, m) for c, d, m in self.layout(M)]
        self.g_a = nn.ModuleList(a for a, _ in pairs)
        self.g_s = nn.ModuleList(s for _, s in pairs)
        self.gaussian_conditional = GaussianConditional(SCALES.tolist())
        self.gaussian_conditional.update()

    def update(self, scale_table=None, force: bool = False, **kwargs) -> bool:
        return super().update(SCALES if scale_table is None else scale_table, force=force, **kwargs)

    @staticmethod
    def layout(M: int) -> list[tuple[int, int, int]]:
        """(input channels, downsamplings, code channels) per branch, coarsest scale first."""
        return [(12, 2, M), (9, 3, M), (9, 4, M)]

    @staticmethod
    def to_scales(x: torch.Tensor) -> list[torch.Tensor]:
        """[−1, 1] image -> the branches' inputs: [LL3 + details3, details2, details1]."""
        details = []
        for _ in range(3):
            x, d = haar_dwt(x)
            details.insert(0, d.flatten(1, 2))
        return [torch.cat([x, details[0]], 1)] + details[1:]

    @staticmethod
    def from_scales(scales: list[torch.Tensor]) -> torch.Tensor:
        x = scales[0][:, :3]
        for d in [scales[0][:, 3:]] + scales[1:]:
            x = haar_idwt(x, d.unflatten(1, (3, 3)))
        return x

    # --- the transforms and the entropy model ------------------------------------------------
    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([g(s) for g, s in zip(self.g_a, self.to_scales(2 * x - 1))], 1)

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        parts = y_hat.split([m for _, _, m in self.layout(self.hparams.M)], 1)
        return (self.from_scales([g(p) for g, p in zip(self.g_s, parts)]) + 1) / 2

    def gaussian(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image mean and std (at least the scale bound) of the code, as the stream carries them."""
        bound = self.gaussian_conditional.scale_bound
        variance = y.var((1, 2, 3), keepdim=True).clamp_min(bound**2)  # a std of 0 has no 0/0 gradient
        return _float16(y.mean((1, 2, 3), keepdim=True)), _float16(variance.sqrt())

    def forward(self, x: torch.Tensor) -> dict:
        y = self.analysis(x)
        mean, std = self.gaussian(y)
        y_hat, likelihoods = self.gaussian_conditional(y, std.expand_as(y), mean.expand_as(y))
        params = torch.full((len(x), 2), 2.0**-16, device=x.device)  # two float16 numbers per image
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": likelihoods, "params": params}}

    # --- the bitstream: [mean, std as float16] [rANS payload] -------------------------------
    def compress(self, x: torch.Tensor) -> list[bytes]:
        y = self.analysis(x)
        if not torch.isfinite(y).all():
            raise CodecError(f"{self.name} weights give a non-finite code (a diverged checkpoint?)")
        mean, std = self.gaussian(y)
        indexes = self.gaussian_conditional.build_indexes(std.expand_as(y))
        y = (y - mean).clamp(-MAX_CODE, MAX_CODE) + mean
        payload = self.gaussian_conditional.compress(y, indexes, mean.expand_as(y))[0]
        return [struct.pack(">ee", mean.item(), std.item()), payload]

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if len(sections) != 2 or len(sections[0]) != 4:
            raise CodecError(f"{self.name} stream must have a 4-byte parameter section and a payload")
        mean, std = struct.unpack(">ee", sections[0])
        if not (abs(mean) < 6e4 and 0 < std < 6e4):
            raise CodecError(f"{self.name} stream has invalid Gaussian parameters (mean {mean}, std {std})")
        channels = sum(m for _, _, m in self.layout(self.hparams.M))
        shape = (1, channels, height // self.stride, width // self.stride)
        indexes = self.gaussian_conditional.build_indexes(torch.tensor([std])).view(1, 1, 1, 1).expand(shape)
        return self.synthesis(decode_canonical(self.gaussian_conditional, sections[1], indexes, self.name) + mean)


class NoWCAE(WCAE):
    """The ablation: the finest branch's net on the RGB image, no wavelet transform."""

    name = "nowcae"
    stride = 16

    @staticmethod
    def layout(M: int) -> list[tuple[int, int, int]]:
        return [(3, 4, M)]

    @staticmethod
    def to_scales(x: torch.Tensor) -> list[torch.Tensor]:
        return [x]

    @staticmethod
    def from_scales(scales: list[torch.Tensor]) -> torch.Tensor:
        return scales[0]
