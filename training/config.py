"""The trainer's configs, typed, read from params.yaml (`train:` with its `paper`/`small` sub-configs, `train_fer:`).

params.yaml states every value (the dataclasses have none); `paper` is the paper's section IV-C.
`resolve_run` turns params.yaml plus the command's flags into a RunConfig, written as config.json
(as_dict of it plus the runtime record) and handed to the loop down to the step; `RunRecord` reads
config.json back, old run folders included, for evaluation, export and inference.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from pipeline.errors import EmoganError
from pipeline.params import ParamsError, as_dict, build, load_params, path_param, section

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("gf", "dp", "de", "gw")  # G_F, D_P, D_E, G_W: what the GAN step builds


@dataclass
class AdamSpec:
    """params.yaml `train.<config>.optim.<role>` of kind adam."""

    kind: str
    lr: float
    betas: tuple[float, float]


@dataclass
class SgdSpec:
    """params.yaml `train.<config>.optim.<role>` of kind sgd."""

    kind: str
    lr: float
    momentum: float


OptimSpec = Union[AdamSpec, SgdSpec]
OPTIMIZERS: dict[str, type] = {"adam": AdamSpec, "sgd": SgdSpec}


@dataclass
class Roles:
    """One entry per trained net (gf, dp, de, gw): a net spec (`name` + options) or an optimizer spec."""

    gf: Any
    dp: Any
    de: Any
    gw: Any

    def items(self) -> list[tuple[str, Any]]:
        """(role, entry) in ROLES order."""
        return [(r, getattr(self, r)) for r in ROLES]


@dataclass
class EferSpec:
    """params.yaml `train.<config>.efer`: which frozen image classifier judges G_W's faces.

    own: `emogan train-fer`'s output folder (`path`, usually given by --efer-path); fer2013: the pretrained
    FER2013 weights (`path` filled from params.yaml paths.weights; `frame`, the central fraction of each face crop
    it reads, filled from evaluate.fer2013_margin and crop.margin); file: a TorchScript/torch.export/ONNX
    model (`path`) with its class order (`classes`), input side (`size`) and normalization (`mean`, `std`).
    """

    name: str
    path: Optional[str]
    classes: Optional[list[str]]
    size: Optional[int]
    mean: Optional[list[float]]
    std: Optional[list[float]]
    frame: Optional[float]


EFER_KINDS: tuple[str, ...] = ("own", "fer2013", "file")
EFER_OPTIONAL = ("path", "classes", "size", "mean", "std", "frame")  # not every kind needs them: absent means null
PERCEPTUAL_KINDS: tuple[str, ...] = ("auto", "vgg16", "fer2013", "efer")   # models/efer.py perceptual_backbone
# Which flow G_W's own update warps: the ground truth until e_c then G_F's output, always G_F's, always the truth.
GW_FLOWS: tuple[str, ...] = ("target_then_generated", "generated", "target")
# The gradient the frozen judges of G_W's faces (L_perc, L_eFER) send back: as computed, or its grey part only.
JUDGE_GRADS: tuple[str, ...] = ("rgb", "grey")


@dataclass
class TrainConfig:
    """params.yaml `train.paper` / `train.small`: one training config."""

    seed: int
    epochs: int
    batch_size: int
    e_c: int                          # epoch from which L_GW enters L_GF
    lambdas: tuple[float, ...]        # L_GAN, L_epe, L_char, L_GW in L_GF
    gan_weights: tuple[float, ...]    # D_P and D_E terms inside L_GAN (ablation w/o L_DE: D_E 0)
    alphas: tuple[float, ...]         # L_1, L_perc, L_eFER in L_GW
    judge_grad: str                   # rgb | grey: L_perc's and L_eFER's gradient at the faces, or its grey part only
    char_eps: float
    flow_loss_space: str              # L_epe/L_char on (u, v)/clip, or on the store's `representation`
    flow_loss_weighting: str          # none | step: L_epe/L_char rows weighted so that every pair step counts alike
    flow_loss_neutral_weight: float   # L_epe/L_char weight of rows labelled neutral (their frontal truth barely moves);
                                      # 1: as every other row (the paper)
    chain_weight: float               # L_chain in L_GF: G_F's step-1 outputs of a sequence, chained, against the
                                      # neutral->apex truth (training/step.py); 0: off
    chain_sequences: int              # training sequences per G_F update that L_chain scores
    image_steps: Optional[tuple[int, ...]]  # rows with lo < step <= hi feed the image losses
    gw_flow: str                      # G_W's own update: the ground truth until e_c, then G_F's output (the authors'
                                      # code); `generated` | `target`: always that one
    dp_conditional: bool              # D_P sees (input flow, frontal flow)
    de_warmup_steps: int              # D_E alone on real frontal flows before the GAN steps (paper: 0)
    hflip: bool                       # mirror half of each batch (flows u-negated, faces) (paper: off)
    size: Optional[int]               # model side; null: the store's (128). Flows resized as (u, v)
    nets: Roles                       # net specs by role: {name, options} (models.networks.NETS)
    optim: Roles                      # AdamSpec | SgdSpec by role
    lr_gamma: float                   # every learning rate x lr_gamma after each epoch
    gw_epochs: Optional[int]          # G_W's epochs (null: `epochs`); beyond `epochs` G_W trains alone, G_F, D_P,
                                      # D_E frozen, on the same batches (training/step.py `gw_step`)
    gw_lr_gamma: Optional[float]      # G_W's decay per epoch (null: lr_gamma)
    perceptual: str                   # vgg16 | fer2013 | efer | auto (vgg16 when cached, else fer2013)
    efer: EferSpec
    amp: str                          # bf16 autocast: auto (CUDA only) | on | off
    fused_optim: bool                 # fused Adam (7x faster than the default on CPU)
    workers: int
    buffer_chunks: int
    steps_per_epoch: Optional[int]
    eval_batch_size: int
    eval_rows: Optional[int]          # held-out rows evaluated between epochs (null: all); last: all
    log_every: int
    keep_checkpoints: int

    @property
    def total_epochs(self) -> int:
        """Epochs the run lasts: `epochs` of every net, then G_W alone up to `gw_epochs`."""
        return max(self.epochs, self.gw_epochs or 0)

    def gw_alone(self, epoch: int) -> bool:
        """Whether 0-based `epoch` trains G_W alone (past `epochs`)."""
        return epoch >= self.epochs

    @property
    def gw_gamma(self) -> float:
        return self.lr_gamma if self.gw_lr_gamma is None else self.gw_lr_gamma


@dataclass
class TrainSection:
    """params.yaml `train:`: the defaults of `emogan train` and its named configs."""

    config: str
    fold: int
    folds_k: int
    paper: dict[str, Any]             # -> TrainConfig
    small: dict[str, Any]             # -> TrainConfig
    medium: dict[str, Any]            # -> TrainConfig
    ablations: dict[str, list[str]]   # Table IV: `emogan train --ablation NAME` zeroes these terms of L_GF


@dataclass
class TrainFerConfig:
    """params.yaml `train_fer:`: the project's own image e_FER."""

    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_gamma: float
    net: dict[str, Any]
    strategies: tuple[str, ...]
    add_neutral_frames: bool          # the `neutral` face of those rows, labeled neutral
    input: str                        # image: the face; change: the face's change from the row's neutral face
    class_balance: bool               # cross-entropy weighted by inverse class frequency of the training faces
    jitter: float                     # random scale 1 +- jitter and shift +- jitter of the side per face; 0: none
    hflip: bool
    workers: int
    buffer_chunks: int
    steps_per_epoch: Optional[int]


