"""End to end through the CLI: emogan flow (on an existing dask cluster) -> stats -> normalize (q3) -> folds."""
from __future__ import annotations

import csv
import json
import logging

import numpy as np
from typer.testing import CliRunner

from flowdata import make_crops
from pipeline import flow as fl
from pipeline import store as st
from emogan.cli import app
from pipeline.folds import read_folds, store_folds
from pipeline.normalize import denormalize
from conftest import params_of, write_params


def test_cli_chain_builds_a_valid_store(tmp_path):
    from dask.distributed import LocalCluster

    crops = make_crops(tmp_path / "crops" / "tiny", n_sequences=4, frames=3, side=64, subjects=3)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    with open(crops / "crops.csv") as f, open(manifests / "tiny.csv", "w", newline="") as g:
        rows = list(csv.DictReader(f))
        w = csv.DictWriter(g, fieldnames=["dataset", "subject", "sequence"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    params = tmp_path / "params.yaml"
    write_params(params, paths={"crops": str(tmp_path / "crops"), "flows": str(tmp_path / "flows"),
                                "stores": str(tmp_path / "stores"), "metrics": str(tmp_path / "metrics"),
                                "manifests": str(manifests)},
                 flow={"size": 32, "max_step": 2, "workers": 0},
                 normalize={"clip": "q3", "representation": "cartesian", "size": 32}, folds={"k": 3})
    run = CliRunner().invoke
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      scheduler_kwargs={"dashboard": False}, silence_logs=logging.WARNING) as cluster:
        r = run(app, ["flow", str(crops), "--params", str(params), "--dask-address", cluster.scheduler_address,
                      "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "flow pairs from 4 sequences" in r.output
    # the existing cluster computed the same store as this process does
    fl.compute_flows(crops, tmp_path / "local.zarr", params_of(fl.FlowParams, "flow", size=32, max_step=2, workers=0), progress=False)
    assert st.tree_sha256(tmp_path / "flows" / "tiny.zarr") == st.tree_sha256(tmp_path / "local.zarr")

    for cmd in (["stats", str(tmp_path / "flows" / "tiny.zarr")], ["normalize", str(tmp_path / "flows" / "tiny.zarr")],
                ["folds", str(manifests / "tiny.csv")]):
        r = run(app, cmd + ["--params", str(params)])
        assert r.exit_code == 0, (cmd, r.output)
    q3 = json.loads((tmp_path / "metrics" / "stats_tiny.json").read_text())["suggested_clip"]
    g = st.open_store(tmp_path / "stores" / "tiny.zarr")
    assert g.attrs["clip"] == q3 and g.attrs["representation"] == "cartesian"
    assert (tmp_path / "metrics" / "stats_tiny.png").exists() and (tmp_path / "metrics" / "stats_tiny_hist.csv").exists()
    src = fl.open_flows(tmp_path / "flows" / "tiny.zarr")["flow_target_px"][...].astype(np.float32)
    back = denormalize(g["flow_target"][...], "cartesian", q3)
    mag = np.hypot(src[:, 0], src[:, 1])
    low = mag < q3 * 0.99  # below the clip, the store gives the flow back in crop pixels
    np.testing.assert_allclose(back[:, 0][low], src[:, 0][low], atol=q3 * 2.0 ** -11)
    folds = read_folds(manifests / "tiny_folds.csv")
    assert folds == {"S001": 0, "S002": 1, "S003": 2}
    row_folds = store_folds(g, manifests / "tiny_folds.csv")
    subjects = np.array(g.attrs["subject_ids"])[g["subject"][...]]
    assert all(folds[s] == f for s, f in zip(subjects, row_folds))


def test_cli_user_error_exits_2_with_the_file_named(tmp_path, capsys, monkeypatch):
    import sys

    import pytest

    from emogan import cli

    monkeypatch.setattr(sys, "argv", ["emogan", "normalize", str(tmp_path / "absent.zarr"),
                                      "--out", str(tmp_path / "s.zarr")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    assert str(tmp_path / "absent.zarr") in capsys.readouterr().err
