"""Stage `folds`: k-fold subject-independent cross-validation (the paper's 10-fold protocol).

Subjects are sorted (natural order: digit runs compared as numbers, so S2 < S10 and zero-padded
ids sort as usual) and dealt round-robin: the subject of rank r goes to fold r mod k. Every row
of a subject is in one fold, so no subject is ever in both the train and the test split.
Output: `data_manifests/<dataset>_folds.csv` with header `subject,fold`.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import typer

from pipeline.errors import EmoganError
from pipeline.params import ParamsError, load_params, path_param, section

log = logging.getLogger(__name__)


@dataclass
class FoldsParams:
    """params.yaml `folds`: the number of folds."""

    k: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 2:
            raise ValueError(f"k = {self.k!r}: expected an integer >= 2")


def load_folds_params(params: dict[str, Any], **overrides: Any) -> FoldsParams:
    """params.yaml `folds` section; ParamsError naming the file otherwise."""
    try:
        return section(params, "folds", FoldsParams, **overrides)
    except ValueError as e:
        raise ParamsError(f"{params.get('__file__', 'params')}: section 'folds': {e}") from None


def natural_key(s: str) -> list[Any]:
    """Sort key comparing digit runs as numbers ("S2" < "S10")."""
    import re

    return [(0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]


def assign_folds(subjects: Iterable[str], k: int) -> dict[str, int]:
    """Subject id -> fold in [0, k): unique subjects sorted naturally, rank r goes to fold r mod k."""
    if k < 2:
        raise ValueError(f"k = {k}: need at least 2 folds")
    ordered = sorted(set(subjects), key=natural_key)
    return {s: r % k for r, s in enumerate(ordered)}


def read_subjects(manifest: Path) -> list[str]:
    """The `subject` column of a manifest CSV; EmoganError naming the file otherwise."""
    if not manifest.is_file():
        raise EmoganError(f"{manifest}: manifest not found (run `emogan manifest` first)")
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        if "subject" not in (reader.fieldnames or []):
            raise EmoganError(f"{manifest}: no `subject` column (columns: {reader.fieldnames})")
        subjects = [row["subject"] for row in reader]
    if not subjects:
        raise EmoganError(f"{manifest}: no rows")
    empty = [i + 2 for i, s in enumerate(subjects) if not s.strip()]
    if empty:
        raise EmoganError(f"{manifest}: empty subject on line(s) {empty[:10]}")
    return subjects


def write_folds(folds: Mapping[str, int], out: Path) -> None:
    """`subject,fold` CSV, subjects in the natural order used to deal them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject", "fold"])
        for s in sorted(folds, key=natural_key):
            w.writerow([s, folds[s]])
    tmp.replace(out)


def tuning_folds(folds: Mapping[str, int], reserve: Iterable[int], validation: Iterable[int]) -> dict[str, int]:
    """A tuning split of a fold assignment: subjects of the `reserve` folds (the final test folds) get fold -1
    (never read by a tuning run), those of the `validation` folds all get the first of them (held out
    together as `--fold <first>`); the other folds keep theirs and are the tuning training folds."""
    reserve, validation = set(reserve), list(validation)
    if not validation or reserve & set(validation):
        raise EmoganError(f"tuning folds: validation folds {validation} must be given and not reserved ({sorted(reserve)})")
    out = {}
    for s, f in folds.items():
        out[s] = -1 if f in reserve else (validation[0] if f in validation else f)
    return out


