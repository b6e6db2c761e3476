"""Any image architecture of CompressAI as a licbench learned codec, by its registered name and one YAML.

CompressAI (Bégaint et al. 2020, "CompressAI: a PyTorch library and evaluation platform for end-to-end
compression research", arXiv:2011.03029) registers its models by name (``compressai.registry.MODELS``,
filled by ``compressai.models``): ``bmshj2018-factorized``, ``bmshj2018-hyperprior`` (Ballé, Minnen, Singh,
Hwang, Johnston: "Variational image compression with a scale hyperprior", ICLR 2018), ``mbt2018-mean`` and
``mbt2018`` (Minnen, Ballé, Toderici: "Joint autoregressive and hierarchical priors for learned image
compression", NeurIPS 2018), ``cheng2020-anchor`` (Cheng et al., CVPR 2020), ... A model config::

    _target_: licbench.lightning_modules.compressai_models.CompressAIModel
    name: balle2018                     # the codec's name: the config file's name (conf/model/balle2018.yaml)
    architecture: bmshj2018-hyperprior  # a name of compressai.registry.MODELS with a downsampling_factor
    N: 128                              # every key that is not a training option (LearnedCodec's: lmbda, lr,
    M: 192                              # ...) is the architecture's constructor argument

makes the codec: training is the wrapped network's ``forward`` under licbench's RD loss and optimizers
(the same as CompressAI's ``examples/train.py``: ``λ·255²·MSE + bpp``, an Adam for the network and one for
the bottleneck's quantiles on the network's ``aux_loss``); a stream is the network's own ``compress()``
strings, one container section each, decoded by its own ``decompress()``; ``update()`` is its CDF tables.
The latent shape ``decompress()`` needs is not stored: it is the padded image size over the
architecture's ``downsampling_factor``, and ``encode`` refuses an architecture that says otherwise.

Hostile streams: before the network decodes, the section count is checked against the architecture's
(learnt once by coding a blank image, :meth:`CompressAIModel.layout`), and every string the network hands
to an ``EntropyBottleneck`` or a ``GaussianConditional`` goes through ``entropy.py``'s guards (length for
the declared size, zero padding, code range, canonical re-coding: :func:`guarded_decoding`). A string an
architecture decodes with its own rANS loop (the autoregressive ``mbt2018``, ``cheng2020-*``: the ``y``
string) is read within zero padding, so never past its bytes, but neither length-checked nor re-coded: a
forged one decodes to some image of the declared size, at the cost of decoding that size.

``licbench import`` (:meth:`CompressAIModel.load_compressai`) loads the weights CompressAI's zoo and
training example save into the same codec.
"""
from __future__ import annotations

import functools
import inspect
import re
from contextlib import contextmanager

import compressai.models  # noqa: F401  (fills the registry)
import torch
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from compressai.models.utils import remap_old_keys
from compressai.registry import MODELS
from compressai.zoo.pretrained import load_pretrained
from torch import nn

from licbench.core.codec import CodecError
from licbench.lightning_modules.base import LearnedCodec
from licbench.lightning_modules.entropy import decode_bottleneck, decode_canonical, zero_padded

TRAINING = tuple(inspect.signature(LearnedCodec.__init__).parameters)[1:]  # lmbda, lr, aux_lr, ...
#: buffers CompressAI's ``load_state_dict`` resizes to the loaded weights' (their shapes are no mismatch)
TABLES = ("._quantized_cdf", "._offset", "._cdf_length", ".scale_table")


