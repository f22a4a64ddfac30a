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
            selector._told_at_refit = n  # no result since the last refit
            expected.append((n, selector._retrain_after))
    # max(8, n / 32): SMAC's 8 until 256 trials, then a 32nd of the history
    assert expected == [(1, 8), (255, 8), (256, 8), (300, 9), (1000, 31)]


def test_a_result_told_since_the_last_refit_makes_one_due_at_once(tmp_path):
    from smac.runhistory import RunHistory
    from smac.runhistory.enumerations import StatusType

    scenario = _scenario(tmp_path)
    selector = facade._config_selector(scenario)
    selector._runhistory = history = RunHistory()
    for _ in range(20):
        history.add(scenario.configspace.sample_configuration(), cost=0.5, budget=1.0, seed=0)
    selector._told_at_refit, selector._handed_out = 20, 1
    assert selector._retrain_after == 8   # nothing new: the model proposes up to 8
    running = scenario.configspace.sample_configuration()
    history.add(running, cost=0.5, budget=1.0, seed=0, status=StatusType.RUNNING)
    assert selector._retrain_after == 8   # a trial asked for is no news
    history.add(running, cost=0.4, budget=1.0, seed=0, force_update=True)
    assert selector._retrain_after == 1   # its result is: SMAC refits when the count equals it


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


