import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, run_cli
from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.checkpoint import load_checkpoint, read_checkpoint
from licbench.core.codec import CodecError
from licbench.core.images import load_image
from licbench.core.zoo import rate_points
from licbench.lightning_modules.fmm import FMM, code_bits, levels


@pytest.fixture(scope="module")
def kodim01(datasets) -> torch.Tensor:
    return load_image(datasets / "kodak" / "kodim01.png")[0]  # test only: nothing is fitted to it


@pytest.fixture(scope="module")
def crop(kodim01) -> torch.Tensor:
    return kodim01[:, 200:296, 300:400]


def payload(data: bytes) -> list[bytes]:
    return Container.from_bytes(data).sections


def test_the_papers_rule_at_m5():
    x = torch.arange(256).float().div(255).expand(3, 4, 256).contiguous()  # every 8-bit value
    model = FMM()
    values = (model.decode(model.encode(x, modulus=5)) * 255).round().long()
    assert (levels(5), code_bits(5)) == (52, 6)
    assert set(values.unique().tolist()) == set(range(0, 256, 5))
    assert values[0, 0, 253] == values[0, 0, 254] == 255 and values[0, 0, 252] == 250 and values[0, 0, 3] == 5
    for m in (2, 7, 10, 13, 255):  # any modulus: the nearest multiple of m, a multiple past 255 decodes to 255
        values = (model.decode(model.encode(x, modulus=m)) * 255).round()
        assert (values - x * 255).abs().max() <= m // 2 and set(values.unique().tolist()) <= {*range(0, 256, m), 255}
    assert model.decode(model.encode(x, modulus=13))[0, 0, 255] == 1  # 13·round(255/13) = 260 -> 255, not 247


def test_m5_on_a_photo_is_18_bpp_at_45_db(kodim01):
    model = FMM()
    data = model.encode(kodim01, modulus=5)
    x_hat = model.decode(data)
    height, width = kodim01.shape[1:]
    assert ((x_hat - kodim01) * 255).round().abs().max() <= 2
    assert 44.5 < metrics.psnr(kodim01, x_hat) < 46
    header, codes = payload(data)
    assert header == bytes([0, 5]) and len(codes) * 8 == 3 * height * width * 6  # exactly 6 bits per value
    assert 0 < metrics.bpp(len(data), height, width) - 18 < 2e-3  # + header
    coded = model.encode(kodim01, modulus=5, entropy_coding=True)
    assert len(coded) < 0.95 * len(data) and torch.equal(model.decode(coded), x_hat)  # same pixels, fewer bytes


@pytest.mark.parametrize("entropy_coding", [False, True])
def test_larger_modulus_fewer_bytes_lower_psnr(crop, entropy_coding):
    model = FMM()
    points = model.rate_points(moduli=[3, 5, 9, 17, 35, 73], entropy_coding=entropy_coding)
    sizes, psnrs = [], []
    for point in points:
        data = point.encode(crop)
        sizes.append(len(data))
        psnrs.append(metrics.psnr(crop, point.decode(data)))
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert psnrs == sorted(psnrs, reverse=True) and psnrs[-1] < 25 and psnrs[1] > 44.5


def test_entropy_coding_is_smaller_and_the_estimate_is_honest(crop):
    model = FMM()
    n = crop.shape[1] * crop.shape[2]
    for m in (3, 5, 9, 17, 35):
        packed = model.encode(crop, modulus=m)
        coded = model.encode(crop, modulus=m, entropy_coding=True)
        assert len(coded) < len(packed)
        assert model.estimate_bits(crop, modulus=m) == 8 * len(payload(packed)[1]) == 3 * n * code_bits(m)
        header, table, stream = payload(coded)  # side info: one u16 frequency per code and channel
        assert header == bytes([1, m]) and len(table) == 3 * levels(m) * 2
        estimate = model.estimate_bits(crop, modulus=m, entropy_coding=True)  # the empirical entropy
        assert 0.99 * estimate <= 8 * len(stream) <= 1.01 * estimate + 64


