"""Motor-map metrics from trial-level coil positions and MEP amplitudes.

Definitions, defaults and their sources are in docs/methods.md ("Motor maps"). In short:

* trials at one position (or in one grid cell) form a **site**; its mean amplitude and
  count are the map;
* a site is **responsive** when its mean amplitude is >= ``responsive_uv`` (50 µV), or,
  with ``responsive="fraction"``, when >= half its pulses reach 50 µV;
* **area** (mm²): responsive sites × the cell area (``spacing_mm ** 2``); for
  positions that do not repeat (pseudo-random mapping) the site means are linearly
  interpolated on a ``lattice_mm`` lattice inside their convex hull, and the area is
  the lattice area at or above ``responsive_uv``;
* **volume**: ``volume_uv`` the sum of the responsive sites' mean amplitudes
  (Thickbroom et al. 1998); ``volume_uv_mm2`` the amplitude integrated over the
  responsive area (cells or interpolated lattice);
* **centre of gravity** ``cog_mm``: the amplitude-weighted mean position of all sites,
  ``sum(a_i * x_i) / sum(a_i)`` (Wassermann et al. 1992);
* **hotspot**: the site with the largest mean amplitude;
* **bootstrap** intervals, trials resampled within sites (seeded), the bootstrap
  standard error with a Welch-Satterthwaite t quantile by default.

Absent MEPs are a result, not an error: a map with no MEPs has area 0, volume 0 and
an undefined (NaN) CoG and hotspot, and says so in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mepkit.analysis._checks import AnalysisError
from mepkit.analysis.grids import Grid, GridError, parse_grid
from mepkit.errors import UsageError

__all__ = [
    "MapError", "MapMetrics", "MapComparison", "map_metrics", "map_metrics_from_table",
    "map_metrics_from_record", "compare_maps", "RESPONSIVE_UV", "RESPONSIVE_FRACTION",
    "CI_LEVEL", "N_BOOT",
    "LATTICE_MM",
]

#: Mean MEP amplitude (µV) at or above which a site is responsive: the 50 µV MEP
#: criterion of the motor threshold (Rossini et al. 2015) applied to the site mean.
RESPONSIVE_UV = 50.0
#: Fraction of pulses >= RESPONSIVE_UV that makes a site responsive with
#: ``responsive="fraction"`` (the relative-frequency threshold rule, Rossini et al. 2015).
RESPONSIVE_FRACTION = 0.5
#: Bootstrap: confidence level and resamples (Efron & Tibshirani 1993: >= 1000 for
#: percentile intervals).
CI_LEVEL = 0.95
N_BOOT = 1000
#: Resamples re-interpolated for the area/volume intervals of maps with one trial per site.
N_BOOT_REINTERPOLATED = 200
#: Lattice step (mm) of interpolated maps (Van de Ruit et al. 2015 used a 1 mm grid).
LATTICE_MM = 1.0


class MapError(AnalysisError, UsageError):
    """Map input that cannot give the asked metric (missing positions, too few sites)."""


# ---------------------------------------------------------------------- results
@dataclass
class MapMetrics:
    """Metrics of one motor map and what they were computed from.

    Attributes
    ----------
    method : {'sites', 'interpolated'}
        How area and volume were measured (grid cells, or an interpolated lattice).
    n_trials, n_sites : int
        Trials used and sites they form.
    excluded : dict
        Reason -> trial numbers (the caller's ``trial`` numbers, or input indices) left out.
    site_x_mm, site_y_mm, site_z_mm : ndarray (n_sites,)
        Site positions (``site_z_mm`` NaN without z).
    site_names : tuple of str
        Grid site names ('' for positions without a grid).
    site_mean_uv, site_count, site_fraction_mep : ndarray (n_sites,)
        Mean amplitude, number of trials, fraction of trials >= ``responsive_uv``.
    site_responsive : ndarray of bool (n_sites,)
    area_mm2, volume_uv, volume_uv_mm2 : float
    cog_mm : tuple
        ``(x, y)`` or ``(x, y, z)``; NaN when no site has an MEP.
    hotspot_mm : tuple, hotspot_site : str, hotspot_uv : float
    ci : dict
        Metric name (``cog_x_mm``, ``cog_y_mm``, ``area_mm2``, ``volume_uv``,
        ``volume_uv_mm2``) -> (low, high) bootstrap interval at ``ci_level``.
    image : dict or None
        ``x_mm`` (nx,), ``y_mm`` (ny,), ``amplitude_uv`` (ny, nx) for figures.
    options : dict
        The options used (criterion, lattice, bootstrap settings).
    notes : list of str
        What is undefined and why.
    """

    method: str
    n_trials: int
    n_sites: int
    excluded: dict[str, list[int]]
    site_names: tuple[str, ...]
    site_x_mm: np.ndarray
    site_y_mm: np.ndarray
    site_z_mm: np.ndarray
    site_mean_uv: np.ndarray
    site_count: np.ndarray
    site_fraction_mep: np.ndarray
    site_responsive: np.ndarray
    cell_mm: float
    area_mm2: float
    volume_uv: float
    volume_uv_mm2: float
    cog_mm: tuple[float, ...]
    hotspot_mm: tuple[float, ...]
    hotspot_site: str
    hotspot_uv: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    ci_level: float = CI_LEVEL
    image: dict[str, np.ndarray] | None = None
    responsive_cells: tuple[np.ndarray, np.ndarray, float] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_responsive(self) -> int:
        return int(np.count_nonzero(self.site_responsive))

    @property
    def n_excluded(self) -> int:
        return sum(len(v) for v in self.excluded.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (per-site arrays as lists)."""
        f = lambda v: None if not math.isfinite(v) else float(v)  # noqa: E731
        return {
            "method": self.method, "n_trials": self.n_trials, "n_sites": self.n_sites,
            "n_excluded": self.n_excluded, "excluded": {k: list(v) for k, v in self.excluded.items()},
            "n_responsive": self.n_responsive, "area_mm2": f(self.area_mm2),
            "volume_uv": f(self.volume_uv), "volume_uv_mm2": f(self.volume_uv_mm2),
            "cog_mm": [f(v) for v in self.cog_mm], "hotspot_mm": [f(v) for v in self.hotspot_mm],
            "hotspot_site": self.hotspot_site, "hotspot_uv": f(self.hotspot_uv),
            "ci_level": self.ci_level, "ci": {k: [f(a), f(b)] for k, (a, b) in self.ci.items()},
            "sites": {"name": list(self.site_names), "x_mm": self.site_x_mm.tolist(),
                      "y_mm": self.site_y_mm.tolist(), "mean_uv": self.site_mean_uv.tolist(),
                      "count": self.site_count.tolist(),
                      "responsive": self.site_responsive.tolist()},
            "options": dict(self.options), "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line: what the map is and what it was computed from."""
        cog = ", ".join(f"{v:.1f}" for v in self.cog_mm)
        return (f"{self.method} map: {self.n_trials} trials at {self.n_sites} sites "
                f"({self.n_excluded} excluded), {self.n_responsive} responsive, "
                f"area {self.area_mm2:.0f} mm², volume {self.volume_uv:.0f} µV, CoG ({cog}) mm")


@dataclass
class MapComparison:
    """Two maps compared (``b`` relative to ``a``): CoG shift, area/volume ratios, overlap."""

    cog_shift_mm: float
    cog_shift_xy_mm: tuple[float, float]
    area_ratio: float
    volume_ratio: float
    dice: float
    mirrored_x: bool
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"cog_shift_mm": self.cog_shift_mm, "cog_shift_xy_mm": list(self.cog_shift_xy_mm),
                "area_ratio": self.area_ratio, "volume_ratio": self.volume_ratio,
                "dice": self.dice, "mirrored_x": self.mirrored_x, "notes": list(self.notes)}


# ---------------------------------------------------------------------- helpers
def _float_array(value: Any, name: str, n: int | None = None) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise MapError(f"{name} must be numbers (one per trial)") from None
    if n is not None and a.size != n:
        raise MapError(f"{name} has {a.size} values but amplitude_uv has {n}")
    return a


def _show(numbers: Sequence[int], k: int = 6) -> str:
    s = ", ".join(str(int(v)) for v in list(numbers)[:k])
    return s + (f" ... ({len(numbers)} in all)" if len(numbers) > k else "")


def _site_stats(site: np.ndarray, amp: np.ndarray, n_sites: int, crit_uv: float):
    count = np.bincount(site, minlength=n_sites).astype(float)
    total = np.bincount(site, weights=amp, minlength=n_sites)
    above = np.bincount(site, weights=(amp >= crit_uv).astype(float), minlength=n_sites)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count, count, above / count


def _is_responsive(mean_uv, frac, rule: str, crit_uv: float, crit_frac: float):
    if rule == "mean":
        return mean_uv >= crit_uv
    return frac >= crit_frac


def _cog(x, y, z, w) -> tuple[float, ...]:
    s = float(np.sum(w))
    if not s > 0:
        return (math.nan,) * (2 if z is None else 3)
    out = [float(np.sum(w * x) / s), float(np.sum(w * y) / s)]
    if z is not None:
        out.append(float(np.sum(w * z) / s))
    return tuple(out)


class _Interp:
    """Linear (Delaunay) interpolation of site values onto a lattice, as one sparse matrix."""

    def __init__(self, x: np.ndarray, y: np.ndarray, lattice_mm: float) -> None:
        from scipy.spatial import Delaunay, QhullError

        pts = np.column_stack([x, y])
        try:
            tri = Delaunay(pts)
        except (QhullError, ValueError):
            raise MapError(f"an interpolated map needs at least 3 sites not on one line, got "
                           f"{len(x)} site(s){' on a line' if len(x) >= 3 else ''}") from None
        x0, x1 = math.floor(x.min() / lattice_mm), math.ceil(x.max() / lattice_mm)
        y0, y1 = math.floor(y.min() / lattice_mm), math.ceil(y.max() / lattice_mm)
        self.gx = np.arange(x0, x1 + 1) * lattice_mm
        self.gy = np.arange(y0, y1 + 1) * lattice_mm
        X, Y = np.meshgrid(self.gx, self.gy)
        q = np.column_stack([X.ravel(), Y.ravel()])
        # barycentric coordinates of every lattice point in every triangle, in plain numpy
        # (Delaunay.find_simplex computes its transforms with LAPACK, which stalls for
        # hundreds of ms when BLAS threads compete on a busy machine); lattice points on
        # a triangle's edge (within 1e-9) count as inside
        simp = tri.simplices
        P = pts[simp]                                    # (m, 3, 2)
        o = P[:, 0, :]
        v0, v1 = P[:, 1, :] - o, P[:, 2, :] - o
        det = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        ok = np.abs(det) > 1e-12
        simp, o, v0, v1, det = simp[ok], o[ok], v0[ok], v1[ok], det[ok]
        n = q.shape[0]
        simplex = np.full(n, -1)
        bary_all = np.zeros((n, 3))
        block = max(1, 2_000_000 // max(len(simp), 1))
        for s0 in range(0, n, block):
            qq = q[s0:s0 + block]
            dx = qq[None, :, 0] - o[:, None, 0]
            dy = qq[None, :, 1] - o[:, None, 1]
            l1 = (dx * v1[:, None, 1] - v1[:, None, 0] * dy) / det[:, None]
            l2 = (v0[:, None, 0] * dy - dx * v0[:, None, 1]) / det[:, None]
            l0 = 1.0 - l1 - l2
            hit = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
            first = np.argmax(hit, axis=0)
            found = hit[first, np.arange(qq.shape[0])]
            cols = np.arange(qq.shape[0])
            simplex[s0:s0 + block] = np.where(found, first, -1)
            bary_all[s0:s0 + block] = np.column_stack([l0[first, cols], l1[first, cols],
                                                       l2[first, cols]])
        inside = simplex >= 0
        self.inside = inside.reshape(X.shape)
        s = simplex[inside]
        bary = bary_all[inside]
        self.vertices = simp[s]                   # (n_in, 3)
        self.bary = bary                          # (n_in, 3)
        self.lattice_mm = lattice_mm

    def values(self, site_values: np.ndarray) -> np.ndarray:
        """Interpolated values at the lattice points inside the hull, (..., n_in)."""
        return np.sum(site_values[..., self.vertices] * self.bary, axis=-1)

    def image(self, site_values: np.ndarray) -> np.ndarray:
        img = np.full(self.inside.shape, np.nan)
        img[self.inside] = self.values(site_values)
        return img


def _regular_image(grid: Grid, site_ids: np.ndarray, mean_uv: np.ndarray) -> dict[str, np.ndarray]:
    img = np.full((grid.rows, grid.cols), np.nan)
    r, c = np.divmod(site_ids, grid.cols)
    img[r, c] = mean_uv
    xs = grid.x_mm[: grid.cols].copy()
    ys = grid.y_mm[:: grid.cols].copy()
    return {"x_mm": xs, "y_mm": ys, "amplitude_uv": img}


def _welch_df(grad: np.ndarray, var: np.ndarray, count: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom of sum_i grad_i * mean_i (site means)."""
    ok = count >= 2
    v = (grad[ok] ** 2) * var[ok] / count[ok]
    den = float(np.sum(v * v / (count[ok] - 1.0)))
    return float(np.sum(v)) ** 2 / den if den > 0 else math.inf


def _bootstrap_ci(samples: np.ndarray, estimate: float, level: float, how: str,
                  df: float = math.inf) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if s.size < max(10, 0.5 * samples.size) or not math.isfinite(estimate):
        return (math.nan, math.nan)
    a = (1.0 - level) / 2.0
    if how == "t":
        # bootstrap standard error with a Student t quantile whose degrees of freedom come
        # from the per-site variances (Welch-Satterthwaite): with 5 pulses per site the
        # standard error itself is uncertain, and a normal quantile under-covers
        from scipy.stats import t as student_t

        q = float(student_t.ppf(1.0 - a, df)) if math.isfinite(df) else 1.959963984540054
        h = q * float(np.std(s, ddof=1))
        return (estimate - h, estimate + h)
    if how == "normal":
        from scipy.stats import norm

        h = float(norm.ppf(1.0 - a)) * float(np.std(s, ddof=1))
        return (estimate - h, estimate + h)
    lo, hi = np.quantile(s, [a, 1.0 - a])
    return (float(lo), float(hi))


# ---------------------------------------------------------------------- metrics
def map_metrics(
    x_mm: Any,
    y_mm: Any,
    amplitude_uv: Any,
    z_mm: Any = None,
    *,
    site: Any = None,
    grid: Any = None,
    rejected: Any = None,
    reject_reason: Any = None,
    trial: Any = None,
    method: str = "auto",
    responsive: str = "mean",
    responsive_uv: float = RESPONSIVE_UV,
    responsive_fraction: float = RESPONSIVE_FRACTION,
    cell_mm: float | None = None,
    lattice_mm: float = LATTICE_MM,
    missing_position: str = "raise",
    n_boot: int = N_BOOT,
    ci_level: float = CI_LEVEL,
    ci_method: str = "t",
    seed: int = 0,
) -> MapMetrics:
    """Motor-map metrics from trial-level positions and amplitudes.

    Parameters
    ----------
    x_mm, y_mm : array_like (n_trials,) or None
        Coil position of each trial; NaN where the trial has only a ``site`` name (None:
        no positions, every trial names its site).
    amplitude_uv : array_like (n_trials,)
        Peak-to-peak MEP amplitude (0 for no MEP; NaN: not measured, excluded).
    z_mm : array_like (n_trials,), optional
        Third coordinate (neuronavigation): averaged per site and part of ``cog_mm``.
        Area and volume use x and y only.
    site : array_like of str (n_trials,), optional
        Named sites, resolved through ``grid`` where a trial has no position.
    grid : Grid, str or mapping, optional
        The grid definition (:func:`mepkit.analysis.grids.parse_grid`). With a grid,
        each position is assigned to the site whose cell holds it, and positions
        outside every cell are an error.
    rejected : array_like of bool, optional
        Trials to leave out (kept in ``excluded`` with ``reject_reason``).
    reject_reason : array_like of str, optional
    trial : array_like of int, optional
        Trial numbers used in messages and ``excluded`` (default: input indices).
    method : {'auto', 'sites', 'interpolated'}
        ``'auto'``: ``'sites'`` with a grid or repeated positions, else ``'interpolated'``.
    responsive : {'mean', 'fraction'}
        Responsive-site criterion (mean >= ``responsive_uv``, or a fraction of pulses
        >= ``responsive_fraction`` reaching it).
    responsive_uv, responsive_fraction : float
    cell_mm : float, optional
        Side of the square cell one site stands for (default: the grid spacing, or the
        median nearest-neighbour distance of the sites).
    lattice_mm : float
        Lattice step of interpolated maps.
    missing_position : {'raise', 'exclude'}
        What to do with trials that have neither a position nor a site.
    n_boot : int
        Bootstrap resamples (0: no intervals).
    ci_level : float
    ci_method : {'t', 'percentile', 'normal'}
        ``'t'``: bootstrap standard error times a Student t quantile with
        Welch-Satterthwaite degrees of freedom from the per-site variances (CoG, volume;
        area uses percentiles); ``'percentile'``; ``'normal'``: standard error times a
        normal quantile. With 5 pulses per site only ``'t'`` reaches the nominal
        coverage (tests/mapping).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    MapMetrics

    Raises
    ------
    MapError
        Missing positions (with ``missing_position='raise'``), too few sites for an
        interpolated map, no usable trials, bad options.
    GridError
        A grid definition that does not parse, an unknown site, a position off the grid.
    """
    amp = _float_array(amplitude_uv, "amplitude_uv")
    n = amp.size
    x = np.full(n, np.nan) if x_mm is None else _float_array(x_mm, "x_mm", n)
    y = np.full(n, np.nan) if y_mm is None else _float_array(y_mm, "y_mm", n)
    z = None if z_mm is None else _float_array(z_mm, "z_mm", n)
    if z is not None and not np.isfinite(z).any():
        z = None
    numbers = np.arange(n) if trial is None else np.asarray(trial).reshape(-1)
    if numbers.size != n:
        raise MapError(f"trial has {numbers.size} values but amplitude_uv has {n}")
    names = None
    if site is not None:
        names = np.asarray(["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                            for v in np.asarray(site, dtype=object).reshape(-1)], dtype=object)
        if names.size != n:
            raise MapError(f"site has {names.size} values but amplitude_uv has {n}")
    if method not in ("auto", "sites", "interpolated"):
        raise MapError(f"method must be 'auto', 'sites' or 'interpolated', got {method!r}")
    if responsive not in ("mean", "fraction"):
        raise MapError(f"responsive must be 'mean' or 'fraction', got {responsive!r}")
    if missing_position not in ("raise", "exclude"):
        raise MapError(f"missing_position must be 'raise' or 'exclude', got {missing_position!r}")
    if ci_method not in ("t", "percentile", "normal"):
        raise MapError(f"ci_method must be 't', 'percentile' or 'normal', got {ci_method!r}")
    if not 0.0 < ci_level < 1.0:
        raise MapError(f"ci_level must be within (0, 1), got {ci_level!r}")
    g = None if grid is None else parse_grid(grid)

    # ---- exclusions (each trial listed once, under its first reason)
    excluded: dict[str, list[int]] = {}
    keep = np.ones(n, bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        m = mask & keep
        if m.any():
            excluded.setdefault(reason, []).extend(int(v) for v in numbers[m])
            keep[m] = False

    if rejected is not None:
        rej = np.asarray(rejected, dtype=bool).reshape(-1)
        if rej.size != n:
            raise MapError(f"rejected has {rej.size} values but amplitude_uv has {n}")
        if reject_reason is not None:
            reasons = np.asarray(reject_reason, dtype=object).reshape(-1)
            for r in dict.fromkeys(str(v) for v in reasons[rej]):
                drop(rej & (reasons.astype(str) == r), f"rejected ({r or 'no reason'})")
        drop(rej, "rejected")
    drop(~np.isfinite(amp), "amplitude not measured (NaN)")
    drop(np.isfinite(amp) & (amp < 0), "negative amplitude")

    # ---- positions: from x/y, or from site names through the grid
    has_xy = np.isfinite(x) & np.isfinite(y)
    has_name = np.zeros(n, bool) if names is None else (names != "")
    if names is not None and has_name.any() and g is None and (~has_xy & has_name).any():
        raise GridError("trials name sites but no grid definition was given; pass grid=... "
                        "(for example '7x7@10') to resolve them")
    site_idx = np.full(n, -1)
    if g is not None:
        by_name = keep & has_name
        for i in np.flatnonzero(by_name):
            try:
                site_idx[i] = g.site_index(names[i])
            except GridError as exc:
                raise GridError(f"trial {numbers[i]}: {exc}") from None
        both = by_name & has_xy
        if both.any():
            at = g.locate(x[both], y[both], what="trial", labels=numbers[both])
            disagree = np.flatnonzero(both)[at != site_idx[both]]
            if disagree.size:
                i = disagree[0]
                sx, sy = g.x_mm[site_idx[i]], g.y_mm[site_idx[i]]
                raise GridError(f"{disagree.size} trial(s) name a site their position is not in: "
                                f"trial {numbers[i]} says site {names[i]!r} at ({sx:g}, {sy:g}) mm "
                                f"but its position is ({x[i]:g}, {y[i]:g}) mm")
    missing = keep & ~has_xy & (site_idx < 0)
    if missing.any():
        k = np.flatnonzero(missing)
        if missing_position == "raise":
            raise MapError(f"{k.size} of {n} trials have no coil position (x_mm/y_mm NaN and no "
                           f"site): trials {_show(numbers[k])}; give positions or sites, or pass "
                           f"missing_position='exclude'")
        drop(missing, "no coil position")
    if not keep.any():
        reasons = "; ".join(f"{len(v)} {r}" for r, v in excluded.items()) or "no trials given"
        raise MapError(f"no usable trials for a map ({reasons})")

    use = np.flatnonzero(keep)
    a = amp[use]
    if g is not None:
        from_xy = has_xy[use] & (site_idx[use] < 0)
        ids = site_idx[use].copy()
        if from_xy.any():
            ids[from_xy] = g.locate(x[use][from_xy], y[use][from_xy], what="trial",
                                    labels=numbers[use][from_xy])
        uniq, site = np.unique(ids, return_inverse=True)
        sx, sy = g.x_mm[uniq], g.y_mm[uniq]
        snames = tuple(g.names[i] for i in uniq)
        cell = g.spacing_mm if cell_mm is None else float(cell_mm)
        repeated = True
    else:
        pts = np.round(np.column_stack([x[use], y[use]]), 6)
        uniq_pts, site = np.unique(pts, axis=0, return_inverse=True)
        site = site.reshape(-1)
        sx, sy = uniq_pts[:, 0].copy(), uniq_pts[:, 1].copy()
        snames = ("",) * len(sx)
        repeated = len(sx) < len(use)
        if cell_mm is not None:
            cell = float(cell_mm)
        elif len(sx) >= 2:
            d = np.hypot(sx[:, None] - sx[None, :], sy[:, None] - sy[None, :])
            np.fill_diagonal(d, np.inf)
            cell = float(np.median(d.min(axis=1)))
        else:
            cell = math.nan
    n_sites = len(sx)
    meth = method if method != "auto" else ("sites" if (g is not None or repeated) else "interpolated")
    notes: list[str] = []
    sz = None
    if z is not None:
        zu = z[use]
        cnt = np.bincount(site, weights=np.isfinite(zu).astype(float), minlength=n_sites)
        tot = np.bincount(site, weights=np.where(np.isfinite(zu), zu, 0.0), minlength=n_sites)
        with np.errstate(invalid="ignore", divide="ignore"):
            sz = tot / cnt
        if not np.isfinite(sz).all():
            notes.append("some sites have no z_mm: cog z uses the others")

    mean_uv, count, frac = _site_stats(site, a, n_sites, responsive_uv)
    resp = _is_responsive(mean_uv, frac, responsive, responsive_uv, responsive_fraction)

    interp = None
    # interpolated values equal to the criterion may come out a rounding error below it
    lattice_uv = responsive_uv - 1e-9 * max(1.0, abs(responsive_uv))
    if meth == "interpolated":
        interp = _Interp(sx, sy, float(lattice_mm))
    elif not (math.isfinite(cell) and cell > 0):
        raise MapError(f"a map of {n_sites} site(s) needs cell_mm (the area one site stands for) "
                       f"or a grid to give an area")

    def measures(mean_v: np.ndarray, frac_v: np.ndarray):
        r = _is_responsive(mean_v, frac_v, responsive, responsive_uv, responsive_fraction)
        vol_uv = float(np.sum(mean_v[r]))
        if interp is None:
            area = float(np.count_nonzero(r)) * cell * cell
            vol_mm2 = vol_uv * cell * cell
        else:
            vals = interp.values(mean_v)
            on = vals >= lattice_uv
            area = float(np.count_nonzero(on)) * interp.lattice_mm ** 2
            vol_mm2 = float(np.sum(vals[on])) * interp.lattice_mm ** 2
        return area, vol_uv, vol_mm2

    area, vol_uv, vol_mm2 = measures(mean_uv, frac)
    w = mean_uv
    cog = _cog(sx, sy, None if sz is None else np.nan_to_num(sz), w)
    if sz is not None and math.isfinite(cog[0]):
        okz = np.isfinite(sz)
        cz = _cog(sx[okz], sy[okz], sz[okz], w[okz])
        cog = (cog[0], cog[1], cz[2] if len(cz) == 3 else math.nan)
    if not math.isfinite(cog[0]):
        notes.append("no site has an MEP: CoG and hotspot are undefined")
    if np.any(mean_uv > 0):
        h = int(np.argmax(mean_uv))
        hot = (float(sx[h]), float(sy[h])) + ((float(sz[h]),) if sz is not None else ())
        hot_site, hot_uv = snames[h], float(mean_uv[h])
    else:
        hot = (math.nan,) * (2 if sz is None else 3)
        hot_site, hot_uv = "", math.nan

    # ---- image for figures, responsive region for overlap
    image = None
    cells = None
    if interp is not None:
        image = {"x_mm": interp.gx, "y_mm": interp.gy, "amplitude_uv": interp.image(mean_uv)}
        on = np.zeros(interp.inside.shape, bool)
        on[interp.inside] = interp.values(mean_uv) >= lattice_uv
        Y, X = np.nonzero(on)
        cells = (interp.gx[X], interp.gy[Y], interp.lattice_mm)
    else:
        if g is not None and g.regular:
            image = _regular_image(g, uniq, mean_uv)
        elif n_sites >= 3:
            try:
                it = _Interp(sx, sy, min(float(lattice_mm), cell / 4.0))
                image = {"x_mm": it.gx, "y_mm": it.gy, "amplitude_uv": it.image(mean_uv)}
            except MapError:
                image = None
        cells = (sx[resp], sy[resp], cell)

    # ---- bootstrap
    ci: dict[str, tuple[float, float]] = {}
    n_boot = int(n_boot)
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        stratified = bool(np.all(count >= 2))
        if not stratified and len(a) < 3:
            notes.append(f"no bootstrap intervals: {len(a)} trial(s)")
        else:
            if stratified:
                # resample trials within each site: the design (sites, counts) stays fixed
                order = np.argsort(site, kind="stable")
                starts = np.concatenate([[0], np.cumsum(count.astype(int))[:-1]])
                cnt_t = count.astype(int)[site[order]]
                st_t = starts[site[order]]
                u = rng.random((n_boot, len(a)))
                pick = order[st_t + np.floor(u * cnt_t).astype(int)]
                bs_site = site[pick]
                # resampled deviations from the site mean, inflated by sqrt(n / (n - 1)) so
                # each resampled site mean has the unbiased variance (Davison & Hinkley 1997,
                # sec. 3.2-3.3); plain resampling of 5 pulses per site under-covers
                c = mean_uv[bs_site]
                bs_amp = c + np.sqrt(count[bs_site] / (count[bs_site] - 1.0)) * (a[pick] - c)
            else:
                notes.append("bootstrap resamples trials as cases (some sites have one trial)")
                pick = rng.integers(0, len(a), (n_boot, len(a)))
                bs_amp = a[pick]
                bs_site = site[pick]
            flat = (bs_site + n_sites * np.arange(n_boot)[:, None]).ravel()
            tot = np.bincount(flat, weights=bs_amp.ravel(), minlength=n_boot * n_sites)
            cnt = np.bincount(flat, minlength=n_boot * n_sites).astype(float)
            abv = np.bincount(flat, weights=(bs_amp.ravel() >= responsive_uv).astype(float),
                              minlength=n_boot * n_sites)
            with np.errstate(invalid="ignore", divide="ignore"):
                m_b = (tot / cnt).reshape(n_boot, n_sites)
                f_b = (abv / cnt).reshape(n_boot, n_sites)
            present = np.isfinite(m_b)
            m0 = np.where(present, m_b, 0.0)
            wsum = m0.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                cx = (m0 * sx).sum(axis=1) / wsum
                cy = (m0 * sy).sum(axis=1) / wsum
            r_b = _is_responsive(m0, np.where(present, f_b, 0.0), responsive, responsive_uv,
                                 responsive_fraction) & present
            volb = np.where(r_b, m0, 0.0).sum(axis=1)
            if interp is None:
                areab = r_b.sum(axis=1) * cell * cell
                volb2 = volb * cell * cell
            elif stratified:
                vals = interp.values(m0)
                on = vals >= lattice_uv
                areab = on.sum(axis=1) * interp.lattice_mm ** 2
                volb2 = np.where(on, vals, 0.0).sum(axis=1) * interp.lattice_mm ** 2
            else:
                # each replicate needs its own triangulation (~10-20 ms): the area and
                # volume intervals of such maps use the first N_BOOT_REINTERPOLATED
                n_re = min(n_boot, N_BOOT_REINTERPOLATED)
                if n_re < n_boot:
                    notes.append(f"area and volume_uv_mm2 intervals from {n_re} of the "
                                 f"{n_boot} resamples (each is re-interpolated)")
                areab = np.full(n_re, np.nan)
                volb2 = np.full(n_re, np.nan)
                for b in range(n_re):
                    pr = present[b]
                    if pr.sum() < 3:
                        continue
                    try:
                        itb = _Interp(sx[pr], sy[pr], interp.lattice_mm)
                    except MapError:
                        continue
                    vals = itb.values(m0[b, pr])
                    on = vals >= lattice_uv
                    areab[b] = on.sum() * itb.lattice_mm ** 2
                    volb2[b] = vals[on].sum() * itb.lattice_mm ** 2
            var_s = np.bincount(site, weights=(a - mean_uv[site]) ** 2, minlength=n_sites)
            with np.errstate(invalid="ignore", divide="ignore"):
                var_s = var_s / (count - 1.0)
            wsum0 = float(np.sum(mean_uv))
            dfx = _welch_df((sx - cog[0]) / wsum0, var_s, count) if wsum0 > 0 else math.inf
            dfy = _welch_df((sy - cog[1]) / wsum0, var_s, count) if wsum0 > 0 else math.inf
            dfv = _welch_df(resp.astype(float), var_s, count)
            how_area = "percentile" if ci_method == "t" else ci_method
            ci = {k: _bootstrap_ci(np.asarray(v, float), est, ci_level, hw, df)
                  for k, v, est, hw, df in (
                      ("cog_x_mm", cx, cog[0], ci_method, dfx),
                      ("cog_y_mm", cy, cog[1], ci_method, dfy),
                      ("area_mm2", areab, area, how_area, math.inf),
                      ("volume_uv", volb, vol_uv, ci_method, dfv),
                      ("volume_uv_mm2", volb2, vol_mm2, how_area, math.inf))}
    options = {"method": meth, "responsive": responsive, "responsive_uv": float(responsive_uv),
               "responsive_fraction": float(responsive_fraction), "cell_mm": float(cell),
               "lattice_mm": float(lattice_mm), "n_boot": n_boot, "ci_level": float(ci_level),
               "seed": int(seed), "missing_position": missing_position,
               "grid": None if g is None else g.describe()}
    return MapMetrics(
        method=meth, n_trials=int(len(a)), n_sites=int(n_sites), excluded=excluded,
        site_names=snames, site_x_mm=sx, site_y_mm=sy,
        site_z_mm=np.full(n_sites, np.nan) if sz is None else sz,
        site_mean_uv=mean_uv, site_count=count.astype(int), site_fraction_mep=frac,
        site_responsive=resp, cell_mm=float(cell), area_mm2=area, volume_uv=vol_uv,
        volume_uv_mm2=vol_mm2, cog_mm=cog, hotspot_mm=hot, hotspot_site=hot_site,
        hotspot_uv=hot_uv, ci=ci, ci_level=float(ci_level), image=image,
        responsive_cells=cells, options=options, notes=notes)


def map_metrics_from_table(table: Any, *, channel: str | None = None,
                           hemisphere: str | None = None, condition: str | None = None,
                           **options: Any) -> MapMetrics:
    """:func:`map_metrics` of one channel of a trial table (one row per trial and channel).

    Uses the columns ``x_mm``, ``y_mm`` (``z_mm`` and ``site`` when present),
    ``amplitude_uv``, ``rejected``/``reject_reason`` and ``trial``. ``channel`` may be
    omitted when the table has one channel; ``hemisphere``/``condition`` select rows.
    """
    import pandas as pd

    df = pd.DataFrame(table)
    need = {"amplitude_uv", "channel"}
    if not need <= set(df.columns):
        raise MapError(f"the trial table lacks column(s) {sorted(need - set(df.columns))}")
    if not {"x_mm", "y_mm"} <= set(df.columns) and "site" not in df.columns:
        raise MapError("the trial table has no coil positions (columns x_mm, y_mm or site)")
    channels = list(dict.fromkeys(df["channel"].astype(str)))
    if channel is None:
        if len(channels) != 1:
            raise MapError(f"the trial table has channels {channels}; choose one with channel=")
        channel = channels[0]
    elif channel not in channels:
        raise MapError(f"channel {channel!r} is not in the trial table (it has {channels})")
    sel = df["channel"].astype(str) == channel
    for col, val in (("hemisphere", hemisphere), ("condition", condition)):
        if val is not None:
            if col not in df.columns:
                raise MapError(f"the trial table has no {col!r} column to select {val!r}")
            sel &= df[col].astype(str) == val
    d = df[sel]
    if d.empty:
        raise MapError(f"no trials of channel {channel!r}"
                       + (f" in hemisphere {hemisphere!r}" if hemisphere is not None else "")
                       + (f" with condition {condition!r}" if condition is not None else ""))
    col = lambda c: d[c].to_numpy() if c in d.columns else None  # noqa: E731
    nan = np.full(len(d), np.nan)
    return map_metrics(
        col("x_mm") if "x_mm" in d.columns else nan, col("y_mm") if "y_mm" in d.columns else nan,
        d["amplitude_uv"].to_numpy(dtype=float), col("z_mm"), site=col("site"),
        rejected=col("rejected"), reject_reason=col("reject_reason"),
        trial=col("trial"), **options)


def map_metrics_from_record(record: Any, **options: Any) -> MapMetrics:
    """:func:`map_metrics_from_table` of a record's trial table (a path or an open Record)."""
    if isinstance(record, (str, bytes)) or hasattr(record, "__fspath__"):
        from mepkit.records import open_record

        with open_record(record) as rec:
            return map_metrics_from_table(rec.trials, **options)
    return map_metrics_from_table(record.trials, **options)


# ---------------------------------------------------------------------- comparison
def _raster(cells: tuple[np.ndarray, np.ndarray, float], x0: float, y0: float, step: float,
            shape: tuple[int, int], mirror: bool) -> np.ndarray:
    out = np.zeros(shape, bool)
    cx, cy, side = cells
    if mirror:
        cx = -cx
    h = side / 2.0
    for xv, yv in zip(cx, cy):
        i0 = max(int(math.ceil((yv - h - y0) / step - 1e-9)), 0)
        i1 = min(int(math.floor((yv + h - y0) / step - 1e-9)), shape[0] - 1)
        j0 = max(int(math.ceil((xv - h - x0) / step - 1e-9)), 0)
        j1 = min(int(math.floor((xv + h - x0) / step - 1e-9)), shape[1] - 1)
        out[i0:i1 + 1, j0:j1 + 1] = True
    return out


def compare_maps(a: MapMetrics, b: MapMetrics, *, mirror_x: bool = False,
                 resolution_mm: float = 0.25) -> MapComparison:
    """Compare map ``b`` with map ``a`` (sessions, or the two hemispheres).

    Parameters
    ----------
    a, b : MapMetrics
    mirror_x : bool
        Mirror ``b`` about x = 0 first (hemispheres mapped in mirror-image coordinates,
        x measured from the midline).
    resolution_mm : float
        Raster step of the overlap.

    Returns
    -------
    MapComparison
        ``cog_shift_mm`` (Euclidean, in the x-y plane), ``area_ratio`` and
        ``volume_ratio`` (b / a, of ``area_mm2`` and ``volume_uv_mm2``), and ``dice``:
        the Dice coefficient 2|A∩B| / (|A| + |B|) of the responsive regions.
    """
    notes: list[str] = []
    sgn = -1.0 if mirror_x else 1.0
    dx = sgn * b.cog_mm[0] - a.cog_mm[0]
    dy = b.cog_mm[1] - a.cog_mm[1]
    shift = math.hypot(dx, dy)
    if not math.isfinite(shift):
        notes.append("a map without MEPs has no CoG: no CoG shift")

    def ratio(p: float, q: float, what: str) -> float:
        if q > 0:
            return p / q
        notes.append(f"{what} of map a is 0: no ratio")
        return math.nan

    area_ratio = ratio(b.area_mm2, a.area_mm2, "area")
    volume_ratio = ratio(b.volume_uv_mm2, a.volume_uv_mm2, "volume")
    ca, cb = a.responsive_cells, b.responsive_cells
    dice = math.nan
    if ca is None or cb is None or (len(ca[0]) == 0 and len(cb[0]) == 0):
        notes.append("neither map has a responsive region: no overlap")
    else:
        xs = np.concatenate([ca[0], sgn * cb[0]])
        ys = np.concatenate([ca[1], cb[1]])
        h = max(ca[2], cb[2]) / 2.0 + resolution_mm
        x0, y0 = xs.min() - h, ys.min() - h
        shape = (int((ys.max() + h - y0) / resolution_mm) + 2,
                 int((xs.max() + h - x0) / resolution_mm) + 2)
        ra = _raster(ca, x0, y0, resolution_mm, shape, False)
        rb = _raster(cb, x0, y0, resolution_mm, shape, mirror_x)
        tot = ra.sum() + rb.sum()
        dice = float(2.0 * np.logical_and(ra, rb).sum() / tot) if tot else math.nan
    return MapComparison(cog_shift_mm=shift, cog_shift_xy_mm=(dx, dy), area_ratio=area_ratio,
                         volume_ratio=volume_ratio, dice=dice, mirrored_x=bool(mirror_x),
                         notes=notes)
