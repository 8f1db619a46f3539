"""Spatial protocols: grid mapping, pseudo-random rapid mapping, model-based hotspot search.

All three have the shape of :class:`mepkit.protocols.base.Protocol` (``propose`` /
``observe_stimulus`` / ``done`` / ``estimate`` / ``steps`` / ``options``), and the
spatial spelling ``next_position()`` / ``observe(x_mm, y_mm, amplitude_uv,
rejected=False)``. Defaults and their sources: docs/methods.md, "Motor maps".

* :class:`GridMapping` — every site of a grid, ``per_site`` pulses each, in a seeded
  random order; stop rules: all pulses given, ``max_pulses``, a site skipped after
  ``max_rejected_per_site`` rejected trials, and (optional) a silent site abandoned
  after ``silent_after`` pulses without an MEP.
* :class:`PseudoRandomMapping` — ``n_pulses`` positions spread over a rectangle
  (seeded best-candidate sampling), in the spirit of the rapid pseudo-random maps of
  van de Ruit et al. (2015); its map is interpolated.
* :class:`HotspotSearch` (:func:`make_hotspot_search`) — Bayesian optimisation of the
  MEP amplitude over the scalp (Meincke et al. 2016; Tervo et al. 2020): a Gaussian
  process on log amplitude, the next position where the upper confidence bound is
  largest, and the hotspot where the posterior mean is largest. When a whole opening
  design gives no MEP the search proposes a higher intensity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mepkit.protocols.base import Protocol, ProtocolError, Stimulus

__all__ = [
    "GridMapping", "PseudoRandomMapping", "HotspotSearch", "HotspotEstimate",
    "MapEstimate", "make_hotspot_search", "make_grid_mapping", "make_pseudorandom_mapping",
]


# ---------------------------------------------------------------------- shared
def _intensity(value: Any, name: str = "intensity_pct_mso") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} must be a number (%MSO), got {value!r}") from None
    if not 0.0 < v <= 100.0:
        raise ProtocolError(f"{name} must be within (0, 100] %MSO, got {value!r}")
    return v


def _bounds(bounds_mm: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        (x0, x1), (y0, y1) = bounds_mm
        x0, x1, y0, y1 = float(x0), float(x1), float(y0), float(y1)
    except (TypeError, ValueError):
        raise ProtocolError(f"bounds_mm must be ((x0, x1), (y0, y1)) in mm, got {bounds_mm!r}") from None
    if not (all(math.isfinite(v) for v in (x0, x1, y0, y1)) and x0 < x1 and y0 < y1):
        raise ProtocolError(f"bounds_mm must have x0 < x1 and y0 < y1 (finite mm), got {bounds_mm!r}")
    return (x0, x1), (y0, y1)


def _position(x_mm: Any, y_mm: Any, who: str) -> tuple[float, float]:
    try:
        x, y = float(x_mm), float(y_mm)
    except (TypeError, ValueError):
        raise ProtocolError(f"{who}: x_mm and y_mm must be numbers, got {x_mm!r}, {y_mm!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ProtocolError(f"{who}: the coil position must be finite, got ({x_mm!r}, {y_mm!r})")
    return x, y


class _SpatialMixin:
    """``next_position`` / ``observe`` on top of ``propose`` / ``observe_stimulus``."""

    def next_position(self) -> tuple[float, float]:
        """Where the coil goes next, ``(x_mm, y_mm)``."""
        s = self.propose()  # type: ignore[attr-defined]
        return (s.x_mm, s.y_mm)

    def observe(self, x_mm: float, y_mm: float, amplitude_uv: float, rejected: bool = False):
        """Feed back the amplitude of the pulse given at ``(x_mm, y_mm)``.

        The position is where the coil actually was (it may differ from the proposal).
        """
        x, y = _position(x_mm, y_mm, self.name)  # type: ignore[attr-defined]
        planned = self.propose()  # type: ignore[attr-defined]
        stim = Stimulus(planned.intensity_pct_mso, x, y, planned.z_mm, planned.hemisphere,
                        planned.site, planned.condition, planned.label)
        return self.observe_stimulus(stim, amplitude_uv, rejected=rejected)  # type: ignore[attr-defined]


@dataclass
class MapEstimate:
    """The current map of a mapping protocol: its :class:`~mepkit.analysis.maps.MapMetrics`
    plus the protocol's bookkeeping."""

    metrics: Any
    n_pulses: int
    n_counted: int
    skipped_sites: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"n_pulses": self.n_pulses, "n_counted": self.n_counted,
                "skipped_sites": dict(self.skipped_sites), **self.metrics.as_dict()}


