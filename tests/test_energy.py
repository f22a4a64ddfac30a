"""Energy readings are valid or visibly missing: per-second power independent of the window,
refused or failing meters never reading as free, provenance on every reading, RAPL counters
read from a (fake) powercap tree, and the inference protocol's repetitions and spread."""
import threading
import time
import warnings

import pytest
import torch

from autodsnn.trial import TrialStatus, objective_values, train_trial
from autodsnn.trial import energy as energy_mod
from autodsnn.trial.energy import EnergyMeter, format_energy
from autodsnn.trial.hparams import Task
from autodsnn.trial.inference import profile_inference, quartiles
from autodsnn.trial.rapl import RaplWindow, find_domains

SMALL = Task(dataset="digits", model="mnist-fc", val_fraction=0.2, inference_window=0.05, inference_repeats=3,
             inference_batch=16)


def _busy(seconds: float) -> None:
    """One thread multiplying matrices for ``seconds``."""
    a = torch.randn(128, 128)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a @ a


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _watts(seconds: float) -> float:
    with EnergyMeter() as meter:
        _busy(seconds)
    assert meter.reading.valid, meter.reading.missing
    return meter.reading.watts


def test_per_second_power_does_not_depend_on_the_window(one_thread):
    with EnergyMeter():  # the first tracker in a process probes the hardware for ~1 s: not in any window
        pass
    short, long = _watts(0.03), _watts(0.5)  # the two inputs: they differed ~10x
    assert 0.5 < short / long < 2, (short, long)
    sweep = {s: _watts(s) for s in (0.02, 0.1, 1.0, 5.0)}
    assert max(sweep.values()) / min(sweep.values()) < 2, sweep


@pytest.mark.parametrize("ticks", [1, 2, 3])
def test_each_interval_is_charged_once_when_the_window_ends_on_a_sampler_tick(monkeypatch, ticks):
    """CodeCarbon's sampler moves its 'last measured' mark only after a sample ends: a last
    sample taken while a scheduled one ran charged the same interval twice (a 1 s window read
    24 W instead of 14 W). Here the window ends while the k-th scheduled sample is running."""
    from codecarbon.external.ram import RAM
    charged, sampler_running = [], threading.Event()
    measure = RAM.measure_power_and_energy

    def slow_measure(self, last_duration):
        charged.append(last_duration)
        if threading.current_thread() is not threading.main_thread():
            sampler_running.set()
        time.sleep(0.03)
        return measure(self, last_duration=last_duration)

    monkeypatch.setattr(RAM, "measure_power_and_energy", slow_measure)
    with EnergyMeter(measure_power_secs=0.2) as meter:
        begun = time.perf_counter()
        for _ in range(ticks):
            sampler_running.clear()
            assert sampler_running.wait(5), "the sampler did not run"
    wall = time.perf_counter() - begun + 0.03  # the window and the last sample's own time
    after_start = sum(charged[1:])  # the start-up sample charges the tracker's first ~2 ms
    assert meter.reading.valid, meter.reading.missing
    assert after_start <= wall, f"{after_start:.3f} s charged for {wall:.3f} s of wall time: {charged}"
    # and the window itself is charged: per tick 0.2 s less the slow sample's own 30 ms, which
    # CodeCarbon leaves uncharged (its mark moves after the sample); 20% slack for scheduling
    assert after_start > 0.8 * (0.2 - 0.03) * ticks, charged


def test_a_window_too_short_or_empty_is_missing_not_free():
    with EnergyMeter() as meter:
        pass
    assert not meter.reading.valid and "too short" in meter.reading.missing
    assert meter.reading.energy_kwh is None and meter.reading.emissions_kg is None


def _refused_tracker(country, measure_power_secs):
    """A real CodeCarbon tracker that honours the single-instance lock (the setting users may
    have in their environment), made while another tracker holds the lock."""
    from codecarbon import OfflineEmissionsTracker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OfflineEmissionsTracker(country_iso_code=country, tracking_mode="process", save_to_file=False,
                                       log_level="error", allow_multiple_runs=False)


def test_a_refused_meter_never_makes_an_ok_trial_look_free(monkeypatch):
    from codecarbon import OfflineEmissionsTracker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        holder = OfflineEmissionsTracker(country_iso_code="DEU", save_to_file=False, log_level="error",
                                         allow_multiple_runs=False)
    holder.start()
    try:
        monkeypatch.setattr(energy_mod, "_make_tracker", _refused_tracker)
        with EnergyMeter() as meter:
            _busy(0.05)
        assert not meter.reading.valid and "lock" in meter.reading.missing
        result = train_trial({"shift_type": "q", "optimizer": "adam", "lr": 0.01}, 0.3, task=SMALL)
    finally:
        holder.stop()
    assert result.status is TrialStatus.OK and result.val_error is not None  # the trial itself is fine
    assert result.energy_kwh is None and result.energy_kwh_total is None and result.emissions_kg is None
    assert "lock" in result.missing["energy"] and "lock" in result.missing["inference_energy"]
    assert objective_values(result, ("error", "energy")) is None            # kept off energy fronts
    assert objective_values(result, ("error", "emissions")) is None
    assert objective_values(result, ("error", "inference_energy")) is None
    assert objective_values(result, ("error", "model_bits")) is not None    # other objectives unaffected


