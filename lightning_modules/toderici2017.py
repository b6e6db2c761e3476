"""Toderici et al.: Full resolution image compression with recurrent neural networks (CVPR 2017),
and its raw-bits predecessor (Variable rate image compression with RNNs, ICLR 2016).

- Architecture (2017, Fig. 1 and §3 "Models", the LSTM variant): E-Conv 3×3/2; three E-RNN ConvLSTMs
  (3×3/2 input, 1×1 hidden); binarizer 1×1 conv → ``bits`` channels, tanh, sign; decoder 1×1
  conv, four D-RNN ConvLSTMs (3×3 input; hidden 1×1, 1×1, 3×3, 3×3) each followed by
  depth-to-space ×2, 1×1 conv → RGB. Widths are configurable (paper widths in conf/model).
- Coding computes each recurrent unit's gates, and the output layer, ``band_rows`` image rows at a time,
  updating the whole-image states in place: the memory of the gates is a band's. At 64 rows the values are
  the ones the whole image at once gives (``band_rows: null``), bit for bit; oneDNN sums bands of a few rows
  in another order, so encoder and decoder always band alike.
- Binarizer (2016, binarization): stochastic sign in training, P(+1) = (1 + x) / 2 with the identity
  gradient; deterministic sign in eval mode (``.eval()`` switches it off).
- Residual iterations (2017 §3, reconstruction framework): b_t = B(E_t(r_{t−1})), x̂_t = D_t(b_t) + γ·x̂_{t−1},
  r_t = x − x̂_t; ``reconstruction`` one-shot (γ = 0) or additive (γ = 1). The encoder runs the
  decoder inside its loop; RNN states start at zero per image. ``bits`` per 16×16 block per
  iteration: 32 bits = 0.125 bpp; the rate point is the iteration count k (1..``max_iterations``).
- Loss (2017 §3): L1 of the residuals averaged over iterations, plus ``bce_weight`` × the
  cross-entropy (bits per bit) of the entropy model on detached bits.
- Bitstreams: ``raw`` packs the bits (2016: exactly ``bits`` per block per iteration);
  ``rans`` codes them with compressai's rANS coder from learned probabilities (the idea of 2017
  §4, entropy coding, with a lighter model than its BinaryRNN; ``entropy.BitContextModel``):
  logit = bias[iteration, channel] + a small conv net on the 3×3 neighbourhood of the previous
  iteration's bits. Probabilities are quantized to ``prob_levels`` levels, each a fixed binary CDF
  of 16-bit precision.

Assumptions (configurable unless noted): images are centred (x̂_0 = ½, so r_0 = x − ½, the
paper's x̂_0 = 0 in centred units); the decoder's output is tanh(·)/2 (not configurable); the
entropy model learns from the bits eval would emit (sign of the binarizer's tanh) along the
training trajectory; the 2017 paper's scaled-additive variant, GRU variants and spatially
adaptive bit allocation are not implemented; stride 16, the network's own downsampling;
``init_gain``: the paper does not give its initialization; with PyTorch's default the LSTM
stacks shrink the signal ~100× and the bits start as input-independent noise, so the network
convs start from N(0, gain²/fan_in) with zero biases (null: PyTorch's default).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from licbench.core.bitstream import Container
from licbench.core.codec import CodecError, RatePoint
from licbench.core.metrics import psnr
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.entropy import BitContextModel
from licbench.lightning_modules.layers import ConvLSTM, straight_through

KINDS = ("raw", "rans")


class Toderici2017(LearnedCodec):
    name = "toderici2017"
    stride = 16

    def __init__(self, encoder_channels: list = (64, 256, 512, 512), decoder_channels: list = (512, 512, 256, 128),
                 decoder_hidden_kernels: list = (1, 1, 3, 3), bits: int = 32, reconstruction: str = "oneshot",
                 max_iterations: int = 16, train_iterations: int = 16, context_channels: int = 32,
                 prob_levels: int = 64, bce_weight: float = 1.0, init_gain: float | None = 2.0, lr: float = 5e-4,
                 max_pixels: int = 16_000_000, band_rows: int | None = 64, **training):
        super().__init__(lr=lr, **training)
        if len(encoder_channels) != 4 or len(decoder_channels) != 4 or any(c % 4 for c in decoder_channels):
            raise CodecError("encoder_channels and decoder_channels: 4 widths each, decoder widths divisible by 4")
        if reconstruction not in ("oneshot", "additive"):
            raise CodecError(f"reconstruction must be 'oneshot' or 'additive', not {reconstruction!r}")
        e, d, k = list(encoder_channels), list(decoder_channels), list(decoder_hidden_kernels)
        self.encoder = nn.ModuleList([  # 2017 Fig. 1
            nn.Conv2d(3, e[0], 3, 2, 1),  # E-Conv
            ConvLSTM(e[0], e[1], 2),  # E-RNN ×3
            ConvLSTM(e[1], e[2], 2),
            ConvLSTM(e[2], e[3], 2),
        ])
        self.binarizer = nn.Conv2d(e[3], bits, 1)  # then tanh and sign
        self.decoder = nn.ModuleList([
            nn.Conv2d(bits, d[0], 1),
            ConvLSTM(d[0], d[0], 1, k[0]),  # D-RNN ×4, each followed by depth-to-space ×2
            ConvLSTM(d[0] // 4, d[1], 1, k[1]),
            ConvLSTM(d[1] // 4, d[2], 1, k[2]),
            ConvLSTM(d[2] // 4, d[3], 1, k[3]),
        ])
        self.output = nn.Conv2d(d[3] // 4, 3, 1)
        if init_gain:  # N(0, gain² / fan_in), zero biases: the signal survives the LSTM stacks at the start
            for conv in (m for m in self.modules() if isinstance(m, nn.Conv2d)):
                nn.init.normal_(conv.weight, std=init_gain / np.sqrt(conv.weight[0].numel()))
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        self.entropy_model = BitContextModel(bits, max_iterations, context_channels, prob_levels)

    @staticmethod
    def renamed_weights(state_dict: dict) -> dict:
        """Checkpoints written before the entropy model was a module of its own hold its weights at the
        top level (``bit_bias``, ``context.*``)."""
        moved = ("bit_bias", "context.")
        return {f"entropy_model.{key}" if key.startswith(moved) else key: value for key, value in state_dict.items()}

    @property
    def rate(self) -> int:
        return self.hparams.max_iterations

    # --- the network --------------------------------------------------------------------
    def _binarize(self, a: torch.Tensor) -> torch.Tensor:
        """The sign of ``a``; in training a sample with P(+1) = (1 + a) / 2, identity gradient (2016)."""
        if not self.training:
            return torch.where(a >= 0, 1.0, -1.0)
        return straight_through(a, torch.where(torch.rand_like(a) < (1 + a) / 2, 1.0, -1.0))

    def _rows(self, stride: int) -> int | None:
        """Rows per band of a recurrent unit at ``stride``: ``band_rows`` rows of the image (None: all)."""
        return self.hparams.band_rows and max(self.hparams.band_rows // stride, 1)

    def _encode_step(self, r: torch.Tensor, states: list) -> torch.Tensor:
        h = self.encoder[0](r)
        for i, rnn in enumerate(self.encoder[1:]):  # at strides 4, 8, 16
            states[i] = rnn(h, states[i], self._rows(4 << i))
            h = states[i][0]
        return torch.tanh(self.binarizer(h))

    def _decode_step(self, b: torch.Tensor, states: list, x_hat: torch.Tensor) -> torch.Tensor:
        h = self.decoder[0](b)
        for i, rnn in enumerate(self.decoder[1:-1]):  # at strides 16, 8, 4
            states[i] = rnn(h, states[i], self._rows(16 >> i))
            h = F.pixel_shuffle(states[i][0], 2)
        rows, additive = self._rows(2), self.hparams.reconstruction == "additive"
        states[-1] = self.decoder[-1](h, states[-1], rows)
        if rows is None or torch.is_grad_enabled():
            return self._reconstruct(states[-1][0], x_hat if additive else 0.5)
        out = torch.empty_like(x_hat)
        for top in range(0, states[-1][0].shape[2], rows):  # the last depth-to-space and the output, in bands
            band = slice(2 * top, 2 * (top + rows))
            out[:, :, band] = self._reconstruct(states[-1][0][:, :, top:top + rows],
                                                x_hat[:, :, band] if additive else 0.5)
        return out

    def _reconstruct(self, h: torch.Tensor, previous: torch.Tensor | float) -> torch.Tensor:
        """x̂_t from the last D-RNN's h and x̂_{t−1} (additive) or ½ (one-shot)."""
        return torch.tanh(self.output(F.pixel_shuffle(h, 2))) / 2 + previous

    def forward(self, x: torch.Tensor, iterations: int | None = None, bitstream: str = "rans") -> dict:
        """Training: ``train_iterations`` (stochastic bits); eval: k = ``iterations`` (default: all)."""
        k = iterations or (self.hparams.train_iterations if self.training else self.hparams.max_iterations)
        encoder, decoder = [None] * 3, [None] * 4  # states start at zero per image
        x_hat, previous = torch.full_like(x, 0.5), None
        steps, residuals, bits, logits = [], [], [], []
        for t in range(k):
            a = self._encode_step(x - x_hat, encoder)
            signs = torch.where(a >= 0, 1.0, -1.0).detach()  # the bits eval emits
            logits.append(self.entropy_model(previous, t, signs.shape))
            x_hat = self._decode_step(self._binarize(a), decoder, x_hat)
            steps.append(x_hat)
            residuals.append((x - x_hat).abs().mean())
            bits.append(signs)
            previous = signs
        bits, logits = torch.cat(bits, 1), torch.cat(logits, 1)
        p = torch.full_like(bits, 0.5) if bitstream == "raw" else torch.sigmoid(logits * bits)
        return {"x_hat": x_hat, "steps": steps, "residuals": torch.stack(residuals), "bits": bits, "logits": logits,
                "likelihoods": {"bits": p}}

    # --- training -----------------------------------------------------------------------
    def rd_loss(self, x: torch.Tensor, out: dict) -> dict:
        """L1 of the residuals averaged over iterations + bce_weight · entropy-model cross-entropy."""
        l1 = out["residuals"].mean()
        bce = F.binary_cross_entropy_with_logits(out["logits"], (out["bits"] > 0).float()) / np.log(2)
        return {"loss": l1 + self.hparams.bce_weight * bce, "l1": l1, "bits_per_bit": bce,
                "bpp": bce * out["bits"][0].numel() / (x.shape[2] * x.shape[3])}

    def validation_step(self, batch, batch_idx):
        out = self(batch, iterations=self.hparams.train_iterations)
        logs = {f"val/{k}": v for k, v in self.rd_loss(batch, out).items()}
        for k in (2, 4, 8, 16):
            if k <= self.hparams.train_iterations:
                x_hat = out["steps"][k - 1].clamp(0, 1)
                logs[f"val/psnr_{k}"] = sum(psnr(a, b) for a, b in zip(batch, x_hat)) / len(batch)
        self.log_dict(logs, prog_bar=True, batch_size=len(batch))

    # --- rate points and bitstreams -----------------------------------------------------
    def rate_points(self, iterations: list | None = None, bitstream: str = "rans") -> list:
        """One rate point per iteration count k (label k), all with the ``bitstream`` kind."""
        iterations = list(iterations or range(1, self.hparams.max_iterations + 1))
        for k in iterations:
            self._check_setting(k, bitstream)
        return [RatePoint(self, k, iterations=k, bitstream=bitstream) for k in iterations]

    def _check_setting(self, k, kind) -> None:
        if kind not in KINDS:
            raise CodecError(f"{self.name}: bitstream must be one of {KINDS}, not {kind!r}")
        if not (isinstance(k, int) and 1 <= k <= self.hparams.max_iterations):
            raise CodecError(f"{self.name}: iterations must be an integer in "
                             f"1..{self.hparams.max_iterations}, not {k!r}")

    def _check_size(self, height: int, width: int) -> None:
        """The LSTM states cover the whole image (~0.17 GB per megapixel at the CPU recipe's widths, the
        gates only a band of ``band_rows``: ``python -m licbench.tools.toderici_speed --large``), so larger
        images are refused."""
        if height * width > self.hparams.max_pixels:
            raise CodecError(f"{self.name}: a {height}x{width} image is over this model's limit of "
                             f"{self.hparams.max_pixels} pixels (model.max_pixels)")

    def compress(self, x: torch.Tensor, iterations: int | None = None, bitstream: str = "rans") -> list[bytes]:
        k = iterations or self.hparams.max_iterations
        self._check_setting(k, bitstream)
        self._check_size(*x.shape[-2:])
        encoder, decoder, x_hat, bits = [None] * 3, [None] * 4, torch.full_like(x, 0.5), []
        for t in range(k):  # forward's bits, keeping no more than the states and the last reconstruction
            bits.append(torch.where(self._encode_step(x - x_hat, encoder) >= 0, 1.0, -1.0))
            if t + 1 < k:
                x_hat = self._decode_step(bits[-1], decoder, x_hat)
        bits = torch.cat(bits, 1)  # [1, k·bits, h, w]: iteration-major, a progressive prefix
        if bitstream == "raw":
            payload = np.packbits((bits > 0).to(torch.uint8).flatten().cpu().numpy()).tobytes()
        else:
            payload = self.entropy_model.encode(bits)
        return [bytes([KINDS.index(bitstream), k]), payload]

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        decoder, x_hat = [None] * 4, torch.full((1, 3, height, width), 0.5, device=self.device)
        for b in self._bits(sections, height, width)[1]:
            x_hat = self._decode_step(b, decoder, x_hat)
        return x_hat

    @torch.no_grad()
    def estimate_bits(self, x: torch.Tensor, data: bytes | None = None, **setting) -> float:
        """The entropy model's estimate; given ``x``'s stream ``data``, read off its bits — the ones a
        forward pass emits — at the cost of an entropy decode instead of another run of the networks."""
        if data is None:
            return super().estimate_bits(x, **setting)
        container = Container.from_bytes(data)
        pad = self._padding(container.height, container.width)
        kind, bits = self._bits(container.sections, container.height + pad[3], container.width + pad[1])
        if kind == "raw":
            return float(sum(b.numel() for b in bits))
        logits = [self.entropy_model(bits[t - 1] if t else None, t, b.shape) for t, b in enumerate(bits)]
        return -torch.log2(torch.sigmoid(torch.cat(logits, 1) * torch.cat(bits, 1))).sum().item()

    def _bits(self, sections: list[bytes], height: int, width: int) -> tuple[str, list[torch.Tensor]]:
        """The bitstream kind and the bits ±1 of each iteration of a stream's sections, validated."""
        if len(sections) != 2 or len(sections[0]) != 2:
            raise CodecError(f"{self.name} stream must have a 2-byte setting section and a payload")
        kind, k = sections[0]
        if kind >= len(KINDS):
            raise CodecError(f"{self.name} stream has unknown bitstream kind {kind}")
        self._check_setting(k, KINDS[kind])
        self._check_size(height, width)
        shape = (1, self.hparams.bits, height // self.stride, width // self.stride)
        if kind == 0:
            return KINDS[kind], self._raw_bits(sections[1], k, shape)
        return KINDS[kind], self.entropy_model.decode(sections[1], k, shape, self.name)

    def _raw_bits(self, payload: bytes, k: int, shape: tuple) -> list[torch.Tensor]:
        n = k * int(np.prod(shape))
        if len(payload) != (n + 7) // 8:
            raise CodecError(f"raw payload of {len(payload)} bytes; {k} iterations need {(n + 7) // 8}")
        symbols = np.unpackbits(np.frombuffer(payload, np.uint8), count=n).reshape(k, *shape)
        return [torch.from_numpy(s).float().to(self.device) * 2 - 1 for s in symbols]
