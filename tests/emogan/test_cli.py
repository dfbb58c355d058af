"""The composition root: `emogan` mounts pipeline's stage commands and the trainer's thin commands, every
command a DVC stage runs among them, and `python -m emogan --help` lists them all."""
from __future__ import annotations

from conftest import run_emogan
from test_dvc import STAGES


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
