"""An untrusted checkpoint costs at most its bounds: a model class that is not licbench's, a model
config's (``hydra.searchpath``) or trusted is refused before its module is imported, and a model or
weights over ``max_checkpoint_params`` tensor elements are refused before they are allocated."""
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, run_cli
from licbench.core.checkpoint import MAX_PARAMS, Limits, load_checkpoint, read_checkpoint
from licbench.core.codec import CodecError
from licbench.core.images import save_image
from licbench.datamodules.synthetic import synthetic_image

ZOO = sorted((REPO / "results" / "zoo").glob("*/*.ckpt"))
BALLE = REPO / "results" / "zoo" / "balle2017" / "balle2017-l0.013.ckpt"
USER_MODULE = textwrap.dedent("""
    from pathlib import Path

    from licbench.lightning_modules.balle2017 import Balle2017

    Path(__file__).with_name("imported").touch()

    class Mine(Balle2017):
        pass
""")


def rewritten(tmp_path, name: str, **model) -> str:
    """The committed Ballé 2017 checkpoint with ``model`` changed in its stored model config."""
    payload = torch.load(BALLE, weights_only=True)
    payload["model"].update(model)
    torch.save(payload, tmp_path / name)
    return str(tmp_path / name)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_codec.Mine`` on the path, a Ballé 2017 that touches ``imported`` when its module is imported."""
    (tmp_path / "user_codec.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "imported"
    sys.modules.pop("user_codec", None)


@pytest.mark.parametrize("path", ZOO, ids=[path.parent.name + "/" + path.name for path in ZOO])
def test_the_zoo_checkpoints_load_within_the_default_limits(path):
    assert load_checkpoint(path).model_id == read_checkpoint(path)["meta"]["model_id"]


def test_a_huge_model_config_is_refused_before_it_is_allocated(tmp_path):
    """N = M = 60000 would allocate 14 GB (the GDN's 60000 x 60000 gamma alone); a fresh process refuses it
    in about a second of loading (0.8 s here), its peak RSS growing by under 100 MB."""
    path = rewritten(tmp_path, "huge.ckpt", N=60000, M=60000)
    script = textwrap.dedent(f"""
        import resource, time
        import licbench.lightning_modules.balle2017
        from licbench.core.checkpoint import load_checkpoint
        from licbench.core.codec import CodecError

        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
        try:
            load_checkpoint({path!r})
        except CodecError as err:
            print(err)
        print(time.perf_counter() - start, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    message, figures = proc.stdout.strip().splitlines()
    seconds, grown = map(float, figures.split())
    assert message == (f"{path}: building its model (licbench.lightning_modules.balle2017.Balle2017) would allocate "
                       f"over {MAX_PARAMS} tensor elements and was refused before it did; if you trust this "
                       "checkpoint, raise max_checkpoint_params")
    assert grown < 1e9 and seconds < 20, (grown, seconds)
    print(f"refused in {seconds:.2f} s, peak RSS +{grown / 1e6:.0f} MB")


def test_weights_over_the_limit_are_refused_before_they_are_read():
    with pytest.raises(CodecError, match=r"its weights hold 1\d{6} tensor elements, over the limit of 1000000"):
        load_checkpoint(BALLE, Limits(max_params=1_000_000))


def test_the_cli_applies_max_checkpoint_params(tmp_path):
    """``licbench encode`` with the huge checkpoint: one line, naming the key that lifts the limit."""
    save_image(synthetic_image(32, 32, seed=0), tmp_path / "a.png")
    path = rewritten(tmp_path, "huge.ckpt", N=60000, M=60000)
    proc = run_cli("encode", "codec=balle2017", f"weights={path}", f"input={tmp_path / 'a.png'}",
                   f"output={tmp_path / 'a.bin'}", check=False)
    error = proc.stderr.splitlines()[-1]  # after torch.jit's deprecation warning
    assert proc.returncode == 1 and error.startswith(f"licbench: error: {path}: building its model"), proc.stderr
    assert error.endswith("refused before it did; if you trust this checkpoint, raise max_checkpoint_params")
    assert not (tmp_path / "a.bin").exists()


@pytest.mark.parametrize("target", ["os.system", "user_codec.Mine"])
def test_an_unknown_model_class_is_refused_before_its_module_is_imported(tmp_path, user_module, target):
    path = rewritten(tmp_path, "bad.ckpt", _target_=target)
    with pytest.raises(CodecError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (
        f"{path}: unknown model class {target!r}: not a codec module of licbench's methods nor the _target_ of a "
        "model/*.yaml config on the search path, so it was not imported; if you trust this checkpoint, pass "
        f"trust_checkpoint_targets=[{target}]")
    assert "user_codec" not in sys.modules and not user_module.exists()


def test_a_trusted_model_class_loads(tmp_path, user_module):
    path = rewritten(tmp_path, "mine.ckpt", _target_="user_codec.Mine")
    codec = load_checkpoint(path, Limits(trust=("user_codec.Mine",)))
    assert type(codec).__name__ == "Mine" and user_module.exists()
    assert codec.model_id == read_checkpoint(BALLE)["meta"]["model_id"]


def test_a_model_config_on_the_search_path_trusts_its_class(tmp_path, user_module, monkeypatch):
    """A user's method is added by a ``model/<name>.yaml`` in a ``hydra.searchpath`` directory; its
    checkpoints then load with no trust option."""
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text("_target_: user_codec.Mine\nN: 8\nM: 8\n")
    save_image(synthetic_image(32, 32, seed=0), tmp_path / "a.png")
    path = rewritten(tmp_path, "mine.ckpt", _target_="user_codec.Mine")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    args = ["encode", "codec=balle2017", f"weights={path}", f"input={tmp_path / 'a.png'}",
            f"output={tmp_path / 'a.bin'}"]
    refused = run_cli(*args, check=False)
    assert refused.returncode == 1 and "unknown model class 'user_codec.Mine'" in refused.stderr
    run_cli(*args, f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    assert (tmp_path / "a.bin").stat().st_size > 0 and user_module.exists()
