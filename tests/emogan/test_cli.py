"""The composition root: `emogan` mounts pipeline's stage commands and the trainer's thin commands, every
command a DVC stage runs among them, and `python -m emogan --help` lists them all. One CLI: a walk over
EVERY command checks the conventions (docs/ARCHITECTURE.md, README): the positional argument is the
input path(s), `-o/--out` is what a command writes, and a fixed set of choices is a choice `--help` lists."""
from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import pytest
import typer
import yaml
from typer.models import ArgumentInfo, OptionInfo
from typer.testing import CliRunner

from conftest import ROOT, run_emogan
from test_dvc import STAGES

# Options that take one of a fixed set wherever they appear: a free string there is a defect.
CHOICE_OPTIONS = {"--format", "--config", "--ablation", "--efer", "--representation", "--device", "--layout",
                  "--subset"}
# Commands whose positional argument is not an input path, and why (none may write without -o/--out).
POSITIONAL_EXCEPTIONS = {"weights fetch": "NAME picks one of params.yaml's pinned weights: a choice, not a path"}
WIDE = {"COLUMNS": "400"}  # --help on one line per option, so that no choice is wrapped mid-word


def walk(app: typer.Typer, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(`name sub`, callback) of every command of a typer app, sub-apps included."""
    for c in app.registered_commands:
        yield (prefix + (c.name or c.callback.__name__.replace("_", "-"))).strip(), c.callback
    for g in app.registered_groups:
        yield from walk(g.typer_instance, prefix + g.name + " ")


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the type inside Optional[...] / List[...], whether it was a list)."""
    is_list = False
    while True:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Union and type(None) in args:
            tp = next(a for a in args if a is not type(None))
        elif origin in (list, tuple, typing.List):
            tp, is_list = args[0], True
        else:
            return tp, is_list


def choices_of(tp: Any) -> Optional[list[str]]:
    """The values of a Literal or Enum type (inside Optional/List), else None."""
    tp, _ = _unwrap(tp)
    if typing.get_origin(tp) is Literal:
        return [str(a) for a in typing.get_args(tp)]
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return [str(m.value) for m in tp]
    return None


def parameters(callback) -> list[dict[str, Any]]:
    """Each parameter of a typer command: kind (argument|option), its flags, its type, its choices."""
    hints = typing.get_type_hints(callback)
    out = []
    for name, p in inspect.signature(callback).parameters.items():
        info = p.default
        kind = "argument" if isinstance(info, ArgumentInfo) else "option" if isinstance(info, OptionInfo) else None
        assert kind, f"{callback.__module__}.{callback.__name__}({name}): declare it with typer.Option/Argument"
        decls = list(getattr(info, "param_decls", None) or []) if kind == "option" else []
        flags = {d for decl in decls for d in decl.split("/")} or {"--" + name.replace("_", "-")}
        out.append({"name": name, "kind": kind, "flags": flags, "type": hints[name], "choices": choices_of(hints[name])})
    return out


def violations(app: typer.Typer) -> list[str]:
    """Every breach of the CLI conventions by the commands of `app` (empty: one tool)."""
    bad = []
    meaning: dict[str, tuple[Any, str]] = {}  # long flag -> (value type, first command using it)
    for cmd, callback in walk(app):
        params = parameters(callback)
        for p in (p for p in params if p["kind"] == "option"):
            for flag in (f for f in p["flags"] if f.startswith("--")):
                tp = _unwrap(p["type"])[0]
                seen = meaning.setdefault(flag, (tp, cmd))
                if seen[0] != tp:
                    bad.append(f"{cmd}: {flag} takes {tp}, but {seen[1]}'s {flag} takes {seen[0]}: one flag, one meaning")
        for p in params:
            if p["kind"] == "argument" and cmd not in POSITIONAL_EXCEPTIONS and _unwrap(p["type"])[0] is not Path:
                bad.append(f"{cmd}: positional {p['name'].upper()} is {p['type']}, not an input path")
            if p["kind"] == "option" and p["flags"] & CHOICE_OPTIONS and p["choices"] is None:
                bad.append(f"{cmd}: {sorted(p['flags'] & CHOICE_OPTIONS)[0]} is a free {p['type']}, not a choice")
        if not any({"--out", "-o"} <= p["flags"] for p in params):
            bad.append(f"{cmd}: writes but has no -o/--out")
        help_ = CliRunner().invoke(app, [*cmd.split(), "--help"], env=WIDE)
        if help_.exit_code != 0:
            bad.append(f"{cmd} --help: exit {help_.exit_code}: {help_.output[-300:]}")
            continue
        for p in params:
            missing = [c for c in p["choices"] or [] if c not in help_.output]
            if missing:
                bad.append(f"{cmd} --help does not list {missing} of {p['name']}")
    # `--fold 3` (a fold number) beside `--folds F.csv` (a file): a flag and its plural, two kinds of value
    bad += [f"{meaning[f + 's'][1]}: {f}s beside {meaning[f][1]}'s {f}: a flag and its plural mean different things"
            for f in sorted(meaning) if f + "s" in meaning and meaning[f + "s"][0] != meaning[f][0]]
    return bad


def test_the_app_mounts_both_packages_commands_and_every_dvc_stage_command():
    from emogan.cli import app

    mounted = {c.name: c.callback for c in app.registered_commands}
    foreign = {n: f.__module__ for n, f in mounted.items() if not f.__module__.startswith(("pipeline.", "training.commands."))}
    assert not foreign, f"commands must come from a pipeline stage module or training/commands: {foreign}"
    stage_commands = {cmd[1] for _, cmd, _, _ in STAGES}
    assert stage_commands <= set(mounted), stage_commands - set(mounted)
    assert {"synth", "normalize", "train", "evaluate", "frontalize"} <= set(mounted)


def test_python_m_emogan_help_lists_every_command():
    from emogan.cli import app

    r = run_emogan("--help")
    assert r.returncode == 0, r.stderr
    missing = [c.name for c in app.registered_commands if c.name not in r.stdout]
    assert not missing and "weights" in r.stdout, missing


def test_every_command_follows_the_one_convention():
    """Walks EVERY command: --help works and lists every choice; -o/--out; positional = input path(s)."""
    from emogan.cli import app

    names = [c for c, _ in walk(app)]
    assert len(names) >= 20 and "weights fetch" in names and "flow" in names
    assert violations(app) == []


def test_the_walk_sees_each_kind_of_breach():
    """The check above can fail: a command with a name as positional, no -o, a free-string --device, a flag
    whose type differs between commands, a flag and its plural."""
    bad = typer.Typer()

    @bad.command("flow")
    def flow(dataset: str = typer.Argument(...), out: Optional[Path] = typer.Option(None, "--out"),
             device: str = typer.Option("cpu", "--device")) -> None:
        """A command as the CLI had them before one convention."""

    @bad.command("train")
    def train(store: Path = typer.Argument(...), out: Path = typer.Option(..., "--out", "-o"),
              fold: int = typer.Option(0, "--fold"), folds: Path = typer.Option(None, "--folds")) -> None:
        """--fold is a fold number and --folds a file: two meanings one letter apart."""

    @bad.command("evaluate")
    def evaluate(store: Path = typer.Argument(...), out: Path = typer.Option(..., "--out", "-o"),
                 fold: str = typer.Option("0", "--fold")) -> None:
        """--fold as a string here, an int in train."""

    @bad.command("ok")
    def ok(store: Path = typer.Argument(...), out: Path = typer.Option(..., "--out", "-o"),
           representation: Literal["polar", "cartesian"] = typer.Option("polar", "--representation")) -> None:
        """A command that follows it."""

    found = violations(bad)
    assert len(found) == 5, found
    assert any("one flag, one meaning" in v and v.startswith("evaluate") for v in found)
    assert any("--folds beside train's --fold" in v for v in found)
    assert any("positional DATASET" in v for v in found) and any("no -o/--out" in v for v in found)
    assert any("--device is a free" in v for v in found)
    assert not [v for v in found if v.startswith("ok")]


def test_choice_lists_mirror_params_yaml_and_the_stages():
    """The choices are the sets the code accepts: params.yaml's train configs and ablations, the store's
    representations, the manifest adapters, the weights params.yaml pins."""
    from pipeline.adapters import ADAPTERS
    from pipeline.manifest import FORMATS
    from pipeline.store import REPRESENTATIONS
    from pipeline.weights import WeightsParams, fetch_cmd
    from pipeline import normalize
    from training.commands import choices

    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    assert set(typing.get_args(choices.Config)) == {k for k, v in train.items() if isinstance(v, dict) and "epochs" in v}
    assert set(typing.get_args(choices.Ablation)) == set(train["ablations"])
    assert set(FORMATS) == set(ADAPTERS)
    rep = next(p for p in parameters(normalize.cli) if p["name"] == "representation")
    assert set(rep["choices"]) == set(REPRESENTATIONS)
    name = next(p for p in parameters(fetch_cmd) if p["name"] == "name")
    assert set(name["choices"]) == {f.name for f in dataclasses.fields(WeightsParams)}


@pytest.mark.parametrize("args", [["train", "s.zarr", "-o", "r", "--config", "huge"],
                                  ["normalize", "f.zarr", "--representation", "log-polar"],
                                  ["manifest", "src", "--format", "mmi"]])
def test_a_value_outside_the_choices_stops_before_any_work(args, tmp_path):
    r = CliRunner().invoke(__import__("emogan.cli", fromlist=["app"]).app, args)
    assert r.exit_code == 2 and "is not one of" in r.output, r.output
