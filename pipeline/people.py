"""The synthetic people (`emogan synth`): who a person is, from the seed and the person's number only.

A person's face shape is a random mix of the source photographs' own fitted shapes, then morphed; the
texture is the leading photograph's upper face (a little of another mixed in) over a closed-mouth
photograph's lower face, colour-normalised and transferred to a skin tone, with hair colour, age
cues, glasses and a per-person key light (docs/DATASET.md). `p` is params.yaml `synth:`
(pipeline.synth.SynthParams: shape_mix, photo_mix, skin_tones, hair_colours, age_range, glasses_prob,
light_azimuth_deg, light_ambient, au_jitter, seed).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipeline.mesh import smoothstep


def _skin_stats(tex: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (3,) of an atlas texture over a weight mask (A,A)."""
    w = mask.reshape(-1).astype(np.float64)
    x = tex.reshape(-1, 3).astype(np.float64)
    total = w.sum()
    mean = (x * w[:, None]).sum(0) / total
    std = np.sqrt((((x - mean) ** 2) * w[:, None]).sum(0) / total)
    return mean, std


def _shape_of(model, rng: np.random.Generator, ident: str, p: Any) -> np.ndarray:
    """A person's neutral shape (V,3): a random mix of the photographs' own face shapes around the
    leading photograph's, away from the mouth (a smiling photograph's mouth must not smile in every
    expression), then global and local morphs; the rings around the oval follow the morphed oval."""
    from pipeline.face_model import FACE_OVAL, N_MESH, RING_DEPTHS, RING_SCALES
    from pipeline.mesh import snap

    canon = model.shape[:N_MESH]
    names = list(model.shapes)
    w = rng.normal(0.0, p.shape_mix, len(names))
    w[names.index(ident)] += 1.0
    # A smiling photograph's shape counts above the eyes and along the face outline only (its cheeks
    # and lids are raised by the smile).
    eye_y = canon[[145, 374], 1].mean()
    upper = smoothstep((eye_y - canon[:, 1]) / 0.08)[:, None]
    outline = np.zeros((len(canon), 1))
    outline[list(FACE_OVAL)] = 1.0
    smile_mask = np.maximum(upper, outline)
    dev = sum(w[k] * (model.shapes[n] - canon) * (1.0 if n in model.closed_mouth else smile_mask)
              for k, n in enumerate(names))
    # Mostly symmetric: fits are noisy, and real faces are only a little asymmetric.
    dev = 0.3 * dev + 0.7 * (dev + dev[model.mirror[:N_MESH]] * np.array([-1.0, 1.0, 1.0])) / 2
    mouth = canon[[61, 291, 13, 14], :2].mean(0)
    d = np.sqrt(((canon[:, :2] - mouth) ** 2).sum(1))
    keep = smoothstep((d - 0.12) / 0.16)[:, None]                # 0 at the mouth, 1 from the cheeks out
    mesh = canon + dev * keep
    x, y = mesh[:, 0].copy(), mesh[:, 1].copy()

    def bump(centre: np.ndarray, radius: float) -> np.ndarray:
        return np.exp(-0.5 * (((mesh[:, :2] - centre) ** 2).sum(1) / radius ** 2))

    eyes = mesh[[33, 133, 362, 263], :2].mean(0)
    mouth = mesh[[61, 291, 13, 14], :2].mean(0)
    nose = mesh[[1, 4, 98, 327], :2].mean(0)
    mesh[:, 0] = x * rng.uniform(0.93, 1.07)
    mesh[:, 1] = y * rng.uniform(0.94, 1.06)
    mesh[:, 1] += rng.uniform(-0.06, 0.06) * np.maximum(y - nose[1], 0)           # lower-face length
    mesh[:, 0] += rng.uniform(-0.08, 0.08) * (x - mouth[0]) * bump(mouth, 0.12)     # mouth width
    mesh[:, 0] += rng.uniform(-0.1, 0.1) * (x - nose[0]) * bump(nose, 0.08)         # nose width
    mesh[:, 0] += rng.uniform(-0.015, 0.015) * np.sign(x) * bump(np.array([0, eyes[1]]), 0.2)   # eye spacing
    mesh[:, 2] *= rng.uniform(0.85, 1.15)
    oval = mesh[list(FACE_OVAL)]
    c = (oval[:, :2].min(0) + oval[:, :2].max(0)) / 2
    rings = [np.column_stack([c + (oval[:, :2] - c) * sc, oval[:, 2] - dz]) for sc, dz in zip(RING_SCALES, RING_DEPTHS)]
    return snap(np.concatenate([mesh] + rings))


