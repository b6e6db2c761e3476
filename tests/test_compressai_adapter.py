"""The CompressAI adapter (lightning_modules/compressai_models.py) and `licbench import`: weights trained with
plain CompressAI code code to CompressAI's own strings, byte for byte, and decode to its own pixels; a new
architecture is one YAML; weights of another architecture or width are a one-line error; hostile sections
are refused."""
import hashlib
import math
import random

import pytest
import torch
import torch.nn.functional as F
from compressai.registry import MODELS

from conftest import run_cli
from licbench.core.bitstream import Container
from licbench.core.checkpoint import load_checkpoint, read_checkpoint
from licbench.core.codec import CodecError
from licbench.datamodules.synthetic import synthetic_image
from licbench.lightning_modules.base import ThreadInvariantConvolutions, fixed_threads
from licbench.lightning_modules.compressai_models import CompressAIModel
from licbench.train.importing import read_state_dict

WIDTHS = {"N": 8, "M": 8}


def trained_plainly(architecture: str, steps: int = 4, **widths) -> torch.nn.Module:
    """A CompressAI network after a few steps of CompressAI's examples/train.py recipe, written out here:
    loss λ·255²·MSE + bpp, Adam on the network, Adam on the bottleneck's quantiles by ``aux_loss``."""
    torch.manual_seed(0)
    net = MODELS[architecture](**(widths or WIDTHS))
    parameters = dict(net.named_parameters())
    optimizer = torch.optim.Adam([p for n, p in parameters.items() if not n.endswith(".quantiles")], lr=1e-3)
    aux_optimizer = torch.optim.Adam([p for n, p in parameters.items() if n.endswith(".quantiles")], lr=1e-3)
    x = torch.stack([synthetic_image(64, 64, seed=i) for i in range(2)])
    for _ in range(steps):
        out = net(x)
        bpp = sum(torch.log(p).sum() for p in out["likelihoods"].values()) / (-math.log(2) * 2 * 64 * 64)
        loss = 0.013 * 255**2 * F.mse_loss(out["x_hat"], x) + bpp
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        aux_optimizer.zero_grad()
        net.aux_loss().backward()
        aux_optimizer.step()
    return net.eval()


