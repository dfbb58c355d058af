"""pipeline/stats.py: magnitude quantiles from the streaming histogram, metrics and plot files."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from flowdata import make_crops
from pipeline import stats as sm
from pipeline.flow import FlowParams, compute_flows
from pipeline.params import ParamsError, load_params
from conftest import params_of, write_params


@settings(max_examples=60, deadline=None)
@given(hs.integers(0, 2**31 - 1), hs.integers(1, 4), hs.sampled_from([0.01, 0.05]))
def test_histogram_quantiles_match_numpy_within_one_bin(seed, n_chunks, res):
    rng = np.random.default_rng(seed)
    chunks = [{c: rng.gamma(2.0, 3.0, (3, 2, 6, 6)).astype(np.float16) * rng.choice([-1, 1], (3, 2, 6, 6))
               for c in sm.CAMERAS} for _ in range(n_chunks)]
    result = sm.magnitude_stats(iter(chunks), params_of(sm.StatsParams, "stats", resolution_px=res, max_px=200.0))
    mags = {c: np.concatenate([sm.magnitude_px(ch[c]).ravel() for ch in chunks]) for c in sm.CAMERAS}
    mags["all"] = np.concatenate([mags["input"], mags["target"]])
    for c, values in mags.items():
        got = result["magnitude"][c]
        for name, q in sm.QUANTILES.items():
            # within one bin of the value of rank ceil(q * n) (numpy's inverted_cdf quantile)
            want = np.quantile(values, q, method="inverted_cdf")
            assert abs(got[name] - want) <= res * 1.01 + 1e-9, (c, name)
        assert got["max"] == pytest.approx(values.max())
        assert got["mean"] == pytest.approx(values.mean(dtype=np.float64), rel=1e-6)
    assert result["suggested_clip"] == result["magnitude"]["all"]["q3"]
    assert result["n_pairs"] == 3 * n_chunks
    moving = mags["all"][mags["all"] >= result["moving_px"]]
    assert result["moving_fraction"] == pytest.approx(moving.size / mags["all"].size)
    got = result["magnitude"]["moving"]
    assert got["mean"] == pytest.approx(moving.mean(dtype=np.float64), rel=1e-6)
    assert abs(got["q3"] - np.quantile(moving, 0.75, method="inverted_cdf")) <= res * 1.01 + 1e-9


def test_suggested_clip_from_moving_pixels():
    # 90% of the pixels still (background), 10% moving by 4..6 px: the all-pixel Q3 is 0
    flow = np.zeros((1, 2, 10, 10), np.float32)
    flow[0, 0, 0, :] = np.linspace(4, 6, 10)
    chunk = {"input": flow, "target": flow}
    assert sm.magnitude_stats(iter([chunk]), params_of(sm.StatsParams, "stats"))["suggested_clip"] == pytest.approx(0, abs=0.01)
    r = sm.magnitude_stats(iter([chunk]), params_of(sm.StatsParams, "stats", suggest_from="moving"))
    assert r["suggested_from"] == "moving" and r["moving_fraction"] == pytest.approx(0.1)
    assert r["suggested_clip"] == pytest.approx(np.quantile(np.linspace(4, 6, 10), 0.75), abs=0.25)


def test_stats_stage_writes_metrics_plot_and_plot_data(tmp_path):
    make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=64, shift1=(1.0, 0.0), shift2=(0.0, 2.0))
    compute_flows(tmp_path / "crops", tmp_path / "f.zarr", params_of(FlowParams, "flow", size=32, workers=0, max_step=1),
                  progress=False)
    m = sm.compute_stats(tmp_path / "f.zarr", tmp_path / "m" / "stats.json", params_of(sm.StatsParams, "stats"),
                         plot=tmp_path / "m" / "stats.png", plot_data=tmp_path / "m" / "hist.csv")
    saved = json.loads((tmp_path / "m" / "stats.json").read_text())
    assert saved == json.loads(json.dumps(m))
    # frame shifts of 1 px (cam1, x) and 2 px (cam2, y): steps 1 and 2 (apex of 3 frames)
    assert 0.9 < saved["magnitude"]["target"]["median"] < 2.1
    assert saved["magnitude"]["input"]["median"] > saved["magnitude"]["target"]["median"]
    assert saved["suggested_clip"] == saved["magnitude"]["all"]["q3"]
    assert (tmp_path / "m" / "stats.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "m" / "hist.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == params_of(sm.StatsParams, "stats").plot_bins and set(rows[0]) == {"magnitude_px", "density", "input", "target"}
    width = float(rows[1]["magnitude_px"]) - float(rows[0]["magnitude_px"])
    # densities integrate to about 1 (the plot spans up to the 99.9th percentile)
    assert 0.95 < sum(float(r["density"]) for r in rows) * width <= 1.0 + 1e-6


def test_stats_params_are_validated(tmp_path):
    p = tmp_path / "params.yaml"
    write_params(p, stats={"resolution_px": 0})
    with pytest.raises(ParamsError, match=r"params.yaml.*stats"):
        sm.load_stats_params(load_params(p))
    write_params(p, stats={"suggest_from": "face"})
    with pytest.raises(ParamsError, match=r"params.yaml.*suggest_from"):
        sm.load_stats_params(load_params(p))
