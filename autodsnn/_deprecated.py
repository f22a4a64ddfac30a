"""Module paths of autodsnn 0.1 that moved into the subpackages: importing one still works for
this release, with a DeprecationWarning naming the new place."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

# old module -> the new modules whose names it offers, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "autodsnn.models": ("autodsnn.zoo.models",),
    "autodsnn.data": ("autodsnn.zoo.data",),
    "autodsnn.train": ("autodsnn.trial",),
    "autodsnn.loop": ("autodsnn.trial.loop",),
    "autodsnn.optim": ("autodsnn.trial.optim",),
    "autodsnn.energy": ("autodsnn.trial.energy",),
    "autodsnn.space": ("autodsnn.search.space",),
    "autodsnn.experiment": ("autodsnn.search.experiment",),
    "autodsnn.optimize": ("autodsnn.search", "autodsnn.analysis"),
    "autodsnn.worker": ("autodsnn.search.worker",),
    "autodsnn.pareto": ("autodsnn.analysis.pareto",),
    "autodsnn.plots": ("autodsnn.analysis.plots",),
    "autodsnn.report": ("autodsnn.analysis.report",),
    "autodsnn.retrain": ("autodsnn.analysis.retrain",),
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: Any) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        targets = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {' and '.join(targets)}; the old path will be removed in the "
                      "next release", DeprecationWarning, stacklevel=2)
        modules = [importlib.import_module(t) for t in targets]

        def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562 module attribute hook
            for m in modules:
                if hasattr(m, name):
                    return getattr(m, name)
            raise AttributeError(f"module {module.__name__!r} (moved to {' and '.join(targets)}) has no "
                                 f"attribute {name!r}")

        module.__getattr__ = __getattr__  # type: ignore[attr-defined]


def install() -> None:
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
