"""Published curves: the shipped ones load as published; another dataset's curve and malformed files
are refused in one line that names the file; a codec's paper without a curve on the dataset is a reason."""
import json

import pytest

from licbench.bench.references import load_reference, load_references, paper_curve, shipped
from licbench.core.codec import CodecError


def test_the_shipped_kodak_curves_load_as_published():
    assert {"paper-balle2017", "paper-theis2017", "paper-toderici2017", "jpeg", "jpeg2000"} <= set(shipped("kodak"))
    balle = load_reference("paper-balle2017", "kodak")
    assert balle.name == "paper-balle2017" and "Balle" in balle.description
    assert balle.curve.bpp.iloc[0] == pytest.approx(0.119752) and balle.curve.psnr.iloc[0] == pytest.approx(26.775134)
    assert balle.curve.bpp.is_monotonic_increasing and len(balle.curve) == 8
    assert load_reference("paper-balle2018", "kodak").curve.ms_ssim.isna().all()  # PSNR only, as published


def write(path, results, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": "x", "results": results, **extra}))
    return path


def test_a_users_file_is_on_the_dataset_of_its_key_or_its_folder(tmp_path):
    curve = {"bpp": [0.2, 0.5], "psnr-rgb": [28.0, 31.0]}
    assert len(load_reference(str(write(tmp_path / "kodak" / "mine.json", curve)), "kodak").curve) == 2
    stated = write(tmp_path / "elsewhere" / "stated.json", curve, dataset="kodak")
    assert load_reference(str(stated), "kodak").name == "stated"
    with pytest.raises(CodecError, match=r"clic\.json is on 'clic2020', the benchmark on 'kodak'"):
        load_reference(str(write(tmp_path / "clic2020" / "clic.json", curve)), "kodak")


@pytest.mark.parametrize("results, reason", [
    ({"psnr-rgb": [30.0]}, "no results.bpp"),
    ({"bpp": [0.1, "a lot"], "psnr-rgb": [28.0, 30.0]}, "results.bpp holds values that are not finite numbers"),
    ({"bpp": [0.1, 0.2, 0.3], "psnr-rgb": [28.0, 30.0]}, "3 bpp values but 2 psnr-rgb"),
    ({"bpp": [0.1]}, "no quality metric"),
])
def test_a_malformed_file_gets_one_line_naming_it(tmp_path, results, reason):
    path = write(tmp_path / "kodak" / "bad.json", results)
    with pytest.raises(CodecError) as err:
        load_reference(str(path), "kodak")
    assert str(path) in str(err.value) and reason in str(err.value) and "\n" not in str(err.value)


def test_unknown_names_and_clashes_are_refused(tmp_path):
    with pytest.raises(CodecError, match="unknown reference 'paper-nobody' for kodak: give a .json path or one of"):
        load_reference("paper-nobody", "kodak")
    (tmp_path / "kodak").mkdir()
    (tmp_path / "kodak" / "broken.json").write_text("{not json")
    with pytest.raises(CodecError, match="not a readable JSON file"):
        load_reference(str(tmp_path / "kodak" / "broken.json"), "kodak")
    clash = write(tmp_path / "kodak" / "jpeg.json", {"bpp": [0.3], "psnr-rgb": [27.0]})
    with pytest.raises(CodecError, match="two files share a name"):
        load_references(["jpeg", str(clash)], "kodak")


def test_a_paper_with_no_curve_on_the_dataset_is_a_reason_not_an_error(tmp_path):
    reference, why = paper_curve("paper-balle2017", "kodak")
    assert reference.name == "paper-balle2017" and why == ""
    assert paper_curve("paper-balle2017", "samples") == (None, "no published paper-balle2017 curve on samples")
    theirs = write(tmp_path / "clic2020" / "theirs.json", {"bpp": [0.2, 0.5], "psnr-rgb": [28.0, 31.0]})
    assert paper_curve(str(theirs), "kodak") == (None, f"{theirs} is on clic2020, not kodak")
    with pytest.raises(CodecError, match="no results.bpp"):  # a malformed paper curve is still an error
        paper_curve(str(write(tmp_path / "kodak" / "bad.json", {"psnr-rgb": [30.0]})), "kodak")
