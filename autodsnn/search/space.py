"""Search spaces: YAML files (search_spaces/*.yaml) -> ConfigSpace, validated against `train`.

Schema, one entry per hyperparameter under ``hyperparameters:``::

    name: {choices: [a, b], default: a}                       # categorical
    name: {low: 0.001, high: 0.2, log: true, default: 0.01}   # float
    name: {low: 1, high: max_layers, type: int, default: 3}   # integer
    name: {..., when: {parent: [v1, v2]}}                     # active only for those parent values
    name: {..., when: {a: [v1], b: v2}}                       # several parents: all must hold (AND)
    name: {..., when_any: [{a: [v1]}, {b: v2, c: [v3]}]}      # any item holds (OR); each item is an AND

and, at the top level, combinations no configuration may take::

    forbidden:
      - {a: v1, b: [v2, v3]}    # a == v1 and b in {v2, v3} together is forbidden

A value is a scalar (equals) or a list (in). ``when`` and ``when_any`` together must both hold.
``max_layers`` stands for the model's number of convertible layers (resolved at run time). Every
name must be a field of :class:`autodsnn.trial.HParams`; a misspelling is an error before any
trial runs. Every mistake in a file is a one-line :class:`SpaceError` naming the file, the entry
and the fix, ConfigSpace's own complaints included. Conditions and clauses map onto ConfigSpace's
``InCondition``, ``AndConjunction``, ``OrConjunction``, ``ForbiddenEqualsClause``/``ForbiddenInClause``
and ``ForbiddenAndConjunction``; a parent that is inactive never satisfies a condition, and a
clause naming an inactive hyperparameter does not apply.
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

import numpy as np
import yaml
from ConfigSpace import (AndConjunction, CategoricalHyperparameter, ConfigurationSpace, Constant,
                         ForbiddenAndConjunction, ForbiddenEqualsClause, ForbiddenInClause, ForbiddenValueError,
                         InCondition, OrConjunction, UniformFloatHyperparameter, UniformIntegerHyperparameter)

from ..errors import AutoDSNNError
from ..resources import project_folder
from ..trial import HParams, HParamsError
from ..trial.hparams import LAYER_BITS_KEY, LAYER_TYPE_KEY, shift_types

MAX_LAYERS = "max_layers"
TOP_KEYS = ("name", "hyperparameters", "forbidden", "per_layer")
PER_LAYER_KEYS = ("granularity", "types", "bits", "default")
GRANULARITIES = ("layer", "block", "stage")
ENTRY_KEYS = ("choices", "low", "high", "type", "log", "default", "when", "when_any")
SCHEMA_HINT = "see the schema at the top of search_spaces/dsnn.yaml"
# ConfigSpace complains mostly with ValueErrors, but also with numpy TypeErrors, KeyErrors and a
# ZeroDivisionError (empty choices), in text that names neither the file nor, often, the entry.
CONFIGSPACE_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError, AssertionError)


class SpaceError(AutoDSNNError, ValueError):
    """A search space that `train` could not run; the message names the file, the entry and the fix."""


def list_spaces() -> list[str]:
    """The built-in spaces' names."""
    return sorted(p.stem for p in project_folder("search_spaces").glob("*.yaml"))


