"""Model bundles: one trained eMotion-GAN in two files that every inference command takes.

- `<name>.safetensors`: every network's weights, keys `<role>.<state_dict key>` (roles gf, dp, de, gw),
  plus `average_face` ((3,S,S) uint8 RGB, the training data's mean aligned neutral face) when present;
- `<name>.json` (the sidecar): format and version, the sha256 of the weights file, class names, flow
  representation and clip, model side, each net's build spec (`training.models.networks`), the preprocessing
  the training data went through (crop, flow, normalize params and crop side: inference repeats them),
  the average face's keypoints, and the training config.
Loading reads safetensors and JSON only: nothing is unpickled, no code in the files runs.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES
from pipeline.store import file_sha256

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "emogan-bundle"
BUNDLE_VERSION = 1
AVERAGE_FACE_KEY = "average_face"
ROLES: tuple[str, ...] = ("gf", "dp", "de", "gw")


class BundleError(EmoganError):
    """A bundle that cannot be read, or that does not fit the data or the code it is used with."""


@dataclass
class AverageFace:
    """The mean aligned neutral face of a store: image (3,S,S) uint8 RGB, keypoints (K,2) in its pixels (x, y)."""

    image: np.ndarray
    keypoints: np.ndarray | None
    n_faces: int
    n_skipped: int
    source: str


@dataclass
class Bundle:
    """A loaded bundle: the nets in eval mode (as a TrainedRun), its sidecar, its average face."""

    path: Path
    meta: dict[str, Any]
    run: Any                          # training.checkpoint.TrainedRun
    average_face: AverageFace | None

    @property
    def class_names(self) -> list[str]:
        """D_E's output classes, in order."""
        return list(self.meta["class_names"])

    @property
    def representation(self) -> str:
        """Flow representation of the model's inputs and outputs (polar or cartesian)."""
        return str(self.meta["representation"])

    @property
    def clip(self) -> float:
        """Flow clip value, pixels of the source crop."""
        return float(self.meta["clip"])

    @property
    def size(self) -> int:
        """The model's side: flows and faces are resized to it."""
        return int(self.meta["size"])


def sidecar_path(path: Path | str) -> Path:
    """The JSON beside a bundle's weights: model.safetensors -> model.json."""
    return Path(path).with_suffix(".json")