def _texture_of(model, rng: np.random.Generator, ident: str, p: Any) -> tuple[np.ndarray, dict]:
    """A person's atlas texture (A,A,3) uint8 and what made it: the leading photograph's upper face
    (a little of another's mixed in), the lower face of a closed-mouth photograph, each photograph's
    colours normalised and then transferred to the person's skin tone; hair colour; age (wrinkles,
    grey hair); glasses; a directional light."""
    from pipeline.face_model import ATLAS_EXTENT, ATLAS_SIZE, AU_NAMES, FACE_OVAL

    names = list(model.textures)
    R = model.regions
    skin = R["skin"] * (1.0 - R["eyes"])
    other = names[int(rng.integers(len(names) - 1))]
    other = other if other != ident else names[-1]
    closed = list(model.closed_mouth)
    lower_src = ident if ident in closed else closed[int(rng.integers(len(closed)))]
    w_other = rng.uniform(0.0, p.photo_mix)

    def normalised(name: str) -> np.ndarray:
        t = model.textures[name].astype(np.float32)
        mean, std = _skin_stats(t, skin)
        return (t - mean.astype(np.float32)) / std.astype(np.float32)

    z = (1.0 - w_other) * normalised(ident) + w_other * normalised(other)
    # A smiling photograph keeps its eyes, brows, forehead and hair; below the lower eyelids its
    # raised cheeks and folds would read as happy in every expression: a closed-mouth face there.
    low = R["lower" if ident in closed else "cheeks"][..., None]
    z = z * (1.0 - low) + normalised(lower_src) * low
    # Skin tone: the person's mean skin colour; contrast follows brightness (dark skin, smaller spread).
    tone = np.asarray(p.skin_tones[int(rng.integers(len(p.skin_tones)))], np.float64) * rng.uniform(0.93, 1.07, 3)
    ref_mean, ref_std = _skin_stats(model.textures[ident].astype(np.float32), skin)
    spread = np.clip(ref_std / ref_mean * tone, 8.0, 60.0) * rng.uniform(0.85, 1.15)
    age = rng.uniform(*p.age_range)
    grey = np.float32(0.3 * age)                                   # older skin: a little less colourful
    tex = tone.astype(np.float32) + z * spread.astype(np.float32)
    lum = tex.mean(-1, keepdims=True)
    tex = tex + (lum - tex) * grey
    # Hair above the ears in the person's hair colour, greying with age; the neck keeps the skin.
    hair_rgb = np.asarray(p.hair_colours[int(rng.integers(len(p.hair_colours)))], np.float64)
    hair_rgb = hair_rgb + (np.array([175.0, 172.0, 168.0]) - hair_rgb) * min(1.0, max(0.0, (age - 0.5) * 2.0)) ** 2
    scale = ATLAS_SIZE / (2 * ATLAS_EXTENT)
    rows = np.arange(ATLAS_SIZE, dtype=np.float32)[:, None]
    mouth_row = float(model.atlas_uv[[13, 14], 1].mean())
    upper = np.clip((mouth_row - rows) / (0.15 * scale), 0.0, 1.0)
    hair_w = (R["hair"] * upper)[..., None]
    hz = z.mean(-1, keepdims=True)
    hair = hair_rgb.astype(np.float32) * np.clip(1.0 + 0.35 * hz, 0.3, 2.0)
    tex = tex * (1.0 - hair_w) + hair * hair_w
    # Age: permanent creases (forehead lines, crow's feet, brow furrow) from the action units' own maps.
    gain = np.ones((ATLAS_SIZE, ATLAS_SIZE), np.float32)
    for au, k in (("AU1", 0.45), ("AU2", 0.45), ("AU4", 0.2)):      # not AU6's crow's feet: they read as a smile
        a = AU_NAMES.index(au)
        (y0, y1, x0, x1), m = model.shading[a]
        gain[y0:y1, x0:x1] += np.float32(k * age) * (m[0] + m[1])
    # Light from one side and above or below, fixed to the person (baked into the texture).
    az, el = np.deg2rad(rng.uniform(-p.light_azimuth_deg, p.light_azimuth_deg)), np.deg2rad(rng.uniform(-10.0, 45.0))
    light = np.array([np.sin(az) * np.cos(el), -np.sin(el), np.cos(az) * np.cos(el)])
    amb = rng.uniform(*p.light_ambient)
    n = model.normals
    lam = np.maximum(n[..., 0] * light[0] + n[..., 1] * light[1] + n[..., 2] * light[2], 0.0)
    shade = (amb + (1.0 - amb) * lam) / (amb + (1.0 - amb) * light[2])
    tex = tex * (gain * shade.astype(np.float32))[..., None]
    texture = np.clip(tex, 0, 255).astype(np.uint8)
    glasses = bool(rng.uniform() < p.glasses_prob)
    if glasses:
        _draw_glasses(texture, model, rng)
    if rng.uniform() < 0.5:
        texture = texture[:, ::-1]                                  # the atlas layout is symmetric
    recipe = {"photo": ident, "mixed_with": other, "mix": round(float(w_other), 3), "lower_face": lower_src,
              "skin_rgb": [round(float(v)) for v in tone], "age": round(float(age), 3), "glasses": glasses,
              "hair_rgb": [round(float(v)) for v in hair_rgb], "light_azimuth_deg": round(float(np.rad2deg(az)), 1)}
    return np.ascontiguousarray(texture), recipe


