"""JPEG XL (pillow-jxl-plugin) and HEVC intra (x265 through ffmpeg) baselines: native bytes,
round trips at any size, rate order, determinism, and hostile bytes refused cleanly."""
import io
import json
import random
import shutil
import subprocess

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from licbench.baselines import hevc, jpegxl
from licbench.baselines.hevc import HevcIntraCodec, decode_hevc
from licbench.baselines.jpegxl import JpegXLCodec, decode_jpegxl
from licbench.core import metrics, resolvers, zoo
from licbench.core.codec import CodecError, UnknownFormat
from licbench.datamodules.synthetic import synthetic_image


def _has_x265() -> bool:
    try:
        hevc.ffmpeg(encoder=True)
        return True
    except CodecError:
        return False


needs_ffmpeg = pytest.mark.skipif(not _has_x265(), reason="ffmpeg with libx265 is not on PATH "
                                  "(make install, or sudo apt-get install ffmpeg)")
CODECS = [pytest.param(lambda: JpegXLCodec(75), id="jpegxl"),
          pytest.param(lambda: HevcIntraCodec(29), id="hevc_intra", marks=needs_ffmpeg)]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("make", CODECS)
def test_round_trip_shape_range_quality_and_determinism(make, image, one_thread):
    codec = make()
    data = codec.encode(image)
    x_hat = codec.decode(data)
    assert x_hat.shape == image.shape and x_hat.dtype == torch.float32
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    assert metrics.psnr(image, x_hat) > 30
    assert codec.encode(image) == data  # the same bytes twice
    assert torch.equal(codec.decode(data), x_hat)


@pytest.mark.parametrize("make", CODECS)
def test_bytes_do_not_depend_on_the_thread_count(make, image, one_thread):
    codec = make()
    data = codec.encode(image)
    torch.set_num_threads(2)
    assert codec.encode(image) == data


@pytest.mark.parametrize("low, high", [pytest.param(JpegXLCodec(20), JpegXLCodec(90), id="jpegxl"),
                                       pytest.param(HevcIntraCodec(40), HevcIntraCodec(20), id="hevc_intra",
                                                    marks=needs_ffmpeg)])
def test_rate_and_quality_grow_with_the_rate_parameter(low, high, one_thread):
    x = synthetic_image(64, 96, seed=5)
    a, b = low.encode(x), high.encode(x)
    assert len(a) < len(b)
    assert metrics.psnr(x, low.decode(a)) < metrics.psnr(x, high.decode(b))


@pytest.mark.parametrize("make", CODECS)
@pytest.mark.parametrize("size", [(7, 13), (13, 7), (1, 1), (1, 40), (17, 33)])
def test_odd_and_tiny_sizes_round_trip(make, size, one_thread):
    x = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))
    codec = make()
    x_hat = codec.decode(codec.encode(x))
    assert x_hat.shape == x.shape and x_hat.dtype == torch.float32


def test_jpegxl_writes_a_bare_codestream_that_pillows_plugin_reads(tmp_path, image, one_thread):
    data = JpegXLCodec(75).encode(image)
    assert data[:2] == b"\xff\x0a" and jpegxl.declared_size(data) == (45, 70)
    path = tmp_path / "a.jxl"
    path.write_bytes(data)
    assert metrics.bpp(path.stat().st_size, 45, 70) == 8 * len(data) / (45 * 70)
    import pillow_jxl  # noqa: F401  (registers the reader with Pillow)

    with Image.open(path) as img:  # the plugin's own reader agrees on the size
        assert img.format == "JXL" and img.size == (70, 45)


def test_jpegxl_reads_a_container_too(image, one_thread):
    from pillow_jxl import Encoder

    raw = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).contiguous().numpy().tobytes()
    boxed = Encoder(mode="RGB", lossless=False, quality=75, use_container=True, num_threads=1)(
        raw, 70, 45, jpeg_encode=False)
    assert boxed.startswith(jpegxl.CONTAINER) and jpegxl.declared_size(boxed) == (45, 70)
    assert decode_jpegxl(boxed).shape == (3, 45, 70)


@needs_ffmpeg
def test_hevc_writes_a_raw_444_stream_that_ffprobe_reads(tmp_path, one_thread):
    x = synthetic_image(7, 13, seed=1)  # padded to 16x16 for ffmpeg, cropped by the SPS conformance window
    data = HevcIntraCodec(29).encode(x)
    assert data[:4] == b"\x00\x00\x00\x01" and hevc.declared_size(data)[:2] == (7, 13)
    path = tmp_path / "a.hevc"
    path.write_bytes(data)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,pix_fmt,"
                            "color_range,color_space", "-of", "json", str(path)], capture_output=True, text=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream == {"codec_name": "hevc", "width": 13, "height": 7, "pix_fmt": "yuv444p",
                      "color_range": "pc", "color_space": "smpte170m"}


