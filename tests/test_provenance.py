from licbench.core.provenance import module_command, portable


def test_commands_name_datasets_not_machine_paths(tmp_path, monkeypatch):
    image, project = tmp_path / "kodak" / "kodim01.png", tmp_path / "project"
    image.parent.mkdir()
    image.write_bytes(b"")
    (project / "results").mkdir(parents=True)
    monkeypatch.chdir(project)
    inside, outside = "results", str(image.parent)
    assert portable(f"data.root={outside}") == "data.root=$DATA/kodak"
    assert portable(inside) == inside and portable("codecs=[jpeg]") == "codecs=[jpeg]"
    assert module_command("licbench.tools.x", ["--images", outside, "--image", inside]) == \
        f"python -m licbench.tools.x --images $DATA/kodak --image {inside}"


def test_a_path_inside_the_datasets_folder_is_named_from_it(tmp_path, monkeypatch):
    split, project = tmp_path / "datasets" / "bsds500" / "train", tmp_path / "project"
    split.mkdir(parents=True)
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("LICBENCH_DATASETS", str(tmp_path / "datasets"))
    assert portable(str(split)) == "$DATA/bsds500/train"
    assert portable(f"data.root={split}") == "data.root=$DATA/bsds500/train"
    monkeypatch.delenv("LICBENCH_DATASETS")
    assert portable(str(split)) == "$DATA/train"  # no datasets folder named: its name
