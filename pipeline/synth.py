"""Stage `synth`: a synthetic SNaP-2DFe — the same expression seen by a frontal head-mounted
camera (cam1, no head motion) and by a static camera that sees the head move (cam2).

Subjects are built from real photographs (pipeline/people.py, face_model.py), expressions from
EMFACS action-unit prototypes, head poses from SNaP-2DFe's six categories. The output
is the `emotiongan` layout that `emogan manifest --format emotiongan` reads (or, with
layout `ckplus`, a frontal-only CK+ tree). Deterministic for a seed, whatever the
number of workers; a killed run resumes from the sequences it finished.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Literal, Mapping, Optional

import cv2
import numpy as np
import typer

from pipeline import pool
from pipeline.errors import EmoganError
from pipeline.lock import writer_lock
from pipeline.mesh import smoothstep
from pipeline.params import PARAMS_OPTION, as_dict, load_params, params_hash, section
from pipeline.people import make_subject
from pipeline.schema import CLASS_NAMES, POSE_NAMES

log = logging.getLogger(__name__)

SYNTH_POSES = POSE_NAMES[:6]       # `augmented` belongs to the augment stage, not to synth
CKPLUS_CODES = {"neutral": 0, "anger": 1, "disgust": 3, "fear": 4, "happiness": 5, "sadness": 6, "surprise": 7}

# EMFACS prototypes: (action unit, weight, probability that this person/sequence shows it).
# Surprise opens the mouth to a tall oval (AU26+27) with little inner-brow raise: AU1-led brows and
# a sideways-stretched mouth are what the FER2013 model calls fear. Anger, sadness and fear were
# re-chosen for the many-photograph people on tuning seed 100 (16-32 people, the pretrained FER2013
# judge's recall of the apex face; docs/DATASET.md): anger stronger and with a little nose wrinkle
# (0.41 -> 0.62; an open snarl read as happy), sadness with raised inner brows, lip corners down,
# chin raised, drooping lids and a little of the crying cheeks (0.34; the full crying variant with
# AU4+6+7+9 read as anger, 0.25), fear with wide eyes, a dropped jaw and only a little lip stretch
# (AU20 at 1.0 showed teeth and read as happy: 0.12 -> 0.69). Issue #14's second round
# (benchmarks/tune_expressions.py, tuning seeds 100 and 101, 32 people x 6 cam1 draws each; recall
# before -> after on both seeds together): sadness's brows oblique, inner end up and outer end down
# (AU2 at -1), with lighter lip corners (AU15 0.8) and heavier lids: 0.34 -> 0.56 (with AU4 or
# strong AU15 alone it reads as anger); anger's brows lower (AU4 1.6 -> 2.4): 0.65 -> 0.77; fear's
# brows AU1-led without AU2: 0.59 -> 0.71; happiness's smile stronger (AU12 1.3, AU6 1.0): 0.84 ->
# 0.94. Surprise's mouth was a wide dark box (a scream: fear, anger); a negative lip stretcher (AU20
# at -1: the corners drawn in, a rounder O), less mouth stretch and wider eyes (AU5 2) take it from
# 0.11 to 0.21 (more faces go undetected by mediapipe); without AU1 the raised outer brows slant like
# anger's, with AU1 >= AU2 they read as fear. Disgust stays 0 whatever was tried (nose wrinkle, brow
# lowerer, no lip raise, negative lip-corner pull): it moves between happiness and anger.
# Third round (issue #14, 2026-12-01; tuning seeds 100-102 only): the FER2013 judge read surprise's open
# mouth alone (on a neutral upper face) as anger: a jaw drop moved the whole lower lip as a block and
# opened a dark box or hourglass. AU27 now opens an oval (face_model._oval_field); surprise is mostly
# AU27 with a little jaw drop, upper teeth showing (AU10 0.5), lids wide (AU5, AU43 negative), chosen by
# a random search on seed 100 and checked on 101-102: 0.30 over the three seeds, against 0.13 for the
# second round's recipe on the oval (53 against 135 of 576 faces lost by the detector). Sadness without the jaw drop (AU26 0.4; an open mouth showed the lower
# teeth at the corners and read as fear): 0.59 -> 0.67 on seed 100.
# Fourth round (issue #14, 2026-12-02; benchmarks/search_recipe.py, tuning seeds only; decided on seeds
# 122-124 with every apex judged, cropped by the neutral frame's box): sadness from a local
# search (searched on 100-102, checked on 103-105, confirmed on 122-124: 0.60 -> 0.66); surprise wider
# lids (AU43), lips parted wider (AU25), a bigger oval (AU27), corners drawn down (AU12) - the directions
# two searches agreed on, kept within 1.5x of the third round's weights because larger moves warped
# cheeks and mouths into shapes no face makes, which the judge still read - 0.19 -> 0.28 on 122-124.
# Sixth round (issue #14, 2026-12-03; benchmarks/issue14/surprise_trial.py, tuning seeds 132-137 only): the
# outer brows raised far above the inner ones (AU2 1.61, AU1 0.28) slanted the brows into anger's V on many
# people; level brows (AU1 0.5, AU2 0.7) read as surprise 0.368 -> 0.450 on 132-134 (chosen there among seven
# brow weightings) and 0.366 -> 0.455 on 135-137 (checked), every seed up.
EXPRESSION_AUS: dict[str, list[tuple[str, float, float]]] = {
    "neutral": [],
    "happiness": [("AU6", 1.0, 1.0), ("AU12", 1.3, 1.0), ("AU25", 0.7, 0.85), ("AU26", 0.3, 0.2)],
    "surprise": [("AU1", 0.5, 1.0), ("AU2", 0.7, 1.0), ("AU5", 2.27, 1.0), ("AU43", -0.9, 1.0), ("AU25", 0.8, 1.0),
                 ("AU26", 0.3, 1.0), ("AU27", 1.32, 1.0), ("AU20", -0.4, 1.0), ("AU10", 0.72, 1.0), ("AU12", -0.6, 1.0),
                 ("AU16", 0.4, 1.0)],
    "sadness": [("AU1", 1.08, 1.0), ("AU2", -1.17, 1.0), ("AU4", 0.79, 1.0), ("AU6", 0.91, 1.0), ("AU15", 0.7, 1.0),
                ("AU16", 0.36, 1.0), ("AU17", 0.94, 1.0), ("AU43", 0.97, 1.0)],
    "anger": [("AU4", 2.4, 1.0), ("AU5", 0.6, 1.0), ("AU7", 1.2, 1.0), ("AU9", 0.4, 1.0), ("AU23", 1.2, 1.0),
              ("AU17", 0.8, 1.0)],
    "disgust": [("AU9", 1.0, 1.0), ("AU10", 1.0, 1.0), ("AU15", 0.5, 0.7), ("AU16", 0.5, 0.4),
                ("AU17", 0.6, 0.5), ("AU25", 0.4, 0.5)],
    "fear": [("AU1", 1.8, 1.0), ("AU4", 0.8, 1.0), ("AU5", 1.4, 1.0), ("AU20", 0.4, 1.0),
             ("AU25", 0.5, 1.0), ("AU26", 0.9, 1.0)],
}


@dataclasses.dataclass
class SynthParams:
    """params.yaml `synth:` (and `synth_ckplus:`)."""

    seed: int
    subjects: int
    first_subject: int  # subject numbers start here (keeps datasets' subjects apart)
    frames: int
    size: int
    poses: tuple[str, ...]
    expressions: tuple[str, ...]
    layout: str
    amplitude_deg: float
    min_amplitude: float
    translation_frac: float
    face_frac: float
    focal_frac: float
    intensity_range: tuple[float, float]
    au_jitter: float
    asymmetry: float
    onset_range: tuple[float, float]
    pose_onset_range: tuple[float, float]
    noise_sigma: float
    shape_mix: float
    photo_mix: float
    skin_tones: tuple[tuple[int, int, int], ...]
    hair_colours: tuple[tuple[int, int, int], ...]
    age_range: tuple[float, float]
    glasses_prob: float
    light_azimuth_deg: float
    light_ambient: tuple[float, float]
    png_compression: int
    workers: int

    def validate(self) -> None:
        """Raise EmoganError naming the bad argument and the valid values."""
        if self.subjects < 1:
            raise EmoganError(f"--subjects must be at least 1 (got {self.subjects})")
        if self.frames < 2:
            raise EmoganError(f"--frames must be at least 2: a sequence goes from neutral to apex (got {self.frames})")
        if self.size < 64:
            raise EmoganError(f"--size must be at least 64 pixels (got {self.size})")
        if self.workers < 1:
            raise EmoganError(f"--workers must be at least 1 (got {self.workers})")
        if self.layout not in ("emotiongan", "ckplus"):
            raise EmoganError(f"--layout must be emotiongan or ckplus (got {self.layout!r})")
        for pose in self.poses:
            if pose not in SYNTH_POSES:
                raise EmoganError(f"unknown pose {pose!r}; expected some of {', '.join(SYNTH_POSES)}")
        for expr in self.expressions:
            if expr not in CLASS_NAMES:
                raise EmoganError(f"unknown expression {expr!r}; expected some of {', '.join(CLASS_NAMES)}")
        if not self.poses or not self.expressions:
            raise EmoganError("--poses and --expressions must each name at least one value")
        if len(set(self.poses)) != len(self.poses) or len(set(self.expressions)) != len(self.expressions):
            raise EmoganError("--poses and --expressions must not repeat a value")
        lo, hi = self.intensity_range
        if not 0 < lo <= hi:
            raise EmoganError(f"intensity_range must satisfy 0 < low <= high (got {self.intensity_range})")
        if self.amplitude_deg < 0 or not 0 <= self.min_amplitude <= 1:
            raise EmoganError("amplitude_deg must be >= 0 and min_amplitude in [0, 1]")


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """One sequence to render: who, what, which head motion."""

    subject_number: int
    sequence: str
    expression: str
    pose: str

    @property
    def subject(self) -> str:
        """Subject id as written to disk."""
        return f"S{self.subject_number:03d}"


def plan(p: SynthParams) -> list[SequenceSpec]:
    """All sequences in output order: subjects, then expressions, then poses."""
    poses = ("nothing",) if p.layout == "ckplus" else p.poses
    specs = []
    for s in range(p.subjects):
        n = 0
        for expr in p.expressions:
            for pose in poses:
                n += 1
                specs.append(SequenceSpec(p.first_subject + s, f"{n:03d}", expr, pose))
    return specs


def sequence_motion(spec: SequenceSpec, subject, p: SynthParams, px_per_unit: float):
    """Per-frame action-unit gains (F, n_AU, 2) and head poses (F, 5: yaw, pitch, roll deg, tx, ty face units)."""
    from pipeline.face_model import AU_NAMES
    from pipeline.mesh import snap

    rng = np.random.default_rng([p.seed, spec.subject_number, CLASS_NAMES.index(spec.expression),
                                 POSE_NAMES.index(spec.pose), 29])
    t = np.linspace(0.0, 1.0, p.frames)
    base = np.zeros((len(AU_NAMES), 2))
    intensity = rng.uniform(*p.intensity_range)
    for au, weight, prob in EXPRESSION_AUS[spec.expression]:
        if rng.uniform() < prob:
            a = AU_NAMES.index(au)
            gain = weight * subject.style[a] * rng.lognormal(0.0, p.au_jitter / 2) * intensity
            asym = rng.uniform(-p.asymmetry, p.asymmetry) / 2
            base[a] = gain * np.array([1 + asym, 1 - asym])
    if spec.expression == "neutral":        # a neutral face is not a statue: faint random activity
        for a in rng.choice(len(AU_NAMES), 2, replace=False):
            base[a] = rng.uniform(0.0, 0.25)
    onset = rng.uniform(*p.onset_range)
    lag = rng.uniform(-0.08, 0.08, len(AU_NAMES))            # muscles do not all start together
    curve = smoothstep((t[:, None] - onset - np.maximum(lag, 0)[None, :]) / max(1e-6, 1 - onset - 0.08))
    gains = snap(base[None, :, :] * curve[:, :, None])

    pose = np.zeros((p.frames, 5))
    if spec.pose != "nothing":
        amp = p.amplitude_deg * rng.uniform(p.min_amplitude, 1.0) * rng.choice([-1.0, 1.0])
        target = np.zeros(5)
        if spec.pose == "yaw":
            target[0] = amp
        elif spec.pose == "pitch":
            target[1] = amp
        elif spec.pose == "roll":
            target[2] = amp
        elif spec.pose == "diagonal":
            target[0] = amp * 0.75
            target[1] = abs(amp) * 0.75 * rng.choice([-1.0, 1.0])
        elif spec.pose == "tx":
            tx_px = p.translation_frac * p.size * rng.uniform(p.min_amplitude, 1.0) * rng.choice([-1.0, 1.0])
            target[3] = tx_px / px_per_unit
        target[:3] += rng.normal(0.0, 1.5, 3) * (spec.pose != "tx")     # a real head wobbles a little
        pose_onset = rng.uniform(*p.pose_onset_range)
        pose = target[None, :] * smoothstep((t - pose_onset) / max(1e-6, 1 - pose_onset))[:, None]
    return gains, snap(pose)


# Worker state: the face model is built once in the parent and handed to each worker.
_MODEL = None
_SUBJECTS: dict[int, object] = {}


def _init_worker(model) -> None:
    global _MODEL
    cv2.setNumThreads(1)       # processes, not threads, scale Farneback and remap here
    _MODEL = model
    _SUBJECTS.clear()


def _frame_dir(root: Path, p: SynthParams, spec: SequenceSpec, cam: str) -> Path:
    if p.layout == "ckplus":
        return root / "cohn-kanade-images" / spec.subject / spec.sequence
    return root / cam / spec.subject / spec.sequence


def _frame_name(p: SynthParams, spec: SequenceSpec, i: int) -> str:
    if p.layout == "ckplus":
        return f"{spec.subject}_{spec.sequence}_{i + 1:08d}.png"
    return f"img_{i + 1:03d}.png"


def render_sequence(spec: SequenceSpec, p: SynthParams, root: Path) -> None:
    """Render and write one sequence's frames (both cameras) and its ground-truth sidecar into `root`."""
    from pipeline.render import Camera, finish, make_background, render

    model = _MODEL
    subject = _SUBJECTS.get(spec.subject_number)
    if subject is None:
        subject = _SUBJECTS[spec.subject_number] = make_subject(model, spec.subject_number, p)
    cam = Camera(size=p.size, face_frac=p.face_frac, focal_frac=p.focal_frac)
    gains, pose = sequence_motion(spec, subject, p, cam.px_per_unit)
    bg = make_background(subject, p.size)
    cams = ("cam1",) if p.layout == "ckplus" else ("cam1", "cam2")
    dirs = {c: _frame_dir(root, p, spec, c) for c in cams}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    marks = {c: np.zeros((p.frames, 468, 2), np.float32) for c in cams}
    # PNG settings pinned: the same pixels give the same bytes (the zlib inside the pinned OpenCV wheel).
    png = [cv2.IMWRITE_PNG_COMPRESSION, p.png_compression, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_DEFAULT]
    zero = np.zeros(5)
    for i in range(p.frames):
        noise_rng = np.random.default_rng([p.seed, spec.subject_number, CLASS_NAMES.index(spec.expression),
                                           POSE_NAMES.index(spec.pose), i, 31])
        noise = noise_rng.standard_normal((p.size, p.size), dtype=np.float32) * p.noise_sigma
        img1, lm1 = render(model, subject, gains[i], zero, cam, bg)
        frames = {"cam1": (img1, lm1)}
        if "cam2" in cams:
            # Same instant, same noise: with no head motion the two cameras see the same frame.
            frames["cam2"] = (img1, lm1) if not pose[i].any() else render(model, subject, gains[i], pose[i], cam, bg)
        for c, (img, lm) in frames.items():
            out = finish(img, noise)
            if p.layout == "ckplus":
                out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)          # CK+ frames are mostly grey
            else:
                out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(dirs[c] / _frame_name(p, spec, i)), out, png):
                raise OSError(f"{dirs[c] / _frame_name(p, spec, i)}: could not write the frame")
            marks[c][i] = lm
    px = cam.px_per_unit
    au = gains.mean(axis=2)                                          # both sides' mean intensity
    gt = np.column_stack([np.arange(1, p.frames + 1), pose[:, :3], pose[:, 3:] * px, au])
    meta = root / "_meta"
    meta.mkdir(exist_ok=True)
    tmp = meta / f"{spec.subject}_{spec.sequence}.tmp.npz"
    np.savez(tmp, gt=gt, recipe=np.array(json.dumps(subject.recipe, sort_keys=True)),
             **{f"landmarks_{c}": m for c, m in marks.items()})
    os.replace(tmp, meta / f"{spec.subject}_{spec.sequence}.npz")   # the sequence is done only now


