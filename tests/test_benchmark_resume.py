"""No lost results: an interrupted benchmark resumes from its row log, a codec that crashes on one
image is recorded as a failure while the run goes on, and result files are replaced atomically.
The misbehaving codec is a test-only config added with hydra.searchpath (a new codec is one config)."""
import json
import os
import textwrap

import pandas as pd
import pytest

from conftest import run_cli
from licbench.bench.rowlog import NAME, RowLog
from licbench.core.atomic import write_atomic
from licbench.core.images import save_image

FLAKY = textwrap.dedent("""
    from pathlib import Path

    from licbench.baselines.pillow import PillowCodec

    class Flaky(PillowCodec):
        \"\"\"JPEG that raises on images ``fail_width`` wide, and is interrupted (as by Ctrl-C) after
        ``interrupt_after`` encodes unless ``marker`` exists, which it then creates.\"\"\"
        encodes = 0

        def __init__(self, fail_width=None, interrupt_after=None, marker=None, **kwargs):
            super().__init__(**kwargs)
            self.fail_width, self.interrupt_after, self.marker = fail_width, interrupt_after, marker

        def encode(self, x):
            if x.shape[2] == self.fail_width:
                raise RuntimeError("flaky: cannot code this width")
            Flaky.encodes += 1
            if Flaky.encodes > self.interrupt_after and not Path(self.marker).exists():
                Path(self.marker).touch()
                raise KeyboardInterrupt
            return super().encode(x)
""")
WIDTHS = {"a": 48, "b": 56, "c": 40}  # flaky fails on b


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """The same command run twice: interrupted in flaky's 4th encode, then run to the end."""
    root = tmp_path_factory.mktemp("resume")
    (root / "flaky.py").write_text(FLAKY)
    (root / "conf" / "codec").mkdir(parents=True)
    (root / "conf" / "codec" / "flaky.yaml").write_text(
        f"_target_: flaky.Flaky\nformat: jpeg\nrate: 50\ngrid: [30, 60]\nfail_width: 56\ninterrupt_after: 3\n"
        f"marker: {root / 'interrupted'}\n")
    (root / "images").mkdir()
    from licbench.datamodules.synthetic import synthetic_image

    for name, width in WIDTHS.items():
        save_image(synthetic_image(40, width, seed=width), root / "images" / f"{name}.png")
    out = root / "out"
    args = ["benchmark", "data=folder", f"data.root={root / 'images'}", "logger=none", "codecs=[jpeg,flaky]",
            "+codec_overrides.jpeg.grid=[10,50]", f"hydra.searchpath=[file://{root / 'conf'}]", f"out_dir={out}",
            f"hydra.run.dir={root / 'hydra'}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(root))  # the runs import flaky
        first = run_cli(*args, check=False)
        logged = [json.loads(line) for line in (out / NAME).read_text().splitlines()]
        second = run_cli(*args, check=False)
    return first, logged, second, out


def test_an_interrupted_benchmark_keeps_its_rows_and_writes_no_tables(resumed):
    first, logged, _, out = resumed
    assert first.returncode != 0 and "KeyboardInterrupt" in first.stderr
    # jpeg: 2 rates x 3 images; flaky at 30: a, (b fails: not logged), c; at 60: a, then interrupted
    assert [(e["row"]["codec"], e["row"]["rate"], e["row"]["image"]) for e in logged][-3:] == [
        ("flaky", 30, "a"), ("flaky", 30, "c"), ("flaky", 60, "a")]
    assert len(logged) == 6 + 3


def test_a_rerun_reuses_the_logged_rows_and_adds_only_the_missing_ones(resumed):
    _, logged, second, out = resumed
    assert f"resuming: {len(logged)} rows already measured" in second.stdout
    rows = pd.read_csv(out / "per_image.csv")
    assert len(rows) == 6 + 4 and not rows.duplicated(["codec", "rate", "image"]).any()
    for entry in logged:  # reused as they were, timings included: not measured again
        row = entry["row"]
        match = rows[(rows.codec == row["codec"]) & (rows.rate == row["rate"]) & (rows.image == row["image"])]
        assert match.enc_s.item() == pytest.approx(row["enc_s"], rel=1e-12) and match.bytes.item() == row["bytes"]


def test_a_codec_crashing_on_one_image_is_a_failure_row_and_the_run_goes_on(resumed):
    _, _, second, out = resumed
    failures = pd.read_csv(out / "failures.csv")
    assert failures[["codec", "rate", "image"]].values.tolist() == [["flaky", 30, "b"], ["flaky", 60, "b"]]
    assert (failures.error == "RuntimeError: flaky: cannot code this width").all()
    summary = (out / "summary.md").read_text()
    assert "## Failures (2" in summary and "- flaky @ 30 on b: RuntimeError: flaky: cannot code this width" in summary
    board = (out / "leaderboard.md").read_text()
    assert "| flaky | 2 |" in board  # its two rate points, over the other images
    note = "anchor jpeg2000 is not among the benchmarked codecs (flaky, jpeg): its columns are empty"
    assert f"Note: {note}." in board and f"note: {note}" in second.stdout
    lines = [line for line in second.stderr.splitlines() if line.startswith("licbench: error:")]
    assert second.returncode == 1 and "2 codec × image runs failed" in lines[0]
    assert (out / NAME).is_file(), "with failures left the log stays, so a rerun retries only those"


def test_a_line_cut_by_a_kill_is_dropped_and_appending_goes_on(tmp_path):
    log = RowLog(tmp_path)
    log.add(("jpeg", "10", "a", None), {"codec": "jpeg", "bpp": 0.5})
    with (tmp_path / NAME).open("a") as file:
        file.write('{"key": ["jpeg", "10", "b", null], "row": {"codec": "jp')  # killed mid-line
    log = RowLog(tmp_path)
    assert list(log.rows) == [("jpeg", "10", "a", None)]
    log.add(("balle2017", "0.01", "a", "balle2017-abc"), {"codec": "balle2017", "bpp": 0.2})
    again = RowLog(tmp_path)
    assert again.get(("balle2017", "0.01", "a", "balle2017-abc")) == {"codec": "balle2017", "bpp": 0.2}
    assert again.get(("balle2017", "0.01", "a", "balle2017-other")) is None  # other weights: measured again
    again.remove()
    assert not (tmp_path / NAME).exists()


def test_write_atomic_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "rd.csv", "old\n")

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["rd.csv"]


def test_write_atomic_gives_the_permissions_open_would(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "rd.csv", "rows\n")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's owner-only 0o600
