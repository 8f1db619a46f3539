"""Mapping protocols offline: grid mapping, pseudo-random mapping, hotspot search."""

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

import mepkit
from mepkit.protocols import ProtocolError
from mepkit.protocols.mapping import (
    GridMapping, HotspotSearch, PseudoRandomMapping, make_hotspot_search)
from mepkit.sim.subject import HemisphereModel, VirtualSubject


def run(protocol, subject, hemisphere="left"):
    while not protocol.done:
        x, y = protocol.next_position()
        r = subject.respond(protocol.propose().intensity_pct_mso, hemisphere=hemisphere,
                            x_mm=x, y_mm=y)
        protocol.observe(x, y, float(r.amplitude_uv[0]))
    return protocol.estimate


# ------------------------------------------------------------------ grid mapping
def test_grid_mapping_gives_every_site_its_pulses_in_a_seeded_order():
    p = GridMapping("3x3@10", 55.0, per_site=4, seed=1)
    sites = []
    while not p.done:
        s = p.propose()
        assert (s.x_mm, s.y_mm) == p.grid.position(s.site) and s.intensity_pct_mso == 55.0
        sites.append(s.site)
        p.observe_stimulus(s, 100.0)
    assert Counter(sites) == {n: 4 for n in p.grid.names}
    # 'sites' order: blocks of 4 at one site, sites shuffled
    assert all(len(set(sites[i:i + 4])) == 1 for i in range(0, 36, 4))
    again = GridMapping("3x3@10", 55.0, per_site=4, seed=1)
    other = GridMapping("3x3@10", 55.0, per_site=4, seed=2)
    assert again._plan == p._plan and other._plan != p._plan
    with pytest.raises(ProtocolError, match="complete"):
        p.propose()


def test_grid_mapping_orders():
    rounds = GridMapping("2x3@10", 50.0, per_site=3, order="pulses", seed=0)._plan
    assert all(sorted(rounds[i:i + 6]) == list(range(6)) for i in range(0, 18, 6))
    assert GridMapping("2x3@10", 50.0, per_site=2, order="raster")._plan == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_rejected_pulses_are_repeated_and_a_hopeless_site_is_skipped():
    p = GridMapping("1x2@10", 50.0, per_site=2, order="raster", max_rejected_per_site=3)
    first = p.propose()
    p.observe_stimulus(first, 100.0, rejected=True)
    assert p.propose() == first                     # same site again
    p.observe_stimulus(first, math.nan)             # not measurable: does not count either
    p.observe_stimulus(first, 100.0, rejected=True)  # third failure: skip the site
    assert p.skipped == {"r1c1": "3 trials rejected or not measured"}
    assert p.propose().site == "r1c2"
    run_counts = [s.counted for s in p.steps]
    assert run_counts == [False, False, False]


def test_stop_rules_max_pulses_and_silent_sites():
    p = GridMapping("3x3@10", 50.0, per_site=5, max_pulses=7)
    while not p.done:
        p.observe_stimulus(p.propose(), 80.0)
    assert p.n_pulses == 7
    q = GridMapping("1x2@10", 50.0, per_site=5, order="raster", silent_after=3)
    while not q.done:
        s = q.propose()
        q.observe_stimulus(s, 0.0 if s.site == "r1c1" else 120.0)
    assert q.skipped == {"r1c1": "no MEP in 3 pulses"} and q.n_pulses == 3 + 5


def test_grid_mapping_estimate_is_the_map_of_its_counted_pulses():
    s = VirtualSubject.from_preset("healthy", seed=4, muscles=("FDI",))
    p = GridMapping("7x7@10", 1.15 * s.true_rmt("left"), per_site=3, seed=4, hemisphere="left")
    with pytest.raises(ProtocolError, match="no counted pulse"):
        p.estimate
    est = run(p, s)
    assert est.n_pulses == 147 and est.metrics.n_trials == 147 and est.metrics.n_sites == 49
    hx, hy = s.hotspot("left")
    assert math.hypot(est.metrics.cog_mm[0] - hx, est.metrics.cog_mm[1] - hy) < 3.0
    d = est.as_dict()
    assert d["n_pulses"] == 147 and "cog_mm" in d and p.options()["grid"]["rows"] == 7


def test_grid_mapping_bad_options():
    for kw, text in (({"per_site": 0}, "per_site"), ({"order": "spiral"}, "order"),
                     ({"max_pulses": 0}, "max_pulses"), ({"silent_after": 0}, "silent_after")):
        with pytest.raises(ProtocolError, match=text):
            GridMapping("3x3", 50.0, **kw)
    with pytest.raises(ProtocolError, match="intensity_pct_mso"):
        GridMapping("3x3", 150.0)
    with pytest.raises(mepkit.errors.UsageError, match="does not parse"):
        GridMapping("3 by 3", 50.0)


