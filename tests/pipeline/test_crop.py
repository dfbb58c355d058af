"""The crop stage on real face photographs (astronaut, Grace Hopper) composed into dataset layouts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pipeline.crop as crop_mod
from face_images import astronaut, frame, grace_hopper, moving, tree_digest, write_rgb, write_video
from pipeline.adapters.common import ManifestParams
from emogan.cli import app
from pipeline.errors import EmoganError
from pipeline.crop import (
    CROPS_COLUMNS, ERRORS_COLUMNS, Box, CropParams, SequenceError, box_from_detection, crop_dataset, crop_frames,
    crop_square, detect_face_box, parse_box, read_rgb,
)
from pipeline.manifest import MANIFEST_COLUMNS, build_manifest, read_csv, write_csv
from conftest import PARAMS_FILE, params_of, write_params

SMALL = params_of(CropParams, "crop", size=64, workers=1)


def test_detects_the_faces_of_both_photographs():
    a = detect_face_box(astronaut())
    g = detect_face_box(grace_hopper())
    # Face centres (by eye, on the 256-px photos): astronaut ~(113, 60), Grace Hopper ~(133, 114).
    assert abs(a.x + a.side / 2 - 113) < 15 and abs(a.y + a.side / 2 - 60) < 15
    assert abs(g.x + g.side / 2 - 133) < 20 and abs(g.y + g.side / 2 - 114) < 20
    assert 60 < a.side < 140 and 100 < g.side < 230
    # The margin grows the box around the same centre: 1 + 2 * margin times the face size.
    a0 = detect_face_box(astronaut(), margin=0.0)
    assert abs(a.side / a0.side - 1.8) < 0.05
    assert abs((a.x + a.side / 2) - (a0.x + a0.side / 2)) <= 1
    assert detect_face_box(np.full((200, 200, 3), 110, np.uint8)) is None


def test_box_from_detection_squares_on_the_larger_side():
    b = box_from_detection(0.25, 0.5, 0.5, 0.3, 200, 100, margin=0.5)  # face 100 x 30 px at (50, 50)
    assert b == Box(0, -35, 200)  # centre (100, 65), side 100 * (1 + 2 * 0.5)


def test_snapped_boxes_ignore_sub_pixel_detector_differences():
    """Two CPUs' detections of one face differ in the last digits: on crop.snap_px's grid they give one box."""
    rng = np.random.default_rng(0)
    same = 0
    for _ in range(200):
        xmin, ymin, w = rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.4)
        d = rng.uniform(-1, 1, 3) * 2e-4   # 0.1 px at 512 px: what FaceDetection's float paths differ by
        a = box_from_detection(xmin, ymin, w, w, 512, 512, 0.4, snap=4)
        b = box_from_detection(xmin + d[0], ymin + d[1], w + d[2], w + d[2], 512, 512, 0.4, snap=4)
        assert a.x % 4 == a.y % 4 == a.side % 4 == 0
        same += a == b
        raw_a = box_from_detection(xmin, ymin, w, w, 512, 512, 0.4)
        assert abs(raw_a.side - a.side) <= 2 and abs(raw_a.x - a.x) <= 3   # the box barely moves
    assert same >= 180   # unsnapped, a 0.1 px difference changes ~30% of the boxes (3 rounded numbers)


def test_crop_square_pads_instead_of_shifting():
    yy, xx = np.mgrid[0:50, 0:60]
    img = np.stack([yy, xx, np.full_like(xx, 200)], axis=2).astype(np.uint8)
    out = crop_square(img, Box(-10, -5, 40), 40, pad_value=7)
    assert out.shape == (40, 40, 3)
    assert np.array_equal(out[5:, 10:], img[0:35, 0:30])  # content stays where the box puts it
    assert (out[:5] == 7).all() and (out[:, :10] == 7).all()
    out = crop_square(img, Box(40, 30, 30), 30)  # past the bottom-right corner
    assert np.array_equal(out[:20, :20], img[30:50, 40:60]) and (out[20:] == 0).all() and (out[:, 20:] == 0).all()
    assert (crop_square(img, Box(100, 100, 10), 16) == 0).all()
    assert crop_square(img, Box(0, 0, 50), 25).shape == (25, 25, 3)


def test_crop_frames_uses_the_first_frames_box_for_all():
    frames = [(f"f{i}", f) for i, f in enumerate(moving(astronaut(), 3, step=10))]
    p = params_of(CropParams, "crop", size=32, workers=1)
    out = list(crop_frames(frames, p))
    box = detect_face_box(frames[0][1], p.margin, p.model_selection, p.min_confidence, p.snap_px)
    assert p.snap_px > 1 and box.side % p.snap_px == 0 and box != detect_face_box(frames[0][1])
    assert [b for b, _ in out] == [box] * 3
    assert all(np.array_equal(c, crop_square(f, box, 32)) for (_, c), (_, f) in zip(out, frames))
    with pytest.raises(SequenceError, match="f1: frame size 10x10 differs"):
        list(crop_frames([frames[0], ("f1", np.zeros((10, 10, 3), np.uint8))], params_of(CropParams, "crop", workers=1)))


def write_seq(root: Path, cam: str, sub: str, seq: str, frames: list[np.ndarray]) -> list[Path]:
    return [write_rgb(root / cam / sub / seq / f"img_{i + 1:03d}.png", f) for i, f in enumerate(frames)]


def paired_dataset(root: Path) -> Path:
    """Two good sequences and one of each bad input; returns the manifest."""
    write_seq(root, "cam1", "S01", "001", moving(astronaut(), 3))
    write_seq(root, "cam2", "S01", "001", moving(grace_hopper(), 3, step=6))
    write_seq(root, "cam1", "S01", "002", moving(grace_hopper(), 2))
    write_seq(root, "cam2", "S01", "002", moving(astronaut(), 2))
    blank = [np.full((288, 320, 3), 110, np.uint8)] * 2
    write_seq(root, "cam1", "S02", "001", blank)                       # no face
    write_seq(root, "cam2", "S02", "001", moving(astronaut(), 2))
    write_seq(root, "cam1", "S02", "002", moving(astronaut(), 3))
    bad = write_seq(root, "cam2", "S02", "002", moving(astronaut(), 3))
    bad[2].write_bytes(b"\x89PNG\r\n\x1a\n truncated")                  # unreadable frame
    write_seq(root, "cam1", "S03", "001", moving(astronaut(), 3))
    write_seq(root, "cam2", "S03", "001", moving(astronaut(), 2))      # frame-count mismatch
    write_seq(root, "cam1", "S03", "002", moving(astronaut(), 2))      # no cam2 at all
    (root / "labels.csv").write_text("subject;sequence;expression;pose;amplitude_deg\nS01;001;happiness;tx;0\n")
    rows = build_manifest(root, "emotiongan", "pairs", params_of(ManifestParams, "manifest"), root="pairs")
    manifest = root.parent / "pairs.csv"
    write_csv(manifest, MANIFEST_COLUMNS, rows)
    return manifest


def test_one_box_per_sequence_and_every_bad_input_reported(tmp_path):
    manifest = paired_dataset(tmp_path / "pairs")
    out = tmp_path / "crops"
    counts = crop_dataset(manifest, out, SMALL, progress=False)
    assert counts == {"cropped": 2, "reused": 0, "error": 4}
    errors = {(e["subject"], e["sequence"]): e for e in read_csv(out / "errors.csv", ERRORS_COLUMNS)}
    assert set(errors) == {("S02", "001"), ("S02", "002"), ("S03", "001"), ("S03", "002")}
    assert errors[("S02", "001")]["file"].endswith("cam1/S02/001/img_001.png")
    assert "no face" in errors[("S02", "001")]["reason"]
    assert errors[("S02", "002")]["file"].endswith("cam2/S02/002/img_003.png")
    assert "unreadable" in errors[("S02", "002")]["reason"]
    assert "frame count mismatch" in errors[("S03", "001")]["reason"] and "3" in errors[("S03", "001")]["reason"]
    assert errors[("S03", "001")]["file"].endswith("cam2/S03/001")
    assert "frame count mismatch" in errors[("S03", "002")]["reason"]
    assert not (out / "S02").exists() and not (out / "S03").exists() and not (out / ".partial").exists()

    crops = {(r["subject"], r["sequence"]): r for r in read_csv(out / "crops.csv", CROPS_COLUMNS)}
    assert list(crops) == [("S01", "001"), ("S01", "002")]
    r = crops[("S01", "001")]
    assert (r["cam1_dir"], r["cam2_dir"], r["n_frames"], r["label"]) == ("S01/001/cam1", "S01/001/cam2", "3", "happiness")
    root = tmp_path / "pairs"
    for cam, col, lst in (("cam1", "box_cam1", "frontal"), ("cam2", "box_cam2", "nonfrontal")):
        box = parse_box(r[col])
        marker = json.loads((out / "S01/001/crop.json").read_text())
        assert marker["boxes"][cam] == list(box)
        sources = [root / f for f in r[lst].split("|")]
        written = sorted((out / r[f"{cam}_dir"]).glob("img_*.png"))
        assert [p.name for p in written] == ["img_001.png", "img_002.png", "img_003.png"]
        for src, dst in zip(sources, written):
            # every frame is cut with the neutral frame's box, although the face has moved
            assert np.array_equal(read_rgb(dst), crop_square(read_rgb(src), box, 64))
        assert detect_face_box(read_rgb(sources[-1])) != box
    assert parse_box(crops[("S01", "001")]["box_cam1"]) != parse_box(crops[("S01", "001")]["box_cam2"])
    assert crops[("S01", "001")]["root"] == "../pairs"


def test_killed_run_resumes_to_the_same_output(tmp_path, monkeypatch):
    manifest = paired_dataset(tmp_path / "pairs")
    whole, resumed = tmp_path / "a", tmp_path / "b"
    crop_dataset(manifest, whole, SMALL, progress=False)

    # A real SIGKILL (no cleanup runs) in a child process, at a fixed point: the 8th crop written,
    # i.e. S01/001 finished (6 crops) and S01/002 half done.
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import pipeline.crop as c\n"
        "from pipeline.params import load_params, section\n"
        "real, n = c.write_png, [0]\n"
        "def dying(path, rgb):\n"
        "    n[0] += 1\n"
        "    if n[0] == 8:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(path, rgb)\n"
        "c.write_png = dying\n"
        f"c.crop_dataset(Path({str(manifest)!r}), Path({str(resumed)!r}), "
        f"section(load_params({str(PARAMS_FILE)!r}), 'crop', c.CropParams, size=64, workers=1), progress=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (resumed / "S01/001/crop.json").is_file() and not (resumed / "S01/002").exists()
    assert (resumed / ".partial/S01/002/cam1").is_dir() and not (resumed / "crops.csv").exists()

    detected = []
    real_detect = crop_mod.detect_face_box
    monkeypatch.setattr(crop_mod, "detect_face_box", lambda img, *a: detected.append(1) or real_detect(img, *a))
    counts = crop_dataset(manifest, resumed, SMALL, progress=False)
    assert counts["reused"] == 1 and counts["cropped"] == 1
    assert len(detected) == 2 + 2 + 1  # S01/002 and S02/002: both cams; S02/001: cam1 fails; S03: never
    assert tree_digest(whole) == tree_digest(resumed)


def test_changed_params_or_source_redo_the_sequence(tmp_path):
    manifest = paired_dataset(tmp_path / "pairs")
    out = tmp_path / "crops"
    crop_dataset(manifest, out, SMALL, progress=False)
    assert crop_dataset(manifest, out, SMALL, progress=False)["reused"] == 2
    counts = crop_dataset(manifest, out, params_of(CropParams, "crop", size=48, workers=1), progress=False)
    assert counts["cropped"] == 2 and read_rgb(out / "S01/001/cam1/img_002.png").shape == (48, 48, 3)
    src = tmp_path / "pairs/cam1/S01/002/img_002.png"
    write_rgb(src, frame(grace_hopper(), 30, 0))
    counts = crop_dataset(manifest, out, params_of(CropParams, "crop", size=48, workers=1), progress=False)
    assert (counts["reused"], counts["cropped"]) == (1, 1)


def test_output_does_not_depend_on_source_mtimes(tmp_path):
    """The crop.json markers are part of the output (hashed into dvc.lock): the same source bytes with
    other mtimes (a fresh clone, another machine) must give a byte-identical output, and be reused."""
    manifest = paired_dataset(tmp_path / "pairs")
    out = tmp_path / "crops"
    crop_dataset(manifest, out, SMALL, progress=False)
    before = tree_digest(out)
    for f in (tmp_path / "pairs").rglob("*.png"):
        os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert crop_dataset(manifest, out, SMALL, progress=False)["reused"] == 2
    assert tree_digest(out) == before


def test_two_spawned_workers_match_the_serial_run(tmp_path):
    manifest = paired_dataset(tmp_path / "pairs")
    crop_dataset(manifest, tmp_path / "serial", SMALL, progress=False)
    crop_dataset(manifest, tmp_path / "parallel", params_of(CropParams, "crop", size=64, workers=2), progress=False)
    assert tree_digest(tmp_path / "serial") == tree_digest(tmp_path / "parallel")


def test_frontal_only_videos_and_gray(tmp_path):
    src = tmp_path / "vids"
    write_video(src / "F01-Happy-Face Forward.avi", moving(astronaut(), 4))
    write_video(src / "F02-Sad-Face Forward.avi", [np.zeros((64, 64, 3), np.uint8)] * 2)  # no face
    (src / "broken.avi").write_bytes(b"RIFF....AVI not really")
    (src / "labels.csv").write_text("video;label\nF01-Happy-Face Forward.avi;happy\nF02-Sad-Face Forward.avi;sad\n")
    manifest = tmp_path / "vids.csv"
    write_csv(manifest, MANIFEST_COLUMNS, build_manifest(src, "videos", "vids", params_of(ManifestParams, "manifest"), root="vids"))
    out = tmp_path / "crops"
    assert crop_dataset(manifest, out, params_of(CropParams, "crop", size=64, gray=True, workers=1), progress=False)["cropped"] == 1
    (row,) = read_csv(out / "crops.csv", CROPS_COLUMNS)
    assert (row["subject"], row["n_frames"], row["cam2_dir"], row["box_cam2"]) == ("F01", "4", "", "")
    first = read_rgb(out / "F01/F01-Happy-Face Forward/cam1/img_001.png")
    assert first.shape == (64, 64, 3) and (first[..., 0] == first[..., 2]).all()
    errors = {e["subject"]: e for e in read_csv(out / "errors.csv", ERRORS_COLUMNS)}
    assert "no face" in errors["F02"]["reason"]
    assert errors["broken"]["file"].endswith("broken.avi") and "unreadable video" in errors["broken"]["reason"]


def test_nothing_cropped_is_an_error_naming_the_cause(tmp_path):
    root = tmp_path / "blank"
    write_seq(root, "cam1", "S01", "001", [np.full((64, 64, 3), 90, np.uint8)] * 2)
    manifest = tmp_path / "blank.csv"
    write_csv(manifest, MANIFEST_COLUMNS, build_manifest(root, "emotiongan", "blank",
                                                         params_of(ManifestParams, "manifest", labels="", cameras=("cam1", "cam1")),
                                                         root="blank"))
    with pytest.raises(EmoganError, match=r"no sequence could be cropped .*img_001.png: no face found"):
        crop_dataset(manifest, tmp_path / "out", SMALL, progress=False)
    assert len(read_csv(tmp_path / "out/errors.csv", ERRORS_COLUMNS)) == 1


def test_cli_reads_params_and_flags(tmp_path):
    manifest = paired_dataset(tmp_path / "pairs")
    params = tmp_path / "params.yaml"
    write_params(params, crop={"size": 40, "margin": 0.2, "workers": 1})
    out = tmp_path / "c"
    res = CliRunner().invoke(app, ["crop", str(manifest), "--out", str(out), "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "2 cropped" in res.output and "4 skipped" in res.output
    assert read_rgb(out / "S01/001/cam1/img_001.png").shape == (40, 40, 3)
    assert json.loads((out / "crop_params.json").read_text())["params"]["margin"] == 0.2
    res = CliRunner().invoke(app, ["crop", str(manifest), "--out", str(out), "--params", str(params), "--size", "32"])
    assert res.exit_code == 0 and read_rgb(out / "S01/001/cam1/img_001.png").shape == (32, 32, 3)
    params.write_text("crop:\n  sise: 40\n")
    res = CliRunner().invoke(app, ["crop", str(manifest), "--out", str(out), "--params", str(params)])
    assert "unknown key(s) sise" in str(res.exception)
