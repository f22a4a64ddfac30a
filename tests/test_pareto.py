import itertools

import numpy as np
import pytest

from autodsnn.analysis.pareto import (ParetoError, compare, hypervolume, knee, non_dominated, reference_point)


def brute_force_hv(points, ref):
    """Inclusion-exclusion over all subsets: the union volume of the boxes [p, ref]."""
    pts = [p for p in np.asarray(points, float) if np.all(p < ref)]
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * np.prod(np.asarray(ref) - corner)
    return total


def brute_force_front(points):
    p = np.asarray(points, float)
    return np.array([not any(np.all(q <= x) and np.any(q < x) for q in p) for x in p])


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(12))
def test_hypervolume_matches_brute_force(k, seed):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 9)
    pts = rng.random((n, k))
    if seed % 3 == 0:
        pts = np.round(pts, 1)  # ties and duplicates
    ref = np.full(k, 1.1)
    assert hypervolume(pts, ref) == pytest.approx(brute_force_hv(pts, ref), abs=1e-12)
    assert np.array_equal(non_dominated(pts), brute_force_front(pts))
    # dominated points add no volume
    assert hypervolume(pts[non_dominated(pts)], ref) == pytest.approx(hypervolume(pts, ref))


def test_hand_computed_cases():
    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == 3.0
    assert hypervolume([[0, 0]], [2, 3]) == 6.0
    assert hypervolume([[1, 1, 1]], [2, 2, 2]) == 1.0
    # two boxes in 3-D: [0,2]x[1,2]x[1,2] etc. -> check against brute force explicitly
    pts = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    assert hypervolume(pts, [2, 2, 2]) == pytest.approx(brute_force_hv(pts, [2, 2, 2]))
    assert hypervolume([[5, 5]], [3, 3]) == 0.0  # outside the box
    assert hypervolume(np.empty((0, 2)), [1, 1]) == 0.0


def test_reference_point_is_worst_plus_margin():
    ref = reference_point(np.array([[0.1, 10.0], [0.3, 20.0]]))
    assert ref == pytest.approx([0.32, 21.0])
    assert reference_point(np.array([[0.5, 2.0]])) == pytest.approx([0.55, 2.2])  # zero range


def test_knee_and_compare():
    front = np.array([[0.0, 1.0], [0.2, 0.2], [1.0, 0.0]])
    assert knee(front) == 1
    c = compare([0.1, 0.5], [0.2, 1.0], ["error", "energy"])
    assert c["dominates_default"] and not c["dominated_by_default"]
    assert c["change_percent"] == pytest.approx({"error": -50.0, "energy": -50.0})
    with pytest.raises(ParetoError, match="empty"):
        knee(np.empty((0, 2)))
    with pytest.raises(ParetoError, match="do not match"):
        hypervolume([[1, 2, 3]], [1, 1])


def test_dominance_is_claimed_only_beyond_the_measured_spread():
    from autodsnn.analysis.pareto import comparison_text
    objectives = ["error", "inference_energy"]
    default, default_spread = [0.20, 100.0], [0.01, 5.0]
    # error 0.185 vs 0.20 with spreads 0.01 + 0.01: within noise; energy 80 vs 100 (5 + 5): better
    c = compare([0.185, 80.0], default, objectives, [0.01, 5.0], default_spread)
    assert c["verdicts"] == {"error": "within noise", "inference_energy": "better"}
    assert c["dominates_default"] and not c["within_noise"]
    assert comparison_text(c) == "dominates the default (error ~ (within noise), inference_energy -20.0%)"
    # smaller in both, but every difference inside the noise: no dominance claimed
    c = compare([0.195, 97.0], default, objectives, [0.01, 5.0], default_spread)
    assert not c["dominates_default"] and c["within_noise"]
    assert comparison_text(c).startswith("within noise of the default")
    # better beyond noise in one, worse beyond noise in the other: a trade-off
    c = compare([0.10, 130.0], default, objectives, [0.01, 5.0], default_spread)
    assert c["verdicts"] == {"error": "better", "inference_energy": "worse"}
    assert not c["dominates_default"] and not c["dominated_by_default"]
    assert comparison_text(c).startswith("trades off")
    # spreads not measured count as zero, and the text marks them
    c = compare([0.19, 99.0], default, objectives)
    assert c["dominates_default"] and c["spread_known"] == {"error": False, "inference_energy": False}
    assert comparison_text(c).endswith("error -5.0%?, inference_energy -1.0%?)")


def test_a_synthetic_front_sweep_of_noise():
    """Every point on a grid around the default, every spread: the verdict follows the rule
    |a - b| > spread_a + spread_b, computed here independently."""
    rng = np.random.default_rng(0)
    default = np.array([0.3, 50.0])
    for _ in range(500):
        point = default + rng.normal(0, [0.05, 10.0])
        sp, sd = rng.uniform(0, [0.05, 10.0]), rng.uniform(0, [0.05, 10.0])
        c = compare(point, default, ["error", "energy"], sp, sd)
        beyond = np.abs(point - default) > sp + sd
        better = beyond & (point < default)
        worse = beyond & (point > default)
        assert c["dominates_default"] == bool(better.any() and not worse.any())
        assert c["within_noise"] == bool(not beyond.any())
