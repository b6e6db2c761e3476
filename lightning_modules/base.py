"""Shared base of every learned codec: RD training in Lightning and the codec plumbing.

- Loss (Ballé et al. 2017, eq. 2 in CompressAI's convention): ``λ · 255² · MSE + bpp``,
  the rate being ``Σ −log₂ p(ŷ) / (B·H·W)`` over the model's likelihoods.
- Mixed precision (``trainer.precision=bf16-mixed``): the transforms run in bfloat16, the entropy
  models in float32, so that likelihoods and the rate term keep full precision (:meth:`on_fit_start`).
- Two optimizers (manual optimization): the network, and the auxiliary one that fits the
  entropy bottlenecks' quantiles (CompressAI's ``aux_loss``).
- A budget-aware learning rate: linear warm-up, then cosine decay to ``lr · lr_min_ratio``
  over the training budget — the larger of ``step / max_steps`` and ``elapsed / max_time``
  — so a run cut by ``trainer.max_time`` still ends at a low learning rate.
- ``encode``/``decode``: replicate padding to the model's stride, the subclass's
  ``compress``/``decompress`` to sections of the licbench container, crop after decoding.
  Coding runs in :class:`ThreadInvariantConvolutions` and on one memory layout (contiguous), so that
  the bytes and the pixels depend on the image, the stream and the weights alone, not on the thread
  count or on how the caller's tensor is laid out.
  The container's model id is a hash of the weights, so a stream never decodes silently
  with other weights.
- ``decoder_bytes``: the size of what a receiver must hold, the parameters and buffers decoding reads
  (the synthesis transform, a hyperprior's synthesis, the entropy models' CDF tables), found by watching
  a decode; a method whose decoder reads weights out of torch's sight overrides it.

A method subclasses :class:`LearnedCodec` and implements ``forward(x)`` -> ``{"x_hat",
"likelihoods": {name: tensor}}`` (noisy in training), ``compress(x)`` -> container sections
for a padded batch of one, and ``decompress(sections, height, width)`` -> the padded
reconstruction ``[1, 3, height, width]``, from the shared layers in ``layers.py`` and the entropy
models and rANS guards in ``entropy.py``.

A model that offers several rate points from one set of weights (iterations of an RNN, the
precision of a quantizer, an inner codec's quality) overrides ``rate_points(**points)`` to
return :class:`licbench.core.codec.RatePoint` views; each passes its ``setting`` as keyword arguments to
``compress`` and ``forward``, and the stream itself must say what ``decompress`` needs.
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyModel
from compressai.models import CompressionModel
from pytorch_lightning.callbacks import Timer
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from licbench.core.bitstream import Container
from licbench.core.codec import Codec, CodecError, check_image, weights_id
from licbench.core.metrics import psnr
from licbench.lightning_modules.entropy import BitContextModel


@contextmanager
def fixed_threads(count: int | None):
    """torch's CPU intra-op thread count set to ``count`` for the block (None: left as it is), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ThreadInvariantConvolutions(TorchFunctionMode):
    """Within the block, 1×1 convolutions and every transposed convolution run off oneDNN, so that a
    network's output is the same on any CPU thread count. ATen gives a CPU convolution with a 1×1 kernel on a
    batch under 16 to oneDNN only when more than one thread is set (its ``use_mkldnn`` heuristic), and the two
    backends sum in different orders: GDN, a binarizer or an output layer gave other values in the last bit on
    2 threads than on 1 (Ballé 2017 on kodim01: 8 of 1,179,648 decoded values by 1/255). oneDNN's transposed
    convolutions sum in a thread-dependent order for some shapes: WCAE's 32→32 3×3/2 layer on a 32×48 latent
    of a portrait Kodak image (kodim04) did, so six of 24 images decoded differently on 2 threads. Off oneDNN
    both are computed as on one thread; oneDNN's k×k convolutions sum alike on any thread count (measured for
    every codec and Kodak image by ``licbench.tools.determinism``)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        pointwise = func is F.conv2d and tuple(args[1].shape[-2:]) == (1, 1)
        if not (pointwise or func is F.conv_transpose2d):
            return func(*args, **kwargs)
        before = torch.backends.mkldnn.set_flags(_enabled=False, _fp32_precision=None)[0]
        try:
            return banded_conv_transpose2d(*args, **kwargs) if func is F.conv_transpose2d else func(*args, **kwargs)
        finally:
            torch.backends.mkldnn.set_flags(_enabled=before, _fp32_precision=None)


#: bytes of ATen's column buffer (C_out·k² × input pixels, float32) a transposed convolution may take at once
TRANSPOSED_COLUMNS_BYTES = 256 << 20


def banded_conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """``F.conv_transpose2d`` as ATen computes it off oneDNN, but in bands of output rows when its column buffer
    would pass :data:`TRANSPOSED_COLUMNS_BYTES` (a hyperprior's 128→128 5×5 layer at 12 MP: 10 GB). Each band
    is the transposed convolution of the input rows that reach it, cropped: every output value is summed over
    the same terms in the same order as the whole layer's (``tests/test_determinism.py``)."""
    pair = torch.nn.modules.utils._pair
    (s, sw), (p, pw), (op, opw), (k, kw) = pair(stride), pair(padding), pair(output_padding), weight.shape[2:]
    column_bytes = x.element_size() * weight.shape[1] * k * kw * x.shape[-2] * x.shape[-1]
    if (x.dim() != 4 or groups != 1 or pair(dilation) != (1, 1) or not s <= k or not op <= p
            or column_bytes <= TRANSPOSED_COLUMNS_BYTES):
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    height, width = (x.shape[2] - 1) * s - 2 * p + k + op, (x.shape[3] - 1) * sw - 2 * pw + kw + opw
    rows = max(s * TRANSPOSED_COLUMNS_BYTES * x.shape[2] // column_bytes, s)  # output rows per band
    out = x.new_empty(x.shape[0], weight.shape[1], height, width)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        first, last = max(0, -(-(top + p - k + 1) // s)), min(x.shape[2], (bottom - 1 + p) // s + 1)  # input rows
        band = F.conv_transpose2d(x[:, :, first:last], weight, bias, (s, sw), (0, pw), (0, opw))
        out[:, :, top:bottom] = band[:, :, top + p - first * s:bottom + p - first * s]
    return out


class LearnedCodec(pl.LightningModule, CompressionModel, Codec):
    name = "learned"
    stride = 1  # total downsampling of the analysis transform: inputs are padded to a multiple
    #: CPU threads of every decode (None: the caller's). With :class:`ThreadInvariantConvolutions` a stream
    #: decodes to the same pixels on any count; 1 pins decoding as licbench did before (slower on more cores).
    decode_threads = None

    def __init__(self, lmbda: float = 0.013, lr: float = 1e-4, aux_lr: float = 1e-3, lr_min_ratio: float = 1.0,
                 warmup_steps: int = 0, clip_grad_norm: float = 1.0):
        super().__init__()
        for key, value in {"lmbda": lmbda, "lr": lr, "aux_lr": aux_lr}.items():
            if not value > 0:
                raise CodecError(f"model.{key} must be > 0, got {value}")
        if not 0 <= lr_min_ratio <= 1:
            raise CodecError(f"model.lr_min_ratio must be in [0, 1], got {lr_min_ratio}")
        self.save_hyperparameters()  # collects the subclass's __init__ arguments too
        self.automatic_optimization = False
        self._model_id: str | None = None

    # --- training -----------------------------------------------------------------------
    @property
    def rate(self) -> float:
        return self.hparams.lmbda

    def rd_loss(self, x: torch.Tensor, out: dict) -> dict:
        num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
        bpp = sum(-torch.log2(p).sum() for p in out["likelihoods"].values()) / num_pixels
        mse = F.mse_loss(out["x_hat"], x)
        return {"loss": self.hparams.lmbda * 255**2 * mse + bpp, "bpp": bpp, "mse": mse}

    def configure_optimizers(self):
        main = [p for n, p in self.named_parameters() if not n.endswith(".quantiles")]
        aux = [p for n, p in self.named_parameters() if n.endswith(".quantiles")]
        optimizers = [torch.optim.Adam(main, lr=self.hparams.lr)]
        if aux:
            optimizers.append(torch.optim.Adam(aux, lr=self.hparams.aux_lr))
        return optimizers

    def training_step(self, batch, batch_idx):
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self._set_learning_rate(optimizers[0])
        terms = self.rd_loss(batch, self(batch))
        optimizers[0].zero_grad()
        self.manual_backward(terms["loss"])
        if self.hparams.clip_grad_norm:
            self.clip_gradients(optimizers[0], gradient_clip_val=self.hparams.clip_grad_norm,
                                gradient_clip_algorithm="norm")
        optimizers[0].step()
        if len(optimizers) > 1:
            aux_loss = self.aux_loss()
            optimizers[1].zero_grad()
            self.manual_backward(aux_loss)
            optimizers[1].optimizer.step()  # the raw optimizer: global_step counts network steps only
            self.log("train/aux_loss", aux_loss, prog_bar=False)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=True)
        self._model_id = None
        return terms["loss"]

    def training_progress(self) -> float:
        """Fraction of the training budget used: max of steps/max_steps and elapsed/max_time."""
        trainer, progress = self.trainer, 0.0
        if trainer.max_steps and trainer.max_steps > 0:
            progress = trainer.global_step / trainer.max_steps
        for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
            elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train")
            if remaining is not None and elapsed + remaining > 0:
                progress = max(progress, elapsed / (elapsed + remaining))
        return min(progress, 1.0)

    def _set_learning_rate(self, optimizer) -> None:
        hp, step = self.hparams, self.trainer.global_step
        if hp.warmup_steps and step < hp.warmup_steps:
            scale = (step + 1) / hp.warmup_steps
        else:
            scale = hp.lr_min_ratio + (1 - hp.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * self.training_progress()))
        for group in optimizer.param_groups:
            group["lr"] = hp.lr * scale
        self.log("train/lr", hp.lr * scale)

    def validation_step(self, batch, batch_idx):
        out = self(batch)
        terms = self.rd_loss(batch, out)
        x_hat = out["x_hat"].clamp(0, 1)
        mean_psnr = sum(psnr(a, b) for a, b in zip(batch, x_hat)) / len(batch)
        self.log_dict({"val/loss": terms["loss"], "val/bpp_estimate": terms["bpp"], "val/psnr": mean_psnr},
                      prog_bar=True, batch_size=len(batch))

    def on_fit_start(self) -> None:
        if "mixed" not in str(self.trainer.precision):
            return
        for module in self.modules():
            if isinstance(module, (EntropyModel, BitContextModel)) and not hasattr(module.forward, "in_float32"):
                module.forward = in_float32(module.forward, self.device.type)

    def on_train_end(self) -> None:
        self.update(force=True)

    # --- the codec contract -------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """A short hash of the weights (entropy tables included); stored in every stream."""
        if self._model_id is None:
            self._model_id = weights_id(self.name, self.state_dict())
        return self._model_id

    @model_id.setter
    def model_id(self, value: str) -> None:  # a checkpoint's id, hashed on its weights as stored
        self._model_id = value

    network = property(lambda self: self)

    def load_state_dict(self, state_dict, strict: bool = True):
        self._model_id = None
        return super().load_state_dict(state_dict, strict=strict)

    def update(self, *args, **kwargs) -> bool:
        self._model_id = None  # new entropy tables are new weights
        return super().update(*args, **kwargs)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, **setting) -> bytes:
        x = check_image(x).to(self.device)
        height, width = x.shape[1:]
        padded = self._pad(x)
        with self._eval_mode(), ThreadInvariantConvolutions():
            sections = self.compress(padded, **setting)
        return Container(self.name, height, width, sections, self.model_id).to_bytes()

    @torch.no_grad()
    def estimate_bits(self, x: torch.Tensor, data: bytes | None = None, **setting) -> float:
        """The entropy model's estimate of the payload size in bits (test-time quantization): a forward pass
        (``data`` unused: a method whose estimate is cheaper from its stream overrides this)."""
        padded = self._pad(check_image(x).to(self.device))
        with self._eval_mode(), ThreadInvariantConvolutions():
            likelihoods = self(padded, **setting)["likelihoods"].values()
        return sum(-torch.log2(p).sum().item() for p in likelihoods)

    @torch.no_grad()
    def decode(self, data: bytes) -> torch.Tensor:
        container = Container.from_bytes(data)
        if container.codec != self.name:
            raise CodecError(f"stream is for codec {container.codec!r}, not {self.name!r}")
        if container.model_id != self.model_id:
            raise CodecError(f"stream was made by model {container.model_id!r}; these weights are {self.model_id!r}")
        height, width = container.height, container.width
        pad = self._padding(height, width)
        with self._eval_mode(), fixed_threads(self.decode_threads), ThreadInvariantConvolutions():
            x_hat = self.decompress(container.sections, height + pad[3], width + pad[1])[0, :, :height, :width]
        if not torch.isfinite(x_hat).all():  # clamping would keep NaN
            raise CodecError(f"corrupt {self.name} stream: it decodes to non-finite pixels")
        return x_hat.clamp(0, 1).cpu()

    def decoder_bytes(self, size: int = 64) -> int:
        """Bytes of the weights a receiver must hold: each parameter and buffer, once, that decoding reads —
        watched while the stream of a ``size``² noise image, coded at the model's default setting (all of its
        weights: Toderici's every iteration), decodes a second time (the first fills what a codec caches).
        Left out is what only encoding or training needs: the analysis transform, and an entropy
        bottleneck's density network, of which a decoder reads only the CDF tables (which count)."""
        weights = {id(t): t for t in (*self.parameters(), *self.buffers())}
        data = self.encode(torch.rand(3, size, size, generator=torch.Generator().manual_seed(0)))
        self.decode(data)
        with _Reads(weights) as reads:
            self.decode(data)
        return sum(weights[i].numel() * weights[i].element_size() for i in reads.seen)

    @contextmanager
    def _eval_mode(self):
        """Test-time behaviour (rounding, no noise) for coding, restoring the mode after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """[3, H, W] -> [1, 3, H', W'] with H', W' multiples of the stride (replicate padding), contiguous:
        oneDNN sums each memory layout in its own order, and a decoder's tensors are laid out so."""
        padding = self._padding(*x.shape[1:])
        return (F.pad(x[None], padding, mode="replicate") if any(padding) else x[None]).contiguous()

    def _padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        s = self.stride
        return (0, -width % s, 0, -height % s)


class _Reads(TorchFunctionMode):
    """Within the block, ``seen`` collects the ids of the tensors of ``watched`` (id → tensor) that any torch
    function or tensor method is given."""

    def __init__(self, watched: dict[int, torch.Tensor]):
        super().__init__()
        self.watched, self.seen = watched, set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.seen.update(id(a) for a in tree_leaves((args, kwargs)) if id(a) in self.watched)
        return func(*args, **kwargs)


def in_float32(forward, device_type: str):
    """``forward`` with autocast off and its floating-point tensor arguments in float32."""
    @functools.wraps(forward)
    def run(*args, **kwargs):
        args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        with torch.autocast(device_type, enabled=False):
            return forward(*args, **kwargs)

    run.in_float32 = True
    return run
