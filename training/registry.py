"""A small registry of networks built by name: `build("gf", **cfg)`; the training loop never names a class."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from pipeline.errors import EmoganError

_BUILDERS: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make a network class (or factory) buildable as `build(name, **cfg)`."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise ValueError(f"network name {name!r} registered twice")
        _BUILDERS[name] = fn
        return fn
    return deco


def _ensure_loaded() -> None:
    # Importing the modules runs their @register decorators.
    import training.gw_warp  # noqa: F401
    import training.networks  # noqa: F401


def names() -> tuple[str, ...]:
    """The registered network names."""
    _ensure_loaded()
    return tuple(sorted(_BUILDERS))


def builder(name: str) -> Callable[..., Any]:
    """The class (or factory) registered as `name`; unknown names are clear errors."""
    _ensure_loaded()
    if name not in _BUILDERS:
        raise EmoganError(f"unknown network {name!r}; registered: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]


def build(name: str, **cfg: Any) -> Any:
    """Build network `name` from keyword config; unknown names or keys are clear errors."""
    fn = builder(name)
    accepted = inspect.signature(fn).parameters
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise EmoganError(f"network {name!r}: unknown option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(accepted)}")
    return fn(**cfg)


def build_from(spec: dict[str, Any]) -> Any:
    """Build from a config dict holding the network's `name` plus its options."""
    spec = dict(spec)
    try:
        name = spec.pop("name")
    except KeyError:
        raise EmoganError(f"network config {spec} lacks a 'name'") from None
    return build(name, **spec)
