"""The trainer's configs, read from params.yaml (`train:` with its `paper`/`small` sub-configs, `train_fer:`).

The dataclass defaults are the paper's values (section IV-C); params.yaml states every one of
them for both configs. A run's resolved config is a plain JSON-able dict written to config.json.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pipeline.errors import EmoganError
from pipeline.params import ParamsError, as_dict, load_params, path_param, section, subsection

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("gf", "dp", "de", "gw")  # G_F, D_P, D_E, G_W: what the GAN step builds
EFER_KINDS: tuple[str, ...] = ("own", "fer2013", "file")
CONFIGS: tuple[str, ...] = ("paper", "small", "medium")   # the named sub-configs of params.yaml `train:`


def _paper_nets() -> dict[str, dict[str, Any]]:
    return {
        "gf": {"name": "gf", "ngf": 64, "max_ch": 1024, "n_down": 4, "n_res_enc": 2, "n_res_dec": 5},
        "dp": {"name": "dp", "in_ch": 4, "ndf": 64, "n_layers": 3, "max_ch": 512},
        "de": {"name": "de", "channels": [32, 64, 128], "pool": 16, "hidden": 256, "dropout": 0.5},
        "gw": {"name": "gw", "ngf": 64, "max_ch": 512, "n_down": 3, "n_res_enc": 3, "n_res_dec": 3},
    }


def _paper_optim() -> dict[str, dict[str, Any]]:
    return {
        "gf": {"kind": "adam", "lr": 1e-5, "betas": [0.5, 0.999]},
        "dp": {"kind": "adam", "lr": 1e-4, "betas": [0.5, 0.999]},
        "de": {"kind": "sgd", "lr": 1e-4, "momentum": 0.9},
        "gw": {"kind": "adam", "lr": 1e-5, "betas": [0.5, 0.999]},
    }


@dataclass
class TrainConfig:
    """One training config (`train.paper` or `train.small`)."""

    seed: int = 0
    epochs: int = 15
    batch_size: int = 4
    e_c: int = 5                                   # epoch from which L_GW enters L_GF
    lambdas: tuple[float, ...] = (1.0, 7.0, 3.0, 1.0)   # L_GAN, L_epe, L_char, L_GW in L_GF
    gan_weights: tuple[float, ...] = (1.0, 1.0)         # D_P and D_E terms inside L_GAN (ablation w/o L_DE: D_E 0)
    alphas: tuple[float, ...] = (2.0, 7.0, 1.0)         # L_1, L_perc, L_eFER in L_GW
    char_eps: float = 1e-3
    flow_loss_space: str = "cartesian"             # L_epe/L_char on (u, v)/clip, or on the store's `representation`
    flow_loss_weighting: str = "none"              # none | step: L_epe/L_char rows weighted so every pair step counts alike
    flow_loss_weight_cap: float | None = None      # largest step weight (null: none)
    image_steps: tuple[int, ...] | None = (3, 5)   # rows with lo < step <= hi feed the image losses
    gw_flow: str = "generated"                     # G_W's own update warps G_F's output, or `target`
    dp_conditional: bool = True                    # D_P sees (input flow, frontal flow)
    de_warmup_steps: int = 0                       # D_E alone on real frontal flows before the GAN steps (paper: 0)
    hflip: bool = False                            # mirror half of each batch (flows u-negated, faces) (paper: off)
    size: int | None = None                        # model side; null: the store's (128). Flows resized as (u, v)
    nets: dict[str, Any] = field(default_factory=_paper_nets)
    optim: dict[str, Any] = field(default_factory=_paper_optim)
    lr_gamma: float = 0.9                          # every learning rate x lr_gamma after each epoch
    perceptual: str = "auto"                       # vgg16 | efer | auto (vgg16 when its weights are cached)
    efer: dict[str, Any] = field(default_factory=lambda: {"name": "own"})
    amp: str = "auto"                              # bf16 autocast: auto (CUDA only) | on | off
    fused_optim: bool = True                       # fused Adam (7x faster than the default on CPU)
    workers: int = 2
    buffer_chunks: int = 4
    steps_per_epoch: int | None = None
    eval_batch_size: int = 16
    eval_rows: int | None = None                   # held-out rows evaluated between epochs (null: all); last: all
    log_every: int = 50
    keep_checkpoints: int = 3


@dataclass
class TrainSection:
    """params.yaml `train:`: the defaults of `emogan train` and its named configs."""

    config: str = "small"
    fold: int = 0
    folds_k: int = 10
    paper: dict[str, Any] = field(default_factory=dict)
    small: dict[str, Any] = field(default_factory=dict)
    medium: dict[str, Any] = field(default_factory=dict)   # a few CPU hours, or minutes on a GPU (issue #12)
    # Table IV: `emogan train --ablation NAME` zeroes these terms of L_GF in the chosen config.
    ablations: dict[str, list[str]] = field(default_factory=lambda: {
        "full": [], "no_rec": ["epe", "char"], "no_de": ["gan_de"], "no_gw": ["gw"]})


# Terms an ablation can remove: which weight of the config it zeroes.
ABLATION_TERMS: dict[str, tuple[str, int]] = {
    "gan_dp": ("gan_weights", 0), "gan_de": ("gan_weights", 1),
    "epe": ("lambdas", 1), "char": ("lambdas", 2), "gw": ("lambdas", 3),
}


def apply_ablation(cfg: "TrainConfig", sec: "TrainSection", name: str | None) -> None:
    """Zero the L_GF terms that ablation `name` (params `train.ablations`) removes; None or `full` keeps all."""
    if name is None:
        return
    if name not in sec.ablations:
        raise ParamsError(f"unknown ablation {name!r}; params.yaml `train.ablations` has {', '.join(sec.ablations)}")
    for term in sec.ablations[name]:
        if term not in ABLATION_TERMS:
            raise ParamsError(f"train.ablations.{name}: unknown term {term!r}; known: {', '.join(ABLATION_TERMS)}")
        key, i = ABLATION_TERMS[term]
        w = list(getattr(cfg, key))
        w[i] = 0.0
        setattr(cfg, key, tuple(w))


@dataclass
class TrainFerConfig:
    """params.yaml `train_fer:`: the project's own image e_FER."""

    seed: int = 0
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_gamma: float = 0.8
    net: dict[str, Any] = field(default_factory=lambda: {"name": "fer_cnn", "size": 64,
                                                         "channels": [16, 32, 64, 128], "dropout": 0.3})
    strategies: tuple[str, ...] = ("neutral_apex",)
    add_neutral_frames: bool = True  # the `neutral` face of those rows, labeled neutral
    hflip: bool = True
    workers: int = 0
    buffer_chunks: int = 4
    steps_per_epoch: int | None = None


