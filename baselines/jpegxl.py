"""JPEG XL through pillow-jxl-plugin (libjxl 0.12), writing a bare .jxl codestream.

Settings: libjxl's lossy VarDCT defaults, as ``cjxl`` uses them: effort 7, decoding speed 0, 8-bit
RGB input with the XYB transform; ``rate`` is libjxl's quality, which libjxl maps to the Butteraugli
distance ``d = 0.1 + (100 - q) * 0.09`` for ``q >= 30`` (q 90 = d 1.0, q 60 = d 3.7) and
``d = 6.4 + 2.5 ** ((30 - q) / 5) / 6.25`` below (q 20 = d 7.4, q 10 = d 12.65). No container box,
no metadata: the bytes are the codestream alone (``ff 0a`` ...), and bpp is counted from them.

Why pillow-jxl-plugin and not imagecodecs: speed is close, install reliability decides. On Kodak's
kodim01, one thread, both at d 1.0 (q 90), the two run interleaved, best of 10 in CPU time: encode +
decode took 213 ms here against 189 ms with imagecodecs (ratio 1.12, imagecodecs' libjxl 0.11.1 12 %
faster; wall-clock runs on the loaded machine swung from 0.92 to 1.34). pillow-jxl-plugin installs as
a 2.5 MB wheel needing only Pillow and packaging; imagecodecs is a 25 MB wheel whose current release
requires numpy 2, so pip would replace this environment's numpy 1.26, which compressai < 2 and
opencv < 4.12 need. pillow-jxl-plugin's encoder takes a quality, not a distance; the mapping above
is libjxl's own. libjxl's largest distance (25) puts the lowest rate near 0.19 bpp on Kodak.

Decoding is bounded before libjxl runs: the image size in the codestream's SizeHeader (also inside
a JPEG XL container's ``jxlc``/``jxlp`` box) is read here and refused over ``LICBENCH_MAX_PIXELS``,
and the decoded frame must have that size.
"""
from __future__ import annotations

import struct
from functools import cache

import torch
from PIL import Image

from licbench.core.bitstream import DEFAULT_MAX_PIXELS
from licbench.core.codec import Codec, CodecError, UnknownFormat, check_image
from licbench.core.images import pil_to_tensor, to_uint8_hwc

CODESTREAM = b"\xff\x0a"
CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
EFFORT = 7
QUALITY_RANGE = (5, 99)  # 100 is lossless (another mode); below 5 libjxl's distance passes its maximum of 25
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


@cache
def pillow_jxl():
    """The pillow-jxl-plugin module (its Encoder and Decoder), or a one-line error saying how to get it."""
    try:
        import pillow_jxl as module
    except ImportError:
        raise CodecError("JPEG XL needs pillow-jxl-plugin: run `make install` or "
                         "`pip install pillow-jxl-plugin`") from None
    return module


def threads() -> int:
    """libjxl's worker threads: torch's CPU thread count (``threads=1`` in a benchmark); the bytes
    do not depend on it."""
    return max(1, torch.get_num_threads())


class JpegXLCodec(Codec):
    """One quality setting of JPEG XL; ``rate`` is libjxl's quality (5..99, see the module docstring)."""

    def __init__(self, rate: float = 75, name: str = "jpegxl", effort: int = EFFORT):
        low, high = QUALITY_RANGE
        if not low <= float(rate) <= high:
            raise CodecError(f"jpegxl quality must be in {low}..{high}, got {rate}")
        if not 1 <= int(effort) <= 9:
            raise CodecError(f"jpegxl effort must be in 1..9, got {effort}")
        self.name, self.rate, self.effort = name, rate, int(effort)

    def encode(self, x: torch.Tensor) -> bytes:
        image = to_uint8_hwc(check_image(x))
        height, width = image.shape[:2]
        encoder = pillow_jxl().Encoder(mode="RGB", lossless=False, quality=float(self.rate), effort=self.effort,
                                       decoding_speed=0, use_container=False, use_original_profile=False,
                                       num_threads=threads())
        try:
            return bytes(encoder(image.tobytes(), width, height, jpeg_encode=False))
        except RuntimeError as err:
            raise CodecError(f"libjxl could not encode a {height}x{width} image: {_reason(err)}") from None

    def decode(self, data: bytes) -> torch.Tensor:
        return decode_jpegxl(data)


