import struct
import zlib

import pytest

from licbench.core.bitstream import MAGIC, VERSION, Container
from licbench.core.codec import CodecError


def sample() -> Container:
    return Container("balle2017", 512, 768, [b"\x01\x02\x03", b"", b"x" * 1000], model_id="balle2017-abc")


def test_round_trip_keeps_every_field():
    data = sample().to_bytes()
    assert data.startswith(MAGIC)
    assert Container.from_bytes(data) == sample()


def test_header_overhead_is_small():
    c = sample()
    assert len(c.to_bytes()) - sum(map(len, c.sections)) == 4 + 1 + 1 + 9 + 1 + 13 + 8 + 1 + 3 * 4 + 4


@pytest.mark.parametrize("cut", [0, 3, 5, 10, 30, 45])
def test_truncated_stream_is_refused(cut):
    with pytest.raises(CodecError, match="truncated|magic|CRC"):
        Container.from_bytes(sample().to_bytes()[:cut])


def test_trailing_bytes_are_refused():
    with pytest.raises(CodecError, match="CRC"):
        Container.from_bytes(sample().to_bytes() + b"\0")
    body = sample().to_bytes()[:-4] + b"\0"
    with pytest.raises(CodecError, match="trailing"):
        Container.from_bytes(sealed(body))


@pytest.mark.parametrize("bit", [0, 7, 100, 8 * 60 + 3, -1])
def test_any_flipped_bit_is_refused(bit):
    data = bytearray(sample().to_bytes())
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CodecError, match="CRC|magic|version"):
        Container.from_bytes(bytes(data))


def sealed(body: bytes) -> bytes:
    """A forged stream with a valid checksum, so that only the header checks can refuse it."""
    return body + struct.pack(">I", zlib.crc32(body))


def test_foreign_bytes_and_versions_are_refused():
    with pytest.raises(CodecError, match="magic"):
        Container.from_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    data = bytearray(sample().to_bytes())
    data[4] = 99
    with pytest.raises(CodecError, match="version 99"):
        Container.from_bytes(bytes(data))


def test_forged_sizes_are_refused_before_allocation():
    head = MAGIC + bytes([VERSION, 1]) + b"x" + bytes([0])
    huge = head + struct.pack(">IIB", 2**31, 2**31, 0)
    with pytest.raises(CodecError, match="exceeds the limit"):
        Container.from_bytes(sealed(huge))
    zero = head + struct.pack(">IIB", 0, 5, 0)
    with pytest.raises(CodecError, match="invalid image size"):
        Container.from_bytes(sealed(zero))
    long_section = head + struct.pack(">IIBI", 4, 4, 1, 2**32 - 1) + b"abc"
    with pytest.raises(CodecError, match="section 0 needs 4294967295 bytes"):
        Container.from_bytes(sealed(long_section))


def test_non_ascii_ids_are_refused():
    data = MAGIC + bytes([VERSION, 2]) + "é".encode() + bytes([0]) + struct.pack(">IIB", 1, 1, 0)
    with pytest.raises(CodecError, match="ASCII"):
        Container.from_bytes(sealed(data))
