"""The eMotion-GAN layout: `cam1/` and `cam2/` trees of `<subject>/<sequence>/img_NNN.png` plus a labels file.

Labels: ours (`subject;sequence;expression;pose;amplitude_deg`, with that header line) or the
paper's (`sub;seq;label`, no header). Labels may be class names or integer codes; an integer
k means `manifest.int_labels[k]`, by default CLASS_NAMES order (0 neutral, 1 anger, 2 disgust,
3 fear, 4 happiness, 5 sadness, 6 surprise): the paper's code does not publish its mapping.
"""
from __future__ import annotations

import logging
from pathlib import Path

from pipeline.adapters.common import (
    ManifestParams, Sequence, check_pose, id_key, list_frames, natural_key, need_dir, parse_label, rel, subdirs,
)
from pipeline.errors import EmoganError

log = logging.getLogger(__name__)
HEADER_SUBJECT = {"subject", "sub", "sub_id"}
HEADER_SEQUENCE = {"sequence", "seq", "seq_id"}
HEADER_LABEL = {"expression", "label", "emotion"}


def read_labels(path: Path, params: ManifestParams) -> dict[tuple[str, str], tuple[str, int, str]]:
    """Labels file -> {(subject key, sequence key): (label, code, pose)}; both formats, `;` or `,`."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EmoganError(f"{path}: cannot read the labels file ({e})") from None
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        return {}
    sep = ";" if ";" in numbered[0][1] else ","
    first = [f.strip().lower() for f in numbered[0][1].split(sep)]
    if first[0] in HEADER_SUBJECT:
        cols = {name: i for i, name in enumerate(first)}
        try:
            i_sub = next(cols[n] for n in first if n in HEADER_SUBJECT)
            i_seq = next(cols[n] for n in first if n in HEADER_SEQUENCE)
            i_lab = next(cols[n] for n in first if n in HEADER_LABEL)
        except StopIteration:
            raise EmoganError(f"{path}:1: header needs subject, sequence and expression (or label) columns; "
                              f"found {', '.join(first)}") from None
        i_pose = cols.get("pose")
        numbered = numbered[1:]
    else:  # the paper's headerless sub;seq;label
        i_sub, i_seq, i_lab, i_pose = 0, 1, 2, None
    need = max(i for i in (i_sub, i_seq, i_lab, i_pose) if i is not None) + 1
    out: dict[tuple[str, str], tuple[str, int, str]] = {}
    for n, ln in numbered:
        fields = [f.strip() for f in ln.split(sep)]
        where = f"{path}:{n}"
        if len(fields) < need:
            raise EmoganError(f"{where}: expected at least {need} {sep!r}-separated fields, got {len(fields)}")
        label, code = parse_label(fields[i_lab], params, where)
        pose = check_pose(fields[i_pose], where) if i_pose is not None else ""
        key = (id_key(fields[i_sub]), id_key(fields[i_seq]))
        if key in out:
            raise EmoganError(f"{where}: sequence {fields[i_sub]}/{fields[i_seq]} is labelled twice")
        out[key] = (label, code, pose)
    return out


def _camera_tree(cam_root: Path, params: ManifestParams) -> dict[tuple[str, str], tuple[str, str, list[Path]]]:
    """{(subject key, sequence key): (subject, sequence, frames)} for one camera's tree."""
    tree = {}
    for sub in subdirs(cam_root):
        for seq in subdirs(sub):
            tree[(id_key(sub.name), id_key(seq.name))] = (sub.name, seq.name, list_frames(seq, params.image_exts))
    return tree


def scan(source: Path, params: ManifestParams) -> list[Sequence]:
    """All sequences found in either camera (a one-camera sequence is kept: crop reports the mismatch)."""
    if len(params.cameras) != 2:
        raise EmoganError(f"manifest.cameras must name two folders (frontal, non-frontal), got {params.cameras}")
    cam1 = _camera_tree(need_dir(source / params.cameras[0], "frontal camera folder"), params)
    cam2_root = source / params.cameras[1]
    cam2 = _camera_tree(need_dir(cam2_root, "non-frontal camera folder"), params)
    labels: dict[tuple[str, str], tuple[str, int, str]] = {}
    if params.labels:
        lpath = Path(params.labels) if Path(params.labels).is_absolute() else source / params.labels
        if not lpath.is_file():
            raise EmoganError(f"{lpath}: labels file not found; pass --labels PATH, or --labels '' "
                              "to list every sequence as unlabeled")
        labels = read_labels(lpath, params)
    seqs = []
    for key in sorted(set(cam1) | set(cam2), key=lambda k: (natural_key(k[0]), natural_key(k[1]))):
        subject, sequence, f1 = cam1.get(key, (None, None, []))
        s2, q2, f2 = cam2.get(key, (None, None, []))
        subject, sequence = subject or s2, sequence or q2
        label, code, pose = labels.get(key, ("", -1, ""))
        seqs.append(Sequence(subject, sequence, label, code, pose,
                             [rel(p, source) for p in f1], [rel(p, source) for p in f2]))
    missing = sorted(set(labels) - set(cam1) - set(cam2))
    if missing:
        log.warning("%d labelled sequence(s) have no frames in %s (first: %s)",
                    len(missing), source, ", ".join("/".join(k) for k in missing[:5]))
    return seqs
