"""#16 defect 1: no model file unpickles without the user's own --trust-pickle, never on a run folder's word.

A crafted torch.export archive (a legacy weights entry whose pickle calls os.system) would write a marker
file when loaded; no command path may load it unless the user passes --trust-pickle for that very file.
"""
from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from emogan.cli import app
from pipeline.errors import EmoganError
from training.fixture import write_fixture_store
from training.models.efer import load_efer

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CLASSES = "angry,disgust,fear,happy,sad,surprise,neutral"
TINY_NETS = {
    "gf": {"name": "gf", "ngf": 8, "max_ch": 16, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1},
    "dp": {"name": "dp", "in_ch": 4, "ndf": 8, "n_layers": 2, "max_ch": 16},
    "de": {"name": "de", "channels": [8, 8, 8], "pool": 4, "hidden": 8, "dropout": 0.0},
    "gw": {"name": "gw", "ngf": 8, "max_ch": 16, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1},
}


class _Boom:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 7)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def crafted_pt2(path: Path, marker: Path) -> Path:
    """A valid torch.export archive plus a legacy weights pickle that writes `marker` when torch.export.load reads it."""
    torch.export.save(torch.export.export(_Net(), (torch.rand(1, 3, 8, 8),)), str(path))
    prefix = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    buf = io.BytesIO()
    torch.save({"w": _Boom(marker)}, buf)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{prefix}/data/weights/model.pt", buf.getvalue())
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny run trained with the project's own e_FER, and a crafted .pt2 next to it."""
    d = tmp_path_factory.mktemp("unpickle")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["train"]["small"].update({"size": None, "nets": copy.deepcopy(TINY_NETS), "epochs": 1, "batch_size": 4,
                                "e_c": 0, "steps_per_epoch": 1, "workers": 0, "image_steps": None,
                                "keep_checkpoints": 0, "de_warmup_steps": 0})
    p["train_fer"].update({"net": {"name": "fer_cnn", "size": 32, "channels": [4, 8], "dropout": 0.0},
                           "epochs": 1, "steps_per_epoch": 1, "batch_size": 8})
    p["evaluate"]["flowcnn"].update({"net": copy.deepcopy(TINY_NETS["de"]), "size": 32, "epochs": 1,
                                     "steps_per_epoch": 1, "batch_size": 8})
    for key in ("models", "metrics", "reports", "manifests", "baselines"):
        p["paths"][key] = str(d / key)
    params = d / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    store = write_fixture_store(d / "synth.zarr", n_subjects=4, rows_per_subject=6, size=32, chunk_mib=0.02)
    for args in (["train-fer", store, "--fold", 0, "--out", d / "fer"], ["train-flowcnn", store, "--fold", 0],
                 ["train", store, "--fold", 0, "--out", d / "run", "--efer-path", d / "fer"]):
        r = CliRunner().invoke(app, [str(a) for a in args] + ["--params", str(params)])
        assert r.exit_code == 0, r.output + repr(r.exception)
    marker = d / "MARKER"
    return {"dir": d, "store": store, "params": params, "run": d / "run", "marker": marker,
            "pt2": crafted_pt2(d / "evil.pt2", marker)}


def invoke(env, *args):
    return CliRunner().invoke(app, [str(a) for a in args] + ["--params", str(env["params"])])


def test_the_crafted_file_does_run_code_when_trusted(env, tmp_path):
    """The probe is real: torch.export.load on it writes the marker (so its absence below means something)."""
    marker = tmp_path / "probe"
    pt2 = crafted_pt2(tmp_path / "probe.pt2", marker)
    with pytest.raises(Exception):
        load_efer({"name": "file", "path": str(pt2), "classes": CLASSES.split(",")}, trust_pickle=True)
    assert marker.exists()


def test_train_refuses_a_pickle_based_efer_without_trust_pickle(env, tmp_path):
    r = invoke(env, "train", env["store"], "--fold", 0, "--out", tmp_path / "run", "--efer", "file",
               "--efer-path", env["pt2"], "--efer-classes", CLASSES)
    assert isinstance(r.exception, EmoganError) and r.exit_code != 0, r.output
    assert "--trust-pickle" in str(r.exception) and str(env["pt2"]) in str(r.exception)
    assert "\n" not in str(r.exception)
    assert not env["marker"].exists()


def test_load_efer_refuses_pickle_formats_and_unknown_suffixes(env, tmp_path):
    for suffix in (".pt", ".ts", ".pt2"):
        f = tmp_path / f"m{suffix}"
        f.write_bytes(env["pt2"].read_bytes())
        with pytest.raises(EmoganError, match="trust-pickle"):
            load_efer({"name": "file", "path": str(f), "classes": CLASSES.split(",")})
    odd = tmp_path / "m.bin"
    odd.write_bytes(env["pt2"].read_bytes())
    with pytest.raises(EmoganError, match="unknown e_FER file format"):
        load_efer({"name": "file", "path": str(odd), "classes": CLASSES.split(",")}, trust_pickle=True)
    assert not env["marker"].exists()


def _run_naming(env, tmp_path, trust_in_config: bool) -> Path:
    """A copy of the trained run whose config.json claims its e_FER was the crafted file (as a shared folder could)."""
    import shutil

    run = tmp_path / "shared_run"
    shutil.copytree(env["run"], run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["efer"] = {"name": "file", "path": str(env["pt2"]), "classes": CLASSES.split(","),
                            "size": None, "mean": None, "std": None}
    if trust_in_config:
        cfg["trust_pickle"] = True
    (run / "config.json").write_text(json.dumps(cfg))
    return run


@pytest.mark.parametrize("trust_in_config", [False, True])
def test_evaluate_never_loads_a_pickle_file_named_by_a_run_folder(env, tmp_path, trust_in_config):
    run = _run_naming(env, tmp_path, trust_in_config)
    r = invoke(env, "evaluate", run, env["store"], "--out", tmp_path / "eval")
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    assert "config.json" in str(r.exception) and "--efer-path" in str(r.exception)
    assert not env["marker"].exists()
    # Naming the file yourself is not enough without --trust-pickle.
    r = invoke(env, "evaluate", run, env["store"], "--out", tmp_path / "eval", "--efer-path", env["pt2"])
    assert isinstance(r.exception, EmoganError) and "--trust-pickle" in str(r.exception)
    assert not env["marker"].exists()


def test_evaluate_checks_a_user_given_efer_against_the_runs_record(env, tmp_path):
    """With --efer-path and --trust-pickle, the file must be the one the run recorded (sha256) before it loads."""
    run = _run_naming(env, tmp_path, False)
    cfg = json.loads((run / "config.json").read_text())
    cfg["runtime"]["efer"] = {"name": "file", "path": str(env["pt2"]), "sha256": "0" * 64}
    (run / "config.json").write_text(json.dumps(cfg))
    r = invoke(env, "evaluate", run, env["store"], "--out", tmp_path / "eval", "--efer-path", env["pt2"],
               "--trust-pickle")
    assert isinstance(r.exception, EmoganError) and "sha256" in str(r.exception), r.output
    assert not env["marker"].exists()
