"""A trained codec's synthesis transform product-quantized as in Stock et al. 2019 ("And the Bit Goes
Down", :mod:`licbench.lightning_modules.bgd`)::

    python -m licbench.tools.bgd_decoder --checkpoint results/zoo/balle2017/balle2017-l0.013.ckpt \\
        --calibration $DATA/bsds500/train --images $DATA/kodak --out OUT.md

- The transform (``--transform``, default ``g_s``): a ``nn.Sequential`` whose transposed convolutions
  are product-quantized (sub-vectors: the K × K kernels, §3.2; ``--codewords`` per layer) and whose other
  parameters (biases, inverse GDN) are kept in float16, as Ballé et al. 2017's synthesis is.
- In-domain inputs (§3.3): the latents the codec feeds the transform for ``--crops`` random crops of
  ``--crop-size`` pixels of the ``--calibration`` images (training-like images, e.g. BSDS500's train
  split; never the images the RD is measured on), drawn from ``--seed``.
- Fine-tuning (§3.4): ``--finetune-steps`` Adam steps on the MSE between the quantized and the float
  transform's outputs on minibatches of those latents (the paper's distillation from the float network).
- Sizes in MB (10⁶ bytes): the float transform's parameters in float32; the quantized one's bytes as
  stored: :func:`bgd.pack` (float16 codebooks, entropy-coded assignments) and the other parameters in float16.
- RD on ``--images``: every image encoded and decoded by the float codec and by one whose transform holds
  the quantized weights (rebuilt from the packed bytes); bpp from the real streams, PSNR as the benchmark's.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch
import torch.nn.functional as F

from licbench.core import metrics
from licbench.core.checkpoint import load_checkpoint
from licbench.core.images import load_image
from licbench.core.provenance import portable
from licbench.lightning_modules import bgd
from licbench.tools.determinism import image_files
from licbench.tools.figures import write_figures


@torch.no_grad()
def calibration_inputs(codec, transform, images: list, crops: int, size: int, seed: int) -> torch.Tensor:
    """What ``codec`` feeds ``transform`` for ``crops`` random ``size``² crops of ``images`` (a forward pre-hook)."""
    generator, seen = torch.Generator().manual_seed(seed), []
    hook = transform.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        codec.eval()
        for _ in range(crops):
            x = images[int(torch.randint(len(images), (1,), generator=generator))]
            top, left = (int(torch.randint(side - size + 1, (1,), generator=generator)) for side in x.shape[1:])
            codec(x[None, :, top:top + size, left:left + size])
    finally:
        hook.remove()
    return torch.cat(seen)


def quantize_transform(codec, name: str, inputs: torch.Tensor, codewords: int, iterations: int, rows: int,
                       steps: int, lr: float, batch: int, seed: int):
    """The codec with its transform ``name`` product-quantized, and that transform's stored bytes."""
    quantized_codec = copy.deepcopy(codec)
    transform = getattr(quantized_codec, name)
    with torch.no_grad():
        targets = getattr(codec, name)(inputs)
    quantized = bgd.quantize(transform, inputs, 4, codewords, iterations, rows, seed)  # 4: a linear layer's block
    generator = torch.Generator().manual_seed(seed + 1)

    def distillation(forward):
        index = torch.randint(len(inputs), (min(batch, len(inputs)),), generator=generator)
        return F.mse_loss(forward(inputs[index]), targets[index])

    with torch.enable_grad():
        bgd.finetune(transform, quantized, distillation, steps, lr)
    packed = bgd.pack(list(quantized.values()))
    layouts = [(len(q.codebook), q.codebook.shape[1], len(q.assignments)) for q in quantized.values()]
    state = {}
    for (layer, q), (codebook, assignments) in zip(quantized.items(), bgd.unpack(packed, layouts, name)):
        state[f"{layer}.weight"] = bgd.Quantized(codebook, assignments, q.shape).weight()
    others = {n: p for n, p in transform.named_parameters() if n not in state}
    state.update({n: p.detach().half().float() for n, p in others.items()})  # as stored: float16
    transform.load_state_dict({**transform.state_dict(), **state})
    quantized_codec.model_id = None  # hashed anew on the quantized weights
    stored = sum(map(len, packed)) + 2 * sum(p.numel() for p in others.values())
    return quantized_codec, stored