@dataclass
class FerRunConfig:
    """One `emogan train-fer` run, resolved (fer.json holds it)."""

    stores: list[str]
    fold: int
    folds_files: list[Optional[str]]
    folds_k: int
    out: str
    device: Optional[str]             # cpu, cuda, cuda:1; null: cuda when present
    params_file: str
    train_fer: TrainFerConfig


@dataclass
class RunConfig:
    """One `emogan train` run, resolved (config.json holds it plus the runtime record)."""

    config_name: str
    ablation: str
    stores: list[str]
    fold: int
    folds_files: list[Optional[str]]
    folds_k: int
    out: str
    live_dir: str
    device: Optional[str]
    params_file: str
    train: TrainConfig
    resume: bool
    fer2013_weights: Optional[str]    # the FER2013 mini-Xception's file (paths.weights): perceptual fer2013 | auto
    fer2013_frame: float = 1.0        # the central fraction of each face crop FER2013 reads (fer2013_frame(params))
    trust_pickle: bool = False        # the user's --trust-pickle for e_FER `file` (recorded, never read back)


# Terms an ablation can remove: which weight of the config it zeroes.
ABLATION_TERMS: dict[str, tuple[str, int]] = {
    "gan_dp": ("gan_weights", 0), "gan_de": ("gan_weights", 1),
    "epe": ("lambdas", 1), "char": ("lambdas", 2), "gw": ("lambdas", 3),
}


