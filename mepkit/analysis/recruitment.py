"""Recruitment (input–output) curves: a Boltzmann sigmoid fitted to log-normal MEPs.

The median MEP at intensity ``I`` (%MSO) is

    m(I) = mep_max_uv / (1 + exp((i50_pct_mso - I) / slope_pct_mso))

(Devanne et al. 1997; Capaday et al. 1999; Möller et al. 2009), and a trial's amplitude is
log-normal around it, ``ln A ~ N(ln m(I), sigma**2)``: MEP variability is multiplicative,
its SD in µV grows with the MEP and the distribution is right-skewed (Nielsen 1996; Goetz
et al. 2014). Amplitudes below ``floor_uv`` (no MEP, or one lost in the noise) only say
"smaller than the floor": they enter the likelihood as left-censored values, so trials
without an MEP pull the curve down without being given a made-up size. The parameters
are maximum-likelihood estimates; their confidence intervals are profile-likelihood
intervals. Sources and defaults: ``docs/methods.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from mepkit.analysis import _likelihood as L
from mepkit.analysis._checks import AnalysisError, check_trials, intensity_range_text

__all__ = ["RecruitmentFit", "boltzmann", "fit_recruitment", "fit_recruitment_curves",
           "FLOOR_UV"]

#: Amplitudes below this (µV) are treated as "no measurable MEP" (left-censored).
FLOOR_UV = 30.0


def boltzmann(intensity_pct_mso, mep_max_uv: float, i50_pct_mso: float,
              slope_pct_mso: float) -> np.ndarray:
    """The Boltzmann recruitment curve (median MEP in µV) at ``intensity_pct_mso``.

    Examples
    --------
    >>> float(boltzmann(60.0, 2000.0, 60.0, 5.0))
    1000.0
    """
    x = np.asarray(intensity_pct_mso, float)
    z = np.clip((i50_pct_mso - x) / slope_pct_mso, -700.0, 700.0)
    return mep_max_uv / (1.0 + np.exp(z))


def _json(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (tuple, list)):
        return [_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return _json(v.item())
    return v


@dataclass(frozen=True)
class RecruitmentFit:
    """A fitted recruitment curve.

    Attributes
    ----------
    mep_max_uv, i50_pct_mso, slope_pct_mso : float or None
        Plateau (µV), midpoint (%MSO) and slope (%MSO per e-fold) of the Boltzmann
        curve; ``None`` when the trials allow no fit (see ``status``).
    sigma_ln : float or None
        SD of ``ln(amplitude)`` around the curve (trial-to-trial variability).
    mep_max_uv_ci, i50_pct_mso_ci, slope_pct_mso_ci : (float, float) or None
        Profile-likelihood confidence intervals at ``ci_level``. An end that the data
        do not bound (for example the plateau when the curve never levels off) is
        ``math.inf`` (upper) or 0 (lower); ``as_dict`` writes ``None`` for infinity.
    status : str
        ``'ok'``; ``'no_mep'`` (no amplitude reaches the floor); ``'insufficient'``
        (too few trials, intensities or MEPs to fit four parameters).
    message : str
        What the status means for these trials, in words.
    notes : tuple of str
        Caveats of an ``'ok'`` fit (plateau not reached, parameter at a search limit).
    """

    mep_max_uv: float | None
    i50_pct_mso: float | None
    slope_pct_mso: float | None
    sigma_ln: float | None
    mep_max_uv_ci: tuple[float, float] | None
    i50_pct_mso_ci: tuple[float, float] | None
    slope_pct_mso_ci: tuple[float, float] | None
    n_trials: int
    n_censored: int
    intensity_min_pct_mso: float | None
    intensity_max_pct_mso: float | None
    floor_uv: float
    ci_level: float
    status: str
    message: str = ""
    notes: tuple[str, ...] = ()
    ci_method: str = "profile likelihood"
    #: Model coordinates of the MLE (ln M, i50, ln s, ln sigma); for bootstraps and predictions.
    theta: tuple[float, ...] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def predict(self, intensity_pct_mso) -> np.ndarray:
        """Median MEP (µV) of the fitted curve at ``intensity_pct_mso``."""
        if not self.ok:
            raise AnalysisError(f"no recruitment curve to predict from: {self.message}")
        return boltzmann(intensity_pct_mso, self.mep_max_uv, self.i50_pct_mso, self.slope_pct_mso)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: each parameter as ``{"value", "ci95"}`` (``ci`` at ``ci_level``)."""
        ci_key = "ci95" if abs(self.ci_level - 0.95) < 1e-9 else f"ci{self.ci_level * 100:g}"
        out: dict[str, Any] = {}
        for name in ("mep_max_uv", "i50_pct_mso", "slope_pct_mso"):
            out[name] = {"value": getattr(self, name), ci_key: getattr(self, name + "_ci")}
        out["sigma_ln"] = self.sigma_ln
        rest = {k: v for k, v in asdict(self).items()
                if k not in out and not k.endswith("_ci") and k != "theta"}
        out.update(rest)
        return _json(out)


