"""CocoNet as a per-image codec: short fits on small synthetic images (steps, not seconds), both
quantizers, bit-exact decoding in other processes, hostile headers, and the no-op training."""
import os
import struct
import subprocess
import sys

import pytest
import torch

from conftest import REPO, run_cli
from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.checkpoint import AllocationBudget, OverBudget, read_checkpoint
from licbench.core.codec import CodecError
from licbench.datamodules.synthetic import synthetic_image
from licbench.lightning_modules.coconet import HEADER, CocoNet

FIT = {"steps": 150, "calibration": 512, "em_iterations": 5, "finetune_steps": 30}
SCALAR = {"width": 16, "depth": 3, "quantizer": "scalar", "bits": 8}
BGD = {"width": 16, "depth": 3, "quantizer": "bgd", "block": 4, "codewords": 16}


@pytest.fixture(scope="module")
def model() -> CocoNet:
    return CocoNet(**FIT)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return synthetic_image(30, 44, seed=4)


@pytest.fixture(scope="module")
def streams(model, image) -> dict:
    return {setting["quantizer"]: model.encode(image, **setting) for setting in (SCALAR, BGD)}


def sections(data: bytes) -> list[bytes]:
    return Container.from_bytes(data).sections


def resealed(data: bytes, **changes) -> bytes:
    c = Container.from_bytes(data)
    fields = {"codec": c.codec, "height": c.height, "width": c.width, "sections": c.sections, "model_id": c.model_id}
    return Container(**{**fields, **changes}).to_bytes()


@pytest.mark.parametrize("quantizer", ["scalar", "bgd"])
def test_round_trip_beats_the_mean_colour(model, image, streams, quantizer):
    x_hat = model.decode(streams[quantizer])
    mean = image.mean((1, 2), keepdim=True).expand_as(image)
    assert x_hat.shape == image.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    assert metrics.psnr(image, x_hat) > metrics.psnr(image, mean) + 3
    header = sections(streams[quantizer])[0]
    assert struct.unpack_from(HEADER, header)[1:] == (16, 3, FIT["steps"], 30, 44)  # architecture, budget, size


def test_encoding_is_deterministic(model, image, streams):
    assert model.encode(image, **BGD) == streams["bgd"]


def test_more_bits_more_bytes(model, image, streams):
    assert len(model.encode(image, **{**SCALAR, "width": 8})) < len(streams["scalar"])
    assert len(model.encode(image, **{**SCALAR, "bits": 5})) < len(streams["scalar"])
    assert len(model.encode(image, **{**BGD, "codewords": 4})) < len(streams["bgd"]) < len(streams["scalar"])


DECODE = """
import sys, torch
from licbench.lightning_modules.coconet import CocoNet
codec = CocoNet()
for stream in sys.argv[1:]:
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            torch.save(codec.decode(open(stream, 'rb').read()), f"{stream}-{threads}.pt")
"""


def test_another_process_decodes_the_same_pixels(model, streams, tmp_path):
    """A fresh process (its decoder's weights: the entropy tables CocoNet() computes) decodes each stream
    twice, with the caller's 1 and 2 threads, to the same pixels as this one."""
    paths = {quantizer: tmp_path / f"{quantizer}.bin" for quantizer in streams}
    for quantizer, path in paths.items():
        path.write_bytes(streams[quantizer])
    subprocess.run([sys.executable, "-c", DECODE, *map(str, paths.values())], check=True, cwd=REPO,
                   env={**os.environ, "OMP_NUM_THREADS": "2"})
    for quantizer, path in paths.items():
        here = model.decode(streams[quantizer])
        for threads in (1, 2):
            assert torch.equal(torch.load(f"{path}-{threads}.pt", weights_only=True), here), (quantizer, threads)


def forged_headers(data: bytes):
    header = sections(data)[0]
    kind, width, depth, steps, height, cols = struct.unpack_from(HEADER, header)
    setting = header[struct.calcsize(HEADER):]

    def head(setting=setting, **changes):
        values = {"kind": kind, "width": width, "depth": depth, "steps": steps, "height": height, "cols": cols}
        return struct.pack(HEADER, *{**values, **changes}.values()) + setting

    yield "widest network", head(width=1024, depth=16)
    yield "too wide", head(width=2**16 - 1)
    yield "too deep", head(depth=255)
    yield "other size", head(height=height * 50, cols=cols * 50)
    yield "unknown quantizer", head(kind=7)
    yield "short header", header[:-1]
    if kind == 1:
        yield "most codewords", head(setting=struct.pack(">BH", 4, 4096))
        yield "too many codewords", head(setting=struct.pack(">BH", 4, 2**16 - 1))
        yield "huge block", head(setting=struct.pack(">BH", 255, 16))
    else:
        yield "too many bits", head(setting=bytes([40]))


