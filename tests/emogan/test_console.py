"""`emogan --version/--quiet/--verbose`: mediapipe's and OpenCV's native log lines stay off the console
unless --verbose; --quiet leaves warnings and the result line, no INFO lines and no progress bar."""
from __future__ import annotations

from pathlib import Path

from conftest import PARAMS_FILE, run_emogan, write_params
from face_images import astronaut, grace_hopper, moving, write_rgb

NATIVE_NOISE = ("TensorFlow Lite", "absl::InitializeLog", "inference_feedback_manager")


def _dataset(root: Path) -> Path:
    """One good paired sequence (crop runs mediapipe on it) and one without a face (a warning)."""
    for cam, face in (("cam1", astronaut()), ("cam2", grace_hopper())):
        for i, f in enumerate(moving(face, 2)):
            write_rgb(root / "data" / cam / "S01" / "001" / f"img_{i + 1:03d}.png", f)
        for i in range(2):
            write_rgb(root / "data" / cam / "S02" / "001" / f"img_{i + 1:03d}.png", moving(face, 1)[0] * 0 + 110)
    (root / "data" / "labels.csv").write_text("subject;sequence;expression;pose;amplitude_deg\n"
                                              "S01;001;happiness;tx;0\nS02;001;anger;tx;0\n")
    params = write_params(root / "params.yaml", crop={"size": 40, "workers": 1})
    r = run_emogan("manifest", str(root / "data"), "--format", "emotiongan", "--dataset", "d",
                   "--out", str(root / "d.csv"), "--params", str(params))
    assert r.returncode == 0, r.stderr
    return params


def _crop(root: Path, params: Path, *flags: str):
    return run_emogan(*flags, "crop", str(root / "d.csv"), "--out", str(root / f"crops{len(flags)}{''.join(flags)}"),
                      "--params", str(params))


def test_version():
    r = run_emogan("--version")
    assert r.returncode == 0 and r.stdout.startswith("emogan ")


def test_native_noise_only_with_verbose_and_quiet_keeps_warnings_and_the_result(tmp_path):
    params = _dataset(tmp_path)
    default = _crop(tmp_path, params)
    assert default.returncode == 0, default.stderr
    assert not [n for n in NATIVE_NOISE if n in default.stderr], default.stderr
    assert "1 cropped" in default.stdout and "no face found" in default.stderr

    verbose = _crop(tmp_path, params, "-v")
    assert verbose.returncode == 0
    assert any(n in verbose.stderr for n in NATIVE_NOISE), "mediapipe printed nothing: the test proves nothing"

    quiet = _crop(tmp_path, params, "-q")
    assert quiet.returncode == 0
    assert "1 cropped" in quiet.stdout and "no face found" in quiet.stderr  # warnings and the result stay
    assert "INFO" not in quiet.stderr and "seq/s" not in quiet.stderr       # no INFO lines, no progress bar
    assert not [n for n in NATIVE_NOISE if n in quiet.stderr]


def test_quiet_and_verbose_exclude_each_other():
    r = run_emogan("-q", "-v", "folds", "--help")
    assert r.returncode == 2 and "exclude each other" in r.stderr


def test_synth_runs_no_facemesh_even_verbose(tmp_path):
    """synth reads its photographs' committed FaceMesh fits (pipeline/photo_landmarks.json): mediapipe never
    runs, so not even --verbose shows its lines (issue #14: FaceMesh fits differ between CPUs)."""
    args = ("synth", "--subjects", "1", "--frames", "2", "--size", "128", "--poses", "nothing",
            "--expressions", "happiness", "--params", str(PARAMS_FILE))
    default = run_emogan(*args, "--out", str(tmp_path / "a"))
    assert default.returncode == 0, default.stderr
    assert not [n for n in NATIVE_NOISE if n in default.stderr], default.stderr
    verbose = run_emogan("-v", *args, "--out", str(tmp_path / "b"))
    assert verbose.returncode == 0, verbose.stderr
    assert not [n for n in NATIVE_NOISE if n in verbose.stderr], verbose.stderr
