"""Maps of the virtual subject (offline draws, no LSL): CoG accuracy and bootstrap coverage."""

import math

import numpy as np
import pytest

from mepkit.analysis.grids import parse_grid
from mepkit.analysis.maps import map_metrics
from mepkit.sim.subject import VirtualSubject


def draw_grid_map(subject, grid, intensity, per_site, hemisphere="left"):
    x = np.repeat(grid.x_mm, per_site)
    y = np.repeat(grid.y_mm, per_site)
    a = np.array([subject.respond(intensity, hemisphere=hemisphere, x_mm=xi, y_mm=yi)
                  .amplitude_uv[0 if hemisphere == "left" else len(subject.muscles)]
                  for xi, yi in zip(x, y)])
    return x, y, a


@pytest.mark.parametrize("factor", [1.1, 1.2])
def test_cog_within_3_mm_of_the_hotspot_on_a_7x7_grid(factor):
    """7x7 at 10 mm, 5 stimuli per site, 20 healthy subjects each: every CoG within 3 mm."""
    g = parse_grid("7x7@10")
    errors = []
    for seed in range(20):
        s = VirtualSubject.from_preset("healthy", seed=seed, muscles=("FDI",))
        x, y, a = draw_grid_map(s, g, factor * s.true_rmt("left"), 5)
        m = map_metrics(x, y, a, grid=g, n_boot=0)
        hx, hy = s.hotspot("left")
        errors.append(math.hypot(m.cog_mm[0] - hx, m.cog_mm[1] - hy))
    assert max(errors) <= 3.0, errors


def expected_mean_uv(subject, intensity, x, y):
    """E[amplitude] at a position: log-normal around the median, 0 below the floor.

    E[A; A >= f] = m exp(s^2 / 2) Phi((ln(m / f) + s^2) / s)  for A = m exp(s Z).
    """
    s = subject.muscle("left", "FDI").sigma
    f = subject.floor_uv
    m = subject.expected_amplitude(intensity, hemisphere="left", x_mm=x, y_mm=y)
    if m <= 0:
        return 0.0
    z = (math.log(m / f) + s * s) / s
    return m * math.exp(s * s / 2) * 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_bootstrap_cog_intervals_cover_the_truth_at_the_advertised_rate():
    """200 maps (5x5 at 10 mm, 5 pulses per site, 120 % RMT); the true CoG from the
    subject's expected amplitudes. 95 % intervals: the coverage must be within binomial
    error of 0.95 (SD 1.5 % at n = 200; accept 0.91..0.99)."""
    g = parse_grid("5x5@10")
    n_maps = 200
    hits = np.zeros(2)
    for rep in range(n_maps):
        base = VirtualSubject.from_preset("healthy", seed=rep % 20, muscles=("FDI",))
        s = VirtualSubject(base.hemispheres, seed=1000 + rep)  # new trial noise each time
        intensity = 1.2 * s.true_rmt("left")
        mu = np.array([expected_mean_uv(s, intensity, x, y) for x, y in zip(g.x_mm, g.y_mm)])
        truth = ((mu * g.x_mm).sum() / mu.sum(), (mu * g.y_mm).sum() / mu.sum())
        x, y, a = draw_grid_map(s, g, intensity, 5)
        m = map_metrics(x, y, a, grid=g, n_boot=300, seed=rep, ci_level=0.95)
        for k, key in enumerate(("cog_x_mm", "cog_y_mm")):
            lo, hi = m.ci[key]
            hits[k] += lo <= truth[k] <= hi
    coverage = hits / n_maps
    assert np.all((coverage >= 0.91) & (coverage <= 0.99)), coverage


def test_both_hemispheres_of_a_stroke_subject():
    """stroke-mild: the lesioned (right) map is smaller at the same intensity; stroke-severe:
    no MEPs at all, which is a result (area 0), not an error."""
    g = parse_grid("7x7@10")
    s = VirtualSubject.from_preset("stroke-mild", seed=2, muscles=("FDI",))
    intensity = min(1.1 * s.true_rmt("right"), 100.0)
    maps = {h: map_metrics(*draw_grid_map(s, g, intensity, 3, h), grid=g, n_boot=0)
            for h in ("left", "right")}
    assert maps["right"].area_mm2 < maps["left"].area_mm2
    assert maps["right"].volume_uv < maps["left"].volume_uv
    severe = VirtualSubject.from_preset("stroke-severe", seed=2, muscles=("FDI",))
    m = map_metrics(*draw_grid_map(severe, g, 100.0, 2, "right"), grid=g, n_boot=50)
    assert m.area_mm2 == 0 and math.isnan(m.cog_mm[0]) and m.notes
