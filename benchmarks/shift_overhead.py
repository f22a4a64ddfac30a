"""Training-step cost of shift layers against float: CIFAR ResNet-20, batch 64, CPU.

Interleaved rounds (every configuration runs a few steps each round, so machine noise hits all
alike); the table reports the median step time and its ratio to float.

    python benchmarks/shift_overhead.py [--rounds 7] [--steps 5] [--batch 64] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from autodsnn.zoo.models import create_model
from autodsnn.trial.optim import build_optimizer
from autodsnn.shift import ShiftConfig, convert

from common import markdown_table, write_json

CONFIGS = {
    "float": None,
    "q": ShiftConfig(mode="q"),
    "ps": ShiftConfig(mode="ps"),
    "dense": ShiftConfig(mode="dense", weight_bits=3),
    "q + act 8.8": ShiftConfig(mode="q", act_int_bits=8, act_frac_bits=8),
    "ps + act 8.8": ShiftConfig(mode="ps", act_int_bits=8, act_frac_bits=8),
    "dense + act 8.8": ShiftConfig(mode="dense", weight_bits=3, act_int_bits=8, act_frac_bits=8),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    setups = {}
    for name, cfg in CONFIGS.items():
        model = create_model(args.model, num_classes=10)
        if cfg is not None:
            convert(model, cfg)
        opt = build_optimizer("sgd", model, lr=0.01, momentum=0.9)
        setups[name] = (model.train(), opt)

    def step(model, opt):  # noqa: ANN001, ANN202
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times: dict[str, list[float]] = {n: [] for n in setups}
    for r in range(args.rounds + 1):
        for name, (model, opt) in setups.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step(model, opt)
                if r > 0:  # round 0 warms up allocators and caches
                    times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["float"])
    rows, out = [], {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"median_ms": med * 1e3, "ratio_to_float": med / base, "samples": len(ts)}
        rows.append([name, f"{med * 1e3:.1f}", f"{med / base:.3f}"])
    print(f"{args.model} training step, batch {args.batch}, CPU threads {torch.get_num_threads()}, "
          f"median of {args.rounds * args.steps} interleaved steps")
    print(markdown_table(["configuration", "step ms", "x float"], rows))
    path = write_json("shift_overhead", {"model": args.model, "batch": args.batch, "threads": torch.get_num_threads(),
                                         "results": out})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
