"""Stage `stats`: distribution of the flow magnitudes (source-crop pixels) and the clip value it suggests.

Magnitudes are those of the stored flows (area-averaged to flow.size, in pixels of the source
crop), over every pixel of every pair, both cameras. Quantiles come from a histogram of bin width
`resolution_px` built in one streaming pass over the store (it never loads the whole dataset), so
they are exact to within one bin. The suggested clip is the Q3 of both cameras together (the
paper picks its clip, 10.0, from the Q3 of its dataset's distribution), or, with
`stats.suggest_from: moving`, the Q3 of the pixels that move (|flow| >= `moving_px`): the
background of a crop does not move, and on data where it fills much of the crop the all-pixel Q3
is far below the motion of the face.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import typer

from pipeline import store as st
from pipeline.params import PARAMS_OPTION, ParamsError, load_params, path_param, section

log = logging.getLogger(__name__)

QUANTILES = {"q1": 0.25, "median": 0.5, "q3": 0.75, "p99": 0.99}
CAMERAS = {"input": "flow_input_px", "target": "flow_target_px"}


@dataclass
class StatsParams:
    """params.yaml `stats`: quantile precision and the plot's histogram."""

    resolution_px: float  # bin width of the quantile histogram: the quantiles' precision
    max_px: float  # magnitudes above are counted in the last bin (a 512 crop moves < 725 px)
    plot_bins: int
    plot_quantile: float  # the plot spans [0, this quantile]
    moving_px: float  # the "moving" distribution: pixels with |flow| >= this
    suggest_from: str  # suggested clip = Q3 of "all" pixels (the paper) or of "moving" ones

    def __post_init__(self) -> None:
        if self.suggest_from not in ("all", "moving"):
            raise ValueError(f"suggest_from = {self.suggest_from!r}: expected 'all' or 'moving'")
        if not 0 <= self.moving_px < self.max_px:
            raise ValueError(f"moving_px = {self.moving_px!r}: expected a number in [0, max_px)")
        if not self.resolution_px > 0 or not self.max_px > self.resolution_px:
            raise ValueError("resolution_px must be positive and below max_px")
        if not isinstance(self.plot_bins, int) or self.plot_bins < 2:
            raise ValueError(f"plot_bins = {self.plot_bins!r}: expected an integer >= 2")
        if not 0 < self.plot_quantile <= 1:
            raise ValueError(f"plot_quantile = {self.plot_quantile!r}: expected a number in (0, 1]")


def load_stats_params(params: dict[str, Any], **overrides: Any) -> StatsParams:
    """params.yaml `stats` section; ParamsError naming the file otherwise."""
    try:
        return section(params, "stats", StatsParams, **overrides)
    except ValueError as e:
        raise ParamsError(f"{params.get('__file__', 'params')}: section 'stats': {e}") from None


def magnitude_px(flow_px: np.ndarray) -> np.ndarray:
    """(..., 2, H, W) flow -> (..., H, W) magnitudes, float32."""
    f = np.asarray(flow_px, dtype=np.float32)
    return np.hypot(f[..., 0, :, :], f[..., 1, :, :])


def histogram_counts(mag_px: np.ndarray, resolution_px: float, n_bins: int) -> np.ndarray:
    """Counts of magnitudes in bins [k*res, (k+1)*res), the last bin also holding everything above."""
    idx = np.minimum((mag_px.ravel() / np.float32(resolution_px)).astype(np.int64), n_bins - 1)
    return np.bincount(idx, minlength=n_bins)


