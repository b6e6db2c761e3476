"""Jiang, Tao, Liu, Ren, Guo, Zhao: An End-to-End Compression Framework Based on Convolutional
Neural Networks (IEEE TCSVT 2017, arXiv:1708.00838).

- ComCNN (§III-A, Fig. 2): 3×3 conv + ReLU; 3×3/2 conv + BN + ReLU; 3×3 conv → 3 channels. Its
  half-size output, the compact image, is rounded to 8 bits and coded by a real codec
  (``inner``: licbench's JPEG, WebP or JPEG 2000 baselines); the stream is that codec's file.
- RecCNN (§III-B, Fig. 3): bicubic ×2 upsampling of the decoded compact image, then ``depth``
  layers (conv + ReLU, ``depth − 2`` × conv + BN + ReLU, conv → 3) predicting the residual,
  x̂ = up − RecCNN(up).
- Training (§III-C, Algorithm 1), alternating at every step on one batch: the RecCNN step on
  the real decoded compact images (the inner codec runs inside the training step), then the
  ComCNN step through the RecCNN with the codec taken as the identity. Loss: MSE for both, two
  Adam optimizers (manual optimization), no entropy model, no rate term.
- Rate points: the inner codec's quality (JPEG/WebP quality, JPEG 2000 target bpp of the
  compact image); ``rate_points(qualities=[...])`` labels each point by its quality.

Assumptions (all in conf/model/jiang2017.yaml):
- RGB (c = 3); the paper's experiments and official code are grayscale.
- One model for all rate points: each training image is coded at a quality drawn from
  ``qualities``; ``qualities: [q]`` trains a single-quality model as in the paper's per-QF tables.
- ``straight_through: true`` feeds the ComCNN step the real decoded image in the forward pass
  and passes its gradient to the compact image unchanged (the codec as the identity only in
  the backward pass); ``false`` drops the codec from that step altogether, the paper's
  literal L(θ1). Either way the compact image is clamped to [0, 1] first, the codec's range,
  so no gradient drives it past what the codec can carry.
- ``com_lr_ratio`` scales the ComCNN's learning rate (the paper: one rate, 1.0); 0 keeps the
  ComCNN fixed and skips its step.
- ``com_residual`` (not in the paper, default off): the ComCNN adds its output to the 2×2
  average of the input, and the last layers of both networks start at zero, so training
  starts from the plain pipeline "area ÷2 → codec → bicubic ×2" instead of from noise.
- Widths (``com_channels``, ``rec_channels``) and ``depth`` default to the paper's 64, 64, 20.
- ``estimate_bits`` is NaN: the inner codec's size has no model estimate, and the
  benchmark's bpp comes from the bytes anyway.
- Tensors run channels-last, which only speeds up CPU convolutions.
"""
from __future__ import annotations

import io
import math
from functools import partial

import torch
import torch.nn.functional as F
from compressai.models.utils import conv
from PIL import Image
from torch import nn

from licbench.baselines.jpeg2000 import Jpeg2000Codec, decode_jpeg2000
from licbench.baselines.pillow import PillowCodec, decode_pillow
from licbench.core.codec import CodecError, RatePoint
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.layers import straight_through

CHANNELS_LAST = torch.channels_last  # ~1.5x faster 3x3 convolutions on CPU (oneDNN)
INNER = {  # name: (encoder at a quality, decoder, Pillow's name of the format for reading its header)
    "jpeg": (partial(PillowCodec, "jpeg"), partial(decode_pillow, expected_format="JPEG"), "JPEG"),
    "webp": (partial(PillowCodec, "webp"), partial(decode_pillow, expected_format="WEBP"), "WEBP"),
    "jpeg2000": (Jpeg2000Codec, decode_jpeg2000, "JPEG2000"),
}


