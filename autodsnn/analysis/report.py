"""`autodsnn report RUN`: one self-contained HTML file (plots inlined) about a run."""
from __future__ import annotations

import base64
import html
import tempfile
import time
from pathlib import Path
from typing import Any

from ..trial import TrialStatus
from ..trial.objectives import label
from .pareto import front_info, hypervolume_over_time
from .plots import plot_front, plot_hypervolume, point_label
from ..store import Run, TrialRow

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left;max-width:360px;overflow-wrap:anywhere}tr.default{background:#fff4d6}img{max-width:100%}
.muted{color:#777}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _metrics_row(t: TrialRow, objectives: tuple[str, ...], extra: dict[str, Any] | None = None, cls: str = "") -> str:
    r = t.result
    cells = [f'<td class="l">{t.trial_id}</td>', f'<td class="l">{html.escape(point_label(t.config))}</td>',
             f"<td>{t.budget:g}</td>"]
    cells += [f"<td>{_fmt(t.objectives.get(o))}</td>" for o in objectives]
    cells += [f"<td>{_fmt(None if r.val_error is None else 1 - r.val_error)}</td>",
              f"<td>{_fmt(r.energy_kwh_total)}</td>", f"<td>{_fmt(r.emissions_kg)}</td>",
              f"<td>{_fmt(r.inference_energy_kwh)}</td>", f"<td>{_fmt(r.analytic.get('energy_pj_per_sample'))}</td>",
              f"<td>{_fmt(r.analytic.get('model_bits'))}</td>", f"<td>{_fmt(r.wall_time)}</td>"]
    if extra is not None:
        ch = extra.get("change_percent", {})
        cells.append(f"<td>{'yes' if extra.get('dominates_default') else 'no'}</td>")
        cells.append(f'<td class="l">{html.escape(", ".join(f"{o} {v:+.1f}%" for o, v in ch.items()))}</td>')
    else:
        cells += ["<td>-</td>", "<td>-</td>"]
    cells.append(f'<td class="l">{html.escape(", ".join(f"{k}={_fmt(v)}" for k, v in sorted(t.config.items())))}</td>')
    return f'<tr class="{cls}">' + "".join(cells) + "</tr>"


def write_report(run_dir: str | Path, out: str | Path | None = None, objectives: tuple[str, ...] | None = None) -> Path:
    """Write the HTML report of a run (default: RUN/report.html) and return its path."""
    with Run.open(run_dir) as run:
        exp = run.experiment
        info = front_info(run, objectives)
        curve = hypervolume_over_time(run, info.objectives, info.ref)
        counts, elapsed = run.counts(), float(run.meta("elapsed_seconds") or 0.0)
        failures = [t for t in run.trials() if t.status is not TrialStatus.OK]
    out = Path(out) if out else Path(run_dir) / "report.html"
    with tempfile.TemporaryDirectory() as tmp:
        front_png = plot_front(info, Path(tmp) / "front.png")
        hv_png = plot_hypervolume(curve, Path(tmp) / "hypervolume.png")
        front_img, hv_img = _img(front_png), _img(hv_png)
    obj = info.objectives
    head = ("<tr><th class='l'>trial</th><th class='l'>design</th><th>budget</th>"
            + "".join(f"<th>{html.escape(label(o))}</th>" for o in obj)
            + "<th>val accuracy</th><th>train kWh (total)</th><th>kg CO2eq</th><th>inference kWh</th>"
              "<th>analytic pJ/image</th><th>model bits</th><th>seconds</th><th>dominates default</th>"
              "<th class='l'>vs default</th><th class='l'>configuration</th></tr>")
    rows = []
    for t in info.front:
        idx = info.trials.index(t)
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
<h2>Error vs energy</h2>{front_img}
<h2>Pareto configurations</h2><table>{head}{''.join(rows)}</table>
<h2>Default configuration</h2>\
<table>{head}{default_row or '<tr><td class="l">the default has no result at this budget</td></tr>'}</table>
<h2>Hypervolume over time</h2>{hv_img}
<h2>Failed and cut-short trials</h2>\
<table><tr><th class='l'>trial</th><th>budget</th><th class='l'>status</th><th class='l'>reason</th></tr>\
{fail_rows or '<tr><td class="l" colspan=4>none</td></tr>'}</table>
<h2>Experiment</h2><table>{settings}</table>
<p class="muted">written {time.strftime('%Y-%m-%d %H:%M')} by autodsnn report</p></body></html>"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)
    return out
