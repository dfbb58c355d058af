"""Inference with a model bundle (training/bundle.py): frontal view synthesis and motion transfer.

A recording (video, folder of frames, or frames given one by one) goes through the pipeline's own
code: `pipeline.crop.crop_frames` (one mediapipe box from the first frame), `pipeline.flow.farneback_px`
and `downsample_flow_px` (Farneback on the crops, Cartesian area averaging), `pipeline.normalize`
(area resize, clip, representation), with the params recorded in the bundle, so a new recording
reaches the networks exactly as the training data did. Pairs are (first frame, frame t) for every
later frame t: the first frame is taken as the neutral one, as in every dataset of the project.
Then G_F frontalizes each flow, D_E (the Flow-CNN) reads its expression, and G_W warps it onto a
neutral frontal face: the subject's own, another face (transfer), or the training data's average.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from pipeline.errors import EmoganError
from pipeline.params import ParamsError, section
from training.bundle import AverageFace, Bundle

log = logging.getLogger(__name__)

APEX_RULES = ("max_motion", "last")
# mediapipe face detection keypoints used for registration: right eye, left eye, nose tip, mouth centre
# (the two ear points are left out: they move off the face outline as soon as the head turns).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_centre")


@dataclass
class FrontalizeParams:
    """params.yaml `frontalize:` (see the comments there)."""

    stride: int = 1
    max_frames: int = 300
    apex: str = "max_motion"
    batch_size: int = 16
    viz_max_px: float | None = None
    panel: int = 192
    fps: float = 6.0
    keypoint_model: int = 0
    keypoint_confidence: float = 0.5
    align_neutral: bool = False
    align_target: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.apex not in APEX_RULES:
            raise ValueError(f"apex = {self.apex!r}: expected one of {', '.join(APEX_RULES)}")
        for name, low in (("stride", 1), ("max_frames", 2), ("batch_size", 1), ("panel", 16)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} = {v!r}: expected an integer >= {low}")
        if not self.fps > 0 or (self.viz_max_px is not None and not self.viz_max_px > 0):
            raise ValueError("fps and viz_max_px (when given) must be positive")


def load_frontalize_params(params: dict[str, Any], **overrides: Any) -> FrontalizeParams:
    """params.yaml `frontalize` section; ParamsError naming the file and key otherwise."""
    try:
        return section(params, "frontalize", FrontalizeParams, **overrides)
    except ValueError as e:
        raise ParamsError(f"{params.get('__file__', 'params')}: section 'frontalize': {e}") from None


# ---------------------------------------------------------------- inputs

def iter_recording(inputs: Sequence[Path], image_exts: Sequence[str], stride: int = 1,
                   max_frames: int = 300) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB uint8 frame) of a video file, a folder of frames, or two or more image files, read lazily.

    Checks the inputs before the first frame; unreadable files raise pipeline.crop.SequenceError when reached.
    """
    from pipeline.adapters.common import list_frames
    from pipeline.crop import iter_video, read_rgb

    paths = [Path(p) for p in inputs]
    exts = {e.lower() for e in image_exts}
    for p in paths:
        if not p.exists():
            raise EmoganError(f"{p}: no such file or folder")
    if len(paths) == 1 and paths[0].is_dir():
        files = list_frames(paths[0], tuple(exts))[::stride]
        if len(files) < 2:
            raise EmoganError(f"{paths[0]}: {len(files)} frame(s) with extensions {', '.join(sorted(exts))}; "
                              "a motion needs at least 2")
    elif len(paths) == 1:
        if paths[0].suffix.lower() in exts:
            raise EmoganError(f"{paths[0]}: one image has no motion: give the neutral frame and the expressive "
                              "one (two images), a folder of frames or a video")
        files = []
    elif any(p.is_dir() for p in paths):
        raise EmoganError(f"{next(p for p in paths if p.is_dir())}: a folder among several inputs; give one folder, "
                          "one video, or image files")
    else:
        files = paths
    if len(files) > max_frames:
        log.warning("%s: kept the first %d of %d frames (frontalize.max_frames)", paths[0], max_frames, len(files))

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        if files:
            for f in files[:max_frames]:
                yield str(f), read_rgb(f)
            return
        for i, img in enumerate(iter_video(paths[0], stride=stride)):
            if i == max_frames:
                log.warning("%s: kept the first %d frames (frontalize.max_frames)", paths[0], max_frames)
                return
            yield f"{paths[0]}#{i * stride}", img

    return frames()


