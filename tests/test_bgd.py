"""Stock et al.'s product quantization (lightning_modules/bgd.py): the output objective against k-means
in weight space, the transposed convolution's patches, the bytes and their guards, fine-tuning, and the
tool that quantizes a trained codec's synthesis transform."""
import copy

import pytest
import torch
import torch.nn.functional as F

from licbench.core.checkpoint import save_checkpoint
from licbench.core.codec import CodecError
from licbench.core.images import save_image
from licbench.datamodules.synthetic import synthetic_image
from licbench.lightning_modules import bgd
from licbench.lightning_modules.balle2017 import Balle2017
from licbench.lightning_modules.coconet import coordinates, mlp
from licbench.tools import bgd_decoder

BLOCK, CODEWORDS = 4, 16  # the same bits for both quantizers: 4-bit indexes of 4 weights, 16 codewords


def network(seed: int) -> torch.nn.Sequential:
    """A fixed small CocoNet-like network (random weights and biases from ``seed``)."""
    generator, net = torch.Generator().manual_seed(seed), mlp(32, 3)
    for layer in net[::2]:
        torch.nn.init.xavier_uniform_(layer.weight, generator=generator)
        torch.nn.init.uniform_(layer.bias, -0.5, 0.5, generator=generator)
    return net


INPUTS = coordinates(torch.arange(32 * 32), 32, 32)


@torch.no_grad()
def kmeans_network(net: torch.nn.Sequential) -> torch.nn.Sequential:
    """Every layer's sub-vectors quantized by k-means in weight space (the baseline of §4)."""
    net = copy.deepcopy(net)
    for layer in net[::2]:
        k, d, _ = bgd.layout(layer, BLOCK, CODEWORDS)
        codebook, labels = bgd.kmeans(bgd.subvectors(layer, d), k, seed=0)
        layer.weight.copy_(bgd.Quantized(codebook.float(), labels, tuple(layer.weight.shape)).weight())
    return net


@pytest.mark.parametrize("seed", range(4))
@torch.no_grad()
def test_the_output_objective_beats_kmeans_on_the_layers_outputs(seed):
    net = network(seed)
    x, layer = net[1](net[0](INPUTS)), net[2]  # a hidden layer and its in-domain inputs
    k, d, _ = bgd.layout(layer, BLOCK, CODEWORDS)
    v = bgd.subvectors(layer, d)

    def output_error(codebook, assignments):
        return float(((x @ (layer.weight - codebook.float()[assignments].reshape(layer.weight.shape)).T) ** 2).sum())

    em = bgd.em(v, bgd.gram(layer, x, d, 0, torch.Generator()), k, 20, seed=0)
    assert output_error(*em) < 0.97 * output_error(*bgd.kmeans(v, k, seed=0))


@torch.no_grad()
def test_bottom_up_quantization_preserves_the_networks_outputs_better_than_kmeans():
    errors = {"bgd": [], "kmeans": []}
    for seed in range(4):
        net = network(seed)
        reference, quantized = net(INPUTS), copy.deepcopy(net)
        layers = bgd.quantize(quantized, INPUTS, BLOCK, CODEWORDS, iterations=20, rows=0, seed=0)
        assert list(layers) == ["0", "2", "4", "6"] and all(len(q.codebook) <= CODEWORDS for q in layers.values())
        errors["bgd"].append(F.mse_loss(quantized(INPUTS), reference))
        errors["kmeans"].append(F.mse_loss(kmeans_network(net)(INPUTS), reference))
    assert sum(errors["bgd"]) < 0.8 * sum(errors["kmeans"])


def test_transposed_convolution_patches_are_what_its_kernels_see():
    layer = torch.nn.ConvTranspose2d(1, 1, 5, stride=2, padding=2, output_padding=1, bias=False)
    x = torch.randn(2, 1, 6, 7, generator=torch.Generator().manual_seed(0))
    patches = bgd.dilated_patches(layer, x, 200, torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)  # the positions dilated_patches drew
    b, i, j = (torch.randint(n, (200,), generator=generator) for n in (2, 12, 14))
    with torch.no_grad():
        torch.testing.assert_close(patches @ layer.weight.flatten(), layer(x)[b, 0, i, j])