def _run_one(args: tuple[SequenceSpec, SynthParams, str]) -> str:
    spec, p, root = args
    render_sequence(spec, p, Path(root))
    return spec.subject


def _contact_sheet(root: Path, p: SynthParams, specs: list[SequenceSpec], thumb: int = 96) -> np.ndarray:
    """Rows: subjects; columns: expressions; each cell [cam1 neutral, cam1 apex / cam2 neutral, cam2 apex]
    for one pose (cycling through the poses), labelled."""
    subjects = sorted({s.subject for s in specs})
    exprs = list(p.expressions)
    poses = ("nothing",) if p.layout == "ckplus" else p.poses
    cams = ("cam1",) if p.layout == "ckplus" else ("cam1", "cam2")
    cell_w, cell_h = 2 * thumb, len(cams) * thumb + 14
    head = 18
    sheet = np.full((head + len(subjects) * cell_h, 60 + len(exprs) * cell_w, 3), 255, np.uint8)
    for j, e in enumerate(exprs):
        cv2.putText(sheet, e, (60 + j * cell_w + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    by_key = {(s.subject, s.expression, s.pose): s for s in specs}
    for i, subj in enumerate(subjects):
        y0 = head + i * cell_h
        cv2.putText(sheet, subj, (4, y0 + cell_h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for j, e in enumerate(exprs):
            pose = poses[(i + j) % len(poses)]
            spec = by_key[(subj, e, pose)]
            x0 = 60 + j * cell_w
            for r, c in enumerate(cams):
                d = _frame_dir(root, p, spec, c)
                for k, f in enumerate((0, p.frames - 1)):
                    img = cv2.imread(str(d / _frame_name(p, spec, f)), cv2.IMREAD_COLOR)
                    m = int(p.size * 0.08)                    # zoom on the head: thumbnails are small
                    img = img[m:p.size - m, m:p.size - m]
                    sheet[y0 + r * thumb:y0 + (r + 1) * thumb, x0 + k * thumb:x0 + (k + 1) * thumb] = \
                        cv2.resize(img, (thumb, thumb), interpolation=cv2.INTER_AREA)[..., ::-1]
            cv2.putText(sheet, pose, (x0 + 4, y0 + len(cams) * thumb + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        (60, 60, 60), 1, cv2.LINE_AA)
    return sheet


def _assemble(root: Path, p: SynthParams, specs: list[SequenceSpec]) -> None:
    """Labels, ground truth, landmarks and contact sheet from the finished sequences."""
    from pipeline.face_model import AU_NAMES

    cams = ("cam1",) if p.layout == "ckplus" else ("cam1", "cam2")
    marks = {}
    gt_rows = []
    for spec in specs:
        with np.load(root / "_meta" / f"{spec.subject}_{spec.sequence}.npz") as z:
            for c in cams:
                marks[f"{spec.subject}/{spec.sequence}/{c}"] = z[f"landmarks_{c}"]
            for row in z["gt"]:
                gt_rows.append([spec.subject, spec.sequence, int(row[0])] + [f"{v:.4f}" for v in row[1:]])
    np.savez_compressed(root / "landmarks.npz", **marks)
    people = {}
    for spec in specs:
        if spec.subject not in people:
            with np.load(root / "_meta" / f"{spec.subject}_{spec.sequence}.npz") as z:
                people[spec.subject] = json.loads(str(z["recipe"]))
    (root / "people.json").write_text(json.dumps(people, indent=1, sort_keys=True) + "\n")
    with open(root / "ground_truth.csv", "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["subject", "sequence", "frame", "yaw_deg", "pitch_deg", "roll_deg", "tx_px", "ty_px",
                    *AU_NAMES])
        w.writerows(gt_rows)
    amp = {}
    for spec in specs:
        with np.load(root / "_meta" / f"{spec.subject}_{spec.sequence}.npz") as z:
            amp[spec] = float(np.abs(z["gt"][-1, 1:4]).max())
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["subject", "sequence", "expression", "pose", "amplitude_deg"])
        for spec in specs:
            w.writerow([spec.subject, spec.sequence, spec.expression, spec.pose, f"{amp[spec]:.2f}"])
    if p.layout == "ckplus":
        for spec in specs:      # CK+ label files: Emotion/S###/###/S###_###_<last frame>_emotion.txt
            d = root / "Emotion" / spec.subject / spec.sequence
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{spec.subject}_{spec.sequence}_{p.frames:08d}_emotion.txt").write_text(
                f"   {float(CKPLUS_CODES[spec.expression]):.7e}\n")
    sheet = _contact_sheet(root, p, specs)
    cv2.imwrite(str(root / "contact_sheet.png"), sheet[..., ::-1])
    shutil.rmtree(root / "_meta")


def synth(p: SynthParams, out: Path, overwrite: bool = False, progress: bool = True,
          photos: Mapping[str, tuple[Path, str]] | None = None) -> Path:
    """Render the dataset described by `p` into `out` (atomically: a partial run never looks finished).

    `photos`: the source photographs, name -> (path, pinned sha256) (`weights.photo_paths(params)`);
    None: those of ./params.yaml."""
    p.validate()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise EmoganError(f"{out}: output folder exists and is not empty; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EmoganError(f"{out}: cannot create the output folder ({e.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EmoganError(f"{out}: the folder {parent} is not writable")
    with writer_lock(out):  # one writer per output folder and its .partial (pipeline/lock.py)
        return _synth(p, out, parent, progress, photos)


def _synth(p: SynthParams, out: Path, parent: Path, progress: bool,
           photos: Mapping[str, tuple[Path, str]] | None) -> Path:
    specs = plan(p)
    partial = parent / f".{out.name}.partial"
    # The worker count never changes a byte of the output, so it is not part of its identity.
    identity = {k: v for k, v in as_dict(p).items() if k != "workers"}
    stamp = {"params": identity, "params_sha256": params_hash(identity)}
    if partial.exists():
        try:
            old = json.loads((partial / "synth.json").read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("params_sha256") != stamp["params_sha256"]:
            shutil.rmtree(partial)        # made by other params: start over
    try:
        partial.mkdir(exist_ok=True)
        (partial / "synth.json").write_text(json.dumps(stamp, indent=2))
    except OSError as e:
        raise EmoganError(f"{out}: the folder {parent} is not writable ({e.strerror})") from None
    done = {f.stem for f in (partial / "_meta").glob("*.npz")} if (partial / "_meta").exists() else set()
    todo = [s for s in specs if f"{s.subject}_{s.sequence}" not in done]
    if done:
        log.info("resuming %s: %d of %d sequences already rendered", partial, len(specs) - len(todo), len(specs))

    from pipeline.face_model import build_face_model

    model = build_face_model(photos)
    # Workers only render: the worker count never changes a byte of the output.
    for _ in pool.run(_run_one, [(s, p, str(partial)) for s in todo], p.workers, "synth",
                      initializer=_init_worker, initargs=(model,), progress=progress, done=len(specs) - len(todo)):
        pass
    _assemble(partial, p, specs)
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    log.info("wrote %d sequences of %d frames to %s", len(specs), p.frames, out)
    return out


def _csv_list(value: Optional[str]) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


def command(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (emotiongan layout: cam1/, cam2/, labels.csv, ...)."),
    subjects: Optional[int] = typer.Option(None, help="Number of synthetic people."),
    frames: Optional[int] = typer.Option(None, help="Frames per sequence, neutral to apex."),
    size: Optional[int] = typer.Option(None, help="Image side in pixels."),
    poses: Optional[str] = typer.Option(None, help=f"Comma-separated head poses, from: {','.join(SYNTH_POSES)}."),
    expressions: Optional[str] = typer.Option(None, help=f"Comma-separated expressions, from: {','.join(CLASS_NAMES)}."),
    workers: Optional[int] = typer.Option(None, help="Worker processes."),
    seed: Optional[int] = typer.Option(None, help="Random seed: same seed, same files."),
    layout: Optional[Literal["emotiongan", "ckplus"]] = typer.Option(
        None, help="emotiongan (paired cam1/cam2) or ckplus (frontal-only CK+ tree)."),
    section_name: str = typer.Option("synth", "--section", help="params.yaml section to read (synth, synth_ckplus)."),
    params_file: Optional[Path] = PARAMS_OPTION,
    overwrite: bool = typer.Option(False, help="Replace a non-empty output folder."),
) -> None:
    """Render the synthetic paired-face dataset (the project's stand-in for SNaP-2DFe)."""
    from pipeline.weights import photo_paths

    params = load_params(params_file)
    p = section(params, section_name, SynthParams, subjects=subjects, frames=frames, size=size,
                poses=_csv_list(poses), expressions=_csv_list(expressions), workers=workers, seed=seed,
                layout=layout)
    synth(p, out, overwrite=overwrite, photos=photo_paths(params))