def crop_recording(frames: Iterable[tuple[str, np.ndarray]], crop: Any) -> tuple[Any, list[str], np.ndarray]:
    """The pipeline's crop of a recording (one box from the first frame): (box, names, crops (T,side,side,3) uint8).

    Frames are cropped as they are read: a long recording is never held at full resolution.
    """
    from pipeline.crop import SequenceError, crop_frames

    names: list[str] = []

    def named() -> Iterator[tuple[str, np.ndarray]]:
        for name, img in frames:
            names.append(name)
            yield name, img

    try:
        out = list(crop_frames(named(), crop))
    except SequenceError as e:
        raise EmoganError(f"{e.file}: {e.reason}") from None
    if len(out) < 2:
        raise EmoganError(f"{names[0] if names else 'the input'}: {len(out)} frame(s) decoded; a motion needs at least 2")
    return out[0][0], names, np.stack([c for _, c in out])


def recording_flows_px(crops_rgb: np.ndarray, flow: Any, store_size: int) -> np.ndarray:
    """Flows (first crop -> crop t) for t >= 1, as the pipeline stores them: (T-1,2,store_size,store_size) float32 px."""
    import cv2

    from pipeline.flow import downsample_flow_px, farneback_px
    from pipeline.normalize import area_resize

    gray = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops_rgb]
    # float16 twice, as the flow store and then the training store hold them: the nets see the same numbers.
    flows = np.stack([downsample_flow_px(farneback_px(gray[0], g, flow), flow.size).astype(np.float16)
                      for g in gray[1:]])
    return area_resize(flows.astype(np.float32), store_size)


def normalize_flows(flows_px: np.ndarray, representation: str, clip: float) -> np.ndarray:
    """Crop-pixel flows (N,2,S,S) -> the store representation, rounded through float16 like a store row."""
    from pipeline.normalize import normalize_flow

    return normalize_flow(flows_px, representation, clip).astype(np.float16).astype(np.float32)


def face_from_image(rgb: np.ndarray, crop: Any, size: int, *, detect: bool = True, what: str = "face") -> np.ndarray:
    """A neutral face picture -> (3,size,size) uint8 framed as the pipeline frames faces (box + margin of `crop`).

    detect=False takes the picture as an already framed face (a drawing, an average face): its centre square.
    """
    import cv2

    from pipeline.crop import crop_square, detect_face_box

    if detect:
        box = detect_face_box(rgb, crop.margin, crop.model_selection, crop.min_confidence)
        if box is None:
            raise EmoganError(f"{what}: no face found (mediapipe face detection); if the picture is already a face "
                              "framed like the training crops (a drawing, an average face), pass --as-crop")
        sq = crop_square(rgb, box, crop.size, crop.pad_value)
    else:
        h, w = rgb.shape[:2]
        s = min(h, w)
        sq = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    interp = cv2.INTER_AREA if sq.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(sq, (size, size), interpolation=interp).transpose(2, 0, 1))


# ---------------------------------------------------------------- registration and the average face

_KP_DETECTORS: dict[tuple[int, float], Any] = {}


def face_keypoints(face_u8: np.ndarray, model: int = 0, min_confidence: float = 0.5) -> np.ndarray | None:
    """(4,2) float32 pixel (x, y) of the eyes, nose tip and mouth centre of a (3,S,S) uint8 face, or None."""
    key = (model, min_confidence)
    if key not in _KP_DETECTORS:
        import mediapipe as mp

        # Short range (model 0) by default: a face crop fills the picture, the case that model is made for.
        _KP_DETECTORS[key] = mp.solutions.face_detection.FaceDetection(model_selection=model,
                                                                       min_detection_confidence=min_confidence)
    img = np.ascontiguousarray(np.asarray(face_u8).transpose(1, 2, 0), dtype=np.uint8)
    res = _KP_DETECTORS[key].process(img)
    if not res.detections:
        return None
    best = max(res.detections, key=lambda d: d.score[0])
    h, w = img.shape[:2]
    kp = best.location_data.relative_keypoints
    return np.array([[kp[i].x * w, kp[i].y * h] for i in range(len(KEYPOINTS))], np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2,3) least-squares rotation + uniform scale + translation taking points src (K,2) onto dst (K,2)."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    # Closed form with complex numbers: the best a = scale * e^{i angle} minimizes sum |a z_s - z_d|^2.
    zs, zd = sc[:, 0] + 1j * sc[:, 1], dc[:, 0] + 1j * dc[:, 1]
    a = np.vdot(zs, zd) / max(np.vdot(zs, zs).real, 1e-12)
    m = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([m, (md - m @ ms)[:, None]]).astype(np.float32)


