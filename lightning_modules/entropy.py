"""Entropy models of the methods, and the guards on the rANS sections they decode.

All coding is CompressAI's rANS coder (16-bit CDFs). rANS decodes any bytes, so a decoder here
refuses a section unless it is exactly what the encoder writes for the symbols it decodes to:

- :func:`check_length` before decoding: a section too short for the symbols of the stream's image
  size (a forged size) is refused before any work is spent on it (:func:`least_bits`,
  :func:`fewest_bits`: the fewest bits rANS can code the symbols in);
- :func:`zero_padded`: trailing zero words for the decoder, whose reads have no bounds check;
- :func:`check_range`: decoded symbols beyond ±:data:`MAX_CODE` (encoders clamp to it);
- :func:`check_recoded`: the coder is canonical, so a truncated, extended or forged section re-codes
  differently from itself.

:func:`histogram_tables` and :func:`frequency_tables` write and read the side information of symbols
coded with their own histogram (FMM's codes, the product quantizer's assignments): a u16 frequency
per symbol and table, validated before it is used.

:func:`decode_canonical` applies them to any ``EntropyModel`` given the CDF index of every symbol
(``GaussianConditional``, :class:`GaussianScaleMixture`); :func:`decode_bottleneck` to an
``EntropyBottleneck`` section, decoded by ``EntropyBottleneck.decompress`` as CompressAI's models do.

Entropy models beyond CompressAI's:

- :class:`GaussianScaleMixture`: Theis et al. 2017 (§2.2, §3.2), a zero-mean GSM per code channel.
- :class:`BitContextModel`: the probabilities of Toderici et al.'s binary codes, iteration by iteration.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from compressai.ans import RansDecoder, RansEncoder
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf
from torch import nn
from torch.func import functional_call

from licbench.core.codec import CodecError
from licbench.lightning_modules.layers import straight_through

PRECISION = 16  # CompressAI's rANS coder: a CDF's frequencies sum to 2^16
MAX_CODE = 2**15  # |symbol| a rANS section may carry: encoders clamp to it, decoders refuse more


# --- guards on rANS sections --------------------------------------------------------------
def zero_padded(section: bytes, symbols: int) -> bytes:
    """A rANS section with trailing zero words for the decoder to read into.

    CompressAI's rANS decoder reads 32-bit words with no bounds check; a hostile or
    truncated section would make it read past the buffer. Appending zeros — which a valid
    stream never reaches — bounds every read: each symbol takes at most one renormalisation
    word, bypass-coded values end on zero nibbles, and garbage consumes at most its own length.
    """
    return bytes(section) + bytes(8 * (len(section) + symbols) + 64)


def fewest_bits(cdfs, precision: int = PRECISION) -> torch.Tensor:
    """Per quantized CDF (rows of ``cdfs``): the fewest bits a symbol coded with it costs,
    −log₂ of its largest probability."""
    cdfs = torch.as_tensor(cdfs).long()
    largest = (cdfs[:, 1:] - cdfs[:, :-1]).amax(dim=1).clamp(min=1)
    return precision - torch.log2(largest.double())


def least_bits(entropy_model: EntropyModel, indexes: torch.Tensor) -> float:
    """The fewest bits rANS can code symbols of these CDF ``indexes`` of ``entropy_model`` in."""
    cost = fewest_bits(entropy_model.quantized_cdf, entropy_model.entropy_coder_precision)
    return float(torch.bincount(indexes.flatten(), minlength=len(cost)).double() @ cost)


def check_length(section: bytes, bits: float, symbols: int, name: str) -> None:
    """Refuse a section shorter than ``bits``, the fewest its ``symbols`` can be coded in (less the
    coder's 64-bit flush), before decoding: a forged image size costs no work."""
    if 8 * len(section) + 64 < bits:
        raise CodecError(f"corrupt {name} stream: {len(section)} bytes are too few to code {symbols} symbols")


def check_range(symbols: torch.Tensor, name: str) -> None:
    """Refuse symbols beyond ±MAX_CODE before re-coding them: CompressAI's encoder never returns on
    the extreme values garbage can decode to."""
    if symbols.abs().max() > MAX_CODE:
        raise CodecError(f"corrupt {name} stream: code values beyond ±{MAX_CODE}")


def check_recoded(section: bytes, recoded: bytes, name: str) -> None:
    """Refuse a section unless it is ``recoded``, the rANS coding of the symbols it decoded to."""
    if recoded != section:
        raise CodecError(f"corrupt {name} stream: the section is not the rANS coding of what it decodes to")


def decode_canonical(entropy_model: EntropyModel, section: bytes, indexes: torch.Tensor, name: str) -> torch.Tensor:
    """The integer symbols of a section of ``entropy_model`` with CDF ``indexes``, through all the guards."""
    check_length(section, least_bits(entropy_model, indexes), indexes.numel(), name)
    # the class's own decompress: compressai_models routes a wrapped network's calls of the instance's here
    symbols = type(entropy_model).decompress(entropy_model, [zero_padded(section, indexes.numel())], indexes)
    check_range(symbols, name)
    check_recoded(section, entropy_model.compress(symbols, indexes)[0], name)
    return symbols


def decode_bottleneck(bottleneck: EntropyBottleneck, section: bytes, size: tuple[int, int], name: str) -> torch.Tensor:
    """ŷ ``[1, C, *size]`` of one image's section: ``EntropyBottleneck.decompress`` (the symbols plus
    each channel's median), through the guards of :func:`decode_canonical`."""
    indexes = channel_indexes((1, bottleneck.channels, *size), bottleneck.quantized_cdf.device)
    check_length(section, least_bits(bottleneck, indexes), indexes.numel(), name)
    y_hat = type(bottleneck).decompress(bottleneck, [zero_padded(section, indexes.numel())], size)  # as above
    check_range(torch.round(y_hat - bottleneck.quantiles[:, :, 1:2].detach()), name)  # the medians
    check_recoded(section, bottleneck.compress(y_hat)[0], name)
    return y_hat


def histogram_tables(counts: np.ndarray) -> tuple[bytes, list[list[int]]]:
    """Side information and rANS CDFs of symbols 0..n−1 coded with their own histogram: ``counts``
    ``[tables, n]`` quantized to 16-bit CDFs (compressai's ``pmf_to_quantized_cdf``, every symbol
    and the escape at least 1), sent as a big-endian u16 frequency per symbol (the escape's implied)."""
    pmfs = counts / counts.sum(axis=1, keepdims=True)
    cdfs = [pmf_to_quantized_cdf(torch.tensor([*pmf, 0.0]), PRECISION).tolist() for pmf in pmfs]
    return np.diff(np.array(cdfs)[:, :-1], axis=1).astype(">u2").tobytes(), cdfs


def frequency_tables(section: bytes, tables: int, count: int, name: str) -> tuple[list[list[int]], list[int]]:
    """The CDFs and lengths of a :func:`histogram_tables` section of ``tables`` × ``count`` symbols,
    refused unless every frequency is ≥ 1 and each table's sum leaves the escape ≥ 1."""
    if len(section) != tables * count * 2:
        raise CodecError(f"{name} frequency table is {len(section)} bytes, {tables} x {count} codes need "
                         f"{tables * count * 2}")
    freqs = np.frombuffer(section, ">u2").reshape(tables, count).astype(np.int64)
    escape = (1 << PRECISION) - freqs.sum(axis=1)
    if freqs.min() < 1 or escape.min() < 1:
        raise CodecError(f"{name} frequency table is invalid: every frequency must be >= 1, summing to "
                         f"under 2^{PRECISION}")
    cdfs = np.concatenate([np.zeros((tables, 1), np.int64), np.cumsum(np.hstack([freqs, escape[:, None]]), 1)], 1)
    return cdfs.tolist(), [count + 2] * tables


def channel_indexes(shape, device=None) -> torch.Tensor:
    """CDF indexes of a ``[B, C, ...]`` tensor coded with one table per channel: each coefficient's channel."""
    view = (1, -1) + (1,) * (len(shape) - 2)
    return torch.arange(shape[1], dtype=torch.int32, device=device).view(view).expand(shape)


# --- Theis et al. 2017: Gaussian scale mixture ----------------------------------------------
class GaussianScaleMixture(EntropyModel):
    """Per-channel zero-mean GSM (Theis et al. 2017, §2.2 and §3.2): the density q of ẑ + u in
    training (the paper's bound ``E_u[−log₂ q(ẑ + u)]``), the mass on each integer at test time, and
    the rANS tables ``update()`` quantizes from those masses, in buffers sized as the loaded weights'."""

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
        """Rounded code (straight-through, §2.1) and its likelihoods: density of ẑ + u in training, mass at test."""
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
        return channel_indexes(shape, self.offset.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("_quantized_cdf", "_offset", "_cdf_length"):  # tables of the loaded weights' size
            if prefix + name in state_dict:
                getattr(self, name).resize_(state_dict[prefix + name].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# --- Toderici et al.: probabilities of the bits of each iteration --------------------------
class BitContextModel(nn.Module):
    """The entropy model of Toderici et al.'s binary codes: the idea of the 2017 paper's §4 (entropy
    coding) with a lighter model than its BinaryRNN. The logit of P(bit = +1) at iteration t is
    ``bit_bias[t, channel]`` plus a small conv net on the 3×3 neighbourhood of iteration t − 1's bits
    (none for the first iteration, or with ``context_channels`` 0). For coding, probabilities are
    quantized to ``levels`` levels, each a fixed binary CDF of 16-bit precision for CompressAI's rANS."""

    def __init__(self, bits: int, iterations: int, context_channels: int = 32, levels: int = 64):
        super().__init__()
        self.bits, self.levels = bits, levels
        self.bit_bias = nn.Parameter(torch.zeros(iterations, bits))
        self.context = nn.Sequential(
            nn.Conv2d(bits, context_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(context_channels, bits, 1),
        ) if context_channels else None
        if self.context is not None:  # it starts as the bias alone
            nn.init.zeros_(self.context[-1].weight)
            nn.init.zeros_(self.context[-1].bias)
        one = 2**PRECISION
        freq = (((torch.arange(levels, dtype=torch.float64) + 0.5) / levels * one).round()
                .clamp(1, one - 2).long())  # P(1) of each level; the overflow symbol keeps 1
        self.cdfs = [[0, one - 1 - f, one - 1, one] for f in freq.tolist()]
        self.least_bits = float(fewest_bits(self.cdfs).min())  # per bit, at the most skewed level

    def forward(self, previous: torch.Tensor | None, t: int, shape: torch.Size,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Logits of P(bit = +1) at iteration ``t`` given the bits of iteration ``t − 1``, in ``dtype``."""
        logits = self.bit_bias[t].to(dtype)[None, :, None, None].expand(shape)
        if self.context is not None and previous is not None:
            weights = {name: p.to(dtype) for name, p in self.context.named_parameters()}
            logits = logits + functional_call(self.context, weights, (previous.to(dtype),))
        return logits

    def _indexes(self, previous: torch.Tensor | None, t: int, shape: torch.Size) -> list[int]:
        """The CDF level of every bit of iteration ``t``: the context model in float64. Encoder and
        decoder run it on different tensors, and float32 convolutions can differ in the last bits
        between calls (seen on Kodak: a 5e-6 logit difference moved one bit of 49,152 to the next
        level, and the stream did not decode); in float64 a level boundary is practically never crossed."""
        logits = self(previous, t, shape, torch.float64)
        return (torch.sigmoid(logits) * self.levels).floor().clamp(0, self.levels - 1).int().flatten().tolist()

    def _rans(self, symbols: list[int], indexes: list[int]) -> bytes:
        n = len(self.cdfs)
        return RansEncoder().encode_with_indexes(symbols, indexes, self.cdfs, [4] * n, [0] * n)

    def encode(self, bits: torch.Tensor) -> bytes:
        """The rANS payload of ``bits`` ±1 ``[1, k·bits, h, w]``, iteration-major."""
        steps = bits.split(self.bits, 1)
        indexes = [i for t in range(len(steps)) for i in self._indexes(steps[t - 1] if t else None, t, steps[t].shape)]
        return self._rans((bits > 0).to(torch.uint8).flatten().tolist(), indexes)

    def decode(self, payload: bytes, k: int, shape: tuple, name: str) -> list[torch.Tensor]:
        """The bits ±1 of ``k`` iterations, each ``shape``, of an :meth:`encode` payload (of codec ``name``),
        refused unless it is their coding."""
        n_cdfs, per_iteration = len(self.cdfs), math.prod(shape)
        check_length(payload, k * per_iteration * self.least_bits, k * per_iteration, name)
        decoder = RansDecoder()
        decoder.set_stream(zero_padded(payload, k * per_iteration))
        bits, symbols, indexes, previous = [], [], [], None
        for t in range(k):
            index = self._indexes(previous, t, shape)
            decoded = decoder.decode_stream(index, self.cdfs, [4] * n_cdfs, [0] * n_cdfs)
            if any(s not in (0, 1) for s in decoded):
                raise CodecError(f"corrupt {name} stream: iteration {t + 1} decodes to non-binary symbols")
            previous = torch.tensor(decoded, dtype=torch.float32, device=self.bit_bias.device).reshape(shape) * 2 - 1
            bits.append(previous)
            symbols += decoded
            indexes += index
        check_recoded(payload, self._rans(symbols, indexes), name)
        return bits