def quantile_from_counts(counts: np.ndarray, resolution_px: float, q: float) -> float:
    """The q-quantile of histogrammed values, interpolated linearly inside its bin (error < one bin)."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    cum = np.cumsum(counts)
    target = q * total
    k = int(np.searchsorted(cum, target, side="left"))
    k = min(k, len(counts) - 1)
    below = cum[k] - counts[k]
    frac = (target - below) / counts[k] if counts[k] else 0.0
    return float((k + frac) * resolution_px)


def summarize(counts: np.ndarray, total: float, n: int, max_px: float, res: float) -> dict[str, float]:
    """Mean, quartiles, p99 and max of one histogram."""
    out = {"mean": float(total / n) if n else float("nan")}
    out.update({name: quantile_from_counts(counts, res, q) for name, q in QUANTILES.items()})
    out["max"] = float(max_px)
    return out


def magnitude_stats(chunks: Iterable[dict[str, np.ndarray]], p: StatsParams) -> dict[str, Any]:
    """Magnitude statistics of flows given as chunks {"input": (n,2,H,W), "target": (n,2,H,W)}."""
    n_bins = int(np.ceil(p.max_px / p.resolution_px)) + 1
    counts = {c: np.zeros(n_bins, np.int64) for c in CAMERAS}
    sums = {c: 0.0 for c in CAMERAS}
    maxima = {c: 0.0 for c in CAMERAS}
    # "moving" = the bins from k_moving up, so that its histogram and its sums cover the same pixels
    k_moving = int(round(p.moving_px / p.resolution_px))
    moving_from = np.float32(k_moving * p.resolution_px)
    moving_sum = 0.0
    n_pairs = 0
    for chunk in chunks:
        n_pairs += len(chunk["input"])
        for c in CAMERAS:
            m = magnitude_px(chunk[c])
            if m.size:
                counts[c] += histogram_counts(m, p.resolution_px, n_bins)
                sums[c] += float(m.sum(dtype=np.float64))
                maxima[c] = max(maxima[c], float(m.max()))
                idx = (m / np.float32(p.resolution_px)).astype(np.int64)  # the bin each value went to
                moving_sum += float(m[idx >= k_moving].sum(dtype=np.float64))
    n_values = {c: int(counts[c].sum()) for c in CAMERAS}
    both = counts["input"] + counts["target"]
    result: dict[str, Any] = {"n_pairs": n_pairs, "n_values": sum(n_values.values()),
                              "resolution_px": p.resolution_px}
    result["magnitude"] = {
        "all": summarize(both, sums["input"] + sums["target"], sum(n_values.values()), max(maxima.values()),
                         p.resolution_px),
        **{c: summarize(counts[c], sums[c], n_values[c], maxima[c], p.resolution_px) for c in CAMERAS},
    }
    moving = both.copy()
    moving[:k_moving] = 0
    n_moving = int(moving.sum())
    result["magnitude"]["moving"] = summarize(moving, moving_sum, n_moving, max(maxima.values()), p.resolution_px)
    result["moving_px"] = float(moving_from)
    result["moving_fraction"] = n_moving / max(int(both.sum()), 1)
    # The paper picks its clip from the Q3 of the dataset's magnitudes (all pixels). Where most of
    # the crop does not move (background), that Q3 is tiny; the "moving" Q3 is then the useful one.
    result["suggested_from"] = p.suggest_from
    result["suggested_clip"] = result["magnitude"][p.suggest_from]["q3"]
    result["_counts"] = {"all": both, **counts}  # for the plot; dropped from the metrics file
    return result


def plot_histogram(result: dict[str, Any], p: StatsParams) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bin edges (px) over [0, plot_quantile] and the density of each camera and of both, for the plot."""
    counts = result["_counts"]
    top = quantile_from_counts(counts["all"], p.resolution_px, p.plot_quantile)
    top = max(top, result["suggested_clip"], p.resolution_px * p.plot_bins)
    edges = np.linspace(0.0, top, p.plot_bins + 1)
    fine_edges = np.arange(len(counts["all"]) + 1) * p.resolution_px
    dens = {}
    for c, cnt in counts.items():
        # Re-bin the fine histogram: cumulative counts at the coarse edges (fine bins split linearly).
        cum = np.concatenate([[0], np.cumsum(cnt)]).astype(np.float64)
        at = np.interp(edges, fine_edges, cum)
        width = np.diff(edges)
        dens[c] = np.diff(at) / max(cnt.sum(), 1) / width
    return edges, dens


