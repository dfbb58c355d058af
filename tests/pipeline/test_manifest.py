"""The manifest stage: each adapter on tiny frames laid out exactly like its real dataset."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.adapters.common import ManifestParams
from emogan.cli import app
from pipeline.errors import EmoganError
from pipeline.manifest import MANIFEST_COLUMNS, build_manifest, read_manifest, resolve_root
from conftest import PARAMS_FILE, params_of

TINY = np.zeros((6, 8, 3), np.uint8)


def touch_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        cv2.imwrite(str(folder / n), TINY)


def by_seq(rows):
    return {(r["subject"], r["sequence"]): r for r in rows}


def make_emotiongan(root: Path, cams=("cam1", "cam2")) -> None:
    imgs = [f"img_{i:03d}.png" for i in (1, 2, 3, 10)]  # img_010 sorts after img_003 either way
    for cam in cams:
        touch_frames(root / cam / "S01" / "001", imgs)
        touch_frames(root / cam / "S01" / "002", imgs[:3])
        touch_frames(root / cam / "S02" / "001", imgs[:2])
    touch_frames(root / cams[0] / "S02" / "002", imgs[:2])  # frontal only: listed, crop reports it


def test_emotiongan_our_labels(tmp_path):
    src = tmp_path / "synth"
    make_emotiongan(src)
    (src / "labels.csv").write_text("subject;sequence;expression;pose;amplitude_deg\n"
                                    "S01;001;happiness;yaw;21.5\nS01;002;neutral;nothing;0\n"
                                    "S02;001;surprise;Diagonal;12\nS09;001;anger;tx;3\n")
    rows = build_manifest(src, "emotiongan", "synth", params_of(ManifestParams, "manifest"))
    seqs = by_seq(rows)
    assert list(seqs) == [("S01", "001"), ("S01", "002"), ("S02", "001"), ("S02", "002")]
    r = seqs[("S01", "001")]
    assert (r["label"], r["label_code"], r["pose"]) == ("happiness", 4, "yaw")
    assert r["frontal"].split("|") == [f"cam1/S01/001/img_{i:03d}.png" for i in (1, 2, 3, 10)]
    assert r["nonfrontal"].split("|") == [f"cam2/S01/001/img_{i:03d}.png" for i in (1, 2, 3, 10)]
    assert r["n_frames"] == 4 and r["video"] == "" and r["dataset"] == "synth"
    assert seqs[("S02", "001")]["pose"] == "diagonal"
    assert (seqs[("S02", "002")]["label_code"], seqs[("S02", "002")]["nonfrontal"]) == (-1, "")
    assert all(set(r) == set(MANIFEST_COLUMNS) for r in rows)


def test_emotiongan_paper_labels_integer_codes(tmp_path):
    src = tmp_path / "snap"
    make_emotiongan(src, cams=("SNAPcam1", "SNAPcam2"))
    # The paper's file: no header, seq ids as integers (its loader zero-pads them to 3 digits).
    (src / "emotions.csv").write_text("S01;1;5\nS01;2;0\nS02;001;6\n")
    p = params_of(ManifestParams, "manifest", labels="emotions.csv", cameras=("SNAPcam1", "SNAPcam2"))
    seqs = by_seq(build_manifest(src, "emotiongan", "snap", p))
    assert seqs[("S01", "001")]["label"] == "sadness" and seqs[("S01", "001")]["label_code"] == 5
    assert seqs[("S01", "002")]["label"] == "neutral"
    assert seqs[("S02", "001")]["label_code"] == 6 and seqs[("S02", "001")]["pose"] == ""
    assert seqs[("S01", "001")]["frontal"].startswith("SNAPcam1/S01/001/")
    # Another integer mapping, when a dataset's codes differ from CLASS_NAMES order.
    p2 = params_of(ManifestParams, "manifest", labels="emotions.csv", cameras=("SNAPcam1", "SNAPcam2"),
                        int_labels=("neutral", "happiness", "sadness", "surprise", "anger", "disgust", "fear"))
    assert by_seq(build_manifest(src, "emotiongan", "snap", p2))[("S01", "001")]["label"] == "disgust"


@pytest.mark.parametrize("text, match", [
    ("S01;001;joyful\n", r"emotions\.csv:1: unknown expression 'joyful'"),
    ("S01;001;9\n", r"emotions\.csv:1: integer label 9"),
    ("S01;001\n", r"emotions\.csv:1: expected at least 3"),
    ("S01;001;1\nS01;1;2\n", r"emotions\.csv:2: sequence S01/1 is labelled twice"),
    ("subject;sequence;expression;pose\nS01;001;anger;sideways\n", r"emotions\.csv:2: unknown pose"),
])
def test_emotiongan_bad_labels_name_the_line(tmp_path, text, match):
    src = tmp_path / "d"
    make_emotiongan(src)
    (src / "emotions.csv").write_text(text)
    with pytest.raises(EmoganError, match=match):
        build_manifest(src, "emotiongan", "d", params_of(ManifestParams, "manifest", labels="emotions.csv"))


def test_emotiongan_missing_labels_file_or_camera(tmp_path):
    src = tmp_path / "d"
    make_emotiongan(src)
    with pytest.raises(EmoganError, match=r"labels\.csv: labels file not found"):
        build_manifest(src, "emotiongan", "d", params_of(ManifestParams, "manifest"))
    rows = build_manifest(src, "emotiongan", "d", params_of(ManifestParams, "manifest", labels=""))
    assert all(r["label_code"] == -1 and r["label"] == "" for r in rows)
    with pytest.raises(EmoganError, match=r"camX: non-frontal camera folder not found"):
        build_manifest(src, "emotiongan", "d", params_of(ManifestParams, "manifest", labels="", cameras=("cam1", "camX")))


def make_ckplus(root: Path) -> None:
    imgs = root / "cohn-kanade-images"
    for sub, seq, n in (("S005", "001", 3), ("S010", "002", 4), ("S011", "001", 2), ("S011", "002", 2),
                        ("S130", "012", 2)):
        touch_frames(imgs / sub / seq, [f"{sub}_{seq}_{i:08d}.png" for i in range(1, n + 1)])
    (imgs / "S005" / "001" / ".DS_Store").write_bytes(b"\0")
    emo = root / "Emotion"
    for sub, seq, last, code in (("S005", "001", 3, "3.0000000e+00"), ("S010", "002", 4, "2.0000000e+00"),
                                 ("S130", "012", 2, "   7.0000000e+00\n")):
        (emo / sub / seq).mkdir(parents=True)
        (emo / sub / seq / f"{sub}_{seq}_{last:08d}_emotion.txt").write_text(code)
    (emo / "S011" / "002").mkdir(parents=True)  # label folder exists but is empty (as in the real set)


def test_ckplus_codes_unlabeled_and_contempt(tmp_path):
    make_ckplus(tmp_path / "CK+")
    seqs = by_seq(build_manifest(tmp_path / "CK+", "ckplus", "ck", params_of(ManifestParams, "manifest")))
    assert list(seqs) == [("S005", "001"), ("S010", "002"), ("S011", "001"), ("S011", "002"), ("S130", "012")]
    s5 = seqs[("S005", "001")]
    assert (s5["label"], s5["label_code"], s5["pose"], s5["nonfrontal"]) == ("disgust", 2, "nothing", "")
    assert s5["frontal"].split("|") == [f"cohn-kanade-images/S005/001/S005_001_{i:08d}.png" for i in (1, 2, 3)]
    assert (seqs[("S130", "012")]["label"], seqs[("S130", "012")]["label_code"]) == ("surprise", 6)
    # contempt: listed, excluded (code -1, name kept); unlabeled: empty label, code -1
    assert (seqs[("S010", "002")]["label"], seqs[("S010", "002")]["label_code"]) == ("contempt", -1)
    for k in (("S011", "001"), ("S011", "002")):
        assert (seqs[k]["label"], seqs[k]["label_code"]) == ("", -1)
    kept = by_seq(build_manifest(tmp_path / "CK+", "ckplus", "ck", params_of(ManifestParams, "manifest", contempt=True)))
    assert kept[("S010", "002")]["label_code"] == 7


def test_ckplus_bad_emotion_file(tmp_path):
    make_ckplus(tmp_path / "CK+")
    bad = tmp_path / "CK+" / "Emotion" / "S005" / "001" / "S005_001_00000003_emotion.txt"
    bad.write_text("happy")
    with pytest.raises(EmoganError, match="S005_001_00000003_emotion.txt: not a CK\\+ emotion file"):
        build_manifest(tmp_path / "CK+", "ckplus", "ck", params_of(ManifestParams, "manifest"))


def make_oulu(root: Path) -> None:
    for spec in ("VL/Strong", "NI/Weak"):
        for sub in ("P001", "P002"):
            for expr in ("Anger", "Happiness"):
                touch_frames(root / "OriginalImg" / spec / sub / expr, [f"{i:03d}.jpeg" for i in range(3)])


def test_oulu_default_subset_and_options(tmp_path):
    make_oulu(tmp_path / "Oulu")
    rows = build_manifest(tmp_path / "Oulu", "oulu", "oulu", params_of(ManifestParams, "manifest"))
    seqs = by_seq(rows)
    assert list(seqs) == [("P001", "VL_Strong_Anger"), ("P001", "VL_Strong_Happiness"),
                          ("P002", "VL_Strong_Anger"), ("P002", "VL_Strong_Happiness")]
    r = seqs[("P002", "VL_Strong_Happiness")]
    assert (r["label"], r["label_code"], r["n_frames"]) == ("happiness", 4, 3)
    assert r["frontal"].split("|")[0] == "OriginalImg/VL/Strong/P002/Happiness/000.jpeg"
    both = build_manifest(tmp_path / "Oulu", "oulu", "oulu", params_of(ManifestParams, "manifest", oulu_subsets=("VL/Strong", "NI/Weak")))
    assert len(both) == 8 and ("P001", "NI_Weak_Anger") in by_seq(both)
    with pytest.raises(EmoganError, match="NI/Dark"):
        build_manifest(tmp_path / "Oulu", "oulu", "oulu", params_of(ManifestParams, "manifest", oulu_subsets=("NI/Dark",)))
    with pytest.raises(EmoganError, match="expected SPECTRUM/LIGHTING"):
        build_manifest(tmp_path / "Oulu", "oulu", "oulu", params_of(ManifestParams, "manifest", oulu_subsets=("VL",)))


def write_tiny_video(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16))
    for i in range(n):
        vw.write(np.full((16, 16, 3), 20 * i, np.uint8))
    vw.release()


def test_videos_adfes_and_mmi_style(tmp_path):
    src = tmp_path / "vids"
    write_tiny_video(src / "F01-Anger-Face Forward.avi", 4)
    write_tiny_video(src / "M02-Joy-Turn Away.avi", 5)
    write_tiny_video(src / "Sessions" / "7" / "S001-002.avi", 3)
    write_tiny_video(src / "Sessions" / "9" / "S003-001.avi", 2)  # not in the CSV: unlabeled
    (src / "labels.csv").write_text("video,label,pose\nF01-Anger-Face Forward.avi,anger,nothing\n"
                                    "M02-Joy-Turn Away.avi,joy,yaw\nSessions/7/S001-002.avi,6,\n")
    seqs = by_seq(build_manifest(src, "videos", "vids", params_of(ManifestParams, "manifest")))
    assert set(seqs) == {("F01", "F01-Anger-Face Forward"), ("M02", "M02-Joy-Turn Away"),
                         ("S001", "S001-002"), ("S003", "S003-001")}
    r = seqs[("F01", "F01-Anger-Face Forward")]
    assert (r["label_code"], r["video"], r["n_frames"], r["frontal"]) == (1, "F01-Anger-Face Forward.avi", 4, "")
    assert (seqs[("M02", "M02-Joy-Turn Away")]["label"], seqs[("M02", "M02-Joy-Turn Away")]["pose"]) == \
        ("happiness", "yaw")
    assert seqs[("S001", "S001-002")]["label"] == "surprise" and seqs[("S001", "S001-002")]["n_frames"] == 3
    assert seqs[("S003", "S003-001")]["label_code"] == -1


def test_videos_csv_needs_columns(tmp_path):
    src = tmp_path / "vids"
    write_tiny_video(src / "a.avi", 2)
    (src / "labels.csv").write_text("file;emotion\na.avi;anger\n")
    with pytest.raises(EmoganError, match=r"labels\.csv:1: the header needs `video` and `label`"):
        build_manifest(src, "videos", "v", params_of(ManifestParams, "manifest"))


def test_cli_writes_manifest_with_portable_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_oulu(Path("data/Oulu"))
    out = Path("data_manifests/oulu_both.csv")
    res = CliRunner().invoke(app, ["manifest", "data/Oulu", "--format", "oulu", "--out", str(out),
                                   "--subset", "VL/Strong", "--subset", "NI/Weak", "--params", str(PARAMS_FILE)])
    assert res.exit_code == 0, res.output
    rows = read_manifest(out)
    assert len(rows) == 8 and rows[0]["dataset"] == "oulu_both"
    assert rows[0]["root"] == "../data/Oulu"  # relative to the manifest's own folder
    assert (resolve_root(out, rows[0]["root"]) / rows[0]["frontal"].split("|")[0]).is_file()
    with out.open() as f:
        assert next(csv.reader(f)) == list(MANIFEST_COLUMNS)
    res = CliRunner().invoke(app, ["manifest", "data/nope", "--format", "oulu", "--out", str(out),
                                   "--params", str(PARAMS_FILE)])
    assert isinstance(res.exception, EmoganError) and "data/nope: dataset folder not found" in str(res.exception)
