"""The SMAC parts we set ourselves match SMAC's own facade except where we say why."""
from smac import MultiFidelityFacade, Scenario

from autodsnn.search import facade
from autodsnn.search.space import load_space


def _scenario(tmp_path):
    return Scenario(load_space("small", max_layers=3), output_directory=tmp_path, deterministic=True, min_budget=1,
                    max_budget=9, n_trials=10)


def test_surrogate_is_smacs_forest_predicting_in_one_thread(tmp_path):
    scenario = _scenario(tmp_path)
    ours, smacs = facade._surrogate(scenario).meta, MultiFidelityFacade.get_model(scenario).meta
    assert ours["n_jobs"] == 1 and smacs["n_jobs"] != 1
    assert {k: v for k, v in ours.items() if k != "n_jobs"} == {k: v for k, v in smacs.items() if k != "n_jobs"}


def test_surrogate_refits_less_often_as_the_history_grows(tmp_path):
    from smac.runhistory import RunHistory

    scenario = _scenario(tmp_path)
    selector = facade._config_selector(scenario)
    smacs = MultiFidelityFacade.get_config_selector(scenario)
    assert selector._max_new_config_tries == smacs._max_new_config_tries
    history = RunHistory()
    selector._runhistory = history
    space = scenario.configspace
    expected = []
    for n in range(1, 1001):
        history.add(space.sample_configuration(), cost=0.5, budget=1.0, seed=0)
        if n in (1, 255, 256, 300, 1000):
            expected.append((n, selector._retrain_after))
    # max(8, n / 32): SMAC's 8 until 256 trials, then a 32nd of the history
    assert expected == [(1, 8), (255, 8), (256, 8), (300, 9), (1000, 31)]


def test_incremental_objective_bounds_equal_smacs_full_recomputation(tmp_path):
    import random

    from smac.runhistory import RunHistory
    from smac.runhistory.enumerations import StatusType

    space = _scenario(tmp_path).configspace
    plain, ours = RunHistory(), RunHistory()
    facade.keep_bounds_incrementally(ours)
    rng = random.Random(0)
    configs = list(space.sample_configuration(30))
    for step in range(300):
        config = rng.choice(configs)
        budget = rng.choice([1.0, 3.0, 9.0])
        status = rng.choice([StatusType.RUNNING, StatusType.SUCCESS, StatusType.SUCCESS, StatusType.CRASHED])
        cost = [rng.uniform(0, 1), rng.uniform(0, 100)]  # a re-told key may get other costs: bounds can shrink
        for rh in (plain, ours):
            rh.add(config, cost=cost, status=status, budget=budget, seed=0, force_update=True)
        assert ours.objective_bounds == [tuple(b) for b in plain.objective_bounds], step


def test_the_selectors_processed_configs_answer_in_by_lookup(tmp_path):
    selector = facade._config_selector(_scenario(tmp_path))
    configs = list(_scenario(tmp_path).configspace.sample_configuration(5))
    selector._processed_configs = configs[:3]
    assert isinstance(selector._processed_configs, facade._IndexedList)
    assert configs[0] in selector._processed_configs and configs[4] not in selector._processed_configs
    selector._processed_configs.append(configs[4])
    assert configs[4] in selector._processed_configs and len(selector._processed_configs) == 4
