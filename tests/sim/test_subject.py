"""Tests of the virtual subject (mepkit.sim.subject) and the stimulators."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from mepkit.markers import parse_marker
from mepkit.sim.stimulator import ManualStimulator, StimulatorError, make_marker
from mepkit.sim.subject import (
    HEMISPHERES,
    MUSCLES,
    PRESETS,
    VirtualSubject,
    channel_label,
)

SEEDS = range(8)


def _other(h: str) -> str:
    return "left" if h == "right" else "right"


def test_channels_and_response_layout():
    s = VirtualSubject.from_preset("healthy", seed=1)
    assert s.channels == ("FDI_R", "APB_R", "ADM_R", "FDI_L", "APB_L", "ADM_L")
    assert channel_label("left", "FDI") == "FDI_R"
    r = s.respond(90, hemisphere="right")
    assert r.channels == s.channels
    for arr in (r.amplitude_uv, r.latency_ms, r.expected_amplitude_uv, r.p_mep):
        assert arr.shape == (6,)
    assert np.all(r.amplitude_uv[:3] == 0) and np.all(np.isnan(r.latency_ms[:3]))
    assert np.all(r.amplitude_uv[3:] > 0)  # 90 %MSO: well above every threshold
    assert np.all(r.p_mep[3:] > 0.99)
    assert (r.x_mm, r.y_mm) == s.hotspot("right", "FDI")
    json.dumps(r.as_dict())  # plain data


@pytest.mark.parametrize("lesioned", HEMISPHERES)
@pytest.mark.parametrize("seed", SEEDS)
def test_stroke_severe_lesioned_side_never_responds(seed, lesioned):
    s = VirtualSubject.from_preset("stroke-severe", seed=seed, lesioned_hemisphere=lesioned)
    side = s.channels.index(channel_label(lesioned, "FDI"))
    idx = slice(side, side + 3)
    hx, hy = s.hotspot(lesioned)
    for intensity in np.linspace(0, 100, 21):
        for x, y in ((None, None), (hx + 5, hy), (hx - 10, hy + 10)):
            r = s.respond(intensity, hemisphere=lesioned, x_mm=x, y_mm=y)
            assert np.all(r.amplitude_uv == 0) and np.all(np.isnan(r.latency_ms))
            assert np.all(r.expected_amplitude_uv[idx] == 0) and np.all(r.p_mep == 0)
    for m in MUSCLES:
        assert s.true_rmt(lesioned, m) == math.inf
    # the other side is fine (even disinhibited)
    assert s.true_rmt(_other(lesioned)) < 60
    assert s.respond(100, hemisphere=_other(lesioned)).amplitude_uv.max() > 500


@pytest.mark.parametrize("lesioned", HEMISPHERES)
@pytest.mark.parametrize("seed", SEEDS)
def test_stroke_mild_raises_lesioned_threshold(seed, lesioned):
    s = VirtualSubject.from_preset("stroke-mild", seed=seed, lesioned_hemisphere=lesioned)
    healthy = _other(lesioned)
    for m in MUSCLES:
        assert s.true_rmt(lesioned, m) > s.true_rmt(healthy, m) + 8
        assert s.true_rmt(lesioned, m) < 100  # still measurable
    assert s.hemispheres[lesioned].map_sd_mm < s.hemispheres[healthy].map_sd_mm
    # smaller MEPs at matched intensity, and a lower plateau
    for intensity in range(30, 101, 5):
        assert s.expected_amplitude(intensity, hemisphere=lesioned) < \
            s.expected_amplitude(intensity, hemisphere=healthy)
    assert s.muscle(lesioned, "FDI").mep_max_uv < s.muscle(healthy, "FDI").mep_max_uv


def test_healthy_hemispheres_similar():
    for seed in SEEDS:
        s = VirtualSubject.from_preset("healthy", seed=seed)
        assert abs(s.true_rmt("left") - s.true_rmt("right")) < 10
        assert 30 < s.true_rmt("left") < 65


@pytest.mark.parametrize("preset", ["healthy", "stroke-mild"])
def test_p_mep_half_at_true_rmt_monte_carlo(preset):
    s = VirtualSubject.from_preset(preset, seed=4)
    n = 4000
    for h in HEMISPHERES:
        for m in MUSCLES:
            rmt = s.true_rmt(h, m)
            hx, hy = s.hotspot(h, m)
            c = s.channels.index(channel_label(h, m))
            amps = np.array([s.respond(rmt, hemisphere=h, x_mm=hx, y_mm=hy).amplitude_uv[c]
                             for _ in range(n)])
            frac = np.mean(amps >= 50.0)
            assert frac == pytest.approx(0.5, abs=0.04), (h, m, frac)
            assert np.median(amps) == pytest.approx(50.0, rel=0.1)
            assert s.p_mep(rmt, hemisphere=h, muscle=m, x_mm=hx, y_mm=hy) == pytest.approx(0.5)
            assert s.expected_amplitude(rmt, hemisphere=h, muscle=m, x_mm=hx, y_mm=hy) == \
                pytest.approx(50.0)


def test_voluntary_contraction_lowers_threshold_and_shortens_latency():
    s = VirtualSubject.from_preset("healthy", seed=4)
    rmt = s.true_rmt("left")
    amt = s.true_rmt("left", activation=1.0)
    assert amt == pytest.approx(s.active_threshold_ratio * rmt)
    assert s.true_rmt("left", activation=0.5) == pytest.approx(
        (1 - 0.5 * (1 - s.active_threshold_ratio)) * rmt)
    # the active threshold holds the same criterion: half of the MEPs reach 50 uV there
    assert s.p_mep(amt, hemisphere="left", activation=1.0) == pytest.approx(0.5)
    assert s.expected_amplitude(rmt, hemisphere="left", activation=1.0) > 2 * \
        s.expected_amplitude(rmt, hemisphere="left")
    c = s.channels.index(channel_label("left", "FDI"))
    at_rest = [s.respond(rmt + 15, hemisphere="left") for _ in range(400)]
    active = [s.respond(rmt + 15, hemisphere="left", activation=1.0) for _ in range(400)]
    assert all(r.activation == 1.0 for r in active) and at_rest[0].activation == 0.0
    shift = (np.nanmean([r.latency_ms[c] for r in at_rest])
             - np.nanmean([r.latency_ms[c] for r in active]))
    # 2 ms from contraction, minus the larger MEPs' own (<= 1 ms) shortening at rest
    assert 1.8 < shift < 3.1
    with pytest.raises(ValueError, match="activation"):
        s.respond(50, hemisphere="left", activation=1.5)
    with pytest.raises(ValueError, match="active_threshold_ratio"):
        VirtualSubject(s.hemispheres, active_threshold_ratio=0.0)


def test_p_mep_matches_monte_carlo_along_the_curve():
    s = VirtualSubject.from_preset("healthy", seed=2)
    rmt = s.true_rmt("left")
    for rel in (0.9, 0.95, 1.05, 1.1):
        r0 = s.respond(rel * rmt, hemisphere="left")
        amps = np.array([s.respond(rel * rmt, hemisphere="left").amplitude_uv[0]
                         for _ in range(3000)])
        assert np.mean(amps >= 50) == pytest.approx(r0.p_mep[0], abs=0.04)


def test_recruitment_monotonic_and_saturating():
    s = VirtualSubject.from_preset("healthy", seed=0)
    i = np.arange(0, 101)
    med = np.array([s.expected_amplitude(x, hemisphere="left") for x in i])
    assert np.all(np.diff(med) >= 0)
    mmax = s.muscle("left", "FDI").mep_max_uv
    assert med[-1] > 0.8 * mmax and med[-1] < mmax
    assert med[0] < 1.0


def test_variability_lognormal_sd_grows_with_amplitude():
    s = VirtualSubject.from_preset("healthy", seed=5)
    rmt = s.true_rmt("left")
    lo = np.array([s.respond(1.1 * rmt, hemisphere="left").amplitude_uv[0] for _ in range(2000)])
    hi = np.array([s.respond(min(100, 1.5 * rmt), hemisphere="left").amplitude_uv[0]
                   for _ in range(2000)])
    assert hi.std() > 2 * lo.std()
    sigma = s.muscle("left", "FDI").sigma
    assert np.log(hi).std() == pytest.approx(sigma, rel=0.1)


def test_latency_fdi_around_22_ms():
    s = VirtualSubject.from_preset("healthy", seed=0)
    lat = np.array([s.respond(70, hemisphere="left").latency_ms[0] for _ in range(2000)])
    assert np.all(np.isfinite(lat))
    assert 20.5 < lat.mean() < 23.5
    assert lat.std() == pytest.approx(1.0, abs=0.15)


def test_map_falls_off_with_distance():
    s = VirtualSubject.from_preset("healthy", seed=3)
    hx, hy = s.hotspot("left", "FDI")
    rmt = s.true_rmt("left")
    intensity = min(100.0, 1.3 * rmt)
    med = [s.expected_amplitude(intensity, hemisphere="left", x_mm=hx + d, y_mm=hy)
           for d in (0, 5, 10, 15, 20, 30)]
    assert all(a > b for a, b in zip(med, med[1:]))
    assert med[-1] < 1.0
    # any direction, same distance, same excitability
    a = s.expected_amplitude(intensity, hemisphere="left", x_mm=hx, y_mm=hy + 10)
    assert a == pytest.approx(med[2])
    # distance raises the threshold as rmt / w(d)
    sd = s.hemispheres["left"].map_sd_mm
    assert s.true_rmt("left", x_mm=hx + 10, y_mm=hy) == pytest.approx(
        rmt * math.exp(100 / (2 * sd**2)))
    # observed MEPs: mean amplitude falls with distance
    means = [np.mean([s.respond(intensity, hemisphere="left", x_mm=hx + d, y_mm=hy).amplitude_uv[0]
                      for _ in range(400)]) for d in (0, 10, 20)]
    assert means[0] > means[1] > means[2]


def test_reproducible_with_seed():
    def run(seed):
        s = VirtualSubject.from_preset("stroke-mild", seed=seed)
        return np.array([s.respond(i, hemisphere=h).amplitude_uv
                         for i in (40, 60, 80) for h in HEMISPHERES])

    np.testing.assert_array_equal(run(11), run(11))
    assert not np.array_equal(run(11), run(12))
    a, b = VirtualSubject.from_preset("healthy", seed=3), VirtualSubject.from_preset("healthy", seed=3)
    assert a.describe() == b.describe()
    assert a.true_rmt("left") != VirtualSubject.from_preset("healthy", seed=4).true_rmt("left")


def test_bad_arguments():
    with pytest.raises(ValueError, match="preset"):
        VirtualSubject.from_preset("zombie")
    with pytest.raises(ValueError, match="hemisphere"):
        VirtualSubject.from_preset("stroke-mild", lesioned_hemisphere="middle")
    s = VirtualSubject.from_preset("healthy")
    with pytest.raises(ValueError, match="0..100"):
        s.respond(120, hemisphere="left")
    with pytest.raises(ValueError, match="hemisphere"):
        s.respond(50, hemisphere="both")
    with pytest.raises(ValueError, match="muscle"):
        s.true_rmt("left", "BIC")
    assert set(PRESETS) == {"healthy", "stroke-mild", "stroke-severe"}


def test_fewer_muscles():
    s = VirtualSubject.from_preset("healthy", seed=0, muscles=("FDI",))
    assert s.channels == ("FDI_R", "FDI_L")
    assert s.respond(80, hemisphere="left").amplitude_uv.shape == (2,)


# ------------------------------------------------------------------ stimulators


def test_make_marker_parses():
    info = parse_marker(make_marker(55, 10, -5, "right", site="A1", condition="pre"))
    assert not info.problems
    assert (info.intensity_pct_mso, info.x_mm, info.y_mm, info.hemisphere, info.site,
            info.condition) == (55.0, 10.0, -5.0, "right", "A1", "pre")


def test_manual_stimulator():
    answers = iter(["", "sixty", "62", "q"])
    clock = iter([10.0, 11.0, 12.0, 13.0])
    out = io.StringIO()
    stim = ManualStimulator(input_fn=lambda: next(answers), prompt_stream=out,
                            clock=lambda: next(clock))
    p = stim.fire(55, hemisphere="left", site="hotspot")
    assert (p.time_s, p.intensity_pct_mso) == (10.0, 55.0)
    assert "55 %MSO" in out.getvalue()
    p = stim.fire(60, x_mm=5, y_mm=0)  # 'sixty' is refused, then 62 used
    assert (p.time_s, p.intensity_pct_mso) == (12.0, 62.0)
    assert json.loads(p.marker)["intensity"] == 62.0
    assert "not an intensity" in out.getvalue()
    with pytest.raises(StimulatorError, match="aborted"):
        stim.fire(60)
    with pytest.raises(ValueError):
        stim.fire(101)

    def closed():
        raise EOFError

    with pytest.raises(StimulatorError, match="closed"):
        ManualStimulator(input_fn=closed, prompt_stream=out, clock=lambda: 0.0).fire(50)
    assert len(stim.pulses) == 2
