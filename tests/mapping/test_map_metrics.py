"""map_metrics and compare_maps against values worked out by hand on small maps."""

import math

import numpy as np
import pandas as pd
import pytest

import mepkit
from mepkit.analysis.grids import GridError
from mepkit.analysis.maps import MapError, compare_maps, map_metrics, map_metrics_from_table


def small_map():
    """A 2x2 grid at 10 mm (sites at ±5 mm), 2 trials per site:
    r1c1 (-5,-5): 20, 40 -> mean 30;  r1c2 (5,-5): 100, 60 -> mean 80
    r2c1 (-5, 5): 0, 0  -> mean 0;    r2c2 (5, 5): 200, 40 -> mean 120 (1 of 2 >= 50)"""
    x = [-5, -5, 5, 5, -5, -5, 5, 5]
    y = [-5, -5, -5, -5, 5, 5, 5, 5]
    a = [20, 40, 100, 60, 0, 0, 200, 40]
    return x, y, a


def test_sites_counts_means_and_responsive_by_hand():
    m = map_metrics(*small_map(), grid="2x2@10", n_boot=0)
    assert m.method == "sites" and (m.n_trials, m.n_sites) == (8, 4)
    order = [m.site_names.index(s) for s in ("r1c1", "r1c2", "r2c1", "r2c2")]
    np.testing.assert_allclose(m.site_mean_uv[order], [30, 80, 0, 120])
    np.testing.assert_array_equal(m.site_count[order], [2, 2, 2, 2])
    np.testing.assert_array_equal(m.site_responsive[order], [False, True, False, True])
    assert m.area_mm2 == 2 * 100.0                      # 2 responsive cells of 10 x 10 mm
    assert m.volume_uv == 80 + 120                      # sum of responsive means
    assert m.volume_uv_mm2 == (80 + 120) * 100.0
    # CoG: sum(a x) / sum(a) over all sites, weights 30, 80, 0, 120 (sum 230)
    assert m.cog_mm[0] == pytest.approx((30 * -5 + 80 * 5 + 0 * -5 + 120 * 5) / 230)
    assert m.cog_mm[1] == pytest.approx((30 * -5 + 80 * -5 + 0 * 5 + 120 * 5) / 230)
    assert m.hotspot_mm == (5.0, 5.0) and m.hotspot_site == "r2c2" and m.hotspot_uv == 120


def test_fraction_rule_by_hand():
    # >= 50 % of pulses >= 50 µV: r1c2 (2/2) and r2c2 (1/2) responsive; r1c1 0/2
    m = map_metrics(*small_map(), grid="2x2@10", responsive="fraction", n_boot=0)
    assert m.n_responsive == 2
    m = map_metrics(*small_map(), grid="2x2@10", responsive="fraction",
                    responsive_fraction=0.75, n_boot=0)
    assert m.n_responsive == 1 and m.area_mm2 == 100.0


def test_without_grid_repeated_positions_form_sites_with_the_neighbour_cell():
    m = map_metrics(*small_map(), n_boot=0)
    assert m.method == "sites" and m.n_sites == 4 and m.cell_mm == 10.0
    assert m.area_mm2 == 200.0


def test_interpolated_ramp_by_hand():
    # site values 0 at x = 0 and 100 at x = 10 on a 10 mm square: the 1 mm lattice inside
    # the hull is 11 x 11 points, amplitude 10 * x; >= 50 µV at x = 5..10 (6 columns)
    m = map_metrics([0, 10, 0, 10], [0, 0, 10, 10], [0, 100, 0, 100], method="interpolated",
                    n_boot=0)
    assert m.method == "interpolated"
    assert m.area_mm2 == 6 * 11
    assert m.volume_uv_mm2 == pytest.approx(11 * sum(10 * x for x in range(5, 11)))
    assert m.cog_mm == pytest.approx((10.0, 5.0))
    assert m.image["amplitude_uv"].shape == (11, 11)
    np.testing.assert_allclose(m.image["amplitude_uv"][3], 10 * np.arange(11))


def test_unique_positions_default_to_an_interpolated_map():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-20, 20, 30), rng.uniform(-20, 20, 30)
    m = map_metrics(x, y, 100 * np.exp(-(x ** 2 + y ** 2) / 200), n_boot=50)
    assert m.method == "interpolated" and m.n_sites == 30
    assert "cases" in " ".join(m.notes)  # one trial per site: case resampling, said so
    assert all(math.isfinite(v) for v in m.ci["cog_x_mm"])


def test_z_enters_the_cog():
    x, y, a = [0, 10, 0, 10], [0, 0, 10, 10], [100, 300, 0, 0]
    z = [50, 70, 60, 60]
    m = map_metrics(x, y, a, z, cell_mm=10, method="sites", n_boot=0)
    assert m.cog_mm == pytest.approx((7.5, 0.0, (100 * 50 + 300 * 70) / 400))
    assert m.hotspot_mm == (10.0, 0.0, 70.0)


