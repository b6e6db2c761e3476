"""Bricman & Ionescu: CocoNet, a deep neural network for mapping pixel coordinates to color values
(ICONIP 2018; arXiv:1805.11357), as a codec: ``encode`` fits one network to the image and sends its
quantized weights, ``decode`` evaluates the network at every pixel.

The network, from the authors' public code (paulbricman/python-fuse-coconet, ``coconet.py`` and
``test.py``; the paper's text could not be checked here, so the details below are the code's, and
marked as assumptions where they depart from it):

- Input: six features per pixel (row, column): its centre (r, c) = (row + ½, column + ½), the
  distances H − r and W − c to the far edges, the distance to the image centre and the angle
  atan2(r, c). Assumption: all lengths divided by max(H, W) (the authors feed raw pixel units to
  32 × 32 images; at 768 × 512 those would saturate tanh).
- Fully connected: ``depth`` hidden layers of ``width`` units with tanh, then 3 sigmoid outputs (RGB
  in [0, 1]); the authors' demo uses 10 × 100. Loss: MSE; Adam on minibatches of pixels (lr 1e-3
  there; 1e-2 here, chosen on BSDS500 training images for the short budget).
- Assumptions: Glorot-uniform weights and zero biases (Keras' defaults; the authors' first layer is
  U(−0.05, 0.05), too small for normalized inputs), drawn from ``seed``; ``steps`` minibatches of
  ``batch_size`` random pixels (the whole image when smaller), with the learning rate decayed along
  a cosine to ``lr · lr_min_ratio`` (the authors keep it constant over 1000 epochs of a 32 × 32 image,
  far beyond a CPU budget at 768 × 512). The fit runs on ``encode_threads`` threads (the weights, hence
  the bytes, depend on the sums' order). The budget is the same for every image size: a larger image
  costs no more steps, only more work to decode. Measured at conf/model/coconet.yaml's 3000 steps of
  1024 pixels, one thread, on a 768 × 512 image: 12, 14 and 32 CPU-seconds at widths 32, 64 and 128
  (depth 4), 1-4 s more with ``bgd``; decoding 1-2 s.

Rate points (``rate_points``): the network's ``width`` (``depth`` fixed per codec config) and one of
two quantizers of its weights, both beyond the paper, which keeps float weights:

- ``scalar``: each weight and bias tensor on a uniform grid of step max|w| / (2^(bits−1) − 1), the
  integers coded with compressai's rANS under a zero-mean Gaussian (``GaussianConditional``'s 64
  scales, chosen per tensor from its RMS, as Cheng et al.'s codec here does); side information: a
  float32 step and a scale index per tensor.
- ``bgd``: product quantization as in Stock et al. 2019 (:mod:`licbench.lightning_modules.bgd`): sub-vectors of
  ``block`` input weights, ``codewords`` per layer, codebooks fitted layer by layer to the layers' outputs on
  ``calibration`` of the image's own pixel coordinates (``em_iterations`` EM steps), then
  ``finetune_steps`` of the codewords and biases on the image's MSE at ``finetune_lr``. Bytes: the
  biases and codebooks in float16 and the entropy-coded assignments.

Bitstream: a first section with the quantizer, the architecture (width, depth), the fit's ``steps``
and the image size it was fitted to, and the quantizer's parameters; then the weights' sections.
Every declared number is checked against its bound (``MAX_WIDTH``, ``MAX_DEPTH``, ``PARAMETERS``) and
every section's length against what the declared network needs before the network is allocated;
decoding also refuses a network whose evaluation on the declared image would take over ``MAX_MACS``
multiply-accumulates (the encoder refuses such an image first). The decoder evaluates the network on
one thread (``decode_threads``), in fixed chunks of ``CHUNK`` coordinates (the last one padded), so
that every matrix product has one shape whatever the image size and sums in one order whatever the
caller's thread count.

No training: ``licbench train model=coconet`` stops at once and writes a checkpoint holding the
entropy model's CDF tables only (as FMM's), which every stream's model id binds to.
"""
from __future__ import annotations

import math
import struct

import numpy as np
import torch
import torch.nn.functional as F
from compressai.entropy_models import GaussianConditional
from torch import nn

from licbench.core.codec import CodecError, RatePoint
from licbench.lightning_modules import bgd
from licbench.lightning_modules.base import LearnedCodec, fixed_threads
from licbench.lightning_modules.entropy import check_length, decode_canonical, fewest_bits

SCALAR, BGD = 0, 1
QUANTIZERS = {"scalar": SCALAR, "bgd": BGD}
HEADER = ">BHBIII"  # quantizer, hidden width, depth, the fit's steps, the image's height and width
MAX_WIDTH, MAX_DEPTH, MAX_STEPS = 1024, 16, 10**7
PARAMETERS = {SCALAR: {"bits": (8, 2, 12)},  # per quantizer: default, lowest, highest
              BGD: {"block": (4, 1, 64), "codewords": (64, 1, 4096)}}