def rd(codec, images: list) -> list[tuple[float, float]]:
    """(bpp, PSNR) of every image through ``codec``."""
    rows = []
    with torch.inference_mode():
        for x in images:
            data = codec.encode(x)
            rows.append((metrics.bpp(len(data), *x.shape[1:]), metrics.psnr(x, codec.decode(data))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m licbench.tools.bgd_decoder", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a learned codec's checkpoint")
    parser.add_argument("--calibration", required=True, help="training-like images the codebooks are fitted on")
    parser.add_argument("--images", required=True, help="the images the RD is measured on (e.g. Kodak)")
    parser.add_argument("--transform", default="g_s", help="the codec's attribute to quantize (default g_s)")
    parser.add_argument("--codewords", type=int, default=256, help="codewords per layer (default 256)")
    parser.add_argument("--iterations", type=int, default=20, help="EM iterations per layer (default 20)")
    parser.add_argument("--rows", type=int, default=4096, help="output positions sampled per layer's Gram matrix")
    parser.add_argument("--crops", type=int, default=32, help="calibration crops (default 32)")
    parser.add_argument("--crop-size", type=int, default=256, help="calibration crop side in pixels (default 256)")
    parser.add_argument("--finetune-steps", type=int, default=200, help="fine-tuning steps (default 200)")
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (default 1e-4)")
    parser.add_argument("--batch", type=int, default=4, help="latents per fine-tuning step (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="only the first N images of --images, in name order")
    parser.add_argument("--out", help="also write the table, with the command and the git revision, to a Markdown file")
    args = parser.parse_args(argv)
    codec = load_checkpoint(args.checkpoint)
    transform = getattr(codec, args.transform, None)
    if not isinstance(transform, torch.nn.Sequential):
        parser.error(f"{args.checkpoint}: the codec has no nn.Sequential {args.transform!r} to quantize")
    calibration = [load_image(path)[0] for path in image_files(args.calibration)]
    if any(min(x.shape[1:]) < args.crop_size for x in calibration):
        parser.error(f"--crop-size {args.crop_size} is larger than a calibration image")
    images = [load_image(path)[0] for path in image_files(args.images)[:args.limit]]
    inputs = calibration_inputs(codec, transform, calibration, args.crops, args.crop_size, args.seed)
    quantized, stored = quantize_transform(codec, args.transform, inputs, args.codewords, args.iterations, args.rows,
                                           args.finetune_steps, args.lr, args.batch, args.seed)
    float_bytes = 4 * sum(p.numel() for p in transform.parameters())
    lines = ["| decoder | MB | bpp | PSNR (dB) |", "|---|---|---|---|"]
    for label, model, size in (("float32", codec, float_bytes), (f"bgd, k={args.codewords}", quantized, stored)):
        rows = rd(model, images)
        bpp, psnr = (sum(row[i] for row in rows) / len(rows) for i in (0, 1))
        lines.append(f"| {label} | {size / 1e6:.4f} | {bpp:.4f} | {psnr:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        write_figures(args.out, "Product-quantized synthesis transform", "licbench.tools.bgd_decoder", table, argv, [
            f"{args.checkpoint}: {args.transform} ({float_bytes / 4:,.0f} parameters), {args.codewords} codewords per "
            f"transposed convolution (sub-vectors: its K x K kernels), {args.iterations} EM iterations on "
            f"{args.crops} crops of {args.crop_size}² of {portable(args.calibration)}, "
            f"{args.finetune_steps} fine-tuning steps",
            f"RD: mean bpp and PSNR over {len(images)} images of {portable(args.images)}",
            "MB: 10^6 bytes; float32 parameters, or the packed codebooks (float16) and entropy-coded assignments "
            "plus the other parameters in float16"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
