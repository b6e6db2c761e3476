"""Theis, Shi, Cunningham, Huszár: Lossy image compression with compressive autoencoders (ICLR 2017).

- Encoder (§3, Fig. 2): fixed per-channel normalization, then 5×5/2 conv → N/2 + LeakyReLU,
  5×5/2 conv → N + LeakyReLU, three residual blocks, 5×5/2 conv → M coefficients.
  Decoder: sub-pixel convolutions (3×3 conv, pixel shuffle ×2) → N, three residual blocks,
  → N/2, → 3; then denormalization and clipping to the pixel range with an identity gradient.
  The paper's widths are N = 128, M = 96.
- Quantization (§2.1): rounding, with the identity (straight-through) gradient.
- Entropy model (§2.2, §3.2): a zero-mean Gaussian scale mixture per code channel (6 scales,
  log-variances and softmax weights). Training minimizes the paper's bound
  ``E_u[−log₂ q(ẑ + u)]``, u ~ U[−½, ½), with q the mixture's density; at test time the
  probabilities are the mixture's mass on each integer, which ``update()`` also turns into
  rANS tables (bounded support per channel, rare values escape-coded) held in buffers.
- Hostile streams: the decoder refuses code values beyond ±2¹⁵ and a section that is not the
  (canonical) rANS coding of the values it decodes to.

Assumptions (the configurable ones are arguments in conf/model/theis2017.yaml):
- "Mirror padding": the strided encoder convolutions pad by reflection; the residual blocks
  and sub-pixel convolutions are CompressAI's (zero padding, a LeakyReLU after each conv).
  Images smaller than 16 px are replicate-padded to 16 so the reflection fits.
- The normalization is a fixed mean/std per RGB channel (``mean``, ``std``: BSDS500 train).
- Widths ``N``, ``M`` and the number of mixture scales ``scales`` are configurable; the mixture
  starts with equal weights on standard deviations 0.5 … 16; its tables drop a tail mass ≤ 1e-9.
- Optimization: Adam (§3.2), the mixture's parameters at ``gsm_lr_scale`` × the network's
  learning rate (1 in the paper's config; short CPU budgets need the entropy model to keep up).
- Skipped: the per-coefficient scale fine-tuning and the incremental training with a mask
  over coefficients (§3.2); each checkpoint (one λ) is one rate point.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from compressai.entropy_models import EntropyModel
from compressai.layers import ResidualBlock, subpel_conv3x3
from compressai.models.utils import update_registered_buffers

from licbench.codec import CodecError
from licbench.lightning_modules.base import MAX_CODE, LearnedCodec, decode_canonical


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` forward, identity gradient to ``x``."""
    return x + (y - x).detach()


def mirror_conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    """5×5/2 convolution with mirror (reflection) padding."""
    return nn.Conv2d(in_ch, out_ch, 5, stride=2, padding=2, padding_mode="reflect")


