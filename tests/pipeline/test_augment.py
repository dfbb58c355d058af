"""The augment stage: a deterministic rotation homography plus noise makes cam2 of frontal-only sets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pipeline.augment as aug_mod
from face_images import astronaut, grace_hopper, moving, tree_digest, write_rgb
from pipeline.augment import AugmentParams, augment_dataset, rotation_homography, sequence_rng
from emogan.cli import app
from pipeline.crop import CROPS_COLUMNS, ERRORS_COLUMNS, Box, crop_square, format_box, read_rgb
from pipeline.errors import EmoganError
from pipeline.manifest import read_csv, write_csv
from conftest import params_of, write_params

S = 64


def apply(h: np.ndarray, x: float, y: float) -> tuple[float, float]:
    v = h @ np.array([x, y, 1.0])
    return v[0] / v[2], v[1] / v[2]


def test_homography_geometry():
    c = (S - 1) / 2
    assert np.allclose(rotation_homography(S, 0, 0, 0, 3.0), np.eye(3))
    h = rotation_homography(S, 90, 0, 0, 3.0)  # in-plane: a quarter turn about the centre
    assert np.allclose(apply(h, c, c), (c, c)) and np.allclose(apply(h, c + 10, c), (c, c + 10))
    h = rotation_homography(S, 0, 30, 0, 3.0)  # yaw: the vertical axis stays, the sides foreshorten unequally
    assert np.allclose(apply(h, c, c), (c, c)) and np.isclose(apply(h, c, c - 20)[0], c)
    left, right = apply(h, c - 20, c)[0] - c, apply(h, c + 20, c)[0] - c
    assert abs(left) < 20 and abs(right) < 20 and not np.isclose(abs(left), abs(right))
    assert abs(right - left - 40 * np.cos(np.deg2rad(30))) < 2  # about cos(yaw) at this distance
    h = rotation_homography(S, 0, 0, 25, 3.0)  # pitch: the horizontal axis stays
    assert np.isclose(apply(h, c + 20, c)[1], c) and abs(apply(h, c, c + 20)[1] - c) < 20
    # a farther camera means weaker perspective: the two sides become nearly equal
    far = rotation_homography(S, 0, 30, 0, 1000.0)
    assert abs(abs(apply(far, c - 20, c)[0] - c) - abs(apply(far, c + 20, c)[0] - c)) < 0.01


def frontal_crops(root: Path, n_seq: int = 3, n_frames: int = 3) -> Path:
    """A crop folder as `emogan crop` writes it for a frontal-only set (cam1 only)."""
    rows = []
    for k in range(n_seq):
        face = astronaut() if k % 2 == 0 else grace_hopper()
        seq = f"S{k + 1:03d}/001"
        box = Box(20, 0, 220)
        for i, f in enumerate(moving(face, n_frames, step=3)):
            write_rgb(root / seq / "cam1" / f"img_{i + 1:03d}.png", crop_square(f, box, S))
        rows.append({"dataset": "ck", "subject": f"S{k + 1:03d}", "sequence": "001", "label": "anger",
                     "label_code": 1, "pose": "nothing", "root": "../src", "frontal": "", "nonfrontal": "",
                     "video": "", "n_frames": n_frames, "cam1_dir": f"{seq}/cam1", "cam2_dir": "",
                     "box_cam1": format_box(box), "box_cam2": ""})
    write_csv(root / "crops.csv", CROPS_COLUMNS, rows)
    write_csv(root / "errors.csv", ERRORS_COLUMNS, [{"dataset": "ck", "subject": "S099", "sequence": "001",
                                                     "file": "x.png", "reason": "no face found"}])
    return root


def test_deterministic_for_a_seed_and_different_across_seeds(tmp_path):
    src = frontal_crops(tmp_path / "frontal")
    p = params_of(AugmentParams, "augment", seed=3)
    assert augment_dataset(src, tmp_path / "a", p, progress=False)["augmented"] == 3
    augment_dataset(src, tmp_path / "b", p, progress=False)
    augment_dataset(src, tmp_path / "c", params_of(AugmentParams, "augment", seed=4), progress=False)
    a, b, c = (tree_digest(tmp_path / x) for x in "abc")
    assert a == b
    cam2 = [k for k in a if "/cam2/" in k]
    assert len(cam2) == 9 and all(a[k] != c[k] for k in cam2)
    for k in [k for k in a if "/cam1/" in k]:  # the originals are the frontal ground truth, untouched
        assert a[k] == (src / k).read_bytes()
    draws = [json.loads((tmp_path / "a" / f"S{i:03d}/001/augment.json").read_text())["draw"] for i in (1, 2, 3)]
    assert len({d["yaw_deg"] for d in draws}) == 3  # one draw per sequence, not one per dataset
    for d in draws:
        assert -15 <= d["roll_deg"] <= 15 and -30 <= d["yaw_deg"] <= 30 and -20 <= d["pitch_deg"] <= 20
        assert 0 <= d["noise_sigma"] <= 4
    rows = read_csv(tmp_path / "a" / "crops.csv", CROPS_COLUMNS)
    assert [(r["pose"], r["cam2_dir"], r["box_cam2"]) for r in rows][0] == ("augmented", "S001/001/cam2", "20 0 220")
    assert rows[0]["root"] == "../src"
    assert read_csv(tmp_path / "a" / "errors.csv", ERRORS_COLUMNS)[0]["subject"] == "S099"  # crop's errors kept


def test_one_warp_for_all_frames_of_a_sequence(tmp_path):
    src = frontal_crops(tmp_path / "frontal", n_seq=1)
    augment_dataset(src, tmp_path / "out", params_of(AugmentParams, "augment", noise_sigma=(0.0, 0.0)), progress=False)
    m = json.loads((tmp_path / "out/S001/001/augment.json").read_text())
    h = np.array(m["homography"])
    assert not np.allclose(h, np.eye(3))
    rng = np.random.default_rng(0)
    for i in (1, 2, 3):
        f = f"S001/001/cam{{}}/img_{i:03d}.png"
        expected = aug_mod.augment_frame(read_rgb(src / f.format(1)), h, 0.0, rng)
        assert np.array_equal(read_rgb(tmp_path / "out" / f.format(2)), expected)
    # The draw depends on the seed and the sequence's name only, not on the other sequences.
    r1 = sequence_rng(0, "S001", "001").uniform(size=3)
    assert np.array_equal(r1, sequence_rng(0, "S001", "001").uniform(size=3))
    assert not np.array_equal(r1, sequence_rng(0, "S001", "002").uniform(size=3))


def test_bad_crop_is_reported_and_the_rest_written(tmp_path):
    src = frontal_crops(tmp_path / "frontal")
    (src / "S002/001/cam1/img_002.png").write_bytes(b"not a png")
    (src / "S003/001/cam1/img_003.png").unlink()
    counts = augment_dataset(src, tmp_path / "out", params_of(AugmentParams, "augment"), progress=False)
    assert (counts["augmented"], counts["error"]) == (1, 2)
    errors = {e["subject"]: e for e in read_csv(tmp_path / "out/errors.csv", ERRORS_COLUMNS)}
    assert errors["S002"]["file"].endswith("S002/001/cam1/img_002.png") and "unreadable" in errors["S002"]["reason"]
    assert errors["S003"]["file"].endswith("S003/001/cam1") and "has 2 crops" in errors["S003"]["reason"]
    assert [r["subject"] for r in read_csv(tmp_path / "out/crops.csv", CROPS_COLUMNS)] == ["S001"]
    assert not (tmp_path / "out/S002").exists() and len(list((tmp_path / "out/S001/001/cam2").iterdir())) == 3


@pytest.mark.parametrize("in_place", [False, True])
def test_killed_run_resumes_to_the_same_output(tmp_path, monkeypatch, in_place):
    whole = tmp_path / "whole"
    augment_dataset(frontal_crops(tmp_path / "src1"), whole if not in_place else tmp_path / "src1",
                    params_of(AugmentParams, "augment"), progress=False)
    src = frontal_crops(tmp_path / "src2")
    out = src if in_place else tmp_path / "resumed"
    real_write, calls = aug_mod.write_png, []

    def dying_write(path, rgb):
        calls.append(path)
        if len(calls) == 5:  # S001 done, killed inside S002
            raise KeyboardInterrupt
        real_write(path, rgb)

    monkeypatch.setattr(aug_mod, "write_png", dying_write)
    with pytest.raises(KeyboardInterrupt):
        augment_dataset(src, out, params_of(AugmentParams, "augment"), progress=False)
    assert (out / "S001/001/augment.json").is_file() and not (out / "S002/001/augment.json").exists()
    monkeypatch.setattr(aug_mod, "write_png", real_write)
    counts = augment_dataset(src, out, params_of(AugmentParams, "augment"), progress=False)
    assert (counts["reused"], counts["augmented"]) == (1, 2)
    assert comparable(tmp_path / "src1" if in_place else whole) == comparable(out)


def comparable(root: Path) -> dict:
    """A folder's files, less what names the source copy (its path, in augment_params.json); the markers'
    fingerprints hash the frames' content, not their mtimes, so they stay in the comparison."""
    return {k: v for k, v in tree_digest(root).items() if k != "augment_params.json"}


