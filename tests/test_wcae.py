import struct

import numpy as np
import pytest
import pytorch_lightning as pl
import pywt
import torch

from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.codec import CodecError
from licbench.datamodules.synthetic import Synthetic, synthetic_image
from licbench.lightning_modules.layers import haar_dwt, haar_idwt
from licbench.lightning_modules.wcae import WCAE, NoWCAE


def branch_parameters(channels: int, downsamplings: int, N: int, M: int) -> int:
    """Analysis + mirrored synthesis of one branch, widths [c, N, N, N, 2N, ..., 2N, M]."""
    widths = [channels, N, N, N] + [2 * N] * (2 * downsamplings - 3) + [M]
    weights = sum(9 * a * b for a, b in zip(widths, widths[1:]))
    gdn = sum(w + w * w for w in widths[1:-1])  # beta + gamma, after every conv but the last
    return 2 * weights + 2 * gdn + sum(widths[1:]) + sum(widths[:-1])  # + analysis and synthesis biases


def test_parameter_count_against_the_paper():
    wcae = sum(p.numel() for p in WCAE(N=16, M=32).parameters())
    assert wcae == sum(branch_parameters(c, d, 16, 32) for c, d in [(12, 2), (9, 3), (9, 4)])
    assert wcae == 254_718  # the paper: 256,606 (-0.7 %, see the module docstring)
    assert sum(p.numel() for p in NoWCAE(N=16, M=32).parameters()) == branch_parameters(3, 4, 16, 32)


def test_branches_land_at_one_thirty_second():
    model = WCAE(N=8, M=16)
    strided = [sum(m.stride == (2, 2) for m in g.modules() if isinstance(m, torch.nn.Conv2d)) for g in model.g_a]
    assert strided == [2, 3, 4]  # coarsest, second, finest
    x = torch.rand(2, 3, 64, 96)
    assert [s.shape[1:] for s in model.to_scales(x)] == [(12, 8, 12), (9, 16, 24), (9, 32, 48)]
    assert model.analysis(x).shape == (2, 48, 2, 3)
    assert NoWCAE(N=8, M=16).analysis(x).shape == (2, 16, 4, 6)  # the finest branch's net on RGB: H/16


def test_haar_matches_pywavelets_and_inverts():
    x = torch.rand(2, 3, 64, 96, dtype=torch.float64)
    reference = pywt.wavedec2(x.numpy(), "haar", level=3, axes=(-2, -1))  # [cA3, (cH3, cV3, cD3), ..., (cH1, ...)]
    coarsest, second, finest = WCAE.to_scales(x)
    # channels R, G, B, each with its H, V, D bands
    details = [np.stack(bands, axis=2).reshape(2, 9, *bands[0].shape[-2:]) for bands in reference[1:]]
    expected = [np.concatenate([reference[0], details[0]], axis=1), details[1], details[2]]
    for ours, theirs in zip([coarsest, second, finest], expected):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6, rtol=0)
    assert torch.allclose(WCAE.from_scales([coarsest, second, finest]), x, atol=1e-12)
    ll, d = haar_dwt(x.float())
    assert torch.allclose(haar_idwt(ll, d), x.float(), atol=1e-6)


def test_noise_in_training_rounding_at_test():
    model = WCAE(N=8, M=16)
    x = torch.rand(1, 3, 64, 64)
    y = model.analysis(x)
    mean, std = model.gaussian(y)
    assert mean.half().float().equal(mean) and std.half().float().equal(std)  # what the stream carries
    offsets = [model.gaussian_conditional(y, std.expand_as(y), mean.expand_as(y), training=training)[0] - mean
               for training in (False, True)]
    assert torch.equal(offsets[0], offsets[0].round()) and not torch.equal(offsets[1], offsets[1].round())