def parse_optim(raw: Mapping[str, Any], where: str) -> OptimSpec:
    """An optimizer spec by its `kind` (adam: lr, betas; sgd: lr, momentum)."""
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if kind not in OPTIMIZERS:
        raise ParamsError(f"{where}.kind must be one of {', '.join(OPTIMIZERS)}, got {kind!r}")
    return build(OPTIMIZERS[kind], raw, where)


def parse_efer(raw: Mapping[str, Any], where: str) -> EferSpec:
    """An e_FER spec; the keys its kind does not need may be left out (null)."""
    if not isinstance(raw, Mapping) or raw.get("name") not in EFER_KINDS:
        raise ParamsError(f"{where}.name is one of {', '.join(EFER_KINDS)}")
    return build(EferSpec, {**{k: None for k in EFER_OPTIONAL}, **raw}, where)


def parse_roles(raw: Any, where: str, entry: Any = None) -> Roles:
    """The four role entries, each parsed by `entry(raw, where)` when given."""
    if not isinstance(raw, Mapping) or set(raw) != set(ROLES):
        got = ", ".join(raw) if isinstance(raw, Mapping) else repr(raw)
        raise ParamsError(f"{where} must have exactly {', '.join(ROLES)}, got {got}")
    return Roles(**{r: entry(raw[r], f"{where}.{r}") if entry else dict(raw[r]) for r in ROLES})


