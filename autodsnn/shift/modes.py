"""The weight-mode registry: the one list of valid ``ShiftConfig.mode`` values.

A mode is a weight quantizer class (a :class:`~autodsnn.shift.layers.WeightQuantizer` subclass:
how the latent parameters become ``+-2^k`` weights) plus what its code set needs. DeepShift-PS
(``ps``) spends one magnitude code on zero (``has_zero=True``); DeepShift-Q (``q``) and
DenseShift (``dense``) spend all of them on shifts (``has_zero=False``). A mode registered with
``zero_optional=True`` (``q``) also takes the other choice when a config asks for it
(``ShiftConfig(zero_level=True)``: the zero level autodsnn 0.2 and earlier gave ``q``).
:class:`~autodsnn.shift.quant.CodeSet`, :class:`~autodsnn.shift.config.ShiftConfig`, the packed
format and the kernels read that from here, so registering a mode is all it takes to convert,
freeze, export and deploy with it::

    @register_weight_mode("mine", has_zero=True)
    class MyWeight(WeightQuantizer): ...

    convert(model, ShiftConfig(mode="mine"))

This module imports nothing from the shift layers (they import it), so config.py and quant.py
can use it without an import cycle.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Callable, TypeVar

from torch import nn

from .errors import ShiftConfigError

Quantizer = TypeVar("Quantizer", bound=type[nn.Module])


@dataclass(frozen=True)
class WeightMode:
    """One registered mode: its name, its quantizer class and what its code set holds.

    has_zero: the mode's default code set has a zero level (one of the ``2^(weight_bits-1)``
    magnitude codes means 0, the others ``2^k``); False: every magnitude code is a shift (zero-free).
    zero_optional: a config may choose the other code set (the quantizer handles both).
    """

    name: str
    quantizer: type[nn.Module]
    has_zero: bool
    zero_optional: bool = False

    def allows(self, has_zero: bool) -> bool:
        return has_zero == self.has_zero or self.zero_optional


_REGISTRY: dict[str, WeightMode] = {}
_LOG = logging.getLogger(__name__)


def register_weight_mode(name: str, *, has_zero: bool,
                         zero_optional: bool = False) -> Callable[[Quantizer], Quantizer]:
    """Class decorator: make a WeightQuantizer subclass available as ``ShiftConfig(mode=name)``.

    ``has_zero`` declares the default code set and ``zero_optional`` whether a config may pick
    the other one (see :class:`WeightMode`). Sets ``cls.mode = name``.
    Raises ShiftConfigError for a name that is not a lower-case identifier, one already taken by
    another class (a redefinition of the same class replaces it), or a class that is not an
    ``nn.Module``.
    """
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ShiftConfigError(f"weight mode name {name!r} must be a lower-case identifier "
                               "(ShiftConfig lower-cases the mode it is given)")
    for flag, value in (("has_zero", has_zero), ("zero_optional", zero_optional)):
        if not isinstance(value, bool):
            raise ShiftConfigError(f"weight mode {name!r}: {flag}={value!r} must be True or False")

    def wrap(cls: Quantizer) -> Quantizer:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ShiftConfigError(f"weight mode {name!r} must register a WeightQuantizer subclass, got {cls!r}")
        taken = _REGISTRY.get(name)
        # the same class defined again (a re-run notebook cell, a reloaded module) replaces itself
        redefined = taken is not None and (taken.quantizer.__module__, taken.quantizer.__qualname__) == (
            cls.__module__, cls.__qualname__)
        if taken is not None and not redefined:
            raise ShiftConfigError(f"weight mode {name!r} is already registered to {taken.quantizer.__name__}: "
                                   "pick another name or unregister_weight_mode() it first")
        _REGISTRY[name] = WeightMode(name, cls, has_zero, zero_optional)
        cls.mode = name
        _LOG.debug("weight mode %r %s %s.%s (has_zero=%s)", name, "redefined as" if redefined else "registered to",
                   cls.__module__, cls.__qualname__, has_zero)
        return cls
    return wrap


def unregister_weight_mode(name: str) -> None:
    """Remove a registered mode (tests, plugins being unloaded); an unknown name is an error."""
    weight_mode(name)
    del _REGISTRY[name]


def weight_mode_names() -> tuple[str, ...]:
    """The registered mode names, in registration order."""
    return tuple(_REGISTRY)


def code_set_variants() -> tuple[tuple[str, bool], ...]:
    """Every (mode, has_zero) pair a config can ask for, default code sets first: what a test
    sweeping "every mode" has to cover."""
    defaults = [(m.name, m.has_zero) for m in _REGISTRY.values()]
    others = [(m.name, not m.has_zero) for m in _REGISTRY.values() if m.zero_optional]
    return tuple(defaults + others)


def weight_mode(name: str) -> WeightMode:
    """The registered mode ``name``. Raises ShiftConfigError naming the registered modes."""
    mode = _REGISTRY.get(name)
    if mode is None:
        raise ShiftConfigError(f"unknown shift mode {name!r}: use one of {', '.join(_REGISTRY)}")
    return mode


class _QuantizerTable(Mapping[str, type[nn.Module]]):
    """Read-only view {mode name: quantizer class} of the registry, always current."""

    def __getitem__(self, name: str) -> type[nn.Module]:
        return _REGISTRY[name].quantizer

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr({name: mode.quantizer for name, mode in _REGISTRY.items()})


WEIGHT_MODES: Mapping[str, type[nn.Module]] = _QuantizerTable()

__all__ = ["WeightMode", "WEIGHT_MODES", "code_set_variants", "register_weight_mode", "unregister_weight_mode",
           "weight_mode", "weight_mode_names"]
