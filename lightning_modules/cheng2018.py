"""Cheng, Sun, Takeuchi, Katto: Deep convolutional autoencoder-based lossy image compression (PCS 2018).

Section II of the paper (arXiv:1804.09535), as read in METHODS.md:
- CAE: three down-units of a 3×3/1 and a 3×3/2 convolution, each followed by PReLU, channels
  ``channels`` = 32, 32, 64, 64, 64, 32 (128×128 → 16×16×32). The decoder mirrors it: up-units
  of a 4×4/2 transposed convolution and a 3×3/1 convolution, each followed by PReLU.
- Training: additive uniform noise of one quantizer step replaces the rounding; the loss is
  ``λ · 255² · MSE + bpp`` (base class).
- PCA: eigenvectors of the latent's channel covariance, by decreasing variance. Fitted once, on
  training latents of the final weights at the end of training (``pca_batches`` batches), and
  stored as buffers: no side information. The first ``K`` components are coded; the others
  decode as the training mean.
- Quantizer: ``round(c · 2^(B−1))`` on the rotated latent ``c``. Rate points: the precision
  ``B`` and the retained components ``K``, labelled ``"B4K16"``: one trained CAE, a whole curve.

Assumptions and deviations (configurable in conf/model/cheng2018.yaml where they are numbers):
- Entropy coding: compressai's rANS with a zero-mean Gaussian per component and image
  (``GaussianConditional``'s 64 scales) instead of the paper's adaptive binary arithmetic coder.
  Side information, counted in the bytes: a first section with ``B``, ``K`` and each
  component's scale index (1 byte each).
- Training noise and rate term: uniform noise of one step at ``train_precision``; the rate is
  the code length of the noisy latent under the same per-image, per-channel Gaussian, in the
  channel basis (the PCA exists only after training).
- PReLU has one slope per channel; the decoder's last convolution has no activation and the
  encoder's last PReLU is kept (the latent is its output).
"""
from __future__ import annotations

import itertools
import re

import torch
from compressai.entropy_models import GaussianConditional
from compressai.models.utils import conv
from torch import nn

from licbench.core.codec import CodecError, RatePoint
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.entropy import MAX_CODE, decode_canonical

LABEL = re.compile(r"B(\d+)K(\d+)")


