"""`retrain`: train the chosen configuration at full budget on train + validation, evaluate once on
the held-out test set, measure energy, and write the model, its frozen shift codes and a model
card (JSON + Markdown) that says how it was chosen and how to reproduce it.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from ..zoo import data as datasets
from ..trial.energy import EnergyMeter
from ..trial.loop import evaluate, train_epoch
from ..trial.optim import build_optimizer
from .pareto import ParetoError, front_info
from ..shift import deploy, export, freeze, inference_path
from ..store import Run
from ..trial.run import HParams, Task, build_model, resolve_device, _lr_factor

PICKS = ("knee", "min-error", "min-energy")


class RetrainError(ValueError):
    """The retraining request cannot be served; the message says what to change."""


def pick_trial(run: Run, pick: str, objectives: tuple[str, ...] | None = None) -> tuple[dict[str, Any], str]:
    """(configuration, how it was chosen) from a run: knee / min-error / min-energy of the front at
    the highest budget, or a trial id."""
    if pick.isdigit():
        rows = [t for t in run.trials() if t.trial_id == int(pick)]
        if not rows:
            raise RetrainError(f"run {run.path} has no trial {pick}: see `autodsnn status {run.path}`")
        return rows[0].config, f"trial {pick} of run {run.path}"
    if pick not in PICKS:
        raise RetrainError(f"unknown pick {pick!r}: use {', '.join(PICKS)} or a trial id")
    try:
        info = front_info(run, objectives)
    except ParetoError as exc:
        raise RetrainError(str(exc)) from None
    front = info.front
    if pick == "knee":
        chosen = info.trials[info.knee_index]
    else:
        objective = "error" if pick == "min-error" else next((o for o in info.objectives if o != "error"), None)
        if objective is None or objective not in info.objectives:
            raise RetrainError(f"--pick {pick} needs the objective in the run ({', '.join(info.objectives)})")
        chosen = min(front, key=lambda t: t.objectives[objective])
    return chosen.config, f"{pick} of the Pareto front at {info.budget:g} epochs (trial {chosen.trial_id}) of run {run.path}"


def retrain(config: Mapping[str, Any], task: Task, epochs: float, out_dir: str | Path, *, seed: int = 0,
            chosen_by: str = "given configuration", fixed: Mapping[str, Any] | None = None,
            command: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` for ``epochs`` on the whole training split (no validation part), evaluate
    once on the test set, write model.pt, shift_codes.pt, model_card.json and model_card.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hparams = HParams.from_dict({**(fixed or {}), **config})
    task = replace(task, val_fraction=0.0, train_subset=None)
    device = resolve_device(task.device)
    torch.manual_seed(seed)
    splits = datasets.load_dataset(task.dataset, data_dir=task.data_dir, val_fraction=0.0)
    if not hasattr(splits.train, "tensors"):
        raise RetrainError("retrain keeps data in memory; ImageFolder data sets are not supported yet")
    gen = torch.Generator().manual_seed(seed)
    train = datasets.TensorLoader.from_dataset(splits.train, hparams.batch_size, shuffle=True, generator=gen,
                                               augment=splits.info.augment)
    test = datasets.TensorLoader.from_dataset(splits.test, task.eval_batch_size)
    model, converted = build_model(hparams, task, splits.info)
    model.to(device)
    optimizer = build_optimizer(hparams.optimizer, model, hparams.lr, momentum=hparams.momentum,
                                weight_decay=hparams.weight_decay)
    base = [g["lr"] for g in optimizer.param_groups]
    history = []
    start = time.time()
    with EnergyMeter() as meter:
        for epoch in range(int(math.ceil(epochs))):
            for g, lr in zip(optimizer.param_groups, base):
                g["lr"] = lr * _lr_factor(hparams, epoch, epochs)
            frac = min(1.0, epochs - epoch)
            limit = None if frac >= 1.0 else max(1, int(round(frac * len(train))))
            stats = train_epoch(model, train, optimizer, device=device, max_batches=limit)
            history.append({"epoch": epoch + 1, "train_loss": stats.loss, "train_accuracy": stats.accuracy,
                            "seconds": stats.seconds})
            if progress:
                print(f"epoch {epoch + 1}/{math.ceil(epochs)}  loss {stats.loss:.4f}  train acc "
                      f"{100 * stats.accuracy:.2f}%  {stats.seconds:.1f}s", flush=True)
    freeze(model)
    test_stats = evaluate(model, test, device=device)
    deployed = _deployed_inference(model, test, device, test_stats.seconds) if converted else None
    torch.save({"model": model.state_dict(), "hparams": hparams.to_dict(), "task": task.to_dict()}, out / "model.pt")
    if converted:
        export(model, out / "shift_codes.pt")
    card = {
        "chosen_by": chosen_by, "configuration": hparams.to_dict(), "dataset": task.dataset, "model": task.model,
        "epochs": epochs, "seed": seed, "test_accuracy": test_stats.accuracy, "test_error": test_stats.error,
        "test_loss": test_stats.loss, "test_samples": test_stats.samples, "train_samples": len(splits.train),
        "converted_layers": converted, "training_energy_kwh": meter.reading.energy_kwh,
        "training_emissions_kg": meter.reading.emissions_kg, "energy_measured": meter.reading.measured,
        "wall_time_s": time.time() - start, "history": history, "deployed_inference": deployed,
        "files": {"model": "model.pt", "shift_codes": "shift_codes.pt" if converted else None},
        "reproduce": command or "",
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    (out / "model_card.md").write_text(_card_markdown(card))
    (out / "config.yaml").write_text(yaml.safe_dump(hparams.to_dict(), sort_keys=True))
    return card


def _deployed_row(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    return (f"\n| deployed ({d['path']}) | test accuracy {100 * d['test_accuracy']:.2f}%, "
            f"{d['images_per_second']:.0f} images/s (emulated: {d['emulated_images_per_second']:.0f}) |")


def _deployed_inference(model: torch.nn.Module, test: Any, device: torch.device, emulated_s: float) -> dict[str, Any]:
    """The same frozen model through the packed native kernels (float mode): the arithmetic it
    ships with, its test accuracy (equal to the emulated one up to float rounding) and speed."""
    runner = copy.deepcopy(model).eval()
    deploy(runner, "float")
    stats = evaluate(runner, test, device=device)
    return {"path": inference_path(runner), "test_accuracy": stats.accuracy,
            "images_per_second": stats.samples / max(stats.seconds, 1e-9),
            "emulated_images_per_second": stats.samples / max(emulated_s, 1e-9)}


def _card_markdown(card: dict[str, Any]) -> str:
    cfg = "\n".join(f"| {k} | {v} |" for k, v in sorted(card["configuration"].items()))
    measured = ", ".join(f"{k} {'measured' if v else 'estimated'}" for k, v in card["energy_measured"].items())
    return f"""# Model card: {card['model']} on {card['dataset']}

Chosen by: {card['chosen_by']}.

| metric | value |
|---|---|
| test accuracy | {100 * card['test_accuracy']:.2f}% ({card['test_samples']} test images, evaluated once) |
| training epochs | {card['epochs']:g} on {card['train_samples']} images (train + validation) |
| training energy | {card['training_energy_kwh']:.6f} kWh ({measured}) |
| training emissions | {card['training_emissions_kg']:.6f} kg CO2eq |
| shift layers | {card['converted_layers']} |{_deployed_row(card.get('deployed_inference'))}
| wall time | {card['wall_time_s']:.0f} s |

## Configuration

| hyperparameter | value |
|---|---|
{cfg}

## Reproduce

```
{card['reproduce']}
```
"""


def load_config_file(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise RetrainError(f"{path} must be a YAML mapping of hyperparameters (like a run's config.yaml)")
    return data
