import io
import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image

from licbench.baselines.pillow import PillowCodec, decode_pillow
from licbench.core import metrics
from licbench.core.bitstream import Container
from licbench.core.codec import CodecError
from licbench.datamodules.synthetic import Synthetic
from licbench.lightning_modules.jiang2017 import Jiang2017


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run fastest on one thread (and a shared machine stays usable)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kwargs) -> Jiang2017:
    torch.manual_seed(0)
    return Jiang2017(**{"com_channels": 8, "rec_channels": 8, "depth": 4, "qualities": [20, 50], **kwargs}).eval()


def test_architecture_matches_the_paper():
    model = Jiang2017()
    com = [m for m in model.com if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in com] == [
        (3, 64, (3, 3), (1, 1)), (64, 64, (3, 3), (2, 2)), (64, 3, (3, 3), (1, 1))]
    rec = [m for m in model.rec if isinstance(m, torch.nn.Conv2d)]
    assert len(rec) == 20 and all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in rec)
    assert (rec[0].in_channels, rec[-1].out_channels) == (3, 3)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.com) == 1
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.rec) == 18
    # Residual learning: with a zero last layer the RecCNN adds nothing to the bicubic upsampling.
    model = tiny().eval()
    torch.nn.init.zeros_(model.rec[-1].weight)
    torch.nn.init.zeros_(model.rec[-1].bias)
    decoded = torch.rand(1, 3, 6, 10)
    expected = F.interpolate(decoded, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(model.reconstruct(decoded), expected, atol=1e-6)
    assert model.compact(torch.rand(2, 3, 12, 20)).shape == (2, 3, 6, 10)


def test_com_residual_starts_from_area_downsampling_and_bicubic_upsampling(image):
    model = tiny(com_residual=True)
    x = image[:, :44, :70]
    assert torch.allclose(model.compact(x[None]), F.avg_pool2d(x[None], 2), atol=1e-6)
    inner = Container.from_bytes(model.encode(x)).sections[0]
    assert inner == PillowCodec("jpeg", model.rate).encode(F.avg_pool2d(x[None], 2)[0])


def test_few_training_steps_raise_psnr_of_the_whole_pipeline():
    data = Synthetic(count=4, height=48, width=48, batch_size=4)
    batch = torch.stack([x for _, x, _ in data.images()])
    model = tiny(com_channels=16, rec_channels=16, lr=3e-3)
    before_com, before_rec = model.com[0].weight.clone(), model.rec[0].weight.clone()

    def pipeline_psnr() -> float:
        with torch.no_grad():
            x_hat = model.eval()(batch, quality=50)["x_hat"].clamp(0, 1)
        return sum(metrics.psnr(a, b) for a, b in zip(batch, x_hat)) / len(batch)

    before = pipeline_psnr()
    trainer = pl.Trainer(max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model.train(), datamodule=data)
    after = pipeline_psnr()
    assert after > before + 6 and after > 15, (before, after)
    assert trainer.global_step == 40  # two optimizers, one step count
    assert not torch.equal(model.com[0].weight, before_com) and not torch.equal(model.rec[0].weight, before_rec)


def test_bytes_are_the_inner_file_plus_the_container_header(image):
    model = tiny()
    for point in model.rate_points(qualities=[10, 60]):
        data = point.encode(image)
        container = Container.from_bytes(data)
        padded = F.pad(image[None], (0, 0, 0, 1), mode="replicate")  # 45x70 -> 46x70
        with torch.no_grad():
            inner = PillowCodec("jpeg", point.rate).encode(model.compact(padded)[0].clamp(0, 1))
        assert container.sections == [inner]
        header = len(Container(model.name, 45, 70, [b""], model.model_id).to_bytes())
        assert len(data) == header + len(inner)
        with Image.open(io.BytesIO(inner)) as img:
            assert (img.format, img.size) == ("JPEG", (35, 23))


def test_decode_is_bit_exact_and_follows_the_pipeline(image):
    model = tiny()
    data = model.at_rate(50).encode(image)
    first, second = model.decode(data), model.decode(data)
    assert first.shape == image.shape and torch.equal(first, second)
    assert model.at_rate(50).encode(image) == data
    again = Jiang2017(com_channels=8, rec_channels=8, depth=4, qualities=[20, 50])
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.eval().decode(data), first)
    with torch.no_grad():
        expected = model.reconstruct(decode_pillow(Container.from_bytes(data).sections[0])[None])
    assert torch.equal(first, expected[0, :, :45, :70].clamp(0, 1))


def test_rate_points_are_the_inner_qualities(image):
    model = tiny()
    assert [p.rate for p in model.rate_points()] == [20, 50] and model.rate == 50
    assert [p.rate for p in model.rate_points(qualities=[5, 30, 90])] == [5, 30, 90]
    sizes = [len(p.encode(image)) for p in model.rate_points(qualities=[5, 30, 90])]
    assert sizes == sorted(sizes)
    assert math.isnan(model.rate_points()[0].estimate_bits(image))
    with pytest.raises(CodecError, match="quality"):
        model.rate_points(qualities=[101])
    with pytest.raises(CodecError, match="only `qualities`"):
        model.rate_points(iterations=[1])
    with pytest.raises(CodecError, match="unknown inner codec"):
        Jiang2017(inner="bpg")


def jpeg_with_size(height: int, width: int) -> bytes:
    """A real 8x8 JPEG whose frame header is forged to declare ``height x width``."""
    data = bytearray(PillowCodec("jpeg", 50).encode(torch.rand(3, 8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("sections, message", [
    ([b"garbage"], "unreadable"),
    ([PillowCodec("jpeg", 50).encode(torch.rand(3, 10, 16))], "inner image is 10x16"),
    ([PillowCodec("webp", 50).encode(torch.rand(3, 23, 36))], "unreadable"),
    ([jpeg_with_size(4000, 4000)], "inner image is 4000x4000"),  # refused from its header, before decoding
    ([jpeg_with_size(60000, 60000)], "unreadable"),  # Pillow's decompression-bomb limit
    ([PillowCodec("jpeg", 50).encode(torch.rand(3, 23, 36))[:200]], "cannot decode|unreadable"),
    ([], "1 section"),
    ([b"a", b"b"], "1 section"),
])
def test_hostile_sections_are_codec_errors(sections, message):
    model = tiny()
    data = Container(model.name, 45, 71, sections, model.model_id).to_bytes()
    with pytest.raises(CodecError, match=message):
        model.decode(data)


@pytest.mark.parametrize("inner, magic", [("webp", b"RIFF"), ("jpeg2000", b"\xff\x4f\xff\x51")])
def test_other_inner_codecs(image, inner, magic):
    model = tiny(inner=inner, qualities=[50] if inner == "webp" else [2.0])
    data = model.encode(image)
    assert Container.from_bytes(data).sections[0].startswith(magic)
    assert model.decode(data).shape == image.shape
    with pytest.raises(CodecError):
        model.decode(Container(model.name, 45, 71, [PillowCodec("jpeg", 50).encode(torch.rand(3, 23, 36))],
                               model.model_id).to_bytes())
