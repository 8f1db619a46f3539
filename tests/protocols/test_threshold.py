"""Threshold hunters (mepkit.protocols.threshold) against virtual subjects with known thresholds."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import mepkit
from mepkit.protocols import ProtocolError, make_hunter
from mepkit.protocols.threshold import METHODS
from mepkit.sim.subject import HemisphereModel, MuscleModel, VirtualSubject


def subject(rmt: float, *, slope: float = 6.0, sigma: float = 0.55, mep_max: float = 2000.0,
            seed: int = 0) -> VirtualSubject:
    """A one-muscle virtual subject with a known threshold (``math.inf``: no MEPs)."""
    m = MuscleModel(rmt_pct_mso=rmt, mep_max_uv=0.0 if math.isinf(rmt) else mep_max,
                    slope_pct_mso=slope, sigma=sigma)
    h = HemisphereModel(muscles={"FDI": m})
    return VirtualSubject({"left": h, "right": h}, seed=seed)


def measure(amplitude_uv: float, rng: np.random.Generator) -> float:
    """Peak-to-peak of MEP plus a resting background (4 µV RMS), as mepkit measures it
    (see benchmarks/thresholds.py: the background alone ~18.6 µV, an MEP ~9.6 µV larger)."""
    background = 18.6 * math.exp(0.08 * rng.normal())
    return max(amplitude_uv + 9.6 + 2.4 * rng.normal(), background) if amplitude_uv else background


def run(hunter, s: VirtualSubject, seed: int = 0, *, activation: float = 0.0,
        reject_every: int = 0):
    rng = np.random.default_rng(seed)
    k = 0
    while not hunter.done:
        x = hunter.next_intensity()
        assert 0.0 <= x <= 100.0
        a = s.respond(x, hemisphere="left", activation=activation).amplitude_uv[0]
        k += 1
        hunter.observe(x, measure(a, rng), rejected=bool(reject_every and k % reject_every == 0))
    return hunter.estimate


# Median |error| (%MSO) each method must reach on the subjects of test_converges; the
# benchmark (benchmarks/thresholds.py) measures them on 1000 subjects.
TOLERANCE = {"rossini-rothwell": 1.5, "mills-nithi": 1.5, "ml-pest": 1.5, "bayes": 1.5}
TRUE_RMTS = (32.0, 41.5, 47.0, 55.3, 63.0, 71.8, 78.0)


@pytest.mark.parametrize("method", METHODS)
def test_converges_on_known_thresholds(method):
    errors = []
    for i, rmt in enumerate(TRUE_RMTS):
        for seed in range(3):
            s = subject(rmt, slope=5.0 + i % 3, sigma=0.45 + 0.1 * seed, seed=10 * i + seed)
            e = run(make_hunter(method), s, seed=seed)
            assert e.found and e.done, e.message
            assert e.method == method
            assert e.ci_low_pct_mso <= e.threshold_pct_mso <= e.ci_high_pct_mso
            errors.append(e.threshold_pct_mso - s.true_rmt("left"))
    errors = np.abs(errors)
    assert np.median(errors) <= TOLERANCE[method], errors
    assert errors.max() <= 6.0, errors


def test_bayes_intervals_cover_and_are_efficient():
    rng = np.random.default_rng(5)
    covered, errors, pulses = [], [], []
    for i in range(60):
        s = subject(rng.uniform(30, 80), slope=float(np.exp(rng.normal(np.log(6), 0.25))),
                    sigma=rng.uniform(0.4, 0.75), seed=i)
        e = run(make_hunter("bayes"), s, seed=i)
        t = s.true_rmt("left")
        covered.append(e.ci_low_pct_mso <= t <= e.ci_high_pct_mso)
        errors.append(abs(e.threshold_pct_mso - t))
        pulses.append(e.n_pulses)
        assert e.ci_level == 0.9 and e.interval == "credible"
        assert e.ci_high_pct_mso - e.ci_low_pct_mso <= 5.0 + 1e-9 or e.n_pulses == 30
    assert 0.8 <= np.mean(covered) <= 1.0
    assert np.median(errors) <= 1.2
    assert np.median(pulses) <= 10


def test_bayes_reports_slope_and_spends_few_pulses_on_steep_curves():
    steep = run(make_hunter("bayes"), subject(50.0, slope=2.0, sigma=0.4, seed=1), seed=1)
    shallow = run(make_hunter("bayes"), subject(50.0, slope=14.0, sigma=0.6, seed=1), seed=1)
    assert steep.details["slope_pct_mso"] < shallow.details["slope_pct_mso"]
    assert steep.n_pulses < shallow.n_pulses
    assert abs(steep.threshold_pct_mso - 50.0) < 1.5
    assert abs(shallow.threshold_pct_mso - 50.0) < 6.0
    for e in (steep, shallow):
        assert e.ci_low_pct_mso < 50.0 < e.ci_high_pct_mso


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("slope", [1.5, 15.0])
def test_very_steep_or_shallow_slopes(method, slope):
    s = subject(52.0, slope=slope, sigma=0.55, seed=3)
    e = run(make_hunter(method), s, seed=3)
    assert e.found
    tol = 3.0 if slope < 2 else 7.0
    assert abs(e.threshold_pct_mso - 52.0) <= tol, e.message
    assert e.ci_low_pct_mso <= e.threshold_pct_mso <= e.ci_high_pct_mso


@pytest.mark.parametrize("method", METHODS)
def test_threshold_near_100(method):
    s = subject(96.0, slope=5.0, sigma=0.5, seed=2)
    e = run(make_hunter(method), s, seed=2)
    assert e.done and e.n_pulses <= make_hunter(method).max_pulses
    if method == "mills-nithi" and not e.found:
        # its upper threshold (10 of 10 MEPs) may lie above the stimulator's maximum
        assert "upper threshold" in e.message and "above 100 %MSO" in e.message
        return
    assert e.found, e.message
    assert abs(e.threshold_pct_mso - 96.0) <= 3.0
    assert e.threshold_pct_mso <= 100.0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("s", [subject(math.inf), subject(180.0)], ids=["no-meps", "rmt-180"])
def test_no_meps_up_to_100_ends_without_a_number(method, s):
    h = make_hunter(method)
    e = run(h, s)
    assert e.done and not e.found
    assert math.isnan(e.threshold_pct_mso)
    assert e.message.startswith("no threshold up to 100 %MSO"), e.message
    assert e.n_pulses <= h.max_pulses
    assert not h.stopped_at_limit, "the method's own rule should end it, not the pulse cap"
    d = e.as_dict()
    assert d["threshold_pct_mso"] is None and d["found"] is False
    json.dumps(d, allow_nan=False)
    with pytest.raises(ProtocolError, match="done"):
        h.next_intensity()
    with pytest.raises(ProtocolError, match="done"):
        h.observe(100.0, 0.0)


def test_bayes_gives_up_quickly_without_meps():
    h = make_hunter("bayes")
    e = run(h, subject(math.inf))
    assert e.n_pulses <= 8
    assert e.details["p_above_ceiling"] >= 0.95


@pytest.mark.parametrize("method", METHODS)
def test_active_threshold_uses_200_uv(method, intensity_for_median):
    h = make_hunter(method, active=True)
    assert h.criterion_uv == 200.0 and h.active
    assert h.options()["criterion_uv"] == 200.0
    s = subject(50.0, slope=6.0, sigma=0.5, seed=4)
    # truth: the intensity where the median MEP during full contraction is 200 µV
    amt = intensity_for_median(s, 200.0, activation=1.0)
    assert amt < 50.0  # active threshold below the resting one
    errors = [run(make_hunter(method, active=True), s, seed=k, activation=1.0).threshold_pct_mso
              - amt for k in range(3)]
    assert np.median(np.abs(errors)) <= 2.0, errors
    assert make_hunter(method, criterion_uv=100.0).criterion_uv == 100.0


@pytest.mark.parametrize("method", METHODS)
def test_rejected_and_nan_trials_do_not_count(method):
    amps = iter(np.random.default_rng(8).lognormal(np.log(60), 1.0, 400))
    clean = make_hunter(method)
    noisy = make_hunter(method, max_pulses=3 * clean.max_pulses)
    while not clean.done:
        x = clean.next_intensity()
        a = next(amps)
        clean.observe(x, a)
        # the same counted trial on `noisy`, after a rejected and a NaN trial
        y = noisy.next_intensity()
        assert y == x
        step = noisy.observe(y, 5000.0, rejected=True)
        assert step.rejected and not step.counted and step.note == "rejected"
        assert noisy.next_intensity() == x  # offered again
        step = noisy.observe(y, math.nan)
        assert not step.counted and "not finite" in step.note
        assert noisy.next_intensity() == x
        noisy.observe(y, a)
    a, b = clean.estimate, noisy.estimate
    assert b.n_counted == a.n_counted == a.n_pulses
    assert b.n_pulses == 3 * a.n_pulses
    assert b.threshold_pct_mso == pytest.approx(a.threshold_pct_mso, nan_ok=True)
    assert b.ci_low_pct_mso == pytest.approx(a.ci_low_pct_mso, nan_ok=True)
    assert [s.counted for s in noisy.steps].count(False) == 2 * a.n_pulses


def test_max_pulses_counts_rejected_trials_and_ends_the_hunt():
    h = make_hunter("bayes", max_pulses=4)
    for _ in range(4):
        h.observe(h.next_intensity(), 0.0, rejected=True)
    assert h.done and h.stopped_at_limit
    e = h.estimate
    assert not e.found and e.n_counted == 0 and e.n_pulses == 4
    assert "no counted trial" in e.message
    h = make_hunter("ml-pest", max_pulses=30)
    run(h, subject(50.0), reject_every=2)
    assert h.done and h.n_pulses == 30 and h.n_counted == 15 and h.stopped_at_limit
    e = h.estimate
    assert e.found and "stopped at max_pulses=30" in e.message


def test_estimate_while_hunting_and_record_fields():
    h = make_hunter("ml-pest", hemisphere="left", site="hotspot", label="rmt")
    with pytest.raises(ProtocolError, match="no pulse"):
        h.estimate
    stim = h.propose()
    assert (stim.hemisphere, stim.site, stim.label) == ("left", "hotspot", "rmt")
    assert stim.marker_fields() == {"intensity": stim.intensity_pct_mso, "hemisphere": "left",
                                    "site": "hotspot", "label": "rmt"}
    h.observe(stim.intensity_pct_mso, 120.0)
    e = h.estimate
    assert not e.done and "in progress" in e.message
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.threshold_pct_mso = 1.0  # type: ignore[misc]
    json.dumps(e.as_dict(), allow_nan=False)
    json.dumps(h.options(), allow_nan=False)
    row = h.steps[0].as_dict()  # a row of the record's protocol table (NaN: no coil position)
    assert row["intensity_pct_mso"] == stim.intensity_pct_mso and row["site"] == "hotspot"
    assert row["amplitude_uv"] == 120.0 and row["counted"] and math.isnan(row["x_mm"])


def test_staircases_follow_their_procedures():
    # Rossini-Rothwell: a deterministic subject (MEP iff intensity >= 47)
    h = make_hunter("rossini-rothwell")
    while not h.done:
        x = h.next_intensity()
        h.observe(x, 500.0 if x >= 47 else 10.0)
    e = h.estimate
    assert e.threshold_pct_mso == 47.0
    assert (e.ci_low_pct_mso, e.ci_high_pct_mso) == (46.0, 47.0)
    assert e.ci_level is None and e.interval == "bracket"
    assert e.details["levels"]["47"] == {"hits": 5, "misses": 0}
    assert e.details["levels"]["46"] == {"hits": 0, "misses": 6}
    # 2 %MSO steps with a final 1 %MSO level
    h = make_hunter("rossini-rothwell", step_pct_mso=2)
    while not h.done:
        x = h.next_intensity()
        h.observe(x, 500.0 if x >= 47 else 10.0)
    assert h.estimate.threshold_pct_mso == 47.0
    # Mills-Nithi: MEPs always from 52, never below 44, sometimes between
    h = make_hunter("mills-nithi")
    k = 0
    while not h.done:
        x = h.next_intensity()
        k += 1
        hit = x >= 52 or (x > 44 and k % 2 == 0)
        h.observe(x, 300.0 if hit else 0.0)
    e = h.estimate
    assert (e.details["lower_threshold_pct_mso"], e.details["upper_threshold_pct_mso"]) == (44, 52)
    assert e.threshold_pct_mso == 48.0 and (e.ci_low_pct_mso, e.ci_high_pct_mso) == (44, 52)


def test_staircase_refuses_a_trial_at_another_intensity():
    h = make_hunter("rossini-rothwell")
    x = h.next_intensity()
    with pytest.raises(ProtocolError, match="testing 30 %MSO"):
        h.observe(x + 2, 100.0)
    assert h.n_pulses == 0
    # model-based hunters take the intensity actually given
    h = make_hunter("bayes")
    y = h.next_intensity() + 3
    h.observe(y, 100.0)
    assert h.steps[0].stimulus.intensity_pct_mso == y and h.n_counted == 1


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("intensity", [-1, 100.5, math.nan, math.inf, "fifty", None])
def test_bad_intensity(method, intensity):
    h = make_hunter(method)
    with pytest.raises(ProtocolError, match="intensity_pct_mso"):
        h.observe(intensity, 100.0)
    assert h.n_pulses == 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("amplitude", [-5.0, "big", None])
def test_bad_amplitude(method, amplitude):
    h = make_hunter(method)
    with pytest.raises(ProtocolError, match="amplitude_uv"):
        h.observe(h.next_intensity(), amplitude)
    assert h.n_pulses == 0


@pytest.mark.parametrize("method", METHODS)
def test_estimate_before_any_pulse(method):
    with pytest.raises(ProtocolError, match="no pulse has been observed"):
        make_hunter(method).estimate


@pytest.mark.parametrize("options, match", [
    ({"n_trials": 40, "max_pulses": 30}, "cannot exceed max_pulses"),
    ({"ci_level": 1.5}, "ci_level"),
    ({"criterion_uv": -50}, "criterion_uv"),
    ({"active": "yes"}, "active"),
    ({"max_pulses": 0}, "max_pulses"),
    ({"max_pulses": 2.5}, "whole number"),
    ({"spread": 0}, "spread"),
    ({"start_pct_mso": 120}, "start_pct_mso"),
    ({"hemisphere": 1}, "hemisphere"),
    ({"colour": "red"}, "does not take the option"),
])
def test_bad_ml_pest_options(options, match):
    with pytest.raises(ProtocolError, match=match):
        make_hunter("ml-pest", **options)


@pytest.mark.parametrize("method, options, match", [
    ("bayes", {"noise_uv": 60.0}, "below the criterion"),
    ("bayes", {"active": True, "plateaus_uv": (150.0, 1000.0)}, "above the criterion"),
    ("bayes", {"placement": "random"}, "placement"),
    ("bayes", {"prior_threshold_pct_mso": 50}, "pair of numbers"),
    ("bayes", {"ci_width_pct_mso": 0}, "ci_width_pct_mso"),
    ("rossini-rothwell", {"min_hits": 11}, "min_hits"),
    ("rossini-rothwell", {"step_pct_mso": -1}, "step_pct_mso"),
    ("mills-nithi", {"trials_per_level": 0}, "trials_per_level"),
    ("mills-nithi", {"n_trials": 10}, "does not take"),
])
def test_bad_or_contradictory_options(method, options, match):
    with pytest.raises(ProtocolError, match=match):
        make_hunter(method, **options)


@pytest.mark.parametrize("method", ["5/10", "bayesian", "", None, 3])
def test_unknown_method(method):
    with pytest.raises(ProtocolError, match="unknown threshold method.*rossini-rothwell"):
        make_hunter(method)


def test_protocol_error_is_a_mepkit_value_error():
    from mepkit.errors import MepkitError

    assert issubclass(ProtocolError, MepkitError) and issubclass(ProtocolError, ValueError)


def test_exported_lazily_from_mepkit():
    assert mepkit.make_hunter is make_hunter
    assert "make_hunter" in mepkit.__all__
