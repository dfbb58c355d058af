"""#16 defect 3: every path built from manifest/CSV content resolves inside its root (pipeline/safepath.py),
in crop, augment, flow and the adapters; a bad row is reported and skipped, the rest is processed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from face_images import astronaut, moving, write_rgb
from flowdata import make_crops
from pipeline import flow as fl
from pipeline.adapters.common import ManifestParams, Sequence
from pipeline.augment import AugmentParams, augment_dataset
from pipeline.crop import CROPS_COLUMNS, ERRORS_COLUMNS, CropParams, crop_dataset
from pipeline.errors import EmoganError, SequenceError
from pipeline.manifest import MANIFEST_COLUMNS, build_manifest, read_csv, write_csv
from pipeline.safepath import inside, safe_name
from conftest import params_of


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "..", "", "a\0b"])
def test_inside_refuses_paths_that_leave_the_root(tmp_path, bad):
    with pytest.raises(SequenceError, match="outside|absolute|empty|NUL"):
        inside(tmp_path, bad, "frame", "m.csv:2")


def test_inside_accepts_paths_within_the_root(tmp_path):
    assert inside(tmp_path, "a/./c.png", "frame", "m.csv:2") == tmp_path / "a" / "c.png"
    for bad in ("..", ".", "", "a/b", "a\\b", ".hidden"):
        with pytest.raises(SequenceError):
            safe_name(bad, "subject", "m.csv:2")
    assert safe_name("S01", "subject", "m.csv:2") == "S01"


def _frontal_crops(root: Path, subjects: list[str]) -> Path:
    """A crops folder of a frontal-only set (cam1 only), one 3-frame sequence `seq` per subject name."""
    rows = []
    for sub in subjects:
        for i, f in enumerate(moving(astronaut()[:64, :64], 3, step=1)):
            write_rgb(root / sub / "seq" / "cam1" / f"img_{i + 1:03d}.png", f)
        rows.append({"dataset": "ck", "subject": sub, "sequence": "seq", "label": "anger", "label_code": 1,
                     "pose": "nothing", "root": ".", "frontal": "", "nonfrontal": "", "video": "", "n_frames": 3,
                     "cam1_dir": f"{sub}/seq/cam1", "cam2_dir": "", "box_cam1": "0 0 64", "box_cam2": ""})
    write_csv(root / "crops.csv", CROPS_COLUMNS, rows)
    return root


def test_augment_never_deletes_outside_out(tmp_path):
    """A crops.csv subject `../victim` made augment replace victim/seq (precious.txt lost) next to the output."""
    src = _frontal_crops(tmp_path / "a" / "src", ["S001", "../victim"])
    out = tmp_path / "out"
    precious = tmp_path / "victim" / "seq" / "precious.txt"
    precious.parent.mkdir(parents=True)
    precious.write_text("keep me")
    counts = augment_dataset(src, out, params_of(AugmentParams, "augment"), progress=False)
    assert precious.read_text() == "keep me"
    assert counts["augmented"] == 1 and counts["error"] == 1
    errors = read_csv(out / "errors.csv", ERRORS_COLUMNS)
    assert [e["subject"] for e in errors] == ["../victim"] and "subject" in errors[0]["reason"]
    assert str(src / "crops.csv") in errors[0]["file"]
    assert [r["subject"] for r in read_csv(out / "crops.csv", CROPS_COLUMNS)] == ["S001"]


def test_augment_refuses_a_cam1_dir_outside_the_crops(tmp_path):
    src = _frontal_crops(tmp_path / "src", ["S001", "S002"])
    shutil.copytree(src / "S002", tmp_path / "elsewhere")
    rows = read_csv(src / "crops.csv", CROPS_COLUMNS)
    rows[1]["cam1_dir"] = "../elsewhere/seq/cam1"
    write_csv(src / "crops.csv", CROPS_COLUMNS, rows)
    counts = augment_dataset(src, tmp_path / "out", params_of(AugmentParams, "augment"), progress=False)
    assert counts["augmented"] == 1 and counts["error"] == 1
    assert "outside" in read_csv(tmp_path / "out" / "errors.csv", ERRORS_COLUMNS)[0]["reason"]


@pytest.mark.parametrize("field,value", [("frontal", "../outside/img_001.png"), ("subject", "../evil"),
                                         ("frontal", "/etc/hostname")])
def test_crop_refuses_manifest_paths_outside_the_root(tmp_path, field, value):
    root = tmp_path / "ds"
    files = [write_rgb(root / "cam1" / "S01" / "001" / f"img_{i + 1:03d}.png", f).relative_to(root).as_posix()
             for i, f in enumerate(moving(astronaut(), 2))]
    for i, f in enumerate(moving(astronaut(), 2)):
        write_rgb(tmp_path / "outside" / f"img_{i + 1:03d}.png", f)
    good = {"dataset": "d", "subject": "S01", "sequence": "001", "label": "", "label_code": -1, "pose": "",
            "root": "ds", "frontal": "|".join(files), "nonfrontal": "", "video": "", "n_frames": 2}
    bad = {**good, "sequence": "002", field: value}
    if field == "frontal":
        bad["frontal"] = value + "|" + files[1]
    write_csv(tmp_path / "m.csv", MANIFEST_COLUMNS, [good, bad])
    out = tmp_path / "crops"
    counts = crop_dataset(tmp_path / "m.csv", out, params_of(CropParams, "crop", size=32, workers=1), progress=False)
    assert counts == {"cropped": 1, "reused": 0, "error": 1}
    e = read_csv(out / "errors.csv", ERRORS_COLUMNS)[0]
    assert str(tmp_path / "m.csv") in e["file"] and ("outside" in e["reason"] or "absolute" in e["reason"]
                                                     or "folder name" in e["reason"])
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("cam1", ["../elsewhere/cam1", "/tmp/cam1", "S001/001/../../../elsewhere/cam1"])
def test_flow_refuses_camera_folders_outside_the_crops(tmp_path, cam1):
    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=32)
    shutil.copytree(crops / "S001" / "001" / "cam1", tmp_path / "elsewhere" / "cam1")
    rows = read_csv(crops / "crops.csv", tuple(CROPS_COLUMNS))
    rows[1]["cam1_dir"] = cam1
    write_csv(crops / "crops.csv", tuple(CROPS_COLUMNS), rows)
    rep = fl.compute_flows(crops, tmp_path / "f.zarr", params_of(fl.FlowParams, "flow", size=16, workers=0,
                                                                 max_step=1), progress=False)
    assert rep.n_sequences == 1 and len(rep.errors) == 1
    assert "outside" in rep.errors[0]["reason"] or "absolute" in rep.errors[0]["reason"]


def test_adapters_output_is_checked_once_in_build_manifest(tmp_path, monkeypatch):
    """Whatever an adapter read (a labels file, a folder name), its rows go through the same guard."""
    from pipeline import adapters

    (tmp_path / "src").mkdir()
    monkeypatch.setitem(adapters.ADAPTERS, "emotiongan",
                        lambda source, p: [Sequence("S01", "001", frontal=["../../secret.png"])])
    with pytest.raises(EmoganError, match="outside"):
        build_manifest(tmp_path / "src", "emotiongan", "d", params_of(ManifestParams, "manifest"))
    monkeypatch.setitem(adapters.ADAPTERS, "emotiongan",
                        lambda source, p: [Sequence("..", "001", frontal=["a.png"])])
    with pytest.raises(EmoganError, match="folder name"):
        build_manifest(tmp_path / "src", "emotiongan", "d", params_of(ManifestParams, "manifest"))