@pytest.mark.parametrize("entropy_coding", [False, True])
def test_decode_is_bit_exact(crop, entropy_coding):
    model = FMM()
    x = crop[:, :37, :53]  # odd sizes: stride 1, no padding
    data = model.encode(x, modulus=7, entropy_coding=entropy_coding)
    x_hat = FMM().decode(data)  # a fresh instance: nothing but the bytes
    assert x_hat.shape == x.shape and model.encode(x, modulus=7, entropy_coding=entropy_coding) == data
    assert torch.equal(x_hat, model(x[None], modulus=7)["x_hat"][0])


def forged(*sections, height=8, width=8) -> bytes:
    return Container("fmm", height, width, list(sections), FMM().model_id).to_bytes()


def escape_table(m: int) -> bytes:
    """Valid frequencies that leave almost all the range to the escape symbol."""
    return np.ones((3, levels(m)), ">u2").tobytes()


@pytest.mark.parametrize("data,message", [
    (forged(), "2-byte section"),
    (forged(b"\x00"), "2-byte section"),
    (forged(b"\x02\x05", b""), "2-byte section"),
    (forged(b"\x00\x01", bytes(144)), "outside 2..255"),
    (forged(b"\x00\x05", bytes(143)), "needs 144"),  # 8x8x3 values x 6 bits
    (forged(b"\x00\x05", bytes(145)), "needs 144"),
    (forged(b"\x00\x05", bytes(144), height=5000, width=5000), "needs"),
    (forged(b"\x00\x05", bytes(144), b""), "3 sections"),
    (forged(b"\x00\x07", b"\xff" * 144), "codes outside 0..36"),
    (forged(b"\x01\x05", bytes(311), b""), "frequency table"),
    (forged(b"\x01\x05", bytes(312), b""), "frequency table is invalid"),
    (forged(b"\x01\x05", b"\x80\x00" * 156, b""), "frequency table is invalid"),
    (forged(b"\x01\x05", escape_table(5), np.random.default_rng(0).bytes(64)), "codes outside"),
])
def test_hostile_sections_are_codec_errors(data, message):
    with pytest.raises(CodecError, match=message):
        FMM().decode(data)


def test_rate_points_and_their_validation():
    model = FMM()
    assert [(p.rate, p.setting) for p in model.rate_points(moduli=[5, 9], entropy_coding=False)] == [
        (5, {"modulus": 5, "entropy_coding": False}), (9, {"modulus": 9, "entropy_coding": False})]
    assert model.at_rate("9", moduli=[5, 9]).setting == {"modulus": 9, "entropy_coding": True}
    for bad in ([1, 5], [5, 5], [256], []):
        with pytest.raises(CodecError, match="moduli"):
            model.rate_points(moduli=bad)
    with pytest.raises(CodecError, match="modulus"):
        model.encode(torch.rand(3, 8, 8), modulus=300)


def test_training_is_a_quick_no_op_that_writes_a_zoo_checkpoint(tmp_path, crop):
    ckpt = tmp_path / "fmm" / "fmm.ckpt"
    proc = run_cli("train", "model=fmm", "data=synthetic", "logger=none", "threads=1", f"ckpt_path={ckpt}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert "training is a no-op" in proc.stdout
    payload = read_checkpoint(ckpt)
    assert payload["state_dict"] == {} and payload["meta"]["budget"]["steps"] == 0
    for name, kind in (("fmm", True), ("fmm_packed", False)):
        cfg = OmegaConf.load(REPO / "conf" / "codec" / f"{name}.yaml")
        cfg.checkpoints = str(tmp_path / "fmm" / "*.ckpt")
        points = rate_points(name, cfg)
        assert [p.rate for p in points] == list(cfg.points.moduli) and points[0].setting["entropy_coding"] is kind
    data = points[1].encode(crop)
    assert torch.equal(load_checkpoint(ckpt).decode(data), FMM().decode(data))
    assert 8 * len(data) / (crop.shape[1] * crop.shape[2]) == pytest.approx(18, abs=0.1)
