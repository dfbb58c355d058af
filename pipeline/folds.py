"""Stage `folds`: k-fold subject-independent cross-validation (the paper's 10-fold protocol).

Subjects are sorted (natural order: digit runs compared as numbers, so S2 < S10 and zero-padded
ids sort as usual) and dealt round-robin: the subject of rank r goes to fold r mod k. Every row
of a subject is in one fold, so no subject is ever in both the train and the test split.
Output: `data_manifests/<dataset>_folds.csv` with header `subject,fold`.

Tuning split (`emogan folds --tuning`): design choices are made on validation subjects drawn from
the training folds, never on a test fold. The folds `folds.reserve` (the final result's test folds)
get fold -1 in the written file: no run reads them (neither trained on nor held out); the folds
`folds.validation` are merged into the first of them, which a tuning run holds out with `--fold`.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import typer

from pipeline.adapters.common import natural_key
from pipeline.errors import EmoganError
from pipeline.params import PARAMS_OPTION, ParamsError, load_params, section

log = logging.getLogger(__name__)


@dataclass
class FoldsParams:
    """params.yaml `folds`: the number of folds; the tuning split's reserved and validation folds."""

    k: int
    reserve: tuple[int, ...]     # tuning split: the final test folds, never read by a tuning run (fold -1)
    validation: tuple[int, ...]  # tuning split: validation folds (of the training folds), merged into the first

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 2:
            raise ValueError(f"k = {self.k!r}: expected an integer >= 2")
        self.reserve, self.validation = tuple(self.reserve), tuple(self.validation)
        for name in ("reserve", "validation"):  # their range is checked by tuning_folds (k can be overridden)
            if not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in getattr(self, name)):
                raise ValueError(f"{name} = {list(getattr(self, name))}: folds are integers >= 0")
        if set(self.reserve) & set(self.validation):
            raise ValueError(f"validation folds {list(self.validation)} overlap the reserved test folds "
                             f"{list(self.reserve)}")


def load_folds_params(params: dict[str, Any], **overrides: Any) -> FoldsParams:
    """params.yaml `folds` section; ParamsError naming the file otherwise."""
    try:
        return section(params, "folds", FoldsParams, **overrides)
    except ValueError as e:
        raise ParamsError(f"{params.get('__file__', 'params')}: section 'folds': {e}") from None


def assign_folds(subjects: Iterable[str], k: int) -> dict[str, int]:
    """Subject id -> fold in [0, k): unique subjects sorted naturally, rank r goes to fold r mod k."""
    if k < 2:
        raise ValueError(f"k = {k}: need at least 2 folds")
    ordered = sorted(set(subjects), key=natural_key)
    return {s: r % k for r, s in enumerate(ordered)}


def tuning_folds(folds: Mapping[str, int], reserve: Iterable[int], validation: Iterable[int],
                 k: int) -> dict[str, int]:
    """The tuning split of a fold assignment: subjects of the `reserve` folds get -1 (read by no run), those of
    the `validation` folds all get the first of them (held out together as `--fold <first>`); the others keep
    their fold and are the tuning run's training subjects. Validation is never a reserved test fold."""
    reserve, validation = set(reserve), list(validation)
    if not validation or reserve & set(validation):
        raise EmoganError(f"tuning split: validation folds {validation} must be given and not among the "
                          f"reserved test folds {sorted(reserve)}")
    if any(f >= k for f in reserve | set(validation)):
        raise EmoganError(f"tuning split: folds {sorted(reserve | set(validation))} are not all among the k={k} folds")
    out = {s: -1 if f in reserve else (validation[0] if f in validation else f) for s, f in folds.items()}
    if validation[0] not in out.values():
        raise EmoganError(f"tuning split: validation folds {validation} hold no subject")
    return out


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
    manifest: Path = typer.Argument(..., help="manifest CSV (from `emogan manifest`); its stem is the dataset name (DATASET)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folds CSV (default DATASET_folds.csv beside the manifest)"),
    params_file: Optional[Path] = PARAMS_OPTION,
    k: Optional[int] = typer.Option(None, help="number of folds"),
    tuning: bool = typer.Option(False, help="write the tuning split instead (folds.reserve -> -1, folds.validation "
                                "merged into its first fold); default --out <paths.manifests>/DATASET_tuning_folds.csv"),
) -> None:
    """Subject-independent k-fold protocol: subjects sorted and dealt round-robin into k folds."""
    params = load_params(params_file)
    p = load_folds_params(params, k=k)
    manifests, dataset = manifest.parent, manifest.stem
    if tuning:
        out = out or manifests / f"{dataset}_tuning_folds.csv"
        folds = tuning_folds(assign_folds(read_subjects(manifest), p.k), p.reserve, p.validation, p.k)
        write_folds(folds, out)
        val = [s for s, f in folds.items() if f == p.validation[0]]
        typer.echo(f"{out}: tuning split, {sum(f < 0 for f in folds.values())} reserved test subject(s) "
                   f"(folds {list(p.reserve)}), validation fold {p.validation[0]}: {', '.join(val)}")
        return
    out = out or manifests / f"{dataset}_folds.csv"
    folds = make_folds(manifest, out, p)
    sizes = np.bincount(list(folds.values()), minlength=p.k)
    typer.echo(f"{out}: {len(folds)} subjects in {p.k} folds of {sizes.min()}-{sizes.max()} subjects")