SETTINGS = {SCALAR: ">B", BGD: ">BH"}  # the parameters' bytes in the header
MAX_MACS = 2 * 10**12  # network evaluations of one decode (about a minute on one core)
CHUNK = 4096  # coordinates evaluated at once by the decoder
FEATURES = 6


def coordinates(index: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The six input features (float32 [n, 6]) of the pixels at raster positions ``index``."""
    scale = max(height, width)
    r, c = (index // width + 0.5).double() / scale, (index % width + 0.5).double() / scale
    h, w = height / scale, width / scale
    return torch.stack([r, c, h - r, w - c, torch.hypot(r - h / 2, c - w / 2), torch.atan2(r, c)], 1).float()


def mlp(width: int, depth: int) -> nn.Sequential:
    """6 → ``depth`` × (``width``, tanh) → 3, sigmoid."""
    layers = [nn.Linear(FEATURES, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 3), nn.Sigmoid())


def macs(width: int, depth: int) -> int:
    """Multiply-accumulates per pixel."""
    return FEATURES * width + (depth - 1) * width**2 + 3 * width


@torch.no_grad()
def render(network: nn.Sequential, height: int, width: int) -> torch.Tensor:
    """The network at every pixel: [1, 3, H, W], ``CHUNK`` coordinates at a time."""
    n, out = height * width, torch.empty(3, height * width)
    for start in range(0, n, CHUNK):
        index = torch.arange(start, start + CHUNK).clamp(max=n - 1)  # the last chunk padded to the same shape
        out[:, start:start + CHUNK] = network(coordinates(index, height, width))[:n - start].T
    return out.reshape(1, 3, height, width)


class CocoNet(LearnedCodec):
    name = "coconet"
    #: the decoder's products are matrix products (MKL's sgemm), whose summation order no thread count
    #: promises to keep, and too small to gain from more threads: decoding is pinned to one
    decode_threads = 1

    def __init__(self, steps: int = 3000, batch_size: int = 1024, lr: float = 1e-2, lr_min_ratio: float = 0.05,
                 seed: int = 0, encode_threads: int = 1, calibration: int = 4096, em_iterations: int = 20,
                 finetune_steps: int = 300, finetune_lr: float = 3e-3, **training):
        super().__init__(lr=lr, lr_min_ratio=lr_min_ratio, **training)
        for key, value, lowest in (("steps", steps, 1), ("batch_size", batch_size, 1), ("calibration", calibration, 1),
                                   ("encode_threads", encode_threads, 1), ("em_iterations", em_iterations, 0),
                                   ("finetune_steps", finetune_steps, 0)):
            if not (isinstance(value, int) and lowest <= value <= MAX_STEPS):
                raise CodecError(f"model.{key} must be a whole number in {lowest}..{MAX_STEPS}, got {value!r}")
        if not finetune_lr > 0:
            raise CodecError(f"model.finetune_lr must be > 0, got {finetune_lr}")
        self.gaussian = GaussianConditional(None)
        self.update(force=True)

    # --- no training ------------------------------------------------------------------------
    def configure_optimizers(self):
        return None

    def on_train_start(self) -> None:
        print("CocoNet fits one network per image when it encodes: training is a no-op "
              "(the checkpoint holds the entropy model's tables only)")
        self.trainer.should_stop = True

    def training_step(self, batch, batch_idx):
        """Reached only if the trainer overrides the stop (``min_steps``, ``min_epochs``): a clear error."""
        raise RuntimeError("CocoNet has nothing to train: drop trainer.min_steps / trainer.min_epochs")

    def estimate_bits(self, x: torch.Tensor, data: bytes | None = None, **setting) -> float:
        """NaN: an estimate would cost a second fit."""
        return math.nan

    # --- rate points ------------------------------------------------------------------------
    def rate_points(self, widths=(32, 64, 128), depth: int = 4, quantizer: str = "scalar", **quantization) -> list:
        widths = [int(w) for w in widths]
        if not widths or len(set(widths)) != len(widths):
            raise CodecError(f"coconet widths must be distinct, got {widths}")
        points = [RatePoint(self, w, width=w, depth=depth, quantizer=quantizer, **quantization) for w in widths]
        for point in points:
            self._setting(**point.setting)
        return points

    @staticmethod
    def _setting(width: int = 32, depth: int = 4, quantizer: str = "scalar",
                 **quantization) -> tuple[int, tuple[int, ...]]:
        """The quantizer's code and its parameters (``PARAMETERS``' order), refused unless every number is
        within its bounds."""
        if quantizer not in QUANTIZERS:
            raise CodecError(f"coconet quantizer must be one of {sorted(QUANTIZERS)}, got {quantizer!r}")
        kind = QUANTIZERS[quantizer]
        if unknown := sorted(set(quantization) - set(PARAMETERS[kind])):
            raise CodecError(f"coconet's {quantizer} quantizer takes {sorted(PARAMETERS[kind])}, not {unknown}")
        values = {"width": width, "depth": depth,
                  **{key: quantization.get(key, default) for key, (default, _, _) in PARAMETERS[kind].items()}}
        bounds = {"width": (1, MAX_WIDTH), "depth": (1, MAX_DEPTH), **{k: b[1:] for k, b in PARAMETERS[kind].items()}}
        if bad := [f"{key}={value!r} (not in {bounds[key][0]}..{bounds[key][1]})" for key, value in values.items()
                   if not (isinstance(value, int) and bounds[key][0] <= value <= bounds[key][1])]:
            raise CodecError(f"coconet {quantizer} setting out of bounds: {', '.join(bad)}")
        return kind, tuple(values[key] for key in PARAMETERS[kind])

    @staticmethod
    def _check_work(units: int, depth: int, height: int, width: int) -> None:
        """Refuse a network whose evaluation on every pixel would take over ``MAX_MACS``."""
        if height * width * macs(units, depth) > MAX_MACS:
            raise CodecError(f"coconet: evaluating a network of {depth} x {units} units on {height}x{width} pixels "
                             f"takes over {MAX_MACS:.0e} multiply-accumulates")

    # --- encoding: fit, quantize -----------------------------------------------------------------
    def fit(self, x: torch.Tensor, width: int, depth: int) -> nn.Sequential:
        """The network fitted to ``x`` [3, H, W] (the module's docstring); deterministic given ``seed``."""
        hp, (height, cols) = self.hparams, x.shape[1:]
        generator = torch.Generator().manual_seed(hp.seed)
        network = mlp(width, depth)
        for layer in network[::2]:
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)
        target, n = x.reshape(3, -1).T, height * cols
        optimizer = torch.optim.Adam(network.parameters(), lr=hp.lr)
        for step in range(hp.steps):
            decay = 0.5 * (1 + math.cos(math.pi * step / hp.steps))
            for group in optimizer.param_groups:
                group["lr"] = hp.lr * (hp.lr_min_ratio + (1 - hp.lr_min_ratio) * decay)
            index = self._pixels(n, generator)
            loss = F.mse_loss(network(coordinates(index, height, cols)), target[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return network

    def _pixels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A minibatch: ``batch_size`` random pixels of ``n``, or all of them when there are no more."""
        return torch.randint(n, (self.hparams.batch_size,), generator=generator) if n > self.hparams.batch_size \
            else torch.arange(n)

    def compress(self, x: torch.Tensor, width: int = 32, depth: int = 4, quantizer: str = "scalar",
                 **quantization) -> list[bytes]:
        kind, parameters = self._setting(width, depth, quantizer, **quantization)
        height, cols = x.shape[2:]
        self._check_work(width, depth, height, cols)
        with fixed_threads(self.hparams.encode_threads), torch.inference_mode(False), torch.enable_grad():
            image = x[0].detach().clone()  # a tensor autograd may save, whatever mode the caller is in
            network = self.fit(image, width, depth)
            payload = self._scalar(network, *parameters) if kind == SCALAR else self._bgd(network, image, *parameters)
        header = struct.pack(HEADER, kind, width, depth, self.hparams.steps, height, cols)
        return [header + struct.pack(SETTINGS[kind], *parameters), *payload]

    @torch.no_grad()
    def _scalar(self, network: nn.Sequential, bits: int) -> list[bytes]:
        """Side information (a float32 step and a scale index per tensor) and the rANS-coded integers."""
        top, side, codes, indexes = 2 ** (bits - 1) - 1, [], [], []
        for tensor in (p.detach().flatten() for p in network.parameters()):
            step = torch.tensor(float(tensor.abs().max()) / top, dtype=torch.float32)
            code = (tensor / step).round().clamp(-top, top) if step > 0 else torch.zeros_like(tensor)
            index = int(self.gaussian.build_indexes(code.square().mean().sqrt()[None])[0])
            side.append(struct.pack(">fB", step, index))
            codes.append(code)
            indexes.append(torch.full_like(code, index, dtype=torch.int32))
        return [b"".join(side), self.gaussian.compress(torch.cat(codes)[None], torch.cat(indexes)[None])[0]]

    def _bgd(self, network: nn.Sequential, image: torch.Tensor, block: int, codewords: int) -> list[bytes]:
        """Stock et al.'s quantization on the image's own coordinates; the biases (float16) and :func:`bgd.pack`."""
        hp, (height, cols) = self.hparams, image.shape[1:]
        generator, target, n = torch.Generator().manual_seed(hp.seed + 1), image.reshape(3, -1).T, height * cols
        inputs = coordinates(torch.randint(n, (hp.calibration,), generator=generator), height, cols)
        quantized = bgd.quantize(network, inputs, block, codewords, hp.em_iterations, hp.calibration, hp.seed)

        def loss(forward):
            index = self._pixels(n, generator)
            return F.mse_loss(forward(coordinates(index, height, cols)), target[index])

        bgd.finetune(network, quantized, loss, hp.finetune_steps, hp.finetune_lr)
        biases = torch.cat([layer.bias.detach() for layer in network[::2]]).half().numpy().astype(">f2").tobytes()
        return [biases, *bgd.pack(list(quantized.values()))]

    # --- decoding ---------------------------------------------------------------------------------
    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        if not sections or len(sections[0]) < 1 or sections[0][0] not in SETTINGS:
            raise CodecError("coconet stream must start with a header section naming quantizer 0 or 1")
        kind, size = sections[0][0], struct.calcsize(HEADER) + struct.calcsize(SETTINGS[sections[0][0]])
        if len(sections[0]) != size:
            raise CodecError(f"coconet header section is {len(sections[0])} bytes, quantizer {kind} needs {size}")
        _, units, depth, _, fitted_h, fitted_w = struct.unpack_from(HEADER, sections[0])
        setting = struct.unpack_from(SETTINGS[kind], sections[0], struct.calcsize(HEADER))
        self._setting(units, depth, ["scalar", "bgd"][kind], **dict(zip(PARAMETERS[kind], setting)))
        if (fitted_h, fitted_w) != (height, width):
            raise CodecError(f"corrupt coconet stream: its network was fitted to {fitted_h}x{fitted_w}, "
                             f"the container declares {height}x{width}")
        self._check_work(units, depth, height, width)
        with torch.device("meta"):  # the declared shapes, allocated once the sections are found to fit them
            linears = list(mlp(units, depth)[::2])
        weights = self._scalar_weights(sections[1:], linears, *setting) if kind == SCALAR else \
            self._bgd_weights(sections[1:], linears, *setting)
        network = mlp(units, depth)
        with torch.no_grad():
            for parameter, value in zip(network.parameters(), weights):
                parameter.copy_(value.reshape(parameter.shape))
        return render(network, height, width).to(self.device)

    def _scalar_weights(self, sections: list[bytes], linears: list[nn.Linear], bits: int) -> list[torch.Tensor]:
        tensors = [p for layer in linears for p in (layer.weight, layer.bias)]
        if len(sections) != 2 or len(sections[0]) != 5 * len(tensors):
            raise CodecError(f"corrupt coconet stream: scalar weights need 2 sections, the first of "
                             f"{5 * len(tensors)} bytes")
        steps, indexes = zip(*struct.iter_unpack(">fB", sections[0]))
        if not all(math.isfinite(s) and s >= 0 for s in steps) or max(indexes) >= len(self.gaussian.scale_table):
            raise CodecError("corrupt coconet stream: a quantizer step that is not finite and >= 0, or a scale "
                             "index beyond the table")
        least = fewest_bits(self.gaussian.quantized_cdf)  # decode_canonical's check, before the indexes exist
        check_length(sections[1], sum(t.numel() * float(least[i]) for t, i in zip(tensors, indexes)),
                     sum(t.numel() for t in tensors), self.name)
        index = torch.cat([torch.full((t.numel(),), i, dtype=torch.int32) for t, i in zip(tensors, indexes)])[None]
        codes = decode_canonical(self.gaussian, sections[1], index, self.name)[0]
        if codes.abs().max() > 2 ** (bits - 1) - 1:
            raise CodecError(f"corrupt coconet stream: weight codes beyond {bits} bits")
        return [c * s for c, s in zip(codes.split([t.numel() for t in tensors]), steps)]

    def _bgd_weights(self, sections: list[bytes], linears: list[nn.Linear], block: int,
                     codewords: int) -> list[torch.Tensor]:
        outputs = sum(layer.out_features for layer in linears)
        if len(sections) != 4 or len(sections[0]) != 2 * outputs:
            raise CodecError(f"corrupt coconet stream: product-quantized weights need 4 sections, the first of "
                             f"{2 * outputs} bytes (float16 biases)")
        layouts = [bgd.layout(layer, block, codewords) for layer in linears]
        layers = bgd.unpack(sections[1:], layouts, self.name)
        biases = torch.from_numpy(np.frombuffer(sections[0], ">f2").astype(np.float32))
        if not torch.isfinite(biases).all():
            raise CodecError("corrupt coconet stream: non-finite biases")
        weights = [bgd.Quantized(c, a, tuple(layer.weight.shape)).weight() for (c, a), layer in zip(layers, linears)]
        return [t for w, b in zip(weights, biases.split([layer.out_features for layer in linears])) for t in (w, b)]
