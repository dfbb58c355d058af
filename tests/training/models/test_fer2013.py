"""The torch FER2013 mini-Xception against the Keras HDF5 it is loaded from (fetched by set-up)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage import data

from conftest import ROOT
from pipeline.errors import EmoganError
from pipeline.params import load_params
from pipeline.schema import CLASS_NAMES
from pipeline.store import file_sha256
from pipeline.weights import weights_params, weights_path
from training.models.fer2013 import (
    FER2013Classifier, KERAS_CLASSES, MiniXception, keras_layer_map, load_fer2013, predict_proba, preprocess,
)

# mediapipe 0.10.21 full-range face detection on skimage's astronaut (x, y, w, h in pixels,
# score 0.91), widened by the `fer` package's default 10-pixel offsets as it does before classifying.
ASTRONAUT_FACE = (174, 68, 104, 104)
FER_OFFSET = 10


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def weights_file() -> Path:
    """The real HDF5 that `make test` fetched; a missing or different file fails (set-up is broken)."""
    params = load_params(ROOT / "params.yaml")
    p = ROOT / weights_path("fer2013", params)
    if not p.is_file():
        pytest.fail(f"{p} missing: run `make test` (it fetches it first) or `emogan weights fetch fer2013`")
    if file_sha256(p) != weights_params(params).fer2013.sha256:
        pytest.fail(f"{p} is not the pinned file (sha256 differs): run `emogan weights fetch fer2013`")
    return p


@pytest.fixture(scope="module")
def model(weights_file) -> FER2013Classifier:
    return load_fer2013(weights_file)


def _face_crop() -> np.ndarray:
    x, y, w, h = ASTRONAUT_FACE
    return data.astronaut()[y - FER_OFFSET:y + h + FER_OFFSET, x - FER_OFFSET:x + w + FER_OFFSET]


# --- an independent reference: the Keras graph executed in numpy, channels-last -------------
# Written from the Keras layer semantics, following the file's own model_config; it shares no
# code with the torch module, so a wrong transpose, padding or wiring shows up as a difference.

def _same(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pad_hw(x: np.ndarray, k: int, s: int, padding: str, value: float = 0.0) -> np.ndarray:
    if padding == "valid":
        return x
    return np.pad(x, (_same(x.shape[0], k, s), _same(x.shape[1], k, s), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    return sliding_window_view(x, (k, k), axis=(0, 1))[::s, ::s]      # (Ho, Wo, C, k, k)


def hdf5_arrays(h5_path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every array under model_weights, by layer and short name ('kernel', 'gamma', ...)."""
    found: dict[str, dict[str, np.ndarray]] = {}

    def visit(name: str, obj) -> None:   # must return None, or h5py stops visiting
        if isinstance(obj, h5py.Dataset):
            found.setdefault(name.split("/")[0], {})[name.rsplit("/", 1)[-1].split(":")[0]] = obj[()]

    with h5py.File(h5_path, "r") as f:
        f["model_weights"].visititems(visit)
    return found


def keras_forward_numpy(h5_path: Path, x_hwc: np.ndarray) -> np.ndarray:
    """Softmax output (7,) of the HDF5's Keras model on one (64,64,1) input, in float64 numpy."""
    with h5py.File(h5_path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
    weights = {layer: {k: a.astype(np.float64) for k, a in ws.items()} for layer, ws in hdf5_arrays(h5_path).items()}
    out: dict[str, np.ndarray] = {}
    for layer in cfg["config"]["layers"]:
        name, cls, c = layer["name"], layer["class_name"], layer["config"]
        ins = [out[n[0]] for node in layer["inbound_nodes"] for n in node]
        w = weights.get(name, {})
        if cls == "InputLayer":
            y = x_hwc.astype(np.float64)
        elif cls == "Conv2D":
            k, s = c["kernel_size"][0], c["strides"][0]
            y = np.einsum("hwcij,ijco->hwo", _windows(_pad_hw(ins[0], k, s, c["padding"]), k, s), w["kernel"])
            y = y + w["bias"] if c["use_bias"] else y
        elif cls == "SeparableConv2D":
            k = c["kernel_size"][0]
            y = np.einsum("hwcij,ijc->hwc", _windows(_pad_hw(ins[0], k, 1, c["padding"]), k, 1),
                          w["depthwise_kernel"][..., 0])
            y = np.einsum("hwc,co->hwo", y, w["pointwise_kernel"][0, 0])
        elif cls == "BatchNormalization":
            y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) * w["gamma"] + w["beta"]
        elif cls == "Activation":
            a = ins[0]
            y = np.maximum(a, 0) if c["activation"] == "relu" else np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        elif cls == "MaxPooling2D":
            k, s = c["pool_size"][0], c["strides"][0]
            y = _windows(_pad_hw(ins[0], k, s, c["padding"], -np.inf), k, s).max(axis=(3, 4))
        elif cls == "Add":
            y = ins[0] + ins[1]
        elif cls == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(0, 1))
        else:
            raise AssertionError(f"layer class {cls} not in the reference")
        out[name] = y
    return out[cfg["config"]["output_layers"][0][0]]