def test_exclusions_are_listed_with_reasons_and_trial_numbers():
    x, y, a = small_map()
    a = list(a)
    a[1] = math.nan
    rej = [False, False, True, False, False, False, False, False]
    reason = ["", "", "background", "", "", "", "", ""]
    m = map_metrics(x, y, a, grid="2x2@10", rejected=rej, reject_reason=reason,
                    trial=[10, 11, 12, 13, 14, 15, 16, 17], n_boot=0)
    assert m.excluded == {"rejected (background)": [12], "amplitude not measured (NaN)": [11]}
    assert m.n_trials == 6 and m.n_excluded == 2
    i = m.site_names.index("r1c2")
    assert m.site_mean_uv[i] == 60 and m.site_count[i] == 1


def test_trials_without_positions_raise_or_are_excluded():
    x, y, a = small_map()
    x = list(x)
    x[3] = math.nan
    x[5] = math.nan
    with pytest.raises(MapError, match=r"2 of 8 trials have no coil position .* trials 3, 5"):
        map_metrics(x, y, a, grid="2x2@10")
    m = map_metrics(x, y, a, grid="2x2@10", missing_position="exclude", n_boot=0)
    assert m.excluded == {"no coil position": [3, 5]} and m.n_trials == 6
    with pytest.raises(MapError, match="no usable trials"):
        map_metrics([math.nan] * 3, [math.nan] * 3, [1, 2, 3], missing_position="exclude")


def test_named_sites_resolve_through_the_grid():
    x, y, a = small_map()
    names = ["r1c1", "A1", "r1c2", "B1", "r2c1", "A2", "r2c2", "B2"]
    nan = [math.nan] * 8
    m = map_metrics(nan, nan, a, site=names, grid="2x2@10", n_boot=0)
    ref = map_metrics(x, y, a, grid="2x2@10", n_boot=0)
    assert m.cog_mm == pytest.approx(ref.cog_mm) and m.area_mm2 == ref.area_mm2
    only_sites = map_metrics(None, None, a, site=names, grid="2x2@10", n_boot=0)
    assert only_sites.cog_mm == pytest.approx(ref.cog_mm)
    with pytest.raises(GridError, match="no grid definition"):
        map_metrics(nan, nan, a, site=names)
    with pytest.raises(GridError, match=r"trial 2: unknown site 'hand'"):
        map_metrics(nan, nan, a, site=names[:2] + ["hand"] + names[3:], grid="2x2@10")
    wrong = list(x)
    wrong[0] = 5.0  # says r1c1 but sits in r1c2
    with pytest.raises(GridError, match=r"trial 0 says site 'r1c1' at \(-5, -5\) mm but its "
                                        r"position is \(5, -5\) mm"):
        map_metrics(wrong, y, a, site=names, grid="2x2@10")


def test_positions_outside_the_grid_name_the_trial():
    x, y, a = small_map()
    x = list(x)
    x[6] = 17.0
    with pytest.raises(GridError, match=r"outside Grid\(2x2@10mm.*trial 6 at \(17, 5\) mm"):
        map_metrics(x, y, a, grid="2x2@10")


def test_fewer_sites_than_a_metric_needs():
    with pytest.raises(MapError, match="at least 3 sites not on one line, got 2"):
        map_metrics([0, 10], [0, 0], [100, 50], method="interpolated")
    with pytest.raises(MapError, match="on a line"):
        map_metrics([0, 10, 20], [0, 0, 0], [100, 50, 20], method="interpolated")
    with pytest.raises(MapError, match="needs cell_mm"):
        map_metrics([0, 0], [0, 0], [100, 50])
    m = map_metrics([0, 0], [0, 0], [100, 50], cell_mm=10, method="sites", n_boot=0)  # one site is a map
    assert m.area_mm2 == 100.0 and m.cog_mm == (0.0, 0.0)


def test_a_map_without_meps_is_a_result_not_a_crash():
    m = map_metrics(*small_map()[:2], [0.0] * 8, grid="2x2@10", n_boot=100)
    assert m.area_mm2 == 0 and m.volume_uv == 0 and m.n_responsive == 0
    assert all(math.isnan(v) for v in m.cog_mm + m.hotspot_mm)
    assert "no site has an MEP" in m.notes[0]
    assert all(math.isnan(v) for v in m.ci["cog_x_mm"])


def test_bad_options_are_named():
    x, y, a = small_map()
    for kw, text in (({"method": "kriging"}, "method must be"),
                     ({"responsive": "max"}, "responsive must be"),
                     ({"ci_level": 1.5}, "ci_level"),
                     ({"ci_method": "bca"}, "ci_method"),
                     ({"missing_position": "drop"}, "missing_position")):
        with pytest.raises(MapError, match=text):
            map_metrics(x, y, a, **kw)
    with pytest.raises(MapError, match="x_mm has 3 values but amplitude_uv has 8"):
        map_metrics(x[:3], y, a)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    m1 = map_metrics(*small_map(), grid="2x2@10", n_boot=300, seed=4)
    m2 = map_metrics(*small_map(), grid="2x2@10", n_boot=300, seed=4)
    m3 = map_metrics(*small_map(), grid="2x2@10", n_boot=300, seed=5)
    assert m1.ci == m2.ci and m1.ci != m3.ci
    for k, est in (("cog_x_mm", m1.cog_mm[0]), ("cog_y_mm", m1.cog_mm[1]),
                   ("volume_uv", m1.volume_uv)):
        lo, hi = m1.ci[k]
        assert lo < est < hi
    assert m1.options["n_boot"] == 300 and m1.options["seed"] == 4