def read_folds(path: Path | str) -> dict[str, int]:
    """A `subject,fold` CSV as a dict; EmoganError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise EmoganError(f"{path}: folds file not found (run `emogan folds`)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["subject", "fold"]:
            raise EmoganError(f"{path}: expected the header subject,fold, found {reader.fieldnames}")
        try:
            return {row["subject"]: int(row["fold"]) for row in reader}
        except ValueError as e:
            raise EmoganError(f"{path}: {e}") from None


def make_folds(manifest: Path | str, out: Path | str, p: FoldsParams) -> dict[str, int]:
    """Run the folds stage: subjects of the manifest dealt into k folds, written to `out`."""
    manifest, out = Path(manifest), Path(out)
    subjects = read_subjects(manifest)
    n = len(set(subjects))
    if n < p.k:
        # Not an error: datasets are merged for cross-validation (as the paper merges SNaP-2DFe
        # with frontal-only sets), so a small set may leave some folds without its subjects.
        log.warning("%s: %d subject(s) for %d folds: folds %d..%d get none of this dataset's subjects",
                    manifest, n, p.k, n, p.k - 1)
    folds = assign_folds(subjects, p.k)
    write_folds(folds, out)
    return folds


def store_folds(store: Any, folds: Mapping[str, int] | Path | str | None = None, k: int = 10) -> np.ndarray:
    """(N,) fold of each row of a store, from its subject codes and `subject_ids` attr.

    With `folds` (a dict or a folds CSV) the stage's assignment is used, so the store agrees
    with the manifest even if some sequences failed upstream; without, subjects are dealt anew.
    """
    from pipeline.store import open_group

    g, where = open_group(store)
    ids = list(g.attrs.get("subject_ids") or [])
    if not ids:
        raise EmoganError(f"{where}: no subject_ids attr to map subject codes to subjects")
    if folds is None:
        mapping = assign_folds(ids, k)
    else:
        mapping = dict(folds) if isinstance(folds, Mapping) else read_folds(folds)
    missing = [s for s in ids if s not in mapping]
    if missing:
        raise EmoganError(f"{where}: subject(s) {missing[:10]} have no fold in the folds file")
    per_code = np.array([mapping[s] for s in ids], dtype=np.int16)
    return per_code[g["subject"][...]]


def cli(
    dataset: str = typer.Argument(..., help="dataset name: reads <paths.manifests>/DATASET.csv"),
    manifest: Optional[Path] = typer.Option(None, help="manifest CSV (default <paths.manifests>/DATASET.csv)"),
    out: Optional[Path] = typer.Option(None, help="folds CSV (default <paths.manifests>/DATASET_folds.csv)"),
    params_file: Optional[Path] = typer.Option(None, "--params", help="params file (default ./params.yaml)"),
    k: Optional[int] = typer.Option(None, help="number of folds"),
    reserve: Optional[str] = typer.Option(None, help="tuning split: comma-separated folds reserved for the final "
                                          "test (fold -1 in the output: never trained on nor validated on)"),
    validation: Optional[str] = typer.Option(None, help="tuning split: comma-separated validation folds, merged "
                                             "into the first (hold it out with --fold)"),
) -> None:
    """Subject-independent k-fold protocol: subjects sorted and dealt round-robin into k folds."""
    params = load_params(params_file)
    p = load_folds_params(params, k=k)
    manifests = path_param(params, "manifests", "data_manifests")
    manifest = manifest or manifests / f"{dataset}.csv"
    out = out or manifests / f"{dataset}_folds.csv"
    if (reserve is None) != (validation is None):
        raise EmoganError("give --reserve and --validation together (a tuning split), or neither")
    if reserve is not None:
        ints = lambda x: [int(v) for v in x.split(",") if v.strip()]  # noqa: E731
        folds = tuning_folds(assign_folds(read_subjects(manifest), p.k), ints(reserve), ints(validation))
        write_folds(folds, out)
        typer.echo(f"{out}: tuning split, {sum(f < 0 for f in folds.values())} reserved subject(s), "
                   f"validation fold {ints(validation)[0]}: "
                   f"{', '.join(s for s, f in folds.items() if f == ints(validation)[0])}")
        return
    folds = make_folds(manifest, out, p)
    sizes = np.bincount(list(folds.values()), minlength=p.k)
    typer.echo(f"{out}: {len(folds)} subjects in {p.k} folds of {sizes.min()}-{sizes.max()} subjects")
