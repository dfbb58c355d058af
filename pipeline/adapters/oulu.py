"""Oulu-CASIA NIR&VIS: `[OriginalImg|PreProcessImg/]{VL,NI}/{Strong,Weak,Dark}/P###/<Expression>/*.jpeg`.

The label is the expression folder name. `manifest.oulu_subsets` picks the spectrum/lighting
subsets (default VL/Strong, the standard 480 sequences); the sequence id is
`<spectrum>_<lighting>_<Expression>` so that several subsets never collide.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.adapters.common import ManifestParams, Sequence, list_frames, need_dir, parse_label, rel, subdirs
from pipeline.errors import EmoganError

SPECTRA = ("VL", "NI")
LIGHTINGS = ("Strong", "Weak", "Dark")


def base_dir(source: Path, params: ManifestParams) -> Path:
    """The folder holding VL/ and NI/: SOURCE itself or SOURCE/<oulu_variant>."""
    if any((source / s).is_dir() for s in SPECTRA):
        return source
    return need_dir(source / params.oulu_variant, "Oulu-CASIA folder with VL/ or NI/ inside")


def scan(source: Path, params: ManifestParams) -> list[Sequence]:
    """Every P###/<Expression> sequence of the chosen subsets."""
    base = base_dir(source, params)
    seqs = []
    for subset in params.oulu_subsets:
        parts = subset.split("/")
        if len(parts) != 2 or parts[0] not in SPECTRA or parts[1] not in LIGHTINGS:
            raise EmoganError(f"Oulu subset {subset!r}: expected SPECTRUM/LIGHTING with spectrum in "
                              f"{', '.join(SPECTRA)} and lighting in {', '.join(LIGHTINGS)}")
        folder = need_dir(base / parts[0] / parts[1], f"Oulu-CASIA subset {subset}")
        for sub in subdirs(folder):
            for expr in subdirs(sub):
                label, code = parse_label(expr.name, params, str(expr))
                frames = list_frames(expr, params.image_exts)
                seqs.append(Sequence(sub.name, f"{parts[0]}_{parts[1]}_{expr.name}", label, code, "nothing",
                                     [rel(p, source) for p in frames]))
    return seqs
