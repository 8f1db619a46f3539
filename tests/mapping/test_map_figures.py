"""Map figures render to PNG files (matplotlib, Agg)."""

import numpy as np
import pytest

from mepkit.analysis.maps import map_metrics
from mepkit.report.maps import plot_hemispheres, plot_map  # the 'report' extra, in 'all'
from mepkit.sim.subject import VirtualSubject

PNG = b"\x89PNG\r\n\x1a\n"


def grid_map(subject, hemisphere, intensity, per_site=2):
    from mepkit.analysis.grids import parse_grid

    g = parse_grid("7x7@10")
    x = np.repeat(g.x_mm, per_site)
    y = np.repeat(g.y_mm, per_site)
    ch = 0 if hemisphere == "left" else len(subject.muscles)
    a = [subject.respond(intensity, hemisphere=hemisphere, x_mm=xi, y_mm=yi).amplitude_uv[ch]
         for xi, yi in zip(x, y)]
    return map_metrics(x, y, a, grid=g, n_boot=0)


def is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


def test_one_map_and_both_hemispheres_render(tmp_path):
    s = VirtualSubject.from_preset("stroke-mild", seed=1, muscles=("FDI",))
    intensity = min(1.1 * s.true_rmt("right"), 100.0)
    left, right = grid_map(s, "left", intensity), grid_map(s, "right", intensity)
    fig = plot_map(left, title="left FDI", path=tmp_path / "left.png")
    assert is_png(tmp_path / "left.png")
    # the CoG and the hotspot are drawn where the metrics put them
    ax = fig.axes[0]
    marks = {ln.get_marker(): (ln.get_xdata()[0], ln.get_ydata()[0]) for ln in ax.lines}
    assert marks["+"] == pytest.approx(left.cog_mm) and marks["x"] == pytest.approx(left.hotspot_mm)
    fig = plot_hemispheres(left, right, path=tmp_path / "both.png")
    assert is_png(tmp_path / "both.png")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    top = max(left.site_mean_uv.max(), right.site_mean_uv.max())
    assert all(im.get_clim() == (0.0, top) for im in images)  # one colour scale


def test_interpolated_and_empty_maps_render(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-30, 30, 60), rng.uniform(-30, 30, 60)
    m = map_metrics(x, y, 300 * np.exp(-(x ** 2 + y ** 2) / 300), n_boot=0)
    plot_map(m, path=tmp_path / "interp.png")
    assert is_png(tmp_path / "interp.png")
    severe = VirtualSubject.from_preset("stroke-severe", seed=1, muscles=("FDI",))
    empty = grid_map(severe, "right", 100.0, per_site=1)
    plot_hemispheres(grid_map(severe, "left", 60.0, per_site=1), empty,
                     path=tmp_path / "severe.png")
    assert is_png(tmp_path / "severe.png")
