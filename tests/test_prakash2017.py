"""Semantic-perceptual JPEG (Prakash et al., DCC 2017): one baseline JPEG file, quality moved to the map's regions."""
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from licbench.baselines.pillow import PillowCodec
from licbench.baselines.prakash2017 import Prakash2017, block_levels
from licbench.baselines.saliency import MSROI
from licbench.core.bitstream import is_container
from licbench.core.codec import CodecError
from licbench.core.images import load_image, to_uint8_hwc
from licbench.core.zoo import named_rate_points
from licbench.tools import determinism, fuzz, oddimages

SOF = {0xC0 + n for n in range(16)} - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (C4 DHT, C8 JPG, CC DAC)


@pytest.fixture(scope="module")
def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth ripple background and one high-contrast checkered object (48×48, its mask)."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 192), indexing="ij")
    x = (0.4 + 0.15 * torch.sin(40 * xx) * torch.sin(30 * yy)).expand(3, 128, 192).clone()
    mask = torch.zeros(128, 192, dtype=torch.bool)
    mask[40:88, 112:160] = True
    cells = (torch.rand(3, 12, 12, generator=g) > 0.5).float().repeat_interleave(4, 1).repeat_interleave(4, 2)
    x[:, mask] = 0.25 + 0.5 * cells.flatten(1)
    return x, mask


def psnr_in(x: torch.Tensor, y: torch.Tensor, where) -> float:
    """PSNR (8-bit, RGB pooled) over the pixels ``where``."""
    where = torch.as_tensor(where)
    mse = (torch.from_numpy(to_uint8_hwc(x)).float() - torch.from_numpy(to_uint8_hwc(y)).float())[where].pow(2).mean()
    return float(10 * torch.log10(255**2 / mse))


def frame_markers(data: bytes) -> list[int]:
    """The marker codes of a JPEG file's header segments, SOI up to SOS."""
    assert data[:2] == b"\xff\xd8", "no SOI"
    markers, at = [], 2
    while data[at] == 0xFF and data[at + 1] != 0xDA:
        markers.append(data[at + 1])
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return markers


def test_output_is_one_baseline_jpeg_that_pillow_decodes_to_the_codec_pixels(scene):
    x, _ = scene
    codec = Prakash2017("q60s20")
    data = codec.encode(x)
    assert not is_container(data) and data[-2:] == b"\xff\xd9"
    assert [m for m in frame_markers(data) if m in SOF] == [0xC0]  # one frame, baseline sequential DCT
    with Image.open(io.BytesIO(data)) as img, Image.open(io.BytesIO(PillowCodec("jpeg", 60).encode(x))) as plain:
        assert img.format == "JPEG" and not img.info.get("progressive") and img.size == (192, 128)
        assert img.quantization == plain.quantization  # one final quality, the jpeg baseline's tables
        assert np.array_equal(np.asarray(img.convert("RGB")), to_uint8_hwc(codec.decode(data)))


def test_spread_lowers_the_background_only(scene):
    x, mask = scene
    levels = Prakash2017("q50s0").composite(x)[1]
    roi, background = levels == levels.max(), levels == 0
    assert roi[mask.numpy()].all() and 0.3 < roi.mean() < 0.7  # the map finds the object; median split
    measured = []
    for spread in (0, 20, 40):
        codec = Prakash2017(f"q50s{spread}")
        y = codec.decode(codec.encode(x))
        measured.append((psnr_in(x, y, roi), psnr_in(x, y, background)))
    (roi0, bg0), (roi20, bg20), (roi40, bg40) = measured
    assert abs(roi20 - roi0) < 0.05 and abs(roi40 - roi0) < 0.05  # the regions of interest keep quality 50
    assert bg0 > bg20 + 1 > bg40 + 2


def test_the_object_beats_plain_jpeg_at_the_same_file_size(scene):
    x, mask = scene
    jpeg = PillowCodec("jpeg", 50)
    reference = jpeg.encode(x)
    fitting = [codec for codec in (Prakash2017(f"q{q}s30") for q in range(50, 75))
               if len(codec.encode(x)) <= len(reference)]
    codec = fitting[-1]  # the highest final quality whose file is no larger than plain JPEG's
    assert codec.final.rate > 50
    ours = codec.decode(codec.encode(x))
    assert psnr_in(x, ours, mask) > psnr_in(x, jpeg.decode(reference), mask) + 0.2


def test_rate_and_quality_grow_with_the_final_quality(image):
    points = [Prakash2017(f"q{q}s10") for q in (10, 30, 50, 70, 90)]
    sizes = [len(codec.encode(image)) for codec in points]
    quality = [psnr_in(image, codec.decode(codec.encode(image)), np.ones(image.shape[1:], bool)) for codec in points]
    assert sizes == sorted(set(sizes)) and quality == sorted(set(quality))


def test_config_grid_is_labelled_with_the_map():
    points = named_rate_points(["prakash2017"])["prakash2017"]
    assert [codec.final.rate for codec in points] == sorted({codec.final.rate for codec in points})
    assert all(str(codec.rate).endswith("s20-sr") for codec in points)  # spectral residual, not the paper's CNN
    assert Prakash2017("q50s20-fg", map="fine_grained").rate == "q50s20-fg"


