import pytest
import pytorch_lightning as pl
import torch

from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.checkpoint import load_checkpoint, save_checkpoint
from licbench.core.codec import CodecError
from licbench.datamodules.patches import Patches
from licbench.datamodules.synthetic import Synthetic, synthetic_image
from licbench.lightning_modules.theis2017 import Theis2017

TINY = dict(N=16, M=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(model, data, steps):
    pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(model.train(), datamodule=data)
    return model.eval()


@pytest.fixture(scope="module")
def trained(datasets):
    """A tiny model trained a few hundred steps on BSDS500 training crops, and a BSDS500 val crop."""
    torch.manual_seed(0)
    data = Patches(str(datasets / "bsds500"), patch_size=48, batch_size=8, epoch_size=2400, val_size=160, val_images=1)
    data.setup()
    model = fit(Theis2017(**TINY, lmbda=0.01, lr=3e-3, lr_min_ratio=0.1), data, 300)
    return model, data.val_crops[0]


def test_architecture_matches_the_paper():
    model = Theis2017()
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    strided = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding_mode)
               for c in convs if c.stride == (2, 2)]
    assert strided == [(3, 64, (5, 5), (2, 2), "reflect"), (64, 128, (5, 5), (2, 2), "reflect"),
                       (128, 96, (5, 5), (2, 2), "reflect")]
    assert len(convs) == 3 + 3 * 2  # three residual blocks of two 3x3 convs
    shuffles = [m for m in model.decoder.modules() if isinstance(m, torch.nn.PixelShuffle)]
    subpel = [m.out_channels for m in model.decoder.modules()
              if isinstance(m, torch.nn.Conv2d) and m.out_channels != 128]
    assert len(shuffles) == 3 and subpel == [512, 256, 12]
    assert model.gsm.log_variances.shape == model.gsm.logits.shape == (96, 6)
    assert model.encode_latent(torch.rand(1, 3, 32, 48)).shape == (1, 96, 4, 6)


def test_gsm_rate_terms_and_tables_agree():
    torch.manual_seed(0)
    gsm = Theis2017(**TINY, scales=3).gsm
    with torch.no_grad():
        gsm.log_variances.normal_(0, 2)
        gsm.logits.normal_()
    # The integer masses are a distribution per channel...
    k = torch.arange(-400, 401.0).view(1, 1, -1, 1).expand(1, 16, -1, 1)
    assert torch.allclose(gsm.mass(k).sum(2), torch.ones(1, 16, 1), atol=1e-5)
    # ...the training rate E_u[-log2 q(z + u)] bounds the coding cost -log2 P(z) from above (Jensen)...
    z = torch.randint(-3, 4, (64, 16, 4, 4)).float()
    train_bits = -torch.log2(gsm.train()(z)[1]).mean()
    test_bits = -torch.log2(gsm.eval()(z)[1]).mean()
    assert 0 < test_bits < train_bits < test_bits + 0.5, (train_bits, test_bits)
    # ...and the rANS tables are those masses quantized to 16 bits.
    gsm.update(force=True)
    c = 5
    radius, cdf = -gsm._offset[c].item(), gsm._quantized_cdf[c, : gsm._cdf_length[c]].double() / 2**16
    pmf = gsm.mass(torch.arange(-radius, radius + 1.0).view(1, 1, -1).expand(1, 16, -1))[0, c].double()
    assert torch.allclose(cdf.diff(), torch.cat([pmf, 1 - pmf.sum(0, keepdim=True)]), atol=2e-4)  # last: escape


