"""pipeline/flow.py: Farneback flows in source pixels, pairs, bad input, resumption, dask parity."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from flowdata import make_crops, texture, translate
from pipeline import farneback as fb
from pipeline import flow as fl
from pipeline import store as st
from emogan.cli import app
from pipeline.errors import EmoganError
from pipeline.params import ParamsError, as_dict, load_params
from pipeline.schema import STRATEGY_NAMES
from conftest import ROOT, params_of, write_params

P = params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=2)


def test_flow_of_a_translation_recovers_it():
    img = cv2.cvtColor(texture(128), cv2.COLOR_BGR2GRAY)
    moved = translate(img, 2.5, -1.5)
    f = fb.farneback_px(img, moved, params_of(fl.FlowParams, "flow"))
    assert f.shape == (128, 128, 2) and f.dtype == np.float32
    inner = f[24:-24, 24:-24]  # away from the reflected borders
    np.testing.assert_allclose(np.median(inner.reshape(-1, 2), axis=0), [2.5, -1.5], atol=0.1)


def test_downsampling_averages_vectors_not_angles():
    # unit vectors at +10 and -10 degrees from the x axis: their mean points along +x;
    # averaging angles in [0, 2pi) (10 and 350 degrees) would point along -x instead
    a = np.deg2rad(10)
    f = np.zeros((2, 2, 2), np.float32)
    f[0, :] = (np.cos(a), np.sin(a))
    f[1, :] = (np.cos(a), -np.sin(a))
    d = fb.downsample_flow_px(f, 1)
    np.testing.assert_allclose(d[:, 0, 0], [np.cos(a), 0], atol=1e-6)


def test_stage_keeps_source_pixels_after_downsampling(tmp_path):
    make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=64, shift1=(1.0, 0.5), shift2=(-0.75, 1.0))
    fl.compute_flows(tmp_path / "crops", tmp_path / "f.zarr", P, progress=False)
    g = fl.open_flows(tmp_path / "f.zarr")
    step = g["step"][...]
    inner = (slice(None), slice(None), slice(8, 24), slice(8, 24))
    target = g["flow_target_px"][inner].astype(np.float64).mean(axis=(2, 3))
    source = g["flow_input_px"][inner].astype(np.float64).mean(axis=(2, 3))
    # 64 px crops stored at 32: a shift of `step` frames x 1 px is still `step` px, not step / 2
    np.testing.assert_allclose(target, step[:, None] * [1.0, 0.5], atol=0.1)
    np.testing.assert_allclose(source, step[:, None] * [-0.75, 1.0], atol=0.12)
    assert g["flow_target_px"].dtype == np.float16 and g.attrs["source_size"] == 64
    # images: frontal t and t+dt, non-frontal t+dt, RGB channels-first at the model size
    crops = tmp_path / "crops" / "S001" / "001"
    t2 = g["frame_t"][0] + step[0]
    want = cv2.resize(cv2.imread(str(crops / "cam2" / f"img_{t2 + 1:03d}.png")), (32, 32),
                      interpolation=cv2.INTER_AREA)[:, :, ::-1].transpose(2, 0, 1)
    np.testing.assert_array_equal(g["input_image"][0], want)


def test_frame_pairs():
    pairs = fb.frame_pairs(5, ["neutral_apex", "frame_to_frame"], 2)
    apex, f2f = STRATEGY_NAMES.index("neutral_apex"), STRATEGY_NAMES.index("frame_to_frame")
    assert pairs[0] == (apex, 4, 0, 4)
    assert [(q.t, q.t2) for q in pairs[1:]] == [(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (1, 3), (2, 4)]
    assert all(q.strategy == f2f and q.t2 - q.t == q.step for q in pairs[1:])
    assert len(fb.frame_pairs(3, ["frame_to_frame"], 10)) == 3  # steps stop at n_frames - 1


def test_rows_follow_the_manifest(tmp_path):
    make_crops(tmp_path / "crops", n_sequences=3, frames=3, side=64, subjects=2)
    fl.compute_flows(tmp_path / "crops", tmp_path / "f.zarr", P, progress=False)
    g = fl.open_flows(tmp_path / "f.zarr")
    seq = g["sequence"][...]
    assert list(seq) == sorted(seq) and set(seq) == {0, 1, 2}
    assert g.attrs["sequence_ids"] == ["S001/001", "S002/002", "S001/003"]
    assert g.attrs["subject_ids"] == ["S001", "S002"]
    np.testing.assert_array_equal(np.unique(g["subject"][...][seq == 1]), [1])
    np.testing.assert_array_equal(np.unique(g["label"][...][seq == 2]), [2])
    assert not (tmp_path / "f.zarr.parts").exists()  # parts are cleared after a complete run


def test_bad_input_is_reported_and_the_rest_is_processed(tmp_path):
    crops = make_crops(tmp_path / "crops", n_sequences=5, frames=3, side=64, subjects=5)
    table = (crops / "crops.csv").read_text().replace("S005/005/cam2", "")  # frontal-only, not augmented
    (crops / "crops.csv").write_text(table)
    corrupt = crops / "S002" / "002" / "cam2" / "img_002.png"
    corrupt.write_bytes(b"not a png")
    missing_dir = crops / "S003" / "003" / "cam2"
    for q in missing_dir.iterdir():
        q.unlink()
    missing_dir.rmdir()
    (crops / "S004" / "004" / "cam1" / "img_003.png").unlink()
    params = tmp_path / "params.yaml"
    write_params(params, flow={"size": 32, "workers": 2})
    result = CliRunner().invoke(app, ["flow", str(crops), "-o", str(tmp_path / "f.zarr"),
                                      "--params", str(params), "--workers", "0", "--max-step", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "skipped S002/002" in result.output and str(corrupt) in result.output
    assert "unreadable image" in result.output
    g = fl.open_flows(tmp_path / "f.zarr")
    assert set(g["sequence"][...]) == {0}
    errors = g.attrs["errors"]
    assert [(e["subject"], e["file"]) for e in errors] == [
        ("S002", str(corrupt)), ("S003", str(missing_dir)), ("S004", str(crops / "S004" / "004" / "cam2")),
        ("S005", str(crops / "crops.csv"))]
    assert "missing camera directory" in errors[1]["reason"] and "frames differ" in errors[2]["reason"]
    assert "line 6: no non-frontal camera" in errors[3]["reason"]


def test_no_crops_table_or_nothing_usable_is_an_error(tmp_path):
    with pytest.raises(EmoganError, match=str(tmp_path / "crops.csv")):
        fl.compute_flows(tmp_path, tmp_path / "f.zarr", P, progress=False)
    crops = make_crops(tmp_path / "crops", n_sequences=1, frames=2, side=64)
    (crops / "S001" / "001" / "cam1" / "img_001.png").write_bytes(b"")
    with pytest.raises(EmoganError, match="no sequence could be processed.*img_001.png"):
        fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)


def test_params_are_validated_with_the_file_named(tmp_path):
    p = tmp_path / "params.yaml"
    write_params(p, flow={"poly_n": 6})
    with pytest.raises(ParamsError, match=r"params.yaml.*flow.*poly_n"):
        fl.load_flow_params(load_params(p))
    write_params(p, flow={"strategies": ["apex"]})
    with pytest.raises(ParamsError, match="strategies"):
        fl.load_flow_params(load_params(p))
    write_params(p, flow={"max_step": 3, "workers": 4})
    q = fl.load_flow_params(load_params(p), workers=0)
    assert (q.max_step, q.workers) == (3, 0) and "workers" not in q.recorded()


@pytest.fixture(scope="module")
def crops5(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return make_crops(root / "crops", n_sequences=5, frames=4, side=64, subjects=3)


@pytest.fixture(scope="module")
def reference(crops5, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "f.zarr"
    fl.compute_flows(crops5, out, P, progress=False)
    return st.tree_sha256(out)


def test_interrupted_run_resumes_to_the_same_store(crops5, reference, tmp_path, monkeypatch):
    out = tmp_path / "f.zarr"
    calls = []
    real = fl.run_sequence_task

    def interrupt_after_two(task, cv2_threads=1):
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does between two sequences
        calls.append(task.index)
        return real(task, cv2_threads)

    monkeypatch.setattr(fl, "run_sequence_task", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        fl.compute_flows(crops5, out, P, progress=False)
    assert not out.exists() and len(list((tmp_path / "f.zarr.parts").glob("*.npz"))) == 2
    monkeypatch.setattr(fl, "run_sequence_task", real)
    report = fl.compute_flows(crops5, out, P, progress=False)
    assert report.n_resumed == 2 and report.n_sequences == 5
    assert st.tree_sha256(out) == reference


def test_killed_process_resumes_to_the_same_store(crops5, reference, tmp_path):
    out = tmp_path / "f.zarr"
    # A stray half-written part from the killed process must not be taken as done.
    script = textwrap.dedent(f"""
        import os, signal
        from pipeline import flow as fl
        real, done = fl.run_sequence_task, []
        def run(task, cv2_threads=1):
            res = real(task, cv2_threads)
            done.append(task.index)
            if len(done) == 3:
                open(task.part + ".tmp-999", "wb").write(b"partial")
                os.kill(os.getpid(), signal.SIGKILL)
            return res
        fl.run_sequence_task = run
        P = fl.FlowParams(**{as_dict(P)!r})
        fl.compute_flows({str(crops5)!r}, {str(out)!r}, P, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not out.exists()
    report = fl.compute_flows(crops5, out, P, progress=False)
    assert report.n_resumed == 3
    assert st.tree_sha256(out) == reference


def test_changed_params_do_not_reuse_parts(crops5, tmp_path, monkeypatch):
    out = tmp_path / "f.zarr"
    real = fl.run_sequence_task
    n = []

    def stop_after_one(task, cv2_threads=1):
        if n:
            raise KeyboardInterrupt
        n.append(1)
        return real(task, cv2_threads)

    monkeypatch.setattr(fl, "run_sequence_task", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        fl.compute_flows(crops5, out, P, progress=False)
    monkeypatch.setattr(fl, "run_sequence_task", real)
    report = fl.compute_flows(crops5, out, params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=1), progress=False)
    assert report.n_resumed == 0
    assert set(fl.open_flows(out)["step"][...]) == {1, 3}  # apex (4 frames) and step 1 only


def test_two_dask_workers_give_the_same_store(crops5, reference, tmp_path):
    out = tmp_path / "f.zarr"
    p = params_of(fl.FlowParams, "flow", size=32, workers=2, max_step=2)
    report = fl.compute_flows(crops5, out, p, progress=False)
    assert report.n_sequences == 5 and report.worker_pids and os.getpid() not in report.worker_pids
    assert st.tree_sha256(out) == reference
    assert os.environ.get("OMP_NUM_THREADS") == "1"  # conftest: workers inherit one thread


def test_unknown_pose_and_extra_class_reach_a_valid_store(tmp_path):
    import csv

    from pipeline.normalize import NormalizeParams, normalize_store

    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=2, side=64)
    with open(crops / "crops.csv") as f:
        rows = list(csv.DictReader(f))
    rows[0].update(pose="")                                  # the source gives no pose
    rows[1].update(label="contempt", label_code="7")         # CK+ contempt kept on request
    with open(crops / "crops.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)
    attrs = normalize_store(tmp_path / "f.zarr", tmp_path / "s.zarr", params_of(NormalizeParams, "normalize", size=32, representation="polar"))
    g = st.open_store(tmp_path / "s.zarr")
    assert attrs["extra_class_names"] == ["contempt"]
    seq = g["sequence"][...]
    assert set(g["pose"][...][seq == 0]) == {st.UNKNOWN_POSE} and set(g["label"][...][seq == 1]) == {7}


_FLOW_BYTES = textwrap.dedent("""
    import hashlib, sys
    import cv2
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    from conftest import params_of
    from flowdata import texture, translate
    from pipeline import farneback as fb
    from pipeline import flow as fl
    cv2.setNumThreads(1)
    a = cv2.cvtColor(texture(256), cv2.COLOR_BGR2GRAY)
    b = translate(a, 3.3, -1.7)
    print(hashlib.sha256(fb.farneback_px(a, b, params_of(fl.FlowParams, "flow")).tobytes()).hexdigest())
""")


def _flow_bytes(env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra}
    r = subprocess.run([sys.executable, "-c", _FLOW_BYTES, str(ROOT)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_farneback_gives_the_same_bytes_with_or_without_avx512():
    """x86-64 CPUs differ mostly in AVX-512 (docs/EVALUATION.md, what is exact): OpenCV's Farneback gives the
    same bytes on its AVX2 path with AVX-512 switched off. Without AVX2 (its SSE path) the last bits differ:
    that is measured, so this test can tell the two apart."""
    default = _flow_bytes({})
    assert _flow_bytes({"OPENCV_CPU_DISABLE": "AVX512F"}) == default
    if "*AVX2" in cv2.getCPUFeaturesLine():   # this CPU runs the AVX2 path: its SSE path is another one
        assert _flow_bytes({"OPENCV_CPU_DISABLE": "AVX512F,AVX2,FMA3"}) != default
