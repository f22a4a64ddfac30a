"""`autodsnn` command line: a thin layer over the library. May import: every room.

    autodsnn train --dataset mnist --model mnist-conv --shift-type ps --weight-bits 5 --epochs 10 \\
                   --optimizer radam --lr 0.01
    autodsnn cost --model resnet20 --shift-type ps --weight-bits 4
    autodsnn models 'resnet*'      autodsnn datasets
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import AutoDSNNError

EXIT_USAGE = 2
EXIT_INTERNAL = 1


class CLIError(Exception):
    """A user mistake in the command line itself: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag gets one line (argparse prints the whole usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- flags derived from the library's dataclasses -------------------------------------------------

def _flag_names(f: dataclasses.Field) -> tuple[str, ...]:
    return tuple(f.metadata.get("flags") or (f"--{f.name.replace('_', '-')}",))


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse reports ValueError/TypeError as 'invalid value'; our parsers raise a domain error
    with a better message: pass it on as argparse's own."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad flag value
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_dataclass_flags(group: Any, cls: type, *, no_defaults: bool = False,
                        only: tuple[str, ...] | None = None) -> None:
    """One flag per field of ``cls`` that has ``help`` metadata (or per field in ``only``): names,
    short names, default, choices and help come from the field, so the command line cannot drift
    from the library. ``no_defaults``: every flag defaults to None (it overrides a file only when
    given)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta or (only is not None and f.name not in only):
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"],
                                  "default": None if no_defaults else f.default}
        if "action" in meta:
            kwargs["action"] = meta["action"]
            if no_defaults:
                kwargs["default"] = None
        else:
            if "parse" in meta:
                kwargs["type"] = _argparse_type(meta["parse"])
            if "choices" in meta:
                # shown, not enforced by argparse: the library's check gives the one-line error
                choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
                kwargs["metavar"] = "{" + ",".join(choices) + "}"
            for key in ("nargs", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
        if not no_defaults and kwargs["default"] is not None and "action" not in meta:
            kwargs["help"] += f" (default {kwargs['default']})"
        group.add_argument(*_flag_names(f), **kwargs)


def dataclass_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The values of ``cls``'s flags in ``args`` (a pair flag such as --activation-bits INT FRAC
    sets both of its fields)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        pair = f.metadata.get("pair")
        if pair is not None:
            values[f.name], values[pair] = (value[0], value[1]) if value is not None else (None, None)
        else:
            values[f.name] = value
    return values


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    from .trial import HParams, Task

    p = sub.add_parser("train", help="train one DSNN configuration and measure its energy",
                       description="Train one DSNN configuration for a number of epochs, evaluate it on the "
                                   "validation split, measure energy with CodeCarbon, and write a run folder.")
    add_dataclass_flags(p.add_argument_group("task"), Task)
    add_dataclass_flags(p.add_argument_group("shift network and training (DeepShift flags)"), HParams)
    g = p.add_argument_group("run")
    g.add_argument("--epochs", default=1.0, type=float, help="budget in epochs; fractions allowed (default 1)")
    g.add_argument("--seed", default=0, type=int, help="seed of the initial weights, the data order and dropout")
    g.add_argument("--resume-from", default=None, help="continue from a lower-budget checkpoint of this configuration")
    g.add_argument("--out", default=None, help="run folder (default runs/train-<model>-<type>-<time>)")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from .trial import HParams, Task, train_trial
    from .trial.training import resolve_device

    hp = HParams(**dataclass_values(HParams, args))
    task = Task(**dataclass_values(Task, args))
    _check_names(task.dataset, task.model)
    resolve_device(task.device)  # before a run folder exists: bad input never leaves one behind
    if not args.epochs > 0:
        raise CLIError(f"--epochs {args.epochs:g}: the budget must be positive")
    for flag, path in (("--weights", task.weights), ("--resume-from", args.resume_from)):
        if path is not None and not Path(path).is_file():
            raise CLIError(f"{flag} {path}: no such file")
    out = Path(args.out or f"runs/train-{task.model}-{hp.shift_type}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"training {task.model} on {task.dataset}: shift type {hp.shift_type}, {args.epochs:g} epoch(s) -> {out}",
          flush=True)
    result = train_trial(hp, args.epochs, task=task, seed=args.seed, checkpoint_path=out / "checkpoint.pt",
                         resume_from=args.resume_from, export_path=out / "shift_codes.pt")
    (out / "metrics.json").write_text(json.dumps({"task": task.to_dict(), **result.to_dict()}, indent=2, default=str))
    if result.history:
        with open(out / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in result.history for k in row)))
            writer.writeheader()
            writer.writerows(result.history)
    print(result.summary())
    if result.ok:
        a = result.analytic
        print(f"analytic inference cost per image: {a['energy_pj_per_sample'] / 1e6:.3f} uJ, model size "
              f"{a['model_bits'] / 8e6:.3f} MB; {result.converted_layers} layers converted")
    if result.inference_latency_ms is not None:
        uj = result.inference_energy_uj
        energy = "energy missing" if uj is None else f"{uj:.3g} uJ/image"
        print(f"inference via {result.inference_path}: {result.inference_latency_ms:.3g} ms/image at batch 1, "
              f"{energy} at batch {task.inference_batch}, val acc {100 * (1 - result.inference_error):.2f}%")
    for what, why in result.missing.items():
        print(f"{what}: missing ({why})")
    print(f"wrote {out}/metrics.json")
    return 0 if result.ok else 1


def _check_names(dataset: str, model: str) -> None:
    """Unknown names fail here, with the zoo's one-line error, before a run folder is made."""
    from .zoo import model_info, normalize_name

    normalize_name(dataset)
    if not model.startswith("tv-"):
        model_info(model)


DESIGN_FLAGS = ("shift_type", "shift_depth", "weight_bits", "shift_max", "act_int_bits", "act_signed")


def _add_cost_parser(sub: argparse._SubParsersAction) -> None:
    from .trial import HParams

    p = sub.add_parser("cost", help="analytic inference cost (params, ops, bits, energy) of a model design")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--num-classes", default=10, type=int)
    p.add_argument("--input-size", nargs="+", type=int, default=None, help="C H W (default: the model's)")
    p.add_argument("--batch", default=1, type=int)
    add_dataclass_flags(p.add_argument_group("shift network (DeepShift flags)"), HParams, only=DESIGN_FLAGS)
    p.add_argument("--layers", action="store_true", help="print one row per layer")
    p.set_defaults(func=_cmd_cost)


def _cmd_cost(args: argparse.Namespace) -> int:
    from .shift import convert, cost
    from .trial import HParams
    from .zoo import models

    design = HParams(**dataclass_values(HParams, args))
    info = models.model_info(args.model)
    shape = tuple(args.input_size) if args.input_size else info.input_size
    model = models.create_model(args.model, num_classes=args.num_classes, input_size=shape)
    if design.shift_type != "none":
        print(convert(model, design.shift_config()))
    c = cost(model, (args.batch, *shape))
    if args.layers:
        for r in c.layers:
            print(f"  {r.name:<28} {r.kind:<14} params {r.params:>9,}  MACs {r.macs:>12,}  shifts {r.shifts:>12,}  "
                  f"{r.energy_pj / 1e6:8.3f} uJ")
    print(c)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Runs a checkout's benchmark script: the benchmarks need the model zoo and are not library code."""
    import runpy

    from .resources import project_folder

    script = project_folder("benchmarks") / f"{args.what}.py"
    sys.path.insert(0, str(script.parent))  # the scripts import their shared helpers as `common`
    # The README's results come from the script run as a benchmark: this command writes only --json.
    sys.argv = [str(script), "--json", args.json or ""] + (["--quick"] if args.quick else [])
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .zoo import models

    for name in models.list_models(args.pattern, include_torchvision=not args.no_torchvision):
        print(name)
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .zoo import data

    for name in data.list_datasets():
        info = data.dataset_info(name)
        where = data.find_local(name)
        print(f"{name:<14} {'x'.join(map(str, info.input_shape)):<10} {info.num_classes:>5} classes  "
              f"{'local: ' + str(where) if where else ''}")
    return 0


def _add_optimize_parser(sub: argparse._SubParsersAction) -> None:
    from .search import Experiment

    p = sub.add_parser("optimize", help="multi-fidelity multi-objective search for DSNN designs (SMAC + Dask)",
                       description="Search DSNN designs with SMAC (Hyperband + ParEGO) on Dask workers. With no "
                                   "arguments, runs the embedded default experiment (experiments/default.yaml).")
    p.add_argument("--experiment", default=None, help="experiment YAML or built-in name (default: default)")
    p.add_argument("--run-dir", default=None, help="where the run is stored (default runs/<name>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the run in this directory")
    add_dataclass_flags(p.add_argument_group("experiment settings (override the file)"), Experiment, no_defaults=True)
    p.set_defaults(func=_cmd_optimize)


def _cmd_optimize(args: argparse.Namespace) -> int:
    from .analysis import summarize
    from .search import Experiment, optimize
    from .store import Run

    overrides = {k: v for k, v in dataclass_values(Experiment, args).items() if v is not None}
    if args.resume:
        with Run.open(args.resume) as run:
            experiment = Experiment.from_dict({**run.experiment, **overrides})
        run_dir = Path(args.resume)
    else:
        experiment = Experiment.from_file(args.experiment or "default", **overrides)
        run_dir = Path(args.run_dir or f"runs/{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    outcome = optimize(experiment, run_dir, resume=bool(args.resume))
    with Run.open(outcome.run_dir) as run:
        print(summarize(run, experiment.objectives, outcome.stopped).describe())
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .analysis import summarize
    from .search import Experiment
    from .store import Run

    with Run.open(args.run) as run:
        exp = Experiment.from_dict(run.experiment)
        summary = summarize(run, exp.objectives)
    print(summary.describe())
    if exp.budget:
        left = exp.budget - summary.elapsed
        print(f"wall clock: {summary.elapsed:.0f}s used of {exp.budget:.0f}s ({max(left, 0):.0f}s left)")
    return 0


def _add_analysis_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pareto", help="Pareto front of a run: table, hypervolume, plot and CSV/JSON export",
                       description="Pareto front of a run, or with several runs (e.g. seeds) their hypervolumes "
                                   "under one reference point and the median front with its 25-75%% spread.")
    p.add_argument("run", nargs="+")
    p.add_argument("--objectives", default=None, help="two or three, comma-separated (default: the run's)")
    p.add_argument("--budget", default="max", type=_budget,
                   help="max (default), all (one front per budget) or a number of epochs")
    p.add_argument("--ref", default=None, type=_reference_point,
                   help="reference point for the hypervolume, comma-separated")
    p.add_argument("--export", default=None, type=_plot_file, help="plot file: .png, .svg or .pdf")
    p.add_argument("--csv", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--importance", action="store_true",
                   help="also rank the hyperparameters per objective (a few seconds: fits random forests; "
                        "the full table: autodsnn importance RUN)")
    p.set_defaults(func=_cmd_pareto)
    p = sub.add_parser("importance", help="which hyperparameters matter, per objective (permutation importance)",
                       description="Permutation importance of a random forest fitted to a run's trials, per "
                                   "objective, measured on held-out trials (cross-fitting); optionally marginal plots "
                                   "of the most important hyperparameters.")
    p.add_argument("run")
    p.add_argument("--objectives", default=None, help="comma-separated (default: the run's)")
    p.add_argument("--budget", default="max", type=_budget,
                   help="max (default: the highest budget with enough trials), all (every budget pooled, budget "
                        "as a feature) or a number of epochs")
    p.add_argument("--seed", default=0, type=int, help="seed of the forests, folds and shuffles (default 0)")
    p.add_argument("--json", default=None, help="also write the importances to this JSON file")
    p.add_argument("--plots", default=None, metavar="DIR",
                   help="write DIR/marginal-OBJECTIVE.png: the objective against its top hyperparameters")
    p.add_argument("--top", default=3, type=int, help="hyperparameters per marginal plot (default 3)")
    p.set_defaults(func=_cmd_importance)
    p = sub.add_parser("report", help="one self-contained HTML report of a run")
    p.add_argument("run")
    p.add_argument("--out", default=None, help="HTML file (default RUN/report.html)")
    p.add_argument("--objectives", default=None)
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("retrain", help="retrain a chosen configuration at full budget and export it")
    p.add_argument("run", nargs="?", default=None, help="the run to pick from (not needed with --from-config)")
    p.add_argument("--pick", default="knee", help="knee, min-error, min-energy or a trial id")
    p.add_argument("--from-config", default=None, help="a YAML file of hyperparameters instead of a run")
    p.add_argument("--dataset", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", default=None, type=float, help="default: the run's max budget")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", default=0, type=int)
    p.add_argument("--out", default=None, help="output folder (default RUN/retrain-<pick>)")
    p.set_defaults(func=_cmd_retrain)


def _objectives(text: str | None) -> tuple[str, ...] | None:
    return tuple(o.strip() for o in text.split(",") if o.strip()) if text else None


def _cmd_pareto(args: argparse.Namespace) -> int:
    from .analysis.importance import importance_or_reason
    from .analysis.pareto import comparison_text, footprint, front_info, hypervolume_curve, usable_trials
    from .analysis.summary import footprint_text
    from .trial.objectives import show
    from .analysis.plots import plot_front, point_label
    from .store import Run

    if len(args.run) > 1:
        return _pareto_runs(args)
    with Run.open(args.run[0]) as run:
        objectives = _objectives(args.objectives)
        infos = [front_info(run, objectives, args.budget if args.budget != "all" else "max", args.ref)]
        if args.budget == "all":  # every budget where some trial has all the objectives
            budgets = sorted({t.budget for t in usable_trials(infos[0].all_trials, infos[0].objectives)})
            infos = [front_info(run, objectives, b, args.ref) for b in budgets]
        spent = footprint(infos[-1].all_trials)
        by_energy = [] if not args.json else \
            hypervolume_curve(run, infos[-1].objectives, infos[-1].ref, infos[-1].budget, against="energy")
        importance, why = importance_or_reason(run, infos[-1].objectives, args.budget) if args.importance else \
            (None, "")
    print(footprint_text(spent))
    rows = []
    for info in infos:
        obj = info.objectives
        print(f"budget {info.budget:g} epochs: {len(info.trials)} trials, {int(info.front_mask.sum())} on the front, "
              f"hypervolume {info.hypervolume:.6g} (reference {', '.join(f'{v:.4g}' for v in info.ref)})")
        for idx in info.front_indices:
            t = info.trials[idx]
            cmp = info.comparisons.get(idx)
            vs = "" if cmp is None or t.is_default else f"  {comparison_text(cmp)}"
            tags = (" [knee]" if idx == info.knee_index else "") + (" [default]" if t.is_default else "")
            print(f"  trial {t.trial_id:>4}  " + "  ".join(f"{o} {show(o, t.objectives[o])}" for o in obj)
                  + f"  {point_label(t.config)}{tags}{vs}")
            rows.append({"budget": info.budget, "trial_id": t.trial_id, **{o: t.objectives[o] for o in obj},
                         "knee": idx == info.knee_index, "is_default": t.is_default,
                         "dominates_default": bool(cmp and cmp["dominates_default"]), **t.config})
    if args.export:
        _export_plot(plot_front, infos[-1], args.export)
    if args.csv:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("budget", "trial_id"), k))
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.csv}")
    if args.importance:
        if importance is None:
            print(f"hyperparameter importance: {why}")
        else:
            where = "all budgets pooled" if importance.budget is None else f"budget {importance.budget:g} epochs"
            print(f"hyperparameter importance at {where}, {importance.trials} trials (most important first; "
                  "the table: autodsnn importance RUN):")
            print(importance.short())
    if args.json:
        payload = {"fronts": [{"budget": i.budget, "objectives": list(i.objectives), "hypervolume": i.hypervolume,
                               "reference_point": i.ref.tolist(),
                               "front": [r for r in rows if r["budget"] == i.budget]} for i in infos],
                   "footprint": dataclasses.asdict(spent),
                   "hypervolume_against_energy_kwh": [{"energy_kwh": x, "hypervolume": hv} for x, hv in by_energy]}
        if args.importance:
            payload["importance"] = importance.to_dict() if importance is not None else {"error": why}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