def test_block_levels_follow_the_map_per_macroblock():
    roi = np.zeros((20, 40), np.float32)  # 2 × 3 macroblocks, the last row and column cut short
    roi[:, 16:32], roi[:, 32:], roi[:16, :16] = 1, 0.5, 0.75  # block means 0.75 1 0.5 / 0 1 0.5; median 0.625
    def per_pixel(blocks):
        return np.array(blocks).repeat(16, 0).repeat(16, 1)[:20, :40]

    assert np.array_equal(block_levels(roi, [50]), per_pixel([[1, 1, 0], [0, 1, 0]]))
    assert np.array_equal(block_levels(roi, [10, 90]), per_pixel([[1, 2, 1], [0, 2, 1]]))  # thresholds 0.25, 1
    assert (block_levels(np.ones((5, 7), np.float32), [50]) == 1).all()  # a flat map: all of interest


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (3, 200), (17, 33)])
def test_any_size_round_trips(size):
    x = torch.rand(3, *size, generator=torch.Generator().manual_seed(1))
    codec = Prakash2017("q80s20")
    assert codec.decode(codec.encode(x)).shape == x.shape


def test_gray_and_rgba_files_and_a_12_megapixel_image(tmp_path):
    files = oddimages.write_images(tmp_path, ["gray (L)", "RGBA"])
    codec = Prakash2017("q50s20")
    for path in files.values():
        x, _ = load_image(path)
        y = codec.decode(codec.encode(x))
        assert y.shape == x.shape and psnr_in(x, y, np.ones(x.shape[1:], bool)) > 25
    gray = load_image(files["gray (L)"])[0]
    assert torch.equal(gray[0], gray[2])
    big = torch.rand(3, 3000, 4000, generator=torch.Generator().manual_seed(2))
    assert codec.decode(codec.encode(big)).shape == big.shape


def test_bad_inputs_and_settings_are_one_line_errors():
    codec = Prakash2017()
    for x in (torch.rand(4, 8, 8), torch.rand(1, 8, 8), torch.full((3, 8, 8), 2.0), torch.zeros(3, 0, 4)):
        with pytest.raises(CodecError) as err:
            codec.encode(x)
        assert "\n" not in str(err.value)
    for kwargs, says in [({"rate": 50}, "q<final quality>s<spread>"), ({"rate": "q0s10"}, "1..100"),
                         ({"rate": "q50s10-fg"}, "map must be"), ({"map": "cnn"}, "map must be"),
                         ({"percentiles": [100]}, "percentiles"), ({"percentiles": []}, "percentiles")]:
        with pytest.raises(CodecError, match=says) as err:
            Prakash2017(**kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(CodecError, match="not a JPEG"):
        codec.decode(b"\x89PNG\r\n\x1a\n" + bytes(64))


def test_the_papers_cnn_map_runs_only_on_given_weights(tmp_path, scene):
    with pytest.raises(CodecError, match=r"codec\.map_weights=PATH") as err:
        Prakash2017(map="msroi")
    assert "\n" not in str(err.value)
    with pytest.raises(CodecError, match="no such msroi weights"):
        Prakash2017(map="msroi", map_weights=str(tmp_path / "none.pt"))
    torch.save({"conv6.weight": torch.zeros(8, 512, 3, 3), "classifier.weight": torch.zeros(5, 8)}, tmp_path / "bad.pt")
    with pytest.raises(CodecError, match="not MSROI weights") as err:
        Prakash2017(map="msroi", map_weights=str(tmp_path / "bad.pt"))
    assert "\n" not in str(err.value)
    torch.manual_seed(0)
    torch.save(MSROI(features=64, classes=10).state_dict(), tmp_path / "msroi.pt")
    codec = Prakash2017("q50s20", map="msroi", map_weights=str(tmp_path / "msroi.pt"))
    assert codec.rate == "q50s20-msroi" and codec.model_id.startswith("prakash2017-msroi-")
    x, _ = scene
    data = codec.encode(x)
    assert data == codec.encode(x) and codec.decode(data).shape == x.shape
    assert [m for m in frame_markers(data) if m in SOF] == [0xC0]


def test_same_bytes_every_time(scene):
    x, _ = scene
    for options in ({}, {"map": "fine_grained"}):
        data = Prakash2017("q40s20", **options).encode(x)
        assert data == Prakash2017("q40s20", **options).encode(x)


def test_the_determinism_tool_finds_same_bytes_and_pixels(tmp_path, scene):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(to_uint8_hwc(scene[0])).save(images / "scene.png")
    assert determinism.main(["--images", str(images), "--codecs", "prakash2017", "--out", str(tmp_path / "d.md")]) == 0


def test_the_fuzz_finds_its_decoder_clean(tmp_path):
    # its decoder is Pillow's, as jpeg's: a forged 40-megapixel header takes seconds, more on a loaded machine
    assert fuzz.main(["--seconds", "3", "--timeout", "60", "--codecs", "prakash2017",
                      "--out", str(tmp_path / "f.md")]) == 0


def test_the_odd_image_tool_runs_it_through_the_cli(tmp_path):
    assert "prakash2017" in oddimages.CODECS
    subprocess.run([sys.executable, "-m", "licbench.tools.oddimages", "--codecs", "prakash2017", "--kinds", "1x1,RGBA",
                    "--out", str(tmp_path / "o.md")], check=True, capture_output=True, timeout=600)
    assert "| prakash2017 | ok | ok |" in (tmp_path / "o.md").read_text()
