"""The training store: the one place that creates, opens and validates it (schema in pipeline/schema.py).

Trainer-facing API (stable):
    open_store(path) -> zarr.Group       opened read-only and validated by check_store
    check_store(store) -> dict           the store's attrs; StoreError naming the path and the reason
    write_store(path, arrays, attrs)     a whole store from in-memory arrays (test fixtures, small sets)
    store_rows(group) -> int             N, the number of rows (flow pairs)

Layout facts a reader can rely on: every array shares axis 0 (N) and is chunked along N only;
the (N, C, S, S) arrays share one chunk length, `attrs["chunk_rows"]`, so reading chunk k of
each gives the same rows; the 1-D arrays use longer chunks (small, read them whole).
Pipeline-side helpers (create_arrays, RowWriter, atomic_dir) build stores row by row
without holding a dataset in memory.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import numpy as np

from pipeline.errors import EmoganError
from pipeline.schema import (
    CLASS_NAMES, POSE_NAMES, SCHEMA_VERSION, STORE_ARRAYS, STORE_ATTRS, STRATEGY_NAMES,
)

if TYPE_CHECKING:  # zarr costs ~0.2 s to import: only functions that touch a store import it
    import zarr

MIB = 1 << 20
REPRESENTATIONS = ("polar", "cartesian")
# label -1: unlabeled or excluded class (manifest label_code -1); codes >= 0 index CLASS_NAMES, then
# attr `extra_class_names` (e.g. CK+ contempt kept on request as code 7).
UNLABELED = -1
# pose -1: the source does not say (manifest pose empty); codes >= 0 index POSE_NAMES.
UNKNOWN_POSE = -1
# Per-array specs: name -> (shape with "N" for rows and "S" for the image side, dtype).
Spec = Mapping[str, tuple[tuple[Any, ...], str]]


class StoreError(EmoganError):
    """A store is missing, incomplete, or disagrees with pipeline/schema.py."""


def compressor(cname: str = "lz4", clevel: int = 5):
    """The Blosc codec for store arrays (lz4 + byte shuffle by default)."""
    from zarr.codecs import BloscCodec

    # PERF-NOTES (float16 flows, 64-row chunks): blosc lz4-5 + shuffle reads 19.8k samples/s at
    # ratio 1.45, zstd-3 only 10.9k at 1.66 and zarr's default zstd-0 10.3k at 1.30. Flows
    # compress poorly whatever the codec, so the trainer's read speed decides: lz4. Byte shuffle
    # groups float16 exponent bytes; on uint8 images it is a no-op (cheaper than bitshuffle).
    return BloscCodec(cname=cname, clevel=clevel, shuffle="shuffle")


def concrete_shape(shape: tuple[Any, ...], n: int, size: int) -> tuple[int, ...]:
    """A spec shape with "N" -> n and "S" -> size."""
    return tuple(n if d == "N" else size if d == "S" else int(d) for d in shape)


def chunk_rows_for(spec: Spec, size: int, chunk_mib: float = 1.0) -> int:
    """Rows per chunk so that every multi-dimensional array's chunk holds at least `chunk_mib` MiB."""
    row_bytes = [
        math.prod(concrete_shape(shape, 1, size)) * np.dtype(dtype).itemsize
        for shape, dtype in spec.values() if len(shape) > 1
    ]
    # Chunks of >= 1 MiB keep a dataset at hundreds of files for DVC (STYLE 9), not millions.
    return max(1, math.ceil(chunk_mib * MIB / min(row_bytes))) if row_bytes else 1


def create_arrays(group: "zarr.Group", spec: Spec, n: int, size: int, *, chunk_rows: int,
                  chunk_mib: float = 1.0, cname: str = "lz4", clevel: int = 5) -> None:
    """Create empty arrays of `spec` with N = n in `group`, chunked along N only."""
    codec = compressor(cname, clevel)
    for name, (shape, dtype) in spec.items():
        full = concrete_shape(shape, n, size)
        if len(full) > 1:
            rows = chunk_rows
        else:  # 1-D metadata: a chunk of chunk_mib too, which is one chunk for most datasets
            rows = max(chunk_rows, math.ceil(chunk_mib * MIB / np.dtype(dtype).itemsize))
        dims = ("N", "C", "H", "W") if len(full) == 4 else ("N",) + tuple(f"d{i}" for i in range(1, len(full)))
        group.create_array(
            name, shape=full, dtype=dtype, chunks=(max(1, min(rows, n)),) + full[1:],
            compressors=[codec], fill_value=0, dimension_names=dims,
        )