def test_paired_rows_pass_through_and_params_are_checked(tmp_path):
    src = frontal_crops(tmp_path / "frontal", n_seq=2)
    rows = read_csv(src / "crops.csv", CROPS_COLUMNS)
    (src / "S002/001/cam2").mkdir()
    for f in (src / "S002/001/cam1").iterdir():
        (src / "S002/001/cam2" / f.name).write_bytes(f.read_bytes())
    rows[1].update(cam2_dir="S002/001/cam2", box_cam2="1 2 3", pose="yaw")
    write_csv(src / "crops.csv", CROPS_COLUMNS, rows)
    counts = augment_dataset(src, tmp_path / "out", params_of(AugmentParams, "augment"), progress=False)
    assert (counts["augmented"], counts["paired"]) == (1, 1)
    out_rows = read_csv(tmp_path / "out/crops.csv", CROPS_COLUMNS)
    assert (out_rows[1]["pose"], out_rows[1]["box_cam2"]) == ("yaw", "1 2 3")
    assert tree_digest(tmp_path / "out/S002") == tree_digest(src / "S002")
    with pytest.raises(EmoganError, match="yaw_deg must be a"):
        augment_dataset(src, tmp_path / "x", params_of(AugmentParams, "augment", yaw_deg=(10.0, -10.0)), progress=False)