# ---------------------------------------------------------------------- grid mapping
class GridMapping(_SpatialMixin, Protocol):
    """Map a grid: ``per_site`` pulses at every site, in a seeded random order.

    Parameters
    ----------
    grid : Grid, str or mapping
        The grid (``"7x7@10"``; see :func:`mepkit.analysis.grids.parse_grid`).
    intensity_pct_mso : float
        Stimulus intensity (typically 110-120 % RMT).
    per_site : int
        Counted pulses per site (default 5).
    order : {'sites', 'pulses', 'raster'}
        ``'sites'``: each site's pulses in a block, the sites in random order (moves the
        coil least); ``'pulses'``: rounds over all sites, each round in a new random
        order; ``'raster'``: row by row, no randomisation.
    seed : int
        Seed of the order.
    max_pulses : int, optional
        Stop after this many pulses (rejected ones included).
    max_rejected_per_site : int
        A site whose trials are rejected this often is skipped (and listed).
    silent_after : int, optional
        Abandon a site after this many counted pulses none of which reached
        ``mep_uv`` (off by default: it biases the mean of weak sites towards 0).
    mep_uv : float
        MEP criterion for ``silent_after`` (50 µV).
    hemisphere : str
        Put in each stimulus (for the record).
    n_boot : int
        Bootstrap resamples of the estimate's intervals once the map is done (0: none;
        the map while it grows has none).
    """

    name = "grid-mapping"

    def __init__(self, grid: Any, intensity_pct_mso: float, *, per_site: int = 5,
                 order: str = "sites", seed: int = 0, max_pulses: int | None = None,
                 max_rejected_per_site: int = 5, silent_after: int | None = None,
                 mep_uv: float = 50.0, hemisphere: str = "", n_boot: int = 0) -> None:
        super().__init__()
        from mepkit.analysis.grids import parse_grid

        self.grid = parse_grid(grid)
        self.intensity_pct_mso = _intensity(intensity_pct_mso)
        if int(per_site) < 1:
            raise ProtocolError(f"per_site must be >= 1, got {per_site!r}")
        if order not in ("sites", "pulses", "raster"):
            raise ProtocolError(f"order must be 'sites', 'pulses' or 'raster', got {order!r}")
        if max_pulses is not None and int(max_pulses) < 1:
            raise ProtocolError(f"max_pulses must be >= 1, got {max_pulses!r}")
        if silent_after is not None and int(silent_after) < 1:
            raise ProtocolError(f"silent_after must be >= 1, got {silent_after!r}")
        self.per_site = int(per_site)
        self.order = order
        self.seed = int(seed)
        self.max_pulses = None if max_pulses is None else int(max_pulses)
        self.max_rejected_per_site = int(max_rejected_per_site)
        self.silent_after = None if silent_after is None else int(silent_after)
        self.mep_uv = float(mep_uv)
        self.hemisphere = hemisphere
        self.n_boot = max(0, int(n_boot))
        rng = np.random.default_rng(self.seed)
        n = self.grid.n_sites
        if order == "raster":
            plan = np.repeat(np.arange(n), self.per_site)
        elif order == "sites":
            plan = np.repeat(rng.permutation(n), self.per_site)
        else:
            plan = np.concatenate([rng.permutation(n) for _ in range(self.per_site)])
        self._plan = [int(i) for i in plan]
        self._next = 0
        self._counted = np.zeros(n, int)
        self._meps = np.zeros(n, int)
        self._rejected = np.zeros(n, int)
        self.skipped: dict[str, str] = {}

    def options(self) -> dict[str, Any]:
        return {"grid": self.grid.describe(), "intensity_pct_mso": self.intensity_pct_mso,
                "per_site": self.per_site, "order": self.order, "seed": self.seed,
                "max_pulses": self.max_pulses, "max_rejected_per_site": self.max_rejected_per_site,
                "silent_after": self.silent_after, "mep_uv": self.mep_uv,
                "hemisphere": self.hemisphere, "n_boot": self.n_boot}

    def _advance(self) -> None:
        while self._next < len(self._plan) and self.grid.names[self._plan[self._next]] in self.skipped:
            self._next += 1

    @property
    def done(self) -> bool:
        self._advance()
        if self.max_pulses is not None and self.n_pulses >= self.max_pulses:
            return True
        return self._next >= len(self._plan)

    def propose(self) -> Stimulus:
        if self.done:
            raise ProtocolError(f"{self.name}: the map is complete")
        i = self._plan[self._next]
        return Stimulus(self.intensity_pct_mso, float(self.grid.x_mm[i]), float(self.grid.y_mm[i]),
                        hemisphere=self.hemisphere, site=self.grid.names[i])

    def observe_stimulus(self, stimulus: Stimulus, amplitude_uv: float, *, rejected: bool = False):
        step = super().observe_stimulus(stimulus, amplitude_uv, rejected=rejected)
        if not step.counted:
            i = self._plan[self._next]
            self._rejected[i] += 1
            if self._rejected[i] >= self.max_rejected_per_site:
                self.skipped[self.grid.names[i]] = (f"{self._rejected[i]} trials rejected "
                                                    f"or not measured")
        return step

    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        i = self._plan[self._next]
        self._counted[i] += 1
        self._meps[i] += amplitude_uv >= self.mep_uv
        self._next += 1
        if (self.silent_after is not None and self._meps[i] == 0
                and self._counted[i] >= self.silent_after and self._counted[i] < self.per_site):
            self.skipped[self.grid.names[i]] = f"no MEP in {self._counted[i]} pulses"

    @property
    def estimate(self) -> MapEstimate:
        return _map_estimate(self, grid=self.grid, skipped=self.skipped,
                             n_boot=self.n_boot if self.done else 0)