def test_refits_wait_for_their_share_of_the_drivers_time(tmp_path, monkeypatch):
    """A refit is due after max(8, ...) new configurations, and no sooner than REFIT_TIME_SHARE of the
    wall clock allows after the last one (a 1 s refit at share 0.25 waits 3 s)."""
    clock = [100.0]
    monkeypatch.setattr(facade.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(facade, "REFIT_TIME_SHARE", 0.25)
    selector = facade._config_selector(_scenario(tmp_path))
    selector._refit_ended, selector._refit_seconds = 100.0, 1.0
    selector._handed_out = 7
    assert selector._retrain_after == 8            # no news and not enough new configurations yet
    selector._handed_out = 8
    clock[0] = 102.9
    assert selector._retrain_after == 9            # enough, but only 2.9 s of the 3 s wait passed
    clock[0] = 103.0
    assert selector._retrain_after == 8            # due: SMAC refits when the count equals it


def _count_refits(tmp_path, share, monkeypatch, asks=30):
    """Ask and tell ``asks`` trials of a real SMAC facade as fast as they come: (the number of
    configurations told before each model fit, each asked configuration's origin)."""
    from smac.runhistory.dataclasses import TrialValue

    from autodsnn.search.experiment import Experiment

    monkeypatch.setattr(facade, "REFIT_TIME_SHARE", share)
    exp = Experiment(dataset="mnist", model="mnist-fc", space="small", min_budget=9, max_budget=9,
                     objectives=("error", "inference_energy"))
    smac = facade.build_facade(exp, load_space("small", max_layers=3), tmp_path / f"run{share}", overwrite=True)
    fits, origins = [], []
    train = smac._model.train
    monkeypatch.setattr(smac._model, "train", lambda x, y: (fits.append(len(x)), train(x, y))[1])
    for i in range(asks):
        info = smac.ask()
        origins.append(info.config.origin)
        smac.tell(info, TrialValue(cost=[(i * 7919 % 97) / 97, float(i % 13)], time=1.0), save=False)
    return fits, origins


def test_a_refit_share_of_one_refits_on_every_result_and_a_tiny_share_almost_never(tmp_path, monkeypatch):
    by_count, _ = _count_refits(tmp_path, 1.0, monkeypatch)
    rare, origins = _count_refits(tmp_path, 1e-9, monkeypatch)
    # asked and told one at a time: the first fit on the 9 initial configurations (8 and the
    # default), then one for every new result
    assert by_count == list(range(9, 30)), by_count
    # with no time to spare, the first fit's model serves every later ask (SMAC samples at random
    # once its candidates run out)
    assert rare == [9], rare
    assert "Random Search (max retries, no candidates)" in origins


def test_running_trials_of_a_configuration_match_smacs(tmp_path):
    """Our vector-first lookup returns what SMAC's value-by-value one does, for configurations with
    inactive (NaN) values, equal copies that are other objects, and configurations not running."""
    import copy
    import random

    from ConfigSpace import Configuration
    from smac.runhistory import RunHistory
    from smac.runhistory.enumerations import StatusType

    space = load_space("dsnn", max_layers=3)  # conditional: inactive values are NaN in the vector
    plain, ours = RunHistory(), RunHistory()
    facade.keep_bounds_incrementally(ours)
    rng = random.Random(1)
    configs = list(space.sample_configuration(12))
    for step in range(80):
        config, budget = rng.choice(configs), rng.choice([1.0, 3.0, 9.0])
        status = rng.choice([StatusType.RUNNING, StatusType.RUNNING, StatusType.SUCCESS])
        for rh in (plain, ours):
            rh.add(config, cost=[0.5, 1.0], status=status, budget=budget, seed=0, force_update=True)
        for probe in configs + [Configuration(space, values=dict(configs[step % 12])), copy.deepcopy(configs[0])]:
            assert ours.get_running_trials(probe) == plain.get_running_trials(probe), step
    assert any(ours.get_running_trials(c) for c in configs)


LAYERS = ["conv1", "conv2", "fc1", "fc2"]  # a per-layer space needs the model's convertible layers


def _built_in_space(name):
    from autodsnn.search.space import load_space as load

    return load(name, max_layers=len(LAYERS), layers=LAYERS)


def test_a_configuration_hashes_as_it_compares_however_it_was_built(tmp_path):
    """Sampled (numpy values), rebuilt from its stored values (a resume, the store) and rebuilt
    from its vector, in every built-in space: equal configurations must hash alike, or SMAC's
    run history gives one design two ids and trains it again (found trying kill -9 and --resume)."""
    import json

    from ConfigSpace import Configuration

    from autodsnn.search.optimize import _plain_config  # what the store keeps of a configuration
    from autodsnn.search.space import list_spaces

    facade.hash_configurations_by_value()
    for name in list_spaces():
        space = _built_in_space(name)
        space.seed(1)
        configs = [space.get_default_configuration(), *space.sample_configuration(200)]
        stored = [json.dumps(_plain_config(config), sort_keys=True) for config in configs]
        for config, text in zip(configs, stored):
            twins = Configuration(space, values=json.loads(text)), Configuration(space, vector=config.get_array())
            for twin in twins:
                assert twin == config and hash(twin) == hash(config), (name, config, twin)
        assert len(set(configs)) == len(set(stored))  # distinct designs stay distinct


def test_a_loaded_run_history_knows_the_configurations_smac_proposes_again(tmp_path):
    """SMAC's RunHistory saved and loaded (as on --resume) gives a re-proposed configuration its old id."""
    from smac.runhistory import RunHistory
    from smac.runhistory.dataclasses import TrialInfo, TrialValue

    facade.hash_configurations_by_value()
    space = _built_in_space("dsnn")
    space.seed(2)
    configs = space.sample_configuration(20)
    history = RunHistory()
    for i, config in enumerate(configs):
        history.add_trial(TrialInfo(config=config, seed=0, budget=1.0), TrialValue(cost=float(i)))
    history.save(tmp_path / "runhistory.json")
    loaded = RunHistory()
    loaded.load(tmp_path / "runhistory.json", space)
    for config in configs:  # the sampled objects themselves, numpy values and all
        assert loaded.has_config(config)
        assert loaded.get_config_id(config) == history.get_config_id(config)
    loaded.add_trial(TrialInfo(config=configs[3], seed=0, budget=3.0), TrialValue(cost=0.5))
    assert len(loaded.get_configs()) == len(configs)  # a promotion, not a new configuration