def test_jpegxl_refuses_a_forged_size_before_libjxl_runs(monkeypatch):
    size = _le(3, 2) + _le(20000 - 1, 30)  # U32 selector 3: 30 bits of size - 1
    bits = [0] + size + [0, 0, 0] + size  # not small, height, ratio 0 (explicit width), width
    forged = b"\xff\x0a" + _pack_lsb(bits) + random.Random(0).randbytes(64)
    assert jpegxl.declared_size(forged) == (20000, 20000)
    monkeypatch.setattr(jpegxl, "pillow_jxl", lambda: pytest.fail("libjxl ran on a refused stream"))
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_jpegxl(forged)


def test_jpegxl_forged_sizes_keep_the_rest_of_the_stream(image, one_thread):
    data = JpegXLCodec(75).encode(image)
    assert jpegxl.forge_size(data, 45, 70) == data  # the same size re-encoded bit for bit
    for size in ((70, 45), (1, 1), (3000, 4000), (2**30, 2**30)):
        forged = jpegxl.forge_size(data, *size)
        assert jpegxl.declared_size(forged) == size
        with pytest.raises(CodecError):
            decode_jpegxl(forged)


@needs_ffmpeg
def test_hevc_refuses_a_forged_size_before_ffmpeg_runs(image, monkeypatch, one_thread):
    data = HevcIntraCodec(35).encode(image)
    assert hevc.declared_size(hevc.forge_sps_size(data, 20000, 20000))[:2] == (20000, 20000)
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_hevc(data, max_pixels=45 * 70 - 1)
    window = hevc.rewrite_sps(data, lambda fields: ((4096, 4096), [0, 4000, 0, 4000]))  # 96x96 of 4096x4096
    monkeypatch.setattr(hevc.subprocess, "run", lambda *a, **k: pytest.fail("ffmpeg ran on a refused stream"))
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_hevc(hevc.forge_sps_size(data, 20000, 20000))
    with pytest.raises(CodecError, match="conformance window"):
        decode_hevc(window)


@pytest.mark.parametrize("make", CODECS)
def test_garbage_and_damaged_bytes_are_codec_errors(make, image, one_thread):
    codec = make()
    data = codec.encode(image)
    rng = random.Random(0)
    cases = [b"", b"\x00", data[:3], data[:len(data) // 2], data[:6] + rng.randbytes(200), rng.randbytes(300)]
    for _ in range(6):
        damaged = bytearray(data)
        for _ in range(4):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        cases.append(bytes(damaged))
    for case in cases:
        try:
            x_hat = codec.decode(case)
        except CodecError as err:
            assert "\n" not in str(err)
        else:  # a decoder may conceal damage, but only at the size the stream declares
            assert x_hat.dtype == torch.float32 and x_hat.shape[0] == 3 and 0 <= x_hat.min() <= x_hat.max() <= 1


@needs_ffmpeg
def test_each_decoder_says_other_formats_are_not_its_own(image, one_thread):
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    jxl, h265 = JpegXLCodec(75).encode(image), HevcIntraCodec(35).encode(image)
    for decode, other in ((decode_jpegxl, h265), (decode_hevc, jxl), (decode_jpegxl, buf.getvalue()),
                          (decode_hevc, buf.getvalue()), (decode_hevc, b"\x00\x00\x01\xff\xff")):
        with pytest.raises(UnknownFormat):
            decode(other)


def test_without_ffmpeg_a_one_line_error_says_how_to_install(monkeypatch, image):
    hevc.ffmpeg.cache_clear()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    try:
        with pytest.raises(CodecError, match=r"apt-get install ffmpeg") as err:
            HevcIntraCodec(29).encode(image)
        assert "make install" in str(err.value) and "\n" not in str(err.value)
    finally:
        hevc.ffmpeg.cache_clear()


def test_bad_settings_are_clear_errors():
    for bad in (0, 100, 101):
        with pytest.raises(CodecError, match="quality"):
            JpegXLCodec(bad)
    for bad in (-1, 51, 29.5):
        with pytest.raises(CodecError, match="QP"):
            HevcIntraCodec(bad)
    with pytest.raises(CodecError, match=r"\[3, H, W\]"):
        JpegXLCodec(75).encode(torch.rand(4, 8, 8))


@pytest.mark.parametrize("name", ["jpegxl", "hevc_intra"])
def test_configs_name_their_codec_and_grid(name):
    cfg = OmegaConf.load(f"{resolvers.CONF_DIR}/codec/{name}.yaml")
    points = zoo.rate_points(name, cfg)
    assert [p.name for p in points] == [name] * len(cfg.grid) and [p.rate for p in points] == list(cfg.grid)
    assert name in zoo.codec_names()


def _le(value: int, n: int) -> list[int]:
    return [(value >> i) & 1 for i in range(n)]


def _pack_lsb(bits: list[int]) -> bytes:
    bits = bits + [0] * (-len(bits) % 8)
    return bytes(sum(bit << i for i, bit in enumerate(bits[at:at + 8])) for at in range(0, len(bits), 8))
