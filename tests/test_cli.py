import pytest

from conftest import run_cli
from licbench.cli import _guarded
from licbench.core.bitstream import Container
from licbench.core.images import load_image, save_image


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    from licbench.datamodules.synthetic import synthetic_image

    path = tmp_path_factory.mktemp("cli") / "a.png"
    save_image(synthetic_image(40, 56, 7), path)
    return path


def one_line_error(proc, needle):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("codec,rate", [("jpeg2000", "4.0"), ("jpeg", "60")])
def test_encode_decode_like_a_codec(tmp_path, png, codec, rate):
    run_cli("encode", f"codec={codec}", f"codec.rate={rate}", f"input={png}", f"output={tmp_path / 'a.bin'}")
    run_cli("decode", f"input={tmp_path / 'a.bin'}", f"output={tmp_path / 'b.png'}")
    x, _ = load_image(png)
    x_hat, _ = load_image(tmp_path / "b.png")
    assert x_hat.shape == x.shape and (x - x_hat).abs().mean() < 0.05


def test_learned_codec_finds_its_weights_by_model_id(tmp_path, png, balle_checkpoint):
    run_cli("encode", "codec=balle2017", f"weights={balle_checkpoint}", f"input={png}", f"output={tmp_path / 'a.bin'}")
    run_cli("decode", f"input={tmp_path / 'a.bin'}", f"output={tmp_path / 'b.png'}",
            f"search=[{balle_checkpoint.parent}/*.ckpt]")
    assert load_image(tmp_path / "b.png")[0].shape == (3, 40, 56)
    proc = run_cli("decode", f"input={tmp_path / 'a.bin'}", f"output={tmp_path / 'c.png'}",
                   f"search=[{tmp_path}/*.ckpt]", check=False)
    one_line_error(proc, "no checkpoint with model id")


def test_bad_inputs_are_one_line_errors(tmp_path, png):
    one_line_error(run_cli("encode", f"input={tmp_path / 'missing.png'}", f"output={tmp_path / 'x'}", check=False),
                   "no such image file")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    one_line_error(run_cli("encode", f"input={text}", f"output={tmp_path / 'x'}", check=False), "not a readable image")
    one_line_error(run_cli("decode", f"input={tmp_path / 'missing.bin'}", f"output={tmp_path / 'y.png'}", check=False),
                   "no such input file")
    one_line_error(run_cli("decode", f"input={text}", f"output={tmp_path / 'y.png'}", check=False),
                   "unrecognised bitstream")
    run_cli("encode", "codec=jpeg2000", f"input={png}", f"output={tmp_path / 'a.j2k'}")
    truncated = tmp_path / "t.j2k"
    truncated.write_bytes((tmp_path / "a.j2k").read_bytes()[:60])
    one_line_error(run_cli("decode", f"input={truncated}", f"output={tmp_path / 'y.png'}", check=False),
                   "cannot decode JPEG 2000")
    forged = tmp_path / "forged.bin"
    forged.write_bytes(Container("nope", 1, 1).to_bytes())
    one_line_error(run_cli("decode", f"input={forged}", f"output={tmp_path / 'y.png'}", f"search=[{tmp_path}/*.ckpt]",
                           check=False), "no checkpoint with model id")
    proc = run_cli("decode", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    proc = run_cli("frobnicate", check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.parametrize("args,start,end", [
    (["encode", "codec=jpeg", "codec.quality=75"], "codec jpeg has no key 'quality'; it takes format, rate, grid",
     "did you mean codec.rate?"),
    (["encode", "codec=jpg"], "codec has no option 'jpg'; it takes avif, balle2017, ", "did you mean codec=jpeg?"),
    (["train", "model=theis2017", "model.lmda=0.01"], "model theis2017 has no key 'lmda'; it takes N, M, scales, ",
     "did you mean model.lmbda?"),
    (["train", "-m", "trainer.max_step=5,10"], "trainer cpu has no key 'max_step'; it takes ",
     "did you mean trainer.max_steps?"),
    (["benchmark", "codec_overide.jpeg.grid=[10]"], "benchmark has no key 'codec_overide'; it takes ",
     "did you mean codec_overrides?"),
    (["decode", "inptu=a.bin"], "decode has no key 'inptu'; it takes ", "did you mean input?"),
    (["report", "in_dri=out"], "report has no key 'in_dri'; it takes ", "did you mean in_dir?"),
])
def test_a_mistyped_override_is_one_line_naming_the_keys(tmp_path, args, start, end):
    proc = run_cli(*args, f"hydra.sweep.dir={tmp_path}", check=False)
    assert proc.returncode == 1
    one_line_error(proc, "licbench: error: " + start)
    assert proc.stderr.strip().endswith(end), proc.stderr


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: "
                                                                "you tried to allocate 767994852 bytes")])
def test_running_out_of_memory_is_a_one_line_error(error, capsys):
    def task(cfg):
        raise error

    with pytest.raises(SystemExit) as exit_:
        _guarded(task)(None)
    assert exit_.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("licbench: error: out of memory")


def test_other_runtime_errors_are_not_called_out_of_memory():
    def task(cfg):
        raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError, match="shapes"):
        _guarded(task)(None)
