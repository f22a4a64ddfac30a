"""Prints what the setup installed; run at the end of scripts/setup.sh."""
import sys

def main() -> None:
    import torch
    from autodsnn import data
    found = {name: data.find_local(name) for name in ("mnist", "fashion-mnist")}
    print(f"[setup] ok: python {sys.version.split()[0]}, torch {torch.__version__}")
    for name, path in found.items():
        print(f"[setup] {name}: {path if path else 'not found locally'}")

if __name__ == "__main__":
    main()
