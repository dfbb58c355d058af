"""Stage `flow`: Farneback optical flow on the crops of both cameras, downsampled to the model size.

Conventions (docs/ARCHITECTURE.md):
- flow t -> t+dt = cv2.calcOpticalFlowFarneback(prev=gray frame t, next=gray frame t+dt);
  channel 0 = u (along columns, x), channel 1 = v (along rows, y).
- The flow is computed on the high-resolution crop, then averaged down to `size` in Cartesian
  form (cv2.INTER_AREA on (u, v); angles are never interpolated). The vectors are NOT rescaled:
  values stay in pixels of the source crop (e.g. 512), the unit of `normalize.clip`.
- cam1 = frontal (ground truth: `flow_target_px`, `neutral`, `target_image`),
  cam2 = non-frontal (model input: `flow_input_px`, `input_image`).

Output `data/flows/<dataset>.zarr` (FLOW_ARRAYS), rows in crops.csv order, then pair order.
Resumable: each sequence's result is committed atomically to `<out>.parts/<index>.npz`
(its existence is the done-marker), and the store is assembled in manifest order once all are
done, so a killed run re-run gives the same store as an uninterrupted one.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import typer

from pipeline import pool
from pipeline import store as st
from pipeline.console import progress_enabled
from pipeline.errors import EmoganError
from pipeline.lock import writer_lock
from pipeline.farneback import SequenceError, compute_sequence, list_frames
from pipeline.adapters.common import natural_key
from pipeline.params import PARAMS_OPTION, ParamsError, as_dict, load_params, path_param, section
from pipeline.safepath import inside, safe_name
from pipeline.schema import CLASS_NAMES, POSE_NAMES, STRATEGY_NAMES, check_label, pose_code

log = logging.getLogger(__name__)

FLOWS_FORMAT = "emogan-flows"
FLOWS_VERSION = 1
# The flow store that `stats` and `normalize` read. S = flow.size; flows in source-crop pixels.
FLOW_ARRAYS: dict[str, tuple[tuple[Any, ...], str]] = {
    "flow_input_px": (("N", 2, "S", "S"), "float16"),   # cam2 (non-frontal) flow t -> t+dt
    "flow_target_px": (("N", 2, "S", "S"), "float16"),  # cam1 (frontal) flow t -> t+dt
    "neutral": (("N", 3, "S", "S"), "uint8"),           # cam1 frame t, RGB
    "target_image": (("N", 3, "S", "S"), "uint8"),      # cam1 frame t+dt, RGB
    "input_image": (("N", 3, "S", "S"), "uint8"),       # cam2 frame t+dt, RGB
    "label": (("N",), "int16"),       # label_code of crops.csv (-1: unlabeled/excluded; >= 7: extra_class_names)
    "subject": (("N",), "int32"),     # index into attrs subject_ids
    "sequence": (("N",), "int32"),    # index into attrs sequence_ids (crops.csv row)
    "pose": (("N",), "int16"),        # index into POSE_NAMES (-1: not given by the source)
    "strategy": (("N",), "int16"),    # index into STRATEGY_NAMES
    "step": (("N",), "int16"),        # dt in frames
    "frame_t": (("N",), "int16"),     # 0-based index of frame t in the sequence's sorted frames
}
CROPS_CSV = "crops.csv"
REQUIRED_COLUMNS = ("subject", "sequence", "label_code", "pose")
# Fields that change how the work is run, not its result: left out of the recorded params.
EXECUTION_FIELDS = ("workers", "cv2_threads")
# glibc settings for the flow workers. Measured with dask workers, which set MALLOC_TRIM_THRESHOLD_=64 KiB
# (to hand memory back to the OS): with Farneback's multi-MB buffers at 512 px every call faulted its
# memory in again (2.4x the page faults, 2.5x the system time of a plain process, about 10% of the CPU).
# Keeping buffers below 64 MiB on the heap and trimming only above 256 MiB: no faults.
# Performance only (results are identical), so not a params.yaml entry.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


@dataclass
class FlowParams:
    """params.yaml `flow`: Farneback settings (paper: 0.5, 3, 15, 3, 5, 1.2, 0), pairs, output size."""

    pyr_scale: float
    levels: int
    winsize: int
    iterations: int
    poly_n: int
    poly_sigma: float
    flags: int
    strategies: tuple[str, ...]
    max_step: int | None  # frame_to_frame pairs (t, t+step) for step in 1..max_step; None: every step 1..n-1
    frames: int | None  # frames of a sequence the pairs use, evenly spaced first to last; None: all
    size: int  # side of the stored flows and images (model size)
    chunk_mib: float  # least chunk size of the flow store's image/flow arrays
    clevel: int  # blosc lz4 level of the flow store
    workers: int  # spawned worker processes (pipeline/pool.py); 0 or 1 = in this process
    cv2_threads: int  # OpenCV threads per worker (processes scale, threads barely do)

    def __post_init__(self) -> None:
        self.strategies = tuple(self.strategies)
        bad = [s for s in self.strategies if s not in STRATEGY_NAMES]
        if bad or not self.strategies:
            raise ValueError(f"strategies {list(self.strategies)}: expected a non-empty subset of {list(STRATEGY_NAMES)}")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies {list(self.strategies)} repeat a name")
        for name, low in (("levels", 1), ("winsize", 3), ("iterations", 1), ("max_step", 1), ("frames", 2),
                          ("size", 8), ("workers", 0), ("cv2_threads", 1), ("clevel", 0)):
            v = getattr(self, name)
            if v is None and name in ("max_step", "frames"):
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} = {v!r}: expected an integer >= {low}")
        if not 0 < self.pyr_scale < 1:
            raise ValueError(f"pyr_scale = {self.pyr_scale!r}: expected a number in (0, 1)")
        if self.poly_n not in (5, 7):
            raise ValueError(f"poly_n = {self.poly_n!r}: OpenCV's Farneback takes 5 or 7")
        if not self.chunk_mib > 0 or not self.poly_sigma > 0:
            raise ValueError("chunk_mib and poly_sigma must be positive")

    def recorded(self) -> dict[str, Any]:
        """The params that determine the output (recorded in the store attrs)."""
        return {k: v for k, v in as_dict(self).items() if k not in EXECUTION_FIELDS}


def load_flow_params(params: dict[str, Any], **overrides: Any) -> FlowParams:
    """params.yaml `flow` section as FlowParams; ParamsError naming the file and key otherwise."""
    try:
        return section(params, "flow", FlowParams, **overrides)
    except ValueError as e:
        raise ParamsError(f"{params.get('__file__', 'params')}: section 'flow': {e}") from None


# ---------------------------------------------------------------- planning and resumable parts

@dataclass
class SequenceTask:
    """One sequence to process: what a worker needs (plain data, cheap to send)."""

    index: int                 # row of crops.csv
    frontal: list[str]
    nonfrontal: list[str]
    fingerprint: str           # sha256 of the frame files' names, sizes and mtimes
    part: str                  # where the worker commits its result
    params: dict[str, Any]


def read_crops_csv(crops_dir: Path) -> list[dict[str, str]]:
    """Rows of `<crops_dir>/crops.csv`; EmoganError naming the file if it is missing or lacks columns."""
    path = crops_dir / CROPS_CSV
    if not path.is_file():
        raise EmoganError(f"{path}: crops table not found (run `emogan crop` first)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise EmoganError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


def _fingerprint(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for q in paths:
        s = q.stat()
        h.update(f"{q}\0{s.st_size}\0{s.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cam_dir(crops_dir: Path, row: dict[str, str], cam: int, where: object = None) -> Path:
    """A crops.csv row's camera folder (`cam<k>_dir`, else <subject>/<sequence>/cam<k>), inside crops_dir
    (pipeline/safepath.py; SequenceError naming `where`, default crops.csv, otherwise)."""
    where = where if where is not None else crops_dir / CROPS_CSV
    given = (row.get(f"cam{cam}_dir") or "").strip()
    if given:
        return inside(crops_dir, given, f"cam{cam}_dir", where)
    return crops_dir / safe_name(row["subject"], "subject", where) / safe_name(row["sequence"], "sequence", where) \
        / f"cam{cam}"


def plan_sequence(crops_dir: Path, index: int, row: dict[str, str], parts_dir: Path,
                  p: FlowParams) -> SequenceTask:
    """The task of one crops.csv row; SequenceError for missing directories or mismatched cameras."""
    if "cam2_dir" in row and not row["cam2_dir"].strip():
        raise SequenceError(crops_dir / CROPS_CSV, f"line {index + 2}: no non-frontal camera (cam2_dir empty); "
                                                   "frontal-only sets get one from `emogan augment`")
    where = f"{crops_dir / CROPS_CSV} line {index + 2}"
    frontal = list_frames(cam_dir(crops_dir, row, 1, where))
    nonfrontal = list_frames(cam_dir(crops_dir, row, 2, where))
    if [q.name for q in frontal] != [q.name for q in nonfrontal]:
        raise SequenceError(cam_dir(crops_dir, row, 2),
                            f"frames differ from cam1's ({len(frontal)} vs {len(nonfrontal)} files, or other names)")
    try:
        row_pose_code(row)
    except ValueError as e:
        raise SequenceError(crops_dir / CROPS_CSV, f"line {index + 2}: {e}") from None
    check_label(row.get("label"), row["label_code"], where)  # where label codes enter a store: checked once
    # Absolute paths: workers of an external dask cluster may run in another directory.
    return SequenceTask(index, [os.path.abspath(q) for q in frontal], [os.path.abspath(q) for q in nonfrontal],
                        _fingerprint(frontal + nonfrontal), os.path.abspath(parts_dir / f"{index:06d}.npz"),
                        as_dict(p))


def row_pose_code(row: dict[str, str]) -> int:
    """The pose code of a crops.csv row; -1 where the source gives no pose (empty column)."""
    return pose_code(row["pose"]) if row["pose"].strip() else st.UNKNOWN_POSE


def part_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params a part records (those that change its rows), from a task's params, as JSON reads them back."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k not in EXECUTION_FIELDS}))


def _part_meta(part: Path) -> dict[str, Any]:
    try:
        with np.load(part, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError, KeyError, EOFError):  # truncated or foreign file: recompute
        return {}


def _part_done(part: Path, task: "SequenceTask") -> bool:
    """Whether an earlier run committed this very task: same frames (fingerprint), same index and params."""
    m = _part_meta(part)
    return (m.get("fingerprint") == task.fingerprint and m.get("index") == task.index
            and m.get("params") == part_params(task.params))


def run_sequence_task(task: SequenceTask, cv2_threads: int = 1) -> dict[str, Any]:
    """Compute one sequence and commit it atomically to task.part; return its pair count or error."""
    import cv2

    cv2.setNumThreads(cv2_threads)  # one OpenCV thread per worker process: processes scale, threads don't
    p = FlowParams(**task.params)
    try:
        arrays = compute_sequence(task.frontal, task.nonfrontal, p)
        st.check_finite({k: arrays[k] for k in ("flow_input_px", "flow_target_px")}, "flows")
    except SequenceError as e:
        return {"index": task.index, "n": 0, "error": {"file": e.file, "reason": e.reason}}
    except st.StoreError as e:  # never commit a part the store could not hold
        return {"index": task.index, "n": 0, "error": {"file": str(Path(task.frontal[0]).parent.parent),
                                                       "reason": f"non-finite flow ({e})"}}
    except Exception as e:  # noqa: BLE001 - any failure of one sequence must not stop the others
        return {"index": task.index, "n": 0,
                "error": {"file": str(Path(task.frontal[0]).parent.parent), "reason": f"{type(e).__name__}: {e}"}}
    meta = json.dumps({"fingerprint": task.fingerprint, "index": task.index, "params": part_params(task.params)})
    tmp = f"{task.part}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(meta), **arrays)  # parts need far less free disk than raw float16
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, task.part)  # the atomic commit: the part exists only once complete
    return {"index": task.index, "n": int(len(arrays["step"])), "error": None, "pid": os.getpid()}


# ---------------------------------------------------------------- the stage

@dataclass
class FlowReport:
    """What a flow run did: rows written, sequences done/resumed, errors (file, reason) in manifest order."""

    out: Path
    n_rows: int
    n_sequences: int
    n_resumed: int
    errors: list[dict[str, Any]]
    worker_pids: set[int] = dataclasses.field(default_factory=set)  # processes that computed sequences


def _run_tasks(tasks: list[SequenceTask], p: FlowParams, dask_address: str | None, progress: bool,
               on_result: Callable[[dict[str, Any]], None]) -> None:
    if dask_address is not None:
        _run_dask(tasks, p, dask_address, progress, on_result)
        return
    import functools

    import cv2

    before = cv2.getNumThreads()  # run_sequence_task sets it: in-process runs restore the caller's
    try:
        for _, res in pool.run(functools.partial(run_sequence_task, cv2_threads=p.cv2_threads), tasks, p.workers,
                               "flow", progress=progress, env=WORKER_MALLOC_ENV):
            on_result(res)
    finally:
        cv2.setNumThreads(before)


def _run_dask(tasks: list[SequenceTask], p: FlowParams, dask_address: str, progress: bool,
              on_result: Callable[[dict[str, Any]], None]) -> None:
    """The sequences on an existing dask.distributed cluster (workers of other machines)."""
    from tqdm import tqdm

    if not tasks:
        return
    from dask.distributed import Client, as_completed

    bar = tqdm(total=len(tasks), desc="flow", unit="seq", disable=not progress_enabled(progress))
    try:
        with Client(dask_address) as client:
            futures = [client.submit(run_sequence_task, t, p.cv2_threads, pure=False,
                                     key=f"flow-seq-{t.index}-{t.fingerprint[:12]}") for t in tasks]
            for fut in as_completed(futures):
                on_result(fut.result())
                bar.update()
    finally:
        bar.close()


def compute_flows(crops_dir: Path | str, out: Path | str, p: FlowParams, *, dataset: str | None = None,
                  dask_address: str | None = None, progress: bool = True) -> FlowReport:
    """Run the flow stage: crops of every crops.csv sequence -> flow store at `out` (resumable).

    With p.workers >= 2 it spawns worker processes (pipeline/pool.py), so a script calling it needs
    the usual `if __name__ == "__main__":` guard (the `emogan` command has it); with `dask_address`
    the sequences run on that dask.distributed cluster instead.
    """
    crops_dir, out = Path(crops_dir), Path(out)
    with writer_lock(out):  # one writer for the store and its parts folder (pipeline/lock.py)
        return _compute_flows(crops_dir, out, p, dataset, dask_address, progress)


def _compute_flows(crops_dir: Path, out: Path, p: FlowParams, dataset: str | None, dask_address: str | None,
                   progress: bool) -> FlowReport:
    rows = read_crops_csv(crops_dir)
    if not rows:
        raise EmoganError(f"{crops_dir / CROPS_CSV}: no sequences listed")
    manifest_sha = st.file_sha256(crops_dir / CROPS_CSV)
    parts_dir = out.with_name(out.name + ".parts")
    key = json.dumps({"params": p.recorded(), "crops_csv_sha256": manifest_sha,
                      "crops_dir": str(crops_dir.resolve())}, sort_keys=True)
    if parts_dir.exists() and (not (parts_dir / "key.json").is_file() or (parts_dir / "key.json").read_text() != key):
        log.info("%s: left by a run with other params or inputs: starting over", parts_dir)
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    for stale in parts_dir.glob("*.tmp-*"):  # parts a killed run was writing (we hold the writer lock)
        stale.unlink(missing_ok=True)
    (parts_dir / "key.json").write_text(key)

    errors: dict[int, dict[str, Any]] = {}
    tasks: list[SequenceTask] = []
    done: set[int] = set()
    extra_names: dict[int, str] = {}  # extra label codes (>= len(CLASS_NAMES)) and the one name each carries
    for i, row in enumerate(rows):
        try:
            task = plan_sequence(crops_dir, i, row, parts_dir, p)
            code = check_label(row.get("label"), row["label_code"], f"{crops_dir / CROPS_CSV} line {i + 2}")
            if code >= len(CLASS_NAMES):
                name = (row.get("label") or "").strip() or f"class_{code}"
                if extra_names.setdefault(code, name) != name:
                    raise SequenceError(f"{crops_dir / CROPS_CSV} line {i + 2}", f"extra label code {code} is "
                                        f"{name!r} here but {extra_names[code]!r} on an earlier row")
        except SequenceError as e:
            errors[i] = {"file": e.file, "reason": e.reason}
            continue
        if Path(task.part).is_file() and _part_done(Path(task.part), task):
            done.add(i)  # committed by an earlier, interrupted run with the same inputs
        else:
            tasks.append(task)
    n_resumed = len(done)
    if done:
        log.info("resuming: %d of %d sequences already done in %s", len(done), len(rows), parts_dir)

    pids: set[int] = set()

    crops_abs = os.path.abspath(crops_dir)

    def on_result(res: dict[str, Any]) -> None:
        if res["error"] is not None:
            file = res["error"]["file"]
            if file.startswith(crops_abs + os.sep):  # name it as the user gave the crops folder
                res["error"]["file"] = str(crops_dir / os.path.relpath(file, crops_abs))
            errors[res["index"]] = res["error"]
            log.warning("skipped %s/%s: %s: %s", rows[res["index"]]["subject"], rows[res["index"]]["sequence"],
                        res["error"]["file"], res["error"]["reason"])
        else:
            done.add(res["index"])
            pids.add(res["pid"])

    _run_tasks(tasks, p, dask_address, progress, on_result)
    if not done:
        raise EmoganError(f"{crops_dir}: no sequence could be processed; first error: "
                          f"{next(iter(sorted(errors.items())))[1]}")
    error_list = [{"subject": rows[i]["subject"], "sequence": rows[i]["sequence"], **errors[i]} for i in sorted(errors)]
    n_rows = _assemble(crops_dir, out, parts_dir, rows, sorted(done), p, manifest_sha, error_list, dataset)
    shutil.rmtree(parts_dir)
    return FlowReport(out, n_rows, len(done), n_resumed, error_list, pids)


def extra_class_names(rows: list[dict[str, str]]) -> list[str]:
    """Names of label codes beyond CLASS_NAMES (code len(CLASS_NAMES) + k is entry k), from crops.csv rows
    that plan_sequence accepted (their codes are checked)."""
    names: dict[int, str] = {}
    for r in rows:
        code = check_label(r.get("label"), r["label_code"], "crops.csv")
        if code >= len(CLASS_NAMES):
            names.setdefault(code, r.get("label") or f"class_{code}")
    top = max(names, default=len(CLASS_NAMES) - 1)
    return [names.get(c, f"class_{c}") for c in range(len(CLASS_NAMES), top + 1)]


def _assemble(crops_dir: Path, out: Path, parts_dir: Path, rows: list[dict[str, str]], indices: list[int],
              p: FlowParams, manifest_sha: str, errors: list[dict[str, Any]], dataset: str | None) -> int:
    """Concatenate the committed parts in crops.csv order into the flow store (atomically)."""
    import zarr

    subject_ids = sorted({r["subject"] for r in rows}, key=natural_key)
    subject_code = {s: k for k, s in enumerate(subject_ids)}
    counts, sizes = {}, {}
    want = part_params(as_dict(p))
    for i in indices:
        part = parts_dir / f"{i:06d}.npz"
        m = _part_meta(part)
        if m.get("params") != want or m.get("index") != i:
            # The lock keeps a second writer out; a part that still disagrees never reaches the store.
            raise EmoganError(f"{part}: made with other flow params or for another row than this run's "
                              f"(another writer?); nothing was assembled: re-run `emogan flow`")
        with np.load(part, allow_pickle=False) as z:
            counts[i] = len(z["step"])
            sizes[i] = int(z["source_size"])
    source_sizes = sorted(set(sizes.values()))
    if len(source_sizes) > 1:
        odd = [f"{rows[i]['subject']}/{rows[i]['sequence']} ({sizes[i]})" for i in indices if sizes[i] != source_sizes[0]]
        raise EmoganError(f"{crops_dir}: crops of different sizes {source_sizes} would mix flow units "
                          f"(pixels of different crops): {', '.join(odd[:5])}")
    n = sum(counts.values())
    rows_per_chunk = st.chunk_rows_for(FLOW_ARRAYS, p.size, p.chunk_mib)
    attrs = st.json_attrs({
        "format": FLOWS_FORMAT, "format_version": FLOWS_VERSION, "dataset": dataset or crops_dir.name,
        "size": p.size, "source_size": source_sizes[0], "units": "pixels of the source crop",
        "flow_convention": "channel 0 = u (x), 1 = v (y); flow t->t+dt = calcOpticalFlowFarneback(prev=t, next=t+dt); "
                           "area-averaged to size in Cartesian form, vectors not rescaled",
        "class_names": CLASS_NAMES, "pose_names": POSE_NAMES, "strategy_names": STRATEGY_NAMES,
        "extra_class_names": extra_class_names([rows[i] for i in indices]),
        "subject_ids": subject_ids, "sequence_ids": [f"{r['subject']}/{r['sequence']}" for r in rows],
        "source_manifest": str(crops_dir / CROPS_CSV), "source_manifest_sha256": manifest_sha,
        "params": {"flow": p.recorded()}, "chunk_rows": min(rows_per_chunk, max(n, 1)),
        "errors": errors,
    })
    with st.atomic_dir(out) as tmp:
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        st.create_arrays(g, FLOW_ARRAYS, n, p.size, chunk_rows=rows_per_chunk, chunk_mib=p.chunk_mib, clevel=p.clevel)
        g.attrs.update(attrs)
        writer = st.RowWriter(g, FLOW_ARRAYS)
        for i in indices:
            r, k = rows[i], counts[i]
            with np.load(parts_dir / f"{i:06d}.npz", allow_pickle=False) as z:
                part = {name: z[name] for name in ("flow_input_px", "flow_target_px", "neutral", "target_image",
                                                   "input_image", "strategy", "step", "frame_t")}
            label = check_label(r.get("label"), r["label_code"], "crops.csv")  # accepted by plan_sequence
            part.update(label=np.full(k, label, np.int16), subject=np.full(k, subject_code[r["subject"]], np.int32),
                        sequence=np.full(k, i, np.int32), pose=np.full(k, row_pose_code(r), np.int16))
            writer.append(part)
        writer.close()
    return n


def open_flows(path: Path | str) -> "Any":
    """Open a flow store read-only and check its arrays; EmoganError naming the path otherwise."""
    g, where = st.open_group(path)
    attrs = dict(g.attrs)
    if attrs.get("format") != FLOWS_FORMAT or attrs.get("format_version") != FLOWS_VERSION:
        raise st.StoreError(f"{where}: not a flow store of format {FLOWS_FORMAT} v{FLOWS_VERSION} "
                            "(run `emogan flow`)")
    st.check_arrays(g, FLOW_ARRAYS, int(attrs["size"]), where)
    return g


# ---------------------------------------------------------------- command

def cli(
    crops: Path = typer.Argument(..., help="crop folder (from `emogan crop`/`augment`); its name is the dataset's"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="flow store (default <paths.flows>/<crops name>.zarr)"),
    dataset: Optional[str] = typer.Option(None, help="dataset name recorded in the store (default: the crop folder's name)"),
    params_file: Optional[Path] = PARAMS_OPTION,
    workers: Optional[int] = typer.Option(None, help="worker processes (0 or 1: in this process)"),
    max_step: Optional[int] = typer.Option(None, help="largest frame_to_frame step (params.yaml null: every step)"),
    dask_address: Optional[str] = typer.Option(None, help="scheduler of an existing dask.distributed cluster "
                                               "(its workers must see the same files)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Farneback flow of both cameras for every sequence (resumable; parallel over sequences)."""
    params = load_params(params_file)
    p = load_flow_params(params, workers=workers, max_step=max_step)
    dataset = dataset or crops.name
    out = out or path_param(params, "flows") / f"{dataset}.zarr"
    report = compute_flows(crops, out, p, dataset=dataset, dask_address=dask_address, progress=progress)
    typer.echo(f"{out}: {report.n_rows} flow pairs from {report.n_sequences} sequences"
               + (f" ({report.n_resumed} resumed)" if report.n_resumed else ""))
    for e in report.errors:
        typer.secho(f"skipped {e['subject']}/{e['sequence']}: {e['file']}: {e['reason']}", fg=typer.colors.YELLOW, err=True)
