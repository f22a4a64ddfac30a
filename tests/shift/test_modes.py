"""The weight-mode registry: a registered mode works end to end; unknown modes fail in one line."""
import pytest
import torch
from torch import nn

from autodsnn.errors import AutoDSNNError
from autodsnn.shift import (WEIGHT_MODES, CodeSet, FrozenWeight, ShiftConfig, ShiftConfigError, WeightQuantizer,
                            convert, deploy, export, freeze, load_codes, register_weight_mode)
from autodsnn.shift.modes import unregister_weight_mode, weight_mode, weight_mode_names
from autodsnn.shift.quant import quantize_pow2, round_pow2_ste

BUILT_IN = ("q", "ps", "dense")


class ToyWeight(WeightQuantizer):
    """A zero-free DeepShift-Q: a float latent rounded to +-2^k, never to 0 (unlike q)."""

    def __init__(self, weight: torch.Tensor, codes: CodeSet, stochastic: bool) -> None:
        super().__init__(codes, stochastic)
        self.weight = nn.Parameter(weight.detach().clone())

    @classmethod
    def from_float(cls, weight, codes, stochastic):
        return cls(weight, codes, stochastic)

    def forward(self) -> torch.Tensor:
        return round_pow2_ste(self.weight, self.codes, self.stochastic and self.training)

    def sign_and_shift(self):
        sign, exp = quantize_pow2(self.weight.detach(), self.codes)
        return sign.to(torch.int8), exp.to(torch.int16)


@pytest.fixture
def toy_mode():
    """The toy mode, registered for one test only: other tests see the built-in modes."""
    register_weight_mode("toy", has_zero=False)(ToyWeight)
    yield "toy"
    unregister_weight_mode("toy")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_a_registered_mode_converts_trains_freezes_exports_and_deploys(toy_mode, tmp_path):
    config = ShiftConfig(mode=toy_mode, weight_bits=3, shift_max="auto")
    assert weight_mode(toy_mode).has_zero is False and WEIGHT_MODES[toy_mode] is ToyWeight
    model = _net()
    report = convert(model, config)
    assert report.names == ["0", "3"] and all(isinstance(m.weight_quant, ToyWeight) for m in (model[0], model[3]))
    for layer in (model[0], model[3]):
        codes = layer.codes
        assert not codes.has_zero and codes.num_levels == 8  # the registry's has_zero=False: no level spent on 0
        w = layer.quantized_weight()
        assert bool((w != 0).all()) and bool(torch.isin(w.double(), codes.levels()).all())

    x = torch.randn(4, 3, 8, 8)
    model.train()
    model(x).square().mean().backward()
    assert all(float(layer.weight_quant.weight.grad.abs().sum()) > 0 for layer in (model[0], model[3]))

    model.eval()
    with torch.no_grad():
        reference = model(x)
        freeze(model)
        assert isinstance(model[0].weight_quant, FrozenWeight)
        assert torch.equal(model(x), reference)
        path = export(model, tmp_path / "toy.pt")
        fresh = load_codes(_net(), path).eval()
        assert fresh[0].codes == model[0].codes and not fresh[0].codes.has_zero
        assert torch.equal(fresh(x), reference)
        deploy(fresh, "float")
        assert torch.allclose(fresh(x), reference, atol=1e-5, rtol=1e-5)


def test_codes_exported_under_another_code_set_are_refused(toy_mode, tmp_path):
    model = _net()
    convert(model, ShiftConfig(mode=toy_mode, weight_bits=3))
    path = export(freeze(model), tmp_path / "toy.pt")
    register_weight_mode(toy_mode, has_zero=True)(ToyWeight)  # the same class again, now with a zero level
    try:
        with pytest.raises(ShiftConfigError, match="exported layer '0': mode 'toy' has a zero level and no other"):
            load_codes(_net(), path)
    finally:
        register_weight_mode(toy_mode, has_zero=False)(ToyWeight)


def test_unregistering_restores_the_built_in_modes(toy_mode):
    assert weight_mode_names() == (*BUILT_IN, toy_mode)
    unregister_weight_mode(toy_mode)
    with pytest.raises(ShiftConfigError, match="unknown shift mode 'toy'"):
        ShiftConfig(mode=toy_mode)
    register_weight_mode(toy_mode, has_zero=False)(ToyWeight)  # for the fixture's teardown


def test_an_unknown_mode_gets_one_line_listing_the_registered_modes(toy_mode):
    with pytest.raises(ShiftConfigError) as info:
        ShiftConfig(mode="qq")
    assert str(info.value) == "unknown shift mode 'qq': use one of q, ps, dense, toy"
    with pytest.raises(ShiftConfigError, match="unknown shift mode 'qq'"):
        CodeSet("qq", 4)


def test_the_built_in_modes_declare_their_code_sets():
    assert weight_mode_names()[:3] == BUILT_IN
    assert [weight_mode(m).has_zero for m in BUILT_IN] == [False, True, False]  # DeepShift-Q is zero-free
    assert [weight_mode(m).zero_optional for m in BUILT_IN] == [True, False, False]
    assert [CodeSet(m, 3).num_levels for m in BUILT_IN] == [8, 7, 8]
    assert CodeSet("q", 3, has_zero=True).num_levels == 7


def test_registration_refuses_what_cannot_work():
    with pytest.raises(ShiftConfigError, match="already registered to QWeight"):
        register_weight_mode("q", has_zero=True)(ToyWeight)
    with pytest.raises(ShiftConfigError, match="lower-case identifier"):
        register_weight_mode("My Mode", has_zero=True)
    with pytest.raises(ShiftConfigError, match="has_zero"):
        register_weight_mode("mine", has_zero=1)
    with pytest.raises(ShiftConfigError, match="WeightQuantizer subclass"):
        register_weight_mode("mine", has_zero=True)(object)
    with pytest.raises(ShiftConfigError, match="unknown shift mode 'mine'"):
        unregister_weight_mode("mine")
    assert weight_mode_names() == BUILT_IN


def test_shift_config_error_is_an_autodsnn_error_and_a_value_error():
    with pytest.raises(AutoDSNNError):
        ShiftConfig(weight_bits=12)
    with pytest.raises(ValueError):
        ShiftConfig(weight_bits=12)
