"""Mixed precision on CPU (``trainer.precision=bf16-mixed``): the transforms run in bfloat16, the
entropy models and so the rate term in float32; the trained model still codes real bitstreams."""
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from licbench.datamodules.synthetic import synthetic_image
from licbench.lightning_modules.balle2017 import Balle2017
from licbench.lightning_modules.toderici2017 import Toderici2017


def fit_bf16(model, steps: int = 3):
    batches = DataLoader(torch.stack([synthetic_image(32, 32, seed=s) for s in range(4 * steps)]), batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, precision="bf16-mixed", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=batches)
    return model


def test_balle_keeps_its_likelihoods_in_float32_and_codes_after_bf16_training():
    torch.manual_seed(0)
    model = fit_bf16(Balle2017(N=8, M=8, lr=1e-3)).eval()
    x = synthetic_image(32, 48, seed=9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model.g_a(x[None])
        _, likelihoods = model.entropy_bottleneck(y)
    assert y.dtype == torch.bfloat16  # the transform ran in bfloat16
    with torch.autocast("cpu", enabled=False):
        _, in_float32 = model.entropy_bottleneck(y.float())
    assert torch.equal(likelihoods, in_float32)  # in bfloat16 its density would differ by ~5e-4
    assert model.decode(model.encode(x)).shape == x.shape


def test_toderici_keeps_its_bit_logits_in_float32():
    torch.manual_seed(0)
    model = fit_bf16(Toderici2017(encoder_channels=[8, 16, 16, 16], decoder_channels=[16, 16, 16, 16],
                                  context_channels=8, train_iterations=2, max_iterations=2))
    previous = torch.randn(1, model.hparams.bits, 4, 4).sign()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.entropy_model(previous, 1, previous.shape)
    assert torch.equal(logits, model.entropy_model(previous, 1, previous.shape))
