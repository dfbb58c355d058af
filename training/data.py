"""Streaming the training stores: schema check, fold selection, a chunk-shuffling IterableDataset, and
batches made ready for a step (on the device, resized, a random half mirrored).

A store is read in whole chunks along N (random row reads are 40-50x slower); each epoch the
chunk order is shuffled, chunks are dealt to (rank, worker) slots, and rows are shuffled inside
a buffer of `buffer_chunks` chunks. Stores are opened lazily in each DataLoader worker (zarr 3
runs an asyncio thread that does not survive fork; the loader uses spawn).
"""
from __future__ import annotations

import multiprocessing as mp
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.errors import EmoganError
from pipeline.schema import STRATEGY_NAMES
from pipeline.store import StoreError
from training import flowrep

# What a GAN step reads; `train-fer` reads images only.
GAN_ARRAYS: tuple[str, ...] = ("flow_input", "flow_target", "neutral", "target_image", "label", "step")
DE_ARRAYS: tuple[str, ...] = ("flow_target", "label")   # what D_E's warm-up reads
FER_ARRAYS: tuple[str, ...] = ("target_image", "neutral", "label", "strategy")


class FoldError(EmoganError):
    """A fold is missing from the folds file, or a fold would leave no rows."""


@dataclass(frozen=True)
class StoreInfo:
    """What the trainer needs to know about one checked store."""

    path: str
    n: int               # rows
    size: int            # S, the flows' and images' side
    chunk_rows: int      # rows per chunk of flow_input (the unit of reading)
    representation: str  # "polar" or "cartesian"
    clip: float          # flow clip, source pixels
    attrs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def raw_group(path: str | Path) -> Any:
    """A store opened read-only without validation: for stores check_store has already passed."""
    import zarr

    return zarr.open_group(str(path), mode="r")


def check_store(path: str | Path) -> StoreInfo:
    """Validate a store against pipeline/schema.py (through pipeline/store.py) and describe it."""
    from pipeline.store import open_store, store_rows

    g = open_store(path)
    attrs = dict(g.attrs)
    refuse_extra_labels(g, path)
    return StoreInfo(path=str(path), n=store_rows(g), size=int(attrs["size"]),
                     chunk_rows=int(g["flow_input"].chunks[0]), representation=str(attrs["representation"]),
                     clip=float(attrs["clip"]), attrs=attrs)


