"""Recruitment-curve fits: exact data, edges, and interval coverage at the advertised rate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mepkit.analysis import AnalysisError, boltzmann, fit_recruitment, fit_recruitment_curves


def test_boltzmann_by_hand():
    assert boltzmann(60.0, 2000.0, 60.0, 5.0) == pytest.approx(1000.0)
    # One slope above the midpoint: 1 / (1 + e^-1) of the plateau.
    assert boltzmann(65.0, 2000.0, 60.0, 5.0) == pytest.approx(2000.0 / (1 + math.exp(-1)))


def test_noise_free_curve_is_recovered_exactly():
    x = np.arange(30.0, 101.0, 2.5)
    a = boltzmann(x, 2500.0, 62.0, 4.5) * np.exp(0.01 * np.sin(x))  # tiny, fixed wiggle
    fit = fit_recruitment(x, a)
    assert fit.ok
    assert fit.mep_max_uv == pytest.approx(2500.0, rel=0.01)
    assert fit.i50_pct_mso == pytest.approx(62.0, abs=0.05)
    assert fit.slope_pct_mso == pytest.approx(4.5, rel=0.01)
    for name in ("mep_max_uv", "i50_pct_mso", "slope_pct_mso"):
        lo, hi = getattr(fit, name + "_ci")
        assert lo <= getattr(fit, name) <= hi


def test_amplitudes_below_the_floor_are_censored_not_dropped():
    # The true curve is below 14 µV up to 50 %MSO: those trials say only "below the floor".
    x = np.r_[np.repeat([30.0, 35.0, 40.0, 45.0, 50.0], 3), np.arange(55.0, 101.0, 5.0)]
    a = np.r_[np.zeros(15), boltzmann(np.arange(55.0, 101.0, 5.0), 2000.0, 70.0, 4.0)]
    fit = fit_recruitment(x, a)
    assert fit.ok and fit.n_censored == 15
    assert fit.predict(45.0) < fit.floor_uv
    assert fit.i50_pct_mso == pytest.approx(70.0, abs=0.5)
    assert fit.slope_pct_mso == pytest.approx(4.0, rel=0.05)


def test_edges_give_a_status_not_an_exception():
    no = fit_recruitment([40, 50, 60, 70, 80], [0, 5, 10, 12, 0])
    assert no.status == "no_mep" and "no MEPs" in no.message and "80 %MSO" in no.message
    assert no.mep_max_uv is None and no.as_dict()["mep_max_uv"]["value"] is None
    few = fit_recruitment([50, 50, 60, 60], [100, 200, 300, 400])
    assert few.status == "insufficient" and "3 or more intensities" in few.message
    with pytest.raises(AnalysisError):
        fit_recruitment([50, 60], [100, np.nan])
    with pytest.raises(AnalysisError, match="no intensity"):
        fit_recruitment([np.nan, 60], [100, 200])
    with pytest.raises(AnalysisError):
        fit_recruitment([50, 60, 70], [1, 2, 3], floor_uv=0)
    with pytest.raises(AnalysisError):
        no.predict(50.0)


def test_unreached_plateau_has_an_open_upper_interval_and_a_note():
    rng = np.random.default_rng(3)
    x = np.repeat(np.arange(40.0, 71.0, 5.0), 5)  # the curve's midpoint is at 80
    a = boltzmann(x, 3000.0, 80.0, 6.0) * np.exp(0.5 * rng.standard_normal(x.size))
    fit = fit_recruitment(x, a)
    assert fit.ok
    assert any("plateau not reached" in n for n in fit.notes)
    assert math.isinf(fit.mep_max_uv_ci[1]) or fit.mep_max_uv_ci[1] > 3 * fit.mep_max_uv
    d = fit.as_dict()
    json.dumps(d, allow_nan=False)  # JSON-safe: open ends are null


def test_interval_coverage_at_the_advertised_rate():
    """The 95 % profile intervals hold the true parameters in ~95 % of 200 simulated curves.

    Data as the model says (log-normal around a Boltzmann, amplitudes below 10 µV lost,
    censoring floor 30 µV): 15 intensities from 30 to 100 %MSO, 4 trials each. With 200
    data sets the count of covered ones has an SD of about 3, so 180–198 is 95 % ± 3 SD.
    """
    rng = np.random.default_rng(7)
    truth = {"mep_max_uv": 2000.0, "i50_pct_mso": 62.0, "slope_pct_mso": 5.0}
    x = np.repeat(np.arange(30.0, 101.0, 5.0), 4)
    covered = {k: 0 for k in truth}
    for _ in range(200):
        a = boltzmann(x, *truth.values()) * np.exp(0.5 * rng.standard_normal(x.size))
        a[a < 10.0] = 0.0
        fit = fit_recruitment(x, a)
        assert fit.ok
        for k, v in truth.items():
            lo, hi = getattr(fit, k + "_ci")
            covered[k] += lo <= v <= hi
    for k, n in covered.items():
        assert 180 <= n <= 198, (k, n)


def test_table_version_per_hemisphere_and_channel():
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for h, ch, i50 in (("left", "FDI_R", 60.0), ("right", "FDI_L", 75.0)):
        for x in np.repeat(np.arange(30.0, 101.0, 5.0), 3):
            amp = float(boltzmann(x, 2000.0, i50, 5.0) * np.exp(0.3 * rng.standard_normal()))
            rows.append({"hemisphere": h, "channel": ch, "condition": "",
                         "intensity_pct_mso": x, "amplitude_uv": amp, "rejected": False})
    out = fit_recruitment_curves(pd.DataFrame(rows))
    assert out["status"].tolist() == ["ok", "ok"]
    got = dict(zip(out["channel"], out["i50_pct_mso"]))
    assert got["FDI_R"] == pytest.approx(60.0, abs=2.0)
    assert got["FDI_L"] == pytest.approx(75.0, abs=2.0)
    assert (out["i50_pct_mso_ci_low"] < out["i50_pct_mso"]).all()
