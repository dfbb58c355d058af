"""The eMotion-GAN networks (paper section III), built by name from NETS: gf, dp, de, gw, fer_cnn.

Flows are (N,2,S,S) in the store's normalized representation ([-1,1]); images given to G_W are
(N,3,S,S) RGB in [-1,1]; image classifiers take RGB in [0,1] and return (N,K) logits in
`pipeline.schema.CLASS_NAMES` order.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES
from training.models.gw_warp import WarpRefineGenerator


def _instance_norm(ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


def _layer_norm(ch: int) -> nn.Module:
    # LayerNorm over (C,H,W) with a per-channel affine, as the paper's decoder uses; GroupNorm with
    # one group computes exactly that normalization and is 2.5-10x faster than a hand-written one.
    return nn.GroupNorm(1, ch, affine=True)


class ResBlock(nn.Module):
    """Residual block: x + IN(conv(ReLU(IN(conv(x))))), 3x3 reflection-padded convs; shape kept."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"), _instance_norm(ch), nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"), _instance_norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) -> (N,C,H,W)."""
        return x + self.body(x)


class Encoder(nn.Module):
    """Reflection-padded stem, `n_down` stride-2 blocks (conv + IN + ReLU), `n_res` residual blocks."""

    def __init__(self, in_ch: int, ngf: int, max_ch: int, n_down: int, n_res: int, stem_kernel: int = 7):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(stem_kernel // 2), nn.Conv2d(in_ch, ngf, stem_kernel),
            _instance_norm(ngf), nn.ReLU(inplace=True),
        ]
        ch = ngf
        self.channels = [ch]
        for _ in range(n_down):
            nxt = min(ch * 2, max_ch)
            layers += [nn.Conv2d(ch, nxt, 3, stride=2, padding=1, padding_mode="reflect"),
                       _instance_norm(nxt), nn.ReLU(inplace=True)]
            ch = nxt
            self.channels.append(ch)
        layers += [ResBlock(ch) for _ in range(n_res)]
        self.net = nn.Sequential(*layers)
        self.out_ch = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,in_ch,S,S) -> (N,out_ch,S/2^n_down,S/2^n_down)."""
        return self.net(x)


class Decoder(nn.Module):
    """`n_res` residual blocks, then upsampling blocks (x2 nearest + conv + LayerNorm + ReLU), tanh head."""

    def __init__(self, channels: Sequence[int], out_ch: int, n_res: int, stem_kernel: int = 7):
        super().__init__()
        # `channels` are the encoder's, from full resolution to the bottleneck; we walk them back.
        chans = list(channels)
        ch = chans[-1]
        layers: list[nn.Module] = [ResBlock(ch) for _ in range(n_res)]
        for nxt in reversed(chans[:-1]):
            # Nearest upsampling then a conv avoids the checkerboard of transposed convolutions.
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(ch, nxt, 3, padding=1, padding_mode="reflect"),
                       _layer_norm(nxt), nn.ReLU(inplace=True)]
            ch = nxt
        layers += [nn.ReflectionPad2d(stem_kernel // 2), nn.Conv2d(ch, out_ch, stem_kernel), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N,C,s,s) bottleneck -> (N,out_ch,S,S) in [-1,1]."""
        return self.net(z)


def clamp_unit_disc(v: torch.Tensor) -> torch.Tensor:
    """Cartesian flows (N,2,H,W) shortened to magnitude <= 1 in the forward pass, identity in the backward one.

    A residual output (input minus an estimated head motion) can leave the store's range where the head
    moves much; a plain clamp would give those pixels no gradient on their magnitude (straight-through).
    """
    mag = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    clamped = v / mag.clamp_min(1.0)
    return v + (clamped - v).detach()


# G_F's optional face input (`nets.gf.face`): channels the encoder reads beside the flow's two
FACE_CHANNELS: dict[str, int] = {"none": 0, "grey": 1}
_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights, as OpenCV's RGB2GRAY


