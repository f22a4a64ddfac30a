"""Per-layer search spaces: generated from the model's layers, carried through HParams, the trial's
conversion, the store and retrain."""
import json

import pytest
import torch

from autodsnn.analysis.retrain import retrain
from autodsnn.search import Experiment, optimize
from autodsnn.search.space import SpaceError, layer_groups, load_space
from autodsnn.shift import is_shift_layer, load_codes
from autodsnn.store import Run
from autodsnn.trial import HParams, HParamsError
from autodsnn.trial.hparams import Task
from autodsnn.trial.training import build_model
from autodsnn.zoo import convertible_layer_names, create_model, dataset_info

SPACE = ("name: per-layer\nper_layer: {{granularity: {g}, types: [none, q, ps, dense], bits: [2, 5]}}\n"
         "hyperparameters:\n  lr: {{low: 0.001, high: 0.1, log: true, default: 0.01}}\n")


def _space(tmp_path, model, shape, granularity, text=None):
    path = tmp_path / f"{granularity}.yaml"
    path.write_text(text or SPACE.format(g=granularity))
    layers = convertible_layer_names(model, num_classes=10, input_size=shape)
    return load_space(path, max_layers=len(layers), layers=layers), layers


# (model, input shape, granularity) -> the groups, counted by hand from the architectures
GROUPS = {
    ("mnist-fc", (1, 28, 28), "layer"): ["fc1", "fc2", "fc3"],
    ("mnist-conv", (1, 28, 28), "block"): ["conv1", "conv2", "fc1", "fc2"],
    ("resnet20", (3, 32, 32), "stage"): ["conv1", "layer1", "layer2", "layer3", "fc"],
    ("resnet20", (3, 32, 32), "block"): ["conv1"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)] + ["fc"],
    ("tv-resnet18", (3, 32, 32), "stage"): ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"],
    ("tv-resnet18", (3, 32, 32), "block"): ["conv1"] + [f"layer{s}.{b}" for s in (1, 2, 3, 4) for b in (0, 1)] + ["fc"],
}


@pytest.mark.parametrize("model, shape, granularity", list(GROUPS))
def test_generated_space_has_a_type_per_group_and_bits_only_when_shifted(tmp_path, model, shape, granularity):
    cs, layers = _space(tmp_path, model, shape, granularity)
    groups = GROUPS[(model, shape, granularity)]
    assert list(layer_groups(layers, granularity)) == groups
    assert sorted(cs) == sorted(["lr"] + [f"type:{g}" for g in groups] + [f"bits:{g}" for g in groups])
    default = dict(cs.get_default_configuration())
    assert all(default[f"type:{g}"] == "ps" and default[f"bits:{g}"] == 5 for g in groups)
    parents = {c.child.name: (c.parent.name, sorted(c.values)) for c in cs.conditions}
    assert parents == {f"bits:{g}": (f"type:{g}", ["dense", "ps", "q"]) for g in groups}
    for config in cs.sample_configuration(20):
        values = dict(config)
        for g in groups:
            assert (f"bits:{g}" in values) == (values[f"type:{g}"] != "none")
        designs = HParams.from_dict(values).layer_designs
        assert sorted(designs) == sorted(groups)


def test_a_forbidden_clause_keeps_a_group_float(tmp_path):
    """Forbidding every shifted type of a group pins it to float: its generated bits can never be
    active, which is the point, not a condition the user wrote and must be told to change."""
    text = ("per_layer: {granularity: stage, types: [none, q, ps, dense], bits: [2, 5], default: none}\n"
            "hyperparameters:\n  lr: {low: 0.001, high: 0.1, log: true, default: 0.01}\n"
            "forbidden:\n  - {type:conv1: [q, ps, dense]}\n  - {type:fc: [q, ps, dense]}\n")
    cs, _ = _space(tmp_path, "resnet20", (3, 32, 32), "stage", text)
    configs = [dict(c) for c in cs.sample_configuration(50)]
    assert all(c["type:conv1"] == "none" and c["type:fc"] == "none" and "bits:conv1" not in c for c in configs)
    assert {c["type:layer2"] for c in configs} == {"none", "q", "ps", "dense"}


def test_a_mixed_configuration_converts_exactly_its_shifted_groups(tmp_path):
    cs, layers = _space(tmp_path, "resnet20", (3, 32, 32), "stage")
    values = {"lr": 0.01, "type:conv1": "none", "type:layer1": "q", "bits:layer1": 3, "type:layer2": "none",
              "type:layer3": "dense", "bits:layer3": 2, "type:fc": "ps", "bits:fc": 5}
    hp = HParams.from_dict(values)
    assert hp.layer_designs == {"conv1": "none", "layer1": "q:3", "layer2": "none", "layer3": "dense:2", "fc": "ps:5"}
    assert "shift_type" not in hp.to_dict() and hp.to_dict()["layer_designs"] == hp.layer_designs
    task = Task(dataset="synthetic", model="resnet20")
    model, converted = build_model(hp, task, dataset_info("cifar10"))
    got = {n: (m.codes.mode, m.codes.weight_bits) for n, m in model.named_modules() if is_shift_layer(m)}
    expected = {n: ("q", 3) for n in layers if n.startswith("layer1.")}
    expected |= {n: ("dense", 2) for n in layers if n.startswith("layer3.")} | {"fc": ("ps", 5)}
    assert got == expected and converted == len(expected)
    assert not any(is_shift_layer(m) for n, m in model.named_modules() if n == "conv1" or n.startswith("layer2."))


