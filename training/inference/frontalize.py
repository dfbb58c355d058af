"""Inference with a model bundle (training/inference/bundle.py): frontal view synthesis and motion transfer.

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
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from pipeline.errors import EmoganError
from pipeline.params import ParamsError, section
from training.inference.bundle import Bundle
from training.inference.faces import align_face, face_from_image

log = logging.getLogger(__name__)

APEX_RULES = ("max_motion", "last")
MOTION_RULES = ("direct", "chain")


@dataclass
class FrontalizeParams:
    """params.yaml `frontalize:` (see the comments there)."""

    stride: int
    max_frames: int
    apex: str
    motion: str  # chain: first -> t frontalized as the chain of consecutive pairs' frontalizations; direct: G_F on it
    chain_border: float  # chain: this fraction of the side along each edge set to zero (flowrep.zero_border)
    batch_size: int
    viz_max_px: float | None
    panel: int
    fps: float
    keypoint_model: int
    keypoint_confidence: float
    align_neutral: bool
    align_target: bool
    device: str
    gf_mirror_mean: bool  # G_F's output: the mean of G_F(x) and the mirror of G_F(mirror of x) (TrainedRun)

    def __post_init__(self) -> None:
        if self.apex not in APEX_RULES:
            raise ValueError(f"apex = {self.apex!r}: expected one of {', '.join(APEX_RULES)}")
        if self.motion not in MOTION_RULES:
            raise ValueError(f"motion = {self.motion!r}: expected one of {', '.join(MOTION_RULES)}")
        for name, low in (("stride", 1), ("max_frames", 2), ("batch_size", 1), ("panel", 16)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} = {v!r}: expected an integer >= {low}")
        if not 0.0 <= self.chain_border < 0.5:
            raise ValueError(f"chain_border = {self.chain_border!r}: expected a fraction of the side in [0, 0.5)")
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


def recording_flows_px(crops_rgb: np.ndarray, flow: Any, store_size: int, consecutive: bool = False) -> np.ndarray:
    """Flows (first crop -> crop t, or crop t-1 -> crop t when `consecutive`) for t >= 1, as the pipeline stores
    them: (T-1,2,store_size,store_size) float32 px."""
    import cv2

    from pipeline.farneback import downsample_flow_px, farneback_px
    from pipeline.normalize import area_resize

    gray = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops_rgb]
    # float16 twice, as the flow store and then the training store hold them: the nets see the same numbers.
    flows = np.stack([downsample_flow_px(farneback_px(gray[t - 1] if consecutive else gray[0], gray[t], flow),
                                         flow.size).astype(np.float16) for t in range(1, len(gray))])
    return area_resize(flows.astype(np.float32), store_size)


def normalize_flows(flows_px: np.ndarray, representation: str, clip: float) -> np.ndarray:
    """Crop-pixel flows (N,2,S,S) -> the store representation, rounded through float16 like a store row."""
    from pipeline.normalize import normalize_flow

    return normalize_flow(flows_px, representation, clip).astype(np.float16).astype(np.float32)


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


def chained(bundle: Bundle, steps_norm: np.ndarray, source_px: int, batch_size: int, border: float = 0.0,
            faces_u8: np.ndarray | None = None) -> np.ndarray:
    """First -> t frontal flows (T,2,s,s), the bundle's representation, composed from G_F's frontalizations of the
    consecutive pairs `steps_norm` (T,2,S,S) (training/evaluation/chain.py; `frontalize.motion: chain`), a band of
    `border` x the side along each edge set to zero (`frontalize.chain_border`). `faces_u8` (T,3,H,W) uint8 RGB:
    each pair's end frame, for a G_F that reads the face (`nets.gf.face`)."""
    import torch

    from training import flowrep
    from training.flowrep import compose_all, resize_flow

    run = bundle.run
    steps = []
    with torch.no_grad():
        for a in range(0, len(steps_norm), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(steps_norm[a:a + batch_size], dtype=np.float32)).to(run.device)
            f = None if faces_u8 is None else torch.from_numpy(np.ascontiguousarray(faces_u8[a:a + batch_size]))
            steps += list(run.to_pixels(run.frontalize(resize_flow(x, run.size, run.representation, run.clip), f)).cpu())
    out = flowrep.zero_border(torch.stack(compose_all(steps, source_px / run.size)), border)
    return flowrep.encode(out, run.representation, run.clip).numpy()