class RowWriter:
    """Appends rows to the arrays of a group in order, writing whole chunks (no read-modify-write)."""

    def __init__(self, group: "zarr.Group", names: Iterable[str] | None = None):
        names = list(names) if names is not None else sorted(group.array_keys())
        self.arrays = {k: group[k] for k in names}
        self.pos = {k: 0 for k in names}
        self.pending: dict[str, list[np.ndarray]] = {k: [] for k in names}
        self.n_pending = {k: 0 for k in names}

    def append(self, rows: Mapping[str, np.ndarray]) -> None:
        """Queue rows (same count for every array) and write each chunk once it is full."""
        counts = {len(rows[k]) for k in self.arrays}
        if len(counts) != 1:
            raise ValueError(f"row counts differ between arrays: {sorted(counts)}")
        for k, arr in self.arrays.items():
            self.pending[k].append(np.asarray(rows[k], dtype=arr.dtype))
            self.n_pending[k] += len(rows[k])
            if self.n_pending[k] >= arr.chunks[0]:
                self._flush(k, final=False)

    def _flush(self, k: str, final: bool) -> None:
        arr = self.arrays[k]
        if not self.pending[k]:
            return
        data = np.concatenate(self.pending[k])
        step = arr.chunks[0]
        # Write up to the last full chunk boundary; keep the remainder for the next append.
        stop = len(data) if final else (self.pos[k] + len(data)) // step * step - self.pos[k]
        if stop > 0:
            if self.pos[k] + stop > arr.shape[0]:
                raise ValueError(f"array {k!r}: more rows than its {arr.shape[0]}")
            arr[self.pos[k]:self.pos[k] + stop] = data[:stop]
            self.pos[k] += stop
        self.pending[k] = [data[stop:]] if stop < len(data) else []
        self.n_pending[k] = len(data) - stop

    def close(self) -> None:
        """Write what is left and check every array received exactly its N rows."""
        for k, arr in self.arrays.items():
            self._flush(k, final=True)
            if self.pos[k] != arr.shape[0]:
                raise ValueError(f"array {k!r}: wrote {self.pos[k]} rows of {arr.shape[0]}")


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `path` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # A crash between these two steps leaves no store and a temporary directory; a re-run rebuilds.
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def json_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attrs with tuples as lists and numpy scalars as Python numbers (what Zarr's JSON accepts)."""
    def conv(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, Path):
            return str(v)
        return v
    return conv(attrs)


def base_attrs() -> dict[str, Any]:
    """The schema attrs every training store starts from (codes and names from pipeline/schema.py)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "class_names": list(CLASS_NAMES),
        "pose_names": list(POSE_NAMES),
        "strategy_names": list(STRATEGY_NAMES),
    }


def create_store(path: Path | str, n: int, size: int, attrs: Mapping[str, Any], *,
                 extra_arrays: Spec | None = None, chunk_mib: float = 1.0,
                 cname: str = "lz4", clevel: int = 5) -> "zarr.Group":
    """Create an empty training store at `path` (overwriting it) with all STORE_ARRAYS of N = n."""
    import zarr

    spec = {**STORE_ARRAYS, **(extra_arrays or {})}
    rows = chunk_rows_for(spec, size, chunk_mib)
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    create_arrays(g, spec, n, size, chunk_rows=rows, chunk_mib=chunk_mib, cname=cname, clevel=clevel)
    g.attrs.update(json_attrs({**base_attrs(), **attrs, "size": size, "chunk_rows": min(rows, max(n, 1))}))
    return g


def write_store(path: Path | str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *,
                chunk_mib: float = 1.0) -> "zarr.Group":
    """Write a whole training store from in-memory arrays (atomically) and return it opened read-only."""
    missing = [k for k in STORE_ARRAYS if k not in arrays]
    if missing:
        raise StoreError(f"{path}: write_store needs array(s) {', '.join(missing)}")
    n = len(arrays["flow_input"])
    size = int(np.shape(arrays["flow_input"])[-1])
    extra = {k: (("N",) + tuple(np.shape(v)[1:]), np.asarray(v).dtype.str)
             for k, v in arrays.items() if k not in STORE_ARRAYS}
    with atomic_dir(path) as tmp:
        g = create_store(tmp, n, size, attrs, extra_arrays=extra, chunk_mib=chunk_mib)
        for k, v in arrays.items():
            want = concrete_shape(({**STORE_ARRAYS, **extra})[k][0], n, size)
            if tuple(np.shape(v)) != want:
                raise StoreError(f"{path}: array {k!r} has shape {np.shape(v)}, expected {want}")
            if n:
                g[k][...] = np.asarray(v, dtype=g[k].dtype)
    return open_store(path)


def store_rows(group: "zarr.Group") -> int:
    """N, the number of rows (flow pairs) of a store."""
    return int(group["flow_input"].shape[0])


def check_arrays(group: "zarr.Group", spec: Spec, size: int, where: str) -> int:
    """Check `group` has the arrays of `spec` (shape, dtype, chunks along N only); return N."""
    have = set(group.array_keys())
    missing = [k for k in spec if k not in have]
    if missing:
        raise StoreError(f"{where}: missing array(s) {', '.join(missing)}")
    n = None
    for name, (shape, dtype) in spec.items():
        a = group[name]
        if n is None:
            n = a.shape[0]
        want = concrete_shape(shape, n, size)
        if tuple(a.shape) != want:
            raise StoreError(f"{where}: array {name!r} has shape {tuple(a.shape)}, expected {want}")
        if a.dtype != np.dtype(dtype):
            raise StoreError(f"{where}: array {name!r} has dtype {a.dtype}, expected {dtype}")
        if tuple(a.chunks[1:]) != want[1:]:
            raise StoreError(f"{where}: array {name!r} is chunked {a.chunks}; chunks must split N only")
    return int(n or 0)


def open_group(store: "zarr.Group | Path | str", mode: str = "r") -> tuple["zarr.Group", str]:
    """A Zarr v3 group (opened from a path, or passed through) and a name for messages."""
    import zarr

    if isinstance(store, (str, Path)):
        where = str(store)
        if not Path(store).exists():
            raise StoreError(f"{where}: no store here (run the stage that makes it, e.g. `dvc repro`)")
        try:
            g = zarr.open_group(where, mode=mode, zarr_format=3)
        except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
            raise StoreError(f"{where}: not a Zarr v3 group ({e})") from None
        return g, where
    return store, str(getattr(store.store, "root", store.store))


def check_store(store: "zarr.Group | Path | str") -> dict[str, Any]:
    """Validate a training store against pipeline/schema.py; return its attrs or raise StoreError."""
    g, where = open_group(store)
    attrs = dict(g.attrs)
    missing = [k for k in STORE_ATTRS if k not in attrs]
    if missing:
        raise StoreError(f"{where}: missing attr(s) {', '.join(missing)} (rebuild it with `emogan normalize`)")
    if attrs["schema_version"] != SCHEMA_VERSION:
        raise StoreError(f"{where}: schema_version {attrs['schema_version']}, this code reads {SCHEMA_VERSION}; "
                         "rebuild the store with `emogan normalize`")
    for key, names in (("class_names", CLASS_NAMES), ("pose_names", POSE_NAMES),
                       ("strategy_names", STRATEGY_NAMES)):
        if list(attrs[key]) != list(names):
            raise StoreError(f"{where}: attr {key} = {attrs[key]} disagrees with pipeline/schema.py {list(names)}")
    if attrs["representation"] not in REPRESENTATIONS:
        raise StoreError(f"{where}: representation {attrs['representation']!r}, expected one of {REPRESENTATIONS}")
    clip = attrs["clip"]
    if not isinstance(clip, (int, float)) or isinstance(clip, bool) or not clip > 0:
        raise StoreError(f"{where}: clip {clip!r} is not a positive number (pixels of the source crop)")
    ci = attrs.get("clip_input", clip)   # optional: stores without it clip input and frontal flows alike
    if not isinstance(ci, (int, float)) or isinstance(ci, bool) or not ci > 0:
        raise StoreError(f"{where}: clip_input {ci!r} is not a positive number (pixels of the source crop)")
    size = attrs["size"]
    if not isinstance(size, int) or size < 1:
        raise StoreError(f"{where}: size {size!r} is not a positive integer")
    if not isinstance(attrs["params"], dict):
        raise StoreError(f"{where}: attr params is not a mapping")
    n = check_arrays(g, STORE_ARRAYS, size, where)
    # The 1-D codes are small: check them whole so a bad code fails here, not deep in training.
    n_labels = len(CLASS_NAMES) + len(attrs.get("extra_class_names") or [])
    for name, n_codes, low in (("label", n_labels, UNLABELED), ("pose", len(POSE_NAMES), UNKNOWN_POSE),
                               ("strategy", len(STRATEGY_NAMES), 0)):
        v = g[name][...] if n else np.zeros(0)
        if v.size and (v.min() < low or v.max() >= n_codes):
            raise StoreError(f"{where}: array {name!r} has codes outside [{low}, {n_codes - 1}]")
    if "subject_ids" in attrs and n:
        s = g["subject"][...]
        if s.min() < 0 or s.max() >= len(attrs["subject_ids"]):
            raise StoreError(f"{where}: array 'subject' has codes outside attrs subject_ids")
    return attrs


def open_store(path: Path | str) -> "zarr.Group":
    """Open a training store read-only after check_store; StoreError naming the path otherwise."""
    g, _ = open_group(path, mode="r")
    check_store(g)
    return g


def file_sha256(path: Path | str) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(path: Path | str) -> str:
    """sha256 over a directory's relative file paths and bytes: equal digests mean identical stores."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(file_sha256(p).encode())
    return h.hexdigest()

