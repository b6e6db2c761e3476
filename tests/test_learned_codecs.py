"""The codec contract, checked the same way for every learned codec: trained for a few real
steps through `licbench train` at its `conf/tiny/` size, loaded through the benchmark's own config
path, then coded at the lowest and highest rate points of its codec config. The codecs come from
conf/ (each `conf/model/NAME.yaml`, and each `conf/codec/` variant reading a model's checkpoints),
so a new method is checked without editing this file; and the identity rule of `licbench.core.zoo`
(one name for the model config, the class, the codec and the zoo folder) is checked here."""
import math
import random
from pathlib import Path, PurePath

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import get_class
from omegaconf import OmegaConf

from conftest import run_cli
from licbench.core import resolvers, zoo
from licbench.core.bitstream import Container
from licbench.core.codec import CodecError
from licbench.core.images import load_image, save_image, to_uint8_hwc
from licbench.datamodules.synthetic import synthetic_image

CONF = Path(resolvers.CONF_DIR)
MODELS = sorted(path.stem for path in (CONF / "model").glob("*.yaml"))
SIZES = [(45, 70), (17, 100)]  # neither side a multiple of any stride


def learned_codecs() -> dict[str, str]:
    """Each learned codec and the model config that trains it: NAME for each conf/model/NAME.yaml,
    and for a conf/codec/ variant without one (fmm_packed) the model whose zoo folder its
    checkpoints are in (``${paths.zoo_dir}/fmm/*.ckpt``: fmm)."""
    variants = sorted(path.stem for path in (CONF / "codec").glob("*.yaml") if path.stem not in MODELS)
    with initialize_config_module("licbench.conf", version_base=None):
        cfg = compose("benchmark", overrides=[f"codecs=[{','.join(variants)}]", "paths.zoo_dir=/zoo"])
        configs = zoo.configured_codecs(cfg)
    codecs = {name: name for name in MODELS}
    for name, config in configs.items():
        if "checkpoints" in config:
            model = PurePath(config.checkpoints).relative_to("/zoo").parts[0]
            assert model in MODELS, f"codec {name} reads {config.checkpoints}: no conf/model/ config's zoo folder"
            codecs[name] = model
    return codecs


CODECS = learned_codecs()


@pytest.mark.parametrize("name", MODELS)
def test_a_model_config_is_filed_under_its_class_name(name):
    """conf/model/NAME.yaml names a class whose ``name`` is NAME (or, for a class that takes its name from
    its config, such as the CompressAI adapter's, says ``name: NAME``), or is a training variant that
    starts from another model config (toderici2016); a conf/codec/NAME.yaml beside it adds to the default."""
    config = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    if "_target_" in config:
        named = get_class(config._target_).codec_name(OmegaConf.to_container(config))
        assert named == name, f"conf/model/{name}.yaml: its class names it {named!r}"
    else:
        assert set(config.get("defaults", [])) & set(MODELS), f"conf/model/{name}.yaml names no class nor model"
    codec = CONF / "codec" / f"{name}.yaml"
    assert not codec.exists() or OmegaConf.load(codec) != zoo.default_codec_config(name), f"{codec}: the default"


def test_every_model_has_tiny_settings():
    tiny = sorted(path.stem for path in (CONF / "tiny").glob("*.yaml"))
    assert tiny == MODELS, ("each conf/model/NAME.yaml needs a conf/tiny/NAME.yaml (`# @package model`, the "
                            f"overrides that train it 10 steps in seconds); models {MODELS}, tiny settings {tiny}")


def test_every_codec_is_an_option_of_encode(tmp_path):
    """``codec=NAME`` composes for each codec of conf/, a method without a conf/codec/ file getting
    its default, and for a method in a ``hydra.searchpath`` directory."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "slim.yaml").write_text("_target_: my_codec.Slim\n")
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    zoo.register_default_codecs([searchpath])
    with initialize_config_module("licbench.conf", version_base=None):
        codecs = {name: compose("encode", overrides=[searchpath, f"codec={name}", "paths.zoo_dir=/zoo"]).codec
                  for name in [*zoo.codec_names(), "slim"]}
    assert {name for name, codec in codecs.items() if "checkpoints" in codec} == {*CODECS, "slim"}
    assert [codecs[name].checkpoints for name in ("balle2017", "slim")] == ["/zoo/balle2017/*.ckpt", "/zoo/slim/*.ckpt"]


@pytest.fixture(scope="module", params=sorted(CODECS))
def trained(request, tmp_path_factory):
    name = request.param
    model = CODECS[name]
    out = tmp_path_factory.mktemp(name)
    ckpt = out / f"{name}.ckpt"
    run_cli("train", f"model={model}", f"+tiny={model}", "data=synthetic", "logger=none", "trainer.max_steps=10",
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


def test_the_estimate_takes_the_stream_just_coded_as_the_benchmark_passes_it(trained):
    name, _, points = trained
    x = synthetic_image(*SIZES[0], seed=0)
    for codec in points:
        bits = codec.estimate_bits(x, codec.encode(x))  # the benchmark's call (licbench/bench/benchmark.py)
        assert isinstance(bits, float) and (math.isnan(bits) or bits > 0), (name, codec.rate, bits)


def test_another_process_encodes_and_decodes_the_same(trained, tmp_path):
    name, ckpt, points = trained
    x = synthetic_image(45, 70, seed=5)
    png = tmp_path / "x.png"
    save_image(x, png)
    x = load_image(png)[0]
    for codec in points:
        stream = tmp_path / f"{codec.rate}.bin"
        run_cli("encode", f"codec={name}", f"weights={ckpt}", f"++codec.rate={codec.rate}", f"input={png}",
                f"output={stream}")
        assert stream.read_bytes() == codec.encode(x), f"{name} @ {codec.rate}: another process wrote other bytes"
        run_cli("decode", f"input={stream}", f"output={tmp_path / 'y.png'}", f"weights={ckpt}")
        decoded = to_uint8_hwc(codec.decode(stream.read_bytes()))
        assert np.array_equal(to_uint8_hwc(load_image(tmp_path / "y.png")[0]), decoded)


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
        fields = {"codec": c.codec, "height": c.height, "width": c.width, "sections": c.sections,
                  "model_id": c.model_id}
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
