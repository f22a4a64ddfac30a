"""Search space files: every mistake is one line naming the file, the entry and the fix; the schema's
multi-parent conditions (AND: ``when``, OR: ``when_any``) and ``forbidden`` clauses reach ConfigSpace
and hold in what it samples."""
from __future__ import annotations

import pytest
from ConfigSpace import Constant

from autodsnn.errors import AutoDSNNError
from autodsnn.search import space as space_module
from autodsnn.search.space import SpaceError, list_spaces, load_space

HP = "hyperparameters:\n"
OPT = "  optimizer: {choices: [sgd, adam, radam], default: radam}\n"
LR = "  lr: {low: 0.001, high: 0.1, log: true, default: 0.01}\n"
SHIFT = "  shift_type: {choices: [none, q, ps, dense], default: ps}\n"

# (id, file text, the entry the message must name, a fix hint it must give)
BROKEN = [
    ("yaml-syntax", HP + "  lr: {low: 0.001, high: 0.1\n  momentum: {low: 0.0, high: 0.9}\n",
     "lr: {low: 0.001", "fix the syntax"),
    ("yaml-tab", HP + "\tlr: {low: 0.001, high: 0.1, default: 0.01}\n", "lr:", "fix the syntax"),
    ("yaml-key-twice", HP + LR + OPT + LR, "'lr' is given twice", "keep one"),
    ("empty-file", "", "top level", "start it with `hyperparameters:`"),
    ("not-a-mapping", "- lr\n- momentum\n", "top level", "start it with `hyperparameters:`"),
    ("no-hyperparameters", "name: x\n", "hyperparameters", "add one entry per hyperparameter"),
    ("top-level-typo", "hyperparameter:\n" + LR, "top level: unknown key 'hyperparameter'",
     "did you mean 'hyperparameters'"),
    ("forbidden-typo", HP + LR + "forbiden: []\n", "'forbiden'", "did you mean 'forbidden'"),
    ("unknown-name", HP + "  learning_rate: {low: 0.001, high: 0.1, default: 0.01}\n", "'learning_rate'",
     "did you mean 'lr'"),
    ("unknown-name-train-flag", HP + "  wd: {low: 1.0e-6, high: 0.01, default: 0.001}\n", "'wd'",
     "did you mean 'weight_decay'"),
    ("unknown-name-far", HP + "  zzzz: {low: 0.001, high: 0.1, default: 0.01}\n", "'zzzz'", "valid names: "),
    ("entry-not-mapping", HP + "  lr: 0.01\n", "'lr'", "write {low: 1, high: 5, default: 3}"),
    ("entry-key-typo", HP + "  lr: {low: 0.001, high: 0.1, defualt: 0.01}\n", "'lr'", "did you mean 'default'"),
    ("no-default", HP + "  lr: {low: 0.001, high: 0.1}\n", "'lr'", "add `default:`"),
    ("null-default", HP + "  lr: {low: 0.001, high: 0.1, default: null}\n", "'lr'", "add `default:`"),
    ("default-out-of-range", HP + "  lr: {low: 0.001, high: 0.1, default: 0.5}\n", "'lr'",
     "move the default into the range"),
    ("default-not-a-choice", HP + "  optimizer: {choices: [sgd, adam], default: radam}\n", "'optimizer'",
     "use one of sgd, adam"),
    ("default-not-a-number", HP + "  lr: {low: 0.001, high: 0.1, default: fast}\n", "'lr'", "give a number"),
    ("low-above-high", HP + "  lr: {low: 0.5, high: 0.1, default: 0.2}\n", "'lr'", "make low < high"),
    ("low-equals-high", HP + "  weight_bits: {low: 4, high: 4, type: int, default: 4}\n", "'weight_bits'",
     "experiment's `fixed:`"),
    ("log-from-zero", HP + "  weight_decay: {low: 0.0, high: 0.01, log: true, default: 0.001}\n", "'weight_decay'",
     "raise low above 0"),
    ("log-not-bool", HP + "  lr: {low: 0.001, high: 0.1, log: yes please, default: 0.01}\n", "'lr'",
     "write `log: true`"),
    ("int-fractional-bound", HP + "  weight_bits: {low: 2.5, high: 5, type: int, default: 3}\n", "'weight_bits'",
     "give an integer low"),
    ("int-fractional-default", HP + "  weight_bits: {low: 2, high: 5, type: int, default: 3.5}\n", "'weight_bits'",
     "give an integer default"),
    ("unknown-type", HP + "  weight_bits: {low: 2, high: 5, type: integer, default: 3}\n", "'weight_bits'",
     "write `type: int`"),
    ("exponent-read-as-text", HP + "  lr: {low: 1e-3, high: 0.1, default: 0.01}\n", "'lr'", "low: 0.001"),
    ("infinite-bound", HP + "  lr: {low: 0.001, high: .inf, default: 0.01}\n", "'lr'", "give a finite high"),
    ("missing-high", HP + "  lr: {low: 0.001, default: 0.01}\n", "'lr'", "give both `low:` and `high:`"),
    ("neither-kind", HP + "  lr: {default: 0.01}\n", "'lr'", "add `choices: [...]`"),
    ("choices-and-range", HP + "  lr: {choices: [0.01, 0.1], low: 0.001, default: 0.01}\n", "'lr'",
     "use either `choices:`"),
    ("empty-choices", HP + "  optimizer: {choices: [], default: sgd}\n", "'optimizer'", "write choices: [a, b"),
    ("duplicate-choices", HP + "  optimizer: {choices: [sgd, SGD, adam], default: sgd}\n", "'optimizer'",
     "list each choice once"),
    ("nested-choice", HP + "  batch_size: {choices: [[32, 64], 128], default: 128}\n", "'batch_size'",
     "list plain values"),
    ("choice-train-rejects", HP + "  shift_type: {choices: [q, qq], default: q}\n", "'shift_type'", "use none, q, ps"),
    ("range-for-categorical", HP + "  shift_type: {low: 1, high: 3, default: 2}\n", "'shift_type'",
     "write choices: [none, q, ps"),
    ("max-layers-below-low", HP + "  shift_depth: {low: 1, high: max_layers, type: int, default: 1}\n",
     "'shift_depth'", "max_layers is 0 for this model"),
    ("when-unknown-parent", HP + OPT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, when: {optimiser: [sgd]}}\n",
     "'momentum'", "did you mean 'optimizer'"),
    ("when-parent-not-in-space", HP + "  momentum: {low: 0.0, high: 0.9, default: 0.5, when: {optimizer: [sgd]}}\n",
     "'momentum'", "add 'optimizer' to hyperparameters"),
    ("when-value-parent-cannot-take", HP + OPT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, "
     "when: {optimizer: [sgd, rmsprop]}}\n", "'momentum'", "use one of sgd, adam, radam"),
    ("when-numeric-value-out-of-range", HP + "  weight_bits: {low: 2, high: 5, type: int, default: 5}\n"
     "  rounding: {choices: [deterministic, stochastic], default: deterministic, when: {weight_bits: [4, 9]}}\n",
     "'rounding'", "use an integer in [2, 5]"),
    ("when-no-values", HP + OPT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, when: {optimizer: []}}\n",
     "'momentum'", "list values of optimizer"),
    ("when-not-mapping", HP + OPT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, when: [optimizer, sgd]}\n",
     "'momentum'", "write {parent: [v1, v2]}"),
    ("when-on-itself", HP + "  momentum: {low: 0.0, high: 0.9, default: 0.5, when: {momentum: [0.5]}}\n",
     "'momentum'", "name another hyperparameter"),
    ("when-cycle", HP + "  optimizer: {choices: [sgd, adam], default: sgd, when: {momentum: [0.5]}}\n"
     "  lr: {low: 0.001, high: 0.1, default: 0.01, when: {optimizer: [sgd]}}\n"
     "  momentum: {low: 0.0, high: 0.9, default: 0.5, when: {lr: [0.01]}}\n",
     "optimizer -> momentum -> lr -> optimizer", "drop one of these conditions"),
    ("when-any-not-list", HP + OPT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, when_any: {optimizer: sgd}}\n",
     "'momentum'", "write when_any: [{a: [v1]}, {b: [v2]}]"),
    ("when-any-unknown-parent", HP + OPT + SHIFT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, "
     "when_any: [{optimizer: sgd}, {shift_typ: q}]}\n", "when_any item 2", "did you mean 'shift_type'"),
    ("when-any-typo", HP + OPT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, when_an: [{optimizer: sgd}]}\n",
     "'momentum'", "did you mean 'when_any'"),
    ("forbidden-not-list", HP + OPT + SHIFT + "forbidden: {optimizer: sgd, shift_type: q}\n", "forbidden",
     "write forbidden: [{a: v1, b: [v2, v3]}, ...]"),
    ("forbidden-unknown-name", HP + OPT + SHIFT + "forbidden:\n  - {optimizer: sgd, shift_typ: q}\n",
     "forbidden clause 1", "did you mean 'shift_type'"),
    ("forbidden-name-not-in-space", HP + OPT + SHIFT + "forbidden:\n  - {optimizer: sgd, rounding: stochastic}\n",
     "forbidden clause 1", "add 'rounding' to hyperparameters"),
    ("forbidden-bad-value", HP + OPT + SHIFT + "forbidden:\n  - {optimizer: sgd, shift_type: [q, qq]}\n",
     "forbidden clause 1 {optimizer: sgd, shift_type: [q, qq]}", "use one of none, q, ps, dense"),
    ("forbidden-numeric-out-of-range", HP + LR + SHIFT + "forbidden:\n  - {shift_type: q}\n  - {lr: 0.5}\n",
     "forbidden clause 2 {lr: 0.5}", "use a number in [0.001, 0.1]"),
    ("forbidden-empty-clause", HP + OPT + "forbidden:\n  - {}\n", "forbidden clause 1", "write {a: v1, b: [v2, v3]}"),
    ("forbidden-forbids-default", HP + OPT + SHIFT + "forbidden:\n  - {optimizer: [sgd, radam], shift_type: ps}\n",
     "forbidden clause 1", "change the default of optimizer or shift_type"),
    # ConfigSpace's own complaint (numpy cannot hold the bound), wrapped: file, entry, ConfigSpace's text
    ("configspace-rejects", HP + "  batch_size: {low: 1, high: 100000000000000000000000, type: int, default: 5}\n",
     "'batch_size'", "ConfigSpace rejects it"),
]


