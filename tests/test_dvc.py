"""dvc.yaml's dependencies are complete: every project module a stage's `emogan` command runs (its imports,
imports inside functions included, followed transitively) is among the stage's code deps (a file or a folder
above it), and no stage depends on a params key that only says how the work is run (worker counts)."""
from __future__ import annotations

import ast
import inspect
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import PARAMS_FILE, ROOT
from test_layers import graph, import_names, project_modules

# params.yaml keys that change how a stage runs, never what it writes (each says so in params.yaml).
EXECUTION_ONLY = ("synth.workers", "synth_ckplus.workers", "crop.workers", "flow.workers", "flow.cv2_threads",
                  "evaluate.landmark.workers")


def _stages() -> list[tuple[str, list[str], list[str], list[str]]]:
    """(stage name, cmd words, code/data deps as written, params keys) of every stage, foreach/matrix expanded."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    out = []
    with Repo(str(ROOT)) as repo:
        for st in repo.index.stages:
            if not getattr(st, "cmd", None):
                continue
            cmd = st.cmd if isinstance(st.cmd, str) else " ".join(st.cmd)
            deps, params = [], []
            for d in st.deps:
                if isinstance(d, ParamsDependency):
                    params += list(d.params)
                else:
                    deps.append(str(d.def_path))
            out.append((st.addressing, shlex.split(cmd), deps, params))
    return out


STAGES = _stages()


def _imports_of_function(fn) -> set[str]:
    """Project modules the command function imports (its own body) plus its module's top-level imports."""
    mods = project_modules()
    tree = ast.parse(Path(inspect.getsourcefile(fn)).read_text())
    fdef = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == fn.__name__)
    nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))] + list(ast.walk(fdef))
    return import_names(nodes, mods)


def modules_run_by(command: str) -> set[Path]:
    """Files of the project modules `emogan COMMAND` runs: its module and everything it imports, transitively.
    A module of several thin commands (training/commands/) is followed from that command's own imports only.
    Docstring-only __init__ files are left out: they run nothing."""
    from emogan.cli import app

    fn = next(c.callback for c in app.registered_commands if c.name == command)
    mods, g = project_modules(), graph()
    start = fn.__module__
    first = _imports_of_function(fn) if start.startswith("training.commands.") else g[start]
    seen, todo = {start}, sorted(set(first) - {start})
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += sorted(g[m])
    files = {mods[m].relative_to(ROOT) for m in seen}
    return {f for f in files if not (f.name == "__init__.py" and _docstring_only(ROOT / f))}


def _docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _covered(f: Path, deps: list[str]) -> bool:
    return any(f == Path(d) or Path(d) in f.parents for d in deps)


@pytest.mark.parametrize("name,cmd,deps,params", STAGES, ids=[s[0] for s in STAGES])
def test_every_module_a_stage_runs_is_among_its_deps(name, cmd, deps, params):
    assert cmd[0] == "emogan", f"{name}: stage commands are `emogan ...`"
    missing = sorted(str(f) for f in modules_run_by(cmd[1]) if not _covered(f, deps))
    assert not missing, f"dvc.yaml stage {name} runs {missing} but does not list them (or a folder above) in deps"
    for d in deps:  # a listed code dep exists (a renamed module would leave a stale, silently ignored path)
        if d.startswith(("pipeline/", "training/", "emogan/")):
            assert (ROOT / d).exists(), f"dvc.yaml stage {name}: dep {d} does not exist"


@pytest.mark.parametrize("name,cmd,deps,params", STAGES, ids=[s[0] for s in STAGES])
def test_worker_counts_never_invalidate_a_stage(name, cmd, deps, params):
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    for key in params:
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"dvc.yaml stage {name}: params key {key} not in params.yaml"
            node = node[part]
        hit = [k for k in EXECUTION_ONLY if k == key or k.startswith(key + ".")]
        assert not hit, f"dvc.yaml stage {name} depends on {hit} through `{key}`: list the keys that shape its output"


