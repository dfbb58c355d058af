"""The one typed loader of params.yaml: each stage reads its section into a dataclass."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import EmoganError

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(EmoganError):
    """params.yaml is missing a key, has an unknown one, or a value of the wrong type."""


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """Read params.yaml (default: ./params.yaml). A missing default file gives {} and a log line."""
    p = Path(path) if path is not None else DEFAULT_PARAMS
    if not p.exists():
        if path is not None:
            raise ParamsError(f"{p}: params file not found")
        log.info("no %s here: using the built-in defaults", p)
        return {}
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{p}: expected a mapping at the top level")
    data["__file__"] = str(p)
    return data


def section(params: dict[str, Any], name: str, cls: type[T], **overrides: Any) -> T:
    """Build dataclass `cls` from params[name]; CLI overrides (not None) win; unknown keys are errors."""
    raw = dict(params.get(name) or {})
    where = f"{params.get('__file__', 'params')}: section {name!r}"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        obj = cls(**raw)
    except TypeError as e:
        raise ParamsError(f"{where}: {e}") from None
    for f in dataclasses.fields(cls):
        v = getattr(obj, f.name)
        if isinstance(f.default, tuple) and isinstance(v, list):
            setattr(obj, f.name, tuple(v))
    return obj


def subsection(params: dict[str, Any], path: str, cls: type[T], **overrides: Any) -> T:
    """Like `section`, for a nested mapping named by a dotted path ("train.small")."""
    node: Any = params
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    if node is not None and not isinstance(node, dict):
        raise ParamsError(f"{params.get('__file__', 'params')}: {path!r} is not a mapping")
    return section({"__file__": params.get("__file__", "params"), path: node}, path, cls, **overrides)


def as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


def params_hash(obj: Any) -> str:
    """sha256 of a dataclass's (or dict's) canonical JSON: recorded in outputs."""
    d = as_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def path_param(params: dict[str, Any], key: str, default: str) -> Path:
    """A path declared once in params.yaml's `paths:` section (dvc.yaml templates read the same)."""
    return Path((params.get("paths") or {}).get(key, default))