@pytest.mark.parametrize("text, entry, hint", [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_a_broken_space_names_file_entry_and_fix(tmp_path, text, entry, hint):
    path = tmp_path / "broken_space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as caught:
        load_space(path, max_layers=0 if "max_layers" in text else 4)
    message = str(caught.value)
    assert isinstance(caught.value, AutoDSNNError)
    assert "\n" not in message and message.count(str(path)) == 1, message
    assert entry in message, message
    assert hint in message, message


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HP + OPT + "  lr: {low: 0.001, high: 0.1\n  momentum: {low: 0.0, high: 0.9}\n")
    with pytest.raises(SpaceError, match=r"line 3 `lr: \{low: 0.001, high: 0.1`.*found on line 4"):
        load_space(path, max_layers=4)


def test_missing_file_and_unknown_builtin(tmp_path):
    with pytest.raises(SpaceError, match="does not exist: check the path"):
        load_space(tmp_path / "nope.yaml", max_layers=4)
    with pytest.raises(SpaceError, match="unknown search space 'dsn': use one of dsnn"):
        load_space("dsn", max_layers=4)


@pytest.mark.parametrize("patched, text, entry", [
    ("UniformFloatHyperparameter", HP + LR, "hyperparameter 'lr'"),
    ("OrConjunction", HP + OPT + SHIFT + "  momentum: {low: 0.0, high: 0.9, default: 0.5, "
     "when_any: [{optimizer: sgd}, {shift_type: q}]}\n", "hyperparameter 'momentum', when_any"),
    ("ForbiddenAndConjunction", HP + OPT + SHIFT + "forbidden:\n  - {optimizer: sgd, shift_type: q}\n",
     "forbidden clause 1 {optimizer: sgd, shift_type: q}"),
])
def test_configspace_complaints_are_wrapped(tmp_path, monkeypatch, patched, text, entry):
    def complain(*args, **kwargs):
        raise ValueError("Something ConfigSpace\n   dislikes, on two lines")

    monkeypatch.setattr(space_module, patched, complain)
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as caught:
        load_space(path, max_layers=4)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and entry in message, message
    assert "(Something ConfigSpace; dislikes, on two lines)" in message and "check its" in message, message


def test_default_configuration_train_rejects_names_file_and_hyperparameter(tmp_path):
    path = tmp_path / "s.yaml"  # momentum without a condition: SMAC would sample it beside radam, which has none
    path.write_text(HP + OPT + "  momentum: {low: 0.0, high: 0.9, default: 0.5}\n")
    with pytest.raises(SpaceError, match=r"s\.yaml: optimizer: train rejects the value \w+ \(momentum=.* conditional"):
        load_space(path, max_layers=4)
    path.write_text(HP + "  optimizer: {choices: [sgd, rmsprop], default: sgd}\n"
                         "  momentum: {low: 0.0, high: 0.9, default: 0.5}\n")
    assert load_space(path, max_layers=4, fixed={"batch_size": 32})
    with pytest.raises(SpaceError, match=r"s\.yaml: default configuration: train rejects it \(batch_size"):
        load_space(path, max_layers=4, fixed={"batch_size": 0})


def _holds(config: dict, clause: dict) -> bool:
    """A condition item, checked by hand: every parent active and among its values."""
    return all(parent in config and config[parent] in (values if isinstance(values, list) else [values])
               for parent, values in clause.items())


COND_SPACE = HP + SHIFT + """\
  optimizer: {choices: [sgd, adam, rmsprop], default: sgd}
  schedule: {choices: [constant, cosine, step], default: constant}
  rounding: {choices: [deterministic, stochastic], default: deterministic, when: {shift_type: [q, ps]}}
  momentum: {low: 0.0, high: 0.9, default: 0.5, when: {optimizer: [sgd, rmsprop], rounding: stochastic}}
  lr_step: {low: 1, high: 10, type: int, default: 3, when_any: [{schedule: step}, {optimizer: adam, shift_type: none}]}
  lr_gamma: {low: 0.01, high: 0.9, default: 0.1, when: {schedule: [step, cosine]},
             when_any: [{optimizer: [sgd]}, {rounding: [stochastic]}]}
"""
CONDITIONS = {  # child -> (AND of `when`, OR of `when_any` items), as in COND_SPACE
    "rounding": ({"shift_type": ["q", "ps"]}, []),
    "momentum": ({"optimizer": ["sgd", "rmsprop"], "rounding": "stochastic"}, []),
    "lr_step": ({}, [{"schedule": "step"}, {"optimizer": "adam", "shift_type": "none"}]),
    "lr_gamma": ({"schedule": ["step", "cosine"]}, [{"optimizer": ["sgd"]}, {"rounding": ["stochastic"]}]),
}


def test_multi_parent_and_or_conditions_hold_in_samples(tmp_path):
    path = tmp_path / "conditions.yaml"
    path.write_text(COND_SPACE)
    space = load_space(path, max_layers=4, seed=1)
    configs = [dict(c) for c in space.sample_configuration(200)]
    for child, (when, when_any) in CONDITIONS.items():
        expected = [_holds(c, when) and (not when_any or any(_holds(c, item) for item in when_any)) for c in configs]
        assert [child in c for c in configs] == expected, child
        assert any(expected) and not all(expected), child  # both sides seen
    # each OR branch alone switches lr_step on, and a parent that is inactive never satisfies a condition
    assert any("lr_step" in c and c["schedule"] != "step" for c in configs)
    assert any("lr_step" in c and c["optimizer"] != "adam" for c in configs)
    assert any("lr_gamma" in c and c["optimizer"] != "sgd" for c in configs)
    assert all("momentum" not in c for c in configs if "rounding" not in c)
    default = dict(space.get_default_configuration())
    assert default["optimizer"] == "sgd" and "momentum" not in default and "lr_step" not in default


FORBIDDEN_SPACE = COND_SPACE + """\
  weight_bits: {low: 2, high: 5, type: int, default: 5}
forbidden:
  - {shift_type: q, rounding: stochastic}
  - {optimizer: [adam, rmsprop], shift_type: [dense]}
  - {weight_bits: 2, shift_type: [ps, q]}
  - {schedule: cosine}
"""
FORBIDDEN = [{"shift_type": "q", "rounding": "stochastic"},
             {"optimizer": ["adam", "rmsprop"], "shift_type": ["dense"]},
             {"weight_bits": 2, "shift_type": ["ps", "q"]},
             {"schedule": "cosine"}]


def test_forbidden_combinations_never_sampled_and_default_stays_valid(tmp_path):
    path = tmp_path / "forbidden.yaml"
    path.write_text(FORBIDDEN_SPACE)
    space = load_space(path, max_layers=4, seed=2)
    assert len(space.forbidden_clauses) == len(FORBIDDEN)
    configs = [dict(c) for c in space.sample_configuration(200)]
    for clause in FORBIDDEN:
        assert not any(_holds(c, clause) for c in configs), clause
    # the rest of each clause still occurs: only the combination is gone
    assert any(c["shift_type"] == "q" for c in configs) and any(c.get("rounding") == "stochastic" for c in configs)
    assert any(c["optimizer"] == "adam" for c in configs) and any(c["shift_type"] == "none" for c in configs)
    assert any(c["weight_bits"] == 2 for c in configs)
    for child, (when, when_any) in CONDITIONS.items():  # conditions still hold alongside the clauses
        assert all((child in c) == (_holds(c, when) and (not when_any or any(_holds(c, i) for i in when_any)))
                   for c in configs), child
    default = space.get_default_configuration()
    default.check_valid_configuration()
    assert not any(_holds(dict(default), clause) for clause in FORBIDDEN)


@pytest.mark.parametrize("name", ["dsnn", "small"])
@pytest.mark.parametrize("max_layers", [1, 6])
def test_builtin_spaces_load(name, max_layers):
    assert name in list_spaces()
    space = load_space(name, max_layers=max_layers)
    default = dict(space.get_default_configuration())
    assert default["shift_depth"] == max_layers and default["shift_type"] == "ps"
    depth = space["shift_depth"]
    # a one-layer model collapses 1..max_layers into a constant instead of failing
    assert isinstance(depth, Constant) if max_layers == 1 else depth.upper == max_layers
    assert len(space.sample_configuration(20)) == 20
    assert [str(c) for c in space.conditions] == (
        ["momentum | optimizer in {'sgd', 'rmsprop'}"] if name == "dsnn" else
        sorted([f"{n} | shift_type in {{'q', 'ps', 'dense'}}" for n in
                ("shift_depth", "weight_bits", "act_int_bits", "act_frac_bits")] + ["momentum | optimizer in {'sgd'}"]))


@pytest.mark.parametrize("entry, message", [
    ("weight_bits: {low: 2, high: 40, type: int, default: 5}", "weight_bits: train rejects the value 40"),
    ("shift_max: {low: -200, high: 0, type: int, default: 0}", "shift_max: train rejects the value -200"),
    ("lr: {low: -1.0, high: 0.1, default: 0.01}", "lr: train rejects the value -1.0"),
    ("batch_size: {low: 0, high: 64, type: int, default: 32}", "batch_size: train rejects the value 0"),
    ("optimizer: {choices: [sgd], default: sgd}\n  momentum: {low: 0.0, high: 1.5, default: 0.9}",
     "momentum: train rejects the value 1.5"),
])
def test_values_train_rejects_are_refused_when_the_space_loads(tmp_path, entry, message):
    path = tmp_path / "space.yaml"
    path.write_text(f"hyperparameters:\n  shift_type: {{choices: [ps, q], default: ps}}\n  {entry}\n")
    with pytest.raises(SpaceError, match=message):
        load_space(path, max_layers=3)


def test_a_conditional_value_is_checked_where_it_is_active(tmp_path):
    # momentum is only active under sgd; the default (radam) would reject any momentum at all
    path = tmp_path / "space.yaml"
    path.write_text("hyperparameters:\n  optimizer: {choices: [radam, sgd], default: radam}\n"
                    "  momentum: {low: 0.0, high: 0.95, default: 0.9, when: {optimizer: [sgd]}}\n")
    assert "momentum" in load_space(path, max_layers=3)


# --- conditions that can never hold --------------------------------------------------------------

NEVER_BASE = HP + SHIFT + """\
  optimizer: {choices: [sgd, adam, rmsprop], default: sgd}
  schedule: {choices: [constant, cosine, step], default: constant}
  rounding: {choices: [deterministic, stochastic], default: deterministic, when: {shift_type: [q, ps]}}
"""


@pytest.mark.parametrize("child, forbidden, message, fix", [
    # the README's example before it was mended: the second item is all forbidden
    ("lr_step: {low: 1, high: 10, type: int, default: 3, when_any: [{schedule: step}, "
     "{optimizer: adam, shift_type: none}]}", "- {optimizer: [adam, rmsprop], shift_type: [none, dense]}",
     r"'lr_step', when_any item 2 \{optimizer: \[adam\], shift_type: \[none\]\}: can never hold: forbidden "
     r"clause 1 forbids every combination it allows", "remove it, or narrow the forbidden clause"),
    # two clauses together
    ("lr_step: {low: 1, high: 10, type: int, default: 3, when: {optimizer: [adam, rmsprop]}}",
     "- {optimizer: adam}\n  - {optimizer: rmsprop, schedule: step}\n"
     "  - {optimizer: rmsprop, schedule: [constant, cosine]}",
     r"'lr_step', when \{optimizer: \[adam, rmsprop\]\}: can never hold: forbidden clauses 1, 2, 3 forbid every "
     r"combination it allows \(lr_step would never be active\)", "change the condition"),
    # through a hyperparameter the condition does not name: every schedule is forbidden with adam
    ("lr_step: {low: 1, high: 10, type: int, default: 3, when_any: [{schedule: step}, {optimizer: adam}]}",
     "- {optimizer: adam, schedule: [constant, cosine, step]}",
     r"when_any item 2 \{optimizer: \[adam\]\}: can never hold: forbidden clause 1", "narrow the forbidden"),
    # an item that contradicts the when
    ("lr_step: {low: 1, high: 10, type: int, default: 3, when: {schedule: step}, "
     "when_any: [{optimizer: sgd}, {schedule: cosine}]}", "[]",
     r"when_any item 2 \{schedule: \[cosine\]\}: can never hold: it contradicts when \{schedule: \[step\]\}",
     "remove the item, or change the when"),
])
def test_a_condition_that_can_never_hold_is_refused(tmp_path, child, forbidden, message, fix):
    path = tmp_path / "never.yaml"
    path.write_text(NEVER_BASE + f"  {child}\nforbidden:\n  {forbidden}\n" if forbidden != "[]" else
                    NEVER_BASE + f"  {child}\n")
    with pytest.raises(SpaceError, match=message) as info:
        load_space(path, max_layers=3)
    assert str(info.value).startswith(f"{path}: hyperparameter") and fix in str(info.value)


def test_a_clause_over_a_parent_that_can_be_inactive_leaves_the_condition_alive(tmp_path):
    """rounding is inactive unless shift_type is q or ps, and a clause naming an inactive
    hyperparameter does not apply: adam with shift_type none or dense meets the item. ConfigSpace's
    own samples show it."""
    path = tmp_path / "alive.yaml"
    path.write_text(NEVER_BASE + "  lr_step: {low: 1, high: 10, type: int, default: 3, when: {optimizer: adam}}\n"
                    "forbidden:\n  - {optimizer: adam, rounding: [deterministic, stochastic]}\n")
    configs = [dict(c) for c in load_space(path, max_layers=3, seed=3).sample_configuration(300)]
    assert any("lr_step" in c for c in configs)
    assert all(c["shift_type"] in ("none", "dense") for c in configs if "lr_step" in c)


def _never_holds_by_brute_force(choices, when, item, forbidden):
    """Every full assignment of the (unconditioned, categorical) parents: is none of those meeting
    the condition free of every forbidden clause?"""
    import itertools

    names = list(choices)
    for values in itertools.product(*(choices[n] for n in names)):
        point = dict(zip(names, values))
        meets = all(point[n] in vs for n, vs in {**when}.items()) and all(point[n] in vs for n, vs in item.items())
        if meets and not any(all(point[n] in vs for n, vs in c.items()) for c in forbidden):
            return False
    return True


def test_refusals_agree_with_brute_force_on_random_spaces(tmp_path):
    """200 random spaces over three categorical parents: a space is refused for a condition that
    can never hold exactly when brute force over every configuration finds one."""
    import random

    rng = random.Random(7)
    choices = {"optimizer": ["sgd", "adam", "rmsprop"], "rounding": ["deterministic", "stochastic"],
               "schedule": ["constant", "cosine", "step"]}
    def clause(k, spare_default=False):
        names = rng.sample(sorted(choices), k)
        values = {n: rng.sample(choices[n], rng.randint(1, len(choices[n]))) for n in names}
        if spare_default and names:  # a forbidden default is its own error: leave it out of one value list
            first = names[0]
            values[first] = rng.sample(choices[first][1:], rng.randint(1, len(choices[first]) - 1))
        return values

    def text(c):
        return "{" + ", ".join(f"{n}: [{', '.join(vs)}]" for n, vs in c.items()) + "}"

    refused = accepted = 0
    for case in range(200):
        when = clause(rng.randint(0, 1))
        items = [clause(rng.randint(1, 2)) for _ in range(rng.randint(0, 2))]
        forbidden = [clause(rng.randint(1, 2), spare_default=True) for _ in range(rng.randint(1, 3))]
        if not when and not items:
            continue
        entry = "{low: 1, high: 10, type: int, default: 3" + (f", when: {text(when)}" if when else "") + \
            (f", when_any: [{', '.join(text(i) for i in items)}]" if items else "") + "}"
        path = tmp_path / f"space{case}.yaml"
        path.write_text(HP + "".join(f"  {n}: {{choices: [{', '.join(vs)}], default: {vs[0]}}}\n"
                                     for n, vs in choices.items())
                        + f"  lr_step: {entry}\nforbidden:\n" + "".join(f"  - {text(c)}\n" for c in forbidden))
        never = any(_never_holds_by_brute_force(choices, when, item, forbidden) for item in (items or [{}]))
        if never:
            with pytest.raises(SpaceError, match="can never hold"):
                load_space(path, max_layers=3)
            refused += 1
        else:
            load_space(path, max_layers=3)
            accepted += 1
    assert refused >= 20 and accepted >= 20, (refused, accepted)  # both sides exercised


@pytest.mark.parametrize("pinned, refused", [(3, False), (5, True), (8, True)])
def test_clauses_that_leave_too_few_configurations_are_refused_not_sampled_forever(tmp_path, pinned, refused):
    """Each clause pins one group of four equally likely types: 4**-pinned of the configurations
    stay allowed (1/64 loads; 1/1024 and 1/65536 are refused at once, where ConfigSpace's rejection
    sampling took minutes)."""
    layers = [f"block{i}" for i in range(8)]
    path = tmp_path / "pinned.yaml"
    path.write_text("per_layer: {granularity: layer, types: [none, q, ps, dense], bits: [2, 5], default: dense}\n"
                    "hyperparameters:\n  lr: {low: 0.001, high: 0.1, log: true, default: 0.01}\nforbidden:\n"
                    + "".join(f"  - {{type:{g}: [none, q, ps]}}\n" for g in layers[:pinned]))
    if not refused:
        configs = [dict(c) for c in load_space(path, max_layers=8, layers=layers).sample_configuration(20)]
        assert all(c[f"type:{g}"] == "dense" for c in configs for g in layers[:pinned])
        return
    with pytest.raises(SpaceError, match=r"pinned.yaml: forbidden: the clauses forbid all but (\d+) of 4000 random "
                                         r"configurations .*: forbid fewer combinations") as info:
        load_space(path, max_layers=8, layers=layers)
    kept = int(str(info.value).split("all but ")[1].split(" ")[0])
    assert kept <= 4000 * 4.0 ** -pinned * 3 + 3  # about the exact share, far below 1 in 500
