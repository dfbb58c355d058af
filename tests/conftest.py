"""Shared test fixtures and helpers: the project's params.yaml as the source of every params object."""
from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeVar

# One OpenCV / BLAS thread per test process: tests must not depend on the machine's core count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "params.yaml"
T = TypeVar("T")


@functools.cache
def _project_params() -> dict[str, Any]:
    from pipeline.params import load_params

    return load_params(PARAMS_FILE)


def project_params() -> dict[str, Any]:
    """A fresh copy of the project's params.yaml (tests may edit it)."""
    return copy.deepcopy(_project_params())


def params_of(cls: type[T], name: str, **overrides: Any) -> T:
    """params.yaml section `name` (dotted for nested ones) as `cls`, with `overrides` (None too) on top."""
    from pipeline.params import build

    node: Any = project_params()
    for key in name.split("."):
        node = node[key]
    return build(cls, {**node, **overrides}, f"{PARAMS_FILE}: {name} + test overrides")


def write_params(dest: Path, **sections: dict[str, Any]) -> Path:
    """The project's params.yaml with some keys of some sections replaced (`crop={"size": 40}`), written to dest."""
    import yaml

    p = project_params()
    p.pop("__file__", None)
    for name, values in sections.items():
        p[name] = {**p[name], **values}
    Path(dest).write_text(yaml.safe_dump(p, sort_keys=False))
    return Path(dest)


# Tiny nets for the trainer's tests (a step takes milliseconds on one CPU thread): training, evaluation, inference.
TINY_NETS = {
    "gf": {"name": "gf", "ngf": 8, "max_ch": 32, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1},
    "dp": {"name": "dp", "in_ch": 4, "ndf": 8, "n_layers": 2, "max_ch": 32},
    "de": {"name": "de", "channels": [8, 16, 16], "pool": 4, "hidden": 16, "dropout": 0.0},
    "gw": {"name": "gw", "ngf": 8, "max_ch": 32, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1},
}
TINY_FER = {"name": "fer_cnn", "size": 32, "channels": [8, 16], "dropout": 0.0}


def tiny_trainer_params(small: dict[str, Any] | None = None, train_fer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The project's params with TINY_NETS in `train.small` and TINY_FER as `train_fer.net`, updates on top."""
    p = project_params()
    p.pop("__file__", None)
    p["train"]["small"].update({"nets": copy.deepcopy(TINY_NETS), **(small or {})})
    p["train_fer"].update({"net": copy.deepcopy(TINY_FER), **(train_fer or {})})
    return p


def dump_params(params: dict[str, Any], dest: Path) -> Path:
    """Write a params mapping as a params.yaml file."""
    import yaml

    Path(dest).write_text(yaml.safe_dump(params, sort_keys=False))
    return Path(dest)


def write_tiny_cv_params(d: Path, flowcnn: dict[str, Any], **evaluate: Any) -> Path:
    """params.yaml in folder `d` for a tiny cross-validation run: tiny nets, one short epoch, k = 3 folds, the
    Flow-CNN judge's `flowcnn` settings and `evaluate` keys on top, every output path under `d`."""
    p = tiny_trainer_params({"size": None, "epochs": 1, "batch_size": 4, "e_c": 0, "steps_per_epoch": 2, "workers": 0,
                             "image_steps": None, "keep_checkpoints": 0},
                            {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8})
    p["train"]["folds_k"] = 3
    p["evaluate"]["flowcnn"].update(flowcnn)
    p["evaluate"].update(evaluate)
    for key in ("models", "metrics", "reports", "manifests", "baselines"):
        p["paths"][key] = str(d / key)
    return dump_params(p, d / "params.yaml")


def run_emogan(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m emogan ARGS` in a subprocess, this checkout first on its path (whatever venv runs it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.run([sys.executable, "-m", "emogan", *args], cwd=cwd, env=env, capture_output=True, text=True)
