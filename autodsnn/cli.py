"""`autodsnn` command line: a thin layer over the library.

    autodsnn train --dataset mnist --model mnist-conv --shift-type ps --weight-bits 5 --epochs 10 \\
                   --optimizer radam --lr 0.01
    autodsnn cost --model resnet20 --shift-type ps --weight-bits 4
    autodsnn models 'resnet*'      autodsnn datasets
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

EXIT_USAGE = 2


class CLIError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _depth(value: str) -> int | str:
    if value.lower() in ("all", "1000"):  # DeepShift users write 1000 for "all layers"
        return "all"
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shift depth must be an integer or 'all', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"shift depth must be >= 0, got {n}")
    return n


def _shift_max(value: str) -> int | str:
    return "auto" if value == "auto" else int(value)


def _add_dsnn_flags(p: argparse.ArgumentParser) -> None:
    """The flags DeepShift users know, with their short forms."""
    g = p.add_argument_group("shift network (DeepShift flags)")
    g.add_argument("--shift-type", "-st", default="ps", type=str.lower, choices=["none", "q", "ps", "dense"],
                   help="q = DeepShift-Q, ps = DeepShift-PS, dense = DenseShift (zero-free), none = float")
    g.add_argument("--shift-depth", "-sd", default="all", type=_depth,
                   help="convert the first N convertible layers counted from the input, or 'all' (default)")
    g.add_argument("--weight-bits", "-wb", default=5, type=int, help="bits per weight code, 2..8 (default 5)")
    g.add_argument("--shift-max", default=0, type=_shift_max,
                   help="largest weight exponent (0: |w|<=1; >0 allows left shifts) or 'auto' per layer")
    g.add_argument("--activation-bits", "-ab", nargs=2, type=int, metavar=("INT", "FRAC"), default=None,
                   help="fixed-point activations: integer and fraction bits (default: float activations)")
    g.add_argument("--unsigned-activations", action="store_true", help="fixed-point activations without a sign bit")
    g.add_argument("--rounding", "-r", default="deterministic", choices=["deterministic", "stochastic"])


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one DSNN configuration and measure its energy",
                       description="Train one DSNN configuration for a number of epochs, evaluate it on the "
                                   "validation split, measure energy with CodeCarbon, and write a run folder.")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, cifar10, cifar100, imagenet, digits, synthetic")
    p.add_argument("--data-dir", default=None, help="where the data set's files are (default: offline copies, then download)")
    p.add_argument("--model", default="mnist-conv", help="a name from `autodsnn models`")
    p.add_argument("--weights", default=None, help="start from this float checkpoint (ours)")
    p.add_argument("--pretrained", action="store_true", help="torchvision's pretrained weights (needs a network)")
    _add_dsnn_flags(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", default=1.0, type=float, help="budget in epochs; fractions allowed (default 1)")
    g.add_argument("--optimizer", "--opt", default="radam", type=str.lower)
    g.add_argument("--lr", default=0.01, type=float)
    g.add_argument("--momentum", default=0.0, type=float)
    g.add_argument("--weight-decay", "--wd", default=0.0, type=float)
    g.add_argument("--batch-size", "-b", default=64, type=int)
    g.add_argument("--schedule", default="constant", choices=["constant", "cosine", "step"])
    g.add_argument("--lr-step", default=0, type=int, help="step schedule: decay every N epochs")
    g.add_argument("--lr-gamma", default=0.1, type=float)
    g.add_argument("--val-fraction", default=0.1, type=float)
    g.add_argument("--train-subset", default=None, type=float, help="fraction of the training split to use")
    g.add_argument("--seed", default=0, type=int)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--resume-from", default=None, help="continue from a lower-budget checkpoint of this configuration")
    g.add_argument("--inference-kernels", default="float", choices=["float", "integer", "auto", "emulation"],
                   help="how the measured inference pass runs: deployed kernels in this mode, or the emulation")
    p.add_argument("--out", default=None, help="run folder (default runs/train-<model>-<type>-<time>)")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from .trial.run import HParams, Task, result_summary, train_trial

    act = args.activation_bits
    try:
        hp = HParams(shift_type=args.shift_type, shift_depth=args.shift_depth, weight_bits=args.weight_bits,
                     shift_max=args.shift_max, act_int_bits=act[0] if act else None,
                     act_frac_bits=act[1] if act else None, act_signed=not args.unsigned_activations,
                     rounding=args.rounding, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                     weight_decay=args.weight_decay, batch_size=args.batch_size, schedule=args.schedule,
                     lr_step=args.lr_step, lr_gamma=args.lr_gamma)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    _check_names(args.dataset, args.model)
    task = Task(dataset=args.dataset, model=args.model, data_dir=args.data_dir, val_fraction=args.val_fraction,
                train_subset=args.train_subset, weights=args.weights, pretrained=args.pretrained, device=args.device,
                inference_kernels=args.inference_kernels)
    out = Path(args.out or f"runs/train-{args.model}-{args.shift_type}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"training {args.model} on {args.dataset}: shift type {args.shift_type}, {args.epochs:g} epoch(s) -> {out}",
          flush=True)
    result = train_trial(hp, args.epochs, task=task, seed=args.seed, checkpoint_path=out / "checkpoint.pt",
                         resume_from=args.resume_from, export_path=out / "shift_codes.pt")
    (out / "metrics.json").write_text(json.dumps({"task": task.to_dict(), **result.to_dict()}, indent=2, default=str))
    if result.history:
        with open(out / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(result.history[0]))
            writer.writeheader()
            writer.writerows(result.history)
    print(result_summary(result))
    if result.ok:
        a = result.analytic
        print(f"analytic inference cost per image: {a['energy_pj_per_sample'] / 1e6:.3f} uJ, model size "
              f"{a['model_bits'] / 8e6:.3f} MB; {result.converted_layers} layers converted")
    if result.inference_seconds is not None:
        print(f"inference pass: {result.inference_samples} images in {result.inference_seconds:.3f} s via "
              f"{result.inference_path}, val acc {100 * (1 - (result.inference_error or 0.0)):.2f}%")
    print(f"wrote {out}/metrics.json")
    return 0 if result.ok else 1


def _check_names(dataset: str, model: str) -> None:
    from .zoo import data, models

    try:
        data.normalize_name(dataset)
        models.model_info(model) if not model.startswith("tv-") else None
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _add_cost_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="analytic inference cost (params, ops, bits, energy) of a model design")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--num-classes", default=10, type=int)
    p.add_argument("--input-size", nargs="+", type=int, default=None, help="C H W (default: the model's)")
    p.add_argument("--batch", default=1, type=int)
    _add_dsnn_flags(p)
    p.add_argument("--layers", action="store_true", help="print one row per layer")
    p.set_defaults(func=_cmd_cost)


def _cmd_cost(args: argparse.Namespace) -> int:
    from .zoo import models
    from .shift import ShiftConfig, ShiftConfigError, convert, cost

    try:
        info = models.model_info(args.model)
        shape = tuple(args.input_size) if args.input_size else info.input_size
        model = models.create_model(args.model, num_classes=args.num_classes, input_size=shape)
        if args.shift_type != "none":
            act = args.activation_bits
            cfg = ShiftConfig(mode=args.shift_type, weight_bits=args.weight_bits, shift_max=args.shift_max,
                              shift_depth=args.shift_depth, act_int_bits=act[0] if act else None,
                              act_frac_bits=act[1] if act else None, act_signed=not args.unsigned_activations)
            report = convert(model, cfg)
            print(report)
        c = cost(model, (args.batch, *shape))
    except (ValueError, ShiftConfigError) as exc:
        raise CLIError(str(exc)) from None
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
    sys.argv = [str(script)] + (["--quick"] if args.quick else []) + (["--json", args.json] if args.json else [])
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
    p = sub.add_parser("optimize", help="multi-fidelity multi-objective search for DSNN designs (SMAC + Dask)",
                       description="Search DSNN designs with SMAC (Hyperband + ParEGO) on Dask workers. With no "
                                   "arguments, runs the embedded default experiment (experiments/default.yaml).")
    p.add_argument("--experiment", default=None, help="experiment YAML (default: experiments/default.yaml)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--space", default=None, help="search space: dsnn, small, or a YAML path")
    p.add_argument("--objectives", default=None, help="comma-separated: error,energy,emissions,inference_energy,"
                                                         "analytic_energy,model_bits (two or three)")
    p.add_argument("--budget", default=None, help="wall clock for the whole run: 90s, 30m, 48h")
    p.add_argument("--trials", default=None, type=int, help="stop after this many trials")
    p.add_argument("--trial-timeout", default=None, help="cap one trial: e.g. 10m")
    p.add_argument("--min-budget", default=None, type=float, help="lowest fidelity in epochs")
    p.add_argument("--max-budget", default=None, type=float, help="highest fidelity in epochs")
    p.add_argument("--eta", default=None, type=int)
    p.add_argument("--train-subset", default=None, type=float)
    p.add_argument("--workers", default=None, type=int, help="local Dask worker processes (default 2)")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, tcp://host:port")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", default=None, type=int)
    p.add_argument("--run-dir", default=None, help="where the run is stored (default runs/<name>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the run in this directory")
    p.set_defaults(func=_cmd_optimize)


def _cmd_optimize(args: argparse.Namespace) -> int:
    from .search.experiment import Experiment, ExperimentError
    from .search.optimize import OptimizeError, optimize
    from .search.space import SpaceError
    from .store import Run, StoreError

    overrides = {"dataset": args.dataset, "data_dir": args.data_dir, "model": args.model, "space": args.space,
                 "objectives": args.objectives, "budget": args.budget, "trials": args.trials,
                 "trial_timeout": args.trial_timeout, "min_budget": args.min_budget, "max_budget": args.max_budget,
                 "eta": args.eta, "train_subset": args.train_subset, "workers": args.workers,
                 "scheduler": args.scheduler, "device": args.device, "seed": args.seed}
    try:
        if args.resume:
            with Run.open(args.resume) as run:
                saved = run.experiment
            experiment = Experiment.from_dict({**saved, **{k: v for k, v in overrides.items() if v is not None}})
            run_dir = Path(args.resume)
        else:
            experiment = Experiment.from_file(args.experiment or "default", **overrides)
            run_dir = Path(args.run_dir or f"runs/{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        summary = optimize(experiment, run_dir, resume=bool(args.resume))
    except (ExperimentError, SpaceError, StoreError, OptimizeError, ValueError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    print(summary.describe(experiment.objectives))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .search.experiment import Experiment
    from .search.optimize import summarize
    from .store import Run, StoreError

    try:
        with Run.open(args.run) as run:
            exp = Experiment.from_dict(run.experiment)
            summary = summarize(run, exp.objectives)
            left = (exp.budget - summary.elapsed) if exp.budget else None
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    print(summary.describe(exp.objectives))
    if left is not None:
        print(f"wall clock: {summary.elapsed:.0f}s used of {exp.budget:.0f}s ({max(left, 0):.0f}s left)")
    return 0


def _add_analysis_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pareto", help="Pareto front of a run: table, hypervolume, plot and CSV/JSON export",
                       description="Pareto front of a run, or with several runs (e.g. seeds) their hypervolumes "
                                   "under one reference point and the median front with its 25-75%% spread.")
    p.add_argument("run", nargs="+")
    p.add_argument("--objectives", default=None, help="two or three, comma-separated (default: the run's)")
    p.add_argument("--budget", default="max", help="max (default), all (one front per budget) or a number of epochs")
    p.add_argument("--ref", default=None, help="reference point for the hypervolume, comma-separated")
    p.add_argument("--export", default=None, help="plot file: .png, .svg or .pdf")
    p.add_argument("--csv", default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(func=_cmd_pareto)
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
    from .analysis.pareto import ParetoError, front_info
    from .analysis.plots import plot_front, point_label
    from .store import Run, StoreError

    if len(args.run) > 1:
        return _pareto_runs(args)
    try:
        ref = [float(v) for v in args.ref.split(",")] if args.ref else None
        with Run.open(args.run[0]) as run:
            objectives = _objectives(args.objectives)
            if args.budget == "all":
                budgets = sorted({t.budget for t in run.trials(status="ok")})
                infos = [front_info(run, objectives, b, ref) for b in budgets]
            else:
                infos = [front_info(run, objectives, args.budget if args.budget == "max" else float(args.budget), ref)]
    except (ParetoError, StoreError, ValueError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    rows = []
    for info in infos:
        obj = info.objectives
        print(f"budget {info.budget:g} epochs: {len(info.trials)} trials, {int(info.front_mask.sum())} on the front, "
              f"hypervolume {info.hypervolume:.6g} (reference {', '.join(f'{v:.4g}' for v in info.ref)})")
        for t in info.front:
            idx = info.trials.index(t)
            cmp = info.comparisons.get(idx)
            vs = "" if cmp is None else ("  dominates default" if cmp["dominates_default"] else "") + "  (" + ", ".join(
                f"{o} {v:+.1f}%" for o, v in cmp["change_percent"].items()) + " vs default)"
            tags = (" [knee]" if idx == info.knee_index else "") + (" [default]" if t.is_default else "")
            print(f"  trial {t.trial_id:>4}  " + "  ".join(f"{o} {t.objectives[o]:.4g}" for o in obj)
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
    if args.json:
        payload = [{"budget": i.budget, "objectives": list(i.objectives), "hypervolume": i.hypervolume,
                    "reference_point": i.ref.tolist(), "front": [r for r in rows if r["budget"] == i.budget]}
                   for i in infos]
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


def _export_plot(plot: Any, info: Any, path: str) -> None:
    try:
        print(f"wrote {plot(info, path)}")
    except ValueError as exc:  # an unknown file format, or a plot the objectives do not allow
        raise CLIError(str(exc)) from None


def _pareto_runs(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from .analysis.pareto import ParetoError, multi_run_info
    from .analysis.plots import plot_runs
    from .store import Run, StoreError

    try:
        ref = [float(v) for v in args.ref.split(",")] if args.ref else None
        with ExitStack() as stack:
            runs = [stack.enter_context(Run.open(r)) for r in args.run]
            info = multi_run_info(runs, _objectives(args.objectives), args.budget if args.budget == "max"
                                  else float(args.budget), ref)
    except (ParetoError, StoreError, ValueError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    q1, med, q3 = (float(v) for v in __import__("numpy").percentile(info.hypervolumes, [25, 50, 75]))
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


def _cmd_report(args: argparse.Namespace) -> int:
    from .analysis.pareto import ParetoError
    from .analysis.report import write_report
    from .store import StoreError

    try:
        path = write_report(args.run, args.out, _objectives(args.objectives))
    except (ParetoError, StoreError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    print(f"wrote {path}")
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    from .analysis.pareto import ParetoError
    from .analysis.retrain import RetrainError, load_config_file, pick_trial, retrain
    from .store import Run, StoreError
    from .trial.run import Task

    try:
        if args.from_config:
            config, chosen = load_config_file(args.from_config), f"configuration file {args.from_config}"
            exp: dict = {}
            if not (args.dataset and args.model and args.epochs):
                raise CLIError("--from-config needs --dataset, --model and --epochs")
        else:
            if not args.run:
                raise CLIError("give a run directory to pick from, or --from-config FILE")
            with Run.open(args.run) as run:
                exp = run.experiment
                config, chosen = pick_trial(run, args.pick, _objectives(None))
        fixed = exp.get("fixed") or {}
        task = Task(dataset=args.dataset or exp.get("dataset"), model=args.model or exp.get("model"),
                    data_dir=args.data_dir or exp.get("data_dir"), device=args.device or exp.get("device", "auto"))
        epochs = args.epochs or float(exp.get("max_budget"))
        out = Path(args.out or (Path(args.run) / f"retrain-{args.pick}" if args.run else "runs/retrain"))
        command = "autodsnn " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("autodsnn") else \
            f"autodsnn retrain {args.run or ''} --pick {args.pick} --epochs {epochs:g}".strip()
        print(f"retraining ({chosen}) for {epochs:g} epochs on all training data -> {out}", flush=True)
        card = retrain({k: v for k, v in config.items()}, task, epochs, out, seed=args.seed, chosen_by=chosen,
                       fixed=fixed, command=command)
    except (RetrainError, ParetoError, StoreError, ValueError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    print(f"test accuracy {100 * card['test_accuracy']:.2f}% ({card['test_samples']} images), training energy "
          f"{card['training_energy_kwh'] * 1e3:.4f} Wh; wrote {out}/model_card.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="autodsnn", description="Design, train and optimize deep shift neural networks.")
    parser.add_argument("--version", action="version", version=f"autodsnn {__version__}")
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
    p.add_argument("--quick", action="store_true", help="fewer repetitions (about 20 s)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(func=_cmd_bench)
    p = sub.add_parser("datasets", help="list data sets and where their files are")
    p.set_defaults(func=_cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"autodsnn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
