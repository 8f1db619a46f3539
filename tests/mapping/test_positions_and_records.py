"""Positions from markers (x_mm, y_mm, z_mm, a named site through a grid) and maps per record."""

import json
import math

import numpy as np
import pytest

from mepkit.analysis.grids import parse_grid
from mepkit.analysis.maps import MapError, map_metrics, map_metrics_from_record
from mepkit.markers import parse_marker
from mepkit.params import TRIAL_COLUMNS
from mepkit.protocols.mapping import GridMapping
from mepkit.records import RecordWriter, open_record
from mepkit.sim.subject import VirtualSubject


def test_marker_carries_z_mm_and_site():
    info = parse_marker('{"intensity": 55, "x_mm": 1.5, "y_mm": -2, "z_mm": 61.25, "site": "r2c3"}')
    assert (info.x_mm, info.y_mm, info.z_mm, info.site) == (1.5, -2.0, 61.25, "r2c3")
    assert not info.problems
    bad = parse_marker('{"z_mm": "deep"}')
    assert math.isnan(bad.z_mm) and "z_mm='deep' is not a number" in bad.problems[0]


def test_protocol_stimuli_round_trip_through_markers_into_a_map():
    """A grid protocol's stimuli, written as markers and parsed back, make the same map
    whether the map is built from the positions or from the site names."""
    s = VirtualSubject.from_preset("healthy", seed=8, muscles=("FDI",))
    p = GridMapping("5x5@10", 1.15 * s.true_rmt("left"), per_site=2, seed=8, hemisphere="left")
    infos, amps = [], []
    while not p.done:
        stim = p.propose()
        infos.append(parse_marker(json.dumps(stim.marker_fields())))
        a = s.respond(stim.intensity_pct_mso, hemisphere="left", x_mm=stim.x_mm, y_mm=stim.y_mm)
        amps.append(float(a.amplitude_uv[0]))
        p.observe_stimulus(stim, amps[-1])
    x = [i.x_mm for i in infos]
    y = [i.y_mm for i in infos]
    by_pos = map_metrics(x, y, amps, grid="5x5@10", n_boot=0)
    nan = [math.nan] * len(amps)
    by_site = map_metrics(nan, nan, amps, site=[i.site for i in infos], grid="5x5@10", n_boot=0)
    assert by_pos.cog_mm == pytest.approx(by_site.cog_mm)
    assert by_pos.area_mm2 == by_site.area_mm2
    assert p.estimate.metrics.cog_mm == pytest.approx(by_pos.cog_mm)


def rows_for(subject, grid, intensity, hemisphere, rng):
    rows = []
    ch = {"left": "FDI_R", "right": "FDI_L"}[hemisphere]
    k0 = 0 if hemisphere == "left" else 1000
    for k, (x, y) in enumerate(zip(np.repeat(grid.x_mm, 3), np.repeat(grid.y_mm, 3))):
        r = subject.respond(intensity, hemisphere=hemisphere, x_mm=x, y_mm=y)
        row = {c: None for c in TRIAL_COLUMNS}
        row.update(file="", trial=k0 + k, channel=ch, stim_time_s=float(k), label="",
                   intensity_pct_mso=intensity, x_mm=x + rng.normal(0, 1.0),
                   y_mm=y + rng.normal(0, 1.0), z_mm=60.0 + rng.normal(0, 1.0), site="",
                   hemisphere=hemisphere, condition="", amplitude_uv=float(r.amplitude_uv[
                       0 if hemisphere == "left" else 1]), latency_ms=22.0, area_uv_ms=0.0,
                   background_rms_uv=3.0, peak_time_ms=30.0, detected=True,
                   rejected=k == 4, reject_reason="background" if k == 4 else "")
        rows.append(row)
    return rows


def test_map_per_record_with_navigated_positions(tmp_path):
    """Trials in a real HDF5 record, positions scattered ~1 mm around the grid sites as with
    neuronavigation, with z_mm: one map per hemisphere."""
    s = VirtualSubject.from_preset("healthy", seed=5, muscles=("FDI",))
    g = parse_grid("7x7@10")
    rng = np.random.default_rng(5)
    path = tmp_path / "map.h5"
    w = RecordWriter(path)
    w.start()
    for h in ("left", "right"):
        w.append_trials(rows_for(s, g, 1.15 * s.true_rmt(h), h, rng))
    w.close()
    with open_record(path) as rec:
        assert "z_mm" in rec.trials.columns
    with pytest.raises(MapError, match="choose one with channel="):
        map_metrics_from_record(path, grid=g)
    for h, ch in (("left", "FDI_R"), ("right", "FDI_L")):
        m = map_metrics_from_record(path, channel=ch, grid=g, n_boot=0)
        assert m.n_sites == 49 and m.n_trials == 146
        assert m.excluded == {"rejected (background)": [4 if h == "left" else 1004]}
        assert len(m.cog_mm) == 3 and abs(m.cog_mm[2] - 60.0) < 1.0
        hx, hy = s.hotspot(h)
        assert math.hypot(m.cog_mm[0] - hx, m.cog_mm[1] - hy) < 3.0


def test_z_mm_reaches_the_trial_table():
    """A marker's z_mm lands in the trial table's z_mm column (analyze_epochs, the row builder
    every table and record uses); a marker without it gives NaN."""
    from mepkit import analyze_epochs

    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 3.0, (2, 1, 1000))  # 2 trials, 1 channel, 200 ms at 5 kHz
    table = analyze_epochs(data, 5000.0, -0.11,
                           stim=['{"intensity": 50, "x_mm": 1, "y_mm": 2, "z_mm": 63.5}',
                                 '{"intensity": 50, "x_mm": 1, "y_mm": 2}'])
    assert "z_mm" in TRIAL_COLUMNS
    assert table["z_mm"].iloc[0] == 63.5 and math.isnan(table["z_mm"].iloc[1])
