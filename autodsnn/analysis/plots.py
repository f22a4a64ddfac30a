"""Drawing fronts, hypervolume curves and marginal plots with matplotlib (imported lazily).

The plots only draw what :mod:`autodsnn.analysis.pareto` computed; the format follows the file
extension (png, svg, pdf). Figures are made with matplotlib's object API (``Figure``), never
pyplot, so drawing here neither switches the caller's backend nor keeps figures alive.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..store import TrialRow
from ..trial import TrialStatus
from ..trial.hparams import layer_designs_of
from ..trial.objectives import label
from .importance import BUDGET_FEATURE, INACTIVE, category_order, is_categorical
from .pareto import FrontInfo

FORMATS = (".png", ".svg", ".pdf")


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.add_subplot()


def _check_format(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot export {path.name}: use a .png, .svg or .pdf file name")


def point_label(config: dict[str, Any]) -> str:
    """The hyperparameters that tell DSNN designs apart, short. A per-layer design reads as its
    groups' designs in order (``P5 . D2``: PS 5-bit, float, dense 2-bit), or a count when long."""
    designs = layer_designs_of(config)
    if designs is not None:
        short = [_short_design(d) for d in designs.values()]
        shifted = sum(d != "none" for d in designs.values())
        return " ".join(short) if len(short) <= 6 else f"{shifted}/{len(short)} shifted"
    kind = config.get("shift_type", "?")
    if kind == "none":
        return "float"
    parts = [kind.upper() if kind in ("q", "ps") else kind]
    if "shift_depth" in config:
        parts.append(f"d{config['shift_depth']}")
    if "weight_bits" in config:
        parts.append(f"{config['weight_bits']}b")
    if "act_int_bits" in config and "act_frac_bits" in config:
        parts.append(f"a{config['act_int_bits']}.{config['act_frac_bits']}")
    return " ".join(parts)


def _short_design(design: str) -> str:
    if design == "none":
        return "."
    mode, bits = design.split(":")
    return f"{mode[0].upper()}{bits}"


# one colour per layer type in the layer x design chart (float is white)
TYPE_COLOURS = {"none": "#ffffff", "q": "#9ecae1", "ps": "#fc9272", "dense": "#a1d99b"}