def test_astronaut_smile_is_happy(model):
    # Measured: happiness 0.999 on this crop (0.983 on the bare detection box).
    p = predict_proba(_face_crop(), model)[0]
    assert p.shape == (len(CLASS_NAMES),)
    assert np.isclose(p.sum(), 1.0, atol=1e-5)
    assert CLASS_NAMES[int(p.argmax())] == "happiness"
    assert p[CLASS_NAMES.index("happiness")] > 0.95, dict(zip(CLASS_NAMES, p.round(3)))


def test_astronaut_face_box_is_mediapipes():
    import mediapipe as mp

    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as fd:
        dets = fd.process(data.astronaut()).detections
    bb = dets[0].location_data.relative_bounding_box
    found = np.array([bb.xmin, bb.ymin, bb.width, bb.height]) * 512
    assert np.abs(found - np.array(ASTRONAUT_FACE)).max() < 4, found


def test_torch_matches_keras_graph_in_numpy(model, weights_file):
    gen = np.random.default_rng(0)
    crop = torch.from_numpy(_face_crop()).permute(2, 0, 1)[None].float() / 255
    inputs = torch.cat([preprocess(crop), torch.from_numpy(gen.uniform(-1, 1, (2, 1, 64, 64))).float()])
    with torch.no_grad():
        ours = torch.softmax(model.net(inputs), dim=1).numpy()
    ref = np.stack([keras_forward_numpy(weights_file, x[0][..., None].numpy()) for x in inputs])
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    assert ref[0].argmax() == KERAS_CLASSES.index("happy")
    # The classes must come out relabelled: the wrapper's columns are the Keras ones permuted.
    with torch.no_grad():
        wrapped = torch.softmax(model(crop), dim=1).numpy()[0]
    for i, name in enumerate(KERAS_CLASSES):
        proj = {"angry": "anger", "happy": "happiness", "sad": "sadness"}.get(name, name)
        assert wrapped[CLASS_NAMES.index(proj)] == pytest.approx(ours[0, i], abs=1e-6)