def _export_plot(plot: Any, info: Any, path: str) -> None:
    try:
        print(f"wrote {plot(info, path)}")
    except ValueError as exc:  # an unknown file format, or a plot the objectives do not allow
        raise CLIError(str(exc)) from None


def _budget(text: str) -> str | float:
    if text in ("max", "all"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget {text!r}: use max, all or a number of epochs") from None


def _plot_file(text: str) -> str:
    from .analysis.plots import FORMATS

    if Path(text).suffix.lower() not in FORMATS:
        raise argparse.ArgumentTypeError(f"cannot export {text}: use a {', '.join(FORMATS)} file name")
    return text


def _reference_point(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ref {text!r}: give one number per objective, comma-separated") from None


def _pareto_runs(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    import numpy as np

    from .analysis.pareto import multi_run_info
    from .analysis.plots import plot_runs
    from .store import Run

    if args.budget == "all":
        raise CLIError("--budget all shows one run's fronts per budget: give one run, or max or a number")
    if args.importance:
        raise CLIError("--importance ranks one run's hyperparameters: give one run (or use autodsnn importance)")
    with ExitStack() as stack:
        runs = [stack.enter_context(Run.open(r)) for r in args.run]
        info = multi_run_info(runs, _objectives(args.objectives), args.budget, args.ref)
    q1, med, q3 = (float(v) for v in np.percentile(info.hypervolumes, [25, 50, 75]))
    print(f"{len(info.infos)} runs, objectives {', '.join(info.objectives)}, shared reference point "
          f"{', '.join(f'{v:.4g}' for v in info.ref)}")
    for path, run_info in zip(args.run, info.infos):
        print(f"  {path}: budget {run_info.budget:g}, {int(run_info.front_mask.sum())} on the front, "
              f"hypervolume {run_info.hypervolume:.6g}")
    print(f"hypervolume median {med:.6g} (25-75%: {q1:.6g} - {q3:.6g})")
    if args.export:
        _export_plot(plot_runs, info, args.export)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": args.run, "objectives": list(info.objectives),
                                               "reference_point": info.ref.tolist(), "hypervolumes": info.hypervolumes,
                                               "median_hypervolume": med}, indent=2))
        print(f"wrote {args.json}")
    return 0


