"""pipeline/store.py: the training store's schema, validation and chunking."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline import store as st
from pipeline.schema import STORE_ARRAYS, STORE_ATTRS

MIB = 1 << 20


def arrays(n: int = 5, size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "flow_input": rng.uniform(-1, 1, (n, 2, size, size)).astype(np.float16),
        "flow_target": rng.uniform(-1, 1, (n, 2, size, size)).astype(np.float16),
        "neutral": rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8),
        "target_image": rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8),
        "input_image": rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8),
        "label": rng.integers(-1, 7, n).astype(np.int16),
        "subject": rng.integers(0, 3, n).astype(np.int32),
        "sequence": np.arange(n, dtype=np.int32),
        "pose": rng.integers(0, 7, n).astype(np.int16),
        "strategy": rng.integers(0, 2, n).astype(np.int16),
        "step": rng.integers(1, 6, n).astype(np.int16),
    }


ATTRS = {"representation": "polar", "clip": 10.0, "source_manifest_sha256": "0" * 64,
         "params": {"normalize": {"clip": 10.0}}, "subject_ids": ["S1", "S2", "S3"]}


def test_write_store_round_trips_and_matches_schema(tmp_path):
    data = arrays()
    g = st.write_store(tmp_path / "s.zarr", data, ATTRS)
    attrs = st.check_store(tmp_path / "s.zarr")
    assert set(STORE_ATTRS) <= set(attrs)
    assert attrs["size"] == 16 and st.store_rows(g) == 5
    for name, (shape, dtype) in STORE_ARRAYS.items():
        assert g[name].dtype == np.dtype(dtype)
        assert g[name].chunks[1:] == g[name].shape[1:]  # chunks split N only
        np.testing.assert_array_equal(g[name][...], data[name])
    assert g.metadata.zarr_format == 3


def test_write_store_keeps_extra_arrays(tmp_path):
    data = {**arrays(), "frame_t": np.arange(5, dtype=np.int16)}
    g = st.write_store(tmp_path / "s.zarr", data, ATTRS)
    np.testing.assert_array_equal(g["frame_t"][...], np.arange(5))


@pytest.mark.parametrize("change, message", [
    (lambda g: g.attrs.update({"class_names": ["a"]}), "class_names"),
    (lambda g: g.attrs.update({"schema_version": 99}), "schema_version"),
    (lambda g: g.attrs.update({"representation": "hsv"}), "representation"),
    (lambda g: g.attrs.update({"clip": -1}), "clip"),
    (lambda g: g.attrs.__delitem__("params"), "params"),
    (lambda g: g.__delitem__("neutral"), "neutral"),
    (lambda g: g["label"].__setitem__(0, 9), "label"),
    (lambda g: g["subject"].__setitem__(0, 7), "subject"),
])
def test_check_store_names_what_is_wrong(tmp_path, change, message):
    path = tmp_path / "s.zarr"
    st.write_store(path, arrays(), ATTRS)
    change(zarr.open_group(str(path), mode="r+"))
    with pytest.raises(st.StoreError, match=message) as e:
        st.open_store(path)
    assert str(path) in str(e.value)


def test_check_store_rejects_wrong_dtype_and_chunking(tmp_path):
    path = tmp_path / "s.zarr"
    st.write_store(path, arrays(), ATTRS)
    g = zarr.open_group(str(path), mode="r+")
    del g["flow_input"]
    g.create_array("flow_input", shape=(5, 2, 16, 16), dtype="float32", chunks=(5, 2, 16, 16))
    with pytest.raises(st.StoreError, match="dtype"):
        st.check_store(path)
    del g["flow_input"]
    g.create_array("flow_input", shape=(5, 2, 16, 16), dtype="float16", chunks=(5, 1, 16, 16))
    with pytest.raises(st.StoreError, match="chunks must split N only"):
        st.check_store(path)


def test_missing_store_and_wrong_shapes_are_clear(tmp_path):
    with pytest.raises(st.StoreError, match="no store here"):
        st.open_store(tmp_path / "absent.zarr")
    bad = arrays()
    bad["neutral"] = bad["neutral"][:, :2]
    with pytest.raises(st.StoreError, match="neutral"):
        st.write_store(tmp_path / "s.zarr", bad, ATTRS)
    assert not (tmp_path / "s.zarr").exists()  # nothing half-written is left at the path


def test_chunks_hold_at_least_one_mib(tmp_path):
    g = st.create_store(tmp_path / "s.zarr", 1000, 128, ATTRS)
    for name in STORE_ARRAYS:
        a = g[name]
        chunk_bytes = np.prod(a.chunks) * a.dtype.itemsize
        assert chunk_bytes >= MIB or a.chunks[0] == a.shape[0], name
    # the (N, C, S, S) arrays share one chunk length, recorded for the trainer
    rows = {g[k].chunks[0] for k, (shape, _) in STORE_ARRAYS.items() if len(shape) == 4}
    assert rows == {g.attrs["chunk_rows"]}


def test_row_writer_writes_uneven_batches_in_order(tmp_path):
    g = zarr.open_group(str(tmp_path / "w.zarr"), mode="w", zarr_format=3)
    spec = {"x": (("N", 2, "S", "S"), "float16"), "y": (("N",), "int32")}
    st.create_arrays(g, spec, 23, 4, chunk_rows=5)
    w = st.RowWriter(g)
    rng = np.random.default_rng(1)
    xs, ys, left = [], [], 23
    while left:
        k = int(min(left, rng.integers(1, 8)))
        xs.append(rng.normal(size=(k, 2, 4, 4)).astype(np.float16))
        ys.append(rng.integers(0, 100, k).astype(np.int32))
        w.append({"x": xs[-1], "y": ys[-1]})
        left -= k
    w.close()
    np.testing.assert_array_equal(g["x"][...], np.concatenate(xs))
    np.testing.assert_array_equal(g["y"][...], np.concatenate(ys))
    w2 = st.RowWriter(g)
    w2.append({"x": xs[0], "y": ys[0]})
    with pytest.raises(ValueError, match="wrote"):
        w2.close()
