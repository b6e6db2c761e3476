import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import REPO
from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.checkpoint import load_checkpoint, save_checkpoint
from licbench.core.codec import CodecError, weights_id
from licbench.datamodules.synthetic import Synthetic, synthetic_image
from licbench.lightning_modules.layers import ConvLSTM
from licbench.lightning_modules.toderici2017 import Toderici2017

TINY = dict(encoder_channels=[8, 16, 16, 16], decoder_channels=[16, 16, 16, 16], context_channels=8)


def tiny(**kwargs) -> Toderici2017:
    torch.manual_seed(0)
    return Toderici2017(**{**TINY, **kwargs}).eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny model after 60 real training steps (4 unrolled iterations) on a fixed synthetic batch, on one
    thread (the sums, and so the model, depend on the thread count)."""
    data = Synthetic(count=4, height=32, width=32, batch_size=4)
    batch = torch.stack([x for _, x, _ in data.images()])
    model = tiny(train_iterations=4, lr=3e-3)
    before, threads = model(batch, iterations=4), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pl.Trainer(max_steps=60, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0).fit(model.train(), datamodule=data)
    finally:
        torch.set_num_threads(threads)
    return model.eval(), batch, before


def sections(data: bytes) -> list[bytes]:
    return Container.from_bytes(data).sections


def test_architecture_matches_the_paper():
    model = Toderici2017()  # the paper's widths
    rnns = [m for m in model.encoder if isinstance(m, ConvLSTM)]
    assert model.encoder[0].stride == (2, 2) and model.encoder[0].out_channels == 64
    assert [(r.input.stride, r.hidden.out_channels // 4, r.hidden.kernel_size) for r in rnns] == [
        ((2, 2), 256, (1, 1)), ((2, 2), 512, (1, 1)), ((2, 2), 512, (1, 1))]
    assert (model.binarizer.kernel_size, model.binarizer.out_channels) == ((1, 1), 32)
    assert [(r.input.in_channels, r.hidden.out_channels // 4, r.hidden.kernel_size[0]) for r in model.decoder[1:]] == [
        (512, 512, 1), (128, 512, 1), (128, 256, 3), (64, 128, 3)]
    assert model.output.in_channels == 32 and model.output.out_channels == 3
    out = model.eval()(torch.rand(1, 3, 32, 32), iterations=2)
    assert out["x_hat"].shape == (1, 3, 32, 32) and out["bits"].shape == (1, 2 * 32, 2, 2)  # 32 bits per 16x16 per step
    assert set(out["bits"].unique().tolist()) <= {-1.0, 1.0}


def test_binarizer_is_stochastic_in_training_only():
    model = tiny()
    a = torch.full((20000,), 0.5, requires_grad=True)
    b = model.train()._binarize(a)
    assert set(b.detach().unique().tolist()) == {-1.0, 1.0}
    assert abs((b.detach() > 0).float().mean().item() - 0.75) < 0.02  # P(+1) = (1 + x) / 2
    b.sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))  # identity gradient
    x = torch.rand(1, 3, 32, 32)
    assert not torch.equal(model.train()(x, iterations=2)["x_hat"], model(x, iterations=2)["x_hat"])
    model.eval()
    assert torch.equal(model._binarize(torch.tensor([-0.2, 0.0, 0.3])), torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.equal(model(x, iterations=2)["x_hat"], model(x, iterations=2)["x_hat"])


def test_few_training_steps_lower_the_l1_and_raise_psnr(trained):
    model, batch, before = trained
    after = model(batch, iterations=4)
    assert after["residuals"].mean() < 0.8 * before["residuals"].mean()
    psnr = [sum(metrics.psnr(a, b) for a, b in zip(batch, out["x_hat"].clamp(0, 1))) / 4 for out in (before, after)]
    assert psnr[1] > psnr[0] + 2, psnr
    assert after["residuals"][3] < after["residuals"][0]  # later iterations refine


def test_raw_payload_is_32_bits_per_block_per_iteration():
    model, x = tiny(), synthetic_image(512, 768, seed=1)
    streams = {k: model.encode(x, iterations=k, bitstream="raw") for k in (1, 2, 3)}
    for k, data in streams.items():
        assert sections(data)[0] == bytes([0, k]) and len(sections(data)[1]) == 32 * k * (512 // 16) * (768 // 16) // 8
        assert metrics.bpp(len(data), 512, 768) == 0.125 * k + metrics.bpp(len(streams[1]) - 6144, 512, 768)
    assert model.estimate_bits(x, iterations=3, bitstream="raw") == 3 * 32 * 32 * 48
    odd = model.encode(synthetic_image(45, 70, seed=3), iterations=5, bitstream="raw")  # padded to 48 x 80: 15 blocks
    assert len(sections(odd)[1]) == 5 * 32 * 15 // 8


def test_images_over_the_pixel_limit_are_refused_before_coding():
    model, x = Toderici2017(**TINY, max_pixels=32 * 48), synthetic_image(32, 48, seed=1)
    data = model.encode(x, iterations=2)
    with pytest.raises(CodecError, match="over this model's limit"):
        model.encode(synthetic_image(48, 48, seed=1), iterations=2)
    model.hparams.max_pixels = 32 * 32
    with pytest.raises(CodecError, match="over this model's limit"):
        model.decode(data)


def test_entropy_coded_stream_is_smaller_than_raw_after_training(trained):
    model, batch = trained[:2]
    size = {kind: sum(len(sections(model.encode(x, iterations=4, bitstream=kind))[1]) for x in batch)
            for kind in ("raw", "rans")}
    assert size["rans"] < size["raw"], size  # the trained context model beats one bit per bit
    untrained = sum(len(sections(tiny().encode(x, iterations=4))[1]) for x in batch)
    assert untrained > size["raw"]  # P = 1/2 everywhere: rANS only adds its overhead
    x = synthetic_image(64, 64, seed=9)
    rans, estimate = len(sections(model.encode(x, iterations=4))[1]), model.estimate_bits(x, iterations=4) / 8
    assert abs(rans - estimate) <= 0.05 * estimate + 8, (rans, estimate)


@pytest.mark.parametrize("bitstream", ["raw", "rans"])
def test_k_iteration_stream_decodes_to_the_encoders_kth_reconstruction(trained, bitstream):
    model, x = trained[0], synthetic_image(45, 70, seed=3)
    padded = model._pad(x)
    steps = model(padded, iterations=8)["steps"]
    payloads = {}
    for k in (1, 3, 8):
        data = model.encode(x, iterations=k, bitstream=bitstream)
        expected = steps[k - 1][0, :, :45, :70].clamp(0, 1)
        assert torch.equal(model.decode(data), expected)
        assert torch.equal(model(padded, iterations=k)["x_hat"], steps[k - 1])
        payloads[k] = sections(data)[1]
    if bitstream == "raw":  # iteration-major: a k-iteration stream is a prefix of a longer one
        assert payloads[8].startswith(payloads[3]) and payloads[3].startswith(payloads[1])


def forge(model: Toderici2017, setting: bytes, payload: bytes) -> bytes:
    return Container(model.name, 45, 70, [setting, payload], model.model_id).to_bytes()


@pytest.mark.parametrize("case", ["k=0", "k=17", "kind=2", "raw truncated", "raw extra", "rans truncated",
                                  "rans garbage", "rans forged k", "rans forged size", "no setting"])
def test_hostile_section_contents_are_codec_errors(trained, case):
    model, x = trained[0], synthetic_image(45, 70, seed=3)
    raw, rans = (sections(model.encode(x, iterations=4, bitstream=kind))[1] for kind in ("raw", "rans"))
    data = {"k=0": forge(model, bytes([0, 0]), raw), "k=17": forge(model, bytes([1, 17]), rans),
            "kind=2": forge(model, bytes([2, 4]), raw), "raw truncated": forge(model, bytes([0, 4]), raw[:-1]),
            "raw extra": forge(model, bytes([0, 4]), raw + b"\0"),
            "rans truncated": forge(model, bytes([1, 4]), rans[:-3]),
            "rans garbage": forge(model, bytes([1, 4]), bytes(range(7, 250, 3))),
            "rans forged k": forge(model, bytes([1, 16]), rans),
            "rans forged size": Container(model.name, 8000, 8000, [bytes([1, 16]), rans], model.model_id).to_bytes(),
            "no setting": Container(model.name, 45, 70, [rans], model.model_id).to_bytes()}[case]
    with pytest.raises(CodecError):
        model.decode(data)


def test_rate_points_are_iterations_from_the_codec_configs(trained):
    model = trained[0]
    for name, kind in (("toderici2016", "raw"), ("toderici2017", "rans")):
        points = OmegaConf.load(REPO / "conf" / "codec" / f"{name}.yaml").points
        codecs = model.rate_points(**points)
        assert [c.rate for c in codecs] == list(range(1, 17))
        assert all(c.setting == {"iterations": c.rate, "bitstream": kind} for c in codecs)
    point = model.at_rate(3, **points)
    assert sections(point.encode(synthetic_image(32, 32, seed=0)))[0] == bytes([1, 3])
    for bad in ({"iterations": [0]}, {"iterations": [17]}, {"bitstream": "arithmetic"}):
        with pytest.raises(CodecError):
            model.rate_points(**bad)


def test_model_configs_build_and_round_trip_a_checkpoint(tmp_path):
    tiny_overrides = [f"model.{k}={v}" for k, v in TINY.items()]
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        configs = {name: compose("train", overrides=[f"model={name}", *tiny_overrides]).model
                   for name in ("toderici2016", "toderici2017")}
    assert configs["toderici2016"].bce_weight == 0 and configs["toderici2017"].bce_weight > 0
    model = instantiate(configs["toderici2016"])
    path = save_checkpoint(model, tmp_path / "t.ckpt", OmegaConf.to_container(configs["toderici2016"]), {})
    loaded = load_checkpoint(path)
    x = synthetic_image(40, 33, seed=4)
    data = model.eval().encode(x, iterations=2, bitstream="raw")
    assert torch.equal(loaded.decode(data), model.decode(data))


def test_checkpoints_from_before_the_entropy_model_module_load_with_their_id(trained, tmp_path):
    """Older checkpoints hold the entropy model's weights at the top level (``bit_bias``, ``context.*``)."""
    model, x = trained[0], synthetic_image(45, 70, seed=3)
    old = {key.removeprefix("entropy_model."): value for key, value in model.state_dict().items()}
    assert "bit_bias" in old and "context.0.weight" in old
    path = tmp_path / "old.ckpt"
    torch.save({"format": "licbench-checkpoint/1", "state_dict": old, "meta": {},
                "model": {"_target_": "licbench.lightning_modules.toderici2017.Toderici2017", **TINY}}, path)
    loaded = load_checkpoint(path)
    assert loaded.model_id == weights_id(model.name, old) != model.model_id  # the weights as the file stores them
    data = loaded.encode(x, iterations=4)
    assert Container.from_bytes(data).sections == sections(model.encode(x, iterations=4))
    assert torch.equal(loaded.decode(data), model.decode(model.encode(x, iterations=4)))