def write_outputs(result: dict[str, Any], p: StatsParams, metrics: Path, plot: Path | None,
                  plot_data: Path | None, title: str) -> None:
    """Metrics JSON, plot data CSV (DVC plots) and PNG."""
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2) + "\n")
    edges, dens = plot_histogram(result, p)
    centers = (edges[:-1] + edges[1:]) / 2
    if plot_data is not None:
        plot_data.parent.mkdir(parents=True, exist_ok=True)
        with open(plot_data, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["magnitude_px", "density", "input", "target"])
            for i, x in enumerate(centers):
                w.writerow([f"{x:.4f}", f"{dens['all'][i]:.6g}", f"{dens['input'][i]:.6g}", f"{dens['target'][i]:.6g}"])
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        for c, label in (("input", "non-frontal (input)"), ("target", "frontal (target)")):
            ax.stairs(dens[c], edges, label=label)
        mag = result["magnitude"]
        for group, name, style in (("all", "q3", "--"), ("moving", "q3", "-."), ("all", "p99", ":")):
            v = mag[group][name]
            ax.axvline(v, color="k", linestyle=style, linewidth=1, label=f"{group} {name} = {v:.2f} px")
        ax.set_yscale("log")  # a still background puts most of the mass in the first bins
        ax.set_xlabel("flow magnitude (pixels of the source crop)")
        ax.set_ylabel("density (log)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot)
        plt.close(fig)


def flow_chunks(group: Any, where: object = None) -> Iterable[dict[str, np.ndarray]]:
    """A flow store's flows, one chunk of rows at a time (StoreError naming `where` at a non-finite value)."""
    n = group["flow_input_px"].shape[0]
    step = group["flow_input_px"].chunks[0]
    where = where if where is not None else getattr(group.store, "root", group.store)
    for a in range(0, n, step):
        chunk = {c: st.read_rows(group[name], a, min(a + step, n), where) for c, name in CAMERAS.items()}
        st.check_finite({CAMERAS[c]: v for c, v in chunk.items()}, where, a)
        yield chunk


def compute_stats(flows: Path | str, metrics: Path | str, p: StatsParams, *, plot: Path | str | None = None,
                  plot_data: Path | str | None = None) -> dict[str, Any]:
    """Run the stats stage on a flow store: metrics JSON (+ plot); returns the metrics."""
    from pipeline.flow import open_flows

    g = open_flows(flows)
    attrs = dict(g.attrs)
    result = magnitude_stats(flow_chunks(g, flows), p)
    # No params block: DVC tracks them, and a plot-only change must leave this file (a dependency
    # of normalize) unchanged; resolution_px, which the numbers depend on, is in `result`.
    result = {"dataset": attrs["dataset"], "units": f"pixels of the source crop ({attrs['source_size']})", **result}
    write_outputs(result, p, Path(metrics), Path(plot) if plot else None, Path(plot_data) if plot_data else None,
                  f"{attrs['dataset']}: flow magnitudes ({result['n_pairs']} pairs, both cameras)")
    return {k: v for k, v in result.items() if not k.startswith("_")}


def cli(
    flows: Path = typer.Argument(..., help="flow store (from `emogan flow`); its stem is the dataset name (DATASET)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="metrics JSON (default <paths.metrics>/stats_DATASET.json)"),
    plot: Optional[Path] = typer.Option(None, help="histogram PNG (default <paths.metrics>/stats_DATASET.png)"),
    plot_data: Optional[Path] = typer.Option(None, help="histogram CSV for `dvc plots` "
                                             "(default <paths.metrics>/stats_DATASET_hist.csv)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Flow magnitude distribution (quartiles, Q3, p99, histogram) as DVC metrics and plot; suggests a clip."""
    params = load_params(params_file)
    p = load_stats_params(params)
    metrics_dir = path_param(params, "metrics")
    dataset = flows.stem
    out = out or metrics_dir / f"stats_{dataset}.json"
    plot = plot or metrics_dir / f"stats_{dataset}.png"
    plot_data = plot_data or metrics_dir / f"stats_{dataset}_hist.csv"
    r = compute_stats(flows, out, p, plot=plot, plot_data=plot_data)
    m, mv = r["magnitude"]["all"], r["magnitude"]["moving"]
    typer.echo(f"{out}: magnitude q1 {m['q1']:.3f}, median {m['median']:.3f}, q3 {m['q3']:.3f}, "
               f"p99 {m['p99']:.3f}, max {m['max']:.3f} px; {100 * r['moving_fraction']:.1f}% of pixels move "
               f">= {r['moving_px']:g} px (their q3 {mv['q3']:.3f}); suggested clip ({r['suggested_from']} q3) "
               f"{r['suggested_clip']:.3f}")
