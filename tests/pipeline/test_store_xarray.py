"""Stores open with xarray.open_zarr: every array has named dimensions, one name per length."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline import store as st
from pipeline.flow import FLOW_ARRAYS
from pipeline.schema import STORE_ARRAYS

xr = pytest.importorskip("xarray")


def _rows(spec, n: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in spec.items():
        full = st.concrete_shape(shape, n, size)
        out[name] = (rng.uniform(-1, 1, full) if np.dtype(dtype).kind == "f" else rng.integers(0, 7, full)).astype(dtype)
    return out


@pytest.mark.parametrize("spec", [STORE_ARRAYS, FLOW_ARRAYS], ids=["training store", "flow store"])
def test_xarray_opens_a_store_with_named_dimensions(tmp_path, spec):
    data = _rows(spec, n=6, size=8)
    path = tmp_path / "s.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    st.create_arrays(g, spec, 6, 8, chunk_rows=4)  # what write_store and the flow stage call
    for name, values in data.items():
        g[name][...] = values
    ds = xr.open_zarr(path, consolidated=False)
    assert ds.sizes["N"] == 6
    flow = "flow_input" if "flow_input" in spec else "flow_input_px"
    assert ds[flow].dims == ("N", "uv", "y", "x")
    assert ds["neutral"].dims == ("N", "rgb", "y", "x")
    assert ds["label"].dims == ("N",)
    for name in spec:
        np.testing.assert_array_equal(ds[name].values, data[name])
    # the three-line example of docs/ARCHITECTURE.md
    apex = ds.isel(N=ds.strategy.values == 0)   # neutral->apex rows
    assert apex.sizes["N"] == int((data["strategy"] == 0).sum())