def face_channels(face: torch.Tensor | None, mode: str, like: torch.Tensor) -> torch.Tensor:
    """The face as G_F's extra input channels: (N,3,H,W) RGB in [-1,1] -> (N,1,S,S) grey at `like`'s side, dtype."""
    if face is None:
        raise EmoganError(f"this G_F reads the non-frontal face beside the flow (nets.gf.face: {mode}): "
                          "pass the face at the flow's end frame")
    if face.ndim != 4 or face.shape[1] != 3 or len(face) != len(like):
        raise EmoganError(f"G_F's face input must be (N,3,H,W) RGB for the flows' N={len(like)}, got {tuple(face.shape)}")
    w = torch.tensor(_GREY, device=face.device, dtype=torch.float32).view(1, 3, 1, 1)
    g = (face.float() * w).sum(1, keepdim=True)
    if g.shape[-2:] != like.shape[-2:]:
        g = F.interpolate(g, size=like.shape[-2:], mode="area")
    return g.to(like.dtype)


def reads_face(gf: nn.Module) -> bool:
    """Whether G_F (or a wrapper of it: DDP's .module) needs the non-frontal face beside the flow."""
    return getattr(getattr(gf, "module", gf), "face", "none") != "none"


class FlowGenerator(nn.Module):
    """G_F: non-frontal flow (N,2,S,S) -> frontalized flow (N,2,S,S) in [-1,1].

    `output`: `direct` (the paper: the decoder draws the frontal flow, tanh), or, for Cartesian stores,
    `residual`: the input minus an estimated head-induced motion plus an expression correction (the
    paper's Fig. 1, column 5: head motion and expression motion apart), x - head + expr, clamped to the
    unit disc (straight-through). `head` is a smooth field predicted from the bottleneck and bilinearly
    upsampled (a head turn moves the face smoothly: a coarse field cannot remove the expression), from the
    bottleneck and the input averaged down to the bottleneck's side (its means: a translation), `expr`
    the decoder's tanh output; both start at zero, so G_F starts as the identity, not as noise.
    `gated` (Cartesian stores): g x + (1 - g) d, the decoder's drawing d blended with the input x by a
    smooth gate g in (0, 1) predicted, as `residual`'s head, from the bottleneck and the input averaged down
    to its side and bilinearly upsampled; g starts near 0 (sigmoid(-2)), so G_F starts as `direct`, and can
    learn to pass a frontal input through unchanged (pose `nothing`), which `direct` can only redraw.
    `scale: input_rms` multiplies what the decoder and the head draw by the input's root-mean-square
    magnitude (per sample): the encoder's InstanceNorm makes its features blind to the input's scale,
    so without it the output cannot grow with the motion.
    `face: grey` (issue #12): the encoder also reads the non-frontal face at the flow's end frame (the store's
    `input_image`), as one grey channel: where the brows, eyes and mouth are, which a flow shows only where they
    move. `forward(flow, face)` then needs the face ((N,3,H,W) in [-1,1], any side); `none`: the paper's G_F.
    """

    def __init__(self, in_ch: int = 2, out_ch: int = 2, ngf: int = 64, max_ch: int = 1024, n_down: int = 4,
                 n_res_enc: int = 2, n_res_dec: int = 5, stem_kernel: int = 7, output: str = "direct",
                 scale: str = "none", face: str = "none"):
        super().__init__()
        if output not in ("direct", "residual", "gated"):
            raise EmoganError(f"gf output is direct, residual or gated, not {output!r}")
        if scale not in ("none", "input_rms"):
            raise EmoganError(f"gf scale is none or input_rms, not {scale!r}")
        if face not in FACE_CHANNELS:
            raise EmoganError(f"gf face is {' or '.join(FACE_CHANNELS)}, not {face!r}")
        self.output, self.scale, self.face = output, scale, face
        self.encoder = Encoder(in_ch + FACE_CHANNELS[face], ngf, max_ch, n_down, n_res_enc, stem_kernel)
        self.decoder = Decoder(self.encoder.channels, out_ch, n_res_dec, stem_kernel)
        if output == "gated":
            ch = self.encoder.out_ch
            self.gate = nn.Sequential(nn.Conv2d(ch + in_ch, ch, 3, padding=1, padding_mode="reflect"), nn.ReLU(inplace=True),
                                      nn.Conv2d(ch, 1, 3, padding=1, padding_mode="reflect"))
            nn.init.zeros_(self.gate[-1].weight)
            nn.init.constant_(self.gate[-1].bias, -2.0)
        if output == "residual":
            ch = self.encoder.out_ch
            # The head sees the bottleneck and the input averaged down to its side: the encoder's InstanceNorm
            # removes each channel's mean, so from the bottleneck alone a translation is invisible.
            self.head = nn.Sequential(nn.Conv2d(ch + in_ch, ch, 3, padding=1, padding_mode="reflect"), nn.ReLU(inplace=True),
                                      nn.Conv2d(ch, out_ch, 3, padding=1, padding_mode="reflect"))
            for last in (self.head[-1], [m for m in self.decoder.modules() if isinstance(m, nn.Conv2d)][-1]):
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward(self, flow: torch.Tensor, face: torch.Tensor | None = None) -> torch.Tensor:
        """(N,2,S,S) -> (N,2,S,S); S must be divisible by 2^n_down. `face`: see the class (ignored with face none)."""
        z = self.encoder(flow if self.face == "none" else torch.cat([flow, face_channels(face, self.face, flow)], 1))
        r = ((flow.float().square().sum(1, keepdim=True).mean((2, 3), keepdim=True) + 1e-8).sqrt().to(flow.dtype)
             if self.scale == "input_rms" else 1.0)
        if self.output == "direct":
            out = self.decoder(z)
            return out if self.scale == "none" else clamp_unit_disc(r * out)
        coarse = F.adaptive_avg_pool2d(flow, z.shape[-2:]) / (r if self.scale == "input_rms" else 1.0)
        if self.output == "gated":
            g = torch.sigmoid(F.interpolate(self.gate(torch.cat([z, coarse.to(z.dtype)], 1)), size=flow.shape[-2:],
                                            mode="bilinear", align_corners=False))
            out = self.decoder(z)
            out = out if self.scale == "none" else clamp_unit_disc(r * out)
            return g * flow + (1.0 - g) * out
        head = F.interpolate(self.head(torch.cat([z, coarse.to(z.dtype)], 1)), size=flow.shape[-2:], mode="bilinear",
                             align_corners=False)
        return clamp_unit_disc(flow - r * head + r * self.decoder(z))


