"""Motor-map figures (matplotlib, Agg backend, imported on first use).

* :func:`plot_map` — one map as a heat image of the mean amplitude, its sites (dot size
  = number of trials, hollow = not responsive), the centre of gravity (+) and the
  hotspot (x).
* :func:`plot_hemispheres` — the two hemispheres side by side on one colour scale.

Both return the matplotlib ``Figure``; ``path`` saves it (PNG, SVG, PDF by suffix).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mepkit.errors import UsageError

__all__ = ["plot_map", "plot_hemispheres"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the environment
        raise UsageError("map figures need matplotlib: pip install 'mepkit[report]'") from None
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _extent(values: np.ndarray) -> tuple[float, float]:
    if values.size < 2:
        return (float(values[0]) - 0.5, float(values[0]) + 0.5)
    step = float(np.min(np.diff(values)))
    return (float(values[0]) - step / 2, float(values[-1]) + step / 2)


def _draw(ax: Any, m: Any, vmax: float, title: str, cmap: str) -> Any:
    im = None
    if m.image is not None:
        x0, x1 = _extent(m.image["x_mm"])
        y0, y1 = _extent(m.image["y_mm"])
        img = np.ma.masked_invalid(m.image["amplitude_uv"])
        im = ax.imshow(img, origin="lower", extent=(x0, x1, y0, y1), cmap=cmap, vmin=0.0,
                       vmax=vmax, interpolation="nearest")
    r = m.site_responsive
    size = 12.0 + 6.0 * np.asarray(m.site_count, float)
    ax.scatter(m.site_x_mm[r], m.site_y_mm[r], s=size[r], c="k", marker="o", linewidths=0.5,
               label="responsive site")
    ax.scatter(m.site_x_mm[~r], m.site_y_mm[~r], s=size[~r], facecolors="none",
               edgecolors="0.4", marker="o", linewidths=0.6, label="site")
    if math.isfinite(m.cog_mm[0]):
        ax.plot(m.cog_mm[0], m.cog_mm[1], marker="+", color="tab:blue", ms=14, mew=2.5,
                ls="none", label=f"CoG ({m.cog_mm[0]:.1f}, {m.cog_mm[1]:.1f}) mm")
    if math.isfinite(m.hotspot_mm[0]):
        ax.plot(m.hotspot_mm[0], m.hotspot_mm[1], marker="x", color="tab:red", ms=11, mew=2.5,
                ls="none", label=f"hotspot ({m.hotspot_mm[0]:.1f}, {m.hotspot_mm[1]:.1f}) mm")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_aspect("equal")
    sub = (f"{m.n_trials} trials, {m.n_sites} sites, {m.n_responsive} responsive; "
           f"area {m.area_mm2:.0f} mm²")
    ax.set_title(f"{title}\n{sub}" if title else sub, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    if m.notes:
        ax.text(0.01, 0.01, "; ".join(m.notes), transform=ax.transAxes, fontsize=6,
                va="bottom", color="0.3")
    return im


def _vmax(maps: list[Any]) -> float:
    top = [float(np.nanmax(m.site_mean_uv)) for m in maps if m.site_mean_uv.size]
    v = max([t for t in top if math.isfinite(t)], default=0.0)
    return v if v > 0 else 1.0


def _save(fig: Any, path: str | Path | None, dpi: int) -> None:
    if path is not None:
        fig.savefig(str(path), dpi=dpi, bbox_inches="tight")


def plot_map(metrics: Any, *, title: str = "", vmax_uv: float | None = None,
             cmap: str = "viridis", path: str | Path | None = None, dpi: int = 120) -> Any:
    """A map heat image with sites, CoG and hotspot marked.

    Parameters
    ----------
    metrics : MapMetrics
        From :func:`mepkit.map_metrics`.
    title : str
    vmax_uv : float, optional
        Top of the colour scale (default: the largest site mean).
    cmap : str
    path : str or Path, optional
        Save the figure here.
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    vmax = _vmax([metrics]) if vmax_uv is None else float(vmax_uv)
    im = _draw(ax, metrics, vmax, title, cmap)
    if im is not None:
        fig.colorbar(im, ax=ax, label="mean MEP amplitude (µV)")
    _save(fig, path, dpi)
    return fig


def plot_hemispheres(left: Any, right: Any, *, titles: tuple[str, str] = ("left hemisphere",
                     "right hemisphere"), cmap: str = "viridis",
                     path: str | Path | None = None, dpi: int = 120) -> Any:
    """The maps of both hemispheres side by side, on one colour scale.

    Parameters
    ----------
    left, right : MapMetrics
    titles : (str, str)
    cmap : str
    path : str or Path, optional
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.6), constrained_layout=True)
    vmax = _vmax([left, right])
    ims = [_draw(ax, m, vmax, t, cmap) for ax, m, t in zip(axes, (left, right), titles)]
    im = next((i for i in ims if i is not None), None)
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="mean MEP amplitude (µV), one scale")
    _save(fig, path, dpi)
    return fig