class RealAllocations(AllocationBudget):
    """The checkpoint loader's allocation budget, not counting shapes planned on the meta device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (kwargs or {}).get("device") == torch.device("meta"):
            return func(*args, **kwargs)
        return super().__torch_dispatch__(func, types, args, kwargs)


@pytest.mark.parametrize("quantizer", ["scalar", "bgd"])
def test_forged_streams_are_refused_before_allocating(model, streams, quantizer):
    """Every forged header or section is a one-line CodecError, raised before any tensor beyond the
    stream's own network (a few thousand elements) is allocated."""
    data = streams[quantizer]
    original = sections(data)
    side = 1 if quantizer == "scalar" else 3  # the steps and scale indexes; the assignments' histogram
    hostile = [(what, resealed(data, sections=[header, *original[1:]])) for what, header in forged_headers(data)]
    hostile += [("other container size", resealed(data, height=300, width=44)),
                ("a section dropped", resealed(data, sections=original[:-1])),
                ("a section too long", resealed(data, sections=[*original[:-1], original[-1] + b"\0"])),
                ("a section halved", resealed(data, sections=[*original[:-1], original[-1][:len(original[-1]) // 2]])),
                ("side information zeroed", resealed(data, sections=[*original[:side], bytes(len(original[side])),
                                                                     *original[side + 1:]]))]
    for what, stream in hostile:
        with pytest.raises(CodecError) as refused, RealAllocations(20_000):
            model.decode(stream)
        assert "\n" not in str(refused.value), what


def test_nan_weights_are_refused(model, streams):
    data = streams["bgd"]
    biases = sections(data)[1]
    stream = resealed(data, sections=[sections(data)[0], b"\x7e\x00" + biases[2:], *sections(data)[2:]])
    with pytest.raises(CodecError, match="non-finite"):
        model.decode(stream)


def test_odd_sizes_fit_or_are_refused_with_the_reason(model):
    tiny = torch.rand(3, 1, 1, generator=torch.Generator().manual_seed(0))
    for setting in (SCALAR, BGD):
        assert model.decode(model.encode(tiny, **setting)).shape == (3, 1, 1)
    big = torch.zeros(3, 3000, 4000)
    with pytest.raises(CodecError, match="multiply-accumulates"), AllocationBudget(10**6):
        model.encode(big, width=1024, depth=16)  # refused before the fit


def test_settings_are_validated(model):
    for bad in ({"quantizer": "vq"}, {"bits": 1}, {"bits": 13}, {"depth": 0}, {"widths": [0]}, {"widths": [8, 8]},
                {"quantizer": "bgd", "bits": 8}, {"quantizer": "bgd", "codewords": 5000}):
        with pytest.raises(CodecError, match="coconet"):
            model.rate_points(**{"widths": [8], **bad})
    points = model.rate_points(widths=[8, 16], depth=2, quantizer="bgd", codewords=32)
    assert [(p.rate, p.setting["codewords"]) for p in points] == [(8, 32), (16, 32)]
    with pytest.raises(CodecError, match="steps"):
        CocoNet(steps=0)


def test_training_is_a_one_line_no_op(tmp_path):
    ckpt = tmp_path / "coconet" / "coconet.ckpt"
    proc = run_cli("train", "model=coconet", "data=synthetic", "logger=none", "threads=1", f"ckpt_path={ckpt}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    said = [line for line in proc.stdout.splitlines() if "CocoNet" in line]
    assert len(said) == 1 and "training is a no-op" in said[0]
    payload = read_checkpoint(ckpt)
    assert payload["meta"]["budget"]["steps"] == 0 and {k.split(".")[0] for k in payload["state_dict"]} == {"gaussian"}
    assert payload["model"]["steps"] == 3000  # the fit's budget travels with the checkpoint


def test_the_budget_counts_real_allocations_only():
    """The guard above lets the decoder's meta-device shapes pass and would catch a real widest network."""
    with RealAllocations(20_000), torch.device("meta"):
        torch.nn.Linear(1024, 1024)
    with pytest.raises(OverBudget), RealAllocations(20_000):
        torch.nn.Linear(1024, 1024)