def test_layer_shapes_and_parameter_count_match_hdf5(weights_file):
    arrays = hdf5_arrays(weights_file)
    sizes = {layer: {k: a.shape for k, a in ws.items()} for layer, ws in arrays.items()}
    total = [a.size for ws in arrays.values() for a in ws.values()]
    net = MiniXception()
    table = keras_layer_map(net)
    assert set(table) == set(sizes)
    for name, (cls, m) in table.items():
        s = sizes[name]
        if cls == "Conv2D":
            kh, kw, ci, co = s["kernel"]
            assert tuple(m.weight.shape) == (co, ci, kh, kw), name
            assert (m.bias is not None) == ("bias" in s), name
        elif cls == "SeparableConv2D":
            kh, kw, ci, mult = s["depthwise_kernel"]
            assert tuple(m.depthwise.weight.shape) == (ci * mult, 1, kh, kw), name
            assert tuple(m.pointwise.weight.shape) == tuple(np.array(s["pointwise_kernel"])[[3, 2, 0, 1]]), name
        else:
            assert {tuple(m.weight.shape), tuple(m.running_var.shape)} == {s["gamma"], s["moving_variance"]}, name
    n_torch = sum(p.numel() for p in net.parameters()) + sum(
        b.numel() for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert n_torch == sum(total) == 58423   # Keras' count, BN moving statistics included


def test_frozen_eval_and_gradient_to_input(model):
    model.train()
    assert not model.training and not model.net.bn1.training
    assert all(not p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 128, 128, requires_grad=True)
    model(x)[:, CLASS_NAMES.index("happiness")].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_any_input_size_gives_same_class(model):
    crop = torch.from_numpy(_face_crop()).permute(2, 0, 1)[None].float() / 255
    for size in (64, 128, 256):
        x = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", antialias=True)
        with torch.no_grad():
            assert CLASS_NAMES[int(model(x).argmax())] == "happiness", size


def test_preprocess_gray_like_cv2():
    import cv2

    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ours = preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    np.testing.assert_allclose(ours, (gray - 0.5) * 2, atol=2 / 255 + 1e-6)   # cv2 rounds to uint8
    with pytest.raises(ValueError, match="RGB"):
        preprocess(torch.zeros(1, 1, 64, 64))


def test_missing_weights_say_how_to_fetch(tmp_path):
    with pytest.raises(EmoganError, match="emogan weights fetch fer2013") as e:
        load_fer2013(tmp_path / "nope.hdf5")
    assert "nope.hdf5" in str(e.value)


def test_corrupt_weights_name_the_file(tmp_path, weights_file):
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(weights_file.read_bytes()[:50_000])
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    for bad in (truncated, garbage):
        with pytest.raises(EmoganError, match=bad.name):
            load_fer2013(bad)


def test_other_architecture_or_shape_is_refused(tmp_path, weights_file):
    other = tmp_path / "other.hdf5"
    shutil.copy(weights_file, other)
    with h5py.File(other, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            if layer["name"] == "max_pooling2d_2":
                layer["config"]["padding"] = "valid"
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(EmoganError, match=r"other\.hdf5.*max_pooling2d_2"):
        load_fer2013(other)

    reshaped = tmp_path / "reshaped.hdf5"
    shutil.copy(weights_file, reshaped)
    with h5py.File(reshaped, "r+") as f:
        g = f["model_weights/conv2d_7"]
        (name,) = [n for n in g.attrs["weight_names"] if n.decode().endswith("bias:0")]
        del g[name.decode()]
        g[name.decode()] = np.zeros(6, np.float32)
    with pytest.raises(EmoganError, match=r"reshaped\.hdf5.*conv2d_7"):
        load_fer2013(reshaped)


def test_predict_proba_batches_and_checks_dtype(model):
    crops = np.stack([_face_crop(), _face_crop()[:, ::-1]])
    p = predict_proba(crops, model, batch_size=1)
    assert p.shape == (2, 7) and p.dtype == np.float32
    np.testing.assert_allclose(p[0], predict_proba(crops[:1], model)[0], atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        predict_proba(crops.astype(np.float32), model)


def test_frame_reads_the_central_part_of_the_input(model):
    """frame_for(0.1, 0.4) = 1.2 / 1.8; the classifier with a frame reads what the whole-image one reads of the
    centre cut out by hand; frames outside (0, 1] and a judge margin above the crop's are refused."""
    from training.models.fer2013 import central_crop, frame_for

    assert frame_for(0.1, 0.4) == pytest.approx(1.2 / 1.8)
    assert frame_for(0.4, 0.4) == 1.0
    with pytest.raises(ValueError):
        frame_for(0.5, 0.4)
    with pytest.raises(ValueError):
        central_crop(torch.zeros(1, 3, 8, 8), 0.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    c = central_crop(x, frame_for(0.1, 0.4))
    assert c.shape[-2:] == (43, 43) and torch.equal(c, x[..., 10:53, 10:53])
    framed = FER2013Classifier(model.net, frame=frame_for(0.1, 0.4))
    assert torch.allclose(framed(x), model(x[..., 10:53, 10:53]), atol=1e-5)
    assert not torch.allclose(framed(x), model(x), atol=1e-3)
