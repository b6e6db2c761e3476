"""Jassim & Qassim: Five Modulus Method for image compression (SIPIJ 2012).

- The rule (the method's description): every R, G and B value p of each 8×8 block becomes
  the nearest multiple of 5, q = 5·round(p/5), and is stored as the code q/5 ∈ 0..51 in
  6 bits; the decoder multiplies by 5. The rule is per value, so the 8×8 blocking changes
  nothing and the codec has stride 1 (no padding). Max error 2, about 45 dB PSNR, 18 bpp.
- Beyond the paper, the modulus m ∈ 2..255 is the rate knob: code = round(p/m) (ties up,
  for even m), decoded as min(m·code, 255) — values that would exceed 255 map to the top
  code, which decodes to 255 (for m = 5: 253, 254 → 255, as in the paper). Max error ⌊m/2⌋.
- Two bitstreams, both carried after a 2-byte first section (kind, m):
  packed — the codes in channel-major raster order, ⌈log₂ levels⌉ bits each, MSB first
  (the paper's "stream of bits"; 6 bits at m = 5); entropy-coded — beyond the paper, the
  same codes through compressai's rANS with one table per channel, quantized from the
  image's own histogram (compressai's ``pmf_to_quantized_cdf``, 16-bit precision) and sent
  as side information (a u16 frequency per code and channel), which counts in the bytes.
- No parameters: ``licbench train model=fmm`` stops at once and writes an empty-weights
  checkpoint, so FMM runs through the zoo and benchmark like every learned codec.
  ``forward`` gives the reconstruction and the likelihoods the bitstream spends: 2^-bits per
  code when packed, the image's code frequencies when entropy-coded (side info aside).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from compressai.ans import RansDecoder, RansEncoder

from licbench.core.codec import CodecError, RatePoint
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.entropy import (
    check_length,
    fewest_bits,
    frequency_tables,
    histogram_tables,
    zero_padded,
)

PACKED, RANS = 0, 1


def levels(modulus: int) -> int:
    """Number of codes at modulus m: 0 .. round(255 / m)."""
    return (255 + modulus // 2) // modulus + 1


def code_bits(modulus: int) -> int:
    return math.ceil(math.log2(levels(modulus)))


class FMM(LearnedCodec):
    name = "fmm"
    stride = 1

    def quantize(self, x: torch.Tensor, modulus: int) -> torch.Tensor:
        """Images in [0, 1] -> integer codes round(255·x / m)."""
        return torch.div((x * 255).round().long() + modulus // 2, modulus, rounding_mode="floor")

    def dequantize(self, codes: torch.Tensor, modulus: int) -> torch.Tensor:
        return (codes * modulus).clamp(max=255).float() / 255

    def forward(self, x: torch.Tensor, modulus: int = 5, entropy_coding: bool = False) -> dict:
        codes = self.quantize(x, modulus)
        if entropy_coding:  # each image's own code histogram per channel
            flat = codes.flatten(2)
            counts = torch.zeros(*flat.shape[:2], levels(modulus), device=x.device)
            counts.scatter_add_(2, flat, torch.ones_like(flat, dtype=counts.dtype))
            likelihoods = (counts.gather(2, flat) / flat.shape[2]).view_as(x)
        else:
            likelihoods = torch.full_like(x, 2.0 ** -code_bits(modulus))
        return {"x_hat": self.dequantize(codes, modulus), "likelihoods": {"codes": likelihoods}}

    # --- no training ------------------------------------------------------------------------
    def configure_optimizers(self):
        return None

    def on_train_start(self) -> None:
        print("FMM has no parameters: training is a no-op (the checkpoint has empty weights)")
        self.trainer.should_stop = True

    def training_step(self, batch, batch_idx):
        """Reached only if the trainer overrides the stop (``min_steps``, ``min_epochs``): a clear error."""
        raise RuntimeError("FMM has no parameters to train: drop trainer.min_steps / trainer.min_epochs")

    # --- rate points ------------------------------------------------------------------------
    def rate_points(self, moduli=(3, 5, 9, 17, 35, 73), entropy_coding: bool = True) -> list[RatePoint]:
        moduli = [int(m) for m in moduli]
        if not moduli or len(set(moduli)) != len(moduli) or not all(2 <= m <= 255 for m in moduli):
            raise CodecError(f"fmm moduli must be distinct integers in 2..255, got {moduli}")
        if not isinstance(entropy_coding, bool):
            raise CodecError(f"fmm entropy_coding must be true or false, got {entropy_coding!r}")
        return [RatePoint(self, m, modulus=m, entropy_coding=entropy_coding) for m in moduli]

    # --- bitstream --------------------------------------------------------------------------
    def compress(self, x: torch.Tensor, modulus: int = 5, entropy_coding: bool = False) -> list[bytes]:
        if not isinstance(modulus, int) or not 2 <= modulus <= 255:
            raise CodecError(f"fmm modulus must be an integer in 2..255, got {modulus!r}")
        codes = self.quantize(x[0], modulus).cpu().numpy().reshape(3, -1)
        if not entropy_coding:
            bits = np.unpackbits(codes.astype(np.uint8)[..., None], axis=-1)[..., 8 - code_bits(modulus):]
            return [bytes([PACKED, modulus]), np.packbits(bits).tobytes()]
        table, cdfs = histogram_tables(np.stack([np.bincount(c, minlength=levels(modulus)) for c in codes]))
        payload = RansEncoder().encode_with_indexes(codes.ravel().tolist(), self._indexes(codes.shape[1]), cdfs,
                                                    [len(c) for c in cdfs], [0, 0, 0])
        return [bytes([RANS, modulus]), table, payload]

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if not sections or len(sections[0]) != 2 or sections[0][0] not in (PACKED, RANS):
            raise CodecError("fmm stream must start with a 2-byte section (kind 0 or 1, modulus)")
        kind, modulus = sections[0]
        if not 2 <= modulus <= 255:
            raise CodecError(f"fmm stream has modulus {modulus}, outside 2..255")
        n, count = height * width, levels(modulus)
        if len(sections) != (2 if kind == PACKED else 3):
            raise CodecError(f"fmm stream of kind {kind} has {len(sections)} sections")
        if kind == PACKED:
            bits = code_bits(modulus)
            if len(sections[1]) != math.ceil(3 * n * bits / 8):
                raise CodecError(f"fmm packed payload is {len(sections[1])} bytes, {height}x{width} at {bits} bits "
                                 f"needs {math.ceil(3 * n * bits / 8)}")
            codes = np.unpackbits(np.frombuffer(sections[1], np.uint8))[:3 * n * bits].reshape(-1, bits)
            codes = codes @ (1 << np.arange(bits - 1, -1, -1))
        else:
            cdfs, lengths = frequency_tables(sections[1], 3, count, self.name)  # validated before use
            check_length(sections[2], n * float(fewest_bits(cdfs).sum()), 3 * n, self.name)
            codes = np.array(RansDecoder().decode_with_indexes(zero_padded(sections[2], 3 * n), self._indexes(n), cdfs,
                                                               lengths, [0, 0, 0]))
        if codes.min() < 0 or codes.max() >= count:
            raise CodecError(f"fmm stream decodes to codes outside 0..{count - 1} for modulus {modulus}")
        return self.dequantize(torch.from_numpy(codes.reshape(1, 3, height, width)), modulus).to(self.device)

    @staticmethod
    def _indexes(n: int) -> list[int]:
        """rANS table per symbol: its channel."""
        return np.repeat(np.arange(3), n).tolist()
