"""Streaming the training stores: schema check, fold selection, a chunk-shuffling IterableDataset.

A store is read in whole chunks along N (random row reads are 40-50x slower); each epoch the
chunk order is shuffled, chunks are dealt to (rank, worker) slots, and rows are shuffled inside
a buffer of `buffer_chunks` chunks. Stores are opened lazily in each DataLoader worker (zarr 3
runs an asyncio thread that does not survive fork; the loader uses spawn).
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.errors import EmoganError
from pipeline.store import StoreError

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
    clip: float          # flow clip, source pixels (the frontal flows and G_F's output)
    attrs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    clip_input: float | None = None   # clip of flow_input (G_F's input), source pixels; None: `clip`

    @property
    def input_clip(self) -> float:
        """The clip flow_input is encoded with."""
        return self.clip if self.clip_input is None else self.clip_input


def raw_group(path: str | Path) -> Any:
    """A store opened read-only without validation: for stores check_store has already passed."""
    import zarr

    return zarr.open_group(str(path), mode="r")


def check_store(path: str | Path) -> StoreInfo:
    """Validate a store against pipeline/schema.py (through pipeline/store.py) and describe it."""
    from pipeline.store import open_store, store_rows

    g = open_store(path)
    attrs = dict(g.attrs)
    return StoreInfo(path=str(path), n=store_rows(g), size=int(attrs["size"]),
                     chunk_rows=int(g["flow_input"].chunks[0]), representation=str(attrs["representation"]),
                     clip=float(attrs["clip"]), attrs=attrs, clip_input=float(attrs.get("clip_input", attrs["clip"])))


def check_compatible(infos: Sequence[StoreInfo]) -> None:
    """Stores merged into one training set must share size, representation and clip."""
    first = infos[0]
    for info in infos[1:]:
        for key in ("size", "representation", "clip", "input_clip"):
            if getattr(info, key) != getattr(first, key):
                raise StoreError(f"{info.path}: {key} {getattr(info, key)!r} differs from "
                                       f"{first.path}'s {getattr(first, key)!r}; stores trained together must agree")


# --- folds ---------------------------------------------------------------------------------

def fold_rows(info: StoreInfo, fold: int, role: str, folds_file: Path | None, k: int) -> np.ndarray:
    """Row indices (sorted) of a store for `role` 'train' (subjects outside `fold`) or 'test' (inside it).

    Subjects of a negative fold (a tuning folds file's reserved test subjects) are in neither.

    Folds come from the folds file written by `emogan folds`, else from its rule (subjects sorted,
    dealt round-robin over k) applied to the store's subject_ids; a fold that does not exist is an error.
    """
    from pipeline.folds import read_folds, store_folds

    row_fold = store_folds(info.path, folds_file, k)
    if folds_file is not None:
        available, src = sorted(set(read_folds(folds_file).values())), str(folds_file)
    else:
        available, src = list(range(k)), f"the round-robin rule over k={k}"
    if fold < 0:
        raise FoldError(f"fold {fold}: negative folds mark reserved subjects ({src}); hold out a fold >= 0")
    if fold not in available:
        raise FoldError(f"fold {fold} does not exist for store {info.path}: {src} has folds "
                        f"{', '.join(map(str, available))}")
    # A negative fold reserves its subjects: neither trained on nor held out (a tuning folds file
    # gives the final test folds' subjects -1, so that no tuning run sees them).
    rows = np.flatnonzero((row_fold == fold) if role == "test" else ((row_fold != fold) & (row_fold >= 0)))
    if rows.size == 0:
        raise FoldError(f"store {info.path}: fold {fold} leaves no {role} rows ({src})")
    return rows


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

    def _open(self) -> list[Any]:
        if self._groups is None:
            self._groups = [raw_group(p) for p in self.paths]
        return self._groups

    def read_unit(self, u: _Unit) -> dict[str, np.ndarray]:
        """The selected rows of one chunk, every requested array (one contiguous read per array)."""
        g = self._open()[u.source]
        out = {}
        for name in self.arrays:
            a = g[name]
            stop = min(u.stop, a.shape[0])
            out[name] = np.asarray(a[u.start:stop])[u.rows]
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
    kw: dict[str, Any] = {}
    if ds.workers > 0:
        kw = dict(num_workers=ds.workers, multiprocessing_context="spawn", persistent_workers=True, prefetch_factor=4)
    return torch.utils.data.DataLoader(ds, batch_size=None, pin_memory=pin_memory, **kw)


def iter_rows(path: str, rows: np.ndarray, arrays: Sequence[str], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Sequential batches of the given rows of one store (evaluation): whole-chunk reads, no shuffle, no drop."""
    info_chunk = int(raw_group(path)[arrays[0]].chunks[0])
    ds = StreamingStoreDataset([path], [rows], [info_chunk], arrays, batch_size, shuffle=False, drop_last=False)
    yield from ds._iter_slot(ds._plan(0)[0], ds._limits(ds._plan(0))[0], 0, 0)