def align_face(face_u8: np.ndarray, to_keypoints: np.ndarray, model: int = 0,
               min_confidence: float = 0.5) -> tuple[np.ndarray, bool]:
    """Warp a (3,S,S) face so its keypoints land on `to_keypoints` (pixels of S); (face, False) when none are found."""
    import cv2

    kp = face_keypoints(face_u8, model, min_confidence)
    if kp is None:
        return face_u8, False
    m = similarity_transform(kp, to_keypoints)
    s = face_u8.shape[-1]
    img = cv2.warpAffine(np.ascontiguousarray(face_u8.transpose(1, 2, 0)), m, (s, s), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(img.transpose(2, 0, 1)), True


def mean_aligned_face(faces_u8: np.ndarray, model: int = 0, min_confidence: float = 0.5,
                      source: str = "") -> AverageFace:
    """Mean of (N,3,S,S) faces after a similarity registration onto their mean keypoints (faces without any: skipped)."""
    import cv2

    kps = [face_keypoints(f, model, min_confidence) for f in faces_u8]
    keep = [i for i, k in enumerate(kps) if k is not None]
    if not keep:
        raise EmoganError(f"{source or 'the faces'}: no face found in any of the {len(faces_u8)} neutral faces")
    target = np.mean([kps[i] for i in keep], axis=0)
    s = faces_u8.shape[-1]
    acc = np.zeros((s, s, 3), np.float64)
    for i in keep:
        m = similarity_transform(kps[i], target)
        acc += cv2.warpAffine(np.ascontiguousarray(faces_u8[i].transpose(1, 2, 0)), m, (s, s), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    img = np.clip(np.rint(acc / len(keep)), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return AverageFace(np.ascontiguousarray(img), target.astype(np.float32), len(keep), len(faces_u8) - len(keep),
                       source)


def store_neutral_faces(store: Path | str, rows: np.ndarray | None = None) -> np.ndarray:
    """The neutral face of every sequence of a store (its neutral_apex row's, else frame 0's), (N,3,S,S) uint8."""
    from pipeline.schema import STRATEGY_NAMES
    from pipeline.store import open_store

    g = open_store(store)
    seq, strat = g["sequence"][...], g["strategy"][...]
    frame_t = g["frame_t"][...] if "frame_t" in g else None
    first = strat == STRATEGY_NAMES.index("neutral_apex")
    if frame_t is not None:
        first |= frame_t == 0
    if rows is not None:
        allowed = np.zeros(len(seq), bool)
        allowed[rows] = True
        first &= allowed
    idx = np.flatnonzero(first)
    _, pick = np.unique(seq[idx], return_index=True)  # one row per sequence: its neutral is frame 0 of cam1
    idx = np.sort(idx[pick])
    if idx.size == 0:
        raise EmoganError(f"{store}: no neutral_apex row and no row starting at frame 0: no neutral face to average")
    return np.asarray(g["neutral"].get_orthogonal_selection((idx,)))


def average_face(stores: Sequence[Path | str], rows: Sequence[np.ndarray | None] | None = None, model: int = 0,
                 min_confidence: float = 0.5) -> AverageFace:
    """The mean aligned neutral face of one or more stores (all their sequences, or the given rows)."""
    rows = list(rows) if rows is not None else [None] * len(stores)
    faces = [store_neutral_faces(s, r) for s, r in zip(stores, rows)]
    sizes = {f.shape[-1] for f in faces}
    if len(sizes) > 1:
        raise EmoganError(f"stores of different sizes {sorted(sizes)}: average faces of one size at a time")
    return mean_aligned_face(np.concatenate(faces), model, min_confidence, source=", ".join(map(str, stores)))


# ---------------------------------------------------------------- the networks

@dataclass
class MotionResult:
    """What the networks make of T flows (model side s; pixel units of the source crop)."""

    flow_input_px: np.ndarray    # (T,2,s,s) float32: the input flows at the model side
    flow_frontal_px: np.ndarray  # (T,2,s,s) float32: G_F's frontalized flows
    probabilities: np.ndarray    # (T,K) float32: D_E's softmax on the frontalized flows
    faces: np.ndarray            # (T,3,s,s) uint8 RGB: G_W's expressive faces
    neutral: np.ndarray          # (3,s,s) uint8 RGB: the face G_W warped
    apex: int                    # index of the pair that sums up the recording


def run_networks(bundle: Bundle, flows_norm: np.ndarray, neutral_u8: np.ndarray, *, batch_size: int = 16,
                 apex: str = "max_motion", frontalize: bool = True) -> MotionResult:
    """G_F, D_E and G_W on flows (T,2,S,S) in the bundle's representation and one neutral face (3,S',S') uint8."""
    import torch
    import torch.nn.functional as F

    from training import flowrep
    from training.loop import resize_flow

    run = bundle.run
    s = run.size
    ins, frs, probs, faces = [], [], [], []
    neutral = torch.from_numpy(np.ascontiguousarray(neutral_u8))[None]
    with torch.no_grad():
        for a in range(0, len(flows_norm), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(flows_norm[a:a + batch_size], dtype=np.float32)).to(run.device)
            # Input flows are encoded with the input clip; without G_F they are shown as frontal flows are.
            x = resize_flow(x, s, run.representation, run.input_clip)
            fr = run.frontalize(x) if frontalize else flowrep.reclip(x, run.representation, run.input_clip, run.clip)
            probs.append(F.softmax(run.nets["de"](fr).float(), dim=1).cpu())
            faces.append(run.warp(fr, neutral.expand(len(x), -1, -1, -1).to(run.device)).cpu())
            ins.append(flowrep.decode(x, run.representation, run.input_clip).cpu())
            frs.append(run.to_pixels(fr).cpu())
    fr_px = torch.cat(frs).numpy()
    if apex == "last":
        k = len(fr_px) - 1
    elif apex == "max_motion":
        # The frontalized motion is the facial motion alone: its largest mean magnitude is the apex.
        k = int(np.argmax(np.hypot(fr_px[:, 0], fr_px[:, 1]).mean(axis=(1, 2))))
    else:
        raise EmoganError(f"apex rule {apex!r}: expected one of {', '.join(APEX_RULES)}")
    face_s = F.interpolate(neutral.float(), size=(s, s), mode="area").round().clamp(0, 255).to(torch.uint8)[0]
    return MotionResult(torch.cat(ins).numpy(), fr_px, torch.cat(probs).numpy(), torch.cat(faces).numpy(),
                        face_s.numpy(), k)


def expression_record(result: MotionResult, class_names: Sequence[str], frame_ids: Sequence[Any]) -> dict[str, Any]:
    """Probabilities as JSON: the apex pair's (predicted class, per class) and every pair's."""
    p = result.probabilities
    k = result.apex
    return {
        "class_names": list(class_names),
        "predicted": class_names[int(np.argmax(p[k]))],
        "probabilities": {c: float(v) for c, v in zip(class_names, p[k])},
        "apex_pair": k, "apex_frame": frame_ids[k],
        "pairs": [{"frame": frame_ids[i], "predicted": class_names[int(np.argmax(p[i]))],
                   "probabilities": [float(v) for v in p[i]]} for i in range(len(p))],
    }


# ---------------------------------------------------------------- pictures and files

def _panel(rgb_hwc: np.ndarray, side: int, caption: str, nearest: bool = False) -> np.ndarray:
    """An RGB picture resized to side x side under a one-line caption strip."""
    import cv2

    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if rgb_hwc.shape[0] > side else cv2.INTER_CUBIC)
    img = cv2.resize(np.ascontiguousarray(rgb_hwc), (side, side), interpolation=interp)
    strip = np.full((max(14, side // 9), side, 3), 255, np.uint8)
    scale = strip.shape[0] / 30
    cv2.putText(strip, caption, (3, int(strip.shape[0] * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([strip, img], axis=0)


def _hwc(chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(chw).transpose(1, 2, 0))


def write_png(path: Path, rgb_hwc: np.ndarray) -> None:
    """Write an RGB (H,W,3) uint8 picture as PNG; EmoganError naming the file when it cannot be written."""
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb_hwc), cv2.COLOR_RGB2BGR)):
        raise EmoganError(f"{path}: could not write the picture")


def summary_picture(result: MotionResult, input_apex_rgb: np.ndarray, max_px: float, side: int,
                    predicted: str) -> np.ndarray:
    """One row of panels for the apex pair: input frame, input flow, frontalized flow, neutral face, synthesized face."""
    from pipeline.flowviz import flow_to_rgb

    k = result.apex
    panels = [
        _panel(input_apex_rgb, side, "input"),
        _panel(flow_to_rgb(result.flow_input_px[k], max_px), side, "input flow", nearest=True),
        _panel(flow_to_rgb(result.flow_frontal_px[k], max_px), side, "frontalized flow", nearest=True),
        _panel(_hwc(result.neutral), side, "neutral"),
        _panel(_hwc(result.faces[k]), side, f"face: {predicted}"),
    ]
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)


def write_animation(path: Path, result: MotionResult, inputs_rgb: Sequence[np.ndarray], max_px: float, side: int,
                    fps: float, class_names: Sequence[str]) -> None:
    """Animated GIF, one frame per pair: input frame | frontalized flow | synthesized face."""
    from PIL import Image

    from pipeline.flowviz import flow_to_rgb

    frames = []
    for t in range(len(result.faces)):
        pred = class_names[int(np.argmax(result.probabilities[t]))]
        row = [_panel(inputs_rgb[t], side, "input"),
               _panel(flow_to_rgb(result.flow_frontal_px[t], max_px), side, "frontalized flow", nearest=True),
               _panel(_hwc(result.faces[t]), side, f"face: {pred}")]
        frames.append(Image.fromarray(np.concatenate(row, axis=1)))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)), loop=0)


def write_outputs(out: Path, result: MotionResult, bundle: Bundle, inputs_rgb: Sequence[np.ndarray],
                  frame_ids: Sequence[Any], p: FrontalizeParams, record: dict[str, Any]) -> dict[str, Any]:
    """Write the flows (.npy), pictures (.png, .gif for more than one pair) and expression.json into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    from pipeline.flowviz import flow_to_rgb

    max_px = p.viz_max_px or bundle.clip
    expr = expression_record(result, bundle.class_names, frame_ids)
    k = result.apex
    np.save(out / "flow_frontal_px.npy", result.flow_frontal_px)
    np.save(out / "flow_input_px.npy", result.flow_input_px)
    np.save(out / "faces.npy", result.faces)
    write_png(out / "flow_frontal.png", flow_to_rgb(result.flow_frontal_px[k], max_px))
    write_png(out / "face_frontal.png", _hwc(result.faces[k]))
    write_png(out / "neutral.png", _hwc(result.neutral))
    write_png(out / "summary.png", summary_picture(result, inputs_rgb[k], max_px, p.panel, expr["predicted"]))
    files = ["flow_frontal_px.npy", "flow_input_px.npy", "faces.npy", "flow_frontal.png", "face_frontal.png",
             "neutral.png", "summary.png"]
    if len(result.faces) > 1:
        write_animation(out / "frontalize.gif", result, inputs_rgb, max_px, p.panel, p.fps, bundle.class_names)
        files.append("frontalize.gif")
    doc = {**expr, **record,
           "units": "flows in pixels of the source crop (crop side preprocess.crop.size), Cartesian (u, v), "
                    f"at the model side {bundle.size}; colour wheel saturates at {max_px:g} px",
           "bundle": {"path": str(bundle.path), "sha256": bundle.meta["weights_sha256"],
                      "representation": bundle.representation, "clip": bundle.clip, "size": bundle.size},
           "params": dataclasses.asdict(p), "files": files + ["expression.json"]}
    (out / "expression.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


# ---------------------------------------------------------------- the commands' work

def preprocess_params(bundle: Bundle) -> tuple[Any, Any, int]:
    """The CropParams, FlowParams and store side the bundle's training data was made with."""
    from pipeline.crop import CropParams
    from pipeline.flow import FlowParams

    pre = bundle.meta["preprocess"]
    crop = CropParams(**{k: v for k, v in pre["crop"].items() if k in CropParams.__dataclass_fields__})
    flow = FlowParams(**{k: v for k, v in pre["flow"].items() if k in FlowParams.__dataclass_fields__})
    return crop, flow, int(pre["store_size"])


def neutral_face(bundle: Bundle, image: np.ndarray | None, p: FrontalizeParams, *, as_crop: bool = False,
                 align: bool = False, what: str = "neutral face") -> tuple[np.ndarray, dict[str, Any]]:
    """The face G_W warps: a picture framed like the training crops (aligned on request), else the average face."""
    crop, _, store_size = preprocess_params(bundle)
    avg = bundle.average_face
    if image is None:
        if avg is None:
            raise EmoganError(f"{bundle.path}: this bundle holds no average face; give a neutral face picture "
                              "(or re-export with `emogan export ... --average-face`)")
        return avg.image, {"neutral": "average face of the bundle", "aligned": False}
    face = face_from_image(image, crop, store_size, detect=not as_crop, what=what)
    info: dict[str, Any] = {"aligned": False}
    if align:
        if avg is None or avg.keypoints is None:
            log.warning("%s: no average-face keypoints in the bundle: the %s is not registered", bundle.path, what)
        else:
            kp = avg.keypoints * (store_size / avg.image.shape[-1])
            face, ok = align_face(face, kp, p.keypoint_model, p.keypoint_confidence)
            info["aligned"] = ok
            if not ok:
                log.warning("%s: no eyes/nose/mouth found: used as framed, not registered", what)
    return face, info


@dataclass
class Recording:
    """A recording as the networks saw it: frame names, the crop box, the crops (T,side,side,3) uint8 RGB."""

    names: list[str]
    box: Any
    crops: np.ndarray


def frontalize_recording(bundle: Bundle, frames: Iterable[tuple[str, np.ndarray]], neutral_u8: np.ndarray,
                         p: FrontalizeParams) -> tuple[MotionResult, Recording]:
    """Crop, flow, normalize (name, RGB frame) pairs as the pipeline does, then the networks."""
    crop, flow, store_size = preprocess_params(bundle)
    box, names, crops = crop_recording(frames, crop)
    flows = normalize_flows(recording_flows_px(crops, flow, store_size), bundle.representation, bundle.clip_input)
    res = run_networks(bundle, flows, neutral_u8, batch_size=p.batch_size, apex=p.apex)
    return res, Recording(names, box, crops)


def store_sequence(store: Path | str, sequence: str,
                   meta: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The (frame 0 -> frame t) rows of one store sequence: input flows (T,2,S,S), input images (T,3,S,S), attrs.

    With a bundle's sidecar `meta`, a store of another representation, clip or class set is refused first.
    """
    from pipeline.schema import CLASS_NAMES
    from pipeline.store import open_store
    from training.bundle import check_compatible

    g = open_store(store)
    attrs = dict(g.attrs)
    if meta is not None:
        check_compatible(meta, f"store {store}", representation=attrs["representation"], clip=float(attrs["clip"]),
                         clip_input=float(attrs.get("clip_input", attrs["clip"])),
                         class_names=attrs.get("class_names", CLASS_NAMES))
    ids = list(attrs.get("sequence_ids") or [])
    if sequence not in ids:
        raise EmoganError(f"{store}: no sequence {sequence!r}; it has {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}")
    seq = g["sequence"][...]
    frame_t = g["frame_t"][...] if "frame_t" in g else None
    if frame_t is None:
        raise EmoganError(f"{store}: no frame_t array (made before frame indices were stored): re-run `emogan normalize`")
    rows = np.flatnonzero((seq == ids.index(sequence)) & (frame_t == 0))
    steps = g["step"].get_orthogonal_selection((rows,)) if rows.size else np.zeros(0)
    _, pick = np.unique(steps, return_index=True)  # the apex pair may be listed by two strategies
    rows = rows[pick]
    if rows.size == 0:
        raise EmoganError(f"{store}: sequence {sequence!r} has no pair starting at its first frame")
    return (np.asarray(g["flow_input"].get_orthogonal_selection((rows,)), np.float32),
            np.asarray(g["input_image"].get_orthogonal_selection((rows,))), attrs)
