import pickle

import pytest
import pytorch_lightning as pl
import torch

from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.checkpoint import load_checkpoint, read_checkpoint
from licbench.core.codec import CodecError
from licbench.datamodules.synthetic import Synthetic
from licbench.lightning_modules.balle2017 import Balle2017


def test_architecture_matches_the_paper():
    model = Balle2017(N=192, M=192)
    convs = [m for m in model.g_a if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((9, 9), (4, 4)), ((5, 5), (2, 2)), ((5, 5), (2, 2))]
    # 3 conv layers + 2 GDN (beta N, gamma N x N) on each side, and the factorized prior.
    conv = 3 * 192 * 81 + 192 + 192 * 192 * 25 + 192 + 192 * 192 * 25 + 192
    gdn = 2 * (192 + 192 * 192)
    transform = sum(p.numel() for p in model.g_a.parameters())
    assert transform == conv + gdn
    assert sum(p.numel() for p in model.g_s.parameters()) == conv - 192 + 3 + gdn


def test_few_training_steps_raise_psnr():
    torch.manual_seed(0)
    data = Synthetic(count=4, height=64, width=64, batch_size=4)
    batch = torch.stack([x for _, x, _ in data.images()])
    model = Balle2017(N=32, M=32, lmbda=0.05, lr=3e-3)
    before = sum(metrics.psnr(a, b) for a, b in zip(batch, model.eval()(batch)["x_hat"])) / 4
    pl.Trainer(max_steps=150, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(model.train(), datamodule=data)
    model.eval().update(force=True)
    after = sum(metrics.psnr(a, b) for a, b in zip(batch, model(batch)["x_hat"].clamp(0, 1))) / 4
    assert after > before + 5 and after > 20, (before, after)
    # Real bits: the coded size agrees with the model's own estimate.
    out = model(batch[:1])
    estimate = -torch.log2(out["likelihoods"]["y"]).sum().item() / 8
    payload = sum(map(len, Container.from_bytes(model.encode(batch[0])).sections))
    assert abs(payload - estimate) <= 0.1 * estimate + 8


def test_checkpoint_encode_decode_is_bit_exact(balle_checkpoint, image):
    model = load_checkpoint(balle_checkpoint)
    data = model.encode(image)
    first, second = model.decode(data), model.decode(data)
    assert first.shape == image.shape and torch.equal(first, second)
    assert model.encode(image) == data
    again = load_checkpoint(balle_checkpoint)  # a fresh instance decodes the same pixels
    assert torch.equal(again.decode(data), first)
    header = Container.from_bytes(data)
    assert (header.codec, header.height, header.width, header.model_id) == ("balle2017", 45, 70, model.model_id)


def test_checkpoint_is_slim_and_safe(balle_checkpoint):
    payload = torch.load(balle_checkpoint, weights_only=True)
    assert payload["model"]["_target_"].endswith("Balle2017")
    assert payload["meta"]["budget"]["steps"] == 20
    assert "entropy_bottleneck._quantized_cdf" in payload["state_dict"]
    assert payload["meta"]["data"]["_target_"].endswith("Synthetic")


def test_stream_for_other_weights_is_refused(balle_checkpoint, image):
    model = load_checkpoint(balle_checkpoint)
    other = Balle2017(N=16, M=16)
    other.update(force=True)
    with pytest.raises(CodecError, match="made by model"):
        other.decode(model.encode(image))


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"format": "licbench-checkpoint/1", "x": Evil()}))
    with pytest.raises(CodecError, match="refused"):
        read_checkpoint(path)


def test_checkpoint_naming_a_non_codec_class_is_refused(tmp_path, balle_checkpoint):
    payload = torch.load(balle_checkpoint, weights_only=True)
    for target, message in [("collections.OrderedDict", "not a codec module"), ("os.system", "unknown model class")]:
        payload["model"]["_target_"] = target
        torch.save(payload, tmp_path / "bad.ckpt")
        with pytest.raises(CodecError, match=message):
            load_checkpoint(tmp_path / "bad.ckpt")


@pytest.mark.parametrize("cut", [10, 40, -3])
def test_damaged_streams_are_clear_errors(balle_checkpoint, image, cut):
    model = load_checkpoint(balle_checkpoint)
    with pytest.raises(CodecError):
        model.decode(model.encode(image)[:cut])


def test_model_id_follows_the_weights():
    a, b = Balle2017(N=16, M=16), Balle2017(N=16, M=16)
    a.update(force=True)
    b.update(force=True)
    assert a.model_id != b.model_id
    b.load_state_dict(a.state_dict())
    assert b.model_id == a.model_id


def test_forged_sections_are_refused_around_decompress():
    torch.manual_seed(0)
    model = Balle2017(N=16, M=16).eval()
    model.update(force=True)
    bottleneck, shape = model.entropy_bottleneck, (1, 16, 2, 3)  # a 32x48 image
    valid = bottleneck.compress(torch.randn(shape))[0]
    huge = bottleneck.compress(torch.full(shape, 1e6))[0]  # canonical, but out of range

    def decode(section: bytes, height: int = 32, width: int = 48) -> torch.Tensor:
        return model.decode(Container(model.name, height, width, [section], model.model_id).to_bytes())

    assert decode(valid).shape == (3, 32, 48)
    for section, size, message in [(valid, (3200, 4800), "too few"), (huge, (32, 48), "code values beyond"),
                                   (valid + b"\x00\x01", (32, 48), "not the rANS coding")]:
        with pytest.raises(CodecError, match=message):
            decode(section, *size)
