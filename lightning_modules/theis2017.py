"""Theis, Shi, Cunningham, Huszár: Lossy image compression with compressive autoencoders (ICLR 2017).

- Encoder (§3, Fig. 2): fixed per-channel normalization, then 5×5/2 conv → N/2 + LeakyReLU,
  5×5/2 conv → N + LeakyReLU, three residual blocks, 5×5/2 conv → M coefficients.
  Decoder: sub-pixel convolutions (3×3 conv, pixel shuffle ×2) → N, three residual blocks,
  → N/2, → 3; then denormalization and clipping to the pixel range with an identity gradient.
  The paper's widths are N = 128, M = 96.
- Quantization (§2.1): rounding, with the identity (straight-through) gradient, of the code
  divided by per-channel scale parameters (§3.2: ``round(f(x) / λ)``, the decoder reads ``ẑ · λ``;
  ``log_step`` holds log λ, zero — λ = 1 — until fine-tuned).
- Rate control (§3.2): one model trained at a high rate, then for each lower rate only the scale
  parameters and the mixture fine-tuned at that rate's λ (``fine_tune_scales: true`` with
  ``init_from``); the transforms are frozen, so every rate point shares one network.
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
- One scale parameter per code channel, not per coefficient (a coefficient of a convolutional code
  is a channel at every position). Skipped: the incremental training with a mask over
  coefficients (§3.2).
"""
from __future__ import annotations

import torch
from compressai.layers import ResidualBlock, subpel_conv3x3
from torch import nn

from licbench.core.codec import CodecError
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.entropy import MAX_CODE, GaussianScaleMixture, decode_canonical
from licbench.lightning_modules.layers import mirror_conv, straight_through


class Theis2017(LearnedCodec):
    name = "theis2017"
    stride = 8

    def __init__(self, N: int = 128, M: int = 96, scales: int = 6, mean=(0.434, 0.443, 0.367),
                 std=(0.249, 0.234, 0.242), gsm_lr_scale: float = 1.0, fine_tune_scales: bool = False,
                 **training):
        super().__init__(**training)
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)
        self.encoder = nn.Sequential(  # §3, Fig. 2
            mirror_conv(3, N // 2),
            nn.LeakyReLU(),
            mirror_conv(N // 2, N),
            nn.LeakyReLU(),
            ResidualBlock(N, N),
            ResidualBlock(N, N),
            ResidualBlock(N, N),
            mirror_conv(N, M),
        )
        self.decoder = nn.Sequential(  # sub-pixel convolutions
            subpel_conv3x3(M, N, 2),
            nn.LeakyReLU(),
            ResidualBlock(N, N),
            ResidualBlock(N, N),
            ResidualBlock(N, N),
            subpel_conv3x3(N, N // 2, 2),
            nn.LeakyReLU(),
            subpel_conv3x3(N // 2, 3, 2),
        )
        self.log_step = nn.Parameter(torch.zeros(1, M, 1, 1))  # log of the scale parameters λ (§3.2)
        self.gsm = GaussianScaleMixture(M, scales)  # rounding and the entropy model (§2.1, §2.2)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.mean) / self.std) / self.log_step.exp()

    def decode_latent(self, y_hat: torch.Tensor) -> torch.Tensor:
        x_hat = self.decoder(y_hat * self.log_step.exp()) * self.std + self.mean
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

    @staticmethod
    def renamed_weights(state_dict: dict) -> dict:
        """Checkpoints written before the scale parameters existed have λ = 1."""
        if "log_step" in state_dict:
            return state_dict
        return {**state_dict, "log_step": torch.zeros(1, state_dict["gsm.log_variances"].shape[0], 1, 1)}

    def configure_optimizers(self):
        gsm = list(self.gsm.parameters())
        if self.hparams.fine_tune_scales:  # §3.2: a rate from the trained transforms, by λ and the mixture
            for name, p in self.named_parameters():
                p.requires_grad_(name == "log_step" or name.startswith("gsm."))
            scales = [self.log_step]
            return torch.optim.Adam([{"params": scales}, {"params": gsm, "lr_scale": self.hparams.gsm_lr_scale}],
                                    lr=self.hparams.lr)
        rest = [p for n, p in self.named_parameters() if not n.startswith("gsm.") and n != "log_step"]  # λ = 1
        return torch.optim.Adam([{"params": rest}, {"params": gsm, "lr_scale": self.hparams.gsm_lr_scale}],
                                lr=self.hparams.lr)

    def _set_learning_rate(self, optimizer) -> None:
        super()._set_learning_rate(optimizer)
        for group in optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)

    def update(self, *args, force: bool = False, **kwargs) -> bool:
        updated = self.gsm.update(force=force)
        return super().update(*args, force=force, **kwargs) or updated  # the base resets the model id

    def _padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        return (0, max(16, -(-width // 8) * 8) - width, 0, max(16, -(-height // 8) * 8) - height)