def _draw_glasses(texture: np.ndarray, model, rng: np.random.Generator) -> None:
    """Spectacle frames drawn into the atlas around both eyes (an occluder that moves with the face)."""
    from pipeline.face_model import ATLAS_EXTENT, ATLAS_SIZE

    scale = ATLAS_SIZE / (2 * ATLAS_EXTENT)
    uv = model.atlas_uv
    colour = [(20, 20, 22), (70, 45, 30), (150, 150, 158), (115, 25, 25)][int(rng.integers(4))]
    thick = int(rng.integers(3, 7))
    ax = (int(rng.uniform(0.14, 0.19) * scale), int(rng.uniform(0.09, 0.13) * scale))
    inner = []
    for corners, outer_pt in (((33, 133), 127), ((362, 263), 356)):
        c = uv[list(corners)].mean(0)
        centre = (int(round(c[0] * 16)), int(round((c[1] + 0.01 * scale) * 16)))
        cv2.ellipse(texture, centre, (ax[0] * 16, ax[1] * 16), 0, 0, 360, colour, thick, cv2.LINE_AA, 4)
        side = 1 if c[0] > uv[1, 0] else -1
        inner.append((int(round(c[0] - side * ax[0])), int(round(c[1]))))
        edge = (int(round(c[0] + side * ax[0])), int(round(c[1])))
        cv2.line(texture, edge, (int(round(uv[outer_pt, 0])), int(round(c[1]))), colour, thick, cv2.LINE_AA)
    cv2.line(texture, inner[0], inner[1], colour, thick, cv2.LINE_AA)


def make_subject(model, number: int, p: Any):
    """A synthetic person: face shape, texture (photographs, skin tone, hair, age, glasses, light),
    expression style, backdrop. Person `number` leads with photograph (number - 1) mod the count."""
    from pipeline.face_model import AU_NAMES
    from pipeline.render import Subject

    rng = np.random.default_rng([p.seed, number, 17])
    names = list(model.textures)
    ident = names[(number - 1) % len(names)]
    shape = _shape_of(model, rng, ident, p)
    texture, recipe = _texture_of(model, rng, ident, p)
    style = np.clip(rng.lognormal(0.0, p.au_jitter, len(AU_NAMES)), 0.5, 1.8)
    bg = tuple(tuple(int(v) for v in rng.integers(40, 220, 3)) for _ in range(2))
    return Subject(name=f"S{number:03d}", shape=shape, texture=texture, alpha=model.alpha, style=style,
                   background=bg, backdrop_seed=int(rng.integers(2**31)), recipe=recipe)
