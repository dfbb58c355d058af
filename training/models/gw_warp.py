"""G_W that cannot lose the person: the neutral face warped by the flow, then refined where warping cannot explain
the target (`gw_warp` in training/models/networks.py NETS; the paper's encoder-decoder `gw` stays buildable by name).

Store flows are FORWARD from the neutral frame (Farneback prev = frame t, next = frame t+dt): the pixel at x of
the neutral face moves to x + f(x). The expressive face is therefore out(y) = neutral(x) with x + f(x) = y; we
find x by the fixed-point iteration x <- y - f(x) from x = y (one iteration is the first-order x = y - f(y)),
then sample the neutral face there with `grid_sample` (a backward warp). Flow vectors are in pixels of the
source crop (`source_size`, default 512); at the model's side S they are scaled by S / source_size.

The refinement is a small U-Net on (warped face, neutral face, flow) whose decoder upsamples by resize-convolution
(x2 nearest or bilinear, then a 3x3 conv: no checkerboard, Odena et al. 2016). It predicts an occlusion mask m
and a correction: `residual` out = warped + m * r (teeth, mouth interior, creases added where the warp falls
short), `shading` one grey amount t in (-1, 1) that moves each pixel toward white (t > 0: out = warped + t (1 -
warped)) or toward black (t < 0: warped + t (warped + 1)): mouth interior, teeth, creases as light and shadow,
never a colour the warped face does not have (the colour is the person's, carried by the warp), `blend`
out = (1 - m) * warped + m * c (inpainting), `none` out = warped (the pure warp, an ablation).
Its heads start at zero, so an untrained G_W returns the warped face: the person is kept from the first step.

`checkerboard_ratio` measures what transposed convolutions leave: the share of an image's spectral energy on the
Nyquist rows/columns (period-2 patterns), relative to the same share in a reference face.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import EmoganError

UPSAMPLE_MODES = ("nearest", "bilinear", "transposed")   # transposed: the checkerboard regression, for tests only
REFINE_MODES = ("residual", "shading", "blend", "none")
REPRESENTATIONS = ("polar", "cartesian")


def decode_flow(flow_norm: torch.Tensor, representation: str, clip: float) -> torch.Tensor:
    """Store-normalized flow (N,2,H,W) -> Cartesian (u, v) in source pixels, float32: training.flowrep.decode's
    codec (the models import no other part of training; tests/training/models/test_gw_warp.py checks they agree)."""
    x = flow_norm.float()
    if representation == "polar":
        mag = (x[:, 0] + 1.0) * 0.5 * clip
        ang = (x[:, 1] + 1.0) * math.pi
        return torch.stack([mag * torch.cos(ang), mag * torch.sin(ang)], dim=1)
    return x * clip


# --- the warp -----------------------------------------------------------------------------------

def _pixel_grid(n: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(N,2,H,W) pixel coordinates (x, y) of pixel centres: 0 .. W-1, 0 .. H-1."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0).expand(n, -1, -1, -1)


def _sample(img: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """img (N,C,H,W) sampled bilinearly at pixel positions pos (N,2,H',W') (x, y); border pixels repeat outside."""
    h, w = img.shape[-2:]
    gx = (2.0 * pos[:, 0] + 1.0) / w - 1.0   # align_corners=False: pixel i's centre is at (2i+1)/W - 1
    gy = (2.0 * pos[:, 1] + 1.0) / h - 1.0
    return F.grid_sample(img, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=False)


def source_positions(disp_px: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """Where each output pixel comes from, (N,2,H,W) pixel coordinates, for a FORWARD displacement field disp_px
    (N,2,H,W) (x, y) in pixels of this grid: x with x + disp(x) = y, by `iters` fixed-point steps x <- y - disp(x)."""
    if iters < 1:
        raise ValueError(f"invert_iters must be >= 1 (1 = first order y - f(y)), got {iters}")
    n, _, h, w = disp_px.shape
    y = _pixel_grid(n, h, w, disp_px.device, disp_px.dtype)
    x = y - disp_px
    for _ in range(iters - 1):
        x = y - _sample(disp_px, x)
    return x


def warp_forward(img: torch.Tensor, disp_px: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """img (N,C,H,W) moved by the forward displacement disp_px (N,2,H,W), pixels of this grid: out(x + f(x)) = img(x)."""
    if disp_px.shape[-2:] != img.shape[-2:]:
        raise ValueError(f"flow {tuple(disp_px.shape)} and image {tuple(img.shape)} differ in size")
    return _sample(img, source_positions(disp_px, iters))


def flow_to_model_px(flow: torch.Tensor, representation: str, clip: float, source_size: int) -> torch.Tensor:
    """Store-normalized flow (N,2,S,S) -> displacement in pixels of this S x S grid (vectors were in source pixels)."""
    return decode_flow(flow, representation, clip) * (flow.shape[-1] / float(source_size))


# --- the checkerboard measure -------------------------------------------------------------------

def nyquist_share(img: torch.Tensor) -> torch.Tensor:
    """(N,) share of each image's spectral energy (mean removed, channels summed) on the Nyquist row and column."""
    x = img.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    p = torch.fft.fft2(x).abs().pow(2).sum(1)        # (N,H,W)
    h, w = p.shape[-2:]
    on = torch.zeros(h, w, dtype=torch.bool, device=p.device)
    on[h // 2, :] = True                             # period-2 patterns along y (even sides only have this bin)
    on[:, w // 2] = True
    return p[:, on].sum(1) / p.flatten(1).sum(1).clamp_min(1e-12)


def checkerboard_ratio(img: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean Nyquist share of `img` over that of `reference` (N,C,H,W): about 1 for a clean face, large for checkerboards."""
    return float(nyquist_share(img).mean() / nyquist_share(reference).mean().clamp_min(1e-12))


# --- the network --------------------------------------------------------------------------------

def _norm(ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch, affine=True, track_running_stats=False)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="reflect"), _norm(cout),
                         nn.ReLU(inplace=True))


class _Res(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(_conv(ch, ch), nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"), _norm(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Up(nn.Module):
    """x2 upsampling: resize-convolution (nearest | bilinear, then a 3x3 conv) or a transposed conv (regression)."""

    def __init__(self, cin: int, cout: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            # k3 s2: uneven kernel overlap, the classic source of checkerboards (kept to prove the test catches it).
            self.up = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.up = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")
        self.post = nn.Sequential(_norm(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode != "transposed":
            x = F.interpolate(x, scale_factor=2, mode=self.mode, **({} if self.mode == "nearest" else
                                                                     {"align_corners": False}))
        return self.post(self.up(x))


class WarpRefineGenerator(nn.Module):
    """G_W: frontal flow (N,2,S,S) (store representation) and neutral face (N,3,S,S) in [-1,1] -> face in [-1,1].

    The neutral face is warped by the flow (see the module doc), then a U-Net (`ngf` channels doubling to `max_ch`
    over `n_down` stride-2 levels, `n_res` residual blocks at the bottom) refines it. `representation`, `clip`
    and `source_size` are the stores' (the trainer fills them in); S must be divisible by 2^n_down.
    """

    def __init__(self, representation: str = "cartesian", clip: float = 10.0, source_size: int = 512,
                 ngf: int = 32, max_ch: int = 256, n_down: int = 3, n_res: int = 2, upsample: str = "nearest",
                 refine: str = "residual", invert_iters: int = 3, mask_bias: float = -2.0):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise EmoganError(f"gw_warp: upsample {upsample!r}; expected one of {', '.join(UPSAMPLE_MODES)}")
        if refine not in REFINE_MODES:
            raise EmoganError(f"gw_warp: refine {refine!r}; expected one of {', '.join(REFINE_MODES)}")
        if invert_iters < 1:
            raise EmoganError(f"gw_warp: invert_iters {invert_iters}; >= 1 (1 is the first-order warp y - f(y))")
        if representation not in REPRESENTATIONS:
            raise EmoganError(f"gw_warp: representation {representation!r}; expected one of {', '.join(REPRESENTATIONS)}")
        self.representation, self.clip, self.source_size = representation, float(clip), int(source_size)
        self.refine, self.invert_iters = refine, int(invert_iters)
        chans = [ngf]
        for _ in range(n_down):
            chans.append(min(chans[-1] * 2, max_ch))
        self.stem = _conv(3 + 3 + 2, ngf)           # warped face, neutral face, flow as (u, v)/clip
        self.down = nn.ModuleList(nn.Sequential(_conv(a, b, stride=2), _conv(b, b)) for a, b in zip(chans, chans[1:]))
        self.mid = nn.Sequential(*[_Res(chans[-1]) for _ in range(n_res)])
        self.up = nn.ModuleList(_Up(b, a, upsample) for a, b in zip(chans[:-1][::-1], chans[1:][::-1]))
        self.fuse = nn.ModuleList(_conv(2 * a, a) for a in chans[:-1][::-1])
        # mask logit and 3 correction channels (`shading`: 1 grey correction)
        self.head = nn.Conv2d(ngf, 2 if refine == "shading" else 4, 3, padding=1, padding_mode="reflect")
        with torch.no_grad():
            # Start as the pure warp: no correction, a mostly closed mask.
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.bias[0] = mask_bias

    def warp(self, flow: torch.Tensor, neutral: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(warped neutral face (N,3,S,S), flow as Cartesian (u, v)/clip (N,2,S,S))."""
        px_src = decode_flow(flow, self.representation, self.clip)
        disp = px_src * (flow.shape[-1] / float(self.source_size))
        return warp_forward(neutral, disp, self.invert_iters), px_src / self.clip

    def parts(self, flow: torch.Tensor, neutral: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate: warped, mask (N,1,S,S) in [0,1], correction (N,3,S,S), out (N,3,S,S)."""
        warped, uv = self.warp(flow.float(), neutral)
        if self.refine == "none":
            return {"warped": warped, "mask": torch.zeros_like(warped[:, :1]), "correction": torch.zeros_like(warped),
                    "out": warped}
        x = self.stem(torch.cat([warped, neutral, uv.to(warped.dtype)], 1))
        skips = []
        for d in self.down:
            skips.append(x)
            x = d(x)
        x = self.mid(x)
        for up, fuse, s in zip(self.up, self.fuse, reversed(skips)):
            x = fuse(torch.cat([up(x), s], 1))
        h = self.head(x)
        m = torch.sigmoid(h[:, :1])
        if self.refine == "residual":
            corr = 2.0 * torch.tanh(h[:, 1:])      # a correction can span the whole [-1, 1] range
            out = (warped + m * corr).clamp(-1.0, 1.0)
        elif self.refine == "shading":
            t = m * torch.tanh(h[:, 1:])           # (N,1,S,S): toward white where > 0, toward black where < 0
            corr = torch.where(t >= 0, t * (1.0 - warped), t * (warped + 1.0))   # stays inside [-1, 1]
            out = warped + corr
        else:
            corr = torch.tanh(h[:, 1:])            # inpainted content
            out = (1.0 - m) * warped + m * corr
        return {"warped": warped, "mask": m, "correction": corr, "out": out}

    def forward(self, flow: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
        """flow (N,2,S,S), neutral (N,3,S,S) in [-1,1] -> (N,3,S,S) in [-1,1]."""
        return self.parts(flow, neutral)["out"]