def test_rounding_and_clipping_pass_gradients_straight_through():
    model = Theis2017(**TINY).train()
    x = torch.rand(2, 3, 32, 32)
    y_hat, _ = model.gsm(model.encode_latent(x))
    assert torch.equal(y_hat, y_hat.round())  # the decoder sees the rounded code in training too
    out = model(x)
    assert out["x_hat"].min() >= 0 and out["x_hat"].max() <= 1
    model.rd_loss(x, out)["loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # through rounding
    code = torch.full((1, 16, 4, 4), 50.0, requires_grad=True)  # drives the output far out of range
    model.decode_latent(code).sum().backward()
    assert code.grad.abs().sum() > 0  # through clipping


def test_few_training_steps_raise_psnr():
    torch.manual_seed(0)
    data = Synthetic(count=4, height=32, width=32, batch_size=4)
    batch = torch.stack([x for _, x, _ in data.images()])
    model = Theis2017(**TINY, lmbda=0.05, lr=3e-3, gsm_lr_scale=10)
    before = sum(metrics.psnr(a, b) for a, b in zip(batch, model.eval()(batch)["x_hat"])) / 4
    fit(model, data, 80)
    after = sum(metrics.psnr(a, b) for a, b in zip(batch, model(batch)["x_hat"])) / 4
    assert after > before + 5 and after > 20, (before, after)
    network, gsm = model.trainer.optimizers[0].param_groups
    assert gsm["lr"] == pytest.approx(10 * network["lr"]) and gsm["params"] == list(model.gsm.parameters())


def test_bytes_are_within_3_percent_of_the_estimate(trained):
    model, image = trained
    model.update(force=True)
    payload = sum(map(len, Container.from_bytes(model.encode(image)).sections))
    estimate = model.estimate_bits(image) / 8
    assert payload > 200 and abs(payload - estimate) <= 0.03 * estimate, (payload, estimate)


def test_checkpoint_carries_the_tables(trained, tmp_path, image):
    model, _ = trained
    path = save_checkpoint(model, tmp_path / "t.ckpt", {"_target_": "licbench.lightning_modules.theis2017.Theis2017",
                                                         **TINY}, {})
    assert "gsm._quantized_cdf" in torch.load(path, weights_only=True)["state_dict"]
    data = model.encode(image)
    fresh = load_checkpoint(path)  # empty tables, resized on load
    assert torch.equal(fresh.decode(data), model.decode(data))
    other = Theis2017(**TINY, scales=6)
    other.update(force=True)  # tables of another size, replaced on load
    other.load_state_dict(model.state_dict())
    assert other.model_id == model.model_id and other.encode(image) == data


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (17, 9)])
def test_tiny_images_round_trip(size):
    model = Theis2017(**TINY).eval()
    model.update(force=True)
    image = synthetic_image(*size, seed=1)
    data = model.encode(image)
    expected = model(model._pad(image))["x_hat"][0, :, : size[0], : size[1]]
    assert torch.equal(model.decode(data), expected)


@pytest.mark.parametrize("section", [b"", b"\x00" * 9, bytes(range(256)) * 3, b"\xff" * 40, "truncated", "extended"])
def test_hostile_section_contents_are_refused(trained, section):
    model, image = trained
    valid = Container.from_bytes(model.encode(image))
    payload = valid.sections[0]
    section = {"truncated": payload[:-5], "extended": payload + b"\x00\x01"}.get(section, section)
    forged = Container(model.name, valid.height, valid.width, [section], model.model_id).to_bytes()
    with pytest.raises(CodecError, match="corrupt theis2017 stream"):
        model.decode(forged)


def test_wrong_section_count_is_refused(trained):
    model, image = trained
    valid = Container.from_bytes(model.encode(image))
    with pytest.raises(CodecError, match="1 section"):
        model.decode(Container(model.name, valid.height, valid.width, [valid.sections[0], b""],
                               model.model_id).to_bytes())


def test_forged_huge_code_values_are_refused(trained):
    model, image = trained
    valid = Container.from_bytes(model.encode(image))
    shape = (1, 16, 160 // 8, 160 // 8)
    section = model.gsm.compress(torch.full(shape, 1e6), model.gsm.indexes(shape))[0]  # canonical, but out of range
    with pytest.raises(CodecError, match="code values beyond"):
        model.decode(Container(model.name, valid.height, valid.width, [section], model.model_id).to_bytes())


def test_fine_tuning_the_scale_parameters_gives_a_lower_rate_from_the_same_transforms(trained, datasets):
    """§3.2: at a lower λ only the scale parameters and the mixture train; the rate falls and the
    encoder and decoder weights stay those of the trained model."""
    model, image = trained
    model.update(force=True)
    bits = model.estimate_bits(image)
    tuned = Theis2017(**TINY, lmbda=0.002, lr=1e-2, fine_tune_scales=True)
    tuned.load_state_dict(model.state_dict())
    data = Patches(str(datasets / "bsds500"), patch_size=48, batch_size=8, epoch_size=800, val_size=160, val_images=1)
    fit(tuned, data, 100)
    assert tuned.log_step.mean() > 0.1  # coarser steps
    for name, weight in model.state_dict().items():
        if name.startswith(("encoder.", "decoder.")):
            assert torch.equal(weight, tuned.state_dict()[name]), name
    assert tuned.estimate_bits(image) < 0.8 * bits
    assert tuned.decode(tuned.encode(image)).shape == image.shape


def test_checkpoints_from_before_the_scale_parameters_load_with_unit_steps(trained):
    model, image = trained
    old = {k: v for k, v in model.state_dict().items() if k != "log_step"}
    fresh = Theis2017(**TINY).eval()
    fresh.load_state_dict(Theis2017.renamed_weights(old))
    assert torch.equal(fresh.log_step, torch.zeros(1, 16, 1, 1)) and fresh.encode(image) == model.encode(image)