def run_networks(bundle: Bundle, flows_norm: np.ndarray, neutral_u8: np.ndarray, *, batch_size: int = 16,
                 apex: str = "max_motion", frontalize: bool = True,
                 frontal_norm: np.ndarray | None = None, faces_u8: np.ndarray | None = None) -> MotionResult:
    """G_F, D_E and G_W on flows (T,2,S,S) in the bundle's representation and one neutral face (3,S',S') uint8;
    `frontal_norm` (T,2,s,s): frontal flows already made (the chain), used instead of G_F's; `faces_u8` (T,3,H,W)
    uint8 RGB: each flow's end frame, for a G_F that reads the face (`nets.gf.face`)."""
    import torch
    import torch.nn.functional as F

    from training.flowrep import resize_flow

    run = bundle.run
    s = run.size
    ins, frs, probs, faces = [], [], [], []
    neutral = torch.from_numpy(np.ascontiguousarray(neutral_u8))[None]
    with torch.no_grad():
        for a in range(0, len(flows_norm), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(flows_norm[a:a + batch_size], dtype=np.float32)).to(run.device)
            x = resize_flow(x, s, run.representation, run.clip)
            if frontal_norm is not None:
                fr = torch.from_numpy(np.ascontiguousarray(frontal_norm[a:a + batch_size])).to(run.device)
            else:
                f = None if faces_u8 is None else torch.from_numpy(np.ascontiguousarray(faces_u8[a:a + batch_size]))
                fr = run.frontalize(x, f) if frontalize else x
            probs.append(F.softmax(run.nets["de"](fr).float(), dim=1).cpu())
            faces.append(run.warp(fr, neutral.expand(len(x), -1, -1, -1).to(run.device)).cpu())
            ins.append(run.to_pixels(x).cpu())
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


# Everything write_outputs may write (its `files` list names those of one run).
OUTPUT_FILES: tuple[str, ...] = ("flow_frontal_px.npy", "flow_input_px.npy", "faces.npy", "flow_frontal.png",
                                 "face_frontal.png", "neutral.png", "summary.png", "frontalize.gif", "expression.json")


def write_outputs(out: Path, result: MotionResult, bundle: Bundle, inputs_rgb: Sequence[np.ndarray],
                  frame_ids: Sequence[Any], p: FrontalizeParams, record: dict[str, Any]) -> dict[str, Any]:
    """Write the flows (.npy), pictures (.png, .gif for more than one pair) and expression.json into `out`.

    Every output of an earlier run into `out` is removed first: a re-run leaves no stale file (a one-pair
    input writes no .gif, and an old one would pass for its animation)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
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

class Preprocess(NamedTuple):
    """How the bundle's training data was made: crop and flow params, and the store side."""

    crop: Any         # pipeline.crop.CropParams
    flow: Any         # pipeline.flow.FlowParams
    store_size: int


def preprocess_params(bundle: Bundle, params: dict[str, Any]) -> Preprocess:
    """The bundle's recorded crop and flow params on top of params.yaml's (which only add how to run: workers)."""
    from pipeline.crop import CropParams
    from pipeline.flow import load_flow_params
    from pipeline.params import with_record

    pre = bundle.meta["preprocess"]
    where = f"{bundle.path}: preprocess"
    return Preprocess(with_record(section(params, "crop", CropParams), pre["crop"], f"{where}.crop"),
                      with_record(load_flow_params(params), pre["flow"], f"{where}.flow"), int(pre["store_size"]))


def neutral_face(bundle: Bundle, pre: Preprocess, image: np.ndarray | None, p: FrontalizeParams, *,
                 as_crop: bool = False, align: bool = False,
                 what: str = "neutral face") -> tuple[np.ndarray, dict[str, Any]]:
    """The face G_W warps: a picture framed like the training crops (aligned on request), else the average face."""
    crop, store_size = pre.crop, pre.store_size
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


def frontalize_recording(bundle: Bundle, pre: Preprocess, frames: Iterable[tuple[str, np.ndarray]],
                         neutral_u8: np.ndarray, p: FrontalizeParams) -> tuple[MotionResult, Recording]:
    """Crop, flow, normalize (name, RGB frame) pairs as the pipeline does, then the networks."""
    bundle.run.mirror_mean = p.gf_mirror_mean
    box, names, crops = crop_recording(frames, pre.crop)
    flows = normalize_flows(recording_flows_px(crops, pre.flow, pre.store_size), bundle.representation, bundle.clip)
    # Each flow's end frame (crops 1..T), for a G_F that reads the non-frontal face beside the flow
    ends = np.ascontiguousarray(crops[1:].transpose(0, 3, 1, 2)) if bundle.run.reads_face else None
    frontal = None
    if p.motion == "chain":
        steps = normalize_flows(recording_flows_px(crops, pre.flow, pre.store_size, consecutive=True),
                                bundle.representation, bundle.clip)
        frontal = chained(bundle, steps, pre.crop.size, p.batch_size, p.chain_border, ends)
    res = run_networks(bundle, flows, neutral_u8, batch_size=p.batch_size, apex=p.apex, frontal_norm=frontal,
                       faces_u8=ends)
    return res, Recording(names, box, crops)