def decode_jpegxl(data: bytes, max_pixels: int | None = None) -> torch.Tensor:
    """Decode a JPEG XL codestream or container's bytes to [3, H, W] in [0, 1]; a declared size
    over ``max_pixels`` (``LICBENCH_MAX_PIXELS``) is refused before libjxl decodes anything."""
    data = bytes(data)
    if not is_jpegxl(data):
        raise UnknownFormat("not a JPEG XL codestream or container")
    height, width = declared_size(data)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if height * width > limit:
        raise CodecError(f"declared image size {height}x{width} exceeds the limit of {limit} pixels")
    try:
        jpeg, info, pixels, *_ = pillow_jxl().Decoder(num_threads=threads())(data)
    except RuntimeError as err:  # libjxl's errors; truncated and damaged streams end here
        raise CodecError(f"cannot decode JPEG XL bytes: libjxl says {_reason(err)}") from None
    if jpeg:  # a losslessly recompressed JPEG: libjxl gives back the JPEG file
        from licbench.baselines.pillow import decode_pillow

        image = decode_pillow(pixels, "JPEG")
        if tuple(image.shape[1:]) != (height, width):
            raise CodecError(f"reconstructed JPEG is {image.shape[1]}x{image.shape[2]}, "
                             f"the codestream declares {height}x{width}")
        return image
    if (info.height, info.width) != (height, width):
        raise CodecError(f"decoded frame is {info.height}x{info.width}, the codestream declares {height}x{width}")
    try:
        img = Image.frombytes(info.mode, (info.width, info.height), bytes(pixels))
    except ValueError as err:
        raise CodecError(f"unsupported JPEG XL pixel layout {info.mode!r}: {err}") from None
    return pil_to_tensor(img)[0]


def _reason(err: Exception) -> str:
    """libjxl's error's first sentence on one line (the binding appends build advice on a second)."""
    return " ".join(str(err).split(". ")[0].split()) or type(err).__name__


def is_jpegxl(data: bytes) -> bool:
    """Whether ``data`` begins as a JPEG XL codestream or container does."""
    return data.startswith(CODESTREAM) or data.startswith(CONTAINER)


def declared_size(data: bytes) -> tuple[int, int]:
    """(height, width) of the image as decoded: the SizeHeader of a codestream (ISO/IEC 18181-1), found
    directly or in a container's ``jxlc`` or first ``jxlp`` box, transposed when the ImageMetadata's
    orientation (5..8) says so, as libjxl applies it."""
    stream = data if data.startswith(CODESTREAM) else _codestream_in_container(data)
    if not stream.startswith(CODESTREAM) or len(stream) < 3:
        raise CodecError("JPEG XL codestream too short for its size header")
    bits = _LsbBits(stream[2:24])
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else bits.u32_size()
    ratio = bits.read(3)
    if ratio:
        num, den = _RATIOS[ratio]
        width = height * num // den
    else:
        width = (bits.read(5) + 1) * 8 if small else bits.u32_size()
    all_default = bits.read(1)
    orientation = 1 + bits.read(3) if not all_default and bits.read(1) else 1  # extra_fields
    return (width, height) if orientation > 4 else (height, width)


def forge_size(data: bytes, height: int, width: int) -> bytes:
    """A bare codestream's ``data`` with its SizeHeader declaring ``height`` x ``width`` (each clipped
    to 1..2^30) and the bits after it kept: a hostile stream for tests and fuzzing. The new header
    keeps the old one's length modulo 8 where an encoding allows, so later byte alignment holds."""
    if not data.startswith(CODESTREAM):
        return data
    bits = _LsbBits(data[2:])
    small = bits.read(1)
    bits.read(5) if small else bits.u32_size()
    if not bits.read(3):
        bits.read(5) if small else bits.u32_size()
    old = 8 * (len(data) - 2) - bits.left
    height, width = (min(max(side, 1), 2**30) for side in (height, width))
    options = [_size_header(height, width, a, b) for a in (0, 1, 2, 3) for b in (0, 1, 2, 3)]
    options = [option for option in options if option is not None]
    value, size = next((o for o in options if (o[1] - old) % 8 == 0), options[-1])
    return CODESTREAM + (value | (bits.value << size)).to_bytes((size + bits.left + 7) // 8, "little")


def _size_header(height: int, width: int, a: int, b: int) -> tuple[int, int] | None:
    """(bits, length) of a non-small SizeHeader with U32 selectors ``a``, ``b``; None if a side does not fit."""
    n_a, n_b = (9, 13, 18, 30)[a], (9, 13, 18, 30)[b]
    if height - 1 >= 1 << n_a or width - 1 >= 1 << n_b:
        return None
    value = (a << 1) | ((height - 1) << 3) | (b << (6 + n_a)) | ((width - 1) << (8 + n_a))  # ratio 0 at 3 + n_a
    return value, 8 + n_a + n_b


def _codestream_in_container(data: bytes) -> bytes:
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        header = 8
        if size == 1:
            if at + 16 > len(data):
                break
            size, header = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
        elif size == 0:
            size = len(data) - at
        if size < header:
            raise CodecError(f"JPEG XL container box {kind!r} has a bad size {size}")
        body = data[at + header:at + size]
        if kind == b"jxlc":
            return body
        if kind == b"jxlp":
            return body[4:]  # a partial codestream's 4-byte sequence number
        at += size
    raise CodecError("JPEG XL container holds no codestream box (jxlc/jxlp)")


class _LsbBits:
    """JPEG XL's bit order: least significant bit first within each byte."""

    def __init__(self, data: bytes):
        self.value, self.left = int.from_bytes(data, "little"), 8 * len(data)

    def read(self, n: int) -> int:
        if n > self.left:
            raise CodecError("JPEG XL codestream too short for its size header")
        out, self.value, self.left = self.value & ((1 << n) - 1), self.value >> n, self.left - n
        return out

    def u32_size(self) -> int:
        return self.read((9, 13, 18, 30)[self.read(2)]) + 1