def test_per_layer_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(SpaceError, match="drop shift_type"):
        _space(tmp_path, "mnist-fc", (1, 28, 28), "layer", SPACE.format(g="layer") +
               "  shift_type: {choices: [ps, q], default: ps}\n")
    with pytest.raises(SpaceError, match="granularity: 'blocks' is not a granularity: did you mean 'block'"):
        _space(tmp_path, "mnist-fc", (1, 28, 28), "blocks")
    with pytest.raises(SpaceError, match="bits: .* is not a range"):
        _space(tmp_path, "mnist-fc", (1, 28, 28), "layer", "per_layer: {bits: [5, 2]}\nhyperparameters:\n"
               "  lr: {low: 0.001, high: 0.1, default: 0.01}\n")
    with pytest.raises(SpaceError, match="bits:fc1: train rejects the value 9"):
        _space(tmp_path, "mnist-fc", (1, 28, 28), "layer", "per_layer: {bits: [2, 9]}\nhyperparameters:\n"
               "  lr: {low: 0.001, high: 0.1, default: 0.01}\n")
    path = tmp_path / "s.yaml"
    path.write_text(SPACE.format(g="layer"))
    with pytest.raises(SpaceError, match="needs the model's layers"):
        load_space(path, max_layers=3)
    with pytest.raises(HParamsError, match="replace shift_type"):
        HParams.from_dict({"type:fc1": "ps", "bits:fc1": 5, "shift_type": "q"})
    with pytest.raises(HParamsError, match="bits:fc1 is missing"):
        HParams.from_dict({"type:fc1": "ps"})


def test_optimize_over_a_per_layer_space_stores_and_retrains_a_mixed_design(tmp_path):
    path = tmp_path / "pl.yaml"
    path.write_text("per_layer: {types: [none, ps, dense], bits: [2, 5], default: ps}\nhyperparameters:\n"
                    "  lr: {low: 0.001, high: 0.05, log: true, default: 0.01}\n")
    exp = Experiment(dataset="mnist", model="mnist-fc", space=str(path), train_subset=0.02, val_fraction=0.05,
                     min_budget=1, max_budget=1, workers=2, budget=300, trials=6, optimizer="random",
                     fixed={"batch_size": 64}, inference_window=0.05)
    optimize(exp, tmp_path / "run")
    with Run.open(tmp_path / "run") as run:
        ok = [t for t in run.trials() if t.status == "ok"]
    assert len(ok) >= 4
    for t in ok:  # the store keeps each trial's per-layer map readable, and the trial converted by it
        designs = HParams.from_dict(t.config).layer_designs
        assert set(designs) == {"fc1", "fc2", "fc3"}
        assert t.result.converted_layers == sum(d != "none" for d in designs.values())
        assert t.result.hparams["layer_designs"] == designs
    from autodsnn.analysis.report import write_report

    html = write_report(tmp_path / "run").read_text()
    assert "Which layers the front's designs shift, and how" in html
    mixed = next((t for t in ok if len(set(HParams.from_dict(t.config).layer_designs.values())) > 1), ok[0])
    task = exp.task()
    card = retrain(mixed.config, task, 0.2, tmp_path / "retrained")
    assert card["configuration"]["layer_designs"] == HParams.from_dict(mixed.config).layer_designs
    model = create_model("mnist-fc", num_classes=10)
    if card["converted_layers"]:
        exported = load_codes(model, tmp_path / "retrained" / "shift_codes.pt")
        modes = {n: f"{m.codes.mode}:{m.codes.weight_bits}" for n, m in exported.named_modules() if is_shift_layer(m)}
        assert modes == {g: d for g, d in card["configuration"]["layer_designs"].items() if d != "none"}
    model.load_state_dict(torch.load(tmp_path / "retrained" / "model.pt", weights_only=True)["model"])
    assert json.loads((tmp_path / "retrained" / "model_card.json").read_text())["configuration"]["layer_designs"]


def test_report_and_labels_show_each_layer_groups_design(tmp_path):
    from autodsnn.analysis.plots import plot_layer_designs, point_label
    from autodsnn.analysis.summary import short_config
    from autodsnn.store import TrialRow
    from autodsnn.trial import TrialResult

    config = {"lr": 0.01, "type:fc1": "ps", "bits:fc1": 5, "type:fc2": "none", "type:fc3": "dense", "bits:fc3": 2}
    assert point_label(config) == "P5 . D2"
    assert short_config(config).startswith("layers=fc1:ps:5,fc2:none,fc3:dense:2 ")
    many = {f"type:l{i}": "q" if i % 3 else "none" for i in range(9)} | {f"bits:l{i}": 3 for i in range(9) if i % 3}
    assert point_label(many) == "6/9 shifted"
    rows = [TrialRow(trial_id=i, config_id=i, config=c, budget=1.0, seed=0, is_default=False, started_at=0,
                     ended_at=1, result=TrialResult(status="ok")) for i, c in enumerate([config, many])]
    png = plot_layer_designs(rows, tmp_path / "layers.png")
    assert png is not None and png.stat().st_size > 1000
    assert plot_layer_designs(rows[:0], tmp_path / "none.png") is None