def space_path(name_or_path: str | Path) -> Path:
    """A built-in space by name (``dsnn``, ``small``) or a YAML file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SpaceError(f"search space file {p} does not exist: check the path, or use a built-in space "
                             f"({', '.join(list_spaces())})")
        return p
    builtin = project_folder("search_spaces") / f"{name_or_path}.yaml"
    if not builtin.exists():
        raise SpaceError(f"unknown search space {name_or_path!r}: use one of {', '.join(list_spaces())} or a YAML path")
    return builtin


def one_line(text: str, limit: int = 300) -> str:
    """``text`` (a multi-line library message) as one line, shortened past ``limit`` characters."""
    lines = [" ".join(line.split()) for line in str(text).splitlines()]
    flat = "; ".join(line for line in lines if line)
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def _fail(source: str | Path, where: str, problem: str, fix: str) -> NoReturn:
    raise SpaceError(one_line(f"{source}: {where}: {problem}: {fix}", limit=1000))


# --------------------------------------------------------------------------------------- reading

class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice is an error (PyYAML keeps the last silently)."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, Hashable) and key in first_line:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is given twice (first on line {first_line[key] + 1})", key_node.start_mark)
        if isinstance(key, Hashable):
            first_line[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """One line: where the YAML broke (the line's own text, which names the entry) and the fix."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return f"{path}: not valid YAML ({one_line(str(exc))}): fix the syntax ({SCHEMA_HINT})"
    lines = text.splitlines()
    # The construct that was open (a flow mapping's first line) names the entry; the problem may be lines later.
    context = getattr(exc, "context_mark", None)
    start = context.line if context is not None and context.line <= mark.line else mark.line
    shown = lines[start].strip() if start < len(lines) else "end of file"
    problem = ", ".join(p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
    if "given twice" in problem:
        fix, at = "keep one of them", ""
    else:
        fix = "fix the syntax there, e.g. `lr: {low: 0.001, high: 0.1, log: true, default: 0.01}`"
        at = f" (found on line {mark.line + 1}, column {mark.column + 1})" if mark.line != start else \
            f" (column {mark.column + 1})"
    return one_line(f"{path}: line {start + 1} `{shown}`: not valid YAML: {problem or exc}{at}: {fix}", limit=1000)


def load_space_spec(name_or_path: str | Path) -> dict[str, Any]:
    """The parsed YAML of a space (a mapping with ``hyperparameters:``), not yet checked entry by entry."""
    path = space_path(name_or_path)
    text = path.read_text()
    try:
        spec = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpaceError(_yaml_problem(path, text, exc)) from None
    _check_top_level(path, spec)
    return spec


def _check_top_level(source: str | Path, spec: Any) -> None:
    if not isinstance(spec, Mapping):
        held = "nothing" if spec is None else f"a {type(spec).__name__}"
        _fail(source, "top level", f"the file holds {held}, not a mapping",
              f"start it with `hyperparameters:` and one entry per hyperparameter ({SCHEMA_HINT})")
    unknown = [k for k in spec if k not in TOP_KEYS]
    if unknown:
        _fail(source, "top level", f"unknown key {unknown[0]!r}", _use_one_of(unknown[0], TOP_KEYS))
    if not isinstance(spec.get("hyperparameters"), Mapping) or not spec["hyperparameters"]:
        _fail(source, "hyperparameters", "a non-empty 'hyperparameters:' mapping is needed",
              f"add one entry per hyperparameter, e.g. `lr: {{low: 0.001, high: 0.1, default: 0.01}}` ({SCHEMA_HINT})")


def _use_one_of(word: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(valid), n=1)
    return f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(valid)}"


# ------------------------------------------------------------------------------------- checking

def _hparam_like(word: str) -> str | None:
    """The HParams field ``word`` was probably meant to be: its `train` flag (``wd``, ``shift-type``),
    the spelled-out ``learning_rate``, or the closest name."""
    aliases = {"learning_rate": "lr"}
    for f in dataclasses.fields(HParams):
        for flag in f.metadata.get("flags", ()):
            if len(flag.lstrip("-")) > 1:
                aliases[flag.lstrip("-").replace("-", "_")] = f.name
    key = word.lower().replace("-", "_")
    if key in aliases:
        return aliases[key]
    close = difflib.get_close_matches(key, [*HParams.names(), *aliases], n=1)
    return aliases.get(close[0], close[0]) if close else None


def _norm(value: Any) -> Any:
    """Categorical values compare case-insensitively (``PS`` is ``ps``), as `train` reads them."""
    return value.lower() if isinstance(value, str) else value


def _yaml_float(value: float) -> str:
    """``value`` as YAML 1.1 reads a float: 1.0e-3, not 1e-3."""
    mantissa, _, exponent = repr(value).partition("e")
    mantissa = mantissa if "." in mantissa else mantissa + ".0"
    return mantissa + (f"e{exponent if exponent[0] in '+-' else '+' + exponent}" if exponent else "")


def _show(value: Any) -> str:
    """A YAML value as the user wrote it, on one line."""
    return one_line(yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("...\n"))


@dataclass
class _Param:
    """One hyperparameter entry, checked: a categorical (``choices``) or a numeric range."""

    name: str
    default: Any
    choices: list[Any] | None = None
    low: float | int = 0
    high: float | int = 0
    is_int: bool = False
    log: bool = False
    constant: bool = False            # low == high because max_layers collapsed the range
    when: dict[str, list[Any]] = field(default_factory=dict)
    when_any: list[dict[str, list[Any]]] = field(default_factory=list)

    def describe(self) -> str:
        if self.choices is not None:
            return f"one of {', '.join(map(str, self.choices))}"
        return f"{'an integer' if self.is_int else 'a number'} in [{self.low}, {self.high}]"

    def legal(self, value: Any) -> bool:
        if self.choices is not None:
            return _norm(value) in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (not self.is_int or float(value).is_integer())


class _Checker:
    """Checks one file's spec entry by entry; every failure names ``source`` and the entry."""

    def __init__(self, source: str | Path, max_layers: int) -> None:
        self.source, self.max_layers = source, max_layers
        self.params: dict[str, _Param] = {}

    def fail(self, where: str, problem: str, fix: str) -> NoReturn:
        _fail(self.source, where, problem, fix)

    def number(self, where: str, key: str, value: Any) -> tuple[float | int, bool]:
        """A bound or default as a number (``max_layers`` resolved) and whether it came from max_layers."""
        if value == MAX_LAYERS:
            return self.max_layers, True
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    pass
                else:  # PyYAML reads 1e-3 (no dot, unsigned exponent) as text
                    self.fail(where, f"{key} {value!r} is read as text by YAML",
                              f"write it with a dot and a signed exponent: {key}: {_yaml_float(float(value))}")
            self.fail(where, f"{key} {_show(value)} is not a number", f"give a number (or {MAX_LAYERS!r})")
        if not math.isfinite(value):
            self.fail(where, f"{key} {value} is not a finite number", f"give a finite {key}")
        return value, False

    def default(self, where: str, entry: dict[str, Any]) -> Any:
        if entry.get("default") is None:
            self.fail(where, "has no default", "add `default:` (the default configuration is the baseline every run "
                                               "is compared with)")
        return entry["default"]

    # --- one hyperparameter

    def param(self, name: Any, entry: Any) -> _Param:
        valid = HParams.names()
        if name not in valid and not str(name).startswith((LAYER_TYPE_KEY, LAYER_BITS_KEY)):
            close = _hparam_like(str(name))
            hint = f"(did you mean {close!r}?)" if close else f"(valid names: {', '.join(valid)})"
            raise SpaceError(f"{self.source}: unknown hyperparameter {name!r} in search space {hint}: space names "
                             "are the fields of autodsnn.trial.HParams (the `autodsnn train` options)")
        where = f"hyperparameter {name!r}"
        if not isinstance(entry, dict):
            self.fail(where, f"{_show(entry)} is not a mapping",
                      "write {low: 1, high: 5, default: 3} or {choices: [a, b], default: a}")
        unknown = [k for k in entry if k not in ENTRY_KEYS]
        if unknown:
            self.fail(where, f"unknown key {unknown[0]!r}", _use_one_of(unknown[0], ENTRY_KEYS))
        if "choices" in entry:
            param = self.categorical(name, where, entry)
        elif "low" in entry or "high" in entry:
            param = self.numeric(name, where, entry)
        else:
            self.fail(where, "has neither choices nor low/high",
                      "add `choices: [...]` (categorical) or `low:`/`high:` (numeric)")
        return param

    def categorical(self, name: str, where: str, entry: dict[str, Any]) -> _Param:
        extra = [k for k in ("low", "high", "log", "type") if k in entry]
        if extra:
            self.fail(where, f"has both choices and {extra[0]!r}",
                      "use either `choices:` (categorical) or `low:`/`high:` (numeric)")
        raw = entry["choices"]
        if not isinstance(raw, list) or not raw:
            self.fail(where, f"choices {_show(raw)} is not a non-empty list", "write choices: [a, b, ...]")
        bad = [c for c in raw if isinstance(c, (list, dict)) or c is None]
        if bad:
            self.fail(where, f"choice {_show(bad[0])} is not a single value",
                      "list plain values: choices: [a, b, ...]")
        choices = [_norm(c) for c in raw]
        twice = [c for i, c in enumerate(choices) if c in choices[:i]]
        if twice:
            self.fail(where, f"choice {twice[0]!r} is listed twice", "list each choice once")
        allowed = HParams.choices().get(name)
        if allowed is not None:
            wrong = [c for c in raw if str(c).lower() not in allowed]
            if wrong:  # (the wording "NAME choice 'X'" is relied on by callers' messages)
                raise SpaceError(f"{self.source}: {name} choice {wrong[0]!r} is not valid for hyperparameter "
                                 f"{name!r}: use {', '.join(allowed)}")
        default = _norm(self.default(where, entry))
        if default not in choices:
            self.fail(where, f"default {_show(entry['default'])} is not among its choices",
                      f"use one of {', '.join(map(str, choices))}")
        return _Param(name, default, choices=choices)

    def numeric(self, name: str, where: str, entry: dict[str, Any]) -> _Param:
        allowed = HParams.choices().get(name)
        if allowed is not None:
            self.fail(where, f"{name} takes one of {', '.join(allowed)}, not a numeric range",
                      f"write choices: [{', '.join(allowed)}] instead of low/high")
        for key in ("low", "high"):
            if key not in entry:
                self.fail(where, f"has no {key!r}", "give both `low:` and `high:` (or `choices:`)")
        kind = entry.get("type", "float")
        if kind not in ("int", "float"):
            self.fail(where, f"type {_show(kind)} is not a numeric type", "write `type: int` or `type: float`")
        log = entry.get("log", False)
        if not isinstance(log, bool):
            self.fail(where, f"log {_show(log)} is not true or false", "write `log: true` or leave it out")
        low, low_ml = self.number(where, "low", entry["low"])
        high, high_ml = self.number(where, "high", entry["high"])
        default, _ = self.number(where, "default", self.default(where, entry))
        is_int = kind == "int"
        if is_int:
            for key, value in (("low", low), ("high", high), ("default", default)):
                if not float(value).is_integer():
                    self.fail(where, f"{key} {value} is not an integer but the type is int",
                              f"give an integer {key}, or drop `type: int` for a float range")
            low, high, default = int(low), int(high), int(default)
        ml = f" ({MAX_LAYERS} is {self.max_layers} for this model)" if low_ml or high_ml else ""
        constant = low == high and (low_ml or high_ml)  # e.g. shift depth 1..max_layers on a one-layer model
        if low > high or (low == high and not constant):
            self.fail(where, f"low {low} is not below high {high}{ml}",
                      "make low < high (to fix a value for every trial, put it in the experiment's `fixed:`)")
        if log and low <= 0:
            self.fail(where, f"log scale needs low > 0, got low {low}",
                      "raise low above 0 (e.g. 1.0e-6) or drop `log: true`")
        if not low <= default <= high:
            self.fail(where, f"default {default} is outside [{low}, {high}]{ml}",
                      "move the default into the range or widen low/high")
        return _Param(name, default, low=low, high=high, is_int=is_int, log=log, constant=bool(constant))

    # --- conditions

    def values(self, where: str, parent: _Param, raw: Any) -> list[Any]:
        """A condition's or forbidden clause's value(s) for ``parent``, each checked legal."""
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            self.fail(where, f"no values given for {parent.name!r}", f"list values of {parent.name}: "
                                                                     f"{parent.describe()}")
        out = []
        for value in items:
            value = self.max_layers if value == MAX_LAYERS and parent.choices is None else value
            if not parent.legal(value):
                self.fail(where, f"{parent.name} cannot take {_show(value)}", f"use {parent.describe()}")
            value = _norm(value) if parent.choices is not None else value
            out.append(int(value) if parent.is_int else value)
        return out

    def clause(self, where: str, raw: Any, owner: str | None) -> dict[str, list[Any]]:
        """``{parent: value(s), ...}`` with every parent in the space and every value legal; ``owner``:
        the conditioned hyperparameter (None: a forbidden clause)."""
        if not isinstance(raw, dict) or not raw:
            self.fail(where, f"{_show(raw)} is not a non-empty mapping of hyperparameter -> value(s)",
                      "write {parent: [v1, v2]} (several parents: all must hold)" if owner else
                      "write {a: v1, b: [v2, v3]} (that combination is forbidden)")
        out = {}
        for parent, raw_values in raw.items():
            if parent == owner:
                self.fail(where, f"{owner!r} depends on itself", "name another hyperparameter as the parent")
            if parent not in self.params:
                hint = (f"add {parent!r} to hyperparameters" if parent in HParams.names()
                        else _use_one_of(parent, list(self.params)))
                self.fail(where, f"{parent!r} is not a hyperparameter of this space", hint)
            out[parent] = self.values(where, self.params[parent], raw_values)
        return out

    def conditions(self, entries: Mapping[str, dict[str, Any]]) -> None:
        for name, entry in entries.items():
            param = self.params[name]
            where = f"hyperparameter {name!r}"
            if entry.get("when") is not None:
                param.when = self.clause(f"{where}, when", entry["when"], name)
            if entry.get("when_any") is not None:
                raw = entry["when_any"]
                if not isinstance(raw, list) or not raw:
                    self.fail(f"{where}, when_any", f"{_show(raw)} is not a non-empty list",
                              "write when_any: [{a: [v1]}, {b: [v2]}] (any item holds)")
                param.when_any = [self.clause(f"{where}, when_any item {i + 1}", item, name)
                                  for i, item in enumerate(raw)]
        self.cycles()

    def conditions_can_hold(self, forbidden: list[dict[str, list[Any]]]) -> None:
        """Fail on a condition (``when``, or one ``when_any`` item with ``when``) that no
        configuration can meet: it contradicts ``when``, or the forbidden clauses forbid every
        configuration it allows (a parent's own condition is not followed further, so a condition
        reported can truly never hold; a rarer impossibility may pass unreported)."""
        for name, p in self.params.items():
            if (not p.when and not p.when_any) or name.startswith(LAYER_BITS_KEY):
                # a per_layer group's bits follow its type, a condition the user did not write: a
                # clause pinning the group to float (`{type:conv1: [q, ps]}`) is how one keeps it float
                continue
            for i, item in enumerate(p.when_any or [{}]):
                where = (f"hyperparameter {name!r}, when_any item {i + 1} {_show(item)}" if p.when_any
                         else f"hyperparameter {name!r}, when {_show(p.when)}")
                merged = _both(p.when, item)
                if merged is None:
                    self.fail(where, f"can never hold: it contradicts when {_show(p.when)}",
                              "remove the item, or change the when")
                blockers = _forbidding_all(merged, forbidden, self.params)
                if blockers:
                    never = f" ({name} would never be active)" if len(p.when_any) <= 1 else ""
                    self.fail(where, f"can never hold: forbidden clause{'s' if len(blockers) > 1 else ''} "
                              f"{', '.join(str(b + 1) for b in blockers)} forbid{'' if len(blockers) > 1 else 's'} "
                              f"every combination it allows{never}",
                              "remove it, or narrow the forbidden clause" if p.when_any else
                              "change the condition, or narrow the forbidden clause")

    def cycles(self) -> None:
        parents = {n: set(p.when).union(*p.when_any) for n, p in self.params.items()}
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for parent in sorted(parents[node]):
                if state.get(parent) == 1:
                    loop = path[path.index(parent):] + [parent]
                    self.fail(f"hyperparameter {node!r}", f"conditions form a cycle {' -> '.join(loop)} "
                                                          "(each depends on the next)",
                              "drop one of these conditions: a hyperparameter cannot depend on itself")
                if parent not in state:
                    visit(parent, path + [parent])
            state[node] = 2

        for name in self.params:
            if name not in state:
                visit(name, [name])

    def forbidden(self, raw: Any) -> list[dict[str, list[Any]]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.fail("forbidden", f"{_show(raw)} is not a list",
                      "write forbidden: [{a: v1, b: [v2, v3]}, ...] (each item forbids that combination)")
        return [self.clause(f"forbidden clause {i + 1} {_show(item)}", item, None) for i, item in enumerate(raw)]


# ------------------------------------------------------------------------------------- building

def _both(when: dict[str, list[Any]], item: dict[str, list[Any]]) -> dict[str, list[Any]] | None:
    """The condition ``when`` AND ``item``, one value list per parent; None if they contradict."""
    merged = dict(when)
    for parent, values in item.items():
        if parent in merged:
            values = [v for v in merged[parent] if v in values]
            if not values:
                return None
        merged[parent] = values
    return merged


_ANY_OTHER = object()  # a value no forbidden clause names: inactive, or an unnamed number


def _forbidding_all(condition: dict[str, list[Any]], forbidden: list[dict[str, list[Any]]],
                    params: Mapping[str, _Param], limit: int = 100_000) -> list[int]:
    """Indices of the forbidden clauses that, together, forbid every configuration meeting
    ``condition``; empty when one is allowed (or when more than ``limit`` combinations would need
    checking). Brute force over the values that matter: the condition's own, and for every other
    hyperparameter a clause names, its choices, plus "something else" where it can be inactive or
    take a value no clause names (which escapes every clause naming it)."""
    domains: dict[str, list[Any]] = dict(condition)
    for clause in forbidden:
        for name in clause:
            if name in domains:
                continue
            p = params[name]
            named = {v for c in forbidden for v in c.get(name, [])}
            values = list(p.choices) if p.choices is not None else sorted(named)
            escapes = p.choices is None or bool(p.when or p.when_any)
            domains[name] = values + ([_ANY_OTHER] if escapes else [])
    if math.prod(len(v) for v in domains.values()) > limit:
        return []
    names = list(domains)
    used: set[int] = set()
    for values in itertools.product(*(domains[n] for n in names)):
        point = dict(zip(names, values))
        hit = next((i for i, c in enumerate(forbidden) if all(point[n] in vs for n, vs in c.items())), None)
        if hit is None:
            return []
        used.add(hit)
    return sorted(used)


def _condition(child: Any, parent: Any, values: list[Any]) -> Any:
    # Always InCondition, as before multi-parent conditions: a saved run's space (SMAC compares it on
    # --resume) stays the same for an unchanged file.
    return InCondition(child, parent, values)


def _all(parts: list[Any], cls: type) -> Any:
    """ConfigSpace's conjunctions need two parts or more; one part stands alone."""
    return parts[0] if len(parts) == 1 else cls(*parts)


def layer_groups(layers: Sequence[str], granularity: str = "layer") -> dict[str, list[str]]:
    """Convertible layer names grouped for a per-layer space, in order of first appearance:
    ``layer`` keeps each layer; ``block`` groups by the first two name parts when a layer sits
    deeper (``layer1.0.conv1`` -> ``layer1.0``); ``stage`` by the first part (``layer1``).
    Layers at the top (``conv1``, ``fc``) are their own group."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r}: use one of {', '.join(GRANULARITIES)}")
    groups: dict[str, list[str]] = {}
    for name in layers:
        parts = name.split(".")
        if granularity == "stage":
            key = parts[0]
        elif granularity == "block":
            key = ".".join(parts[:2]) if len(parts) > 2 else name
        else:
            key = name
        groups.setdefault(key, []).append(name)
    return groups


def _per_layer_entries(spec: Any, layers: Sequence[str] | None, source: str | Path) -> dict[str, Any]:
    """The hyperparameters a ``per_layer:`` block stands for: type:<group> over ``types`` and
    bits:<group> over ``bits`` (active when the group is shifted), one pair per layer group."""
    where = "per_layer"
    if not isinstance(spec, Mapping):
        _fail(source, where, f"{_show(spec)} is not a mapping",
              "write per_layer: {granularity: block, types: [none, ps, dense], bits: [2, 5]}")
    unknown = [k for k in spec if k not in PER_LAYER_KEYS]
    if unknown:
        _fail(source, where, f"unknown key {unknown[0]!r}", _use_one_of(unknown[0], PER_LAYER_KEYS))
    if layers is None:
        _fail(source, where, "the per-layer space needs the model's layers",
              "load it through `autodsnn optimize` (or load_space(..., layers=convertible layer names))")
    granularity = str(spec.get("granularity", "layer"))
    if granularity not in GRANULARITIES:
        _fail(source, f"{where}: granularity", f"{granularity!r} is not a granularity", _use_one_of(granularity,
                                                                                                   GRANULARITIES))
    types = [str(t).lower() for t in spec.get("types", shift_types())]
    bad = [t for t in types if t not in shift_types()]
    if bad or not types:
        _fail(source, f"{where}: types", f"{_show(bad[0]) if bad else 'an empty list'} is not a shift type",
              f"list some of {', '.join(shift_types())}")
    shifted = [t for t in types if t != "none"]
    default = str(spec.get("default", "ps" if "ps" in types else (shifted or types)[0])).lower()
    if default not in types:
        _fail(source, f"{where}: default", f"{default!r} is not one of its types", f"use one of {', '.join(types)}")
    bits = spec.get("bits", [2, 5])
    if (not isinstance(bits, Sequence) or len(bits) != 2 or not all(isinstance(b, int) for b in bits)
            or bits[0] > bits[1]):
        _fail(source, f"{where}: bits", f"{_show(bits)} is not a range", "write bits: [low, high], e.g. [2, 5]")
    entries: dict[str, Any] = {}
    for group in layer_groups(layers, granularity):
        entries[f"{LAYER_TYPE_KEY}{group}"] = {"choices": types, "default": default}
        if shifted:
            entries[f"{LAYER_BITS_KEY}{group}"] = {"low": bits[0], "high": bits[1], "type": "int", "default": bits[1],
                                                   "when": {f"{LAYER_TYPE_KEY}{group}": shifted}}
    return entries


def build_space(spec: Mapping[str, Any], *, max_layers: int, seed: int = 0,
                source: str | Path = "search space", layers: Sequence[str] | None = None) -> ConfigurationSpace:
    """A ConfigurationSpace from a parsed spec, ``max_layers`` resolved; errors name ``source``.
    ``layers``: the model's convertible layer names, for a ``per_layer:`` block."""
    _check_top_level(source, spec)
    check = _Checker(source, max_layers)
    entries: dict[str, Any] = dict(spec["hyperparameters"])
    if "per_layer" in spec:
        replaced = [k for k in ("shift_type", "shift_depth", "weight_bits") if k in entries]
        if replaced:
            _fail(source, f"hyperparameter {replaced[0]!r}", "a per_layer space chooses each group's type and bits",
                  f"drop {replaced[0]} (the per_layer block replaces shift_type, shift_depth and weight_bits)")
        entries.update(_per_layer_entries(spec["per_layer"], layers, source))
    for name, entry in entries.items():
        check.params[name] = check.param(name, entry)
    check.conditions(entries)
    forbidden = check.forbidden(spec.get("forbidden"))
    check.conditions_can_hold(forbidden)

    cs = ConfigurationSpace(name=str(spec.get("name", "space")), seed=seed)
    hps = {}
    for name, p in check.params.items():
        try:
            if p.choices is not None:
                hps[name] = CategoricalHyperparameter(name, p.choices, default_value=p.default)
            elif p.constant:
                hps[name] = Constant(name, p.low)
            else:
                cls = UniformIntegerHyperparameter if p.is_int else UniformFloatHyperparameter
                hps[name] = cls(name, p.low, p.high, log=p.log, default_value=p.default)
            cs.add(hps[name])
        except CONFIGSPACE_ERRORS as exc:
            check.fail(f"hyperparameter {name!r}", f"ConfigSpace rejects it ({one_line(exc) or type(exc).__name__})",
                       f"check its choices/low/high/default ({SCHEMA_HINT})")
    for name, p in check.params.items():
        if not p.when and not p.when_any:
            continue
        where = f"hyperparameter {name!r}, " + "/".join(k for k in ("when", "when_any") if getattr(p, k))
        try:
            ands = [_condition(hps[name], hps[parent], v) for parent, v in p.when.items()]
            if p.when_any:
                ors = [_all([_condition(hps[name], hps[parent], v) for parent, v in item.items()], AndConjunction)
                       for item in p.when_any]
                ands.append(_all(ors, OrConjunction))
            cs.add(_all(ands, AndConjunction))
        except CONFIGSPACE_ERRORS as exc:
            check.fail(where, f"ConfigSpace rejects the condition ({one_line(exc) or type(exc).__name__})",
                       f"check its parents and values ({SCHEMA_HINT})")
    for i, clause in enumerate(forbidden):
        where = f"forbidden clause {i + 1} {_show(spec['forbidden'][i])}"
        try:
            parts = [ForbiddenEqualsClause(hps[n], v[0]) if len(v) == 1 else ForbiddenInClause(hps[n], v)
                     for n, v in clause.items()]
            cs.add(_all(parts, ForbiddenAndConjunction))
        except ForbiddenValueError:
            default = {n: check.params[n].default for n in clause}
            check.fail(where, f"forbids the default configuration ({_show(default)})",
                       f"change the default of {' or '.join(clause)}, or narrow the clause")
        except CONFIGSPACE_ERRORS as exc:
            check.fail(where, f"ConfigSpace rejects the clause ({one_line(exc) or type(exc).__name__})",
                       f"check its hyperparameters and values ({SCHEMA_HINT})")
    if forbidden:
        _check_enough_allowed(cs, check)
    return cs


# ConfigSpace (and SMAC through it) samples by rejection: a space whose forbidden clauses allow
# fewer than this share of random configurations makes every sample a long loop (1 in 4,096: 6 s
# for 64 configurations, 1 in 262,144: minutes), so loading and the search would stall.
MIN_ALLOWED_SHARE = 1 / 500
_SHARE_DRAWS = 4000


def _check_enough_allowed(cs: ConfigurationSpace, check: "_Checker") -> None:
    """Fail when the forbidden clauses leave too small a share of the configurations to sample:
    drawn from the same space without them (no rejection), then checked against them."""
    free = ConfigurationSpace(seed=0)
    free.add(list(cs.values()))
    free.add(list(cs.conditions))
    draws = free.sample_configuration(_SHARE_DRAWS)
    if list(free) == list(cs):  # the same vector layout: the clauses test every draw at once
        vectors = np.array([c.get_array() for c in draws]).T
        forbidden = np.zeros(len(draws), dtype=bool)
        for clause in cs.forbidden_clauses:
            forbidden |= clause.is_forbidden_vector_array(vectors)
        allowed = int((~forbidden).sum())
    else:
        allowed = sum(not any(f.is_forbidden_value(dict(d)) for f in cs.forbidden_clauses) for d in draws)
    if allowed < MIN_ALLOWED_SHARE * _SHARE_DRAWS:
        check.fail("forbidden", f"the clauses forbid all but {allowed} of {_SHARE_DRAWS} random configurations "
                   f"(ConfigSpace and SMAC sample by rejection: below 1 in {round(1 / MIN_ALLOWED_SHARE)} sampling "
                   "stalls)", "forbid fewer combinations (per_layer: narrow `types` for every group rather than "
                   "forbidding types group by group)")


def load_space(name_or_path: str | Path, *, max_layers: int, seed: int = 0,
               fixed: Mapping[str, Any] | None = None, layers: Sequence[str] | None = None) -> ConfigurationSpace:
    """A built-in space or YAML file as a ConfigurationSpace; every mistake is a one-line :class:`SpaceError`.

    With ``fixed`` (the experiment's fixed hyperparameters), the default configuration plus those
    values must also be something `train` accepts.
    """
    path = space_path(name_or_path)
    cs = build_space(load_space_spec(path), max_layers=max_layers, seed=seed, source=path, layers=layers)
    _check_values_train_accepts(cs, path)
    if fixed is not None:
        try:
            HParams.from_dict({**fixed, **dict(cs.get_default_configuration())})
        except HParamsError as exc:
            _fail(path, "default configuration", f"train rejects it ({one_line(exc)})",
                  "change that hyperparameter's default (or the experiment's fixed value)")
    return cs


def _check_values_train_accepts(cs: ConfigurationSpace, source: str | Path) -> None:
    """Every range end and every choice must be a value `train` accepts, in a configuration where
    it is active (the default, else a sampled one `train` accepts): a space that lets SMAC sample
    weight_bits=40 would turn a share of the run's trials into failures, found only when they run."""
    from ConfigSpace.hyperparameters import NumericalHyperparameter, OrdinalHyperparameter

    from ..trial.hparams import plain

    def accepted(values: Mapping[str, Any]) -> bool:
        try:
            HParams.from_dict(values)
            return True
        except HParamsError:
            return False

    samples = [dict(cs.get_default_configuration()), *map(dict, cs.sample_configuration(64))]
    contexts = [c for c in samples if accepted(c)]
    for hp in cs.values():
        if isinstance(hp, NumericalHyperparameter):
            values = [hp.lower, hp.upper]
        elif isinstance(hp, (CategoricalHyperparameter, OrdinalHyperparameter)):
            values = list(getattr(hp, "choices", None) or getattr(hp, "sequence", ()))
        else:
            continue
        base = next((c for c in contexts if hp.name in c), None)
        if base is None:
            continue  # never active in a configuration train accepts: nothing to check it against
        has_children = bool(cs.children_of[hp.name])
        for value in values:
            if any(c.get(hp.name) == value for c in contexts):
                continue  # seen in a configuration train accepts
            if has_children:
                continue  # its children follow it: swapping it alone would test a configuration SMAC never makes
            try:
                HParams.from_dict({**base, hp.name: plain(value)})
            except HParamsError as exc:
                _fail(source, hp.name, f"train rejects the value {_show(plain(value))} ({one_line(str(exc))})",
                      "narrow the range, drop that choice, or make what it clashes with conditional (`when:`)")
