"""Trainer data: the torch flow codec against the pipeline's, fold selection, schema and fold errors,
the streaming dataset (whole chunks, shuffles, DDP split, spawned workers)."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from emogan.cli import app
from conftest import ROOT
from pipeline.folds import write_folds
from pipeline.errors import EmoganError
from pipeline.normalize import denormalize, normalize_flow
from pipeline.store import StoreError
from training import flowrep
from training.data import (GAN_ARRAYS, FoldError, StreamingStoreDataset, check_store, fold_rows, iter_rows,
                           make_loader)
from training.fixture import write_fixture_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    # 6 subjects x 16 rows, chunks of a few rows: many chunks per store.
    return write_fixture_store(tmp_path_factory.mktemp("data") / "fx.zarr", n_subjects=6, rows_per_subject=16, size=16,
                               chunk_mib=0.005)


@pytest.mark.parametrize("rep", ["polar", "cartesian"])
def test_torch_codec_matches_the_pipelines_normalize(rep):
    rng = np.random.default_rng(0)
    px = (rng.normal(size=(3, 2, 8, 8)) * 6).astype(np.float32)  # some vectors beyond the clip of 10
    enc = flowrep.encode(torch.from_numpy(px), rep, 10.0).numpy()
    ref = normalize_flow(px, rep, 10.0)
    if rep == "polar":
        # Angles near 0 and 2pi are the same direction: compare on the circle.
        d_ang = np.abs(enc[:, 1] - ref[:, 1])
        assert np.allclose(enc[:, 0], ref[:, 0], atol=1e-5)
        assert np.all(np.minimum(d_ang, 2 - d_ang) < 1e-5)
    else:
        assert np.allclose(enc, ref, atol=1e-6)
    dec = flowrep.decode(torch.from_numpy(ref), rep, 10.0).numpy()
    assert np.allclose(dec, denormalize(ref, rep, 10.0), atol=1e-4)


def test_epe_px_is_in_source_pixels():
    a = np.zeros((1, 2, 4, 4), np.float32)
    b = a.copy()
    b[:, 0] = 3.0
    b[:, 1] = 4.0
    e = flowrep.epe_px(torch.from_numpy(normalize_flow(a, "polar", 10.0)),
                       torch.from_numpy(normalize_flow(b, "polar", 10.0)), "polar", 10.0)
    assert torch.allclose(e, torch.tensor([5.0]), atol=1e-4)


def _subjects(store: Path, rows: np.ndarray) -> set[int]:
    return set(np.asarray(zarr.open_group(str(store))["subject"][:])[rows].tolist())


def test_folds_are_subject_independent_and_follow_the_rule_or_the_file(store, tmp_path):
    info = check_store(store)
    tr = fold_rows(info, 1, "train", None, 3)
    te = fold_rows(info, 1, "test", None, 3)
    assert len(tr) + len(te) == info.n and not set(tr) & set(te)
    # The rule: subjects S000..S005 sorted, dealt round-robin over k=3: fold 1 = S001, S004.
    assert _subjects(store, te) == {1, 4} and not _subjects(store, tr) & {1, 4}
    f = tmp_path / "fx_folds.csv"
    write_folds({"S000": 0, "S001": 0, "S002": 1, "S003": 1, "S004": 2, "S005": 2}, f)
    te = fold_rows(info, 2, "test", f, 10)
    assert _subjects(store, te) == {4, 5}


def test_a_missing_fold_is_a_clear_error(store, tmp_path):
    info = check_store(store)
    with pytest.raises(FoldError, match=r"fold 5 does not exist .*folds 0, 1, 2"):
        fold_rows(info, 5, "train", None, 3)
    f = tmp_path / "fx_folds.csv"
    write_folds({f"S{i:03d}": i % 2 for i in range(6)}, f)
    with pytest.raises(FoldError, match=r"fold 2 does not exist .*fx_folds.csv has folds 0, 1"):
        fold_rows(info, 2, "test", f, 10)
    r = CliRunner().invoke(app, ["train", str(store), "--fold", "2", "--folds-file", str(f), "--out",
                                 str(tmp_path / "run"), "--dry-run", "--params", str(ROOT / "params.yaml")])
    assert r.exit_code != 0 and "fold 2 does not exist" in str(r.exception)


def test_a_schema_mismatch_is_a_clear_error(store, tmp_path):
    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    g = zarr.open_group(str(bad), mode="r+")
    g.attrs["class_names"] = ["neutral", "happy"]
    with pytest.raises(StoreError, match="class_names"):
        check_store(bad)
    shutil.rmtree(bad)
    shutil.copytree(store, bad)
    shutil.rmtree(bad / "step")
    with pytest.raises(StoreError, match="missing array.*step"):
        check_store(bad)
    r = CliRunner().invoke(app, ["train", str(bad), "--fold", "0", "--out", str(tmp_path / "run"), "--dry-run",
                                 "--params", str(ROOT / "params.yaml")])
    assert r.exit_code != 0 and "step" in str(r.exception)


def _ds(store: Path, rows: np.ndarray, **kw) -> StreamingStoreDataset:
    info = check_store(store)
    return StreamingStoreDataset([str(store)], [rows], [info.chunk_rows], ("sequence", "label"), **kw)


def _epoch(ds: StreamingStoreDataset, epoch: int) -> list[int]:
    ds.set_epoch(epoch)
    return [int(v) for b in ds for v in b["sequence"]]


def test_an_epoch_reads_whole_chunks_once_and_every_row_once(store):
    info = check_store(store)
    rows = fold_rows(info, 0, "train", None, 3)
    ds = _ds(store, rows, batch_size=5, buffer_chunks=3, drop_last=False)
    reads = []
    orig = ds.read_unit
    ds.read_unit = lambda u: reads.append((u.start, u.stop)) or orig(u)  # type: ignore[method-assign]
    seen = _epoch(ds, 0)
    seq = np.asarray(zarr.open_group(str(store))["sequence"][:])
    assert sorted(seen) == sorted(seq[rows].tolist())
    assert len(reads) == len(set(reads)) == len(ds.units)
    assert all(a % info.chunk_rows == 0 and b - a == info.chunk_rows for a, b in reads)
    assert len(ds.units) > 4  # several chunks, so the shuffles below mean something


def test_shuffles_are_deterministic_per_epoch_and_differ_between_epochs(store):
    rows = fold_rows(check_store(store), 0, "train", None, 3)
    ds = _ds(store, rows, batch_size=4, seed=3)
    e0, e0_again, e1 = _epoch(ds, 0), _epoch(ds, 0), _epoch(ds, 1)
    assert e0 == e0_again and e0 != e1 and sorted(e0) != e0
    assert len(e0) == ds.batches_per_epoch(0) * 4 == len(rows) // 4 * 4
    plain = _ds(store, rows, batch_size=4, shuffle=False)
    assert _epoch(plain, 0) == sorted(_epoch(plain, 0))



def test_steps_in_epoch_caps_the_batches_and_stops_when_the_rows_make_none(store):
    """What every training loop (the GAN trainer, the Flow-CNN and e_FER judges) runs per epoch: its batches, at most
    the cap; rows that fill no batch stop with a line naming the rows and the batch size, not an empty epoch."""
    rows = fold_rows(check_store(store), 0, "train", None, 3)
    ds = _ds(store, rows, batch_size=4)
    assert ds.steps_in_epoch(0, None, "here") == ds.batches_per_epoch(0) > 2
    assert ds.steps_in_epoch(0, 2, "here") == 2
    big = _ds(store, rows, batch_size=len(rows) + 1)
    with pytest.raises(EmoganError, match=f"here: {len(rows)} training rows make no batch of {len(rows) + 1} in "
                                          "epoch 1; lower batch_size"):
        big.steps_in_epoch(0, None, "here")

def test_ddp_ranks_get_disjoint_rows_and_the_same_number_of_batches(store):
    rows = fold_rows(check_store(store), 0, "train", None, 3)
    r0 = _ds(store, rows, batch_size=3, rank=0, world=2)
    r1 = _ds(store, rows, batch_size=3, rank=1, world=2)
    a, b = _epoch(r0, 2), _epoch(r1, 2)
    assert not set(a) & set(b)
    assert len(a) == len(b) == 3 * r0.batches_per_epoch(2) == 3 * r1.batches_per_epoch(2) > 0


def test_spawned_worker_opens_the_store_itself_and_yields_the_same_batches(store):
    rows = fold_rows(check_store(store), 0, "train", None, 3)
    ds = _ds(store, rows, batch_size=4, seed=1)
    ds._open()
    assert ds._groups is not None and pickle.loads(pickle.dumps(ds))._groups is None
    in_process = _epoch(ds, 1)
    spawned = _ds(store, rows, batch_size=4, seed=1, workers=1)
    loader = make_loader(spawned)
    spawned.set_epoch(1)
    got = [int(v) for b in loader for v in b["sequence"]]
    assert got == in_process


def test_gan_arrays_come_as_compact_tensors(store):
    rows = np.arange(10)
    b = next(iter_rows(str(store), rows, GAN_ARRAYS, 4))
    assert b["flow_input"].dtype == torch.float16 and b["neutral"].dtype == torch.uint8
    assert b["label"].dtype == torch.int64 and b["flow_input"].shape == (4, 2, 16, 16)
    assert sum(len(x["label"]) for x in iter_rows(str(store), rows, GAN_ARRAYS, 4)) == 10