def test_as_dict_and_summary_say_what_the_map_was_computed_from():
    m = map_metrics(*small_map(), grid="2x2@10", rejected=[True] + [False] * 7, n_boot=0)
    d = m.as_dict()
    assert d["n_trials"] == 7 and d["n_sites"] == 4 and d["n_excluded"] == 1
    assert d["excluded"] == {"rejected": [0]}
    assert d["options"]["grid"] == {"rows": 2, "cols": 2, "spacing_mm": 10.0,
                                    "centre_mm": [0.0, 0.0]}
    assert "7 trials at 4 sites (1 excluded)" in m.summary()


def test_from_a_trial_table_one_channel_at_a_time():
    x, y, a = small_map()
    rows = []
    for t, (xi, yi, ai) in enumerate(zip(x, y, a)):
        rows.append({"trial": t, "channel": "FDI_R", "x_mm": xi, "y_mm": yi, "site": "",
                     "hemisphere": "left", "amplitude_uv": ai, "rejected": t == 0,
                     "reject_reason": "background" if t == 0 else ""})
        rows.append({"trial": t, "channel": "APB_R", "x_mm": xi, "y_mm": yi, "site": "",
                     "hemisphere": "left", "amplitude_uv": 2 * ai, "rejected": False,
                     "reject_reason": ""})
    df = pd.DataFrame(rows)
    with pytest.raises(MapError, match=r"channels \['FDI_R', 'APB_R'\]; choose one"):
        map_metrics_from_table(df)
    m = map_metrics_from_table(df, channel="FDI_R", grid="2x2@10", n_boot=0)
    assert m.excluded == {"rejected (background)": [0]} and m.n_trials == 7
    m2 = map_metrics_from_table(df, channel="APB_R", hemisphere="left", grid="2x2@10", n_boot=0)
    ref = map_metrics(x, y, 2 * np.asarray(a), grid="2x2@10", n_boot=0)
    assert m2.volume_uv == ref.volume_uv and m2.cog_mm == ref.cog_mm
    with pytest.raises(MapError, match="no trials of channel 'APB_R' in hemisphere 'right'"):
        map_metrics_from_table(df, channel="APB_R", hemisphere="right")


def test_lazy_top_level_export():
    assert mepkit.map_metrics is map_metrics


# ------------------------------------------------------------------ comparison
def test_compare_identical_and_shifted_maps_by_hand():
    # A: responsive (0,0), (10,0); B: (10,0), (20,0); cells 10 mm
    x = [0, 10, 20, 30]
    a = map_metrics(x, [0] * 4, [100, 100, 0, 0], cell_mm=10, method="sites", n_boot=0)
    b = map_metrics(x, [0] * 4, [0, 100, 100, 0], cell_mm=10, method="sites", n_boot=0)
    same = compare_maps(a, a)
    assert (same.cog_shift_mm, same.area_ratio, same.volume_ratio, same.dice) == (0, 1, 1, 1)
    c = compare_maps(a, b)
    assert c.cog_shift_mm == pytest.approx(10.0) and c.cog_shift_xy_mm == pytest.approx((10, 0))
    assert c.area_ratio == 1.0 and c.dice == pytest.approx(0.5, abs=0.02)  # 1 cell of 2 + 2


def test_compare_mirrors_hemispheres_and_handles_empty_maps():
    x = [-30, -20, -10, 10, 20, 30]
    left = map_metrics(x, [0] * 6, [0, 200, 100, 0, 0, 0], cell_mm=10, method="sites", n_boot=0)
    right = map_metrics(x, [0] * 6, [0, 0, 0, 0, 100, 60], cell_mm=10, method="sites", n_boot=0)
    c = compare_maps(left, right, mirror_x=True)
    # left CoG (200 * -20 + 100 * -10) / 300; right (100 * 20 + 60 * 30) / 160, mirrored
    assert c.mirrored_x and c.cog_shift_xy_mm[0] == pytest.approx(
        -(100 * 20 + 60 * 30) / 160 - (200 * -20 + 100 * -10) / 300)
    assert c.area_ratio == pytest.approx(2 / 2) and c.volume_ratio == pytest.approx(160 / 300)
    assert c.dice == pytest.approx(2 * 1 / (2 + 2), abs=0.02)  # mirrored (-20, -30) vs (-20, -10)
    assert compare_maps(left, right).dice == 0.0
    empty = map_metrics(x, [0] * 6, [0] * 6, cell_mm=10, method="sites", n_boot=0)
    d = compare_maps(empty, right)
    assert math.isnan(d.cog_shift_mm) and math.isnan(d.area_ratio)
    assert any("area of map a is 0" in n for n in d.notes)