def _map_estimate(p: Protocol, *, grid: Any = None, skipped=None, n_boot: int = 0,
                  **options: Any) -> MapEstimate:
    from mepkit.analysis.maps import map_metrics

    steps = [s for s in p.steps if s.counted]
    if not steps:
        raise ProtocolError(f"{p.name}: no counted pulse yet, no map")
    key = (len(p.steps), n_boot)
    cached = getattr(p, "_estimate_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    x = [s.stimulus.x_mm for s in steps]
    y = [s.stimulus.y_mm for s in steps]
    a = [s.amplitude_uv for s in steps]
    site, off = None, []
    if grid is not None:
        # a measured position (neuronavigation) outside its planned site's cell: the pulse
        # is counted at that site rather than failing the whole map
        site = [s.stimulus.site for s in steps]
        half = grid.spacing_mm / 2.0 + 1e-9
        for i, s in enumerate(steps):
            if not s.stimulus.site:
                continue
            gx, gy = grid.position(s.stimulus.site)
            inside = (abs(x[i] - gx) <= half and abs(y[i] - gy) <= half) if grid.regular \
                else math.hypot(x[i] - gx, y[i] - gy) <= half
            if not inside:
                x[i] = y[i] = math.nan
                off.append(s.index)
    m = map_metrics(x, y, a, site=site, grid=grid, trial=[s.index for s in steps],
                    n_boot=n_boot, **options)
    if off:
        m.notes.append(f"{len(off)} pulse(s) measured outside their site's cell (steps "
                       f"{', '.join(map(str, off[:6]))}{'...' if len(off) > 6 else ''}) were "
                       f"counted at the planned site")
    est = MapEstimate(m, p.n_pulses, p.n_counted, dict(skipped or {}))
    p._estimate_cache = (key, est)  # type: ignore[attr-defined]
    return est


def make_grid_mapping(grid: Any = "7x7@10", intensity_pct_mso: float = 50.0,
                      **options: Any) -> GridMapping:
    """A :class:`GridMapping` (the keyword options are its parameters)."""
    return GridMapping(grid, intensity_pct_mso, **options)


# ---------------------------------------------------------------------- pseudo-random
class PseudoRandomMapping(_SpatialMixin, Protocol):
    """Rapid mapping at ``n_pulses`` positions spread over a rectangle, each stimulated once.

    Positions come from seeded best-candidate sampling (Mitchell 1991: of
    ``candidates`` uniform draws the one farthest from those already chosen), which
    covers the area evenly without a regular grid, then are visited in random order.

    Parameters
    ----------
    bounds_mm : ((x0, x1), (y0, y1))
        The area (default 60 × 60 mm, van de Ruit et al. 2015).
    intensity_pct_mso : float
    n_pulses : int
        Number of positions (default 80, van de Ruit et al. 2015).
    seed : int
    candidates : int
        Best-candidate draws per position.
    hemisphere : str
    """

    name = "pseudorandom-mapping"

    def __init__(self, bounds_mm: Any, intensity_pct_mso: float, *, n_pulses: int = 80,
                 seed: int = 0, candidates: int = 20, hemisphere: str = "") -> None:
        super().__init__()
        self.bounds_mm = _bounds(bounds_mm)
        self.intensity_pct_mso = _intensity(intensity_pct_mso)
        if int(n_pulses) < 3:
            raise ProtocolError(f"n_pulses must be >= 3 (an interpolated map needs 3 sites), "
                                f"got {n_pulses!r}")
        self.n_target = int(n_pulses)
        self.seed = int(seed)
        self.candidates = max(1, int(candidates))
        self.hemisphere = hemisphere
        rng = np.random.default_rng(self.seed)
        (x0, x1), (y0, y1) = self.bounds_mm
        pts = np.empty((self.n_target, 2))
        for k in range(self.n_target):
            c = np.column_stack([rng.uniform(x0, x1, self.candidates),
                                 rng.uniform(y0, y1, self.candidates)])
            if k == 0:
                pts[0] = c[0]
                continue
            d = ((c[:, None, :] - pts[None, :k, :]) ** 2).sum(-1).min(axis=1)
            pts[k] = c[int(np.argmax(d))]
        self.positions_mm = pts[rng.permutation(self.n_target)]
        self._next = 0

    def options(self) -> dict[str, Any]:
        return {"bounds_mm": [list(b) for b in self.bounds_mm],
                "intensity_pct_mso": self.intensity_pct_mso, "n_pulses": self.n_target,
                "seed": self.seed, "candidates": self.candidates, "hemisphere": self.hemisphere}

    @property
    def done(self) -> bool:
        return self._next >= self.n_target

    def propose(self) -> Stimulus:
        if self.done:
            raise ProtocolError(f"{self.name}: all {self.n_target} positions are done")
        x, y = self.positions_mm[self._next]
        return Stimulus(self.intensity_pct_mso, float(x), float(y), hemisphere=self.hemisphere)

    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        self._next += 1

    @property
    def estimate(self) -> MapEstimate:
        return _map_estimate(self, method="interpolated")


def make_pseudorandom_mapping(bounds_mm: Any = ((-30.0, 30.0), (-30.0, 30.0)),
                              intensity_pct_mso: float = 50.0, **options: Any) -> PseudoRandomMapping:
    """A :class:`PseudoRandomMapping` (the keyword options are its parameters)."""
    return PseudoRandomMapping(bounds_mm, intensity_pct_mso, **options)


# ---------------------------------------------------------------------- hotspot search
@dataclass
class HotspotEstimate:
    """Where the hotspot is, how sure, and at what cost.

    ``uncertainty_mm``: RMS distance from ``hotspot_mm`` of the maxima of functions drawn
    from the posterior (near the estimate); ``radius95_mm`` their 95th percentile.
    """

    hotspot_mm: tuple[float, float]
    uncertainty_mm: float
    radius95_mm: float
    peak_amplitude_uv: float
    intensity_pct_mso: float
    n_pulses: int
    n_counted: int
    converged: bool
    length_mm: float

    def as_dict(self) -> dict[str, Any]:
        return {"hotspot_mm": list(self.hotspot_mm), "uncertainty_mm": self.uncertainty_mm,
                "radius95_mm": self.radius95_mm, "peak_amplitude_uv": self.peak_amplitude_uv,
                "intensity_pct_mso": self.intensity_pct_mso, "n_pulses": self.n_pulses,
                "n_counted": self.n_counted, "converged": self.converged,
                "length_mm": self.length_mm}


class HotspotSearch(_SpatialMixin, Protocol):
    """Find the position of the largest MEPs in few pulses (GP Bayesian optimisation).

    Build it with :func:`make_hotspot_search`; see there for the options.
    """

    name = "hotspot-gp"

    def __init__(self, bounds_mm: Any, *, intensity_pct_mso: float = 50.0,
                 max_pulses: int = 20, min_pulses: int = 12, target_mm: float = 1.5,
                 n_initial: int = 9, kappa: float = 2.0, step_mm: float = 1.0,
                 floor_uv: float = 10.0, mep_uv: float = 50.0,
                 length_mm: tuple[float, ...] = (5.0, 7.0, 10.0, 14.0),
                 signal_sd: tuple[float, ...] = (1.5, 3.0),
                 noise_sd: tuple[float, ...] = (0.6,),
                 adapt_intensity: bool = True, intensity_step_pct_mso: float = 5.0,
                 max_intensity_pct_mso: float = 100.0, n_draws: int = 200,
                 hemisphere: str = "", seed: int = 0) -> None:
        super().__init__()
        from mepkit.protocols._gp import GaussianProcess2D

        self.bounds_mm = _bounds(bounds_mm)
        self.intensity_pct_mso = _intensity(intensity_pct_mso)
        self.max_intensity_pct_mso = _intensity(max_intensity_pct_mso, "max_intensity_pct_mso")
        if int(max_pulses) < 1 or int(min_pulses) < 1 or int(min_pulses) > int(max_pulses):
            raise ProtocolError(f"need 1 <= min_pulses <= max_pulses, got {min_pulses!r}, "
                                f"{max_pulses!r}")
        if int(n_initial) not in (1, 5, 9):
            raise ProtocolError(f"n_initial must be 1, 5 or 9 (centre, quincunx, 3x3), got "
                                f"{n_initial!r}")
        for nm, v in (("target_mm", target_mm), ("step_mm", step_mm), ("floor_uv", floor_uv),
                      ("kappa", kappa)):
            if not (math.isfinite(float(v)) and float(v) > 0):
                raise ProtocolError(f"{nm} must be a positive number, got {v!r}")
        self.max_pulses, self.min_pulses = int(max_pulses), int(min_pulses)
        self.target_mm, self.kappa, self.step_mm = float(target_mm), float(kappa), float(step_mm)
        self.n_initial = int(n_initial)
        self.floor_uv, self.mep_uv = float(floor_uv), float(mep_uv)
        self.adapt_intensity = bool(adapt_intensity)
        self.intensity_step_pct_mso = float(intensity_step_pct_mso)
        self.n_draws = int(n_draws)
        self.hemisphere = hemisphere
        self.seed = int(seed)
        self._hyper = (tuple(length_mm), tuple(signal_sd), tuple(noise_sd))
        self._gp = GaussianProcess2D(math.log(self.floor_uv), *self._hyper)
        self._full_grid = list(self._gp.grid)
        (x0, x1), (y0, y1) = self.bounds_mm
        gx = np.arange(x0, x1 + 1e-9, self.step_mm)
        gy = np.arange(y0, y1 + 1e-9, self.step_mm)
        X, Y = np.meshgrid(gx, gy)
        self._cand = np.column_stack([X.ravel(), Y.ravel()])
        cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        f = 2.0 / 3.0  # design points two thirds of the way out: every point of the
        if self.n_initial == 1:  # central area lies within ~half a spacing of one
            design = [(0, 0)]
        elif self.n_initial == 5:
            design = [(0, 0), (-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)]
            f = 1.0
        else:
            design = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1)]
        self._design = [(cx + f * a * hx, cy + f * b * hy) for a, b in design]
        self._X: list[tuple[float, float]] = []
        self._y: list[float] = []
        self._amp: list[float] = []
        self._since_raise = 0
        self._next: tuple[float, float] | None = None
        self._est: HotspotEstimate | None = None

    def options(self) -> dict[str, Any]:
        return {"bounds_mm": [list(b) for b in self.bounds_mm],
                "intensity_pct_mso": self.intensity_pct_mso, "max_pulses": self.max_pulses,
                "min_pulses": self.min_pulses, "target_mm": self.target_mm,
                "n_initial": self.n_initial, "kappa": self.kappa, "step_mm": self.step_mm,
                "floor_uv": self.floor_uv, "mep_uv": self.mep_uv,
                "length_mm": list(self._hyper[0]), "signal_sd": list(self._hyper[1]),
                "noise_sd": list(self._hyper[2]), "adapt_intensity": self.adapt_intensity,
                "intensity_step_pct_mso": self.intensity_step_pct_mso,
                "max_intensity_pct_mso": self.max_intensity_pct_mso, "n_draws": self.n_draws,
                "hemisphere": self.hemisphere, "seed": self.seed}

    # -------------------------------------------------------------- state machine
    @property
    def done(self) -> bool:
        if self.n_pulses >= self.max_pulses:
            return True
        if self.n_counted < self.min_pulses or not self._responded():
            return False
        return self.estimate.uncertainty_mm <= self.target_mm

    def _responded(self) -> bool:
        return any(a >= self.mep_uv for a in self._amp)

    def propose(self) -> Stimulus:
        if self.done:
            raise ProtocolError(f"{self.name}: the search is done")
        if self._next is None:
            self._next = self._choose()
        return Stimulus(self.intensity_pct_mso, self._next[0], self._next[1],
                        hemisphere=self.hemisphere)

    def _choose(self) -> tuple[float, float]:
        k = len(self._X)
        if k < len(self._design):
            return self._design[k]
        mu, sd = self._gp.predict(self._cand)
        ucb = mu + self.kappa * sd
        i = int(np.argmax(ucb))
        return (float(self._cand[i, 0]), float(self._cand[i, 1]))

    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        self._X.append((stimulus.x_mm, stimulus.y_mm))
        self._amp.append(amplitude_uv)
        self._y.append(math.log(max(amplitude_uv, self.floor_uv)))
        self._since_raise += 1
        self._next = None
        self._est = None
        responded = self._responded()
        if not responded:
            # nothing but silence: explore with the shortest length scale (the marginal
            # likelihood of all-equal data favours long ones, which would stop exploring)
            self._gp.grid = [(min(self._hyper[0]), max(self._hyper[1]), min(self._hyper[2]))]
        else:
            self._gp.grid = self._full_grid
        self._gp.fit(np.asarray(self._X).reshape(-1, 2), np.asarray(self._y))
        if (self.adapt_intensity and not responded and self._since_raise >= len(self._design)
                and self.intensity_pct_mso < self.max_intensity_pct_mso):
            _, sd = self._gp.predict(self._cand)
            if float(sd.max()) < 0.5 * self._gp.params[1]:
                # the whole area has been covered without an MEP: the intensity is too
                # low to see the map; go up and start again (silent points at the old
                # intensity say nothing about the new one)
                self.intensity_pct_mso = min(self.intensity_pct_mso + self.intensity_step_pct_mso,
                                             self.max_intensity_pct_mso)
                self._X, self._y, self._amp = [], [], []
                self._since_raise = 0
                self._gp.fit(np.zeros((0, 2)), np.zeros(0))

    @property
    def estimate(self) -> HotspotEstimate:
        if self.n_counted == 0:
            raise ProtocolError(f"{self.name}: nothing observed yet, no hotspot estimate")
        if self._est is not None:
            return self._est
        if not self._X:  # just restarted at a higher intensity
            (x0, x1), (y0, y1) = self.bounds_mm
            self._est = HotspotEstimate(((x0 + x1) / 2, (y0 + y1) / 2), math.inf, math.inf,
                                        math.nan, self.intensity_pct_mso, self.n_pulses,
                                        self.n_counted, False, math.nan)
            return self._est
        mu, _ = self._gp.predict(self._cand)
        i = int(np.argmax(mu))
        hx, hy = float(self._cand[i, 0]), float(self._cand[i, 1])
        # posterior draws on a local lattice: where do their maxima fall?
        r = 6.0  # mm: the disc where the maxima of plausible maps fall once an MEP is seen
        loc = self._cand[np.hypot(self._cand[:, 0] - hx, self._cand[:, 1] - hy) <= r]
        m, C = self._gp.predict(loc, full_cov=True)
        rng = np.random.default_rng([self.seed, self.n_pulses])
        try:
            Lc = np.linalg.cholesky(C + 1e-8 * np.eye(m.size))
        except np.linalg.LinAlgError:
            w, V = np.linalg.eigh(C)
            Lc = V * np.sqrt(np.clip(w, 0.0, None))
        draws = m[None, :] + rng.standard_normal((self.n_draws, m.size)) @ Lc.T
        j = np.argmax(draws, axis=1)
        d = np.hypot(loc[j, 0] - hx, loc[j, 1] - hy)
        unc = float(np.sqrt(np.mean(d * d)))
        r95 = float(np.quantile(d, 0.95))
        if not self._responded():
            unc, r95 = math.inf, math.inf
        self._est = HotspotEstimate((hx, hy), unc, r95, float(math.exp(mu[i])),
                                    self.intensity_pct_mso, self.n_pulses, self.n_counted,
                                    bool(self._responded() and unc <= self.target_mm),
                                    float(self._gp.params[0]))
        return self._est


