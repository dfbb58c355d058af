"""params.yaml is the only source of values: every params dataclass field is in it (with no default in code
that could drift), no data path is written in code, and a command without params.yaml stops with one line."""
from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import PARAMS_FILE, ROOT, project_params, run_emogan
from pipeline.params import ParamsError, as_dict, load_params, path_param, section, subsection

# Every params dataclass and the params.yaml section it is read from.
SECTIONS: list[tuple[str, str, str]] = [
    ("synth", "pipeline.synth", "SynthParams"),
    ("synth_ckplus", "pipeline.synth", "SynthParams"),
    ("manifest", "pipeline.adapters.common", "ManifestParams"),
    ("crop", "pipeline.crop", "CropParams"),
    ("augment", "pipeline.augment", "AugmentParams"),
    ("flow", "pipeline.flow", "FlowParams"),
    ("stats", "pipeline.stats", "StatsParams"),
    ("normalize", "pipeline.normalize", "NormalizeParams"),
    ("folds", "pipeline.folds", "FoldsParams"),
    ("weights", "pipeline.weights", "WeightsParams"),
    ("train", "training.config", "TrainSection"),
    ("train.paper", "training.config", "TrainConfig"),
    ("train.small", "training.config", "TrainConfig"),
    ("train.medium", "training.config", "TrainConfig"),
    ("train_fer", "training.config", "TrainFerConfig"),
    ("frontalize", "training.inference.frontalize", "FrontalizeParams"),
    ("evaluate", "training.evaluation.evaluate", "EvaluateParams"),
    ("evaluate.flowcnn", "training.evaluation.flowcnn", "FlowCnnParams"),
    ("evaluate.landmark", "training.evaluation.baselines", "LandmarkParams"),
    ("report", "training.evaluation.report", "ReportParams"),
]

# Params dataclasses nested inside a section's dataclass (read by its parser, checked by the test below).
NESTED: list[tuple[str, str]] = [
    ("training.config", "AdamSpec"), ("training.config", "SgdSpec"), ("training.config", "EferSpec"),
]


