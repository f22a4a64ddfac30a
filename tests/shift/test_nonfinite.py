"""Non-finite weights (issue 13, kind 3): conversion refuses them naming the layer, in every
mode and with every shift_max; in training a NaN or infinite latent reaches the output (so the
trial is recorded as diverged) instead of rounding to 0 or to the largest level."""
import math

import pytest
import torch
from torch import nn

from autodsnn.shift import ShiftConfig, ShiftConfigError, convert
from autodsnn.shift.modes import weight_mode_names


@pytest.mark.parametrize("mode", weight_mode_names())
@pytest.mark.parametrize("shift_max", [0, "auto"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("part", ["weight", "bias"])
def test_conversion_refuses_nonfinite_float_values(mode, shift_max, bad, part):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        getattr(model[2], part).view(-1)[0] = bad
    before = [type(m) for m in model]
    with pytest.raises(ShiftConfigError, match=rf"layer '2': 1 of its \d+ float {part} values are NaN or infinite"):
        convert(model, ShiftConfig(mode=mode, weight_bits=5, shift_max=shift_max))
    assert [type(m) for m in model] == before  # nothing half-converted


@pytest.mark.parametrize("mode,bad", [(m, math.nan) for m in weight_mode_names()] + [("q", math.inf)])
def test_a_nonfinite_latent_reaches_the_output(mode, bad):
    """(PS and DenseShift project their latents into range before each forward: an infinite
    latent is clamped there, a NaN one stays NaN and must surface.)"""
    model = nn.Sequential(nn.Linear(4, 3))
    convert(model, ShiftConfig(mode=mode, weight_bits=4))
    quant = model[0].weight_quant
    latent = next(p for p in quant.parameters())
    with torch.no_grad():
        latent[1, 2] = bad
    w = quant()
    assert torch.isnan(w[1, 2]) and torch.isfinite(w[0]).all() and torch.isfinite(w[2]).all()
    out = model(torch.ones(2, 4))
    assert torch.isnan(out[:, 1]).all() and torch.isfinite(out[:, 0]).all()
    # gradients of the finite latents are untouched by the NaN guard
    model2 = nn.Sequential(nn.Linear(4, 3))
    convert(model2, ShiftConfig(mode=mode, weight_bits=4))
    model2.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(p for p in model2[0].weight_quant.parameters())[1, 2] = 0.3
    model2(torch.ones(2, 4)).sum().backward()
    grads = [p.grad for p in model2[0].weight_quant.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