class PatchDiscriminator(nn.Module):
    """D_P PatchGAN: (N,in_ch,S,S) -> (N,1,h,w) real/fake logits per patch.

    Blocks of conv k4 s2 + InstanceNorm + LeakyReLU(0.2) (no norm on the first), then one stride-1
    block and a stride-1 conv to one channel, as in pix2pix's 70x70 PatchGAN. With the default
    `in_ch=4` it is conditional: the input flow and a frontal flow, concatenated.
    """

    def __init__(self, in_ch: int = 4, ndf: int = 64, n_layers: int = 3, max_ch: int = 512, slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(slope, inplace=True)]
        ch = ndf
        for _ in range(1, n_layers):
            nxt = min(ch * 2, max_ch)
            layers += [nn.Conv2d(ch, nxt, 4, stride=2, padding=1), _instance_norm(nxt), nn.LeakyReLU(slope, inplace=True)]
            ch = nxt
        nxt = min(ch * 2, max_ch)
        layers += [nn.Conv2d(ch, nxt, 4, stride=1, padding=1), _instance_norm(nxt), nn.LeakyReLU(slope, inplace=True),
                   nn.Conv2d(nxt, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,in_ch,S,S) -> (N,1,S/2^n_layers - 2, same) logits."""
        return self.net(x)


class FlowCNN(nn.Module):
    """D_E Flow-CNN: flow (N,2,S,S) -> (N,n_classes) expression logits.

    Three blocks of conv 3x3 + BatchNorm + ReLU + max-pool, an adaptive average pool to a
    `pool` x `pool` grid (the identity at S=128 with three blocks and pool=16), then an MLP.
    """

    def __init__(self, in_ch: int = 2, channels: Sequence[int] = (32, 64, 128), pool: int = 16, hidden: int = 256,
                 dropout: float = 0.5, n_classes: int = len(CLASS_NAMES)):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_ch
        for c in channels:
            layers += [nn.Conv2d(ch, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            ch = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(ch * pool * pool, hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        """(N,2,S,S) -> (N,n_classes) logits."""
        return self.mlp(self.pool(self.features(flow)))


class ImageGenerator(nn.Module):
    """G_W: frontal flow (N,2,S,S) and neutral face (N,3,S,S) in [-1,1] -> expressive face (N,3,S,S) in [-1,1].

    Identity encoder and motion encoder (each a stem, `n_down` downsampling and `n_res_enc`
    residual blocks); their codes are concatenated, fused by a 1x1 conv, and decoded by
    `n_res_dec` residual and `n_down` upsampling blocks.
    """

    def __init__(self, flow_ch: int = 2, img_ch: int = 3, ngf: int = 64, max_ch: int = 512, n_down: int = 3,
                 n_res_enc: int = 3, n_res_dec: int = 3, stem_kernel: int = 7):
        super().__init__()
        self.identity = Encoder(img_ch, ngf, max_ch, n_down, n_res_enc, stem_kernel)
        self.motion = Encoder(flow_ch, ngf, max_ch, n_down, n_res_enc, stem_kernel)
        ch = self.identity.out_ch
        self.fuse = nn.Sequential(nn.Conv2d(2 * ch, ch, 1), _instance_norm(ch), nn.ReLU(inplace=True))
        self.decoder = Decoder(self.identity.channels, img_ch, n_res_dec, stem_kernel)

    def forward(self, flow: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
        """flow (N,2,S,S), neutral (N,3,S,S) in [-1,1] -> (N,3,S,S) in [-1,1]."""
        z = torch.cat([self.identity(neutral), self.motion(flow)], dim=1)
        return self.decoder(self.fuse(z))


class ImageFER(nn.Module):
    """The project's own image e_FER: RGB (N,3,H,W) in [0,1] -> (N,n_classes) logits, CLASS_NAMES order.

    Resizes its input to `size` (antialiased), then blocks of two conv 3x3 + BatchNorm + ReLU and a
    max-pool, global average pooling and a linear classifier.
    """

    def __init__(self, size: int = 64, channels: Sequence[int] = (32, 64, 128, 256), dropout: float = 0.3,
                 n_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.size = size
        blocks = []
        ch = 3
        for c in channels:
            blocks.append(nn.Sequential(
                nn.Conv2d(ch, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            ch = c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(ch, n_classes))

    def _prep(self, rgb01: torch.Tensor) -> torch.Tensor:
        if rgb01.shape[-1] != self.size or rgb01.shape[-2] != self.size:
            rgb01 = F.interpolate(rgb01, size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)
        return rgb01 * 2.0 - 1.0

    def features(self, rgb01: torch.Tensor) -> list[torch.Tensor]:
        """Activations of every block, for a perceptual loss: list of (N,C_i,H_i,W_i)."""
        x = self._prep(rgb01)
        out = []
        for b in self.blocks:
            x = b(x)
            out.append(x)
        return out

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) in [0,1] -> (N,n_classes) logits."""
        return self.head(self.features(rgb01)[-1])


# VGG16's convolutional trunk up to relu4_3, with torchvision's module indices so that the
# ImageNet state_dict (`features.<i>.weight`) loads as is.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3
VGG16_FILE = "vgg16-397923af.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Vgg16Features(nn.Module):
    """VGG16 trunk to relu4_3: RGB (N,3,H,W) in [0,1] -> activations at relu1_2/2_2/3_3/4_3."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                ch = int(v)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def load_imagenet(self, path: Path) -> None:
        """Load torchvision's ImageNet VGG16 state_dict file (classifier weights ignored)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise EmoganError(f"{path}: cannot read VGG16 weights ({e})") from None
        n = len(self.features)
        trunk = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < n}
        try:
            self.load_state_dict(trunk, strict=True)
        except RuntimeError as e:
            raise EmoganError(f"{path}: not a torchvision VGG16 state_dict ({e})") from None

    def forward(self, rgb01: torch.Tensor) -> list[torch.Tensor]:
        """(N,3,H,W) in [0,1] -> list of 4 activations."""
        x = (rgb01 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG16_TAPS:
                out.append(x)
        return out


# The networks a config can name (`nets.<role>.name`, `train_fer.net.name`, `evaluate.flowcnn.net.name`):
# an explicit table, so the loop and the bundles build nets without naming a class.
NETS: dict[str, type[nn.Module]] = {
    "gf": FlowGenerator, "dp": PatchDiscriminator, "de": FlowCNN, "gw": ImageGenerator, "fer_cnn": ImageFER,
    "gw_warp": WarpRefineGenerator,   # G_W that warps the neutral face, then refines it (models/gw_warp.py)
}


def names() -> tuple[str, ...]:
    """The buildable network names."""
    return tuple(sorted(NETS))


def build(name: str, **cfg: Any) -> nn.Module:
    """Build network `name` from keyword config; unknown names or keys are clear errors."""
    if name not in NETS:
        raise EmoganError(f"unknown network {name!r}; known: {', '.join(names())}")
    cls = NETS[name]
    accepted = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise EmoganError(f"network {name!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(accepted)}")
    return cls(**cfg)


def build_from(spec: dict[str, Any]) -> nn.Module:
    """Build from a config mapping holding the network's `name` plus its options."""
    spec = dict(spec)
    try:
        name = spec.pop("name")
    except KeyError:
        raise EmoganError(f"network config {spec} lacks a 'name'") from None
    return build(name, **spec)


def build_nets(specs: dict[str, dict[str, Any]]) -> dict[str, nn.Module]:
    """One net per role ({"gf": spec, ...}, e.g. a config's `nets`), built by name."""
    return {role: build_from(spec) for role, spec in specs.items()}


# What a G_W spec takes from the training stores when it leaves them out (gw_warp's constructor).
GW_STORE_KEYS: tuple[str, ...] = ("representation", "clip", "source_size")


def complete_gw_spec(spec: Mapping[str, Any], infos: Sequence[Any]) -> dict[str, Any]:
    """A G_W build spec with the stores' representation, clip and source crop side filled in where the net takes
    them and the spec leaves them out (so that config.json, checkpoints and bundles rebuild the same net).
    `infos` are the training stores' `training.data.StoreInfo`; they must agree on each value filled in."""
    out = dict(spec)
    if out.get("name") not in NETS:
        return out   # build_nets names the unknown network
    accepted = inspect.signature(NETS[out["name"]]).parameters
    for key in GW_STORE_KEYS:
        if key not in accepted or key in out:
            continue
        values = []
        for info in infos:
            v = info.attrs.get(key)
            if v is None or v == "":
                raise EmoganError(f"{info.path}: no {key} attr; G_W {out['name']!r} needs it to warp (source_size: "
                                  "the crop side its flow vectors are measured in). Rebuild it with `emogan normalize`")
            values.append(int(v) if key == "source_size" else float(v) if key == "clip" else str(v))
        if len(set(values)) > 1:
            raise EmoganError(f"{infos[1].path}: {key} {values[1]!r} differs from {infos[0].path}'s {values[0]!r}; "
                              f"G_W {out['name']!r} warps every store's flows with one {key}")
        out[key] = values[0]
    return out


def count_parameters(net: nn.Module) -> int:
    """Number of parameters (trainable or not) of a network."""
    return sum(p.numel() for p in net.parameters())
