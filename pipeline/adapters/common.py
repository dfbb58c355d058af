"""What every dataset adapter shares: the manifest params, label parsing, frame listing, id matching."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES, POSE_NAMES

# Spellings seen in dataset folders and label files, mapped to CLASS_NAMES.
LABEL_ALIASES: dict[str, str] = {
    "happy": "happiness", "joy": "happiness", "sad": "sadness", "angry": "anger",
    "surprised": "surprise", "fearful": "fear", "afraid": "fear", "disgusted": "disgust",
}
# A class kept on request gets the first code after CLASS_NAMES (CK+ contempt: 7).
EXTRA_CODE = len(CLASS_NAMES)


@dataclasses.dataclass
class ManifestParams:
    """params.yaml `manifest:` (see the comments there)."""

    labels: str
    cameras: tuple[str, ...]
    int_labels: tuple[str, ...]
    excluded_labels: tuple[str, ...]
    contempt: bool
    ckplus_images: str
    ckplus_labels: str
    oulu_variant: str
    oulu_subsets: tuple[str, ...]
    image_exts: tuple[str, ...]
    video_exts: tuple[str, ...]


@dataclasses.dataclass
class Sequence:
    """One sequence as an adapter finds it; paths are relative to the dataset root."""

    subject: str
    sequence: str
    label: str = ""
    label_code: int = -1
    pose: str = ""
    frontal: list[str] = dataclasses.field(default_factory=list)
    nonfrontal: list[str] = dataclasses.field(default_factory=list)
    video: str = ""


def natural_key(text: str) -> tuple[Any, ...]:
    """The one natural sort key: digit runs compare by value (img_2 before img_10), letters ignoring case
    (b2 before C1); texts equal under that rule (S01, s1) keep a fixed order by their exact spelling."""
    runs = tuple((0, int(t), "") if t.isdigit() else (1, 0, t.casefold()) for t in re.split(r"(\d+)", text) if t)
    return runs, text


def id_key(text: str) -> str:
    """Ids compare equal up to zero padding ('1' == '001'), as the paper's label files need."""
    t = text.strip()
    return str(int(t)) if t.isdigit() else t


def list_frames(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    """Image files directly in `folder`, in natural (time) order; hidden files skipped."""
    lowered = {e.lower() for e in exts}
    return sorted(
        (p for p in folder.iterdir()
         if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in lowered),
        key=lambda p: natural_key(p.name),
    )


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders in natural order."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def parse_label(text: str, params: ManifestParams, where: str) -> tuple[str, int]:
    """A label (class name, alias or integer code per `int_labels`) as (name, code); '' gives ('', -1)."""
    t = text.strip()
    if not t:
        return "", -1
    if re.fullmatch(r"[+-]?\d+(\.0*)?", t):
        k = int(float(t))
        if not 0 <= k < len(params.int_labels):
            raise EmoganError(f"{where}: integer label {t} is outside 0..{len(params.int_labels) - 1} "
                              f"(manifest.int_labels maps integer codes to class names)")
        name = params.int_labels[k]
    else:
        name = LABEL_ALIASES.get(t.lower(), t.lower())
    return name, name_code(name, params, where)


def name_code(name: str, params: ManifestParams, where: str) -> int:
    """Code of a class name: its CLASS_NAMES index, EXTRA_CODE for kept contempt, -1 for excluded classes."""
    if name in CLASS_NAMES:
        return CLASS_NAMES.index(name)
    if name == "contempt" and params.contempt:
        return EXTRA_CODE
    if name in params.excluded_labels:
        return -1
    raise EmoganError(f"{where}: unknown expression {name!r}; expected one of {', '.join(CLASS_NAMES)} "
                      f"(or one of manifest.excluded_labels: {', '.join(params.excluded_labels)})")


def check_pose(text: str, where: str) -> str:
    """A pose name from POSE_NAMES (case-insensitive) or '' when unknown."""
    t = text.strip().lower()
    if t and t not in POSE_NAMES:
        raise EmoganError(f"{where}: unknown pose {text!r}; expected one of {', '.join(POSE_NAMES)}")
    return t


def need_dir(path: Path, what: str) -> Path:
    """`path` if it is a folder, else an EmoganError naming it."""
    if not path.is_dir():
        raise EmoganError(f"{path}: {what} not found (no such folder)")
    return path


def rel(path: Path, root: Path) -> str:
    """`path` relative to `root`, with forward slashes (manifests are portable)."""
    return path.relative_to(root).as_posix()
