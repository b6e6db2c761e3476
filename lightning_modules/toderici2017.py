"""Toderici et al.: Full resolution image compression with recurrent neural networks (CVPR 2017),
and its raw-bits predecessor (Variable rate image compression with RNNs, ICLR 2016).

- Architecture (2017, Fig. 1 and §3 "Models", the LSTM variant): E-Conv 3×3/2; three E-RNN ConvLSTMs
  (3×3/2 input, 1×1 hidden); binarizer 1×1 conv → ``bits`` channels, tanh, sign; decoder 1×1
  conv, four D-RNN ConvLSTMs (3×3 input; hidden 1×1, 1×1, 3×3, 3×3) each followed by
  depth-to-space ×2, 1×1 conv → RGB. Widths are configurable (paper widths in conf/model).
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
  §4, entropy coding, with a lighter model than its BinaryRNN): logit = bias[iteration, channel] + a small conv
  net on the 3×3 neighbourhood of the previous iteration's bits. Probabilities are quantized to
  ``prob_levels`` levels, each a fixed binary CDF of 16-bit precision.

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
from compressai.ans import RansDecoder, RansEncoder
from torch import nn
from torch.func import functional_call

from licbench.codec import CodecError
from licbench.lightning_modules.base import LearnedCodec, RatePoint, zero_padded
from licbench.metrics import psnr

KINDS = ("raw", "rans")
PRECISION = 16  # rANS CDF precision (compressai's coder)


class ConvLSTM(nn.Module):
    """A convolutional LSTM cell: gates from a (strided) conv of the input plus a conv of h."""

    def __init__(self, inputs: int, hidden: int, stride: int = 1, hidden_kernel: int = 1):
        super().__init__()
        self.input = nn.Conv2d(inputs, 4 * hidden, 3, stride, 1)
        self.hidden = nn.Conv2d(hidden, 4 * hidden, hidden_kernel, 1, hidden_kernel // 2, bias=False)

    def forward(self, x: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, torch.Tensor]:
        gates = self.input(x) if state is None else self.input(x) + self.hidden(state[0])
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g)
        if state is not None:
            c = c + torch.sigmoid(f) * state[1]
        return torch.sigmoid(o) * torch.tanh(c), c


class Toderici2017(LearnedCodec):
    name = "toderici2017"
    stride = 16

    def __init__(self, encoder_channels: list = (64, 256, 512, 512), decoder_channels: list = (512, 512, 256, 128),
                 decoder_hidden_kernels: list = (1, 1, 3, 3), bits: int = 32, reconstruction: str = "oneshot",
                 max_iterations: int = 16, train_iterations: int = 16, context_channels: int = 32,
                 prob_levels: int = 64, bce_weight: float = 1.0, init_gain: float | None = 2.0, lr: float = 5e-4,
                 max_pixels: int = 16_000_000, **training):
        super().__init__(lr=lr, **training)
        if len(encoder_channels) != 4 or len(decoder_channels) != 4 or any(c % 4 for c in decoder_channels):
            raise ValueError("encoder_channels and decoder_channels: 4 widths each, decoder widths divisible by 4")
        if reconstruction not in ("oneshot", "additive"):
            raise ValueError(f"reconstruction must be 'oneshot' or 'additive', not {reconstruction!r}")
        e, d = list(encoder_channels), list(decoder_channels)
        self.encoder = nn.ModuleList([nn.Conv2d(3, e[0], 3, 2, 1)] + [ConvLSTM(a, b, 2) for a, b in zip(e, e[1:])])
        self.binarizer = nn.Conv2d(e[-1], bits, 1)
        self.decoder = nn.ModuleList([nn.Conv2d(bits, d[0], 1)] + [
            ConvLSTM(a, b, 1, k) for a, b, k in zip([d[0]] + [c // 4 for c in d[:-1]], d, decoder_hidden_kernels)])
        self.output = nn.Conv2d(d[-1] // 4, 3, 1)
        if init_gain:  # N(0, gain² / fan_in), zero biases: the signal survives the LSTM stacks at the start
            for conv in (m for m in self.modules() if isinstance(m, nn.Conv2d)):
                nn.init.normal_(conv.weight, std=init_gain / np.sqrt(conv.weight[0].numel()))
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        self.bit_bias = nn.Parameter(torch.zeros(max_iterations, bits))
        self.context = nn.Sequential(nn.Conv2d(bits, context_channels, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(context_channels, bits, 1)) if context_channels else None
        if self.context is not None:
            nn.init.zeros_(self.context[-1].weight)
            nn.init.zeros_(self.context[-1].bias)
        freq = (((torch.arange(prob_levels, dtype=torch.float64) + 0.5) / prob_levels * 2**PRECISION).round()
                .clamp(1, 2**PRECISION - 2).long())  # P(1) of each level; the overflow symbol keeps 1
        self._cdfs = [[0, 2**PRECISION - 1 - f, 2**PRECISION - 1, 2**PRECISION] for f in freq.tolist()]
        self._min_bits = -np.log2(max(freq.max().item(), 2**PRECISION - 1 - freq.min().item()) / 2**PRECISION)

    @property
    def rate(self) -> int:
        return self.hparams.max_iterations

    # --- the network --------------------------------------------------------------------
    def _binarize(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return torch.where(a >= 0, 1.0, -1.0)
        sample = torch.where(torch.rand_like(a) < (1 + a) / 2, 1.0, -1.0)
        return a + (sample - a).detach()

    def _encode_step(self, r: torch.Tensor, states: list) -> torch.Tensor:
        h = self.encoder[0](r)
        for i, rnn in enumerate(self.encoder[1:]):
            states[i] = rnn(h, states[i])
            h = states[i][0]
        return torch.tanh(self.binarizer(h))

    def _decode_step(self, b: torch.Tensor, states: list, x_hat: torch.Tensor) -> torch.Tensor:
        h = self.decoder[0](b)
        for i, rnn in enumerate(self.decoder[1:]):
            states[i] = rnn(h, states[i])
            h = F.pixel_shuffle(states[i][0], 2)
        out = torch.tanh(self.output(h)) / 2
        return out + (x_hat if self.hparams.reconstruction == "additive" else 0.5)

    def _logits(self, previous: torch.Tensor | None, t: int, shape: torch.Size,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Logits of P(bit = +1) at iteration ``t`` given the bits of iteration ``t − 1``, in ``dtype``."""
        logits = self.bit_bias[t].to(dtype)[None, :, None, None].expand(shape)
        if self.context is not None and previous is not None:
            weights = {name: p.to(dtype) for name, p in self.context.named_parameters()}
            logits = logits + functional_call(self.context, weights, (previous.to(dtype),))
        return logits

    def forward(self, x: torch.Tensor, iterations: int | None = None, bitstream: str = "rans") -> dict:
        """Training: ``train_iterations`` (stochastic bits); eval: k = ``iterations`` (default: all)."""
        k = iterations or (self.hparams.train_iterations if self.training else self.hparams.max_iterations)
        encoder, decoder = [None] * 3, [None] * 4  # states start at zero per image
        x_hat, previous = torch.full_like(x, 0.5), None
        steps, residuals, bits, logits = [], [], [], []
        for t in range(k):
            a = self._encode_step(x - x_hat, encoder)
            signs = torch.where(a >= 0, 1.0, -1.0).detach()  # the bits eval emits
            logits.append(self._logits(previous, t, signs.shape))
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
                logs[f"val/psnr_{k}"] = sum(psnr(a, b) for a, b in zip(batch, out["steps"][k - 1].clamp(0, 1))) / len(batch)
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
            raise CodecError(f"{self.name}: iterations must be an integer in 1..{self.hparams.max_iterations}, not {k!r}")

    def _indexes(self, previous: torch.Tensor | None, t: int, shape: torch.Size) -> list[int]:
        """The CDF level of every bit of iteration ``t``: the context model in float64. Encoder and
        decoder run it on different tensors, and float32 convolutions can differ in the last bits
        between calls (seen on Kodak: a 5e-6 logit difference moved one bit of 49,152 to the next
        level, and the stream did not decode); in float64 a level boundary is practically never crossed."""
        logits = self._logits(previous, t, shape, torch.float64)
        levels = self.hparams.prob_levels
        return (torch.sigmoid(logits) * levels).floor().clamp(0, levels - 1).int().flatten().tolist()

    def _rans(self, symbols: list[int], indexes: list[int]) -> bytes:
        n = len(self._cdfs)
        return RansEncoder().encode_with_indexes(symbols, indexes, self._cdfs, [4] * n, [0] * n)

    def _check_size(self, height: int, width: int) -> None:
        """The RNN is not tiled: its LSTM states cover the whole image (0.67 GB per megapixel with
        the CPU recipe's widths, results/robustness/odd_images.md), so larger images are refused."""
        if height * width > self.hparams.max_pixels:
            raise CodecError(f"{self.name}: a {height}x{width} image is over this model's limit of "
                             f"{self.hparams.max_pixels} pixels (model.max_pixels; its LSTM states are not tiled)")

    def compress(self, x: torch.Tensor, iterations: int | None = None, bitstream: str = "rans") -> list[bytes]:
        k = iterations or self.hparams.max_iterations
        self._check_setting(k, bitstream)
        self._check_size(*x.shape[-2:])
        out = self(x, iterations=k)
        symbols = (out["bits"] > 0).to(torch.uint8)  # [1, k·bits, h, w]: iteration-major, a progressive prefix
        if bitstream == "raw":
            payload = np.packbits(symbols.flatten().cpu().numpy()).tobytes()
        else:
            bits = out["bits"].split(self.hparams.bits, 1)
            indexes = [i for t in range(k) for i in self._indexes(bits[t - 1] if t else None, t, bits[t].shape)]
            payload = self._rans(symbols.flatten().tolist(), indexes)
        return [bytes([KINDS.index(bitstream), k]), payload]

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if len(sections) != 2 or len(sections[0]) != 2:
            raise CodecError(f"{self.name} stream must have a 2-byte setting section and a payload")
        kind, k = sections[0]
        if kind >= len(KINDS):
            raise CodecError(f"{self.name} stream has unknown bitstream kind {kind}")
        self._check_setting(k, KINDS[kind])
        self._check_size(height, width)
        shape = (1, self.hparams.bits, height // self.stride, width // self.stride)
        bits = (self._raw_bits if kind == 0 else self._rans_bits)(sections[1], k, shape)
        decoder, x_hat = [None] * 4, torch.full((1, 3, height, width), 0.5, device=self.device)
        for b in bits:
            x_hat = self._decode_step(b, decoder, x_hat)
        return x_hat

    def _raw_bits(self, payload: bytes, k: int, shape: tuple) -> list[torch.Tensor]:
        n = k * int(np.prod(shape))
        if len(payload) != (n + 7) // 8:
            raise CodecError(f"raw payload of {len(payload)} bytes; {k} iterations need {(n + 7) // 8}")
        symbols = np.unpackbits(np.frombuffer(payload, np.uint8), count=n).reshape(k, *shape)
        return [torch.from_numpy(s).float().to(self.device) * 2 - 1 for s in symbols]

    def _rans_bits(self, payload: bytes, k: int, shape: tuple) -> list[torch.Tensor]:
        n_cdfs, per_iteration = len(self._cdfs), int(np.prod(shape))
        if 8 * len(payload) + 64 < k * per_iteration * self._min_bits:  # before any work: bounds a forged size
            raise CodecError(f"rANS payload of {len(payload)} bytes is too short for {k} iterations of this image size")
        decoder = RansDecoder()
        decoder.set_stream(zero_padded(payload, k * per_iteration))
        bits, symbols, indexes, previous = [], [], [], None
        for t in range(k):
            index = self._indexes(previous, t, shape)
            decoded = decoder.decode_stream(index, self._cdfs, [4] * n_cdfs, [0] * n_cdfs)
            if any(s not in (0, 1) for s in decoded):
                raise CodecError(f"corrupt rANS payload: iteration {t + 1} decodes to non-binary symbols")
            previous = torch.tensor(decoded, dtype=torch.float32, device=self.device).reshape(shape) * 2 - 1
            bits.append(previous)
            symbols += decoded
            indexes += index
        if self._rans(symbols, indexes) != payload:  # a valid stream is exactly the coding of its bits
            raise CodecError(f"corrupt rANS payload: its {len(payload)} bytes are not the coding of {k} iterations")
        return bits