def train_config(params: dict[str, Any], name: str, **overrides: Any) -> TrainConfig:
    """The named training config (`paper`, `small`) from params.yaml, CLI overrides applied, validated."""
    section(params, "train", TrainSection)  # refuses unknown keys under `train:`
    if name not in CONFIGS:
        raise ParamsError(f"unknown config {name!r}; params.yaml `train:` has {', '.join(CONFIGS)}")
    cfg = subsection(params, f"train.{name}", TrainConfig, **overrides)
    validate(cfg, where=f"train.{name}")
    return cfg


def validate(cfg: TrainConfig, where: str) -> None:
    """Refuse a config that cannot train, naming the key."""
    def bad(msg: str) -> None:
        raise ParamsError(f"params {where}: {msg}")
    if set(cfg.nets) != set(ROLES):
        bad(f"nets must be exactly {', '.join(ROLES)}, got {', '.join(cfg.nets)}")
    if set(cfg.optim) != set(ROLES):
        bad(f"optim must be exactly {', '.join(ROLES)}, got {', '.join(cfg.optim)}")
    for role, o in cfg.optim.items():
        if o.get("kind") not in ("adam", "sgd"):
            bad(f"optim.{role}.kind must be adam or sgd")
    if len(cfg.lambdas) != 4 or len(cfg.alphas) != 3:
        bad("lambdas needs 4 numbers (GAN, epe, char, GW), alphas 3 (L1, perc, eFER)")
    if len(cfg.gan_weights) != 2:
        bad("gan_weights needs 2 numbers (D_P term, D_E term of L_GAN)")
    if cfg.image_steps is not None and len(cfg.image_steps) != 2:
        bad("image_steps is [lo, hi] (lo < step <= hi) or null")
    if cfg.flow_loss_space not in ("cartesian", "representation"):
        bad("flow_loss_space is cartesian or representation")
    if cfg.flow_loss_weighting not in ("none", "step"):
        bad("flow_loss_weighting is none or step")
    if cfg.nets["gf"].get("output", "direct") not in ("direct", "residual"):
        bad("nets.gf.output is direct or residual")
    if cfg.gw_flow not in ("generated", "target"):
        bad("gw_flow is generated or target")
    if cfg.amp not in ("auto", "on", "off"):
        bad("amp is auto, on or off")
    if cfg.perceptual not in ("auto", "vgg16", "efer"):
        bad("perceptual is auto, vgg16 or efer")
    if cfg.efer.get("name") not in EFER_KINDS:
        bad(f"efer.name is one of {', '.join(EFER_KINDS)}")
    want_in = 4 if cfg.dp_conditional else 2
    if int(cfg.nets["dp"].get("in_ch", 4)) != want_in:
        bad(f"nets.dp.in_ch must be {want_in} when dp_conditional is {cfg.dp_conditional}")
    if cfg.size is not None and cfg.size < 8:
        bad("size must be null (the store's) or at least 8")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        bad("epochs and batch_size must be >= 1")