def _cls(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


def _plain(x):
    """Dataclasses, tuples and lists as plain JSON-like values, to compare with what YAML gives."""
    if dataclasses.is_dataclass(x):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


@pytest.mark.parametrize("path,module,name", SECTIONS, ids=[s[0] for s in SECTIONS])
def test_every_field_is_in_params_yaml_with_the_value_the_code_uses(path, module, name):
    params = project_params()
    obj = subsection(params, path, _cls(module, name))
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    for key in path.split("."):
        raw = raw[key]
    assert set(raw) == {f.name for f in dataclasses.fields(obj)}
    assert _plain(obj) == _plain(raw)


def _params_dataclasses() -> list[tuple[str, str]]:
    """(module, class) of every dataclass in pipeline/ and training/ whose docstring names params.yaml."""
    found = []
    for f in sorted([*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("training/**/*.py")]):
        tree = ast.parse(f.read_text())
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            deco = [ast.unparse(d) for d in node.decorator_list]
            doc = ast.get_docstring(node) or ""
            if any("dataclass" in d for d in deco) and doc.startswith("params.yaml"):
                mod = ".".join(f.relative_to(ROOT).with_suffix("").parts)
                found.append((mod, node.name))
    return found


def test_params_dataclasses_have_no_defaults_and_are_all_checked():
    listed = {(m, n) for _, m, n in SECTIONS}
    found = _params_dataclasses()
    assert len(found) >= 15
    for module, name in found:
        cls = _cls(module, name)
        with_default = [f.name for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert not with_default, f"{module}.{name}: defaults in code for {with_default}: params.yaml states them"
        assert (module, name) in listed or (module, name) in NESTED, \
            f"{module}.{name} is not in SECTIONS: add its params.yaml section"


@pytest.mark.parametrize("name", ["paper", "small"])
def test_the_training_configs_nested_specs_are_params_yaml_typed(name):
    """optim.<role> and efer come out of params.yaml as typed specs holding exactly its values."""
    from training.config import OPTIMIZERS, EferSpec, train_config

    cfg = train_config(project_params(), name)
    raw = yaml.safe_load(PARAMS_FILE.read_text())["train"][name]
    for role, spec in raw["optim"].items():
        typed = getattr(cfg.optim, role)
        assert type(typed) is OPTIMIZERS[spec["kind"]]
        assert _plain(typed) == _plain(spec)
    assert isinstance(cfg.efer, EferSpec)
    assert {k: v for k, v in _plain(cfg.efer).items() if v is not None} == raw["efer"]


def test_train_fer_resolves_to_a_typed_run_config(tmp_path):
    """`emogan train-fer` runs from a typed config (no string-key reads), params.yaml's values in it."""
    from training.config import FerRunConfig, TrainFerConfig, resolve_fer_run

    c = resolve_fer_run(PARAMS_FILE, stores=[tmp_path / "a.zarr"], out=tmp_path / "fer", epochs=2)
    assert isinstance(c, FerRunConfig) and isinstance(c.train_fer, TrainFerConfig)
    assert c.train_fer.epochs == 2 and c.train_fer.lr == project_params()["train_fer"]["lr"]
    assert c.fold == project_params()["train"]["fold"] and c.device is None


def test_dp_input_channels_must_be_stated_and_match_the_conditional_switch():
    from training.config import train_config

    params = project_params()
    del params["train"]["small"]["nets"]["dp"]["in_ch"]
    with pytest.raises(ParamsError, match="nets.dp.in_ch must be 4"):
        train_config(params, "small")
    params["train"]["small"]["nets"]["dp"]["in_ch"] = 2
    with pytest.raises(ParamsError, match="nets.dp.in_ch must be 4"):
        train_config(params, "small")


def test_a_neutral_row_weight_that_would_drop_or_flip_the_rows_is_refused():
    from training.config import train_config

    params = project_params()
    assert train_config(params, "paper").flow_loss_neutral_weight == 1.0   # the paper weighs every row alike
    for bad in (0.0, -1.0):
        params["train"]["small"]["flow_loss_neutral_weight"] = bad
        with pytest.raises(ParamsError, match="train.small: flow_loss_neutral_weight must be > 0"):
            train_config(params, "small")


def test_a_missing_or_unknown_key_is_named():
    params = project_params()
    del params["flow"]["winsize"]
    params["flow"]["windowsize"] = 15
    from pipeline.flow import FlowParams

    with pytest.raises(ParamsError, match="unknown key.*windowsize"):
        section(params, "flow", FlowParams)
    params["flow"].pop("windowsize")
    with pytest.raises(ParamsError, match=r"params.yaml: section 'flow': missing key\(s\) winsize"):
        section(params, "flow", FlowParams)


def test_paths_come_from_params_yaml_only():
    params = project_params()
    assert path_param(params, "reports") == Path(params["paths"]["reports"])
    del params["paths"]["reports"]
    with pytest.raises(ParamsError, match="paths.reports"):
        path_param(params, "reports")
    # No data path written in code: none of params.yaml's folders appears as a string in the packages.
    folders = {v for v in yaml.safe_load(PARAMS_FILE.read_text())["paths"].values() if "/" in v or "_" in v}
    for f in [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("training/**/*.py"), *ROOT.glob("emogan/**/*.py")]:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in folders, f"{f}: data path {node.value!r} in code (params.yaml paths)"


def test_load_params_without_a_file_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError) as e:
        load_params()
    msg = str(e.value)
    assert "\n" not in msg and "params.yaml" in msg and "--params" in msg
    with pytest.raises(ParamsError, match="elsewhere.yaml: params file not found"):
        load_params(tmp_path / "elsewhere.yaml")


# A few commands of each package: each stops at params.yaml before reading its inputs. With --params they
# go on and fail on their made-up inputs instead (not synth and weights fetch: they would render, download).
COMMANDS = [["synth", "--out", "o"], ["crop", "m.csv"], ["flow", "d"], ["normalize", "d"], ["folds", "d"],
            ["train", "s.zarr", "--out", "r"], ["train-fer", "s.zarr", "--out", "r"],
            ["train-flowcnn", "s.zarr", "--fold", "0"], ["evaluate", "r", "s.zarr"], ["report", "e"],
            ["export", "r", "--out", "b.safetensors"], ["weights", "fetch", "fer2013"]]
WOULD_RUN = ("synth", "weights")


@pytest.mark.parametrize("args", COMMANDS, ids=[c[0] if c[0] != "weights" else "weights-fetch" for c in COMMANDS])
def test_a_command_without_params_yaml_stops_with_one_line(args, tmp_path, monkeypatch):
    from emogan.cli import app

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, args)
    assert isinstance(r.exception, ParamsError), (r.output, r.exception)
    msg = str(r.exception)
    assert "\n" not in msg and "no params.yaml in" in msg and "--params PATH" in msg
    if args[0] not in WOULD_RUN:
        r = CliRunner().invoke(app, [*args, "--params", str(PARAMS_FILE)])
        assert r.exception is not None and not isinstance(r.exception, ParamsError), r.exception


def test_the_console_prints_that_one_line_and_exits_2(tmp_path):
    r = run_emogan("flow", "synth", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: no params.yaml in {tmp_path}: run emogan in the project folder "
                                             "(where params.yaml is) or pass --params PATH"]


def test_as_dict_round_trips_a_section():
    from pipeline.flow import FlowParams

    p = section(project_params(), "flow", FlowParams)
    assert FlowParams(**as_dict(p)) == p
    assert load_params(PARAMS_FILE)["__file__"] == str(PARAMS_FILE)
