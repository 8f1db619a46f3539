"""Recruitment (input-output curve) protocol: levels, blocks, clipping, per-level data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import mepkit
from mepkit.protocols import ProtocolError, RecruitmentProtocol
from mepkit.sim.subject import VirtualSubject


def run(p: RecruitmentProtocol, subject: VirtualSubject, *, reject=lambda k: False):
    k = 0
    while not p.done:
        x = p.next_intensity()
        a = subject.respond(x, hemisphere="left").amplitude_uv[0]
        p.observe(x, a, rejected=reject(k))
        k += 1
    return p.estimate


def test_default_levels_blocks_and_estimate():
    p = RecruitmentProtocol(rmt_pct_mso=50)
    assert p.intensities == (45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0)
    assert len(p.schedule) == 70 and p.note == ""
    for b in range(10):  # every block holds every level once
        assert sorted(p.schedule[7 * b: 7 * b + 7]) == list(p.intensities)
    assert p.schedule != tuple(sorted(p.schedule))  # randomised
    assert RecruitmentProtocol(50, seed=0).schedule == p.schedule  # seeded
    assert RecruitmentProtocol(50, seed=1).schedule != p.schedule

    s = VirtualSubject.from_preset("healthy", seed=3)
    p = RecruitmentProtocol(rmt_pct_mso=s.true_rmt("left"), hemisphere="left")
    e = run(p, s)
    assert p.done and e.done and e.n_pulses == e.n_counted == 70
    assert [lv.n for lv in e.levels] == [10] * 7
    assert [lv.pct_rmt for lv in e.levels] == [(float(q),) for q in range(90, 151, 10)]
    x, y = np.array(e.intensities_pct_mso), np.array(e.amplitudes_uv)
    for lv in e.levels:
        a = y[x == lv.intensity_pct_mso]
        assert lv.mean_uv == pytest.approx(a.mean()) and lv.median_uv == pytest.approx(np.median(a))
        assert lv.sd_uv == pytest.approx(a.std(ddof=1))
        assert lv.n_meps == int((a >= 50).sum())
    medians = [lv.median_uv for lv in e.levels]
    assert medians[-1] > 5 * medians[0]  # the curve rises
    assert e.levels[0].n_meps < e.levels[-1].n_meps == 10
    json.dumps(e.as_dict(), allow_nan=False)
    json.dumps(p.options(), allow_nan=False)
    with pytest.raises(ProtocolError, match="done"):
        p.next_intensity()


def test_levels_above_100_are_clipped_and_merged_with_a_note():
    p = RecruitmentProtocol(rmt_pct_mso=80, n_per_level=2)
    assert p.intensities == (72.0, 80.0, 88.0, 96.0, 100.0)
    assert "130 % RMT (104 %MSO)" in p.note and "150 % RMT (120 %MSO)" in p.note
    assert "given at 100 %MSO" in p.note
    assert "130 % RMT and 140 % RMT and 150 % RMT fall on the same intensity" in p.note
    assert len(p.schedule) == 10
    assert max(p.schedule) == 100.0
    e = run(p, VirtualSubject.from_preset("healthy", seed=0))
    top = e.levels[-1]
    assert top.intensity_pct_mso == 100.0 and top.pct_rmt == (130.0, 140.0, 150.0)
    assert e.note == p.note
    # a threshold so high that every level is clipped
    p = RecruitmentProtocol(rmt_pct_mso=100, levels_pct_rmt=(110, 120))
    assert p.intensities == (100.0,) and "110 % RMT" in p.note


def test_intensities_in_mso_and_resolution():
    p = RecruitmentProtocol(intensities_pct_mso=(40, 60, 80), n_per_level=3, seed=5)
    assert p.intensities == (40.0, 60.0, 80.0) and len(p.schedule) == 9
    assert p.note == ""
    e = run(p, VirtualSubject.from_preset("healthy", seed=2))
    assert all(math.isnan(q) for lv in e.levels for q in lv.pct_rmt)  # no RMT given
    json.dumps(e.as_dict(), allow_nan=False)
    p = RecruitmentProtocol(intensities_pct_mso=(50.2, 50.4, 99.9), resolution_pct_mso=6)
    assert p.intensities == (48.0, 100.0)  # 99.9 rounds to 102: the maximum instead
    assert p.note == "50.2 %MSO and 50.4 %MSO fall on the same intensity: one level each"
    p = RecruitmentProtocol(50, intensities_pct_mso=(55, 60))
    assert [lv for lv in p._pct.values()] == [(110.0,), (120.0,)]
    p = RecruitmentProtocol(52.0, levels_pct_rmt=(95, 105), resolution_pct_mso=2.0)
    assert p.intensities == (50.0, 54.0)


def test_rejected_trials_are_offered_again_and_counted_per_level():
    p = RecruitmentProtocol(rmt_pct_mso=45, n_per_level=3)
    e = run(p, VirtualSubject.from_preset("healthy", seed=1), reject=lambda k: k % 4 == 1)
    assert e.n_counted == 21 and e.n_pulses > 21
    assert sum(lv.n_rejected for lv in e.levels) == e.n_pulses - 21
    assert all(lv.n == 3 for lv in e.levels)
    # the same intensity right after a rejection
    p = RecruitmentProtocol(rmt_pct_mso=45)
    x = p.next_intensity()
    p.observe(x, 100.0, rejected=True)
    assert p.next_intensity() == x
    p.observe(x, math.nan)
    assert p.next_intensity() == x and p.n_counted == 0
    with pytest.raises(ProtocolError, match="does not fit its schedule"):
        p.observe(x + 7, 100.0)


def test_max_pulses_ends_a_session_whose_trials_keep_being_rejected():
    p = RecruitmentProtocol(rmt_pct_mso=45, n_per_level=1)
    assert p.max_pulses == 14
    while not p.done:
        p.observe(p.next_intensity(), 0.0, rejected=True)
    assert p.n_pulses == 14 and p.stopped_at_limit and p.estimate.done
    assert all(lv.n == 0 and math.isnan(lv.mean_uv) for lv in p.estimate.levels)
    json.dumps(p.estimate.as_dict(), allow_nan=False)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "needs rmt_pct_mso"),
    ({"rmt_pct_mso": 50, "levels_pct_rmt": (100,), "intensities_pct_mso": (50,)}, "not both"),
    ({"intensities_pct_mso": (50, 101)}, "within 0..100"),
    ({"rmt_pct_mso": 0}, "rmt_pct_mso"),
    ({"rmt_pct_mso": 120}, "rmt_pct_mso"),
    ({"rmt_pct_mso": math.nan}, "rmt_pct_mso"),
    ({"rmt_pct_mso": 50, "levels_pct_rmt": ()}, "must not be empty"),
    ({"rmt_pct_mso": 50, "levels_pct_rmt": "90,100"}, "sequence"),
    ({"rmt_pct_mso": 50, "levels_pct_rmt": (90, -10)}, "levels_pct_rmt"),
    ({"rmt_pct_mso": 50, "n_per_level": 0}, "n_per_level"),
    ({"rmt_pct_mso": 50, "seed": -1}, "seed"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ProtocolError, match=match):
        RecruitmentProtocol(**kwargs)


def test_estimate_before_any_pulse_and_export():
    with pytest.raises(ProtocolError, match="no pulse"):
        RecruitmentProtocol(50).estimate
    assert mepkit.RecruitmentProtocol is RecruitmentProtocol