def make_hotspot_search(bounds_mm: Any = ((-20.0, 20.0), (-20.0, 20.0)),
                        **options: Any) -> HotspotSearch:
    """A model-based hotspot search over ``bounds_mm``.

    Parameters
    ----------
    bounds_mm : ((x0, x1), (y0, y1))
        The area searched (mm).
    intensity_pct_mso : float
        Starting intensity (about 110-120 % of the expected RMT).
    max_pulses, min_pulses : int
        Stop at ``max_pulses`` (default 20); stop earlier, after ``min_pulses``
        (12), once ``uncertainty_mm`` <= ``target_mm`` (1.5 mm).
    n_initial : {1, 5, 9}
        Opening design: the centre, a quincunx, or a 3 × 3 lattice two thirds of the way
        out (default 9: with 5 a narrow map between the points was sometimes missed).
    kappa : float
        UCB exploration weight: next position = argmax(mean + kappa * sd) of the GP on
        log amplitude (Srinivas et al. 2010; default 2).
    step_mm : float
        Lattice of candidate positions and of the estimate.
    floor_uv : float
        Amplitudes below this are taken as this (log of 0 is undefined; 10 µV).
    mep_uv : float
        An amplitude >= this is an MEP (50 µV): the search needs one before it may stop.
    length_mm, signal_sd, noise_sd : tuple of float
        GP hyperparameter candidates (marginal likelihood picks).
    adapt_intensity : bool
        When the whole opening design gives no MEP, raise the intensity by
        ``intensity_step_pct_mso`` (5) up to ``max_intensity_pct_mso`` and start again.
    n_draws : int
        Posterior draws for the uncertainty.
    hemisphere : str
    seed : int
        Seed of the posterior draws.

    Examples
    --------
    >>> search = make_hotspot_search(((-20, 20), (-20, 20)), intensity_pct_mso=55)
    >>> search.next_position()
    (0.0, 0.0)
    """
    return HotspotSearch(bounds_mm, **options)
