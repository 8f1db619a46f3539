"""Hemispheric excitability on the virtual stroke subject: known ratios, bounds, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mepkit.analysis import AnalysisError, hemispheric_excitability, split_channel
from mepkit.sim.subject import VirtualSubject
from simulate import subject_table

INTENSITIES = np.arange(30.0, 101.0, 5.0)


def within(q, truth, slack=0.5):
    """Truth inside the 95 % interval widened by ``slack`` of its width on each side.

    Eight intervals are checked on one simulated session; each misses its truth 5 % of the
    time by design, so plain 95 % intervals would fail one check in three sessions. Widened
    by half their width they are ~99.9 % intervals, which still catch a wrong definition
    or a biased estimate (their coverage is tested on its own in test_thresholds.py and
    test_recruitment.py).
    """
    lo, hi = q.ci
    pad = slack * (hi - lo)
    return lo - pad <= truth <= hi + pad


@pytest.fixture(scope="module")
def mild():
    s = VirtualSubject.from_preset("stroke-mild", seed=3, lesioned_hemisphere="right",
                                   muscles=("FDI",))
    t = subject_table(s, INTENSITIES, repeats=5, seed=1, ihi={"right": 0.5},
                      test_intensity={"right": 90.0}, n_ihi=15)
    return s, t, hemispheric_excitability(t, affected="right", n_boot=300, seed=2)


def test_recovers_the_stroke_subjects_known_ratios(mild):
    s, _, res = mild
    a_rmt, u_rmt = s.true_rmt("right"), s.true_rmt("left")
    fdi = res.muscles["FDI"]
    assert fdi["channels"] == {"left": "FDI_R", "right": "FDI_L"}
    for h, ch, true in (("right", "FDI_L", a_rmt), ("left", "FDI_R", u_rmt)):
        est = res.sides[h][ch].rmt
        assert within(type("Q", (), {"ci": est.ci})(), true)
    assert within(fdi["rmt_ratio"], a_rmt / u_rmt)
    assert fdi["rmt_ratio"].value == pytest.approx(a_rmt / u_rmt, rel=0.06)
    li_rmt = (a_rmt - u_rmt) / (a_rmt + u_rmt)
    assert within(fdi["laterality_index"]["rmt"], li_rmt)
    q = fdi["mep_ratio"]["same_pct_rmt"]
    true_rmt_ratio = (s.expected_amplitude(1.2 * a_rmt, hemisphere="right")
                      / s.expected_amplitude(1.2 * u_rmt, hemisphere="left"))
    assert within(q, true_rmt_ratio)
    q = fdi["mep_ratio"]["same_pct_mso"]
    i0 = q.details["intensity_pct_mso"]
    assert i0 == pytest.approx(1.2 * res.sides["left"]["FDI_R"].rmt.threshold_pct_mso)
    ma, mu = (s.expected_amplitude(i0, hemisphere=h) for h in ("right", "left"))
    assert within(q, ma / mu)
    assert q.value < 0.3  # the lesioned side is far less excitable at the same intensity
    assert within(fdi["laterality_index"]["mep"], (mu - ma) / (mu + ma))
    ihi = res.ihi["right"]["FDI_L"]["ihi"]
    assert within(ihi, 0.5)
    assert ihi.details["n_conditioned"] == 15 and ihi.details["test_intensity_pct_mso"] == [90.0]


def test_curves_side_by_side_recover_the_subject(mild):
    s, _, res = mild
    for h, ch in (("left", "FDI_R"), ("right", "FDI_L")):
        m = s.muscle(h, "FDI")
        fit = res.sides[h][ch].recruitment
        assert fit.ok
        for name, true in (("i50_pct_mso", m.i50_pct_mso), ("slope_pct_mso", m.slope_pct_mso),
                           ("mep_max_uv", m.mep_max_uv)):
            lo, hi = getattr(fit, name + "_ci")
            pad = 0.5 * (hi - lo) if math.isfinite(hi) else 0.0
            assert lo - pad < true < hi + pad, (h, name)


def test_json_has_the_documented_keys(mild):
    _, _, res = mild
    d = json.loads(json.dumps(res.as_dict(), allow_nan=False))
    side = d["hemispheres"]["right"]["FDI_L"]
    assert set(side["rmt_pct_mso"]) >= {"value", "ci95", "status"}
    assert set(side["recruitment"]) >= {"mep_max_uv", "i50_pct_mso", "slope_pct_mso"}
    assert set(side["recruitment"]["i50_pct_mso"]) == {"value", "ci95"}
    m = d["muscles"]["FDI"]
    assert set(m) >= {"rmt_ratio", "mep_ratio", "laterality_index"}
    assert set(m["mep_ratio"]) == {"same_pct_rmt", "same_pct_mso"}
    assert d["affected"] == "right" and d["numerator"] == "right"
    assert d["ihi"]["right"]["FDI_L"]["ihi"]["value"] > 0


def test_seeded_bootstrap_is_reproducible(mild):
    _, t, res = mild
    again = hemispheric_excitability(t, affected="right", n_boot=300, seed=2)
    assert again.muscles["FDI"]["rmt_ratio"].ci == res.muscles["FDI"]["rmt_ratio"].ci


def test_no_meps_on_the_affected_side_give_bounds_not_a_crash():
    s = VirtualSubject.from_preset("stroke-severe", seed=4, lesioned_hemisphere="left",
                                   muscles=("FDI",))
    t = subject_table(s, INTENSITIES, repeats=3, seed=5)
    res = hemispheric_excitability(t, affected="left", n_boot=100)
    fdi = res.muscles["FDI"]
    r = fdi["rmt_ratio"]
    u_rmt = res.sides["right"]["FDI_L"].rmt.threshold_pct_mso
    assert r.value is None
    assert r.lower_bound == pytest.approx(100.0 / u_rmt)
    assert "no MEPs on the affected side up to 100 %MSO" in r.message
    assert r.lower_bound > 100.0 / s.true_rmt("right") * 0.9
    q = fdi["mep_ratio"]["same_pct_mso"]
    assert q.value is None and 0 < q.upper_bound < 1 and "no MEPs on the affected side" in q.message
    li = fdi["laterality_index"]["mep"]
    assert li.value is None and 0 < li.lower_bound < 1
    assert fdi["mep_ratio"]["same_pct_rmt"].value is None
    d = res.as_dict()
    json.dumps(d, allow_nan=False)
    assert d["hemispheres"]["left"]["FDI_R"]["rmt_pct_mso"]["value"] is None
    assert d["hemispheres"]["left"]["FDI_R"]["rmt_pct_mso"]["lower_bound_pct_mso"] == 100.0


def test_no_meps_on_the_unaffected_side_give_an_upper_bound():
    s = VirtualSubject.from_preset("stroke-severe", seed=4, lesioned_hemisphere="left",
                                   muscles=("FDI",))
    t = subject_table(s, INTENSITIES, repeats=3, seed=5)
    res = hemispheric_excitability(t, affected="right", n_boot=100)
    r = res.muscles["FDI"]["rmt_ratio"]
    assert r.value is None and r.upper_bound is not None and r.upper_bound < 1
    assert "no MEPs on the unaffected side" in r.message


def test_without_affected_the_ratio_is_left_over_right(mild):
    _, t, res = mild
    plain = hemispheric_excitability(t, n_boot=100)
    assert (plain.affected, plain.unaffected, plain.affected_given) == ("left", "right", False)
    assert plain.muscles["FDI"]["rmt_ratio"].value == pytest.approx(
        1.0 / res.muscles["FDI"]["rmt_ratio"].value)
    assert plain.as_dict()["affected"] is None


def test_missing_intensity_or_hemisphere_is_a_clear_error(mild):
    _, t, _ = mild
    bad = t.copy()
    bad.loc[bad["trial"] == 3, "intensity_pct_mso"] = np.nan
    with pytest.raises(AnalysisError, match=r"have no intensity in sim \(trial 3.*'intensity'"):
        hemispheric_excitability(bad)
    bad = t.copy()
    bad["hemisphere"] = ""
    with pytest.raises(AnalysisError, match="no hemisphere.*marker key 'hemisphere'"):
        hemispheric_excitability(bad)
    with pytest.raises(AnalysisError, match="no column.*hemisphere"):
        hemispheric_excitability(t.drop(columns=["hemisphere"]))
    bad = t.copy()
    bad["hemisphere"] = "middle"
    with pytest.raises(AnalysisError, match="'left' or 'right'"):
        hemispheric_excitability(bad)
    with pytest.raises(AnalysisError, match="affected"):
        hemispheric_excitability(t, affected="up")
    # a rejected trial may lack them
    ok = t.copy()
    ok.loc[ok["trial"] == 3, ["intensity_pct_mso", "amplitude_uv"]] = np.nan
    ok.loc[ok["trial"] == 3, "rejected"] = True
    hemispheric_excitability(ok, n_boot=50)


def test_channel_names_and_pairing():
    assert split_channel("FDI_R") == ("FDI", "R")
    assert split_channel("left APB") == ("APB", "L")
    assert split_channel("EMG1") == ("EMG1", None)
    assert split_channel("ADM-L") == ("ADM", "L")
    s = VirtualSubject.from_preset("stroke-mild", seed=3, muscles=("FDI", "APB"))
    t = subject_table(s, INTENSITIES, repeats=2, seed=1)
    res = hemispheric_excitability(t, affected="right", n_boot=50)
    assert res.muscles["APB"]["channels"] == {"left": "APB_R", "right": "APB_L"}
    assert set(res.sides["left"]) == {"FDI_R", "APB_R"}  # ipsilateral channels not used
    # Channels without a hand (one electrode pair moved between sides) pair by name.
    one = t[t["channel"].isin(["FDI_R", "FDI_L"])].copy()
    one["channel"] = "EMG1"
    one = one[(one["hemisphere"] == "left") & (t.loc[one.index, "channel"] == "FDI_R")
              | (one["hemisphere"] == "right") & (t.loc[one.index, "channel"] == "FDI_L")]
    res = hemispheric_excitability(one, affected="right", n_boot=50)
    assert res.muscles["EMG1"]["channels"] == {"left": "EMG1", "right": "EMG1"}
    assert res.muscles["EMG1"]["rmt_ratio"].value > 1.1