def test_a_meter_failing_at_stop_is_missing(monkeypatch):
    class Broken:
        _start_time = 1.0

        def start(self):
            pass

        def _measure_power_and_energy(self):
            raise AttributeError("'Tracker' object has no attribute 'final_emissions_data'")

    monkeypatch.setattr(energy_mod, "_make_tracker", lambda *a: Broken())
    with EnergyMeter() as meter:
        _busy(0.05)
    assert meter.reading.energy_kwh is None and "final_emissions_data" in meter.reading.missing


def test_every_trial_records_what_was_measured_and_how():
    result = train_trial({"shift_type": "ps", "optimizer": "adam", "lr": 0.01}, 0.5, task=SMALL)
    assert result.ok and not result.missing, result.missing
    reading = result.energy
    assert reading["seconds"] > 0 and reading["missing"] is None
    assert set(reading["measured"]) >= {"cpu", "ram"} and set(reading["methods"]) >= {"cpu", "ram"}
    assert reading["methods"]["ram"].startswith("estimate") and reading["measured"]["ram"] is False
    profile = result.inference
    assert profile["methods"] and [b["batch_size"] for b in profile["batches"]] == [1, 16]
    for row in profile["batches"]:
        assert row["repetitions"] == 3 and row["window_s"] == 0.05
        assert row["energy_uj"] > 0 and row["energy_uj_iqr"] >= 0 and row["latency_ms"] > 0
        assert row["dynamic_uj"] is not None and row["dynamic_uj"] <= row["energy_uj"]
    assert result.inference_energy_uj == profile["batches"][1]["energy_uj"]
    assert result.inference_latency_ms == profile["batches"][0]["latency_ms"]


def test_inference_windows_repeat_short_work_to_the_minimum():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    batches = [(torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,)))]
    profile = profile_inference(model, batches, torch.device("cpu"), batch_sizes=(1, 8), window_s=0.1, repeats=2)
    assert profile.path == "torch float (no shift layers)" and profile.samples == 32
    for b in profile.batches:
        # each window ran far more images than one pass: a tiny model repeats to fill 0.1 s
        assert all(n > 8 * b.batch_size for n in b.images)
        assert all(ms * n >= 100 * 0.9 for ms, n in zip(b.latency_ms, b.images))


def test_quartiles():
    assert quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


def _powercap(root, package_uj, dram_uj, max_uj=1_000_000_000):
    for rel, name, value in (("intel-rapl:0", "package-0", package_uj), ("intel-rapl:0/intel-rapl:0:0", "core", 7),
                             ("intel-rapl:0/intel-rapl:0:1", "dram", dram_uj)):
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    # the kernel also links the subdomains at the top level
    for sub in ("intel-rapl:0:0", "intel-rapl:0:1"):
        (root / sub).symlink_to(root / "intel-rapl:0" / sub)


def test_rapl_counters_on_a_fake_powercap_tree(tmp_path, monkeypatch):
    _powercap(tmp_path, package_uj=999_000_000, dram_uj=5_000_000)
    domains = find_domains(tmp_path)
    assert [(d.name, d.kind) for d in domains] == [("package-0", "package"), ("dram", "dram")]
    window = RaplWindow(domains)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("2000000\n")      # wrapped: 1 J + 2 J
    (tmp_path / "intel-rapl:0" / "intel-rapl:0:1" / "energy_uj").write_text("5500000\n")  # 0.5 J
    machine, own, share = window.stop()
    assert machine == {"package": pytest.approx(3.0), "dram": pytest.approx(0.5)}
    assert 0 <= share <= 1 and own["package"] == pytest.approx(3.0 * share)
    # the meter uses the counters instead of CodeCarbon's estimates, and says so
    monkeypatch.setenv("AUTODSNN_POWERCAP", str(tmp_path))
    with EnergyMeter() as meter:
        (tmp_path / "intel-rapl:0" / "energy_uj").write_text("12000000\n")  # +10 J while we work
        _busy(0.1)
    reading = meter.reading
    assert reading.valid and reading.measured["cpu"] and reading.measured["ram"]
    assert reading.methods["cpu"].startswith("RAPL package counter") and "share" in reading.methods["cpu"]
    assert reading.counters["machine_package_j"] == pytest.approx(10.0)
    assert reading.cpu_kwh * 3.6e6 == pytest.approx(10.0 * reading.counters["process_share"])
    assert reading.energy_kwh == pytest.approx(reading.cpu_kwh + reading.ram_kwh + reading.gpu_kwh)


def test_unreadable_powercap_is_ignored(tmp_path):
    assert find_domains(tmp_path / "none") == []
    (tmp_path / "intel-rapl:0").mkdir()
    (tmp_path / "intel-rapl:0" / "name").write_text("package-0")
    assert find_domains(tmp_path) == []  # no energy_uj (root-only on many kernels): no counters


def test_energy_units_people_read():
    assert format_energy(None) == "missing"
    assert format_energy(1e-4) == "360 J"
    assert format_energy(2e-7) == "720 mJ"
    assert format_energy(1100 / 3.6e6) == "1.1 kJ"
    assert format_energy(0.002) == "7.2 kJ"
    assert format_energy(0.05) == "50 Wh"
    assert format_energy(3.5) == "3.5 kWh"