def _censored_start(model: L.CurveModel) -> np.ndarray:
    """A coarse grid over (i50, slope) with ln M and sigma in closed form (censored values
    placed at the floor), the best few by the full likelihood: starting points (k, 4)."""
    x = model.x
    y = np.where(model.cens, model.c_floor - 0.5, model.y)
    lo, hi = float(x.min()), float(x.max())
    i50s = np.linspace(max(lo - 10.0, model.lower[1]), min(hi + 40.0, model.upper[1]), 26)
    slopes = np.array([1.0, 2.0, 3.5, 6.0, 10.0, 18.0])
    ii, ss = np.meshgrid(i50s, slopes, indexing="ij")
    ii, ss = ii.ravel(), ss.ravel()
    sp = np.logaddexp(0.0, (ii[:, None] - x[None, :]) / ss[:, None])
    ln_m = np.mean(y[None, :] + sp, axis=1)
    resid = y[None, :] - (ln_m[:, None] - sp)
    sig = np.sqrt(np.mean(resid ** 2, axis=1)) + 0.05
    theta = np.clip(np.stack([ln_m, ii, np.log(ss), np.log(sig)], 1), model.lower, model.upper)
    f, _, _ = model.evaluate(theta, np.ones((theta.shape[0], x.size)))
    return theta[np.argsort(f)[:4]]


def fit_curve_mle(model: L.CurveModel):
    """MLE of a recruitment :class:`~mepkit.analysis._likelihood.CurveModel` (ln M, i50,
    ln s, ln sigma): multi-start Newton; returns (theta, nll)."""
    starts = _censored_start(model)
    th, f, _, _ = L.minimize(model, starts, np.ones(model.x.size))
    best = int(np.nanargmin(f))
    return th[best], float(f[best])