class Cheng2018(LearnedCodec):
    name = "cheng2018"
    stride = 8
    max_precision = 8  # beyond, leading components outgrow the scale table (σ ≤ 256 steps) and cost bypass bits

    def __init__(self, channels: tuple | list = (32, 32, 64, 64, 64, 32), train_precision: int = 4,
                 pca_batches: int = 64, **training):
        super().__init__(**training)
        if len(channels) != 6:
            raise CodecError(f"{self.name}: 6 channel counts (3 down-units of 2 convolutions), got {list(channels)}")
        widths, encoder, decoder = [3, *channels], [], []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            encoder += [conv(a, b, 3, 1 + i % 2), nn.PReLU(b)]
            decoder = [nn.ConvTranspose2d(b, a, 4, 2, 1) if i % 2 else conv(b, a, 3, 1), nn.PReLU(a)] + decoder
        self.g_a, self.g_s = nn.Sequential(*encoder), nn.Sequential(*decoder[:-1])
        self.latent_channels = M = channels[-1]
        self.register_buffer("pca_mean", torch.zeros(M))
        self.register_buffer("pca_basis", torch.eye(M))  # columns: eigenvectors, by decreasing variance
        self.gaussian = GaussianConditional(None)
        self.update(force=True)

    # --- the transform and its quantized, rotated latent ------------------------------------
    def forward(self, x: torch.Tensor, precision: int | None = None, components: int | None = None) -> dict:
        """Training: noisy latent, rate under each channel's Gaussian. Eval: the coded path at (B, K)."""
        if self.training:
            step = 2.0 ** (self.hparams.train_precision - 1)
            z = self.g_a(x) * step
            z_tilde, likelihoods = self.gaussian(z, _rms(z)[..., None, None])
            return {"x_hat": self.g_s(z_tilde / step), "likelihoods": {"y": likelihoods}}
        precision, components = self._setting(precision, components)
        z, indexes = self._analyse(self.g_a(x), precision, components)
        z_hat, likelihoods = self.gaussian(z, self.gaussian.scale_table[indexes][..., None, None])
        return {"x_hat": self._synthesise(z_hat, precision), "likelihoods": {"z": likelihoods}}

    def _setting(self, precision: int | None, components: int | None) -> tuple[int, int]:
        precision = self.hparams.train_precision if precision is None else precision
        components = self.latent_channels if components is None else components
        if not (1 <= precision <= self.max_precision and 1 <= components <= self.latent_channels):
            raise CodecError(f"{self.name}: precision B must be in 1..{self.max_precision} and components K in "
                             f"1..{self.latent_channels}, got B={precision} K={components}")
        return int(precision), int(components)

    def _analyse(self, y: torch.Tensor, precision: int, components: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first K principal components scaled to quantizer steps, and each one's scale index per image."""
        basis = self.pca_basis[:, :components]
        z = torch.einsum("nchw,ck->nkhw", y - self.pca_mean[:, None, None], basis) * 2.0 ** (precision - 1)
        return z, self.gaussian.build_indexes(_rms(z)).long()

    def _synthesise(self, z_hat: torch.Tensor, precision: int) -> torch.Tensor:
        """Back from quantizer steps and the K components to the latent (dropped components: the mean); decode."""
        y = torch.einsum("nkhw,ck->nchw", z_hat / 2.0 ** (precision - 1), self.pca_basis[:, :z_hat.shape[1]])
        return self.g_s(y + self.pca_mean[:, None, None])

    # --- PCA, fitted after training -------------------------------------------------------------
    @torch.no_grad()
    def fit_pca(self, batches) -> None:
        """Eigenvectors of the latent's channel covariance over ``batches`` of training images."""
        y = torch.cat([self.g_a(batch.to(self.device)).transpose(0, 1).flatten(1) for batch in batches], 1).double()
        variance, vectors = torch.linalg.eigh(torch.cov(y))
        self.pca_mean.copy_(y.mean(1))
        self.pca_basis.copy_(vectors[:, variance.argsort(descending=True)])
        self._model_id = None

    def on_train_end(self) -> None:
        self.fit_pca(itertools.islice(self.trainer.train_dataloader, self.hparams.pca_batches))
        super().on_train_end()

    def estimate_bits(self, x: torch.Tensor, data: bytes | None = None, precision: int | None = None,
                      components: int | None = None) -> float:
        """The Gaussian model's code length of the payload plus the exact side information."""
        precision, components = self._setting(precision, components)
        return super().estimate_bits(x, data, precision=precision, components=components) + 8 * (2 + components)

    # --- rate points --------------------------------------------------------------------------
    @property
    def rate(self) -> str:
        """The model's own rate point: the training precision, all components."""
        return f"B{self.hparams.train_precision}K{self.latent_channels}"

    def rate_points(self, labels: list | None = None) -> list:
        """One point per label ``"B<precision>K<components>"`` (default: the training precision, all K)."""
        points = []
        for label in labels or [self.rate]:
            match = LABEL.fullmatch(str(label))
            if not match:
                raise CodecError(f"{self.name}: rate point labels look like 'B4K16', got {label!r}")
            precision, components = self._setting(*map(int, match.groups()))
            points.append(RatePoint(self, str(label), precision=precision, components=components))
        return points

    def at_rate(self, rate, **points):
        """Any ``"B<precision>K<components>"``, listed in ``points`` or not (``licbench encode codec.rate=B4K16``)."""
        return self.rate_points(labels=[rate])[0]

    # --- the bitstream ------------------------------------------------------------------------
    def compress(self, x: torch.Tensor, precision: int | None = None, components: int | None = None) -> list[bytes]:
        precision, components = self._setting(precision, components)
        z, indexes = self._analyse(self.g_a(x), precision, components)
        payload = self.gaussian.compress(z.clamp(-MAX_CODE, MAX_CODE), indexes[..., None, None].expand_as(z))
        return [bytes([precision, components, *indexes[0].tolist()]), payload[0]]

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if len(sections) != 2 or len(sections[0]) < 2:
            raise CodecError(f"{self.name} stream must have 2 sections (setting, payload)")
        header, payload = sections
        precision, components = self._setting(header[0], header[1])
        if len(header) != 2 + components:
            raise CodecError(f"{self.name} setting section has {len(header)} bytes, "
                             f"K={components} needs {2 + components}")
        indexes = torch.tensor(list(header[2:]), device=self.device)
        if indexes.max() >= len(self.gaussian.scale_table):
            raise CodecError(f"{self.name} stream names a scale index beyond the table ({indexes.max().item()})")
        shape = (1, components, height // self.stride, width // self.stride)
        indexes = indexes[None, :, None, None].expand(shape)
        return self._synthesise(decode_canonical(self.gaussian, payload, indexes, self.name), precision)


def _rms(z: torch.Tensor) -> torch.Tensor:
    """Per image and channel root mean square, [N, C, H, W] -> [N, C]: the zero-mean Gaussian's scale.
    Floored below the scale table's first entry (0.11), which keeps the square root differentiable."""
    return z.pow(2).mean((2, 3)).clamp_min(0.01).sqrt()