def compressai_coding(net: torch.nn.Module, x: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
    """CompressAI's own strings for ``x`` replicate-padded to the network's stride, and its decoding cropped:
    its own code, its convolutions on the backends licbench codes with (:class:`ThreadInvariantConvolutions`,
    so that the scales, and with them the strings, do not depend on the thread count)."""
    height, width = x.shape[1:]
    stride = net.downsampling_factor
    padded = F.pad(x[None], (0, -width % stride, 0, -height % stride), mode="replicate")
    net.update(force=True)
    with torch.no_grad(), ThreadInvariantConvolutions():
        out = net.compress(padded)
        with fixed_threads(CompressAIModel.decode_threads):
            x_hat = net.decompress(out["strings"], out["shape"])["x_hat"]
    return [s[0] for s in out["strings"]], x_hat[0, :, :height, :width]


def test_imported_weights_code_as_compressai_does(tmp_path):
    net = trained_plainly("bmshj2018-hyperprior")
    weights = tmp_path / "hyperprior.pth.tar"
    torch.save({"epoch": 3, "state_dict": net.state_dict(), "optimizer": {}}, weights)  # as examples/train.py saves
    ckpt = tmp_path / "imported.ckpt"
    run_cli("import", "model=balle2018", "model.N=8", "model.M=8", f"weights={weights}", f"out={ckpt}")
    meta = read_checkpoint(ckpt)["meta"]
    assert meta["imported"] == {"file": weights.name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                                "architecture": "bmshj2018-hyperprior"}
    assert str(weights) not in str(meta), "the checkpoint records the weights' machine path"
    codec = load_checkpoint(ckpt)
    x = synthetic_image(45, 70, seed=2)
    data = codec.encode(x)
    strings, x_hat = compressai_coding(net, x)
    assert Container.from_bytes(data).sections == strings
    assert torch.equal(codec.decode(data), x_hat)


def test_a_zoo_state_dict_with_old_key_names_loads(tmp_path):
    """The zoo publishes plain, updated state dicts under older names (``_matrix0`` for ``matrices.0``;
    older still ``_biases.0``; ``module.`` from DataParallel): CompressAI's renames apply."""
    net = trained_plainly("mbt2018-mean", steps=2)
    net.update(force=True)
    renames = {"entropy_bottleneck.matrices.": "entropy_bottleneck._matrix", "entropy_bottleneck.biases.":
               "entropy_bottleneck._biases.", "g_a.": "module.g_a."}
    old = dict(net.state_dict())
    for new_name, old_name in renames.items():
        old = {k.replace(new_name, old_name): v for k, v in old.items()}
    assert not old.keys() & {"entropy_bottleneck.matrices.0", "entropy_bottleneck.biases.0", "g_a.0.weight"}
    torch.save(old, tmp_path / "zoo.pth.tar")
    codec = CompressAIModel("minnen2018", "mbt2018-mean", **WIDTHS)
    codec.load_compressai(read_state_dict(tmp_path / "zoo.pth.tar")[0], "zoo.pth.tar")
    x = synthetic_image(30, 90, seed=1)
    strings, x_hat = compressai_coding(net, x)
    data = codec.encode(x)
    assert Container.from_bytes(data).sections == strings and torch.equal(codec.decode(data), x_hat)


@pytest.mark.parametrize("model, architecture", [("balle2018", "bmshj2018-hyperprior"), ("minnen2018", "mbt2018-mean")])
def test_a_compressai_architecture_trains_and_round_trips(tmp_path, model, architecture):
    ckpt = tmp_path / f"{model}.ckpt"
    run_cli("train", f"model={model}", f"+tiny={model}", "data=synthetic", "logger=none", "trainer.max_steps=3",
            f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")  # 64 x 96 crops: padded to the stride 64
    codec = load_checkpoint(ckpt)
    steps = read_checkpoint(ckpt)["meta"]["budget"]["steps"]
    assert (codec.name, codec.architecture, steps) == (model, architecture, 3)
    x = synthetic_image(45, 70, seed=4)
    data = codec.encode(x)
    container = Container.from_bytes(data)
    assert (container.codec, len(container.sections), container.model_id) == (model, 2, codec.model_id)
    x_hat = codec.decode(data)
    assert x_hat.shape == x.shape and torch.equal(x_hat, codec.decode(data))


def test_a_new_architecture_is_one_yaml(tmp_path):
    """A user's model config on the search path — here the autoregressive mbt2018, whose y string its own
    rANS loop decodes — trains, and codes under its config's name."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "context.yaml").write_text(
        "_target_: licbench.lightning_modules.compressai_models.CompressAIModel\n"
        "name: context\narchitecture: mbt2018\nN: 8\nM: 8\n")
    ckpt = tmp_path / "context.ckpt"
    run_cli("train", f"hydra.searchpath=[file://{tmp_path}]", "model=context", "data=synthetic", "logger=none",
            "trainer.max_steps=2", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")
    codec = load_checkpoint(ckpt)
    assert codec.layout()[2] == {0}, "mbt2018's y string is decoded outside the entropy models"
    x = synthetic_image(40, 50, seed=5)
    data = codec.encode(x)
    assert Container.from_bytes(data).codec == "context" and codec.decode(data).shape == x.shape


@pytest.mark.parametrize("model, weights, says", [
    ("balle2018", "mbt2018-mean", "is not a state dict of bmshj2018-hyperprior {'N': 8, 'M': 8}: 4 misshapen "
     "(h_s.2.weight [8, 12, 5, 5] (here [8, 8, 5, 5]), h_s.2.bias [12] (here [8]), h_s.4.weight"),
    ("balle2017", "bmshj2018-hyperprior", "model balle2017 is not a CompressAI architecture"),
])
def test_weights_of_another_architecture_are_a_one_line_error(tmp_path, model, weights, says):
    torch.save(MODELS[weights](**WIDTHS).state_dict(), tmp_path / "other.pth")
    proc = run_cli("import", f"model={model}", "model.N=8", "model.M=8", f"weights={tmp_path / 'other.pth'}",
                   f"out={tmp_path / 'x.ckpt'}", check=False)
    error = proc.stderr.splitlines()[-1]  # after torch.jit's deprecation warning
    assert proc.returncode == 1 and error.startswith("licbench: error: ") and says in error, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.ckpt").exists()


class NotWeights:
    """A pickled object: torch's weights-only loader refuses to build it."""


@pytest.mark.parametrize("write, says", [
    (lambda path: torch.save(MODELS["bmshj2018-hyperprior"](N=16, M=8).state_dict(), path),
     "52 misshapen (entropy_bottleneck.quantiles [16, 1, 3] (here [8, 1, 3]), entropy_bottleneck.matrices.0"),
    (lambda path: torch.save(MODELS["bmshj2018-factorized"](**WIDTHS).state_dict(), path), "missing (h_a.0.weight"),
    (lambda path: torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, path), "unexpected (conv.weight)"),
    (lambda path: torch.save([torch.zeros(1)], path), "holds no state dict"),
    (lambda path: torch.save({"state_dict": NotWeights()}, path),
     "refused to load w.pth: not a plain weights file (Unsupported global: GLOBAL test_compressai_adapter.NotWeights"),
    (lambda path: path.write_bytes(b"not a torch file"), "not a plain weights file (Unsupported operand"),
    (lambda path: path.write_bytes(b"PK\x03\x04 truncated zip"), "w.pth is not a readable weights file"),
])
def test_what_is_not_a_state_dict_of_the_architecture_is_named(tmp_path, write, says):
    write(tmp_path / "w.pth")
    codec = CompressAIModel("balle2018", "bmshj2018-hyperprior", **WIDTHS)
    with pytest.raises(CodecError) as err:
        codec.load_compressai(read_state_dict(tmp_path / "w.pth")[0], "w.pth")
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_bad_architecture_or_name_is_refused():
    with pytest.raises(CodecError, match="'ssf2020' is not an image architecture .* one of bmshj2018-factorized"):
        CompressAIModel("video", "ssf2020")
    with pytest.raises(CodecError, match="bmshj2018-hyperprior does not take"):
        CompressAIModel("x", "bmshj2018-hyperprior", N=8, M=8, width=3)
    with pytest.raises(CodecError, match="model.name must be the config's name"):
        CompressAIModel("Bad Name", "bmshj2018-hyperprior", **WIDTHS)


@pytest.fixture(scope="module")
def hyperprior():
    torch.manual_seed(1)
    codec = CompressAIModel("balle2018", "bmshj2018-hyperprior", **WIDTHS)
    codec.update(force=True)
    return codec


def forged(container: Container, **changes) -> bytes:
    fields = {"codec": container.codec, "height": container.height, "width": container.width,
              "sections": container.sections, "model_id": container.model_id}
    return Container(**{**fields, **changes}).to_bytes()  # a valid CRC: only the codec's checks can refuse it


def test_hostile_sections_are_refused(hyperprior):
    rng = random.Random(0)
    data = hyperprior.encode(synthetic_image(45, 70, seed=3))
    c = Container.from_bytes(data)
    y, z = c.sections
    hostile = {
        "one section": forged(c, sections=[y]),
        "three sections": forged(c, sections=[y, z, z]),
        "swapped": forged(c, sections=[z, y]),
        "halved z": forged(c, sections=[y, z[: len(z) // 2]]),
        "random z": forged(c, sections=[y, rng.randbytes(len(z))]),
        "random y": forged(c, sections=[rng.randbytes(len(y)), z]),
        "y with a tail": forged(c, sections=[y + bytes(8), z]),
        "a forged size": forged(c, height=4000, width=4000),
    }
    for what, stream in hostile.items():
        with pytest.raises(CodecError) as err:
            hyperprior.decode(stream)
        assert "\n" not in str(err.value), what
    assert torch.equal(hyperprior.decode(data), hyperprior.decode(data))


def test_a_forged_string_decoded_by_the_network_itself_is_read_within_its_bytes():
    """mbt2018's y string goes to its own rANS loop, unchecked but zero-padded: random bytes give an error
    or an image of the declared size, never a crash or another exception."""
    torch.manual_seed(2)
    codec = CompressAIModel("context", "mbt2018", **WIDTHS)
    codec.update(force=True)
    c = Container.from_bytes(codec.encode(synthetic_image(45, 70, seed=3)))
    rng = random.Random(1)
    for length in (1, 4, len(c.sections[0]), 64):
        try:
            x_hat = codec.decode(forged(c, sections=[rng.randbytes(length), c.sections[1]]))
        except CodecError:
            continue
        assert x_hat.shape == (3, 45, 70)
