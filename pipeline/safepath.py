"""Paths built from manifest/CSV content (not from the user's own arguments) stay inside their root.

A manifest, crops.csv or labels file is data: it may come from someone else. Every stage that turns one
of its fields into a path (crop, augment, flow, the landmark baseline, and build_manifest for what the
adapters found) goes through these two functions, so a row naming `../victim` or `/etc` is refused with
one line naming the file, and only that row is skipped. The check is lexical: no absolute path and no `..`
component at all (our own files never write one, and `a/link/../x` would climb out through a symlink);
a symlink the dataset's owner placed inside the root is followed, as any reader of the folder would.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from pipeline.errors import SequenceError


def safe_name(value: str, what: str, where: object) -> str:
    """`value` if it can be one folder name (subject, sequence): not empty, `.`, `..`, hidden, nor holding a separator."""
    if not value or value in (".", "..") or value.startswith(".") or any(c in value for c in "/\\\0"):
        raise SequenceError(where, f"{what} {value!r} cannot be a folder name")
    return value


def inside(root: Path | str, rel: str, what: str, where: object) -> Path:
    """root / rel for a relative path read from a file; SequenceError(where) if it is absolute or leaves root."""
    if not rel:
        raise SequenceError(where, f"{what} path is empty")
    if "\0" in rel:
        raise SequenceError(where, f"{what} path {rel!r} holds a NUL character")
    posix = rel.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or PureWindowsPath(rel).drive:
        raise SequenceError(where, f"{what} path {rel!r} is absolute: paths in this file are relative to {root}")
    if ".." in PurePosixPath(posix).parts:
        raise SequenceError(where, f"{what} path {rel!r} climbs with '..': it could lead outside {root}")
    return Path(root) / posix
