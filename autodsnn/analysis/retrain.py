"""`retrain`: train the chosen configuration at full budget on train + validation, evaluate once on
the held-out test set, measure energy, and write the model, its frozen shift codes and a model
card (JSON + Markdown) that says how it was chosen and how to reproduce it.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from ..atomic import replaced_atomically, write_atomically
from ..errors import AutoDSNNError
from ..shift import export, freeze
from ..store import Run
from ..trial import HParams, Task
from ..trial.energy import EnergyMeter, format_emissions, format_energy
from ..trial.loop import evaluate
from ..trial.inference import profile_inference
from ..trial.training import (build_model, load_task_data, make_optimizer, resolve_device,
                              run_epochs)
from .pareto import ParetoError, front_info

PICKS = ("knee", "min-error", "min-energy")


class RetrainError(AutoDSNNError, ValueError):
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
    return chosen.config, (f"{pick} of the Pareto front at {info.budget:g} epochs (trial {chosen.trial_id}) "
                           f"of run {run.path}")


def retrain(config: Mapping[str, Any], task: Task, epochs: float, out_dir: str | Path, *, seed: int = 0,
            chosen_by: str = "given configuration", fixed: Mapping[str, Any] | None = None,
            command: str | None = None) -> dict[str, Any]:
    """Train ``config`` for ``epochs`` on the whole training split (no validation part), evaluate
    once on the test set, write model.pt, shift_codes.pt, model_card.json and model_card.md.
    The same pieces as a search trial (`autodsnn.trial.training`): data, model, optimizer, the
    epoch loop with its schedule and partial-epoch rule, the deployed inference pass."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hparams = HParams.from_dict({**(fixed or {}), **config})
    task = replace(task, val_fraction=0.0, train_subset=None)
    device = resolve_device(task.device)
    torch.manual_seed(seed)
    splits = load_task_data(task)
    shuffle = torch.Generator()
    train = splits.loader("train", hparams.batch_size, shuffle=True, generator=shuffle)
    test = splits.loader("test", task.eval_batch_size)
    model, converted = build_model(hparams, task, splits.info)
    model.to(device)
    optimizer = make_optimizer(hparams, model)
    start = time.time()
    with EnergyMeter(task.country) as meter:
        progress = run_epochs(model, optimizer, train, hparams, generator=shuffle, seed=seed, start=0.0, stop=epochs,
                              horizon=epochs, device=device, meter=meter)
    freeze(model)
    test_stats = evaluate(model, test, device=device)
    deployed = None
    if converted:  # the arithmetic it ships with: packed codes through the native kernels
        deployed = profile_inference(model, test, device, kernels="float", batch_sizes=(1, task.inference_batch),
                                     window_s=task.inference_window, repeats=task.inference_repeats,
                                     country=task.country)
    with replaced_atomically(out / "model.pt") as tmp:  # hours of training: never half a file
        torch.save({"model": model.state_dict(), "hparams": hparams.to_dict(), "task": task.to_dict()}, tmp)
    if converted:
        export(model, out / "shift_codes.pt")
    card = {
        "chosen_by": chosen_by, "configuration": hparams.to_dict(), "dataset": task.dataset, "model": task.model,
        "epochs": epochs, "seed": seed, "test_accuracy": test_stats.accuracy, "test_error": test_stats.error,
        "test_loss": test_stats.loss, "test_samples": test_stats.samples, "train_samples": len(splits.train),
        "converted_layers": converted, "training_energy_kwh": meter.reading.energy_kwh,
        "training_emissions_kg": meter.reading.emissions_kg, "energy_measured": meter.reading.measured,
        "wall_time_s": time.time() - start, "history": progress.history,
        "deployed_inference": None if deployed is None else {
            "path": deployed.path, "test_accuracy": 1 - deployed.error,
            "images_per_second": 1e3 / deployed.at(task.inference_batch)["latency_ms"],
            "emulated_images_per_second": test_stats.samples / max(test_stats.seconds, 1e-9),
            "latency_ms_batch1": deployed.at(1)["latency_ms"],
            "energy_uj_per_image": deployed.at(task.inference_batch)["energy_uj"], "profile": deployed.to_dict()},
        "files": {"model": "model.pt", "shift_codes": "shift_codes.pt" if converted else None},
        "reproduce": command or "",
    }
    write_atomically(out / "model_card.json", json.dumps(card, indent=2, default=str))
    write_atomically(out / "model_card.md", _card_markdown(card))
    write_atomically(out / "config.yaml", yaml.safe_dump(hparams.to_dict(), sort_keys=True))
    return card


def _deployed_row(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    return (f"\n| deployed ({d['path']}) | test accuracy {100 * d['test_accuracy']:.2f}%, "
            f"{d['images_per_second']:.0f} images/s (emulated: {d['emulated_images_per_second']:.0f}), "
            f"{d['latency_ms_batch1']:.3g} ms/image at batch 1, {_uj(d['energy_uj_per_image'])} |")


def _uj(value: float | None) -> str:
    return "energy missing" if value is None else f"{value:.3g} uJ/image"


def _card_markdown(card: dict[str, Any]) -> str:
    cfg = "\n".join(f"| {k} | {v} |" for k, v in sorted(card["configuration"].items()))
    measured = ", ".join(f"{k} {'measured' if v else 'estimated'}" for k, v in card["energy_measured"].items())
    return f"""# Model card: {card['model']} on {card['dataset']}

Chosen by: {card['chosen_by']}.

| metric | value |
|---|---|
| test accuracy | {100 * card['test_accuracy']:.2f}% ({card['test_samples']} test images, evaluated once) |
| training epochs | {card['epochs']:g} on {card['train_samples']} images (train + validation) |
| training energy | {format_energy(card['training_energy_kwh'])} ({measured}) |
| training emissions | {format_emissions(card['training_emissions_kg'])} |
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