class Jiang2017(LearnedCodec):
    name = "jiang2017"
    stride = 2

    def __init__(self, com_channels: int = 64, rec_channels: int = 64, depth: int = 20, inner: str = "jpeg",
                 qualities: list = (5, 10, 20, 40), straight_through: bool = True, com_residual: bool = False,
                 com_lr_ratio: float = 1.0, **training):
        super().__init__(**training)
        if inner not in INNER:
            raise CodecError(f"unknown inner codec {inner!r}; choose one of {sorted(INNER)}")
        if depth < 2 or not qualities:
            raise CodecError(f"RecCNN needs depth >= 2 and at least one training quality (got {depth}, {qualities})")
        self.qualities = [self._inner_encoder(q).rate for q in qualities]  # checks every quality now
        c, r = com_channels, rec_channels
        self.com = nn.Sequential(conv(3, c, 3, 1), nn.ReLU(inplace=True), conv(c, c, 3, 2), nn.BatchNorm2d(c),
                                 nn.ReLU(inplace=True), conv(c, 3, 3, 1))
        body = [m for _ in range(depth - 2) for m in (conv(r, r, 3, 1), nn.BatchNorm2d(r), nn.ReLU(inplace=True))]
        self.rec = nn.Sequential(conv(3, r, 3, 1), nn.ReLU(inplace=True), *body, conv(r, 3, 3, 1))
        if com_residual:  # both residuals start at zero: training starts from area-down, codec, bicubic-up
            for layer in (self.com[-1], self.rec[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.to(memory_format=CHANNELS_LAST)

    @property
    def rate(self):
        """The quality of a plain ``encode`` (no rate point chosen): the median training quality."""
        return sorted(self.qualities)[len(self.qualities) // 2]

    # --- the inner codec ----------------------------------------------------------------
    def _inner_encoder(self, quality):
        return INNER[self.hparams.inner][0](quality)

    def _inner_decode(self, data: bytes, height: int, width: int) -> torch.Tensor:
        """The inner file's image [3, height, width]; its header's size is checked before decoding."""
        _, decoder, pil_format = INNER[self.hparams.inner]
        try:
            with Image.open(io.BytesIO(data), formats=[pil_format]) as img:
                size = (img.height, img.width)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise CodecError(f"{self.name}: the inner {self.hparams.inner} file is unreadable ({err})") from None
        if size != (height, width):
            raise CodecError(f"{self.name}: inner image is {size[0]}x{size[1]}, the stream needs {height}x{width}")
        image = decoder(data)
        if image.shape[1:] != (height, width):
            raise CodecError(f"{self.name}: inner image decoded to {list(image.shape)}, expected {height}x{width}")
        return image

    def _code(self, compact: torch.Tensor, qualities: list) -> tuple[torch.Tensor, int]:
        """Each compact image through the real inner codec: (decoded batch, total bytes)."""
        files = [self._inner_encoder(q).encode(c.clamp(0, 1)) for c, q in zip(compact.detach().cpu(), qualities)]
        decoded = [self._inner_decode(f, *compact.shape[2:]) for f in files]
        return torch.stack(decoded).to(compact), sum(map(len, files))

    def _draw(self, n: int) -> list:
        """``n`` training qualities drawn uniformly (torch's generator: seeded runs repeat)."""
        return [self.qualities[i] for i in torch.randint(len(self.qualities), (n,)).tolist()]

    # --- the two networks ---------------------------------------------------------------
    def compact(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=CHANNELS_LAST)
        return self.com(x) + F.avg_pool2d(x, 2) if self.hparams.com_residual else self.com(x)

    def reconstruct(self, decoded: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(decoded, scale_factor=2, mode="bicubic", align_corners=False)
        return up - self.rec(up.contiguous(memory_format=CHANNELS_LAST))

    def forward(self, x: torch.Tensor, quality=None) -> dict:
        """The whole pipeline with real coding; ``quality`` None: random training qualities
        in training mode, :attr:`rate` in eval mode."""
        if quality is None and self.training:
            qualities = self._draw(len(x))
        else:
            qualities = [self.rate if quality is None else quality] * len(x)
        decoded, nbytes = self._code(self.compact(x), qualities)
        return {"x_hat": self.reconstruct(decoded), "likelihoods": {}, "bytes": nbytes}

    # --- training -----------------------------------------------------------------------
    def rd_loss(self, x: torch.Tensor, out: dict) -> dict:
        """MSE only (the paper has no rate term); ``bpp``: the inner files' real size."""
        mse = F.mse_loss(out["x_hat"], x)
        bpp = torch.tensor(8.0 * out["bytes"] / (x.shape[0] * x.shape[2] * x.shape[3]))
        return {"loss": mse, "mse": mse, "bpp": bpp}

    def configure_optimizers(self):
        return [torch.optim.Adam(self.rec.parameters(), lr=self.hparams.lr),
                torch.optim.Adam(self.com.parameters(), lr=self.hparams.lr)]

    def _update(self, optimizer, loss_fn, step) -> torch.Tensor:
        """One ``step`` of ``optimizer`` on ``loss_fn()``, with gradients for its own parameters only."""
        with self.toggled_optimizer(optimizer):
            loss = loss_fn()
            optimizer.zero_grad()
            self.manual_backward(loss)
            if self.hparams.clip_grad_norm:
                self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip_grad_norm,
                                    gradient_clip_algorithm="norm")
            step()
        return loss.detach()

    def training_step(self, batch, batch_idx):
        opt_rec, opt_com = self.optimizers()
        self._set_learning_rate(opt_rec)
        for group in opt_com.param_groups:
            group["lr"] = opt_rec.param_groups[0]["lr"] * self.hparams.com_lr_ratio
        compact = self.compact(batch)
        decoded, nbytes = self._code(compact, self._draw(len(batch)))
        # θ2: RecCNN on the real decoded compact images, ComCNN fixed.
        rec_loss = self._update(opt_rec, lambda: F.mse_loss(self.reconstruct(decoded), batch), opt_rec.step)
        terms = {"train/loss": rec_loss, "train/bpp": 8.0 * nbytes / (batch.shape[0] * batch.shape[2] * batch.shape[3])}
        if self.hparams.com_lr_ratio:
            # θ1: ComCNN through the updated RecCNN, the codec taken as the identity (in the backward pass only
            # with straight_through). The raw optimizer steps: global_step counts RecCNN steps.
            compact = compact.clamp(0, 1)  # the codec's input range: no gradient pushes values past it
            coded = straight_through(compact, decoded) if self.hparams.straight_through else compact
            terms["train/com_loss"] = self._update(opt_com, lambda: F.mse_loss(self.reconstruct(coded), batch),
                                                   opt_com.optimizer.step)
        self.log_dict(terms, prog_bar=True)
        self._model_id = None
        return rec_loss

    @torch.no_grad()
    def estimate_bits(self, x: torch.Tensor, data: bytes | None = None, **setting) -> float:
        """NaN: an inner codec's file size has no model estimate (bpp comes from the bytes)."""
        return math.nan

    # --- rate points and the codec contract -------------------------------------------------
    def rate_points(self, qualities=None, **unknown) -> list:
        """One :class:`RatePoint` per inner-codec quality (default: the training qualities)."""
        if unknown:
            raise CodecError(f"{self.name} takes only `qualities` as points, not {sorted(unknown)}")
        return [RatePoint(self, self._inner_encoder(q).rate, quality=q) for q in (qualities or self.qualities)]

    def compress(self, x: torch.Tensor, quality=None) -> list[bytes]:
        encoder = self._inner_encoder(self.rate if quality is None else quality)
        return [encoder.encode(self.compact(x)[0].clamp(0, 1))]

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if len(sections) != 1:
            raise CodecError(f"{self.name} stream must have 1 section (the inner file), got {len(sections)}")
        decoded = self._inner_decode(sections[0], height // 2, width // 2).to(self.device)
        return self.reconstruct(decoded[None])
