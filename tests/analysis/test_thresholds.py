"""Thresholds from trials: hand-checkable cases, edges, recovery and interval coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mepkit.analysis import AnalysisError, estimate_threshold, estimate_thresholds
from mepkit.sim.subject import VirtualSubject


def test_symmetric_data_put_the_threshold_in_the_middle():
    # Hits 0/4, 1/4, 2/4, 3/4, 4/4 at 40..60: symmetric around 50 -> t = 50 exactly.
    x = np.repeat([40.0, 45.0, 50.0, 55.0, 60.0], 4)
    hits = np.array([0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1], bool)
    a = np.where(hits, 200.0, 10.0)
    for model in ("normal", "logistic"):
        est = estimate_threshold(x, a, model=model, amplitude_fit=False)
        assert est.status == "ok"
        assert est.threshold_pct_mso == pytest.approx(50.0, abs=1e-4)
        lo, hi = est.ci
        assert lo < 50 < hi and hi - 50 == pytest.approx(50 - lo, rel=1e-3)
        assert est.n_mep == 10 and est.n_trials == 20


def test_criterion_is_inclusive_and_rejected_trials_are_left_out():
    x = [40, 45, 50, 55, 60, 30]
    a = [10, 49.9, 50.0, 80, 300, np.nan]
    est = estimate_threshold(x, a, rejected=[0, 0, 0, 0, 0, 1], amplitude_fit=False)
    assert est.n_trials == 5 and est.n_mep == 3
    with pytest.raises(AnalysisError, match="NaN"):
        estimate_threshold(x, a)


@pytest.mark.parametrize("x, a, status, bound, words", [
    ([30, 40, 50, 80], [0, 10, 20, 45], "no_mep", ("lower_bound_pct_mso", 80.0),
     "no MEPs >= 50 µV up to 80 %MSO"),
    ([60, 70], [400, 900], "all_mep", ("upper_bound_pct_mso", 60.0), "below 60 %MSO"),
    ([55] * 5, [0, 80, 90, 10, 100], "single_intensity", ("upper_bound_pct_mso", 55.0),
     "two or more intensities"),
    ([55] * 4, [0, 80, 10, 10], "single_intensity", ("lower_bound_pct_mso", 55.0), "above 55"),
])
def test_data_without_an_estimate_give_a_bounded_statement(x, a, status, bound, words):
    est = estimate_threshold(x, a)
    assert est.status == status and est.threshold_pct_mso is None and est.ci is None
    assert getattr(est, bound[0]) == bound[1]
    assert words in est.message
    d = est.as_dict()
    assert d["value"] is None and d["status"] == status


def test_no_trials_and_bad_input():
    assert estimate_threshold([], []).status == "no_trials"
    assert estimate_threshold([50, 60], [1, 2], rejected=[1, 1]).status == "no_trials"
    with pytest.raises(AnalysisError, match="0–100 %MSO"):
        estimate_threshold([50, 120], [10, 100])
    with pytest.raises(AnalysisError, match="no intensity"):
        estimate_threshold([50, np.nan], [10, 100])
    with pytest.raises(AnalysisError, match="2 values but amplitude_uv has 3"):
        estimate_threshold([50, 60], [10, 100, 3])
    with pytest.raises(AnalysisError, match=">= 0"):
        estimate_threshold([50, 60], [10, -3])
    with pytest.raises(AnalysisError, match="criterion_uv"):
        estimate_threshold([50, 60], [10, 100], criterion_uv=0)


def test_complete_separation_brackets_the_gap():
    x = [40, 40, 45, 45, 55, 55, 60, 60]
    a = [0, 10, 20, 30, 80, 90, 400, 500]
    est = estimate_threshold(x, a)
    assert est.status == "ok" and 45 <= est.threshold_pct_mso <= 55
    assert est.ci[0] < 45.5 and est.ci[1] > 54.5
    assert any("separated" in n for n in est.notes)


def test_threshold_near_100_has_an_open_upper_end():
    # Only 2 of 10 trials at 100 %MSO reach 50 µV: the threshold is near or above 100.
    x = np.repeat([80.0, 90.0, 100.0], 10)
    a = np.r_[np.zeros(10), np.full(9, 20.0), 60.0, np.full(8, 20.0), 60.0, 70.0]
    est = estimate_threshold(x, a)
    assert est.status in ("ok", "above_range")
    if est.ok:
        assert est.threshold_pct_mso > 95 and math.isinf(est.ci[1])
        assert est.as_dict()["ci95"][1] is None
    else:
        assert est.lower_bound_pct_mso > 85


@pytest.mark.parametrize("preset_slope", [2.0, 6.0, 14.0])
def test_recovers_the_virtual_subjects_threshold(preset_slope):
    from dataclasses import replace

    s = VirtualSubject.from_preset("healthy", seed=11, muscles=("FDI",))
    m = replace(s.muscle("left", "FDI"), slope_pct_mso=preset_slope)
    hemis = dict(s.hemispheres)
    hemis["left"] = replace(hemis["left"], muscles={"FDI": m})
    s = VirtualSubject(hemis, seed=5)
    true = s.true_rmt("left")
    x = np.repeat(np.arange(np.floor(true) - 12, np.floor(true) + 13, 3.0), 8)
    a = np.array([s.respond(v, hemisphere="left").amplitude_uv[0] for v in x])
    est = estimate_threshold(x, a)
    assert est.ok
    assert est.ci[0] < true < est.ci[1]
    assert est.amplitude_ci[0] < true < est.amplitude_ci[1]


def test_profile_interval_coverage_of_the_hit_miss_threshold():
    """95 % intervals cover the true threshold in about 95 % of 200 simulated blocks."""
    from scipy.special import ndtr

    rng = np.random.default_rng(2024)
    x = np.repeat(np.arange(38.0, 63.0, 3.0), 6)  # 9 intensities x 6 = 54 trials
    true_t, spread = 50.0, 3.0
    covered = 0
    for _ in range(200):
        hit = rng.random(x.size) < ndtr((x - true_t) / spread)
        est = estimate_threshold(x, np.where(hit, 100.0, 10.0), amplitude_fit=False)
        covered += est.ok and est.ci[0] <= true_t <= est.ci[1]
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_table_version_per_hemisphere_and_channel():
    import pandas as pd

    rows = []
    for h, ch, t in (("left", "FDI_R", 45.0), ("right", "FDI_L", 60.0)):
        for x in np.repeat(np.arange(30.0, 80.0, 5.0), 4):
            rows.append({"hemisphere": h, "channel": ch, "condition": "",
                         "intensity_pct_mso": x, "amplitude_uv": 100.0 if x >= t else 10.0,
                         "rejected": False})
    rows.append({"hemisphere": "left", "channel": "FDI_R", "condition": "",
                 "intensity_pct_mso": 30.0, "amplitude_uv": np.nan, "rejected": True})
    out = estimate_thresholds(pd.DataFrame(rows))
    assert list(out["channel"]) == ["FDI_R", "FDI_L"]
    assert out["status"].tolist() == ["ok", "ok"]
    assert 40 <= out["threshold_pct_mso"].iloc[0] <= 45
    assert 55 <= out["threshold_pct_mso"].iloc[1] <= 60
    assert out["estimate"].iloc[0].n_trials == 40
