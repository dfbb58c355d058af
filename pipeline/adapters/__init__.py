"""Dataset adapters: each turns one on-disk layout into a list of Sequence rows for the manifest."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.adapters import ckplus, emotiongan, oulu, videos
from pipeline.adapters.common import ManifestParams, Sequence

# --format name -> scan(source, params) -> list[Sequence]
ADAPTERS: dict[str, Callable[[Path, ManifestParams], list[Sequence]]] = {
    "emotiongan": emotiongan.scan,
    "ckplus": ckplus.scan,
    "oulu": oulu.scan,
    "videos": videos.scan,
}
