"""#16 defect 9, the small items: each with its own test (sidecar ranges, compressed flow parts, stale
outputs of frontalize, resume drift by content, leftovers of killed runs, suspicious input warnings)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flowdata import make_crops
from pipeline import flow as fl
from conftest import dump_params, params_of, tiny_trainer_params


def _sidecar(tmp_path: Path, **changes) -> Path:
    from training.inference.bundle import BUNDLE_FORMAT, BUNDLE_VERSION

    w = tmp_path / "m.safetensors"
    w.write_bytes(b"x")
    meta = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "class_names": [], "representation": "polar",
            "clip": 10.0, "size": 32, "nets": {}, "weights_sha256": "0",
            "preprocess": {"store_size": 64, "crop": {"size": 128, "margin": 0.4, "pad_value": 0}}}
    for k, v in changes.items():
        node = meta
        *path, last = k.split("__")
        for part in path:
            node = node[part]
        node[last] = v
    (tmp_path / "m.json").write_text(json.dumps(meta))
    return w


@pytest.mark.parametrize("key,value", [("clip", 0), ("clip", float("nan")), ("clip", -3.0), ("size", 0),
                                       ("preprocess__store_size", 2), ("preprocess__crop__size", 0),
                                       ("preprocess__crop__margin", -1), ("preprocess__crop__pad_value", 300)])
def test_bundle_sidecar_values_are_range_checked(tmp_path, key, value):
    """`clip: 0` in a sidecar gave NaN output with exit 0."""
    from training.inference.bundle import BundleError, read_meta

    assert read_meta(_sidecar(tmp_path))["clip"] == 10.0
    with pytest.raises(BundleError, match="out of range") as e:
        read_meta(_sidecar(tmp_path, **{key: value}))
    assert key.replace("__", ".") in str(e.value) and "m.json" in str(e.value)


def test_flow_parts_are_compressed(tmp_path, monkeypatch):
    """Uncompressed parts needed ~2.8x the store's size free."""
    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=32)

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fl, "_assemble", stop)
    with pytest.raises(KeyboardInterrupt):
        fl.compute_flows(crops, tmp_path / "f.zarr", params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=1),
                         progress=False)
    parts = sorted((tmp_path / "f.zarr.parts").glob("*.npz"))
    assert len(parts) == 2
    for part in parts:
        with zipfile.ZipFile(part) as z:
            assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}


def test_a_rerun_of_frontalize_leaves_no_stale_gif(tmp_path):
    """A one-pair re-run into the folder of a longer recording kept the old frontalize.gif."""
    from types import SimpleNamespace

    from pipeline.schema import CLASS_NAMES
    from training.inference.frontalize import FrontalizeParams, MotionResult, write_outputs
    from conftest import dump_params, params_of, tiny_trainer_params

    def result(t: int) -> MotionResult:
        rng = np.random.default_rng(t)
        return MotionResult(rng.normal(size=(t, 2, 16, 16)).astype(np.float32),
                            rng.normal(size=(t, 2, 16, 16)).astype(np.float32),
                            np.full((t, 7), 1 / 7, np.float32), rng.integers(0, 255, (t, 3, 16, 16), dtype=np.uint8),
                            rng.integers(0, 255, (3, 16, 16), dtype=np.uint8), 0)

    bundle = SimpleNamespace(clip=3.0, class_names=list(CLASS_NAMES), size=16, path=tmp_path / "b.safetensors",
                             meta={"weights_sha256": "0"}, representation="polar")
    p = params_of(FrontalizeParams, "frontalize")
    faces = [np.zeros((16, 16, 3), np.uint8)] * 3
    doc = write_outputs(tmp_path / "out", result(3), bundle, faces, [1, 2, 3], p, {})
    assert (tmp_path / "out" / "frontalize.gif").is_file() and "frontalize.gif" in doc["files"]
    doc = write_outputs(tmp_path / "out", result(1), bundle, faces[:1], [1], p, {})
    assert not (tmp_path / "out" / "frontalize.gif").exists() and "frontalize.gif" not in doc["files"]
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == sorted(doc["files"])