def plot_layer_designs(rows: Sequence[TrialRow], path: str | Path, *, title: str = "per-layer designs",
                       dpi: int = 150) -> Path | None:
    """A layer x design chart: one row per design (trial), one column per layer group, each cell
    coloured by the group's type with its weight bits written in it. None when no row has
    per-layer designs."""
    path = Path(path)
    _check_format(path)
    designs = [(t, layer_designs_of(t.config)) for t in rows]
    designs = [(t, d) for t, d in designs if d is not None]
    if not designs:
        return None
    from matplotlib.colors import to_rgb

    groups = list(dict.fromkeys(g for _, d in designs for g in d))
    fig, ax = _figure((max(5.0, 0.55 * len(groups) + 2.5), max(2.0, 0.4 * len(designs) + 1.2)))
    image = np.ones((len(designs), len(groups), 3))
    for i, (_, d) in enumerate(designs):
        for j, g in enumerate(groups):
            kind, _, bits = d.get(g, "none").partition(":")
            image[i, j] = to_rgb(TYPE_COLOURS.get(kind, "#cccccc"))
            ax.text(j, i, bits or "", ha="center", va="center", fontsize=8)
    ax.imshow(image, aspect="auto")
    ax.set_xticks(range(len(groups)), groups, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(designs)), [f"trial {t.trial_id}" for t, _ in designs], fontsize=8)
    for kind, colour in TYPE_COLOURS.items():
        ax.scatter([], [], marker="s", color=colour, edgecolors="black", label="float" if kind == "none" else kind)
    fig.legend(loc="upper right", fontsize=7, ncol=4)
    ax.set_title(title + " (cells: weight bits)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _save(fig: Any, ax: Any, path: Path, *, xlabel: str, ylabel: str, title: str, dpi: int = 150) -> Path:
    """Labels, grid, legend, then write the file (format from its extension) and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)  # the format's own canvas: no backend, no display
    return path


def _wants_log(values: np.ndarray) -> bool:
    v = values[values > 0]
    return len(v) > 1 and v.max() / v.min() > 30  # spans more than ~1.5 decades


def plot_front(info: FrontInfo, path: str | Path, *, title: str | None = None, dpi: int = 150) -> Path:
    """Every trial as a point coloured by budget, the front at ``info.budget`` as a step line, the
    default configuration marked, front points labelled. Uses the first two objectives."""
    path = Path(path)
    _check_format(path)
    ox, oy = info.objectives[0], info.objectives[1] if len(info.objectives) > 1 else info.objectives[0]
    fig, ax = _figure((7.5, 5.2))
    everyone = [t for t in info.all_trials if t.status is TrialStatus.OK and ox in t.objectives and oy in t.objectives]
    if everyone:
        budgets = np.array([t.budget for t in everyone])
        pts = np.array([[t.objectives[ox], t.objectives[oy]] for t in everyone])
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=np.log(budgets), cmap="viridis", s=22, alpha=0.55,
                        edgecolors="none", label="trials")
        levels = sorted(set(budgets))
        cbar = fig.colorbar(sc, ax=ax, ticks=[math.log(b) for b in levels])
        cbar.ax.set_yticklabels([f"{b:g}" for b in levels])
        cbar.set_label("budget (epochs)")
    front = info.front
    fx = np.array([t.objectives[ox] for t in front])
    fy = np.array([t.objectives[oy] for t in front])
    if len(front):
        ax.step(fx, fy, where="post", color="crimson", lw=1.6, label=f"Pareto front ({info.budget:g} epochs)")
        ax.scatter(fx, fy, color="crimson", s=40, zorder=3)
        for t, x, y in zip(front, fx, fy):
            ax.annotate(point_label(t.config), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if info.default_index is not None:
        d = info.points[info.default_index]
        ax.scatter([d[0]], [d[1] if len(d) > 1 else d[0]], marker="*", s=220, color="orange", edgecolors="black",
                   zorder=4, label="default DSNN")
    all_x = np.array([t.objectives[ox] for t in everyone]) if everyone else fx
    all_y = np.array([t.objectives[oy] for t in everyone]) if everyone else fy
    if _wants_log(all_x):
        ax.set_xscale("log")
    if _wants_log(all_y):
        ax.set_yscale("log")
    return _save(fig, ax, path, xlabel=label(ox), ylabel=label(oy),
                 title=title or f"{ox} vs {oy}: hypervolume {info.hypervolume:.4g}", dpi=dpi)


def plot_hypervolume(curve: Sequence[tuple[float, float]], path: str | Path, *, against: str = "time",
                     title: str = "hypervolume over time") -> Path:
    """A hypervolume curve (`hypervolume_curve`) against wall clock (minutes) or against the
    energy the search had spent (Wh)."""
    path = Path(path)
    _check_format(path)
    fig, ax = _figure((6.5, 3.6))
    scale, xlabel = (1 / 60.0, "wall clock (minutes)") if against == "time" else \
        (1e3, "training energy spent by all trials (Wh)")
    if curve:
        x, hv = zip(*curve)
        ax.step(np.array(x) * scale, hv, where="post", color="navy")
        ax.scatter(np.array(x) * scale, hv, s=10, color="navy")
    return _save(fig, ax, path, xlabel=xlabel, ylabel="hypervolume", title=title)


def plot_runs(info: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Several runs: each run's front as faint points, the median front (50% attainment) as a
    step line and the 25-75% attainment band shaded."""
    path = Path(path)
    _check_format(path)
    if info.grid is None:
        raise ValueError("the median front is drawn for two objectives; pass --objectives with two")
    ox, oy = info.objectives
    fig, ax = _figure((7.0, 4.8))
    for n, run_info in enumerate(info.infos):
        f = run_info.points[run_info.front_mask]
        ax.scatter(f[:, 0], f[:, 1], s=16, alpha=0.5, label=f"run {n + 1} front" if n < 6 else None)
    lo, mid, hi = (np.where(np.isfinite(info.attainment[k]), info.attainment[k], np.nan) for k in ("25%", "50%", "75%"))
    ax.fill_between(info.grid, lo, hi, step="post", color="crimson", alpha=0.15, label="25-75% attainment")
    ax.step(info.grid, mid, where="post", color="crimson", lw=1.8, label="median front")
    ys = np.concatenate([i.points[:, 1] for i in info.infos])
    if _wants_log(ys):
        ax.set_yscale("log")
    return _save(fig, ax, path, xlabel=label(ox), ylabel=label(oy),
                 title=title or f"{len(info.infos)} runs: median hypervolume {info.median_hypervolume:.4g}")


def _value(row: TrialRow, name: str) -> Any:
    """A hyperparameter's value in a trial (None: inactive there); "budget" is the trial's budget
    unless the configuration has a hyperparameter of that name."""
    if name == BUDGET_FEATURE and name not in row.config:
        return row.budget
    return row.config.get(name)


def plot_marginals(rows: Sequence[TrialRow], objective: str, hyperparameters: Sequence[str], path: str | Path, *,
                   title: str | None = None, dpi: int = 150) -> Path:
    """Marginal plots: ``objective`` against each of ``hyperparameters`` (one panel each, shared
    y axis), every successful trial that has the objective a point coloured by its budget.

    A categorical hyperparameter gets a categorical axis (its values in a stable order, points
    jittered sideways, trials where it is inactive in an "inactive" column); a numeric one a
    linear or, spanning more than 30x, a log axis (an integer one with few values jittered
    sideways too), leaving out the trials where it is inactive (their number is in the axis
    label). "budget" is the trials' budget unless a hyperparameter has that name. Raises
    ValueError for an unknown file format or when no trial has the objective."""
    path = Path(path)
    _check_format(path)
    trials = [r for r in rows if r.status is TrialStatus.OK and objective in r.objectives]
    if not trials or not hyperparameters:
        raise ValueError(f"nothing to draw: no successful trial with objective {objective} or no hyperparameter")
    from matplotlib.figure import Figure

    k = len(hyperparameters)
    fig = Figure(figsize=(2.0 + 3.2 * k, 3.8), layout="constrained")  # room for the shared colorbar
    axes = fig.subplots(1, k, sharey=True, squeeze=False)[0]
    y_all = np.array([r.objectives[objective] for r in trials])
    budgets = np.log([r.budget for r in trials])
    norm = {"vmin": budgets.min(), "vmax": budgets.max(), "cmap": "viridis"}
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, len(trials))  # fixed: the same picture every time
    sc = None
    for ax, name in zip(axes, hyperparameters):
        values = [_value(r, name) for r in trials]
        active = [v for v in values if v is not None]
        if not active or is_categorical(active):
            cats = category_order(active) + ([INACTIVE] if len(active) < len(values) else [])
            where = {repr(c): i for i, c in enumerate(cats)}
            x = np.array([where[repr(v if v is not None else INACTIVE)] for v in values], dtype=float)
            sc = ax.scatter(x + jitter, y_all, c=budgets, s=20, alpha=0.7, edgecolors="none", **norm)
            ax.set_xticks(range(len(cats)), [str(c) for c in cats], rotation=30 if len(cats) > 4 else 0,
                          fontsize=8)
            ax.set_xlabel(name)
        else:
            keep = np.array([v is not None for v in values])
            x = np.array([float(v) for v in active])
            log_axis = _wants_log(x)
            few_ints = not log_axis and all(isinstance(v, int) for v in active) and len(set(active)) <= 12
            if few_ints:  # bits, depths: trials on one value would hide each other
                x = x + jitter[keep] * 0.6
            sc = ax.scatter(x, y_all[keep], c=budgets[keep], s=20, alpha=0.7, edgecolors="none", **norm)
            if log_axis:
                ax.set_xscale("log")
            elif few_ints:  # no ticks between integers
                from matplotlib.ticker import MaxNLocator
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            left_out = len(values) - len(active)
            ax.set_xlabel(name + (f" ({left_out} inactive not shown)" if left_out else ""))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(label(objective))
    if _wants_log(y_all):
        axes[0].set_yscale("log")
    levels = sorted({r.budget for r in trials})
    cbar = fig.colorbar(sc, ax=list(axes), ticks=[math.log(b) for b in levels])
    cbar.ax.set_yticklabels([f"{b:g}" for b in levels])
    cbar.set_label("budget (epochs)")
    fig.suptitle(title or f"{label(objective)} against {', '.join(hyperparameters)}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