def test_ckplus_to_crop_to_augment_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for k, face in enumerate((astronaut(), grace_hopper())):
        sub = f"S{k + 5:03d}"
        for i, f in enumerate(moving(face, 3)):
            write_rgb(Path(f"ck/cohn-kanade-images/{sub}/001/{sub}_001_{i + 1:08d}.png"), f)
        Path(f"ck/Emotion/{sub}/001").mkdir(parents=True)
        Path(f"ck/Emotion/{sub}/001/{sub}_001_00000003_emotion.txt").write_text(f"{5.0 + k:.7e}\n")
    write_params(Path("params.yaml"), paths={"manifests": "m", "crops": "crops"}, crop={"size": 48, "workers": 1},
                 augment={"seed": 9})
    run = CliRunner().invoke
    assert run(app, ["manifest", "ck", "--format", "ckplus", "--dataset", "ck"]).exit_code == 0
    res = run(app, ["crop", "m/ck.csv", "--out", "frontal/ck"])
    assert res.exit_code == 0, res.output
    res = run(app, ["augment", "frontal/ck", "--out", "crops/ck"])
    assert res.exit_code == 0 and "2 augmented" in res.output, res.output
    rows = read_csv(Path("crops/ck/crops.csv"), CROPS_COLUMNS)
    assert [(r["label"], r["pose"]) for r in rows] == [("happiness", "augmented"), ("sadness", "augmented")]
    assert read_rgb(Path("crops/ck") / rows[0]["cam2_dir"] / "img_003.png").shape == (48, 48, 3)
    assert json.loads(Path("crops/ck/S005/001/augment.json").read_text())["seed"] == 9
    res = run(app, ["augment", "frontal/ck"])  # in place
    assert res.exit_code == 0 and Path("frontal/ck/S006/001/cam2/img_001.png").is_file()
    assert read_csv(Path("frontal/ck/crops.csv"), CROPS_COLUMNS)[1]["cam2_dir"] == "S006/001/cam2"