def test_resume_refuses_a_store_whose_content_changed_at_the_same_path(tmp_path):
    """The resume drift check compared store paths only: a rebuilt store went on from the old checkpoint."""
    import shutil

    from typer.testing import CliRunner

    from emogan.cli import app
    from pipeline.errors import EmoganError
    from training.fixture import write_fixture_store

    params = dump_params(tiny_trainer_params(
        {"size": None, "epochs": 1, "batch_size": 4, "steps_per_epoch": 1, "workers": 0, "image_steps": None,
         "de_warmup_steps": 0}, {"epochs": 1, "steps_per_epoch": 1, "batch_size": 8}), tmp_path / "params.yaml")
    store = write_fixture_store(tmp_path / "s.zarr", n_subjects=4, rows_per_subject=8, size=32, chunk_mib=0.01)

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args] + ["--params", str(params)])

    assert run("train-fer", store, "--fold", 0, "--out", tmp_path / "fer").exit_code == 0
    train = ("train", store, "--fold", 0, "--out", tmp_path / "run", "--efer-path", tmp_path / "fer")
    r = run(*train)
    assert r.exit_code == 0, r.output + repr(r.exception)
    r = run(*train, "--resume", "--epochs", 2)  # same data: resumes
    assert r.exit_code == 0, r.output + repr(r.exception)
    shutil.rmtree(store)
    write_fixture_store(store, n_subjects=4, rows_per_subject=8, size=32, chunk_mib=0.01, seed=1)
    r = run(*train, "--resume", "--epochs", 3)
    assert isinstance(r.exception, EmoganError) and "content" in str(r.exception), r.output + repr(r.exception)


def test_the_next_run_removes_what_killed_runs_left(tmp_path):
    """Killed runs left temporary folders and part files behind, for ever."""
    from pipeline.normalize import NormalizeParams, normalize_store

    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=32)
    out = tmp_path / "f.zarr"
    (tmp_path / ".f.zarr.tmp-999999").mkdir()
    ((tmp_path / ".f.zarr.tmp-999999") / "junk").write_bytes(b"x" * 1000)
    (tmp_path / ".s.zarr.tmp-999998").mkdir()
    p = params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=1)

    def killed(*a, **k):
        (out.with_name("f.zarr.parts") / "000000.npz.tmp-999997").write_bytes(b"half")
        raise KeyboardInterrupt

    orig = fl._assemble
    fl._assemble = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            fl.compute_flows(crops, out, p, progress=False)
    finally:
        fl._assemble = orig
    fl.compute_flows(crops, out, p, progress=False)
    normalize_store(out, tmp_path / "s.zarr", params_of(NormalizeParams, "normalize", size=32, chunk_mib=0.05))
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(
        ["crops", "f.zarr", ".f.zarr.lock", "s.zarr", ".s.zarr.lock"])


def _crop_with(tmp_path: Path, frames_by_seq: dict[str, list[np.ndarray]], **crop) -> tuple[dict, list[dict]]:
    from face_images import write_rgb
    from pipeline.crop import WARNINGS_COLUMNS, CropParams, crop_dataset
    from pipeline.manifest import MANIFEST_COLUMNS, read_csv, write_csv

    rows = []
    for seq, frames in frames_by_seq.items():
        files = [write_rgb(tmp_path / "ds" / seq / f"img_{i + 1:03d}.png", f).relative_to(tmp_path / "ds").as_posix()
                 for i, f in enumerate(frames)]
        rows.append({"dataset": "d", "subject": "S01", "sequence": seq, "label": "", "label_code": -1, "pose": "",
                     "root": "ds", "frontal": "|".join(files), "nonfrontal": "", "video": "", "n_frames": len(files)})
    write_csv(tmp_path / "m.csv", MANIFEST_COLUMNS, rows)
    counts = crop_dataset(tmp_path / "m.csv", tmp_path / "crops",
                          params_of(CropParams, "crop", **{"size": 48, "workers": 1, **crop}), progress=False)
    return counts, read_csv(tmp_path / "crops" / "warnings.csv", WARNINGS_COLUMNS)


def test_a_blank_frame_mid_sequence_is_a_warning(tmp_path):
    from face_images import astronaut, moving

    frames = moving(astronaut(), 3)
    frames[1] = np.full_like(frames[1], 128)
    counts, warnings = _crop_with(tmp_path, {"001": frames, "002": moving(astronaut(), 3)})
    assert counts == {"cropped": 2, "reused": 0, "error": 0}
    assert [(w["sequence"], Path(w["file"]).name) for w in warnings] == [("001", "img_002.png")]
    assert "blank" in warnings[0]["reason"]
    _, again = _crop_with(tmp_path, {"001": frames, "002": moving(astronaut(), 3)})  # reused: still reported
    assert again == warnings


def test_a_tiny_face_enlarged_many_times_is_a_warning(tmp_path):
    from face_images import astronaut, moving

    # The photo's face box is about 200 px: a 1000 px crop enlarges it ~5x, above a threshold of 3.
    counts, warnings = _crop_with(tmp_path, {"001": moving(astronaut(), 2)}, size=1000, warn_upscale=3.0)
    assert counts["cropped"] == 1 and len(warnings) == 1 and "enlarged" in warnings[0]["reason"]
    _, none = _crop_with(tmp_path / "b", {"001": moving(astronaut(), 2)})
    assert none == []