def test_streams_and_pixels_are_the_same_on_1_and_2_threads():
    """Entropy decoding must not depend on float summation order: the context model's probabilities
    (its CDF indexes) and the reconstruction are the same whatever the caller's thread count, so the
    stream is the same bytes from a caller on 1 or 2 threads, and decodes to the same pixels on either."""
    model = tiny()
    image, before, coded = synthetic_image(48, 64, seed=2), torch.get_num_threads(), []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            coded.append((model.encode(image, iterations=3), model.decode(model.encode(image, iterations=3))))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert coded[0][0] == coded[1][0] and torch.equal(coded[0][1], coded[1][1])


BANDED = dict(encoder_channels=[8, 32, 32, 32], decoder_channels=[32, 32, 32, 32], context_channels=8)


def test_coding_in_bands_gives_the_whole_images_streams_and_pixels():
    """The recurrent units computed 64 image rows at a time (bounded memory) code and decode exactly as the
    whole image at once, from an image in either memory layout (oneDNN sums each layout in its own order)."""
    x = synthetic_image(256, 160, seed=3)
    coded = []
    for rows in (None, 64):
        model = tiny(**BANDED, band_rows=rows)
        for layout in (torch.contiguous_format, torch.channels_last):
            data = model.encode(x[None].contiguous(memory_format=layout)[0], iterations=3)
            coded.append((data, model.decode(data)))
    assert all(data == coded[0][0] and torch.equal(x_hat, coded[0][1]) for data, x_hat in coded)


@pytest.mark.parametrize("bitstream", ["rans", "raw"])
def test_the_estimate_read_off_the_stream_is_the_forward_pass_estimate(trained, bitstream):
    model, batch, _ = trained
    data = model.encode(batch[0], iterations=3, bitstream=bitstream)
    from_stream = model.estimate_bits(batch[0], data, iterations=3, bitstream=bitstream)
    assert from_stream == model.estimate_bits(batch[0], iterations=3, bitstream=bitstream)
    assert (from_stream == 3 * 32 * 4) if bitstream == "raw" else (0 < from_stream < 3 * 32 * 4)
