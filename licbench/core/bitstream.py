"""The licbench container written by every learned codec.

Layout (big-endian)::

    b"LICB" | version u8 | len u8 + codec id (ascii) | len u8 + model id (ascii)
    | height u32 | width u32 | n_sections u8 | n x (length u32 + payload) | CRC-32 u32

The CRC-32 (zlib) of everything before it turns a damaged or bit-flipped stream into a
clear error instead of a wrong image. Every size and length is validated against the bytes
actually present (and the image size against a pixel limit) before anything is allocated, so
hostile bytes fail with :class:`~licbench.core.codec.CodecError`.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

from licbench.core.codec import CodecError

MAGIC = b"LICB"
VERSION = 2
MAX_SECTIONS = 64
# Declared sizes above this are refused before decoding. 40 MP covers 8K UHD (33 MP) and 24 MP
# cameras; a forged 64 MP JPEG 2000 needed over 2 GiB to decode, at 40 MP the fuzzer's 2 GiB
# bound holds (results/robustness/fuzz.md).
MAX_PIXELS_SETTING = os.environ.get("LICBENCH_MAX_PIXELS", "40000000")
if not MAX_PIXELS_SETTING.isdigit():
    raise ValueError(f"LICBENCH_MAX_PIXELS must be a whole number of pixels, not {MAX_PIXELS_SETTING!r}")
DEFAULT_MAX_PIXELS = int(MAX_PIXELS_SETTING)


@dataclass
class Container:
    codec: str
    height: int
    width: int
    sections: list[bytes] = field(default_factory=list)
    model_id: str = ""

    def to_bytes(self) -> bytes:
        codec, model = _ascii_field(self.codec, "codec id"), _ascii_field(self.model_id, "model id")
        if not (1 <= self.height < 2**32 and 1 <= self.width < 2**32):
            raise CodecError(f"image size {self.height}x{self.width} cannot be stored")
        if len(self.sections) > MAX_SECTIONS:
            raise CodecError(f"too many sections: {len(self.sections)} > {MAX_SECTIONS}")
        out = [MAGIC, bytes([VERSION, len(codec)]), codec, bytes([len(model)]), model,
               struct.pack(">IIB", self.height, self.width, len(self.sections))]
        for section in self.sections:
            out += [struct.pack(">I", len(section)), bytes(section)]
        return seal(b"".join(out))

    @classmethod
    def from_bytes(cls, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Container:
        reader = _Reader(data)
        if reader.take(4, "magic") != MAGIC:
            raise CodecError("not a licbench stream (bad magic)")
        version = reader.u8("version")
        if version != VERSION:
            raise CodecError(f"unsupported licbench stream version {version} (this build reads {VERSION})")
        if reader.remaining < 4 or zlib.crc32(reader.data[:-4]) != struct.unpack(">I", reader.data[-4:])[0]:
            raise CodecError("corrupt stream: CRC-32 mismatch (truncated or damaged bytes)")
        reader.data = reader.data[:-4]
        codec = reader.text("codec id")
        model_id = reader.text("model id")
        height, width = reader.u32("height"), reader.u32("width")
        if height < 1 or width < 1:
            raise CodecError(f"invalid image size {height}x{width} in header")
        if height * width > max_pixels:
            raise CodecError(f"declared image size {height}x{width} exceeds the limit of {max_pixels} pixels")
        n_sections = reader.u8("section count")
        if n_sections > MAX_SECTIONS:
            raise CodecError(f"too many sections in header: {n_sections} > {MAX_SECTIONS}")
        sections = [reader.take(reader.u32(f"section {i} length"), f"section {i}") for i in range(n_sections)]
        if reader.remaining:
            raise CodecError(f"{reader.remaining} trailing bytes after the last section")
        return cls(codec, height, width, sections, model_id)


def seal(body: bytes) -> bytes:
    """``body`` followed by its CRC-32: the last step of writing a stream."""
    return body + struct.pack(">I", zlib.crc32(body))


def is_container(data: bytes) -> bool:
    return bytes(data[:4]) == MAGIC


def _ascii_field(value: str, what: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > 255:
        raise CodecError(f"{what} longer than 255 bytes: {value[:40]}...")
    return raw


class _Reader:
    def __init__(self, data: bytes):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"expected bytes, got {type(data).__name__}")
        self.data, self.pos = memoryview(data), 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise CodecError(f"truncated stream: {what} needs {n} bytes, {self.remaining} left")
        chunk = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u32(self, what: str) -> int:
        return struct.unpack(">I", self.take(4, what))[0]

    def text(self, what: str) -> str:
        raw = self.take(self.u8(f"{what} length"), what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise CodecError(f"{what} is not ASCII") from None
