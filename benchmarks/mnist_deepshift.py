"""Reproduce DeepShift's MNIST table (train from scratch) with autodsnn.shift on real MNIST.

DeepShift's settings: 10 epochs, batch 64, SGD lr 0.01 momentum 0 (PS: RAdam lr 0.01), all layers
converted, 5-bit weights, float activations; trained on the 60,000 training images and scored
on the 10,000 test images, as their table is. Prints our test accuracy beside their published
and reproduced figures (../shared/anchors.md) and writes benchmarks/results/mnist_deepshift.json.

    python benchmarks/mnist_deepshift.py [--epochs 10] [--seeds 0 1 2] [--models mnist-fc mnist-conv]
                                         [--types float q ps ps-unscaled] [--recipe deepshift|cosine]

Types: "q" is DeepShift-Q's zero-free code set ("q+zero" adds the zero level autodsnn <= 0.2 had);
"ps" scales dL/dS by 2^round(P) as the paper's chain rule does, "ps-unscaled" passes dL/dW as
DeepShift's code does (ShiftConfig.sign_grad). Results are written after every run, so an
interrupted table keeps what finished.

Recipes: "deepshift" is theirs exactly (constant learning rate 0.01; SGD, RAdam for PS). "cosine"
is ours: RAdam for every type, the learning rate annealed to 0 over the epochs (cosine, per
batch), starting at 0.01 (0.02 for PS, whose sign and shift latents move in steps of 0.5 before a
weight changes), everything else unchanged.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from autodsnn.zoo.data import TensorLoader, load_dataset
from autodsnn.trial.loop import evaluate, train_epoch
from autodsnn.zoo.models import create_model
from autodsnn.trial.optim import build_optimizer
from autodsnn.shift import ShiftConfig, convert

from common import markdown_table, write_json

# (published, measured by running DeepShift's own code here) test accuracy in %
DEEPSHIFT = {
    ("mnist-fc", "float"): (96.92, 96.97), ("mnist-fc", "q"): (97.03, 96.95), ("mnist-fc", "ps"): (98.26, 98.51),
    ("mnist-conv", "float"): (98.75, 98.81), ("mnist-conv", "q"): (98.81, 98.70), ("mnist-conv", "ps"): (99.12, 99.02),
}
# type -> (mode, ShiftConfig options, optimizer); DeepShift's figures are those of the mode
TYPES = {"float": (None, {}, "sgd"), "q": ("q", {}, "sgd"), "q+zero": ("q", {"zero_level": True}, "sgd"),
         "ps": ("ps", {}, "radam"), "ps-unscaled": ("ps", {"sign_grad": "unscaled"}, "radam")}


RECIPES = ("deepshift", "cosine")
COSINE_LR = {"ps": 0.02}  # the cosine recipe's starting learning rate where it is not 0.01


def run(model_name: str, shift_type: str, epochs: int, batch: int, seed: int, recipe: str = "deepshift") -> dict:
    torch.manual_seed(seed)
    data = load_dataset("mnist", val_fraction=0.0)
    model = create_model(model_name, num_classes=10)
    mode, options, optimizer_name = TYPES[shift_type]
    if mode is not None:
        convert(model, ShiftConfig(mode=mode, weight_bits=5, shift_depth="all", **options))
    lr = 0.01
    if recipe == "cosine":
        optimizer_name, lr = "radam", COSINE_LR.get(mode, 0.01)
    optimizer = build_optimizer(optimizer_name, model, lr=lr, momentum=0.0)
    train = TensorLoader.from_dataset(data.train, batch, shuffle=True, generator=torch.Generator().manual_seed(seed))
    schedule = None
    if recipe == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train))
    test = TensorLoader.from_dataset(data.test, 1000)
    start = time.perf_counter()
    history = []
    for epoch in range(epochs):
        stats = train_epoch(model, train, optimizer, on_batch=(lambda i, loss: schedule.step()) if schedule else None)
        acc = 100 * evaluate(model, test).accuracy
        history.append({"epoch": epoch + 1, "train_loss": stats.loss, "test_accuracy": acc, "seconds": stats.seconds})
        print(f"  {model_name} {shift_type} epoch {epoch + 1}: loss {stats.loss:.4f} test acc {acc:.2f}% "
              f"({stats.seconds:.1f} s)", flush=True)
    return {"model": model_name, "type": shift_type, "seed": seed, "recipe": recipe,
            "lr": lr, "test_accuracy": history[-1]["test_accuracy"], "seconds": time.perf_counter() - start,
            "history": history}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--models", nargs="+", default=["mnist-fc", "mnist-conv"])
    ap.add_argument("--types", nargs="+", default=["float", "q", "ps"], choices=list(TYPES))
    ap.add_argument("--recipe", default="deepshift", choices=RECIPES, help="training recipe (see the docstring)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--merge", nargs="*", default=[], help="earlier result JSONs (other seeds) to include")
    ap.add_argument("--name", default="mnist_deepshift", help="result file name in benchmarks/results/")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for seed in args.seeds:
        for m in args.models:
            for t in args.types:
                results.append(run(m, t, args.epochs, args.batch, seed, args.recipe))
                write_json(args.name, {"args": vars(args), "results": results, "complete": False})
    for path in args.merge:
        earlier = json.loads(Path(path).read_text())
        results += [dict(r, seed=earlier["args"].get("seed", r.get("seed"))) if "seed" not in r else r
                    for r in earlier["results"]]
    rows = []
    for m in args.models:
        for t in args.types:
            accs = [r["test_accuracy"] for r in results if r["model"] == m and r["type"] == t]
            pub, measured = DEEPSHIFT[(m, TYPES[t][0] or "float")]
            mean = statistics.mean(accs)
            spread = f"{min(accs):.2f}-{max(accs):.2f}" if len(accs) > 1 else "-"
            rows.append([m, t, f"{mean:.2f}", spread, len(accs), f"{pub:.2f}", f"{measured:.2f}",
                         f"{mean - measured:+.2f}"])
    print(f"\nMNIST test accuracy (%), final epoch, {args.epochs} epochs, batch {args.batch}, recipe {args.recipe}")
    print(markdown_table(["model", "type", "autodsnn mean", "min-max", "seeds", "DeepShift published",
                          "DeepShift measured", "mean vs measured"], rows))
    print(f"wrote {write_json(args.name, {'args': vars(args), 'results': results, 'complete': True})}")


if __name__ == "__main__":
    main()
