"""The one typed loader of params.yaml: each stage reads its section into a dataclass.

params.yaml is the only source of values: the params dataclasses have no defaults (every field is
required, so a value can never drift from the file), and no command runs without the file: it is
./params.yaml or the one given with `--params` (PARAMS_OPTION, shared by every command).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional, TypeVar

import typer
import yaml

from pipeline.errors import EmoganError

T = TypeVar("T")
DEFAULT_PARAMS = Path("params.yaml")

# The `--params` option of every command (one object: same flag, same help everywhere).
PARAMS_OPTION: Any = typer.Option(None, "--params", help="params file (default: ./params.yaml)")


class ParamsError(EmoganError):
    """params.yaml is missing, lacks a key, has an unknown one, or a value of the wrong type."""


def load_params(path: Optional[Path | str] = None) -> dict[str, Any]:
    """Read params.yaml: `path`, else ./params.yaml; ParamsError (one line) when there is none."""
    p = Path(path) if path is not None else DEFAULT_PARAMS
    if not p.is_file():
        if path is not None:
            raise ParamsError(f"{p}: params file not found")
        raise ParamsError(f"no params.yaml in {Path.cwd()}: run emogan in the project folder (where params.yaml "
                          "is) or pass --params PATH")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{p}: expected a mapping at the top level")
    data["__file__"] = str(p)
    return data


def _is_tuple(f: dataclasses.Field) -> bool:
    # Annotations are strings (`from __future__ import annotations`): "tuple[str, ...]", "tuple[int, int] | None".
    return str(f.type).startswith("tuple")


def build(cls: type[T], raw: Mapping[str, Any], where: str) -> T:
    """Dataclass `cls` from a mapping holding exactly its fields (lists become tuples where it declares tuples)."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    missing = [n for n in fields if n not in raw]
    if missing:
        raise ParamsError(f"{where}: missing key(s) {', '.join(missing)}")
    values = {k: tuple(v) if _is_tuple(fields[k]) and isinstance(v, list) else v for k, v in raw.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ParamsError(f"{where}: {e}") from None


def section(params: dict[str, Any], name: str, cls: type[T], **overrides: Any) -> T:
    """Build dataclass `cls` from params[name]; CLI overrides (not None) win; unknown or missing keys are errors."""
    raw = params.get(name)
    where = f"{params.get('__file__', 'params')}: section {name!r}"
    if raw is None:
        raise ParamsError(f"{where} is missing")
    raw = dict(raw) if isinstance(raw, Mapping) else raw
    if isinstance(raw, dict):
        raw.update({k: v for k, v in overrides.items() if v is not None})
    return build(cls, raw, where)


def subsection(params: dict[str, Any], path: str, cls: type[T], **overrides: Any) -> T:
    """Like `section`, for a nested mapping named by a dotted path ("train.small")."""
    node: Any = params
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return section({"__file__": params.get("__file__", "params"), path: node}, path, cls, **overrides)


def with_record(base: T, record: Mapping[str, Any] | None, where: str) -> T:
    """`base` (this params.yaml's) with the values an output recorded (e.g. a store's flow params) on top.

    Outputs record the params that shape them, not how the work was run (workers): those come from base.
    """
    fields = dataclasses.fields(base)  # type: ignore[arg-type]
    values = {f.name: getattr(base, f.name) for f in fields}
    values.update({k: v for k, v in (record or {}).items() if k in values})
    return build(type(base), values, where)


def as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


def params_hash(obj: Any) -> str:
    """sha256 of a dataclass's (or dict's) canonical JSON: recorded in outputs."""
    d = as_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def path_param(params: dict[str, Any], key: str) -> Path:
    """A path declared once in params.yaml's `paths:` section (dvc.yaml templates read the same)."""
    value = (params.get("paths") or {}).get(key)
    if not value:
        raise ParamsError(f"{params.get('__file__', 'params')}: `paths.{key}` is missing")
    return Path(value)