# ------------------------------------------------------------------ pseudo-random
def test_pseudorandom_positions_cover_the_area_and_are_seeded():
    p = PseudoRandomMapping(((-30, 30), (-30, 30)), 50.0, n_pulses=80, seed=3)
    pts = p.positions_mm
    assert pts.shape == (80, 2) and np.all(np.abs(pts) <= 30)
    d = np.hypot(pts[:, None, 0] - pts[None, :, 0], pts[:, None, 1] - pts[None, :, 1])
    np.fill_diagonal(d, np.inf)
    # best-candidate sampling spreads the points: no two closer than 1/3 of the
    # spacing of an 80-point square lattice over the area (60 / sqrt(80) = 6.7 mm)
    assert d.min() > 60 / math.sqrt(80) / 3
    np.testing.assert_array_equal(pts, PseudoRandomMapping(((-30, 30), (-30, 30)), 50.0,
                                                           n_pulses=80, seed=3).positions_mm)
    with pytest.raises(ProtocolError, match="n_pulses must be >= 3"):
        PseudoRandomMapping(((-30, 30), (-30, 30)), 50.0, n_pulses=2)


def test_pseudorandom_map_of_the_virtual_subject():
    s = VirtualSubject.from_preset("healthy", seed=6, muscles=("FDI",))
    p = PseudoRandomMapping(((-30, 30), (-30, 30)), 1.2 * s.true_rmt("left"), seed=6)
    est = run(p, s)
    m = est.metrics
    assert m.method == "interpolated" and m.n_trials == 80 and m.area_mm2 > 0
    hx, hy = s.hotspot("left")
    assert math.hypot(m.cog_mm[0] - hx, m.cog_mm[1] - hy) < 5.0


# ------------------------------------------------------------------ hotspot search
def subject_with_hotspot(seed, hx, hy, map_sd_mm):
    base = VirtualSubject.from_preset("healthy", seed=seed, muscles=("FDI",))
    hemis = {h: HemisphereModel({"FDI": replace(hm.muscles["FDI"], hotspot_x_mm=hx,
                                                hotspot_y_mm=hy)}, map_sd_mm=map_sd_mm)
             for h, hm in base.hemispheres.items()}
    return VirtualSubject(hemis, seed=seed)


def test_hotspot_search_converges_offline():
    rng = np.random.default_rng(11)
    errors, pulses = [], []
    for k in range(8):
        hx, hy = rng.uniform(-12, 12, 2)
        s = subject_with_hotspot(k, float(hx), float(hy), float(rng.uniform(10, 20)))
        search = mepkit.make_hotspot_search(bounds_mm=((-20, 20), (-20, 20)),
                                            intensity_pct_mso=1.15 * s.true_rmt("left"), seed=k)
        est = run(search, s)
        errors.append(math.hypot(est.hotspot_mm[0] - hx, est.hotspot_mm[1] - hy))
        pulses.append(est.n_pulses)
        assert est.n_pulses <= 20
        # the uncertainty is infinite exactly when no pulse gave an MEP (>= 50 µV)
        saw_mep = any(st.amplitude_uv >= 50 for st in search.steps)
        assert math.isfinite(est.uncertainty_mm) == saw_mep
    assert np.median(errors) <= 3.0 and max(errors) <= 8.0, errors


def test_hotspot_search_interface_and_estimate():
    search = make_hotspot_search(((-20, 20), (-10, 10)), intensity_pct_mso=60, seed=0)
    assert isinstance(search, HotspotSearch)
    assert search.next_position() == (0.0, 0.0)
    with pytest.raises(ProtocolError, match="nothing observed"):
        search.estimate
    step = search.observe(0.4, -0.3, 0.0, rejected=True)  # where the coil really was
    assert not step.counted and search.next_position() == (0.0, 0.0)
    search.observe(0.4, -0.3, 250.0)
    assert search.steps[-1].stimulus.x_mm == 0.4
    est = search.estimate
    assert est.n_pulses == 2 and est.n_counted == 1 and not est.converged
    assert set(est.as_dict()) >= {"hotspot_mm", "uncertainty_mm", "n_pulses"}
    with pytest.raises(ProtocolError, match="finite"):
        search.observe(math.nan, 0.0, 10.0)
    with pytest.raises(ProtocolError, match=">= 0"):
        search.observe(1.0, 0.0, -5.0)


def test_hotspot_search_raises_the_intensity_when_the_area_is_silent():
    s = subject_with_hotspot(3, 0.0, 0.0, 15.0)
    start = 0.6 * s.true_rmt("left")  # far too low: no MEP anywhere
    search = make_hotspot_search(((-20, 20), (-20, 20)), intensity_pct_mso=start,
                                 max_pulses=60, seed=3)
    est = run(search, s)
    assert search.intensity_pct_mso > start
    assert est.intensity_pct_mso == search.intensity_pct_mso
    assert search.steps[-1].stimulus.intensity_pct_mso == search.intensity_pct_mso


@pytest.mark.parametrize("kw,text", [
    ({"bounds_mm": ((10, 0), (0, 10))}, "x0 < x1"),
    ({"bounds_mm": "everywhere"}, "bounds_mm"),
    ({"min_pulses": 30, "max_pulses": 20}, "min_pulses"),
    ({"n_initial": 4}, "n_initial"),
    ({"kappa": -1}, "kappa"),
    ({"intensity_pct_mso": 0}, "intensity_pct_mso"),
])
def test_hotspot_search_bad_options(kw, text):
    opts = {"bounds_mm": ((-20, 20), (-20, 20))} | kw
    with pytest.raises(ProtocolError, match=text):
        make_hotspot_search(**opts)


def test_observation_after_done_is_refused():
    search = make_hotspot_search(((-10, 10), (-10, 10)), max_pulses=1, min_pulses=1)
    search.observe(0, 0, 100.0)
    assert search.done
    with pytest.raises(ProtocolError):
        search.observe(0, 0, 100.0)
