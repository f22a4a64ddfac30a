"""Search spaces: YAML files (search_spaces/*.yaml) -> ConfigSpace, validated against `train`.

Schema, one entry per hyperparameter under ``hyperparameters:``::

    name: {choices: [a, b], default: a}                       # categorical
    name: {low: 0.001, high: 0.2, log: true, default: 0.01}   # float
    name: {low: 1, high: max_layers, type: int, default: 3}   # integer
    name: {..., when: {parent: [v1, v2]}}                     # active only for those parent values

``max_layers`` stands for the model's number of convertible layers (resolved at run time). Every
name must be a field of :class:`autodsnn.trial.HParams`; a misspelling is an error before any
trial runs.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping

import yaml
from ConfigSpace import (CategoricalHyperparameter, ConfigurationSpace, InCondition, UniformFloatHyperparameter,
                         UniformIntegerHyperparameter)

from ..errors import AutoDSNNError
from ..resources import project_folder
from ..trial import HParams

MAX_LAYERS = "max_layers"


class SpaceError(AutoDSNNError, ValueError):
    """A search space that `train` could not run; the message names the entry and the fix."""


def list_spaces() -> list[str]:
    return sorted(p.stem for p in project_folder("search_spaces").glob("*.yaml"))


def space_path(name_or_path: str | Path) -> Path:
    """A built-in space by name (``dsnn``, ``small``) or a YAML file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SpaceError(f"search space file {p} does not exist")
        return p
    builtin = project_folder("search_spaces") / f"{name_or_path}.yaml"
    if not builtin.exists():
        raise SpaceError(f"unknown search space {name_or_path!r}: use one of {', '.join(list_spaces())} or a YAML path")
    return builtin


def load_space_spec(name_or_path: str | Path) -> dict[str, Any]:
    path = space_path(name_or_path)
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("hyperparameters"), dict):
        raise SpaceError(f"{path} needs a 'hyperparameters:' mapping (see search_spaces/dsnn.yaml)")
    return spec


def _resolve(value: Any, max_layers: int) -> Any:
    return max_layers if value == MAX_LAYERS else value


def _check_entry(name: str, entry: Any) -> None:
    valid = HParams.names()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; valid names: {', '.join(valid)}"
        raise SpaceError(f"unknown hyperparameter {name!r} in search space{hint}")
    if not isinstance(entry, dict):
        raise SpaceError(f"hyperparameter {name!r} must be a mapping like {{low: 1, high: 5}} or {{choices: [...]}}")
    unknown = set(entry) - {"choices", "low", "high", "log", "type", "default", "when"}
    if unknown:
        raise SpaceError(f"hyperparameter {name!r} has unknown key {sorted(unknown)[0]!r}: "
                         "use choices/low/high/log/type/default/when")
    allowed = HParams.choices().get(name)
    if "choices" in entry and allowed is not None:
        bad = [c for c in entry["choices"] if str(c).lower() not in allowed]
        if bad:
            raise SpaceError(f"{name} choice {bad[0]!r} is not valid: use {', '.join(allowed)}")


def build_space(spec: Mapping[str, Any], *, max_layers: int, seed: int = 0) -> ConfigurationSpace:
    """A ConfigurationSpace from a parsed spec, ``max_layers`` resolved."""
    cs = ConfigurationSpace(name=str(spec.get("name", "space")), seed=seed)
    entries: dict[str, dict[str, Any]] = spec["hyperparameters"]
    hps = {}
    for name, entry in entries.items():
        _check_entry(name, entry)
        default = _resolve(entry.get("default"), max_layers)
        try:
            if "choices" in entry:
                choices = [str(c).lower() if isinstance(c, str) else c for c in entry["choices"]]
                hp = CategoricalHyperparameter(
                    name, choices, default_value=str(default).lower() if isinstance(default, str) else default)
            else:
                low, high = _resolve(entry["low"], max_layers), _resolve(entry["high"], max_layers)
                is_int = entry.get("type") == "int"
                cls = UniformIntegerHyperparameter if is_int else UniformFloatHyperparameter
                hp = cls(name, low, high, log=bool(entry.get("log", False)), default_value=default)
        except KeyError as exc:
            raise SpaceError(f"hyperparameter {name!r} needs {exc.args[0]!r} (or 'choices')") from None
        except (ValueError, TypeError) as exc:
            raise SpaceError(f"hyperparameter {name!r}: {str(exc).splitlines()[0]}") from None
        hps[name] = hp
    cs.add(list(hps.values()))
    conditions = []
    for name, entry in entries.items():
        for parent, values in (entry.get("when") or {}).items():
            if parent not in hps:
                raise SpaceError(f"hyperparameter {name!r} depends on {parent!r}, which is not in the space")
            values = [str(v).lower() if isinstance(v, str) else v for v in values]
            conditions.append(InCondition(hps[name], hps[parent], values))
    if conditions:
        cs.add(conditions)
    return cs


def load_space(name_or_path: str | Path, *, max_layers: int, seed: int = 0) -> ConfigurationSpace:
    return build_space(load_space_spec(name_or_path), max_layers=max_layers, seed=seed)
