"""Deployed shift kernels against float PyTorch: linear 4096x4096 (batch 1 and 64, weights warm
and cold) and ResNet-20 inference (batch 1 and 32). Same as `autodsnn bench kernels`.

    .venv/bin/python benchmarks/kernels.py            # writes benchmarks/results/kernels_cpu.json
"""
from __future__ import annotations

import argparse

from common import write_json

from autodsnn.kernel_bench import format_rows, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--name", default="kernels_cpu", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    result = run(quick=args.quick)
    print(f"DRAM read {result['dram_read_gbs']:.1f} GB/s, {result['threads']} threads, AVX-512: {result['avx512']}")
    print(format_rows(result["rows"]))
    print(f"wrote {write_json(args.name, result)}")


if __name__ == "__main__":
    main()