def parse_train(raw: Mapping[str, Any], where: str) -> TrainConfig:
    """A TrainConfig from a mapping (params.yaml's, or config.json's `train`), nested specs typed."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{where}: expected a mapping")
    values = dict(raw)
    if "nets" in values:
        values["nets"] = parse_roles(values["nets"], f"{where}.nets")
    if "optim" in values:
        values["optim"] = parse_roles(values["optim"], f"{where}.optim", parse_optim)
    if "efer" in values:
        values["efer"] = parse_efer(values["efer"], f"{where}.efer")
    return build(TrainConfig, values, where)


CONFIG_NAMES = ("small", "medium", "paper")   # params.yaml train.<name>


def train_config(params: dict[str, Any], name: str, **overrides: Any) -> TrainConfig:
    """The named training config (`small`, `medium`, `paper`) from params.yaml, CLI overrides applied, validated."""
    sec = section(params, "train", TrainSection)  # refuses unknown keys under `train:`
    if name not in CONFIG_NAMES:
        raise ParamsError(f"unknown config {name!r}; params.yaml `train:` has {', '.join(CONFIG_NAMES)}")
    raw = {**getattr(sec, name), **{k: v for k, v in overrides.items() if v is not None}}
    cfg = parse_train(raw, f"{params.get('__file__', 'params')}: section 'train.{name}'")
    validate(cfg, where=f"train.{name}")
    return cfg


def validate(cfg: TrainConfig, where: str) -> None:
    """Refuse a config that cannot train, naming the key."""
    def bad(msg: str) -> None:
        raise ParamsError(f"params {where}: {msg}")
    if len(cfg.lambdas) != 4 or len(cfg.alphas) != 3:
        bad("lambdas needs 4 numbers (GAN, epe, char, GW), alphas 3 (L1, perc, eFER)")
    if len(cfg.gan_weights) != 2:
        bad("gan_weights needs 2 numbers (D_P term, D_E term of L_GAN)")
    if cfg.image_steps is not None and len(cfg.image_steps) != 2:
        bad("image_steps is [lo, hi] (lo < step <= hi) or null")
    if cfg.flow_loss_weighting not in ("none", "step"):
        bad("flow_loss_weighting is none or step")
    if not cfg.flow_loss_neutral_weight > 0:
        bad(f"flow_loss_neutral_weight must be > 0 (1: neutral rows count as the others), not {cfg.flow_loss_neutral_weight}")
    if cfg.flow_loss_space not in ("cartesian", "representation"):
        bad("flow_loss_space is cartesian or representation")
    if cfg.gw_flow not in GW_FLOWS:
        bad(f"gw_flow is one of {', '.join(GW_FLOWS)}")
    if cfg.judge_grad not in JUDGE_GRADS:
        bad(f"judge_grad is one of {', '.join(JUDGE_GRADS)}")
    if cfg.amp not in ("auto", "on", "off"):
        bad("amp is auto, on or off")
    if cfg.perceptual not in PERCEPTUAL_KINDS:
        bad(f"perceptual is one of {', '.join(PERCEPTUAL_KINDS)}")
    for role, spec in cfg.nets.items():
        if not isinstance(spec, dict) or not spec.get("name"):
            bad(f"nets.{role} needs a `name` (a network of training/models/networks.py)")
    want_in = 4 if cfg.dp_conditional else 2
    if cfg.nets.dp.get("in_ch") != want_in:  # stated, not left to the net's default: it must match the switch
        bad(f"nets.dp.in_ch must be {want_in} when dp_conditional is {cfg.dp_conditional}")
    if cfg.size is not None and cfg.size < 8:
        bad("size must be null (the store's) or at least 8")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        bad("epochs and batch_size must be >= 1")
    if cfg.gw_epochs is not None and cfg.gw_epochs < cfg.epochs:
        bad(f"gw_epochs ({cfg.gw_epochs}) must be null or >= epochs ({cfg.epochs}): G_W trains alone only after "
            "the joint epochs")
    if not 0 < cfg.lr_gamma <= 1 or (cfg.gw_lr_gamma is not None and not 0 < cfg.gw_lr_gamma <= 1):
        bad(f"lr_gamma and gw_lr_gamma must be in (0, 1], not {cfg.lr_gamma} and {cfg.gw_lr_gamma}")
    if cfg.chain_weight < 0 or cfg.chain_sequences < 1:
        bad("chain_weight must be >= 0 (0: no L_chain) and chain_sequences >= 1")
    if cfg.nets.gf.get("face", "none") != "none" and cfg.chain_weight > 0:
        bad(f"nets.gf.face {cfg.nets.gf['face']} and chain_weight > 0 do not go together (L_chain's sequences "
            "hold flows only): set one of them back")


def apply_ablation(cfg: TrainConfig, sec: TrainSection, name: str | None) -> None:
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


def fer_config(params: dict[str, Any], **overrides: Any) -> TrainFerConfig:
    """params.yaml `train_fer:` with CLI overrides."""
    return section(params, "train_fer", TrainFerConfig, **overrides)


def resolve_fer_run(params_path: Path | str | None, *, stores: Sequence[Path], out: Path, fold: int | None = None,
                    folds: Sequence[Path] | None = None, device: str | None = None,
                    **overrides: Any) -> FerRunConfig:
    """The resolved config of an `emogan train-fer` run (fer.json holds it)."""
    from pipeline.schema import STRATEGY_NAMES

    params = load_params(params_path)
    sec = section(params, "train", TrainSection)
    if not stores:
        raise EmoganError("give at least one store")
    cfg = fer_config(params, **overrides)
    bad = [s for s in cfg.strategies if s not in STRATEGY_NAMES]
    if bad:
        raise EmoganError(f"train_fer.strategies: unknown {bad}; known {list(STRATEGY_NAMES)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise EmoganError("train_fer: epochs and batch_size must be >= 1")
    return FerRunConfig(stores=[str(s) for s in stores], fold=sec.fold if fold is None else int(fold),
                        folds_files=resolve_folds(params, stores, folds), folds_k=sec.folds_k, out=str(out),
                        device=device, params_file=str(params["__file__"]), train_fer=cfg)


def default_folds_file(params: dict[str, Any], store: str | Path) -> Path | None:
    """`<paths.manifests>/<dataset>_folds.csv` for store `<dataset>.zarr` when it exists, else None (the rule)."""
    stem = Path(str(store).rstrip("/")).name
    stem = stem[:-5] if stem.endswith(".zarr") else stem
    p = path_param(params, "manifests") / f"{stem}_folds.csv"
    if p.is_file():
        return p
    log.warning("no folds file %s: folds of %s follow the rule (subjects sorted, dealt round-robin)", p, store)
    return None


def resolve_folds(params: dict[str, Any], stores: Sequence[str | Path], folds: Sequence[Path] | None) -> list[str | None]:
    """One folds file per store: as given (same count as stores), else the default beside the manifests."""
    if folds:
        if len(folds) != len(stores):
            raise EmoganError(f"--folds-file given {len(folds)} time(s) for {len(stores)} store(s): give one per store")
        return [str(f) for f in folds]
    out = [default_folds_file(params, s) for s in stores]
    return [str(f) if f is not None else None for f in out]


def folds_k(params: dict[str, Any]) -> int:
    """k of the fold rule (params.yaml `train.folds_k`), for stores without a folds file."""
    return int(section(params, "train", TrainSection).folds_k)


def fer2013_frame(params: dict[str, Any]) -> float:
    """The central fraction of the stores' face crops (framed with crop.margin) that the FER2013 net reads, as
    evaluation's judge reads it: the faces framed with evaluate.fer2013_margin, as FER2013 was trained."""
    from training.models.fer2013 import frame_for

    return frame_for(float(params["evaluate"]["fer2013_margin"]), float(params["crop"]["margin"]))


