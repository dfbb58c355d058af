"""pipeline/normalize.py: the polar and Cartesian maps, their inverses, and the training store it writes."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from flowdata import make_crops
from pipeline import normalize as nz
from pipeline import store as st
from pipeline.errors import EmoganError
from pipeline.flow import FlowParams, compute_flows, open_flows
from pipeline.params import ParamsError, load_params
from pipeline.schema import STORE_ARRAYS
from conftest import params_of, write_params

# Flows in source pixels, (n, 2, h, w), including zeros, exact axes and large vectors.
flows_px = hnp.arrays(
    np.float32,
    hs.tuples(hs.integers(1, 3), hs.just(2), hs.integers(1, 5), hs.integers(1, 5)),
    elements=hs.one_of(hs.floats(-60, 60, width=32), hs.sampled_from([0.0, -0.0, float(np.float32(1e-6)), float(np.float32(-1e-6))])),
)
clips = hs.floats(0.25, 50.0)


def f16_tolerance(clip: float) -> float:
    # float16 keeps 11 significant bits: a value in [-1, 1] is off by <= 2**-12 after rounding.
    # Polar: magnitude error clip/2 * 2**-12, angle error pi * 2**-12 (times |f| <= clip): < clip * 2**-10.
    return clip * 2.0 ** -10


@settings(max_examples=150, deadline=None)
@given(flows_px, clips)
def test_polar_round_trips_to_the_clipped_flow(flow, clip):
    x = nz.normalize_flow(flow, "polar", clip)
    assert x.shape == flow.shape
    assert np.all(x >= -1) and np.all(x <= 1)
    assert np.all(x[:, 1] < 1)  # angle/2pi in [0, 1) before the float16 cast
    back = nz.denormalize(x.astype(np.float16), "polar", clip)
    np.testing.assert_allclose(back, nz.clip_flow_px(flow, clip), rtol=0, atol=f16_tolerance(clip))


@settings(max_examples=150, deadline=None)
@given(flows_px, clips)
def test_cartesian_round_trips_to_the_clipped_flow(flow, clip):
    x = nz.normalize_flow(flow, "cartesian", clip)
    assert np.all(np.hypot(x[:, 0], x[:, 1]) <= 1 + 1e-6)  # clipped by magnitude, not per axis
    back = nz.denormalize(x.astype(np.float16), "cartesian", clip)
    np.testing.assert_allclose(back, nz.clip_flow_px(flow, clip), rtol=0, atol=f16_tolerance(clip) / 2)


@settings(max_examples=100, deadline=None)
@given(flows_px, clips)
def test_clip_keeps_direction_and_bounds_magnitude(flow, clip):
    c = nz.clip_flow_px(flow, clip)
    mag, mag0 = np.hypot(c[:, 0], c[:, 1]), np.hypot(flow[:, 0], flow[:, 1])
    assert np.all(mag <= clip * (1 + 1e-6))
    small = mag0 <= clip
    assert np.all(np.where(small[:, None], c == flow, True))  # below the clip: unchanged
    # direction kept: the clipped vector is a non-negative multiple of the original
    cross = c[:, 0] * flow[:, 1] - c[:, 1] * flow[:, 0]
    assert np.all(np.abs(cross) <= 1e-5 * clip * np.maximum(mag0, 1))
    assert np.all(c[:, 0] * flow[:, 0] + c[:, 1] * flow[:, 1] >= 0)


def test_polar_documented_values():
    clip = 10.0
    f = np.zeros((2, 1, 4), np.float32)
    f[:, 0, 0] = (5, 0)        # half the clip, angle 0
    f[:, 0, 1] = (0, 20)       # beyond the clip, angle pi/2 (v down the rows)
    f[:, 0, 2] = (-3, 0)       # angle pi
    f[:, 0, 3] = (0, 0)        # zero vector: angle 0
    x = nz.to_polar(f, clip)
    np.testing.assert_allclose(x[0, 0], [0.0, 1.0, -0.4, -1.0], atol=1e-6)
    np.testing.assert_allclose(x[1, 0], [-1.0, -0.5, 0.0, -1.0], atol=1e-6)
    # just below angle 0 (vector pointing slightly up): angle/2pi near 1, never 1 itself
    y = nz.to_polar(np.array([[[1.0]], [[-1e-9]]], np.float32), clip)
    assert -1 <= y[1, 0, 0] < 1


def test_unknown_representation_is_an_error():
    with pytest.raises(ValueError, match="representation"):
        nz.normalize_flow(np.zeros((2, 1, 1)), "hsv", 1.0)


def test_params_validation_names_the_file(tmp_path):
    p = tmp_path / "params.yaml"
    write_params(p, normalize={"clip": "lots"})
    with pytest.raises(ParamsError, match=r"params.yaml.*normalize.*clip"):
        nz.load_normalize_params(load_params(p))
    write_params(p, normalize={"clip": "Q3", "representation": "cartesian"})
    assert nz.load_normalize_params(load_params(p)).clip == "q3"


@pytest.fixture(scope="module")
def flow_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("norm")
    make_crops(root / "crops", n_sequences=3, frames=4, side=64)
    compute_flows(root / "crops", root / "flows.zarr", params_of(FlowParams, "flow", size=32, workers=0, max_step=2), progress=False)
    return root / "flows.zarr"


@pytest.mark.parametrize("representation", ["polar", "cartesian"])
def test_normalize_store_writes_the_schema(flow_store, tmp_path, representation):
    p = params_of(nz.NormalizeParams, "normalize", clip=2.0, representation=representation, size=32)
    attrs = nz.normalize_store(flow_store, tmp_path / "store.zarr", p)
    g = st.open_store(tmp_path / "store.zarr")
    src = open_flows(flow_store)
    assert attrs["representation"] == representation and attrs["clip"] == 2.0 and attrs["size"] == 32
    assert attrs["params"]["normalize"]["clip"] == 2.0 and "flow" in attrs["params"]
    n = src["flow_input_px"].shape[0]
    for name, (shape, dtype) in STORE_ARRAYS.items():
        assert g[name].shape[0] == n and g[name].dtype == np.dtype(dtype)
    for name in ("label", "subject", "sequence", "pose", "strategy", "step", "neutral", "input_image"):
        np.testing.assert_array_equal(g[name][...], src[name][...])
    back = nz.denormalize(g["flow_target"][...], representation, 2.0)
    want = nz.clip_flow_px(src["flow_target_px"][...], 2.0)
    np.testing.assert_allclose(back, want, atol=f16_tolerance(2.0))


def test_normalize_q3_clip_and_smaller_size(flow_store, tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"suggested_clip": 1.25}))
    p = params_of(nz.NormalizeParams, "normalize", clip="q3", size=16, representation="polar")
    attrs = nz.normalize_store(flow_store, tmp_path / "store.zarr", p, stats_path=stats)
    assert attrs["clip"] == 1.25 and "q3" in attrs["clip_source"] and attrs["size"] == 16
    g = st.open_store(tmp_path / "store.zarr")
    assert g["flow_input"].shape[1:] == (2, 16, 16) and g["neutral"].shape[1:] == (3, 16, 16)
    # Cartesian area average of the 32x32 source flow (vectors not rescaled), then polar
    src = open_flows(flow_store)["flow_input_px"][...].astype(np.float32)
    want = src.reshape(len(src), 2, 16, 2, 16, 2).mean(axis=(3, 5))
    back = nz.denormalize(g["flow_input"][...], "polar", 1.25)
    np.testing.assert_allclose(back, nz.clip_flow_px(want, 1.25), atol=1.25 * 2.0 ** -10 + 1e-3)


def test_normalize_errors_name_the_file(flow_store, tmp_path):
    with pytest.raises(EmoganError, match="stats.json"):
        nz.normalize_store(flow_store, tmp_path / "s.zarr", params_of(nz.NormalizeParams, "normalize", clip="q3", size=32, representation="polar"),
                           stats_path=tmp_path / "stats.json")
    with pytest.raises(EmoganError, match="larger"):
        nz.normalize_store(flow_store, tmp_path / "s.zarr", params_of(nz.NormalizeParams, "normalize", size=64, representation="polar"))
    with pytest.raises(EmoganError, match="nothing.zarr"):
        nz.normalize_store(tmp_path / "nothing.zarr", tmp_path / "s.zarr", params_of(nz.NormalizeParams, "normalize", size=32, representation="polar"))
    assert not (tmp_path / "s.zarr").exists()


def test_affine_map_is_documented_in_attrs(flow_store, tmp_path):
    p = params_of(nz.NormalizeParams, "normalize", size=32, representation="polar")
    attrs = nz.normalize_store(flow_store, tmp_path / "s.zarr", p)
    assert "2x - 1" in attrs["affine_map"] and math.isclose(attrs["clip"], p.clip)