def test_a_truncated_video_is_a_warning(tmp_path):
    from face_images import astronaut, moving, write_video
    from pipeline.crop import WARNINGS_COLUMNS, CropParams, crop_dataset
    from pipeline.manifest import MANIFEST_COLUMNS, read_csv, write_csv

    video = write_video(tmp_path / "ds" / "v.avi", moving(astronaut(), 12, step=2))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # a copy cut short: the header still says 12 frames
    row = {"dataset": "d", "subject": "S01", "sequence": "v", "label": "", "label_code": -1, "pose": "",
           "root": "ds", "frontal": "", "nonfrontal": "", "video": "v.avi", "n_frames": 12}
    write_csv(tmp_path / "m.csv", MANIFEST_COLUMNS, [row])
    counts = crop_dataset(tmp_path / "m.csv", tmp_path / "crops", params_of(CropParams, "crop", size=48, workers=1),
                          progress=False)
    warnings = read_csv(tmp_path / "crops" / "warnings.csv", WARNINGS_COLUMNS)
    assert counts["cropped"] == 1 and len(warnings) == 1 and "truncated video" in warnings[0]["reason"]


def _corrupt_first_chunk(store: Path, array: str) -> Path:
    chunk = store / array / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:30] + b"garbage" * 10)
    return chunk


def test_a_corrupt_chunk_is_one_line_naming_its_file(tmp_path):
    """A damaged Zarr chunk gave `RuntimeError: error during blosc decompression: -1`, naming no file."""
    from pipeline.errors import EmoganError
    from pipeline.normalize import NormalizeParams, normalize_store
    from training.fixture import write_fixture_store

    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=32)
    fl.compute_flows(crops, tmp_path / "f.zarr", params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=1),
                     progress=False)
    chunk = _corrupt_first_chunk(tmp_path / "f.zarr", "flow_input_px")
    with pytest.raises(EmoganError, match="unreadable chunk") as e:
        normalize_store(tmp_path / "f.zarr", tmp_path / "s.zarr", params_of(NormalizeParams, "normalize", size=32))
    assert str(chunk) in str(e.value) and "\n" not in str(e.value)

    store = write_fixture_store(tmp_path / "t.zarr", n_subjects=4, rows_per_subject=8, size=32, chunk_mib=0.01)
    chunk = _corrupt_first_chunk(store, "flow_target")
    r = _train_flowcnn(store, tmp_path, batch_size=4)   # batches that read the damaged chunk
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    assert str(chunk) in str(r.exception) and "unreadable chunk" in str(r.exception)


def _train_flowcnn(store: Path, tmp_path: Path, batch_size: int):
    """`emogan train-flowcnn` on fold 0 of `store` with the Flow-CNN's batch size set (no workers); the CLI result."""
    from typer.testing import CliRunner

    from emogan.cli import app

    prm = tiny_trainer_params()
    prm["evaluate"]["flowcnn"].update({"batch_size": batch_size, "workers": 0})
    params = dump_params(prm, tmp_path / "p.yaml")
    return CliRunner().invoke(app, ["train-flowcnn", str(store), "--fold", "0", "--out", str(tmp_path / "fc"),
                                    "--params", str(params)])


def test_training_rows_that_make_no_batch_stop_with_a_line_saying_so(tmp_path):
    """A store whose training rows do not fill one batch trained nothing, silently (a warning from the learning-rate
    scheduler was the only trace); the classifier judges now stop with a line naming the numbers."""
    from pipeline.errors import EmoganError
    from training.fixture import write_fixture_store

    store = write_fixture_store(tmp_path / "t.zarr", n_subjects=4, rows_per_subject=8, size=32, chunk_mib=0.01)
    r = _train_flowcnn(store, tmp_path, batch_size=512)
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    assert "make no batch of 512" in str(r.exception) and "lower batch_size" in str(r.exception)
    assert not (tmp_path / "fc" / "flowcnn.safetensors").exists()


def test_a_full_disk_is_one_line_naming_the_output(tmp_path, monkeypatch):
    """A full disk gave a traceback; stage writes run under the output's writer lock, which turns it into a line."""
    import errno

    from pipeline import store as st
    from pipeline.errors import EmoganError
    from pipeline.normalize import NormalizeParams, normalize_store

    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=32)
    fl.compute_flows(crops, tmp_path / "f.zarr", params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=1),
                     progress=False)

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(st.RowWriter, "append", full)
    with pytest.raises(EmoganError, match="No space left on device") as e:
        normalize_store(tmp_path / "f.zarr", tmp_path / "s.zarr", params_of(NormalizeParams, "normalize", size=32))
    assert str(tmp_path / "s.zarr") in str(e.value) and "disk is full" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "s.zarr").exists()
    monkeypatch.undo()

    def full_png(path, rgb):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    import pipeline.augment as aug
    from pipeline.augment import AugmentParams, augment_dataset

    src = tmp_path / "src"
    from test_hardening_paths import _frontal_crops

    _frontal_crops(src, ["S001"])
    monkeypatch.setattr(aug, "write_png", full_png)
    with pytest.raises(EmoganError, match="img_001.png: No space") as e:
        augment_dataset(src, tmp_path / "aug", params_of(AugmentParams, "augment"), progress=False)