def test_the_check_sees_a_missing_module():
    """The synth stage runs face_model.py: without it in deps the check above would fail."""
    synth = next(s for s in STAGES if s[0] == "synth")
    ran = modules_run_by(synth[1][1])
    assert Path("pipeline/face_model.py") in ran and Path("pipeline/pool.py") in ran
    assert not _covered(Path("pipeline/face_model.py"), [d for d in synth[2] if d != "pipeline/face_model.py"])


def test_dvc_push_has_a_default_remote_inside_the_clone_and_git_ignores_it(tmp_path):
    """`dvc repro` ends with DVC's "Use `dvc push`" hint: the clone's .dvc/config names a default remote (a
    git-ignored folder of the clone, README "Where outputs land"), and a push to it really stores a tracked file."""
    import shutil
    import subprocess
    import sys

    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        name = repo.config["core"]["remote"]
        url = Path(repo.config["remote"][name]["url"])
    assert url.resolve().parent == ROOT.resolve(), f"the default remote {url} is not a folder of the clone"
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{url.name}/x"], cwd=ROOT)
    assert ignored.returncode == 0, f"{url.name}/ is not git-ignored"

    # The same config in a scratch repo: `dvc push` writes the tracked file's content into <repo>/<url.name>.
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    (tmp_path / "a.txt").write_text("motion\n")
    for args in (["add", "-q", "a.txt"], ["push", "-q"]):
        r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    stored = [p for p in (tmp_path / url.name).rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].read_text() == "motion\n"


def test_make_demo_relinks_dvc_outputs_so_they_are_one_copy_on_disk(tmp_path):
    """DVC 3 copies a stage's outputs into its cache after `dvc repro` (two copies on disk, measured on the demo:
    4.8 GB of data/ and 3.8 GB of cache); `dvc checkout --relink` with the project's cache.type hardlinks them.
    The Makefile's demo target runs it after the repro."""
    import shutil
    import subprocess
    import sys

    recipe = subprocess.run(["make", "-n", "-C", str(ROOT), "demo", "STAMP=/dev/null"], capture_output=True,
                            text=True).stdout
    assert recipe.index("dvc repro") < recipe.index("dvc checkout --relink"), recipe
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    (tmp_path / "dvc.yaml").write_text("stages:\n  make:\n    cmd: mkdir -p out && echo motion > out/a.txt\n"
                                       "    outs:\n      - out\n")

    def dvc(*args):
        r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    dvc("repro", "-q")
    links = (tmp_path / "out" / "a.txt").stat().st_nlink
    dvc("checkout", "--relink", "-q")
    assert (tmp_path / "out" / "a.txt").read_text() == "motion\n"
    assert links == 1 and (tmp_path / "out" / "a.txt").stat().st_nlink == 2, f"links before, after: {links}"


def test_writer_locks_are_not_part_of_the_folders_stages_depend_on(tmp_path):
    """An output's writer lock (pipeline/lock.py) sits beside it, holding the writer's pid: inside metrics/eval/full,
    which `report` depends on, so every evaluation's pid changed the report's dependency (the demo re-ran it on
    every `dvc repro`). The project's .dvcignore leaves lock files out of DVC's hashes."""
    import shutil
    import subprocess
    import sys

    from pipeline.lock import lock_path, writer_lock

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "dvc.yaml").write_text("stages:\n  make:\n    cmd: mkdir -p res/part && echo motion > res/part/a.txt\n"
                                       "    outs:\n      - res/part\n"
                                       "  use:\n    cmd: cat res/part/a.txt > b.txt\n    deps:\n      - res\n"
                                       "    outs:\n      - b.txt\n")

    def dvc(*args):
        r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    with writer_lock(tmp_path / "res" / "part"):   # as `emogan evaluate --out res/part` takes it
        dvc("repro", "-q")
    assert lock_path(tmp_path / "res" / "part").read_text().strip().isdigit()
    lock_path(tmp_path / "res" / "part").write_text("99999\n")   # the next writer's pid
    assert "up to date" in dvc("status"), dvc("status")
