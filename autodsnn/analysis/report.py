"""`autodsnn report RUN`: one self-contained HTML file (plots inlined) about a run."""
from __future__ import annotations

import base64
import html
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from ..store import Run, TrialRow
from ..trial import TrialStatus
from ..trial.energy import format_energy
from ..trial.objectives import label, show
from .importance import RunImportance, importance_or_reason
from .pareto import comparison_text, footprint, front_info, hypervolume_curve
from .plots import plot_front, plot_hypervolume, plot_layer_designs, plot_marginals, point_label
from .summary import footprint_text

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;
vertical-align:top;white-space:nowrap}th{background:#f0f0f0}td.l,th.l{text-align:left}
td.wrap{white-space:normal;min-width:16em;max-width:26em;text-align:left}tr.default{background:#fff4d6}
img{max-width:100%}.muted{color:#777}.scroll{overflow-x:auto}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _plain(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt(v: Any) -> str:
    return html.escape(_plain(v))


# The per-trial columns besides the objectives: header, how to read it, and the objective it
# repeats (left out when that objective has its own column).
_COLUMNS: tuple[tuple[str, Any, str | None], ...] = (
    ("val accuracy", lambda t: None if t.result.val_error is None else f"{100 * (1 - t.result.val_error):.2f}%",
     None),
    ("training energy", lambda t: format_energy(t.result.energy_kwh_total), "energy"),
    ("emissions", lambda t: None if t.result.emissions_kg is None else f"{t.result.emissions_kg * 1e3:.3g} g",
     "emissions"),
    ("inference uJ/image", lambda t: t.result.inference_energy_uj, "inference_energy"),
    ("latency ms/image", lambda t: t.result.inference_latency_ms, "latency"),
    ("analytic uJ/image", lambda t: _scaled(t.result.analytic.get("energy_pj_per_sample"), 1e-6), "analytic_energy"),
    ("model size", lambda t: _kib(t.result.analytic.get("model_bits")), "model_bits"),
    ("trial time", lambda t: f"{t.result.wall_time:.1f} s", None),
)


def _columns(objectives: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(name, read) for name, read, repeats in _COLUMNS if repeats not in objectives]


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _kib(bits: float | None) -> str | None:
    return None if bits is None else f"{bits / 8192:.1f} KiB"


def _config_cell(config: dict[str, Any]) -> str:
    lines = "<br>".join(html.escape(f"{k}={_plain(v)}") for k, v in sorted(config.items()))
    return f'<td class="wrap">{lines}</td>'


def _metrics_row(t: TrialRow, objectives: tuple[str, ...], comparison: dict[str, Any] | None, cls: str = "") -> str:
    cells = [f'<td class="l">{t.trial_id}</td>', f'<td class="l">{html.escape(point_label(t.config))}</td>',
             f"<td>{t.budget:g}</td>"]
    cells += [f"<td>{html.escape(show(o, t.objectives.get(o)))}</td>" for o in objectives]
    cells += [f"<td>{_fmt(read(t))}</td>" for _, read in _columns(objectives)]
    vs = "the default" if t.is_default else "-" if comparison is None else comparison_text(comparison)
    cells.append(f'<td class="wrap">{html.escape(vs)}</td>')
    cells.append(_config_cell(t.config))
    return f'<tr class="{cls}">' + "".join(cells) + "</tr>"


def _importance_html(imp: RunImportance | None, why: str, rows: list[TrialRow], tmp: Path, top: int = 3) -> str:
    """Per objective: the importance table and the marginal plots of its ``top`` hyperparameters."""
    if imp is None:
        return f"<p>{html.escape(why)}.</p>"
    where = "all budgets pooled (budget as a feature)" if imp.budget is None else f"budget {imp.budget:g} epochs"
    parts = [f"<p class='muted'>{html.escape(imp.method)}, at {html.escape(where)}, {imp.trials} trials, "
             f"seed {imp.seed}. Importance: the increase of the held-out squared error when the hyperparameter "
             "is shuffled, over the objective's variance (0 = no effect, about 2 = it alone determines the "
             "objective). The marginal plots show every successful trial, coloured by budget."
             + (f" The same in every trial (not ranked): {html.escape(', '.join(imp.constant))}." if imp.constant
                else "") + "</p>"]
    for o, res in imp.per_objective.items():
        fit = "constant objective" if math.isnan(res.r2) else f"forest R<sup>2</sup> {res.r2:.2f} on held-out trials"
        table = "".join(f"<tr><td class='l'>{html.escape(i.hyperparameter)}</td><td>{i.mean:.3f}</td>"
                        f"<td>{i.std:.3f}</td></tr>" for i in res.importances)
        parts.append(f"<h3>{html.escape(label(o))}</h3><p class='muted'>{fit}"
                     f"{', modelled as log10 of the value' if res.log_scale else ''}.</p>"
                     "<table><tr><th class='l'>hyperparameter</th><th>importance</th><th>std</th></tr>"
                     f"{table}</table>")
        if res.top(top):
            parts.append(_img(plot_marginals(rows, o, res.top(top), tmp / f"marginal-{o}.png",
                                             title=f"{label(o)} against its most important hyperparameters")))
    return "".join(parts)


def write_report(run_dir: str | Path, out: str | Path | None = None, objectives: tuple[str, ...] | None = None) -> Path:
    """Write the HTML report of a run (default: RUN/report.html) and return its path."""
    with Run.open(run_dir) as run:
        exp = run.experiment
        info = front_info(run, objectives)
        curve = hypervolume_curve(run, info.objectives, info.ref)
        energy_curve = hypervolume_curve(run, info.objectives, info.ref, against="energy")
        counts, elapsed = run.counts(), float(run.meta("elapsed_seconds") or 0.0)
        failures = [t for t in run.trials() if t.status is not TrialStatus.OK]
        spent = footprint(info.all_trials)  # every trial of the run, read once by front_info
        importance, why = importance_or_reason(run, info.objectives)
    out = Path(out) if out else Path(run_dir) / "report.html"
    with tempfile.TemporaryDirectory() as tmp:
        front_png = plot_front(info, Path(tmp) / "front.png")
        hv_png = plot_hypervolume(curve, Path(tmp) / "hypervolume.png")
        hv_energy_png = plot_hypervolume(energy_curve, Path(tmp) / "hypervolume-energy.png", against="energy",
                                         title="hypervolume against the search's energy")
        front_img, hv_img, hv_energy_img = _img(front_png), _img(hv_png), _img(hv_energy_png)
        importance_html = _importance_html(importance, why, info.all_trials, Path(tmp))
        front_rows = [info.trials[i] for i in info.front_indices]
        layers_png = plot_layer_designs(front_rows, Path(tmp) / "layers.png", title="the front's designs per layer")
        layers_html = ("" if layers_png is None else "<h2>Which layers the front's designs shift, and how</h2>"
                       + _img(layers_png))
    obj = info.objectives
    head = ("<tr><th class='l'>trial</th><th class='l'>design</th><th>budget</th>"
            + "".join(f"<th>{html.escape(label(o))}</th>" for o in obj)
            + "".join(f"<th>{html.escape(name)}</th>" for name, _ in _columns(obj))
            + "<th class='l'>vs default (beyond noise)</th><th class='l'>configuration</th></tr>")
    rows = []
    for idx in info.front_indices:
        t = info.trials[idx]
        rows.append(_metrics_row(t, obj, info.comparisons.get(idx), "default" if t.is_default else ""))
    default_row = ""
    if info.default_index is not None:
        default_row = _metrics_row(info.trials[info.default_index], obj, None, "default")
    knee_trial = info.trials[info.knee_index].trial_id if info.knee_index is not None else "-"
    fail_rows = "".join(f"<tr><td class='l'>{t.trial_id}</td><td>{t.budget:g}</td>"
                        f"<td class='l'>{html.escape(t.status)}</td>"
                        f"<td class='l'>{html.escape(t.reason or '')}</td></tr>" for t in failures)
    settings = "".join(f"<tr><td class='l'>{html.escape(k)}</td><td class='l'>{_fmt(v)}</td></tr>"
                       for k, v in exp.items())
    doc = f"""<!doctype html><html><head><meta charset="utf-8">\
<title>AutoDSNN run {html.escape(str(exp.get('name', '')))}</title>
<style>{_CSS}</style></head><body>
<h1>AutoDSNN run: {html.escape(str(exp.get('name', '')))}</h1>
<p>{html.escape(str(exp.get('model')))} on {html.escape(str(exp.get('dataset')))}, \
objectives {html.escape(', '.join(obj))};
{sum(counts.values())} trials \
({html.escape(', '.join(f'{k} {v}' for k, v in sorted(counts.items())))}) in {elapsed / 60:.1f} min.
Front at {info.budget:g} epochs: {int(info.front_mask.sum())} configurations, hypervolume {info.hypervolume:.5g}
(reference point {html.escape(', '.join(f'{v:.4g}' for v in info.ref))}), knee: trial {knee_trial}.</p>
<h2>{html.escape(' vs '.join(obj[:2]))}</h2>{front_img}
<h2>Pareto configurations</h2><p class="muted">A % change is shown only where it exceeds both values' \
measured spread (two standard errors of the error, half the IQR of repeated inference measurements); \
"?" marks a figure measured once, whose spread is unknown.</p>
<div class="scroll"><table>{head}{''.join(rows)}</table></div>
<h2>Default configuration</h2><div class="scroll">\
<table>{head}{default_row or '<tr><td class="l">the default has no result at this budget</td></tr>'}</table></div>
{layers_html}
<h2>Which hyperparameters matter</h2>{importance_html}
<h2>The search's own footprint</h2>
<p>{html.escape(footprint_text(spent))}.</p>
<h2>Hypervolume over time</h2>{hv_img}
<h2>Hypervolume against energy spent</h2>{hv_energy_img}
<h2>Failed and cut-short trials</h2>\
<table><tr><th class='l'>trial</th><th>budget</th><th class='l'>status</th><th class='l'>reason</th></tr>\
{fail_rows or '<tr><td class="l" colspan=4>none</td></tr>'}</table>
<h2>Experiment</h2><table>{settings}</table>
<p class="muted">written {time.strftime('%Y-%m-%d %H:%M')} by autodsnn report</p></body></html>"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)
    return out
