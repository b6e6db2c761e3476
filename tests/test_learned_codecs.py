"""The codec contract, checked the same way for every learned method: trained for a few real
steps through `licbench train`, loaded through the benchmark's own config path, then coded at
the lowest and highest rate points of its `conf/codec/<name>.yaml`."""
import random

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from conftest import run_cli
from licbench import zoo
from licbench.bitstream import Container
from licbench.codec import CodecError, to_uint8_hwc
from licbench.datamodules.synthetic import synthetic_image
from licbench.images import load_image, save_image

# Codec config -> (model config, overrides that make it small enough to train a few steps in seconds).
TINY = {
    "balle2017": ("balle2017", ["model.N=16", "model.M=16"]),
    "cheng2018": ("cheng2018", ["model.channels=[8,8,16,16,16,32]", "model.pca_batches=1"]),
    "fmm": ("fmm", []),
    "fmm_packed": ("fmm", []),
    "jiang2017": ("jiang2017", ["model.com_channels=8", "model.rec_channels=8", "model.depth=4"]),
    "theis2017": ("theis2017", ["model.N=16", "model.M=16"]),
    **{name: (name, ["model.N=8", "model.M=16"]) for name in ("wcae", "nowcae")},
    **{name: (name, ["model.encoder_channels=[8,16,16,16]", "model.decoder_channels=[16,16,16,16]",
                     "model.context_channels=8", "model.train_iterations=4"]) for name in ("toderici2017", "toderici2016")},
}
SIZES = [(45, 70), (17, 100)]  # neither side a multiple of any stride


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request, tmp_path_factory):
    name = request.param
    model, overrides = TINY[name]
    out = tmp_path_factory.mktemp(name)
    ckpt = out / f"{name}.ckpt"
    run_cli("train", f"model={model}", "data=synthetic", "logger=none", "trainer.max_steps=10", *overrides,
            f"ckpt_path={ckpt}", f"hydra.run.dir={out / 'run'}")
    with initialize_config_module("licbench.conf", version_base=None):
        cfg = compose("benchmark", overrides=[f"codecs=[{name}]", f"+codec_overrides.{name}.checkpoints={ckpt}"])
        points = zoo.rate_points(name, zoo.configured_codecs(cfg)[name])
    return name, ckpt, zoo.extreme_points(points)


def test_every_size_round_trips_bit_exactly(trained):
    name, _, points = trained
    for codec in points:
        for height, width in SIZES:
            x = synthetic_image(height, width, seed=height)
            data = codec.encode(x)
            assert codec.encode(x) == data, f"{name} @ {codec.rate}: encoding is not deterministic"
            first, second = codec.decode(data), codec.decode(data)
            assert first.shape == x.shape and torch.equal(first, second), (name, codec.rate, first.shape)
            assert first.min() >= 0 and first.max() <= 1
            header = Container.from_bytes(data)
            assert (header.codec, header.height, header.width) == (codec.name, height, width)


def test_another_process_encodes_and_decodes_the_same(trained, tmp_path):
    name, ckpt, points = trained
    x = synthetic_image(45, 70, seed=5)
    png = tmp_path / "x.png"
    save_image(x, png)
    x = load_image(png)[0]
    for codec in points:
        stream = tmp_path / f"{codec.rate}.bin"
        run_cli("encode", f"codec={name}", f"weights={ckpt}", f"++codec.rate={codec.rate}", f"input={png}", f"output={stream}")
        assert stream.read_bytes() == codec.encode(x), f"{name} @ {codec.rate}: another process wrote other bytes"
        run_cli("decode", f"input={stream}", f"output={tmp_path / 'y.png'}", f"weights={ckpt}")
        assert np.array_equal(to_uint8_hwc(load_image(tmp_path / "y.png")[0]), to_uint8_hwc(codec.decode(stream.read_bytes())))


def hostile_variants(data: bytes):
    """Damaged and forged versions of a valid stream: (description, bytes)."""
    rng = random.Random(0)
    for cut in (0, 5, 20, len(data) // 2, len(data) - 1):
        yield f"truncated to {cut}", data[:cut]
    for _ in range(5):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        yield "bit flip", bytes(flipped)
    c = Container.from_bytes(data)

    def forged(what, **changes):
        fields = {"codec": c.codec, "height": c.height, "width": c.width, "sections": c.sections, "model_id": c.model_id}
        return what, Container(**{**fields, **changes}).to_bytes()  # a valid CRC: only the codec's checks can refuse it

    yield forged("huge image size", height=2**31, width=2**31)
    yield forged("no sections", sections=[])
    yield forged("an extra section", sections=[*c.sections, b"\x00" * 9])
    yield forged("halved sections", sections=[s[: len(s) // 2] for s in c.sections])
    yield forged("random sections", sections=[rng.randbytes(len(s)) for s in c.sections])
    yield forged("other image size", height=c.height + 40, width=c.width + 8)


def test_hostile_streams_fail_cleanly(trained):
    """Every damaged stream is a CodecError; a forged but well-formed one may instead decode
    to an image of its declared size — never another exception, never another shape."""
    name, _, points = trained
    for codec in points:
        data = codec.encode(synthetic_image(45, 70, seed=1))
        for what, hostile in hostile_variants(data):
            try:
                x_hat = codec.decode(hostile)
            except CodecError:
                continue
            declared = Container.from_bytes(hostile)
            assert not what.startswith(("truncated", "bit flip", "huge")), f"{name}: {what} was not refused"
            assert x_hat.shape == (3, declared.height, declared.width), f"{name}: {what} decoded to {x_hat.shape}"