def fit_recruitment(intensity_pct_mso, amplitude_uv, *, rejected=None,
                    floor_uv: float = FLOOR_UV, ci_level: float = 0.95,
                    ci: bool = True) -> RecruitmentFit:
    """Fit a Boltzmann recruitment curve to MEP amplitudes.

    Parameters
    ----------
    intensity_pct_mso : array_like (n,)
        Stimulus intensity of each trial, 0–100 %MSO.
    amplitude_uv : array_like (n,)
        Peak-to-peak MEP amplitude of each trial (µV, >= 0; 0 = no MEP).
    rejected : array_like of bool (n,), optional
        Trials to leave out (their amplitude may be NaN).
    floor_uv : float
        Amplitudes below this are left-censored ("no measurable MEP"); default 30 µV,
        above the peak-to-peak that resting surface EMG noise reaches over the response
        window (docs/methods.md).
    ci_level : float
        Confidence level of the intervals (default 0.95).
    ci : bool
        Compute the profile-likelihood intervals (False: point estimates only, faster).

    Returns
    -------
    RecruitmentFit
        With ``status`` 'ok', or 'no_mep' / 'insufficient' and a message (never raises
        for data that simply do not allow a fit).

    Raises
    ------
    AnalysisError
        Mismatched shapes, intensities outside 0–100 %MSO or missing, NaN amplitudes
        on trials that are not rejected.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.repeat(np.arange(30.0, 101.0, 5.0), 5)
    >>> a = boltzmann(x, 2000.0, 60.0, 5.0) * np.exp(0.4 * rng.standard_normal(x.size))
    >>> fit = fit_recruitment(x, a)
    >>> fit.i50_pct_mso_ci[0] < 60.0 < fit.i50_pct_mso_ci[1]
    True
    """
    floor = float(floor_uv)
    if not floor > 0:
        raise AnalysisError(f"floor_uv must be > 0, got {floor_uv!r}")
    L.z_crit(ci_level)
    x, a = check_trials(intensity_pct_mso, amplitude_uv, rejected)
    n = int(x.size)
    n_cens = int(np.sum(a < floor))
    common = dict(n_trials=n, n_censored=n_cens,
                  intensity_min_pct_mso=float(x.min()) if n else None,
                  intensity_max_pct_mso=float(x.max()) if n else None,
                  floor_uv=floor, ci_level=float(ci_level))
    none = dict(mep_max_uv=None, i50_pct_mso=None, slope_pct_mso=None, sigma_ln=None,
                mep_max_uv_ci=None, i50_pct_mso_ci=None, slope_pct_mso_ci=None)
    if n == 0:
        return RecruitmentFit(**none, **common, status="insufficient", message="no trials")
    if n_cens == n:
        return RecruitmentFit(**none, **common, status="no_mep",
                              message=f"no MEPs (>= {floor:g} µV) up to {x.max():g} %MSO "
                                      f"({n} trials at {intensity_range_text(x)})")
    n_int = np.unique(x).size
    unc_int = np.unique(x[a >= floor]).size
    if n < 5 or n_int < 3 or n - n_cens < 3:
        return RecruitmentFit(**none, **common, status="insufficient",
                              message=f"{n} trials at {n_int} intensities with {n - n_cens} "
                                      f"MEPs >= {floor:g} µV: a recruitment curve needs at least "
                                      f"5 trials at 3 or more intensities and 3 MEPs")
    model = L.CurveModel(x, a, floor)
    theta, nll = fit_curve_mle(model)
    cis: dict[int, L.Profile] = {}
    if ci:
        cis, theta, nll = L.profile_intervals(model, theta, nll, [0, 1, 2], level=ci_level)
    notes = []
    names = ("mep_max_uv", "i50_pct_mso", "slope_pct_mso", "sigma_ln")
    for k, name in enumerate(names):
        if theta[k] <= model.lower[k] + 1e-9 or theta[k] >= model.upper[k] - 1e-9:
            notes.append(f"{name} at its search limit")
    m_top = math.exp(theta[0] - float(np.logaddexp(0.0, (theta[1] - x.max()) / math.exp(theta[2]))))
    if m_top < 0.8 * math.exp(theta[0]):
        notes.append(f"plateau not reached: the highest intensity ({x.max():g} %MSO) gives "
                     f"{100 * m_top / math.exp(theta[0]):.0f} % of mep_max_uv, which is "
                     f"extrapolated")
    if unc_int < 3:
        notes.append(f"MEPs >= {floor:g} µV at only {unc_int} intensities")

    def interval(k, transform, low_open_value):
        if k not in cis:
            return None
        p = cis[k]
        lo = low_open_value if p.lower_open else transform(p.lower)
        hi = math.inf if p.upper_open else transform(p.upper)
        return (float(lo), float(hi))

    return RecruitmentFit(
        mep_max_uv=math.exp(theta[0]), i50_pct_mso=float(theta[1]),
        slope_pct_mso=math.exp(theta[2]), sigma_ln=math.exp(theta[3]),
        mep_max_uv_ci=interval(0, math.exp, 0.0), i50_pct_mso_ci=interval(1, float, 0.0),
        slope_pct_mso_ci=interval(2, math.exp, 0.0), **common, status="ok",
        notes=tuple(notes), theta=tuple(float(v) for v in theta))


def fit_recruitment_curves(table, *, by: Sequence[str] = ("hemisphere", "channel", "condition"),
                           floor_uv: float = FLOOR_UV, ci_level: float = 0.95, ci: bool = True):
    """Recruitment curves per group of a trial table (default: hemisphere, channel, condition).

    Parameters
    ----------
    table : pandas.DataFrame
        A trial table (``mepkit.TRIAL_COLUMNS``): ``intensity_pct_mso``, ``amplitude_uv``,
        ``rejected`` and the ``by`` columns.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, the parameters with their interval ends
        (``*_ci_low``, ``*_ci_high``), ``status``, ``message``, and the
        :class:`RecruitmentFit` itself in ``fit``.
    """
    from mepkit.analysis._table import grouped, results_frame

    rows = []
    for key, sub in grouped(table, by):
        fit = fit_recruitment(sub["intensity_pct_mso"].to_numpy(float),
                              sub["amplitude_uv"].to_numpy(float),
                              rejected=sub["rejected"].to_numpy(bool),
                              floor_uv=floor_uv, ci_level=ci_level, ci=ci)
        flat = {}
        for name in ("mep_max_uv", "i50_pct_mso", "slope_pct_mso"):
            c = getattr(fit, name + "_ci")
            flat[name] = getattr(fit, name)
            flat[name + "_ci_low"] = c[0] if c else None
            flat[name + "_ci_high"] = c[1] if c else None
        flat.update(sigma_ln=fit.sigma_ln, n_trials=fit.n_trials, status=fit.status,
                    message=fit.message or "; ".join(fit.notes), fit=fit)
        rows.append({**dict(zip(by, key)), **flat})
    return results_frame(rows, by)
