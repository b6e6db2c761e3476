import io

import pytest
import torch
from PIL import Image

from licbench.baselines.jpeg2000 import Jpeg2000Codec, decode_jpeg2000
from licbench.baselines.pillow import PillowCodec, decode_pillow
from licbench.core import metrics
from licbench.core.codec import CodecError


@pytest.mark.parametrize("codec", [PillowCodec("jpeg", 50), PillowCodec("webp", 50), PillowCodec("avif", 50),
                                   Jpeg2000Codec(1.0)], ids=lambda c: c.name)
def test_round_trip_shape_range_and_quality(codec, image):
    data = codec.encode(image)
    x_hat = codec.decode(data)
    assert x_hat.shape == image.shape and x_hat.dtype == torch.float32
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    assert metrics.psnr(image, x_hat) > 25
    assert torch.equal(codec.decode(data), x_hat)


def test_jpeg_writes_a_real_jpeg_file_and_bpp_is_its_size(tmp_path, image):
    data = PillowCodec("jpeg", 75).encode(image)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    with Image.open(path) as img:
        assert img.format == "JPEG" and img.size == (70, 45)
    assert metrics.bpp(path.stat().st_size, 45, 70) == 8 * len(data) / (45 * 70)


def test_jpeg_quality_orders_rate_and_distortion(image):
    low, high = PillowCodec("jpeg", 10), PillowCodec("jpeg", 90)
    a, b = low.encode(image), high.encode(image)
    assert len(a) < len(b)
    assert metrics.psnr(image, low.decode(a)) < metrics.psnr(image, high.decode(b))


def test_jpeg2000_writes_a_codestream_near_its_target_rate(tmp_path):
    from licbench.datamodules.synthetic import synthetic_image

    x = (synthetic_image(128, 128, 1)
         + 0.05 * torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    data = Jpeg2000Codec(1.0).encode(x)
    assert data[:4] == b"\xff\x4f\xff\x51"
    assert 0.7 < metrics.bpp(len(data), 128, 128) <= 1.05
    path = tmp_path / "a.j2k"
    path.write_bytes(data)
    with Image.open(path) as img:  # an independent reader (Pillow's OpenJPEG) agrees
        assert img.size == (128, 128)


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (3, 200)])
def test_any_size_round_trips(size):
    x = torch.rand(3, *size)
    for codec in (PillowCodec("jpeg", 90), Jpeg2000Codec(4.0)):
        assert codec.decode(codec.encode(x)).shape == x.shape


def test_bad_inputs_are_clear_errors():
    with pytest.raises(CodecError, match="quality"):
        PillowCodec("jpeg", 101)
    with pytest.raises(CodecError, match="unknown Pillow format"):
        PillowCodec("gif", 50)
    with pytest.raises(CodecError, match="target rate"):
        Jpeg2000Codec(0)
    with pytest.raises(CodecError, match=r"\[3, H, W\]"):
        PillowCodec("jpeg", 50).encode(torch.rand(4, 8, 8))
    with pytest.raises(CodecError, match="within \\[0, 1\\]"):
        PillowCodec("jpeg", 50).encode(torch.full((3, 8, 8), 2.0))


def test_damaged_streams_are_clear_errors(image):
    jpeg = PillowCodec("jpeg", 50).encode(image)
    j2k = Jpeg2000Codec(1.0).encode(image)
    with pytest.raises(CodecError):
        decode_pillow(jpeg[:20])
    with pytest.raises(CodecError):
        decode_jpeg2000(j2k[:30])
    with pytest.raises(CodecError, match="not a JPEG 2000"):
        decode_jpeg2000(jpeg)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    with pytest.raises(CodecError, match="expected a JPEG"):
        PillowCodec("jpeg", 50).decode(buf.getvalue())
