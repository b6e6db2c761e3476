"""Shared base of every learned codec: RD training in Lightning and the codec contract.

- Loss (Ballé et al. 2017, eq. 2 in CompressAI's convention): ``λ · 255² · MSE + bpp``,
  the rate being ``Σ −log₂ p(ŷ) / (B·H·W)`` over the model's likelihoods.
- Two optimizers (manual optimization): the network, and the auxiliary one that fits the
  entropy bottlenecks' quantiles (CompressAI's ``aux_loss``).
- A budget-aware learning rate: linear warm-up, then cosine decay to ``lr · lr_min_ratio``
  over the training budget — the larger of ``step / max_steps`` and ``elapsed / max_time``
  — so a run cut by ``trainer.max_time`` still ends at a low learning rate.
- ``encode``/``decode``: replicate padding to the model's stride, the subclass's
  ``compress``/``decompress`` to sections of the licbench container, crop after decoding.
  The container's model id is a hash of the weights, so a stream never decodes silently
  with other weights.

A method subclasses :class:`LearnedCodec` and implements ``forward(x)`` -> ``{"x_hat",
"likelihoods": {name: tensor}}`` (noisy in training), ``compress(x)`` -> container sections
for a padded batch of one, and ``decompress(sections, height, width)`` -> the padded
reconstruction ``[1, 3, height, width]``.

A model that offers several rate points from one set of weights (iterations of an RNN, the
precision of a quantizer, an inner codec's quality) overrides ``rate_points(**points)`` to
return :class:`RatePoint` views; each passes its ``setting`` as keyword arguments to
``compress`` and ``forward``, and the stream itself must say what ``decompress`` needs.
"""
from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyModel
from compressai.models import CompressionModel
from pytorch_lightning.callbacks import Timer

from licbench.bitstream import Container
from licbench.codec import CodecError, check_image
from licbench.metrics import psnr


def zero_padded(section: bytes, symbols: int) -> bytes:
    """A rANS section with trailing zero words for the decoder to read into.

    CompressAI's rANS decoder reads 32-bit words with no bounds check; a hostile or
    truncated section would make it read past the buffer. Appending zeros — which a valid
    stream never reaches — bounds every read: each symbol takes at most one renormalisation
    word, bypass-coded values end on zero nibbles, and garbage consumes at most its own length.
    """
    return bytes(section) + bytes(8 * (len(section) + symbols) + 64)


MAX_CODE = 2**15  # |symbol| a rANS section may carry: encoders clamp to it, decoders refuse more


def least_bits(entropy_model, indexes: torch.Tensor) -> float:
    """The fewest bits rANS can code symbols of these CDF ``indexes`` in: each costs at least
    −log₂ of the largest probability in its quantized CDF."""
    cdf = entropy_model._quantized_cdf.long()
    largest = (cdf[:, 1:] - cdf[:, :-1]).amax(dim=1).clamp(min=1)
    cost = entropy_model.entropy_coder_precision - torch.log2(largest.double())
    return float(torch.bincount(indexes.flatten(), minlength=len(cost)).double() @ cost)


def decode_canonical(entropy_model, section: bytes, indexes: torch.Tensor, name: str) -> torch.Tensor:
    """Decode a rANS section through ``entropy_model`` and refuse it unless it is exactly the coding
    of the symbols it decodes to (rANS decodes any bytes; the coder is canonical, so truncated,
    extended or forged sections re-code differently). A section too short for its symbol count (a
    forged image size) is refused before any decoding, and symbols beyond ±MAX_CODE before
    re-coding: CompressAI's encoder never returns on the extreme values garbage can decode to.
    The coder is CompressAI's on integer symbols (``EntropyModel``'s, which ``EntropyBottleneck``
    overrides to add its medians)."""
    if 8 * len(section) + 64 < least_bits(entropy_model, indexes):
        raise CodecError(f"corrupt {name} stream: {len(section)} bytes are too few to code {indexes.numel()} symbols")
    symbols = EntropyModel.decompress(entropy_model, [zero_padded(section, indexes.numel())], indexes)
    if symbols.abs().max() > MAX_CODE:
        raise CodecError(f"corrupt {name} stream: code values beyond ±{MAX_CODE}")
    if EntropyModel.compress(entropy_model, symbols, indexes)[0] != section:
        raise CodecError(f"corrupt {name} stream: the section is not the rANS coding of what it decodes to")
    return symbols


class LearnedCodec(pl.LightningModule, CompressionModel):
    name = "learned"
    stride = 1  # total downsampling of the analysis transform: inputs are padded to a multiple

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
            self.clip_gradients(optimizers[0], gradient_clip_val=self.hparams.clip_grad_norm, gradient_clip_algorithm="norm")
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

    def on_train_end(self) -> None:
        self.update(force=True)

    # --- rate points --------------------------------------------------------------------
    def rate_points(self, **points) -> list:
        """The codecs this model offers (``points``: the codec config's ``points:``); one by default."""
        if points:
            raise CodecError(f"{self.name} has one rate point per checkpoint; it takes no points {sorted(points)}")
        return [self]

    def at_rate(self, rate, **points):
        """The rate point labelled ``rate`` (``licbench encode codec.rate=...``)."""
        found = [codec for codec in self.rate_points(**points) if str(codec.rate) == str(rate)]
        if not found:
            offered = ", ".join(str(codec.rate) for codec in self.rate_points(**points))
            raise CodecError(f"{self.name} has no rate point {rate!r}; it offers {offered}")
        return found[0]

    # --- the codec contract -------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """A short hash of the weights (entropy tables included); stored in every stream."""
        if self._model_id is None:
            digest = hashlib.sha256()
            for key, tensor in sorted(self.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._model_id = f"{self.name}-{digest.hexdigest()[:16]}"
        return self._model_id

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
        with self._eval_mode():
            sections = self.compress(padded, **setting)
        return Container(self.name, height, width, sections, self.model_id).to_bytes()

    @torch.no_grad()
    def estimate_bits(self, x: torch.Tensor, **setting) -> float:
        """The entropy model's estimate of the payload size in bits (test-time quantization)."""
        padded = self._pad(check_image(x).to(self.device))
        with self._eval_mode():
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
        with self._eval_mode():
            x_hat = self.decompress(container.sections, height + pad[3], width + pad[1])
        return x_hat[0, :, :height, :width].clamp(0, 1).cpu()

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
        """[3, H, W] -> [1, 3, H', W'] with H', W' multiples of the stride (replicate padding)."""
        padding = self._padding(*x.shape[1:])
        return F.pad(x[None], padding, mode="replicate") if any(padding) else x[None]

    def _padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        s = self.stride
        return (0, -width % s, 0, -height % s)


class RatePoint:
    """One rate point of a multi-rate model: shares its weights, encodes with ``setting``."""

    def __init__(self, model: LearnedCodec, rate, **setting):
        self.model, self.rate, self.setting = model, rate, setting

    name = property(lambda self: self.model.name)
    model_id = property(lambda self: self.model.model_id)
    checkpoint_meta = property(lambda self: getattr(self.model, "checkpoint_meta", {}))

    def encode(self, x: torch.Tensor) -> bytes:
        return self.model.encode(x, **self.setting)

    def decode(self, data: bytes) -> torch.Tensor:
        return self.model.decode(data)

    def estimate_bits(self, x: torch.Tensor) -> float:
        return self.model.estimate_bits(x, **self.setting)

    def __repr__(self) -> str:
        return f"RatePoint({self.name} @ {self.rate})"
