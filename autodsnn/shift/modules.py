"""Swapping one module of a model for another, everywhere it is used."""
from __future__ import annotations

from torch import nn


def replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Point every parent in ``model`` that holds ``old`` at ``new``, in place (a module may be
    shared by several parents, so swapping one attribute is not enough)."""
    for parent in model.modules():
        for key, child in list(parent._modules.items()):
            if child is old:
                parent._modules[key] = new


__all__ = ["replace_module"]