def packed_network():
    net = network(0)
    return net, bgd.quantize(net, INPUTS, BLOCK, CODEWORDS, iterations=5, rows=0, seed=0)


def test_the_bytes_rebuild_the_quantized_weights_in_float16():
    net, quantized = packed_network()
    layouts = [bgd.layout(layer, BLOCK, CODEWORDS) for layer in net[::2]]
    sections = bgd.pack(list(quantized.values()))
    for (codebook, assignments), q in zip(bgd.unpack(sections, layouts, "test"), quantized.values()):
        rebuilt = bgd.Quantized(codebook, assignments, q.shape).weight()
        assert torch.equal(rebuilt, q.codebook.half().float()[q.assignments].reshape(q.shape))
    fixed = sum(n * (k - 1).bit_length() for k, _, n in layouts) / 8
    assert len(sections[2]) <= fixed + 8  # no more than fixed-length indexes and the coder's flush


def test_forged_sections_are_refused():
    net, quantized = packed_network()
    layouts = [bgd.layout(layer, BLOCK, CODEWORDS) for layer in net[::2]]
    codebooks, table, assignments = bgd.pack(list(quantized.values()))
    (k, d, n), = layouts[-1:]
    halved = [*layouts[:-1], (k // 2, 2 * d, n)]  # the last layer: as many codebook bytes, half the codewords
    for sections, chosen, message in (
            ([codebooks[:-2], table, assignments], layouts, "codebooks are"),
            ([b"\xff\xff" + codebooks[2:], table, assignments], layouts, "non-finite"),
            ([codebooks, bytes(len(table)), assignments], layouts, "frequency table is invalid"),
            ([codebooks, table, assignments[:4]], layouts, "too few"),
            ([codebooks, table, assignments + b"\0" * 8], layouts, "not the rANS coding"),
            ([codebooks, table, assignments], halved, "beyond its layer's"),
            ([codebooks, table], layouts, "3 sections")):
        with pytest.raises(CodecError, match=message):
            bgd.unpack(sections, chosen, "test")


def test_finetuning_lowers_the_output_loss():
    net = network(1)
    reference = net(INPUTS).detach()
    quantized = bgd.quantize(net, INPUTS, BLOCK, CODEWORDS, iterations=5, rows=0, seed=0)
    before = F.mse_loss(net(INPUTS), reference).item()
    bgd.finetune(net, quantized, lambda forward: F.mse_loss(forward(INPUTS), reference), steps=30, lr=1e-3)
    assert F.mse_loss(net(INPUTS), reference).item() < 0.7 * before
    assert all(torch.equal(layer.weight, quantized[name].weight()) for name, layer in net.named_children()
               if name in quantized)


def test_the_tool_shrinks_a_trained_synthesis_transform(tmp_path, capsys):
    torch.manual_seed(0)
    model = Balle2017(N=8, M=8)
    model.update(force=True)
    config = {"_target_": "licbench.lightning_modules.balle2017.Balle2017", "N": 8, "M": 8}
    ckpt = save_checkpoint(model, tmp_path / "balle.ckpt", config, {})
    for folder, seed in (("calibration", 0), ("test", 10)):
        (tmp_path / folder).mkdir()
        for i in range(2):
            save_image(synthetic_image(48, 64, seed=seed + i), tmp_path / folder / f"{i}.png")
    out = tmp_path / "bgd.md"
    assert bgd_decoder.main(["--checkpoint", str(ckpt), "--calibration", str(tmp_path / "calibration"),
                             "--images", str(tmp_path / "test"), "--codewords", "16", "--crops", "4",
                             "--crop-size", "32", "--iterations", "3", "--rows", "256", "--finetune-steps", "5",
                             "--out", str(out)]) == 0
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith(("| float32", "| bgd"))]
    (_, float_mb, float_bpp, _), (_, bgd_mb, bgd_bpp, bgd_psnr) = rows
    assert float(bgd_mb) < float(float_mb) / 2 and float_bpp == bgd_bpp and float(bgd_psnr) > 0