def _cmd_importance(args: argparse.Namespace) -> int:
    from .analysis.importance import hyperparameter_importance
    from .analysis.plots import plot_marginals
    from .store import Run

    if args.top < 1:
        raise CLIError(f"--top {args.top}: give at least 1 hyperparameter per plot")
    with Run.open(args.run) as run:
        result = hyperparameter_importance(run, _objectives(args.objectives), args.budget, seed=args.seed)
        rows = run.trials() if args.plots else []
    print(result.text())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
        print(f"wrote {args.json}")
    if args.plots:
        for objective, ranked in result.per_objective.items():
            top = ranked.top(args.top)
            if not top:
                print(f"no marginal plot for {objective}: no hyperparameter has a positive importance")
                continue
            path = plot_marginals(rows, objective, top, Path(args.plots) / f"marginal-{objective}.png",
                                  title=f"{objective} against its {len(top)} most important hyperparameters")
            print(f"wrote {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .analysis.report import write_report

    print(f"wrote {write_report(args.run, args.out, _objectives(args.objectives))}")
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    from .analysis.retrain import load_config_file, pick_trial, retrain
    from .trial.energy import format_energy
    from .search import Experiment
    from .store import Run
    from .trial import Task

    if args.from_config:
        config, chosen = load_config_file(args.from_config), f"configuration file {args.from_config}"
        exp: dict = {}
        if not (args.dataset and args.model and args.epochs):
            raise CLIError("--from-config needs --dataset, --model and --epochs")
        task = Task(dataset=args.dataset, model=args.model)
    else:
        if not args.run:
            raise CLIError("give a run directory to pick from, or --from-config FILE")
        with Run.open(args.run) as run:
            exp = run.experiment
            config, chosen = pick_trial(run, args.pick)
        task = Experiment.from_dict(exp).task()
    given = {"dataset": args.dataset, "model": args.model, "data_dir": args.data_dir, "device": args.device}
    task = dataclasses.replace(task, **{k: v for k, v in given.items() if v is not None})
    epochs = args.epochs or float(exp.get("max_budget"))
    out = Path(args.out or (Path(args.run) / f"retrain-{args.pick}" if args.run else "runs/retrain"))
    command = "autodsnn " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("autodsnn") else \
        f"autodsnn retrain {args.run or ''} --pick {args.pick} --epochs {epochs:g}".strip()
    print(f"retraining ({chosen}) for {epochs:g} epochs on all training data -> {out}", flush=True)
    card = retrain(dict(config), task, epochs, out, seed=args.seed, chosen_by=chosen, fixed=exp.get("fixed") or {},
                   command=command)
    print(f"test accuracy {100 * card['test_accuracy']:.2f}% ({card['test_samples']} images), training energy "
          f"{format_energy(card['training_energy_kwh'])}; wrote {out}/model_card.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="autodsnn", description="Design, train and optimize deep shift neural networks.")
    parser.add_argument("--version", action="version", version=f"autodsnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback and cause")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_optimize_parser(sub)
    _add_train_parser(sub)
    _add_analysis_parsers(sub)
    _add_cost_parser(sub)
    p = sub.add_parser("status", help="progress and current Pareto front of a run (works while it runs)")
    p.add_argument("run")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("models", help="list model names")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--no-torchvision", action="store_true")
    p.set_defaults(func=_cmd_models)
    p = sub.add_parser("bench", help="speed of the deployed shift kernels against float PyTorch")
    p.add_argument("what", choices=["kernels"], help="what to benchmark")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a minute or two)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(func=_cmd_bench)
    p = sub.add_parser("datasets", help="list data sets and where their files are")
    p.set_defaults(func=_cmd_datasets)
    for command in sub.choices.values():  # `autodsnn train ... --debug` works as well as `autodsnn --debug train`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a bad flag (already printed): the code, as a return
        return int(exc.code or 0)
    _log_to_terminal(args.debug)
    try:
        return int(args.func(args) or 0)
    except (CLIError, AutoDSNNError) as exc:  # a request we cannot serve: one line, the fix in it
        if args.debug:
            traceback.print_exc()
        print(f"autodsnn {args.command}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, the traceback with --debug
        if args.debug:
            raise
        print(f"autodsnn {args.command}: internal error: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}"
              " (rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (a test's capture, a redirect), not to
    the stream that was current when the handler was made."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _log_to_terminal(debug: bool) -> None:
    """The library logs progress (epochs, trials) to the `autodsnn` logger: show it on stderr."""
    logger = logging.getLogger("autodsnn")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):  # one, however often main() runs
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