class GaussianScaleMixture(EntropyModel):
    """Per-channel zero-mean GSM: training density, test-time integer masses and rANS tables."""

    max_support = 2048  # largest |value| with its own table entry; beyond it values are escape-coded

    def __init__(self, channels: int, scales: int = 6, tail_mass: float = 1e-9, **kwargs):
        super().__init__(**kwargs)
        self.tail_mass = tail_mass
        init = torch.linspace(math.log(0.5**2), math.log(16.0**2), scales)  # standard deviations 0.5 ... 16
        self.log_variances = nn.Parameter(init.repeat(channels, 1))
        self.logits = nn.Parameter(torch.zeros(channels, scales))

    def _mixture(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard deviations and log-weights, each [C, K]."""
        return torch.exp(0.5 * self.log_variances), torch.log_softmax(self.logits, dim=-1)

    def log_density(self, v: torch.Tensor) -> torch.Tensor:
        """log q(v) for v [B, C, H, W]."""
        sigma, log_w = (t[:, None, None] for t in self._mixture())
        v = v[..., None]
        return torch.logsumexp(log_w - torch.log(sigma) - 0.5 * math.log(2 * math.pi) - v**2 / (2 * sigma**2), dim=-1)

    def mass(self, v: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        """Probability of the integer bin [v − ½, v + ½) for every channel (upper-tail form)."""
        sigma, log_w = (t.reshape(t.shape[0], *[1] * (v.dim() - channel_dim - 1), t.shape[1]) for t in self._mixture())
        v = v.abs()[..., None]
        tails = torch.erfc((v - 0.5) / (sigma * math.sqrt(2))) - torch.erfc((v + 0.5) / (sigma * math.sqrt(2)))
        return (0.5 * tails * log_w.exp()).sum(-1)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rounded code (straight-through) and its likelihoods: density of ẑ + u in training, mass at test."""
        y_hat = straight_through(y, torch.round(y))
        if self.training:
            likelihood = self.log_density(y_hat + torch.empty_like(y).uniform_(-0.5, 0.5)).exp()
        else:
            likelihood = self.mass(y_hat)
        return y_hat, self.likelihood_lower_bound(likelihood)

    @torch.no_grad()
    def update(self, force: bool = False) -> bool:
        """Quantized CDF tables on [−R_c, R_c], the smallest support whose two tails hold ≤ tail_mass."""
        if self._offset.numel() > 0 and not force:
            return False
        sigma, log_w = self._mixture()
        support = torch.arange(self.max_support + 1, dtype=sigma.dtype, device=sigma.device)
        tails = torch.erfc((support[None, :, None] + 0.5) / (sigma[:, None] * math.sqrt(2)))
        tails = (tails * log_w[:, None].exp()).sum(-1)
        radius = (tails > self.tail_mass).sum(1).clamp(1, self.max_support)  # tails decrease: first R below
        length = 2 * radius + 1
        samples = torch.arange(int(length.max()), device=sigma.device)[None] - radius[:, None]
        pmf = self.mass(samples.to(sigma.dtype), channel_dim=0)
        tail = tails.gather(1, radius[:, None])
        self._quantized_cdf = self._pmf_to_cdf(pmf, tail, length, int(length.max()))
        self._offset = (-radius).int()
        self._cdf_length = (length + 2).int()
        return True

    def indexes(self, shape) -> torch.Tensor:
        """The table of every coefficient: its channel."""
        return torch.arange(shape[1], dtype=torch.int32, device=self._offset.device).view(1, -1, 1, 1).expand(shape)


class Theis2017(LearnedCodec):
    name = "theis2017"
    stride = 8

    def __init__(self, N: int = 128, M: int = 96, scales: int = 6, mean=(0.434, 0.443, 0.367),
                 std=(0.249, 0.234, 0.242), gsm_lr_scale: float = 1.0, **training):
        super().__init__(**training)
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)
        self.encoder = nn.Sequential(mirror_conv(3, N // 2), nn.LeakyReLU(), mirror_conv(N // 2, N), nn.LeakyReLU(),
                                     *[ResidualBlock(N, N) for _ in range(3)], mirror_conv(N, M))
        self.decoder = nn.Sequential(subpel_conv3x3(M, N, 2), nn.LeakyReLU(), *[ResidualBlock(N, N) for _ in range(3)],
                                     subpel_conv3x3(N, N // 2, 2), nn.LeakyReLU(), subpel_conv3x3(N // 2, 3, 2))
        self.gsm = GaussianScaleMixture(M, scales)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.mean) / self.std)

    def decode_latent(self, y_hat: torch.Tensor) -> torch.Tensor:
        x_hat = self.decoder(y_hat) * self.std + self.mean
        return straight_through(x_hat, x_hat.clamp(0, 1))

    def forward(self, x: torch.Tensor) -> dict:
        y_hat, likelihoods = self.gsm(self.encode_latent(x))
        return {"x_hat": self.decode_latent(y_hat), "likelihoods": {"y": likelihoods}}

    def compress(self, x: torch.Tensor) -> list[bytes]:
        y = self.encode_latent(x).clamp(-MAX_CODE, MAX_CODE)
        return self.gsm.compress(y, self.gsm.indexes(y.shape))

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if len(sections) != 1:
            raise CodecError(f"{self.name} stream must have 1 section, got {len(sections)}")
        shape = (1, self.hparams.M, height // self.stride, width // self.stride)
        indexes = self.gsm.indexes(shape)
        return self.decode_latent(decode_canonical(self.gsm, sections[0], indexes, self.name))

    def configure_optimizers(self):
        gsm = list(self.gsm.parameters())
        rest = [p for n, p in self.named_parameters() if not n.startswith("gsm.")]
        return torch.optim.Adam([{"params": rest}, {"params": gsm, "lr_scale": self.hparams.gsm_lr_scale}],
                                lr=self.hparams.lr)

    def _set_learning_rate(self, optimizer) -> None:
        super()._set_learning_rate(optimizer)
        for group in optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)

    def update(self, *args, force: bool = False, **kwargs) -> bool:
        updated = self.gsm.update(force=force)
        return super().update(*args, force=force, **kwargs) or updated  # the base resets the model id

    def load_state_dict(self, state_dict, strict: bool = True):
        update_registered_buffers(self.gsm, "gsm", ["_quantized_cdf", "_offset", "_cdf_length"], state_dict, "resize")
        return super().load_state_dict(state_dict, strict=strict)

    def _padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        return (0, max(16, -(-width // 8) * 8) - width, 0, max(16, -(-height // 8) * 8) - height)
