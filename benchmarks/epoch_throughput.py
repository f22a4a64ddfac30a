"""Training throughput of one epoch, float vs each shift mode (images/s and ratio to float).

Two workloads: CIFAR ResNet-20 on CIFAR-shaped data (synthetic 3x32x32 tensors, since CIFAR-10
cannot be downloaded here; the arithmetic is the same) and DeepShift's MNIST conv net on the real
MNIST training split. Interleaved: each round runs every mode once.

    python benchmarks/epoch_throughput.py [--cifar-images 5000] [--rounds 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics

import torch

from autodsnn.zoo.data import TensorLoader, load_dataset
from autodsnn.trial.loop import train_epoch
from autodsnn.zoo.models import create_model
from autodsnn.trial.optim import build_optimizer
from autodsnn.shift import ShiftConfig, convert

from common import markdown_table, write_json

MODES = {"float": None, "q": ShiftConfig(mode="q"), "ps": ShiftConfig(mode="ps"),
         "dense": ShiftConfig(mode="dense", weight_bits=3)}


def workloads(cifar_images: int) -> dict[str, tuple[str, torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    cifar_x = torch.randn(cifar_images, 3, 32, 32, generator=g)
    cifar_y = torch.randint(0, 10, (cifar_images,), generator=g)
    mnist = load_dataset("mnist")
    mx, my = mnist.train.tensors
    return {"resnet20 / CIFAR-shaped": ("resnet20", cifar_x, cifar_y, 128),
            "mnist-conv / MNIST": ("mnist-conv", mx, my, 64)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-images", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    rows, out = [], {}
    for label, (model_name, x, y, batch) in workloads(args.cifar_images).items():
        setups = {}
        for mode, cfg in MODES.items():
            torch.manual_seed(0)
            model = create_model(model_name, num_classes=10)
            if cfg is not None:
                convert(model, cfg)
            model.to(args.device)
            opt = build_optimizer("sgd", model, lr=0.01, momentum=0.9)
            setups[mode] = (model, opt)
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(args.rounds):
            for mode, (model, opt) in setups.items():
                loader = TensorLoader(x, y, batch, shuffle=True)
                stats = train_epoch(model, loader, opt, device=args.device)
                rates[mode].append(stats.samples / stats.seconds)
        base = statistics.median(rates["float"])
        out[label] = {}
        for mode, rs in rates.items():
            med = statistics.median(rs)
            out[label][mode] = {"images_per_s": med, "ratio_to_float": med / base, "epoch_images": len(x)}
            rows.append([label, mode, batch, len(x), f"{med:.0f}", f"{base / med:.3f}"])
    print(f"one training epoch, device {args.device}, threads {torch.get_num_threads()}, median of {args.rounds} "
          "interleaved rounds")
    print(markdown_table(["workload", "mode", "batch", "images", "images/s", "time x float"], rows))
    print(f"wrote {write_json('epoch_throughput_' + args.device.split(':')[0], {'args': vars(args), 'results': out})}")


if __name__ == "__main__":
    main()