class CompressAIModel(LearnedCodec):
    name = "compressai"  # each instance's is its config's ``name``

    def __init__(self, name: str, architecture: str, **options):
        super().__init__(**{key: options.pop(key) for key in TRAINING if key in options})
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_]{1,64}", name)):
            raise CodecError(f"model.name must be the config's name (letters, digits, _), got {name!r}")
        cls = MODELS.get(architecture) if isinstance(architecture, str) else None
        if cls is None or not hasattr(cls, "downsampling_factor"):
            image = sorted(key for key, value in MODELS.items() if hasattr(value, "downsampling_factor"))
            raise CodecError(f"model.architecture {architecture!r} is not an image architecture of compressai.models "
                             f"with a downsampling_factor; one of {', '.join(image)}")
        try:
            self.net = cls(**options)
        except TypeError as err:
            raise CodecError(f"model: {architecture} does not take {options} ({err})") from None
        self.name, self.architecture, self.arguments = name, architecture, options
        self.stride = int(self.net.downsampling_factor)
        self._layout: tuple[int, int, frozenset[int]] | None = None

    @classmethod
    def codec_name(cls, config: dict) -> str:
        return str(config.get("name"))

    # --- the wrapped network ----------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict:
        """The network's forward on ``x`` padded to the stride (training crops of any size), ``x_hat`` cropped."""
        out = self.net(nn.functional.pad(x, self._padding(*x.shape[2:]), mode="replicate"))
        return {**out, "x_hat": out["x_hat"][..., :x.shape[2], :x.shape[3]]}

    def aux_loss(self) -> torch.Tensor:
        return self.net.aux_loss()

    def update(self, *args, **kwargs) -> bool:
        self._model_id = None
        return self.net.update(*args, **kwargs)

    def compress(self, x: torch.Tensor) -> list[bytes]:
        out = self.net.compress(x)
        shape = (x.shape[2] // self.stride, x.shape[3] // self.stride)
        if tuple(out.get("shape", ())) != shape:
            raise CodecError(f"{self.architecture}'s compress() gives shape {out.get('shape')}, not the padded image "
                             f"size over its downsampling factor {self.stride} ({shape}): licbench cannot code it")
        return self._strings(out["strings"])

    def decompress(self, sections: list[bytes], height: int, width: int) -> torch.Tensor:
        count, symbols, raw = self.layout()
        if len(sections) != count:
            raise CodecError(f"{self.name} stream must have {count} sections, got {len(sections)}")
        shape = (height // self.stride, width // self.stride)
        strings = [[zero_padded(s, symbols * shape[0] * shape[1]) if i in raw else s] for i, s in enumerate(sections)]
        with guarded_decoding(self.net, self.name):
            return self.net.decompress(strings, shape)["x_hat"]

    def layout(self) -> tuple[int, int, frozenset[int]]:
        """The architecture's streams: their number of strings, the symbols its latents hold per
        ``stride × stride`` block of the image, and which strings it decodes outside the guarded entropy
        models — found once, by coding a blank ``stride × stride`` image (the entropy tables must exist)."""
        if self._layout is None:
            x, seen = torch.zeros(1, 3, self.stride, self.stride, device=self.device), set()
            strings = self._strings(self.net.compress(x)["strings"])
            with guarded_decoding(self.net, self.name, seen):
                self.net.decompress([[s] for s in strings], (1, 1))
            symbols = sum(p.numel() for p in self.net(x)["likelihoods"].values())
            self._layout = len(strings), symbols, frozenset(i for i, s in enumerate(strings) if id(s) not in seen)
        return self._layout

    def _strings(self, strings) -> list[bytes]:
        """``compress()``'s strings of a batch of one, as sections: ``[[bytes], [bytes], ...]`` -> ``[bytes, ...]``."""
        if not all(isinstance(s, list) and len(s) == 1 and isinstance(s[0], bytes) for s in strings):
            raise CodecError(f"{self.architecture}'s compress() gives strings licbench cannot store (expected a list "
                             "of one bytes string per latent)")
        return [s[0] for s in strings]

    # --- CompressAI's own weights -------------------------------------------------------------
    def load_compressai(self, state_dict: dict, source: str) -> None:
        """Load a CompressAI state dict of this architecture and these arguments — the zoo's or
        ``examples/train.py``'s, older key names renamed as CompressAI renames them (``load_pretrained``,
        ``remap_old_keys``) — then compute its CDF tables afresh (``update(force=True)``, as
        ``compressai.utils.eval_model`` does); anything else is a one-line CodecError naming the first
        missing, unexpected or misshapen weights."""
        if not (isinstance(state_dict, dict) and all(isinstance(k, str) and torch.is_tensor(v)
                                                     for k, v in state_dict.items())):
            raise CodecError(f"{source} holds no state dict (names to tensors)")
        state, expected = load_pretrained(state_dict), self.net.state_dict()
        for module in (name for name, m in self.net.named_modules() if isinstance(m, EntropyBottleneck)):
            state = remap_old_keys(module, state)
        problems = {
            "missing": [k for k in expected if k not in state],
            "unexpected": [k for k in state if k not in expected],
            "misshapen": [f"{k} {list(state[k].shape)} (here {list(v.shape)})" for k, v in expected.items()
                          if k in state and not k.endswith(TABLES) and state[k].shape != v.shape],
        }
        found = [f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for what, keys in problems.items() if keys]
        if found:
            raise CodecError(f"{source} is not a state dict of {self.architecture} {self.arguments}: "
                             + "; ".join(found))
        self.net.load_state_dict(state)
        self.update(force=True)


@contextmanager
def guarded_decoding(net: nn.Module, name: str, seen: set[int] | None = None):
    """Within the block, each string ``net``'s ``EntropyBottleneck`` decodes goes through
    :func:`~licbench.lightning_modules.entropy.decode_bottleneck`, and each string an entropy model decoding
    by CDF indexes (``EntropyModel.decompress``: ``GaussianConditional``) decodes through
    :func:`~licbench.lightning_modules.entropy.decode_canonical`; ``seen`` collects those strings' ids."""
    seen = set() if seen is None else seen
    hooks = {EntropyBottleneck.decompress: _bottleneck, EntropyModel.decompress: _indexed}
    guarded = [m for m in net.modules() if isinstance(m, EntropyModel) and type(m).decompress in hooks]
    for module in guarded:
        module.decompress = functools.partial(hooks[type(module).decompress], module, name, seen)
    try:
        yield
    finally:
        for module in guarded:
            del module.decompress


def _one(strings, name: str, seen: set[int]) -> bytes:
    if not (isinstance(strings, (list, tuple)) and len(strings) == 1 and isinstance(strings[0], bytes)):
        raise CodecError(f"{name}: the network decodes strings licbench cannot check (expected one per image)")
    seen.add(id(strings[0]))
    return strings[0]


def _bottleneck(model: EntropyBottleneck, name: str, seen: set[int], strings, size) -> torch.Tensor:
    return decode_bottleneck(model, _one(strings, name, seen), tuple(size), name)


def _indexed(model: EntropyModel, name: str, seen: set[int], strings, indexes: torch.Tensor,
             dtype: torch.dtype = torch.float, means: torch.Tensor | None = None) -> torch.Tensor:
    return model.dequantize(decode_canonical(model, _one(strings, name, seen), indexes, name), means, dtype)