def test_degenerate_codes():
    model = WCAE(N=4, M=8)
    y = torch.zeros(2, 24, 2, 2, requires_grad=True)  # a collapsed code: std 0
    mean, std = model.gaussian(y)
    (mean.sum() + std.sum()).backward()
    assert torch.isfinite(y.grad).all() and torch.all(std > 0.1)
    with torch.no_grad():
        model.g_a[0][0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(CodecError, match="non-finite code"):
        model.encode(synthetic_image(32, 32, seed=0))


@pytest.fixture(scope="module")
def trained():
    """A tiny WCAE trained for 150 real steps on a fixed synthetic batch; PSNR before and after."""
    torch.manual_seed(0)
    data = Synthetic(count=4, height=64, width=64, batch_size=4)
    batch = torch.stack([x for _, x, _ in data.images()])
    model = WCAE(N=8, M=16, lmbda=0.05, lr=3e-3)

    def psnr():
        return sum(metrics.psnr(a, b) for a, b in zip(batch, model.eval()(batch)["x_hat"].clamp(0, 1))) / len(batch)

    before = psnr()
    pl.Trainer(max_steps=150, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(model.train(), datamodule=data)
    return model.eval(), before, psnr()


def test_few_training_steps_raise_psnr(trained):
    _, before, after = trained
    assert after > before + 8 and after > 24, (before, after)


def test_bytes_agree_with_the_estimate(trained):
    model = trained[0]
    x = synthetic_image(192, 256, seed=1)  # ~5 kbit: the rANS flush (~6 bytes) is small beside it
    data = model.encode(x)
    sections = Container.from_bytes(data).sections
    _, std = struct.unpack(">ee", sections[0])
    assert std > 0.5  # a trained code, not a collapsed one
    coded, estimate = 8 * sum(map(len, sections)), model.estimate_bits(x)
    assert abs(coded - estimate) <= 0.03 * estimate, (coded, estimate)
    x_hat = model.decode(data)
    assert torch.equal(x_hat, model.decode(data)) and model.encode(x) == data
    forward = model(x[None])["x_hat"][0].clamp(0, 1)
    assert torch.allclose(x_hat, forward, atol=1e-5)  # the decoder reproduces the test-time forward pass


def forged(model, sections, height=64, width=64) -> bytes:
    return Container(model.name, height, width, sections, model.model_id).to_bytes()


def test_hostile_sections_are_clear_errors(trained):
    model = trained[0]
    params, payload = Container.from_bytes(model.encode(synthetic_image(64, 64, seed=2))).sections
    good = struct.unpack(">ee", params)
    hostile = {
        "one section": [params + payload],
        "short parameters": [params[:3], payload],
        "NaN std": [struct.pack(">ee", good[0], float("nan")), payload],
        "infinite mean": [struct.pack(">ee", float("inf"), good[1]), payload],
        "zero std": [struct.pack(">ee", good[0], 0.0), payload],
        "negative std": [struct.pack(">ee", good[0], -good[1]), payload],
        "truncated payload": [params, payload[:-4]],
        "extended payload": [params, payload + b"\x00" * 8],
        "empty payload": [params, b""],
        "garbage payload": [params, bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8))],
    }
    for what, sections in hostile.items():
        with pytest.raises(CodecError):
            model.decode(forged(model, sections))
            pytest.fail(what)
    with pytest.raises(CodecError):  # a forged image size: more symbols than the payload holds
        model.decode(forged(model, [params, payload], height=256, width=320))
    assert model.decode(forged(model, [params, payload])).shape == (3, 64, 64)


def test_nowcae_is_a_distinct_codec():
    wcae, nowcae = WCAE(N=8, M=16), NoWCAE(N=8, M=16)
    x = synthetic_image(45, 70, seed=3)
    data = nowcae.encode(x)
    assert Container.from_bytes(data).codec == "nowcae" and nowcae.decode(data).shape == x.shape
    convs = [m for m in nowcae.g_a.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(nowcae.g_a) == 1 and convs[0].in_channels == 3  # the RGB image itself, no DWT
    assert sum(c.stride == (2, 2) for c in convs) == 4 and nowcae.stride == 16
    with pytest.raises(CodecError, match="stream is for codec"):
        wcae.decode(data)
