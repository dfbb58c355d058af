"""CK+: `cohn-kanade-images/S###/###/S###_###_########.png` and `Emotion/S###/###/*_emotion.txt`.

Emotion codes 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
Contempt is listed with label_code -1 (excluded) unless `manifest.contempt` keeps it as code 7.
Sequences without an emotion file (or with an empty label folder) are listed unlabeled.
"""
from __future__ import annotations

import logging
from pathlib import Path

from pipeline.adapters.common import ManifestParams, Sequence, list_frames, name_code, need_dir, rel, subdirs
from pipeline.errors import EmoganError

log = logging.getLogger(__name__)
CKPLUS_CODES: tuple[str, ...] = (
    "neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise",
)


def read_emotion(path: Path, params: ManifestParams) -> tuple[str, int]:
    """One `*_emotion.txt` (a float such as `3.0000000e+00`) as (class name, our code)."""
    try:
        text = path.read_text().strip()
        k = int(float(text))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise EmoganError(f"{path}: not a CK+ emotion file (expected one number 0-7): {e}") from None
    if not 0 <= k < len(CKPLUS_CODES):
        raise EmoganError(f"{path}: CK+ emotion code {k} is outside 0-7")
    name = CKPLUS_CODES[k]
    return name, name_code(name, params, str(path))


def scan(source: Path, params: ManifestParams) -> list[Sequence]:
    """Every image sequence; the label from its emotion file when there is one."""
    images = need_dir(source / params.ckplus_images, "CK+ image folder")
    labels_root = source / params.ckplus_labels
    if not labels_root.is_dir():
        log.warning("%s: no CK+ label folder: every sequence is listed unlabeled", labels_root)
    seqs = []
    for sub in subdirs(images):
        for seq in subdirs(sub):
            frames = list_frames(seq, params.image_exts)
            label, code = "", -1
            found = sorted((labels_root / sub.name / seq.name).glob("*_emotion.txt"))
            if len(found) > 1:
                raise EmoganError(f"{found[1]}: more than one emotion file for {sub.name}/{seq.name}")
            if found:
                label, code = read_emotion(found[0], params)
            seqs.append(Sequence(sub.name, seq.name, label, code, "nothing", [rel(p, source) for p in frames]))
    n_lab = sum(s.label_code >= 0 for s in seqs)
    log.info("CK+ %s: %d sequences, %d labelled, %d unlabeled or excluded", source, len(seqs), n_lab, len(seqs) - n_lab)
    return seqs
