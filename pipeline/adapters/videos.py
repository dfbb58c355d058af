"""Video datasets (ADFES, MMI, your own): video files anywhere under SOURCE plus a labels CSV.

The labels CSV (`;` or `,`, header line required) has columns `video` (path relative to
SOURCE, or a bare file name found anywhere under it) and `label` (class name or integer code),
and optionally `subject`, `sequence`, `pose`. Without them the subject is the file name up to
its first `-` or `_` (ADFES `F01-Anger-Face Forward.mpeg` -> F01, MMI `S001-001.avi` -> S001)
and the sequence is the file name without extension. Videos not in the CSV are listed unlabeled.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from pipeline.adapters.common import ManifestParams, Sequence, check_pose, natural_key, parse_label, rel
from pipeline.errors import EmoganError

log = logging.getLogger(__name__)


def find_videos(source: Path, params: ManifestParams) -> list[Path]:
    """Video files under `source` (recursive, hidden entries skipped), in natural order."""
    exts = {e.lower() for e in params.video_exts}
    found = [p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in exts
             and not any(part.startswith(".") for part in p.relative_to(source).parts)]
    return sorted(found, key=lambda p: natural_key(rel(p, source)))


def frame_count(path: Path) -> int:
    """Frame count from the container (0 when the video cannot be opened; crop reports it then)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if cap.isOpened() else 0
    finally:
        cap.release()


def read_video_labels(path: Path) -> list[tuple[str, dict[str, str]]]:
    """The labels CSV as (where, row) pairs with lower-cased column names."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise EmoganError(f"{path}: cannot read the labels file ({e})") from None
    lines = text.splitlines()
    if not lines:
        return []
    sep = ";" if ";" in lines[0] else ","
    reader = csv.DictReader(lines, delimiter=sep)
    cols = [c.strip().lower() for c in reader.fieldnames or []]
    if "video" not in cols or "label" not in cols:
        raise EmoganError(f"{path}:1: the header needs `video` and `label` columns (found {', '.join(cols)})")
    return [(f"{path}:{i + 2}", {k.strip().lower(): (v or "").strip() for k, v in row.items() if k})
            for i, row in enumerate(reader)]


def scan(source: Path, params: ManifestParams) -> list[Sequence]:
    """One sequence per video file."""
    videos = find_videos(source, params)
    by_rel = {rel(p, source): p for p in videos}
    by_name: dict[str, list[Path]] = {}
    for p in videos:
        by_name.setdefault(p.name, []).append(p)
    labelled: dict[Path, tuple[str, dict[str, str]]] = {}
    if params.labels:
        lpath = Path(params.labels) if Path(params.labels).is_absolute() else source / params.labels
        if not lpath.is_file():
            raise EmoganError(f"{lpath}: labels file not found; pass --labels PATH, or --labels '' "
                              "to list every video as unlabeled")
        missing = []
        for where, row in read_video_labels(lpath):
            name = row.get("video", "")
            hit = by_rel.get(name.replace("\\", "/"))
            if hit is None and len(by_name.get(Path(name).name, [])) == 1:
                hit = by_name[Path(name).name][0]
            if hit is None:
                if len(by_name.get(Path(name).name, [])) > 1:
                    raise EmoganError(f"{where}: {name!r} matches several videos; give its path relative to {source}")
                missing.append(name)
                continue
            if hit in labelled:
                raise EmoganError(f"{where}: {name!r} is already labelled at {labelled[hit][0]}")
            labelled[hit] = (where, row)
        if missing:
            log.warning("%s: %d labelled video(s) not found under %s (first: %s)",
                        lpath, len(missing), source, ", ".join(missing[:5]))
    seqs, seen = [], {}
    for p in videos:
        where, row = labelled.get(p, (str(p), {}))
        label, code = parse_label(row.get("label", ""), params, where)
        subject = row.get("subject") or re.split(r"[-_]", p.stem, maxsplit=1)[0]
        sequence = row.get("sequence") or p.stem
        key = (subject, sequence)
        if key in seen:
            raise EmoganError(f"{p}: subject/sequence {subject}/{sequence} is also {seen[key]}; "
                              "give distinct `sequence` values in the labels CSV")
        seen[key] = p
        seqs.append(Sequence(subject, sequence, label, code, check_pose(row.get("pose", ""), where),
                             video=rel(p, source)))
    return seqs