def content_sha256(path: str | Path) -> str:
    """A cheap fingerprint of a store's content (not its path): its provenance attrs, row count, every 1-D
    code array and the first and last chunk of the flows. `--resume` refuses a store whose content changed."""
    import hashlib
    import json

    g = raw_group(path)
    attrs = dict(g.attrs)
    h = hashlib.sha256(json.dumps({k: attrs.get(k) for k in ("params_sha256", "source_manifest_sha256", "clip",
                                                               "representation", "subject_ids", "sequence_ids")},
                                  sort_keys=True, default=str).encode())
    n = int(g["flow_input"].shape[0])
    h.update(str(n).encode())
    for name in ("label", "subject", "sequence", "pose", "strategy", "step"):
        h.update(np.ascontiguousarray(g[name][...]).tobytes())
    c = int(g["flow_input"].chunks[0])
    for name in ("flow_input", "flow_target"):
        for a in sorted({0, max(0, (n - 1) // c * c)}):
            h.update(np.ascontiguousarray(g[name][a:a + c]).tobytes())
    return h.hexdigest()


def refuse_extra_labels(g: Any, path: str | Path) -> None:
    """The nets learn CLASS_NAMES only: a store with extra label codes (CK+ contempt kept as 7) is refused
    here, once for every trainer and judge, instead of failing deep in a loss (IndexError: Target 7)."""
    from pipeline.schema import CLASS_NAMES
    from pipeline.store import StoreError

    label = np.asarray(g["label"][...])
    extra = label >= len(CLASS_NAMES)
    if extra.any():
        names = list(g.attrs.get("extra_class_names") or [])
        found = sorted({int(c) for c in label[extra]})
        what = ", ".join(f"{c} ({names[c - len(CLASS_NAMES)] if c - len(CLASS_NAMES) < len(names) else '?'})"
                         for c in found)
        raise StoreError(f"{path}: {int(extra.sum())} rows carry label code(s) {what}, beyond the "
                         f"{len(CLASS_NAMES)} classes the nets learn; rebuild the manifest with manifest.contempt: "
                         "false (`emogan manifest --no-contempt`: contempt is then listed as excluded, code -1) "
                         "and re-run crop, flow and normalize")


def check_compatible(infos: Sequence[StoreInfo]) -> None:
    """Stores merged into one training set must share size, representation and clip."""
    first = infos[0]
    for info in infos[1:]:
        for key in ("size", "representation", "clip"):
            if getattr(info, key) != getattr(first, key):
                raise StoreError(f"{info.path}: {key} {getattr(info, key)!r} differs from "
                                       f"{first.path}'s {getattr(first, key)!r}; stores trained together must agree")


# --- folds ---------------------------------------------------------------------------------

def fold_rows(info: StoreInfo, fold: int, role: str, folds_file: str | Path | None, k: int) -> np.ndarray:
    """Row indices (sorted) of a store for `role` 'train' (subjects outside `fold`) or 'test' (inside it).

    Folds come from the folds file written by `emogan folds`, else from its rule (subjects sorted,
    dealt round-robin over k) applied to the store's subject_ids; a fold that does not exist is an error.
    Subjects of a negative fold (a tuning split's reserved test subjects) are in neither role.
    """
    from pipeline.folds import read_folds, store_folds

    folds_file = Path(folds_file) if folds_file else None
    row_fold = store_folds(info.path, folds_file, k)
    if folds_file is not None:
        available, src = sorted(set(read_folds(folds_file).values())), str(folds_file)
    else:
        available, src = list(range(k)), f"the round-robin rule over k={k}"
    if fold < 0:
        raise FoldError(f"fold {fold}: negative folds mark reserved test subjects ({src}); hold out a fold >= 0")
    if fold not in available:
        raise FoldError(f"fold {fold} does not exist for store {info.path}: {src} has folds "
                        f"{', '.join(map(str, available))}")
    rows = np.flatnonzero((row_fold == fold) if role == "test" else ((row_fold != fold) & (row_fold >= 0)))
    if rows.size == 0:
        raise FoldError(f"store {info.path}: fold {fold} leaves no {role} rows ({src})")
    return rows


def split_folds(infos: Sequence[StoreInfo], fold: int, folds_files: Sequence[str | Path | None],
                k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each store's training rows (subjects outside `fold`) and test rows (inside it): the one fold split."""
    return ([fold_rows(i, fold, "train", f, k) for i, f in zip(infos, folds_files)],
            [fold_rows(i, fold, "test", f, k) for i, f in zip(infos, folds_files)])


def describe_split(stores: Sequence[str], fold: int, folds_files: Sequence[str | None], k: int) -> str:
    """What a run would train and test on: each store checked, its row counts (one line per store)."""
    infos = [check_store(s) for s in stores]
    check_compatible(infos)
    train, test = split_folds(infos, fold, folds_files, k)
    return "\n".join(f"{i.path}: {i.n} rows, {len(tr)} train, {len(te)} test (fold {fold} held out)"
                     for i, tr, te in zip(infos, train, test))


def select_rows(path: str | Path, rows: np.ndarray, strategies: Sequence[str]) -> np.ndarray:
    """Rows (of `rows`) with a label and one of `strategies` (unlabeled sequences cannot teach a classifier)."""
    g = raw_group(path)
    names = list(g.attrs.get("strategy_names", STRATEGY_NAMES))
    codes = [names.index(s) for s in strategies]
    strat = np.asarray(g["strategy"][:])[rows]
    label = np.asarray(g["label"][:])[rows]
    return rows[np.isin(strat, codes) & (label >= 0)]


def subjects_of(path: str | Path, rows: np.ndarray) -> list[str]:
    """Subject ids (store attr subject_ids) present in `rows`, sorted."""
    g = raw_group(path)
    ids = list(g.attrs["subject_ids"])
    codes = np.unique(np.asarray(g["subject"][:])[rows])
    return sorted(ids[int(c)] for c in codes)


def reserved_subjects(path: str | Path, folds_file: str | Path | None, k: int) -> list[str]:
    """Subjects of a store whose fold is negative (a tuning split's reserved test subjects), sorted."""
    from pipeline.folds import store_folds

    row_fold = store_folds(path, Path(folds_file) if folds_file else None, k)
    return subjects_of(path, np.flatnonzero(row_fold < 0))


def store_name(store: str | Path) -> str:
    """A store's dataset name: `data/stores/synth.zarr` -> `synth`."""
    return Path(str(store).rstrip("/")).name.removesuffix(".zarr")


# --- streaming ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Unit:
    """One chunk of one store and the selected rows inside it (local indices)."""

    source: int
    start: int
    stop: int
    rows: np.ndarray


def _units(paths: Sequence[str], rows: Sequence[np.ndarray], chunk_rows: Sequence[int]) -> list[_Unit]:
    out = []
    for s, (r, c) in enumerate(zip(rows, chunk_rows)):
        r = np.asarray(r, dtype=np.int64)
        if r.size == 0:
            continue
        chunk_id = r // c
        for cid in np.unique(chunk_id):
            local = r[chunk_id == cid] - cid * c
            out.append(_Unit(s, int(cid * c), int(cid * c + c), local))
    return out


@dataclass
class _EpochValue:
    """Stand-in for the shared epoch counter in copies of a dataset (same `.value` interface)."""

    value: int


def _to_torch(name: str, a: np.ndarray) -> torch.Tensor:
    # Integer codes become int64 (what cross-entropy and indexing want); flows stay float16 and
    # images uint8 until the device, so worker-to-trainer transfers stay small.
    if a.dtype.kind in "iu" and a.ndim == 1:
        return torch.from_numpy(a.astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(a))


class StreamingStoreDataset(IterableDataset):
    """Batches (dicts of tensors, arrays named as in the store) from rows of one or more stores.

    `rows[i]` are the selected row indices of `paths[i]`. Batches are made inside the dataset
    (DataLoader(batch_size=None)), so that every (rank, worker) slot yields a number of batches
    known in advance and equal across DDP ranks.
    """

    def __init__(self, paths: Sequence[str], rows: Sequence[np.ndarray], chunk_rows: Sequence[int],
                 arrays: Sequence[str], batch_size: int, seed: int = 0, shuffle: bool = True,
                 buffer_chunks: int = 4, workers: int = 0, rank: int = 0, world: int = 1, drop_last: bool = True):
        super().__init__()
        self.paths = [str(p) for p in paths]
        self.arrays = tuple(arrays)
        self.batch_size = int(batch_size)
        self.seed, self.shuffle, self.buffer_chunks = int(seed), bool(shuffle), max(1, int(buffer_chunks))
        self.workers, self.rank, self.world, self.drop_last = max(0, int(workers)), int(rank), int(world), drop_last
        self.units = _units(self.paths, rows, chunk_rows)
        if not self.units:
            raise FoldError("no rows selected: nothing to train on")
        # Shared with spawned workers (passed at their creation), so set_epoch reaches persistent workers.
        self._epoch = mp.get_context("spawn").Value("i", 0)
        self._groups: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_groups"] = None  # zarr handles are opened again in each worker
        if mp.context.get_spawning_popen() is None:
            # Pickled outside a worker's creation (a copy): the epoch travels as a plain value.
            state["_epoch"] = _EpochValue(self._epoch.value)
        return state

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (deterministic) shuffle the next iteration uses."""
        self._epoch.value = int(epoch)

    @property
    def n_rows(self) -> int:
        """Selected rows over all stores."""
        return int(sum(u.rows.size for u in self.units))

    def _slots(self) -> int:
        return self.world * max(1, self.workers)

    def _plan(self, epoch: int) -> list[list[_Unit]]:
        """Units of each slot (rank-major: slot = worker * world + rank) for an epoch."""
        order = list(range(len(self.units)))
        if self.shuffle:
            np.random.default_rng([self.seed, epoch, 0]).shuffle(order)
        n = self._slots()
        slots: list[list[_Unit]] = [[] for _ in range(n)]
        load = [0] * n
        for i in order:
            # Greedy balancing: chunks hold unequal numbers of selected rows.
            s = min(range(n), key=lambda j: (load[j], j))
            slots[s].append(self.units[i])
            load[s] += self.units[i].rows.size
        return slots

    def _limits(self, slots: list[list[_Unit]]) -> list[int]:
        """Batches each slot yields: its full batches, equalized across ranks for each worker index."""
        rows = [sum(u.rows.size for u in s) for s in slots]
        if self.drop_last:
            per = [r // self.batch_size for r in rows]
        else:
            per = [-(-r // self.batch_size) for r in rows]
        if self.world > 1:
            for w in range(max(1, self.workers)):
                idx = [w * self.world + r for r in range(self.world)]
                m = min(per[i] for i in idx)
                for i in idx:
                    per[i] = m
        return per

    def batches_per_epoch(self, epoch: int = 0) -> int:
        """Batches this rank yields in an epoch (all workers together)."""
        slots = self._plan(epoch)
        lim = self._limits(slots)
        return sum(lim[w * self.world + self.rank] for w in range(max(1, self.workers)))

    def steps_in_epoch(self, epoch: int, cap: int | None, where: str) -> int:
        """Batches a training loop runs in `epoch`: this rank's, at most `cap` (None: all). None at all is an error
        naming `where`: with full batches (drop_last), fewer rows than a batch would train nothing, silently."""
        n = self.batches_per_epoch(epoch)
        if cap:
            n = min(n, int(cap))
        if n == 0:
            raise EmoganError(f"{where}: {self.n_rows} training rows make no batch of {self.batch_size} in epoch "
                              f"{epoch + 1}; lower batch_size or train on more rows")
        return n

    def _open(self) -> list[Any]:
        if self._groups is None:
            self._groups = [raw_group(p) for p in self.paths]
        return self._groups

    def read_unit(self, u: _Unit) -> dict[str, np.ndarray]:
        """The selected rows of one chunk, every requested array (one contiguous read per array)."""
        from pipeline.store import read_rows

        g = self._open()[u.source]
        out = {}
        for name in self.arrays:
            a = g[name]
            stop = min(u.stop, a.shape[0])
            out[name] = read_rows(a, u.start, stop, self.paths[u.source])[u.rows]
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        n_workers = info.num_workers if info is not None else 1
        if info is not None and n_workers != max(1, self.workers):
            raise RuntimeError(f"dataset planned for {self.workers} workers, DataLoader runs {n_workers}")
        epoch = int(self._epoch.value)
        slots = self._plan(epoch)
        limits = self._limits(slots)
        slot = worker * self.world + self.rank
        yield from self._iter_slot(slots[slot], limits[slot], epoch, slot)

    def _iter_slot(self, units: list[_Unit], limit: int, epoch: int, slot: int) -> Iterator[dict[str, torch.Tensor]]:
        emitted = 0
        carry: dict[str, np.ndarray] | None = None
        bs = self.batch_size
        for gi in range(0, len(units), self.buffer_chunks):
            if emitted >= limit:
                return
            parts = [self.read_unit(u) for u in units[gi:gi + self.buffer_chunks]]
            if carry is not None:
                parts.insert(0, carry)
            buf = {k: np.concatenate([p[k] for p in parts]) for k in self.arrays}
            m = len(buf[self.arrays[0]])
            perm = (np.random.default_rng([self.seed, epoch, 1, slot, gi]).permutation(m)
                    if self.shuffle else np.arange(m))
            n_full = m // bs
            for b in range(n_full):
                if emitted >= limit:
                    return
                idx = perm[b * bs:(b + 1) * bs]
                yield {k: _to_torch(k, v[idx]) for k, v in buf.items()}
                emitted += 1
            rest = perm[n_full * bs:]
            carry = {k: v[rest] for k, v in buf.items()} if rest.size else None
        if carry is not None and not self.drop_last and emitted < limit:
            yield {k: _to_torch(k, v) for k, v in carry.items()}


def make_loader(ds: StreamingStoreDataset, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over a StreamingStoreDataset: spawned, persistent workers (never fork with zarr/OpenCV)."""
    import functools
    import os

    from pipeline.pool import die_with_parent

    kw: dict[str, Any] = {}
    if ds.workers > 0:
        # Workers die with this process (a worker blocked on a full queue never notices its parent is gone).
        kw = dict(num_workers=ds.workers, multiprocessing_context="spawn", persistent_workers=True, prefetch_factor=4,
                  worker_init_fn=functools.partial(die_with_parent, os.getpid()))
    return torch.utils.data.DataLoader(ds, batch_size=None, pin_memory=pin_memory, **kw)


def iter_rows(path: str, rows: np.ndarray, arrays: Sequence[str], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Sequential batches of the given rows of one store (evaluation): whole-chunk reads, no shuffle, no drop."""
    info_chunk = int(raw_group(path)[arrays[0]].chunks[0])
    ds = StreamingStoreDataset([path], [rows], [info_chunk], arrays, batch_size, shuffle=False, drop_last=False)
    yield from ds._iter_slot(ds._plan(0)[0], ds._limits(ds._plan(0))[0], 0, 0)


# --- batches for a step ---------------------------------------------------------------------

def to_device(batch: dict[str, torch.Tensor], device: torch.device, size: int | None, representation: str,
              clip: float) -> dict[str, torch.Tensor]:
    """Batch from the loader to the device: flows float32, images float in [-1,1], codes int64; resized to `size`."""
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if v.dtype == torch.uint8:
            v = v.float() / 127.5 - 1.0
            if size is not None and v.shape[-1] != size:
                v = torch.nn.functional.interpolate(v, size=(size, size), mode="area")
        elif v.is_floating_point():
            v = v.float()
            if size is not None and v.ndim == 4:
                v = flowrep.resize_flow(v, size, representation, clip)
        out[k] = v
    return out


class MirrorDraws:
    """Which rows of each batch are mirrored: a random half, drawn from a generator seeded per epoch.

    The one seeding rule of the project (GAN, e_FER, Flow-CNN): seed, rank and epoch fix the draws, so a
    run resumed at an epoch mirrors what an uninterrupted one does (the D_E warm-up is epoch -1).
    """

    def __init__(self, seed: int, rank: int = 0):
        self.seed, self.rank = int(seed), int(rank)
        self.gen = torch.Generator()

    def start_epoch(self, epoch: int) -> None:
        """Reseed for `epoch`."""
        self.gen.manual_seed(self.seed + 7919 * (self.rank + 1) + 104729 * (epoch + 1))

    def draw(self, n: int) -> torch.Tensor:
        """(n,) bool: the rows to mirror."""
        return torch.rand(n, generator=self.gen) < 0.5


def mirror_batch(batch: dict[str, torch.Tensor], sel: torch.Tensor, representation: str,
                 clip: float) -> dict[str, torch.Tensor]:
    """The batch with rows `sel` (N,) mirrored left-right: flows (keys flow*) through (u, v) with u negated,
    other (N,C,H,W) arrays (faces) flipped. A mirrored face makes the same expression, so labels stay."""
    if not bool(sel.any()):
        return batch
    ref = next(v for v in batch.values() if v.ndim == 4)
    idx = torch.nonzero(sel).flatten().to(ref.device)
    out = dict(batch)
    for k, v in batch.items():
        if v.ndim != 4:
            continue
        part = v.index_select(0, idx)
        part = flowrep.flip_flows(part, representation, clip) if k.startswith("flow") else part.flip(-1)
        out[k] = v.index_copy(0, idx, part.to(v.dtype))
    return out


def sequence_step_rows(store: str, na_rows: np.ndarray) -> dict[int, np.ndarray]:
    """For each neutral_apex row whose sequence has frame_to_frame step-1 rows in the store: those rows in frame
    order (`frame_t`, else row order). Rows without any are left out. Evaluation chains G_F over them
    (training/evaluation/chain.py), the trainer's L_chain too (training/step.py)."""
    g = raw_group(store)
    names = list(g.attrs.get("strategy_names", []))
    if "frame_to_frame" not in names:
        return {}
    seq, strat, step = (np.asarray(g[k][:]) for k in ("sequence", "strategy", "step"))
    t = np.asarray(g["frame_t"][:]) if "frame_t" in set(g.array_keys()) else np.arange(len(seq))
    f2f = np.flatnonzero((strat == names.index("frame_to_frame")) & (step == 1))
    by_seq: dict[int, list[int]] = defaultdict(list)
    for r in f2f:
        by_seq[int(seq[r])].append(int(r))
    return {int(r): np.asarray(sorted(by_seq[int(seq[r])], key=lambda x: t[x]))
            for r in np.asarray(na_rows) if by_seq.get(int(seq[r]))}