def _store_preprocess(store: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Crop/flow/normalize params the run's first store was made with; crop params from its crops folder
    (params.yaml's when that folder's crop_params.json is gone)."""
    from pipeline.crop import CropParams
    from pipeline.params import as_dict, section

    p = store.get("params") or {}
    out: dict[str, Any] = {"flow": p.get("flow"), "normalize": p.get("normalize"), "store_size": int(store["size"])}
    attrs: dict[str, Any] = {}
    try:
        from pipeline.store import open_store

        attrs = dict(open_store(store["path"]).attrs)
    except EmoganError as e:
        log.warning("cannot open the run's store (%s): crop side and params from params.yaml", e)
    crop_file = Path(attrs["source_manifest"]).parent / "crop_params.json" if attrs.get("source_manifest") else None
    if crop_file is not None and crop_file.is_file():
        crop = json.loads(crop_file.read_text())
        crop = crop.get("params", crop)
        out["crop_source"] = str(crop_file)
    else:
        crop = as_dict(section(params, "crop", CropParams))
        out["crop_source"] = f"{params.get('__file__')} (crop_params.json of the store not found)"
    crop = {k: v for k, v in crop.items() if k in {f for f in CropParams.__dataclass_fields__}}
    if attrs.get("source_size"):
        crop["size"] = int(attrs["source_size"])  # the crop side the flows' pixel units refer to
    out["crop"] = crop
    if out["flow"] is None or out["normalize"] is None:
        raise BundleError(f"{store['path']}: the run's config does not record the store's flow/normalize params")
    return out


def export_bundle(run_dir: Path | str, out: Path | str, params: dict[str, Any], *, epoch: int | None = None,
                  average_face: AverageFace | None = None) -> Path:
    """Write the bundle of a training run: OUT (.safetensors) and its JSON sidecar; returns OUT."""
    import torch
    from safetensors.torch import save_file

    from training.checkpoint import load_run

    out = Path(out)
    if out.suffix != ".safetensors":
        raise EmoganError(f"{out}: a bundle's weights file ends in .safetensors (its sidecar is {out.stem}.json)")
    run = load_run(run_dir, epoch=epoch)
    config = run.config
    stores = config.get("runtime", {}).get("stores") or []
    if not stores:
        raise BundleError(f"{run_dir}/config.json: no store recorded in runtime.stores")
    tensors: dict[str, torch.Tensor] = {}
    for role in ROLES:
        for k, v in run.nets[role].state_dict().items():
            tensors[f"{role}.{k}"] = v.detach().cpu().contiguous()
    if average_face is not None:
        tensors[AVERAGE_FACE_KEY] = torch.from_numpy(np.ascontiguousarray(average_face.image, dtype=np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    # One metadata key: safetensors writes the metadata map in a per-process hash order, so two keys made the same
    # weights a file of other bytes on about every other export (a new hash for the export stage's output).
    save_file(tensors, str(tmp), metadata={"format": f"{BUNDLE_FORMAT}/{BUNDLE_VERSION}"})
    os.replace(tmp, out)
    meta = {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION,
        "weights_file": out.name, "weights_sha256": file_sha256(out),
        "class_names": list(CLASS_NAMES), "representation": run.representation, "clip": run.clip, "size": run.size,
        "roles": list(ROLES), "nets": {r: config["train"]["nets"][r] for r in ROLES},
        "preprocess": _store_preprocess(stores[0], params),
        "average_face": None if average_face is None else {
            "source": average_face.source, "n_faces": average_face.n_faces, "n_skipped": average_face.n_skipped,
            "size": int(average_face.image.shape[-1]),
            "keypoints": None if average_face.keypoints is None else np.asarray(average_face.keypoints).tolist()},
        "run": {"dir": str(run_dir), "epoch": epoch, "config_name": config.get("config_name"),
                "fold": config.get("fold"), "stores": [s["path"] for s in stores]},
        "config": config,
    }
    side = sidecar_path(out)
    tmp = side.with_name(f".{side.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, side)
    return out


def read_meta(path: Path | str) -> dict[str, Any]:
    """A bundle's sidecar JSON, checked for format and version; BundleError naming the file otherwise."""
    side = sidecar_path(path)
    if not Path(path).is_file():
        raise BundleError(f"{path}: bundle not found (make one with `emogan export RUN_DIR --out {Path(path).name}`)")
    if not side.is_file():
        raise BundleError(f"{side}: the bundle's JSON sidecar is missing (it travels with {Path(path).name})")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{side}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{side}: not an emogan bundle sidecar (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != BUNDLE_VERSION:
        raise BundleError(f"{side}: bundle format version {meta.get('format_version')}; this emogan reads {BUNDLE_VERSION}")
    for key in ("class_names", "representation", "clip", "size", "nets", "preprocess", "weights_sha256"):
        if key not in meta:
            raise BundleError(f"{side}: lacks {key!r}")
    _check_ranges(meta, side)
    return meta


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_ranges(meta: dict[str, Any], side: Path) -> None:
    """The sidecar's numbers are in range (a hand-edited `clip: 0` gave NaN output with exit 0)."""
    pre = meta["preprocess"] if isinstance(meta["preprocess"], dict) else {}
    crop = pre.get("crop") if isinstance(pre.get("crop"), dict) else {}
    checks = [("clip", meta["clip"], _number(meta["clip"]) and meta["clip"] > 0, "a positive number of pixels"),
              ("size", meta["size"], isinstance(meta["size"], int) and meta["size"] >= 8, "an integer >= 8"),
              ("preprocess.store_size", pre.get("store_size"),
               isinstance(pre.get("store_size"), int) and pre.get("store_size") >= 8, "an integer >= 8"),
              ("preprocess.crop.size", crop.get("size"), isinstance(crop.get("size"), int) and crop.get("size") >= 8,
               "an integer >= 8"),
              ("preprocess.crop.margin", crop.get("margin"), _number(crop.get("margin")) and crop.get("margin") >= 0,
               "a number >= 0"),
              ("preprocess.crop.pad_value", crop.get("pad_value"),
               isinstance(crop.get("pad_value"), int) and 0 <= crop.get("pad_value") <= 255, "an integer in 0..255")]
    for name, value, ok, want in checks:
        if not ok:
            raise BundleError(f"{side}: {name} = {value!r} is out of range (expected {want})")


def check_compatible(meta: dict[str, Any], where: str, *, representation: str | None = None, clip: float | None = None,
                     class_names: Sequence[str] | None = None) -> None:
    """Refuse a bundle made for another flow representation, clip or class set than the data's (`where`)."""
    if representation is not None and meta["representation"] != representation:
        raise BundleError(f"bundle made for {meta['representation']} flows, but {where} holds {representation} flows: "
                          "use a bundle trained on that representation, or re-run `emogan normalize` with "
                          f"representation {meta['representation']}")
    if clip is not None and not np.isclose(float(meta["clip"]), float(clip)):
        raise BundleError(f"bundle made for flows clipped at {meta['clip']:g} px, but {where} is clipped at {clip:g} px")
    if class_names is not None and list(meta["class_names"]) != list(class_names):
        raise BundleError(f"bundle predicts the classes {list(meta['class_names'])}, but {where} uses "
                          f"{list(class_names)}: the class sets (and their order) must be the same")


def load_bundle(path: Path | str, device: str = "cpu", **expect: Any) -> Bundle:
    """Read a bundle (safetensors + JSON, nothing unpickled) into eval-mode nets; `expect` as check_compatible's."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from training.models.networks import build_from
    from training.checkpoint import TrainedRun

    path = Path(path)
    meta = read_meta(path)
    from training.flowrep import REPRESENTATIONS

    if meta["representation"] not in REPRESENTATIONS:
        raise BundleError(f"{sidecar_path(path)}: flow representation {meta['representation']!r}; this emogan knows "
                          f"{', '.join(REPRESENTATIONS)}")
    # The class set is the project's label code table: a bundle naming others was made for other data.
    check_compatible(meta, "this emogan (pipeline/schema.py CLASS_NAMES)", class_names=CLASS_NAMES)
    if expect:
        check_compatible(meta, expect.pop("where", "the data"), **expect)
    if file_sha256(path) != meta["weights_sha256"]:
        raise BundleError(f"{path}: its sha256 differs from the one in {sidecar_path(path).name}: the weights and "
                          "the sidecar come from different exports")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{path}: not a readable safetensors file ({e})") from None
    nets = {}
    for role in meta.get("roles", ROLES):
        net = build_from(meta["nets"][role])
        state = {k[len(role) + 1:]: v for k, v in tensors.items() if k.startswith(role + ".")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise BundleError(f"{path}: the {role} weights do not fit the net the sidecar describes ({e})") from None
        nets[role] = net.to(device).eval()
    avg = None
    if AVERAGE_FACE_KEY in tensors:
        info = meta.get("average_face") or {}
        kp = info.get("keypoints")
        avg = AverageFace(tensors[AVERAGE_FACE_KEY].numpy(), None if kp is None else np.asarray(kp, np.float32),
                          int(info.get("n_faces", 0)), int(info.get("n_skipped", 0)), str(info.get("source", "")))
    run = TrainedRun(meta.get("config", {}), nets, meta["representation"], float(meta["clip"]), int(meta["size"]),
                     torch.device(device))
    return Bundle(path, meta, run, avg)
