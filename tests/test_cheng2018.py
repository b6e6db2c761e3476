import copy

import pytest
import pytorch_lightning as pl
import torch

from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.codec import CodecError
from licbench.datamodules.synthetic import Synthetic, synthetic_image
from licbench.lightning_modules.cheng2018 import Cheng2018

TINY = [12, 12, 24, 24, 24, 12]


def mean_psnr(model, batch, **setting):
    with torch.no_grad():
        x_hat = model.eval()(batch, **setting)["x_hat"].clamp(0, 1)
    return sum(metrics.psnr(a, b) for a, b in zip(batch, x_hat)) / len(batch)


@pytest.fixture(scope="module")
def trained():
    """A tiny CAE trained a few hundred real steps on a fixed synthetic batch; PCA fitted at the end."""
    torch.manual_seed(0)
    data = Synthetic(count=4, height=64, width=64, batch_size=4)
    batch = torch.stack([x for _, x, _ in data.images()])
    model = Cheng2018(channels=TINY, train_precision=4, lmbda=0.05, lr=3e-3, pca_batches=1)
    before = mean_psnr(model, batch)
    pl.Trainer(max_steps=300, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(model.train(), datamodule=data)
    return model.eval(), batch, before


def test_architecture_matches_the_paper():
    model = Cheng2018()
    convs = [m for m in model.g_a if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (3, 32, 3, 1), (32, 32, 3, 2), (32, 64, 3, 1), (64, 64, 3, 2), (64, 64, 3, 1), (64, 32, 3, 2)]
    ups = [m for m in model.g_s if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(u.kernel_size[0], u.stride[0]) for u in ups] == [(4, 2)] * 3
    assert sum(isinstance(m, torch.nn.PReLU) for m in model.modules()) == 11  # every conv but the output one
    assert model.g_a(torch.rand(1, 3, 128, 128)).shape == (1, 32, 16, 16)
    assert model.eval()(torch.rand(1, 3, 128, 128))["x_hat"].shape == (1, 3, 128, 128)


def test_few_training_steps_raise_psnr(trained):
    model, batch, before = trained
    after = mean_psnr(model, batch)
    assert after > before + 10 and after > 25, (before, after)


def test_pca_is_fitted_on_training_latents(trained):
    model, batch, _ = trained
    basis = model.pca_basis
    assert torch.allclose(basis.T @ basis, torch.eye(len(basis)), atol=1e-5)
    assert not torch.allclose(basis, torch.eye(len(basis)))  # end of training replaced the identity
    with torch.no_grad():
        y = model.g_a(batch).transpose(0, 1).flatten(1)
    assert torch.allclose(model.pca_mean, y.mean(1), atol=1e-4)
    variance = (basis.T @ (y - model.pca_mean[:, None])).var(1)
    assert torch.all(variance[:-1] >= variance[1:] - 1e-6)  # energy compaction: decreasing variance
    assert variance[:3].sum() > 0.9 * variance.sum()


def test_pca_rotation_saves_bytes(trained):
    model, batch, _ = trained
    unrotated = copy.deepcopy(model)
    unrotated.pca_basis.copy_(torch.eye(len(model.pca_basis)))
    unrotated._model_id = None
    for precision in (2, 4, 6):  # all components: the same information, coded in two bases
        rotated, plain = (sum(len(m.encode(x, precision=precision)) for x in batch) for m in (model, unrotated))
        assert rotated < 0.9 * plain, (precision, rotated, plain)


def test_more_components_and_precision_give_more_bytes_and_quality(trained):
    model, batch, _ = trained

    def point(label):
        codec = model.at_rate(label)
        streams = [codec.encode(x) for x in batch]
        psnr = sum(metrics.psnr(x, codec.decode(d)) for x, d in zip(batch, streams)) / len(batch)
        return sum(map(len, streams)), psnr

    for low, high in [("B4K1", "B4K3"), ("B4K3", "B4K12"), ("B2K12", "B4K12")]:
        (bytes_low, psnr_low), (bytes_high, psnr_high) = point(low), point(high)
        assert bytes_high > bytes_low and psnr_high > psnr_low, (low, high, bytes_low, bytes_high, psnr_low, psnr_high)
    # Beyond the training precision (B = 4) finer codes cost bytes, but the decoder never learned to use
    # them: quality is not guaranteed to rise (29.037 -> 29.028 dB was seen on a loaded machine).
    assert point("B6K12")[0] > point("B4K12")[0]


def test_bytes_match_the_estimate(trained):
    model, _, _ = trained
    x = synthetic_image(192, 256, seed=11)
    for label in ["B2K3", "B4K12", "B6K12"]:
        codec = model.at_rate(label)
        coded = sum(map(len, Container.from_bytes(codec.encode(x)).sections))
        estimate = codec.estimate_bits(x) / 8
        assert abs(coded - estimate) <= 0.03 * estimate, (label, coded, estimate)


def test_decode_is_bit_exact_and_needs_only_the_weights(trained):
    model, _, _ = trained
    x = synthetic_image(45, 70, seed=3)  # not a multiple of the stride
    data = model.at_rate("B5K8").encode(x)
    first = model.decode(data)
    assert first.shape == x.shape and torch.equal(first, model.decode(data))
    fresh = Cheng2018(channels=TINY, train_precision=4)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.decode(data), first)
    assert Container.from_bytes(data).sections[0][:2] == bytes([5, 8])


def test_rate_point_labels():
    model = Cheng2018(channels=TINY, train_precision=3)
    assert [p.rate for p in model.rate_points()] == [model.rate] == ["B3K12"]
    assert model.at_rate("B7K2", labels=["B2K4"]).setting == {"precision": 7, "components": 2}  # any label encodes
    points = model.rate_points(labels=["B2K4", "B6K12"])
    assert [(p.rate, p.setting) for p in points] == [("B2K4", {"precision": 2, "components": 4}),
                                                      ("B6K12", {"precision": 6, "components": 12})]
    for label in ["B0K4", "B9K4", "B4K13", "B4K0", "Q4K2", "B4"]:
        with pytest.raises(CodecError):
            model.rate_points(labels=[label])
        with pytest.raises(CodecError):
            model.at_rate(label)


@pytest.fixture(scope="module")
def coded(trained):
    model = trained[0]
    return Container.from_bytes(model.at_rate("B4K6").encode(synthetic_image(40, 48, seed=5))).sections


HOSTILE = {
    "B zero": lambda h, p: [bytes([0, 6]) + h[2:], p],
    "B too large": lambda h, p: [bytes([9, 6]) + h[2:], p],
    "K too large": lambda h, p: [bytes([4, 13]) + h[2:] + bytes(7), p],
    "K without its scales": lambda h, p: [bytes([4, 9]) + h[2:], p],
    "scales without K": lambda h, p: [h + bytes(1), p],
    "scale index beyond the table": lambda h, p: [h[:2] + bytes([255] * 6), p],
    "empty setting": lambda h, p: [b"", p],
    "one section": lambda h, p: [h],
    "three sections": lambda h, p: [h, p, p],
    "truncated payload": lambda h, p: [h, p[:len(p) // 2]],
    "empty payload": lambda h, p: [h, b""],
    "garbage payload": lambda h, p: [h, bytes(range(256)) * 4],
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_sections_are_clear_errors(trained, coded, case):
    model = trained[0]
    assert model.decode(Container(model.name, 40, 48, coded, model.model_id).to_bytes()).shape == (3, 40, 48)
    with pytest.raises(CodecError):
        model.decode(Container(model.name, 40, 48, HOSTILE[case](*coded), model.model_id).to_bytes())
