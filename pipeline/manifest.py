"""Stage `manifest`: one CSV row per sequence of a dataset, whatever its on-disk layout.

Columns (docs/ARCHITECTURE.md, "Interfaces between stages"): MANIFEST_COLUMNS. `root` is the
dataset folder relative to the CSV file's own folder (so manifests tracked in git stay valid in
any clone); `frontal`/`nonfrontal` are `|`-joined frame paths relative to `root`; `video` a path
relative to `root`; `label_code` -1 for unlabeled sequences (label empty) and for excluded
classes (label kept, e.g. CK+ contempt).
"""
from __future__ import annotations

import csv
import dataclasses
import enum
import logging
import os
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import typer

from pipeline.adapters.common import ManifestParams, Sequence, natural_key
from pipeline.errors import EmoganError
from pipeline.params import PARAMS_OPTION
from pipeline.safepath import inside, safe_name

log = logging.getLogger(__name__)
MANIFEST_COLUMNS: tuple[str, ...] = (
    "dataset", "subject", "sequence", "label", "label_code", "pose", "root",
    "frontal", "nonfrontal", "video", "n_frames",
)
Format = Literal["emotiongan", "ckplus", "oulu", "videos"]   # `emogan manifest --format` (an adapter each)
FORMATS: tuple[str, ...] = get_args(Format)
# Oulu-CASIA SPECTRUM/LIGHTING folders (pipeline/adapters/oulu.py), an Enum: typer takes lists of Enums
OuluSubset = enum.Enum("OuluSubset", {f"{s}_{li}": f"{s}/{li}" for s in ("VL", "NI") for li in ("Strong", "Weak", "Dark")},
                       type=str)


def build_manifest(source: Path, fmt: str, dataset: str, params: ManifestParams,
                   root: str | None = None) -> list[dict[str, Any]]:
    """Scan `source` in layout `fmt` into manifest rows; `root` is what the rows record (default: source)."""
    from pipeline.adapters import ADAPTERS
    from pipeline.adapters.videos import frame_count

    if fmt not in ADAPTERS:
        raise EmoganError(f"unknown format {fmt!r}; expected one of {', '.join(ADAPTERS)}")
    if not source.is_dir():
        raise EmoganError(f"{source}: dataset folder not found")
    seqs: list[Sequence] = ADAPTERS[fmt](source, params)
    seqs.sort(key=lambda s: (natural_key(s.subject), natural_key(s.sequence)))
    rows = []
    for s in seqs:
        check_row_paths(dataclasses.asdict(s), source, f"{source} ({fmt} layout)")
        n = frame_count(source / s.video) if s.video else len(s.frontal)
        rows.append({
            "dataset": dataset, "subject": s.subject, "sequence": s.sequence, "label": s.label,
            "label_code": s.label_code, "pose": s.pose, "root": root if root is not None else str(source),
            "frontal": "|".join(s.frontal), "nonfrontal": "|".join(s.nonfrontal), "video": s.video,
            "n_frames": n,
        })
    if not rows:
        raise EmoganError(f"{source}: no sequences found in the {fmt!r} layout (see docs/ARCHITECTURE.md)")
    return rows


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Write a comma-separated file with a header, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV written by write_csv; an EmoganError names the file if a column is missing."""
    if not path.is_file():
        raise EmoganError(f"{path}: file not found")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise EmoganError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
        return list(reader)


def read_manifest(path: Path) -> list[dict[str, str]]:
    """A manifest's rows (strings, as in the file)."""
    return read_csv(path, MANIFEST_COLUMNS)


def resolve_root(csv_path: Path, root: str) -> Path:
    """The dataset folder a row's `root` names (relative roots are relative to the CSV's folder)."""
    p = Path(root)
    return p if p.is_absolute() else csv_path.parent / p


def split_frames(field: str) -> list[str]:
    """A `|`-joined frame list as a list ('' -> [])."""
    return field.split("|") if field else []


def check_row_paths(row: dict[str, Any], root: Path, where: object) -> None:
    """A manifest row's subject/sequence are folder names and its frame/video paths stay inside `root`
    (SequenceError naming `where` otherwise): what crop and build_manifest check before using them."""
    for k in ("subject", "sequence"):
        safe_name(str(row[k]), k, where)
    for k in ("frontal", "nonfrontal"):
        frames = row[k] if isinstance(row[k], list) else split_frames(row[k])
        for f in frames:
            inside(root, f, f"{k} frame", where)
    if row.get("video"):
        inside(root, row["video"], "video", where)


def manifest_command(
    source: Path = typer.Argument(..., help="dataset folder"),
    fmt: Format = typer.Option(..., "--format", "-f", help="on-disk layout (README: Use your own dataset)"),
    out: Path = typer.Option(None, "--out", "-o", help="manifest CSV (default: <paths.manifests>/<dataset>.csv)"),
    dataset: str = typer.Option(None, help="dataset name (default: the --out file name, else SOURCE's name)"),
    labels: str = typer.Option(None, help="labels file for emotiongan/videos, relative to SOURCE; '' for none"),
    contempt: bool = typer.Option(None, "--contempt/--no-contempt", help="ckplus: keep contempt as code 7"),
    subset: list[OuluSubset] = typer.Option(None, help="oulu: SPECTRUM/LIGHTING, repeatable (default VL/Strong)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """List a dataset's sequences (one CSV row each) from its on-disk layout."""
    from pipeline.params import load_params, path_param, section

    params = load_params(params_file)
    p = section(params, "manifest", ManifestParams, labels=labels, contempt=contempt,
                oulu_subsets=tuple(s.value for s in subset) if subset else None)
    name = dataset or (out.stem if out is not None else source.resolve().name)
    out = out if out is not None else path_param(params, "manifests") / f"{name}.csv"
    # root is stored relative to the manifest's folder so that the file is valid in any clone.
    root = os.path.relpath(source.resolve(), out.parent.resolve()) if not source.is_absolute() else str(source)
    rows = build_manifest(source, fmt, name, p, root=Path(root).as_posix())
    write_csv(out, MANIFEST_COLUMNS, rows)
    n_lab = sum(int(r["label_code"]) >= 0 for r in rows)
    typer.echo(f"{out}: {len(rows)} sequences ({n_lab} labelled) from {source} [{fmt}]")
