"""Bayesian adaptive threshold hunting from MEP amplitudes (method ``'bayes'``).

The hunter keeps a posterior over a grid of four parameters of its own model of the
subject (written for the hunter from the description below, not taken from `mepkit.sim`):

* threshold ``T`` (%MSO): the intensity where the median MEP equals the criterion ``c``;
* slope ``s`` (%MSO per e-fold of the median near threshold);
* plateau ``M`` (µV) of the recruitment curve;
* ``sigma``: the trial-to-trial SD of the log amplitude.

Median MEP at intensity ``x``: the Boltzmann sigmoid through ``c`` at ``T``,
``m(x) = M / (1 + (M / c - 1) exp((T - x) / s))``. A trial's MEP ``A`` is log-normal
around it, ``ln A ~ N(ln m(x), sigma)``. The measured peak-to-peak is
``a = max(A + d, N)``: the background adds ``d`` (half its own peak-to-peak) to an MEP's
peak-to-peak, and alone it measures ``N``, ``ln N ~ N(ln noise_uv, noise_sd)``. So a
large amplitude says much about ``T`` (through ``s``), one at the noise level says only
"the MEP was smaller than the noise lets show", and the hit/miss model of ML-PEST is the
special case that keeps only ``a >= c``. A small share of trials (``lapse``) is taken to
say nothing, so one odd amplitude cannot capture the posterior.

Population prior (options ``prior_*``): ``T`` normal (mean 50, SD 15 %MSO; mean 40 for
the active threshold) mixed 9:1 with a flat prior over the whole grid (1-130 %MSO), so
that thresholds far from the population, and subjects without MEPs, are still found;
``s`` log-normal (median 6 %MSO, log-SD 0.4); ``sigma`` log-normal (median 0.6, log-SD
0.35); ``M`` 800 or 4000 µV, equally likely.

Each pulse goes to the intensity that minimises the expected posterior variance of ``T``
after its outcome (``placement='info'``; ``'median'``: the posterior median of ``T``),
rounded to ``resolution_pct_mso``. The hunt stops when the central ``ci_level`` credible
interval of ``T`` is no wider than ``ci_width_pct_mso``, when ``T`` is above 100 %MSO
with probability ``(1 + ci_level) / 2`` ("no threshold up to 100 %MSO"), or at
``max_pulses``. Procedure, defaults and their reasons: ``docs/methods.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtr

from mepkit.protocols.base import MAX_PCT_MSO, ProtocolError, check_number
from mepkit.protocols.hunter import NO_THRESHOLD, AdaptiveHunter

__all__ = ["BayesHunter"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

class _Tabulated:
    """A smooth function of one variable tabulated for linear interpolation by index.

    scipy's ``ndtr`` / ``log_ndtr`` cost ~30 ns per value; on the hunter's grid this is
    ~10x faster, with an interpolation error below 2e-7 for the functions used here.
    Outside the table the end values are used (``below`` may give an exact tail).
    """

    def __init__(self, f, lo: float, hi: float, step: float = 0.001, below=None) -> None:
        self.lo, self.hi, self.inv_step = lo, hi, 1.0 / step
        self.table = f(np.arange(lo, hi + 2 * step, step))
        self.below = below

    def __call__(self, z: np.ndarray) -> np.ndarray:
        u = (np.clip(z, self.lo, self.hi) - self.lo) * self.inv_step
        i = u.astype(np.intp)
        f = u - i
        out = self.table[i] * (1.0 - f) + self.table[i + 1] * f
        if self.below is not None:
            low = z < self.lo
            if low.any():
                out[low] = self.below(z[low])
        return out


def _log_phi_tail(z: np.ndarray) -> np.ndarray:
    """Asymptotic ln Phi(z) for z << 0 (exact to ~1e-6 below -38)."""
    return -0.5 * z * z - np.log(-z) - _LOG_SQRT_2PI + np.log1p(-1.0 / (z * z))


#: ln Phi(z) and Phi(z), the standard normal CDF.
_log_phi = _Tabulated(log_ndtr, -38.0, 9.0, below=_log_phi_tail)
_phi = _Tabulated(ndtr, -9.0, 9.0)


def _log_normal_prior(grid: np.ndarray, median: float, log_sd: float) -> np.ndarray:
    z = (np.log(grid) - math.log(median)) / log_sd
    w = -0.5 * z * z
    return w - np.logaddexp.reduce(w)


class BayesHunter(AdaptiveHunter):
    """Bayesian adaptive threshold hunting with a population prior, from amplitudes.

    Parameters
    ----------
    ci_width_pct_mso : float
        Stop when the ``ci_level`` credible interval of the threshold is this narrow.
    prior_threshold_pct_mso : (float, float), optional
        Mean and SD of the normal part of the threshold prior. Default (50, 15), or
        (40, 15) with ``active=True``.
    prior_flat_weight : float
        Weight of the flat part of the threshold prior (0..1).
    prior_slope_pct_mso : (float, float)
        Median and log-SD of the slope prior.
    prior_sigma : (float, float)
        Median and log-SD of the prior of the log-amplitude SD.
    plateaus_uv : tuple of float
        Plateau values of the grid (equally likely); each must exceed the criterion.
    noise_uv : float, optional
        Typical peak-to-peak of the background alone in the response window (µV); about
        4.7 x the background RMS mepkit reports (``background_rms_uv``) for white noise.
        Default 0.4 x criterion (20 µV at rest, 80 µV during contraction).
    noise_sd : float
        Log-SD of the background peak-to-peak.
    lapse : float
        Share of trials whose amplitude is taken to carry no information.
    placement : {'info', 'median'}
        Next intensity: least expected posterior variance of the threshold, or its
        posterior median.
    **common
        See `ThresholdHunter` and `AdaptiveHunter` (``resolution_pct_mso``).
    """

    name = "bayes"
    default_max_pulses = 30
    _T_GRID = np.arange(1.0, 130.0 + 1e-9, 0.5)
    _S_GRID = np.geomspace(1.5, 20.0, 6)
    _SIGMA_GRID = np.geomspace(0.25, 1.3, 4)
    PLACEMENTS = ("info", "median")
    #: Share of the background's peak-to-peak that adds to an MEP's measured peak-to-peak
    #: (measured by mepkit on the virtual subject's EMG, 4 µV RMS: background alone 18.6 µV,
    #: an MEP of 20-100 µV measured 9-11 µV larger).
    _NOISE_ADDED = 0.5

    def __init__(self, *, ci_width_pct_mso: float = 5.0,
                 prior_threshold_pct_mso: tuple[float, float] | None = None,
                 prior_flat_weight: float = 0.1,
                 prior_slope_pct_mso: tuple[float, float] = (6.0, 0.4),
                 prior_sigma: tuple[float, float] = (0.6, 0.35),
                 plateaus_uv: tuple[float, ...] = (800.0, 4000.0),
                 noise_uv: float | None = None, noise_sd: float = 0.3, lapse: float = 0.02,
                 placement: str = "info", **common: Any) -> None:
        super().__init__(**common)
        if placement not in self.PLACEMENTS:
            raise ProtocolError(f"placement must be one of {', '.join(self.PLACEMENTS)}, "
                                f"got {placement!r}")
        self.placement = placement
        c = self.criterion_uv
        self.ci_width_pct_mso = check_number("ci_width_pct_mso", ci_width_pct_mso, low=0.0,
                                             high=MAX_PCT_MSO, low_open=True)
        if prior_threshold_pct_mso is None:
            prior_threshold_pct_mso = (40.0, 15.0) if self.active else (50.0, 15.0)
        t_mean, t_sd = _pair("prior_threshold_pct_mso", prior_threshold_pct_mso)
        check_number("prior_threshold_pct_mso mean", t_mean, low=0.0, high=MAX_PCT_MSO)
        check_number("prior_threshold_pct_mso SD", t_sd, low=0.0, low_open=True)
        self.prior_threshold_pct_mso = (t_mean, t_sd)
        self.prior_flat_weight = check_number("prior_flat_weight", prior_flat_weight,
                                              low=0.0, high=1.0)
        s_med, s_lsd = _pair("prior_slope_pct_mso", prior_slope_pct_mso)
        check_number("prior_slope_pct_mso median", s_med, low=0.0, low_open=True)
        check_number("prior_slope_pct_mso log-SD", s_lsd, low=0.0, low_open=True)
        self.prior_slope_pct_mso = (s_med, s_lsd)
        g_med, g_lsd = _pair("prior_sigma", prior_sigma)
        check_number("prior_sigma median", g_med, low=0.0, low_open=True)
        check_number("prior_sigma log-SD", g_lsd, low=0.0, low_open=True)
        self.prior_sigma = (g_med, g_lsd)
        try:
            plateaus = tuple(float(p) for p in plateaus_uv)
        except (TypeError, ValueError):
            plateaus = ()
        if not plateaus or any(not (math.isfinite(p) and p > c) for p in plateaus):
            raise ProtocolError(f"plateaus_uv must be numbers above the criterion ({c:g} µV), "
                                f"got {plateaus_uv!r}")
        self.plateaus_uv = plateaus
        self.noise_uv = 0.4 * c if noise_uv is None else check_number(
            "noise_uv", noise_uv, low=0.0, low_open=True)
        if self.noise_uv >= c:
            raise ProtocolError(f"noise_uv ({self.noise_uv:g} µV) must be below the criterion "
                                f"({c:g} µV): amplitudes below the noise cannot tell an MEP")
        self.noise_sd = check_number("noise_sd", noise_sd, low=0.0, high=3.0, low_open=True)
        self.lapse = check_number("lapse", lapse, low=0.0, high=0.5)

        # grid, shape (T, s, M, sigma)
        t = self._T_GRID
        m = np.asarray(plateaus)
        self._t = t[:, None, None, None]
        self._s = self._S_GRID[None, :, None, None]
        self._log_m = np.log(m)[None, None, :, None]
        self._log_ratio = np.log(m / c - 1.0)[None, None, :, None]
        self._sigma = self._SIGMA_GRID[None, None, None, :]
        self._log_sigma = np.log(self._sigma)
        z = (t - t_mean) / t_sd
        normal = -0.5 * z * z
        normal -= np.logaddexp.reduce(normal)
        flat = np.full(t.size, -math.log(t.size))
        w = self.prior_flat_weight
        with np.errstate(divide="ignore"):
            lp_t = np.logaddexp(math.log1p(-w) + normal if w < 1 else -np.inf,
                                math.log(w) + flat if w > 0 else -np.inf)
        lp_s = _log_normal_prior(self._S_GRID, s_med, s_lsd)
        lp_g = _log_normal_prior(self._SIGMA_GRID, g_med, g_lsd)
        lp_m = np.full(m.size, -math.log(m.size))
        lp = (lp_t[:, None, None, None] + lp_s[None, :, None, None]
              + lp_m[None, None, :, None] + lp_g[None, None, None, :])
        self._logpost = lp - lp.max()
        self._w: np.ndarray | None = None  # posterior weights (max 1), cached per update

    def options(self) -> dict[str, Any]:
        return {**super().options(), "ci_width_pct_mso": self.ci_width_pct_mso,
                "prior_threshold_pct_mso": list(self.prior_threshold_pct_mso),
                "prior_flat_weight": self.prior_flat_weight,
                "prior_slope_pct_mso": list(self.prior_slope_pct_mso),
                "prior_sigma": list(self.prior_sigma), "plateaus_uv": list(self.plateaus_uv),
                "noise_uv": self.noise_uv, "noise_sd": self.noise_sd, "lapse": self.lapse,
                "placement": self.placement}

    # ---------------------------------------------------------------- model
    def _log_median(self, x: float) -> np.ndarray:
        """ln m(x) on the grid, shape (T, s, M, 1)."""
        return self._log_m - np.logaddexp(0.0, self._log_ratio + (self._t - x) / self._s)

    def log_likelihood(self, intensity_pct_mso: float, amplitude_uv: float) -> np.ndarray:
        """Log-likelihood of one measured amplitude on the grid, shape (T, s, M, sigma).

        The measured peak-to-peak is ``max(A + d, N)``: the MEP ``A`` plus what the
        background adds to its peaks (``d`` = half the background's own peak-to-peak
        ``noise_uv``), or the background ``N`` alone when that is larger.
        """
        mu = self._log_median(float(intensity_pct_mso))
        sig = self._sigma
        n0, tau = self.noise_uv, self.noise_sd
        d = self._NOISE_ADDED * n0
        if amplitude_uv < 0.6 * n0:
            # nothing above the background: the MEP was smaller than the noise lets show
            ll = _log_phi((math.log(n0 - d) - mu) / sig)
            floor = math.log(0.5)
        else:
            y = math.log(amplitude_uv)
            za = (math.log(amplitude_uv - d) - mu) / sig
            zn = (y - math.log(n0)) / tau
            # density of ln max(A + d, N): the MEP is the larger and N below it, or the reverse
            ll = np.logaddexp(-0.5 * za * za - self._log_sigma
                              + (y - math.log(amplitude_uv - d) + float(log_ndtr(zn))),
                              -0.5 * zn * zn - math.log(tau) + _log_phi(za))
            ll -= _LOG_SQRT_2PI
            floor = -math.log(10.0)  # a lapse: ln a anywhere over ~10 nats
        if self.lapse > 0:
            ll = np.logaddexp(math.log1p(-self.lapse) + ll, math.log(self.lapse) + floor)
        return ll

    # ---------------------------------------------------------------- posterior
    def _threshold_pmf(self) -> np.ndarray:
        p = self._weights().sum(axis=(1, 2, 3))
        return p / p.sum()

    def _weights(self) -> np.ndarray:
        """Unnormalised posterior on the grid (largest cell 1)."""
        if self._w is None:
            self._w = np.exp(self._logpost)  # _take keeps the maximum of _logpost at 0
        return self._w

    def _quantiles(self, qs) -> np.ndarray:
        """Quantiles of the threshold posterior (each grid cell spread over its width)."""
        p = self._threshold_pmf()
        t = self._T_GRID
        h = t[1] - t[0]
        edges = np.concatenate([[t[0] - h / 2], t + h / 2])
        cdf = np.concatenate([[0.0], np.cumsum(p)])
        return np.interp(qs, cdf, edges)

    def _p_above_ceiling(self) -> float:
        p = self._threshold_pmf()
        return float(p[self._T_GRID > MAX_PCT_MSO].sum())

    def _param_median(self, axis: int, grid: np.ndarray) -> float:
        other = tuple(a for a in range(4) if a != axis)
        w = self._weights().sum(axis=other)
        cdf = np.cumsum(w) / w.sum()
        return float(grid[min(np.searchsorted(cdf, 0.5), grid.size - 1)])

    # ---------------------------------------------------------------- hunter
    def _next(self) -> float:
        if self.placement == "info":
            return self._most_informative()
        return self._round(float(self._quantiles(0.5)))

    def _most_informative(self, n_particles: int = 128, n_candidates: int = 10) -> float:
        """The candidate intensity that minimises the expected posterior variance of T.

        The posterior is represented by ``n_particles`` grid cells drawn in proportion to
        their weight (systematic sampling); the outcome of a pulse by bins of ln amplitude
        (below the noise, then 0.6 wide).
        """
        lp = self._logpost
        w = self._weights().ravel()
        cdf = np.cumsum(w)
        idx = np.searchsorted(cdf, (np.arange(n_particles) + 0.5) / n_particles * cdf[-1])
        it, is_, im, ig = np.unravel_index(np.minimum(idx, w.size - 1), lp.shape)
        t = self._T_GRID[it]
        s = self._S_GRID[is_]
        log_m = self._log_m.ravel()[im]
        log_ratio = self._log_ratio.ravel()[im]
        sig = self._SIGMA_GRID[ig]
        r = self.resolution_pct_mso
        q = self._quantiles([0.05, 0.5, 0.95])
        lo = max(0.0, math.floor((q[0] - 2.0) / r) * r)
        hi = min(MAX_PCT_MSO, math.ceil((q[2] + 6.0) / r) * r)
        step = max(r, math.ceil((hi - lo) / n_candidates / r) * r)
        cands = np.arange(lo, hi + 1e-9, step)
        # (C, K): ln median of each particle at each candidate
        mu = log_m - np.logaddexp(0.0, log_ratio + (t[None, :] - cands[:, None]) / s)
        edges = math.log((1.0 - self._NOISE_ADDED) * self.noise_uv) + 0.6 * np.arange(11)
        c = _phi((edges - mu[..., None]) / sig[:, None])  # (C, K, E)
        pb = np.diff(c, axis=2, prepend=0.0, append=1.0)  # (C, K, E + 1)
        p = pb.sum(1)
        m1 = np.einsum("k,cke->ce", t, pb)
        m2 = np.einsum("k,cke->ce", t * t, pb)
        with np.errstate(divide="ignore", invalid="ignore"):
            ev = np.where(p > 1e-12, m2 - m1 * m1 / p, 0.0).sum(1)
        best = np.flatnonzero(ev <= ev.min() + 1e-9 * abs(ev.min()))
        med = q[1]
        return float(cands[best[np.argmin(np.abs(cands[best] - med))]])

    def _take(self, intensity: float, amplitude_uv: float) -> None:
        lp = self._logpost + self.log_likelihood(intensity, amplitude_uv)
        self._logpost = lp - lp.max()
        self._w = None

    def _interval(self) -> tuple[float, float, float]:
        a = 0.5 * (1.0 - self.ci_level)
        lo, med, hi = self._quantiles([a, 0.5, 1.0 - a])
        return float(lo), float(med), float(hi)

    def _finished(self) -> bool:
        if self._p_above_ceiling() >= 0.5 * (1.0 + self.ci_level):
            return True
        lo, _, hi = self._interval()
        return hi - lo <= self.ci_width_pct_mso

    def _result(self) -> dict[str, Any]:
        lo, med, hi = self._interval()
        p_above = self._p_above_ceiling()
        found = med <= MAX_PCT_MSO and p_above < 0.5 * (1.0 + self.ci_level)
        msg = ""
        if not found:
            msg = f"{NO_THRESHOLD} (P(threshold > {MAX_PCT_MSO:g} %MSO) = {p_above:.2f})"
        return {"found": found, "threshold": med, "ci_low": lo, "ci_high": hi,
                "ci_level": self.ci_level, "interval": "credible", "message": msg,
                "slope_pct_mso": self._param_median(1, self._S_GRID),
                "sigma": self._param_median(3, self._SIGMA_GRID),
                "p_above_ceiling": p_above}


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        a, b = value
        return float(a), float(b)
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} must be a pair of numbers, got {value!r}") from None
