"""Odd input files: the loader's conversions (gray, alpha, palette, 16-bit, CMYK, EXIF rotation)
and tiny sizes coded at their own size. `python -m licbench.tools.oddimages` runs every codec on them
through the CLI; this is the fast part."""
import numpy as np
import pytest
import torch
from PIL import Image

from licbench.baselines.pillow import PillowCodec
from licbench.core.codec import CodecError
from licbench.core.images import load_image, pil_to_tensor
from licbench.lightning_modules.balle2017 import Balle2017
from licbench.lightning_modules.fmm import FMM
from licbench.tools.oddimages import BASE, BIG, KINDS, problem, write_images

SMALL = {"1x1": (1, 1), "7x5": (5, 7), "135x240": (240, 135)}  # kind -> (height, width)


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> dict:
    return write_images(tmp_path_factory.mktemp("odd"), [kind for kind in KINDS if kind != BIG])


def pixels(path, mode="RGB") -> torch.Tensor:
    """The file's pixels as Pillow converts them, [3, H, W] in [0, 1], no EXIF rotation."""
    with Image.open(path) as img:
        return torch.from_numpy(np.asarray(img.convert(mode)).copy()).permute(2, 0, 1).float() / 255


def test_sizes_load_as_they_are(odd):
    for kind, (height, width) in SMALL.items():
        x, note = load_image(odd[kind])
        assert x.shape == (3, height, width) and note == ""


def test_gray_is_replicated(odd):
    x, note = load_image(odd["gray (L)"])
    assert x.shape == (3, *BASE) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert note == "gray replicated to RGB"


def test_alpha_is_dropped_not_composited(odd):
    with Image.open(odd["RGBA"]) as img:
        low, high = img.getextrema()[3]
        assert img.mode == "RGBA" and low < 16 and high > 240  # from transparent to opaque
    x, note = load_image(odd["RGBA"])
    assert torch.equal(x, pixels(odd["RGBA"])) and note == "RGBA: alpha dropped"


def test_palette_and_cmyk_are_converted_to_rgb(odd):
    x, note = load_image(odd["palette (P)"])
    assert torch.equal(x, pixels(odd["palette (P)"])) and note == "P converted to RGB"
    with Image.open(odd["CMYK JPEG"]) as img:
        assert img.mode == "CMYK"
    x, note = load_image(odd["CMYK JPEG"])
    assert note == "CMYK converted to RGB" and x.shape == (3, *BASE)
    source = pixels(odd["RGBA"])  # the same colours, losslessly
    assert (x - source).abs().mean() < 0.02, "CMYK inks inverted or lost"


def test_sixteen_bit_is_scaled_to_eight_bits(odd):
    with Image.open(odd["16-bit (I;16)"]) as img:
        assert img.mode == "I;16"
        values = np.asarray(img, dtype=np.float64)
    assert values.max() > 255  # really 16-bit
    x, note = load_image(odd["16-bit (I;16)"])
    expected = torch.from_numpy(np.round(values / 65535 * 255) / 255).float()
    assert torch.equal(x[0], expected) and torch.equal(x[2], expected)
    assert note == "I;16 scaled to 8 bits, gray replicated to RGB"


def test_every_sixteen_bit_layout_is_scaled():
    values = np.array([[0, 300, 1000, 65535]])
    for mode, dtype in (("I;16", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")):
        x, _ = pil_to_tensor(Image.frombytes(mode, (4, 1), values.astype(dtype).tobytes()))
        assert (x[:, 0] * 255).round().tolist() == [[0, 1, 4, 255]] * 3, mode


def test_a_decompression_bomb_is_refused_cleanly(odd, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 135x240 is over twice as many pixels
    with pytest.raises(CodecError, match="too large to load"):
        load_image(odd["135x240"])


def test_exif_orientation_is_applied(odd):
    stored = pixels(odd["EXIF-rotated JPEG"])
    assert stored.shape == (3, *BASE)
    x, note = load_image(odd["EXIF-rotated JPEG"])
    assert x.shape == (3, BASE[1], BASE[0]) and note == ""
    assert torch.equal(x, torch.rot90(stored, k=-1, dims=(1, 2)))  # orientation 6: 90° clockwise


@pytest.fixture(scope="module")
def codecs() -> dict:
    balle = Balle2017(N=16, M=16)  # untrained but a real coder: what matters here is padding and cropping
    balle.update(force=True)
    return {"jpeg": PillowCodec("jpeg", 75), "fmm": FMM().rate_points(moduli=[5])[0], "balle2017": balle}


@pytest.mark.parametrize("name", ["jpeg", "fmm", "balle2017"])
def test_tiny_sizes_round_trip_at_their_own_size(odd, codecs, name):
    for kind in SMALL:
        x, _ = load_image(odd[kind])
        x_hat = codecs[name].decode(codecs[name].encode(x))
        assert x_hat.shape == x.shape, (name, kind)
        assert x_hat.min() >= 0 and x_hat.max() <= 1


def test_a_one_line_error_is_a_refusal_and_anything_else_a_crash():
    assert problem(0, "", 16) is None
    assert problem(1, "licbench: error: image too small\n", 16) == "refused: image too small"
    traceback = ("Error executing job\nTraceback (most recent call last):\n  File x\n"
                 "IndexError: list index out of range\n")
    assert problem(1, traceback, 16) == "CRASH (exit 1): IndexError: list index out of range"
    assert problem(-11, "", 16) == "CRASH (signal 11): no message"
    assert problem(1, "RuntimeError: DefaultCPUAllocator: can't allocate memory\n", 16).startswith(
        "CRASH: out of memory")