def resolve_run(params_path: Path | str | None, *, stores: Sequence[Path], out: Path, config: str | None = None,
                fold: int | None = None, folds: Sequence[Path] | None = None, live_dir: Path | None = None,
                device: str | None = None, efer: str | None = None, efer_path: Path | None = None,
                efer_classes: str | None = None, ablation: str | None = None, resume: bool = False,
                trust_pickle: bool = False, **overrides: Any) -> RunConfig:
    """The whole resolved config of an `emogan train` run (config.json holds it)."""
    params = load_params(params_path)
    sec = section(params, "train", TrainSection)
    name = config or sec.config
    if not stores:
        raise EmoganError("give at least one training store")
    cfg = train_config(params, name, **overrides)
    # e_FER choice: CLI flags override the config's `efer` mapping.
    e = as_dict(cfg.efer) if efer is None else {"name": efer}
    if efer_path is not None:
        e["path"] = str(efer_path)
    if efer_classes is not None:
        e["classes"] = [c.strip() for c in efer_classes.split(",") if c.strip()]
    from pipeline.weights import weights_path

    fer2013_weights = str(weights_path("fer2013", params))  # where `emogan weights fetch fer2013` put it
    frame = fer2013_frame(params)
    if e.get("name") == "fer2013":
        if not e.get("path"):
            e["path"] = fer2013_weights
        e["frame"] = frame   # it reads the faces framed as it was trained (as evaluation's judge does)
    cfg.efer = parse_efer(e, f"train.{name}.efer")
    apply_ablation(cfg, sec, ablation)
    validate(cfg, where=f"train.{name}")
    return RunConfig(
        config_name=name, ablation=ablation or "full", stores=[str(s) for s in stores],
        fold=sec.fold if fold is None else int(fold), folds_files=resolve_folds(params, stores, folds),
        folds_k=sec.folds_k, out=str(out), live_dir=str(live_dir if live_dir is not None else Path(out) / "dvclive"),
        device=device, params_file=str(params["__file__"]), train=cfg, resume=bool(resume),
        fer2013_weights=fer2013_weights, fer2013_frame=frame, trust_pickle=trust_pickle is True)


@dataclass
class RunRecord:
    """What evaluation, export and inference read back from a run's config.json (older run folders too)."""

    config: dict[str, Any]            # config.json as written
    config_name: Optional[str]
    ablation: str                     # `full` for runs made before ablations existed
    fold: int
    stores: list[str]
    folds_files: list[Optional[str]]
    folds_k: int
    nets: dict[str, dict[str, Any]]   # net specs by role
    efer: dict[str, Any]
    size: Optional[int]               # model side; null: the store's
    store_records: list[dict[str, Any]]   # runtime.stores: path, size, representation, clip, params

    @classmethod
    def from_json(cls, config: Mapping[str, Any], where: str) -> "RunRecord":
        """Parse config.json; a key a run of this code always writes but this one lacks is named."""
        try:
            t = config["train"]
            return cls(config=dict(config), config_name=config.get("config_name"),
                       ablation=config.get("ablation") or "full", fold=int(config["fold"]),
                       stores=list(config["stores"]), folds_files=list(config["folds_files"]),
                       folds_k=int(config["folds_k"]), nets={r: dict(t["nets"][r]) for r in ROLES},
                       efer=dict(t.get("efer") or {}), size=t.get("size"),
                       store_records=list(config["runtime"]["stores"]))
        except (KeyError, TypeError) as e:
            raise EmoganError(f"{where}: not a config.json of `emogan train` (missing {e})") from None

