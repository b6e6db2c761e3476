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