def fer_config(params: dict[str, Any], **overrides: Any) -> TrainFerConfig:
    """params.yaml `train_fer:` with CLI overrides."""
    return section(params, "train_fer", TrainFerConfig, **overrides)


def default_folds_file(params: dict[str, Any], store: str | Path) -> Path | None:
    """`<paths.manifests>/<dataset>_folds.csv` for store `<dataset>.zarr` when it exists, else None (the rule)."""
    stem = Path(str(store).rstrip("/")).name
    stem = stem[:-5] if stem.endswith(".zarr") else stem
    p = path_param(params, "manifests", "data_manifests") / f"{stem}_folds.csv"
    if p.is_file():
        return p
    log.warning("no folds file %s: folds of %s follow the rule (subjects sorted, dealt round-robin)", p, store)
    return None


def resolve_folds(params: dict[str, Any], stores: Sequence[str | Path], folds: Sequence[Path] | None) -> list[str | None]:
    """One folds file per store: as given (same count as stores), else the default beside the manifests."""
    if folds:
        if len(folds) != len(stores):
            raise EmoganError(f"--folds given {len(folds)} time(s) for {len(stores)} store(s): give one per store")
        return [str(f) for f in folds]
    out = [default_folds_file(params, s) for s in stores]
    return [str(f) if f is not None else None for f in out]


def resolve_run(params_path: Path | str | None, *, stores: Sequence[Path], out: Path, config: str | None = None,
                fold: int | None = None, folds: Sequence[Path] | None = None, live_dir: Path | None = None,
                device: str | None = None, efer: str | None = None, efer_path: Path | None = None,
                efer_classes: str | None = None, ablation: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The whole resolved config of an `emogan train` run, as written to config.json."""
    params = load_params(params_path)
    sec = section(params, "train", TrainSection)
    name = config or sec.config
    if not stores:
        raise EmoganError("give at least one training store")
    cfg = train_config(params, name, **overrides)
    # e_FER choice: CLI flags override the config's `efer` mapping.
    e = dict(cfg.efer)
    if efer is not None:
        e = {"name": efer}
    if efer_path is not None:
        e["path"] = str(efer_path)
    if efer_classes is not None:
        e["classes"] = [c.strip() for c in efer_classes.split(",") if c.strip()]
    cfg.efer = e
    apply_ablation(cfg, sec, ablation)
    validate(cfg, where=f"train.{name}")
    k = sec.folds_k
    return {
        "config_name": name,
        "ablation": ablation or "full",
        "stores": [str(s) for s in stores],
        "fold": sec.fold if fold is None else int(fold),
        "folds_files": resolve_folds(params, stores, folds),
        "folds_k": k,
        "out": str(out),
        "live_dir": str(live_dir if live_dir is not None else Path(out) / "dvclive"),
        "device": device,
        "params_file": params.get("__file__"),
        "train": as_dict(cfg),
    }
