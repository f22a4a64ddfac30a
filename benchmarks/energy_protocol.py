"""Inference energy and latency per image, measured by the trial's own protocol
(`autodsnn.trial.inference.profile_inference`): float PyTorch against DeepShift-PS and DenseShift
through the deployed native kernels (and PS through the training emulation), for ResNet-20 and
DeepShift's MNIST conv net, at batch 1 and 64, repeated metered windows, median and IQR, beside
the analytic model's figure. Says which parts this machine measured and which it estimated.

    .venv/bin/python benchmarks/energy_protocol.py                 # 10 x 1 s windows per figure
    .venv/bin/python benchmarks/energy_protocol.py --quick         # 3 x 0.25 s
"""
from __future__ import annotations

import argparse

import torch
from common import markdown_table, write_json

from autodsnn.shift import ShiftConfig, convert, cost
from autodsnn.trial.inference import profile_inference
from autodsnn.zoo import create_model

WORKLOADS = (("resnet20", (3, 32, 32)), ("mnist-conv", (1, 28, 28)))
VARIANTS = (("float (torch)", None, "float"), ("PS 5-bit, deployed", "ps", "float"),
            ("dense 3-bit, deployed", "dense", "float"), ("PS 5-bit, emulation", "ps", "emulation"))


def build(name: str, shape: tuple[int, int, int], mode: str | None) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, input_size=shape)
    if mode is not None:
        bits = 3 if mode == "dense" else 5
        convert(model, ShiftConfig(mode=mode, weight_bits=bits, shift_max="auto"),
                example_inputs=torch.zeros(1, *shape))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 windows of 0.25 s instead of 10 of 1 s")
    parser.add_argument("--name", default="energy_protocol", help="results file (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    window, repeats = (0.25, 3) if args.quick else (1.0, 10)
    rows, table = [], []
    for name, shape in WORKLOADS:
        batches = [(torch.randn(64, *shape), torch.randint(0, 10, (64,)))]
        for label, mode, kernels in VARIANTS:
            model = build(name, shape, mode)
            analytic_uj = cost(model, (1, *shape)).total_energy_pj / 1e6
            profile = profile_inference(model, batches, torch.device("cpu"), kernels=kernels, batch_sizes=(1, 64),
                                        window_s=window, repeats=repeats)
            for b in profile.batches:
                s = b.summary()
                rows.append({"model": name, "variant": label, "path": profile.path, "analytic_uj": analytic_uj,
                             "idle_watts": profile.idle_watts, "methods": profile.methods, **s})
                table.append([name, label, profile.path, s["batch_size"], _iqr(s["latency_ms"], s["latency_ms_iqr"]),
                              _iqr(s["energy_uj"], s["energy_uj_iqr"]), _iqr(s["dynamic_uj"], s["dynamic_uj_iqr"]),
                              f"{analytic_uj:.3g}"])
    methods = rows[0]["methods"] if rows else {}
    print(f"{repeats} windows of {window:g} s per figure; idle power {rows[0]['idle_watts']:.3g} W as metered; "
          f"energy parts: " + ", ".join(f"{k}: {v}" for k, v in methods.items()))
    print(markdown_table(["model", "variant", "path", "batch", "ms/image (IQR)", "uJ/image total (IQR)",
                          "uJ/image dynamic (IQR)", "analytic uJ/image"], table))
    print(f"wrote {write_json(args.name, {'window_s': window, 'repeats': repeats, 'rows': rows})}")


def _iqr(median: float | None, iqr: float | None) -> str:
    return "missing" if median is None else f"{median:.3g} ({iqr:.2g})"


if __name__ == "__main__":
    main()
