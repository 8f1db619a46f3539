"""Motor thresholds from any set of trials (blocks at fixed intensities, hunts, curves).

The threshold is the intensity at which an MEP of at least ``criterion_uv`` (50 µV peak to
peak: Rossini et al. 1994, 2015) occurs in half of the trials. mepkit estimates it by
maximum likelihood from every trial at once: the probability of an MEP is a cumulative
normal (default) or logistic function of intensity,

    P(A >= criterion | I) = F((I - t) / s),

and the threshold is its 50 % point ``t`` (Awiszus 2003; Wichmann & Hill 2001). The
interval is the profile-likelihood interval of ``t`` (Venzon & Moolgavkar 1988). A second
estimate uses the amplitudes themselves: the intensity at which the median of a Boltzmann
curve with log-normal variability (``recruitment.py``) equals the criterion, which is the
same point (P = 0.5 where the median is the criterion) and uses the size of every MEP, not
only hit or miss. Sources and defaults: ``docs/methods.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from mepkit.analysis import _likelihood as L
from mepkit.analysis._checks import AnalysisError, check_trials, intensity_range_text
from mepkit.analysis.recruitment import FLOOR_UV, _json, fit_curve_mle

__all__ = ["ThresholdEstimate", "estimate_threshold", "estimate_thresholds",
           "CRITERION_UV", "SPREAD_BOUNDS_PCT_MSO"]

#: Peak-to-peak amplitude (µV) that counts as an MEP for the resting motor threshold.
CRITERION_UV = 50.0
#: Search range of the spread ``s`` of the psychometric function (%MSO).
SPREAD_BOUNDS_PCT_MSO = (0.25, 50.0)


@dataclass(frozen=True)
class ThresholdEstimate:
    """A motor threshold estimated from trials.

    Attributes
    ----------
    threshold_pct_mso : float or None
        The 50 % point of P(MEP >= criterion) against intensity; ``None`` when the trials
        do not allow an estimate (``status`` says why, ``lower_bound_pct_mso`` /
        ``upper_bound_pct_mso`` what they do say).
    ci : (float, float) or None
        Profile-likelihood interval at ``ci_level``. The threshold may lie above
        100 %MSO (unreachable): an upper end the data do not bound is ``math.inf``
        (``None`` in ``as_dict``).
    spread_pct_mso : float or None
        Scale ``s`` of the fitted psychometric function (SD for the cumulative normal).
    amplitude_threshold_pct_mso, amplitude_ci : float or None, (float, float) or None
        The threshold from the amplitudes (where the fitted median MEP is the criterion).
    status : str
        ``'ok'``; ``'no_mep'`` (no MEP >= criterion in any trial: the threshold lies above
        the highest intensity tested); ``'all_mep'`` (an MEP in every trial: below the
        lowest); ``'single_intensity'`` (hits and misses, but all at one intensity);
        ``'above_range'`` (the likelihood peaks at the 100 %MSO limit); ``'no_trials'``.
    message : str
        The status in words, e.g. "no MEPs >= 50 µV up to 80 %MSO (20 trials)".
    lower_bound_pct_mso, upper_bound_pct_mso : float or None
        What the trials say when there is no estimate: threshold above / below this.
    notes : tuple of str
        Caveats of an 'ok' estimate (extrapolated beyond the intensities tested, ...).
    """

    threshold_pct_mso: float | None
    ci: tuple[float, float] | None
    spread_pct_mso: float | None
    amplitude_threshold_pct_mso: float | None
    amplitude_ci: tuple[float, float] | None
    criterion_uv: float
    n_trials: int
    n_mep: int
    n_intensities: int
    intensity_min_pct_mso: float | None
    intensity_max_pct_mso: float | None
    status: str
    message: str = ""
    lower_bound_pct_mso: float | None = None
    upper_bound_pct_mso: float | None = None
    notes: tuple[str, ...] = ()
    model: str = "normal"
    ci_level: float = 0.95
    ci_method: str = "profile likelihood"
    #: Hit/miss model coordinates at the MLE (t, ln s), for bootstraps.
    theta: tuple[float, ...] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"value", "ci95", "status", "message", ...}``."""
        ci_key = "ci95" if abs(self.ci_level - 0.95) < 1e-9 else f"ci{self.ci_level * 100:g}"
        out: dict[str, Any] = {"value": self.threshold_pct_mso, ci_key: self.ci,
                               "amplitude_fit": {"value": self.amplitude_threshold_pct_mso,
                                                 ci_key: self.amplitude_ci}}
        rest = asdict(self)
        for k in ("threshold_pct_mso", "ci", "amplitude_threshold_pct_mso", "amplitude_ci",
                  "theta"):
            rest.pop(k)
        out.update(rest)
        return _json(out)


def _hit_miss_start(model: L.BinaryModel) -> np.ndarray:
    xs = np.unique(model.x)
    ts = np.clip(np.concatenate([xs, (xs[:-1] + xs[1:]) / 2]), model.lower[0], model.upper[0])
    ss = np.log([1.0, 3.0, 8.0])
    tt, sg = np.meshgrid(ts, ss, indexing="ij")
    theta = np.stack([tt.ravel(), sg.ravel()], 1)
    f, _, _ = model.evaluate(theta, np.ones((theta.shape[0], model.x.size)))
    return theta[np.argsort(f)[:3]]


def fit_hit_miss(model: L.BinaryModel):
    """MLE (t, ln s) of the psychometric function; returns (theta, nll)."""
    th, f, _, _ = L.minimize(model, _hit_miss_start(model), np.ones(model.x.size))
    best = int(np.nanargmin(f))
    return th[best], float(f[best])


def estimate_threshold(intensity_pct_mso, amplitude_uv, *, rejected=None,
                       criterion_uv: float = CRITERION_UV, model: str = "normal",
                       ci_level: float = 0.95, amplitude_fit: bool = True,
                       floor_uv: float = FLOOR_UV) -> ThresholdEstimate:
    """Estimate the motor threshold from trials at any intensities.

    Parameters
    ----------
    intensity_pct_mso : array_like (n,)
        Intensity of each trial, 0–100 %MSO.
    amplitude_uv : array_like (n,)
        Peak-to-peak amplitude of each trial (µV; 0 = no MEP).
    rejected : array_like of bool (n,), optional
        Trials left out (their amplitude may be NaN).
    criterion_uv : float
        An MEP counts when its amplitude is at least this (default 50 µV; about 200 µV
        for the active motor threshold).
    model : {'normal', 'logistic'}
        The psychometric function ``F``.
    ci_level : float
        Confidence level of the intervals (default 0.95).
    amplitude_fit : bool
        Also estimate the threshold from the amplitudes (``amplitude_threshold_pct_mso``).
    floor_uv : float
        Floor of the amplitude fit: amplitudes below it are censored (see
        :func:`~mepkit.analysis.fit_recruitment`).

    Returns
    -------
    ThresholdEstimate
        Never raises for data that merely do not allow an estimate: ``status`` and
        ``message`` say what they do allow ("no MEPs >= 50 µV up to 80 %MSO").

    Raises
    ------
    AnalysisError
        Bad input: mismatched shapes, missing or out-of-range intensities, NaN or negative
        amplitudes on trials that are not rejected, a criterion that is not positive.

    Examples
    --------
    >>> x = [40, 40, 45, 45, 50, 50, 55, 55]
    >>> a = [10, 20, 30, 80, 40, 120, 300, 500]
    >>> est = estimate_threshold(x, a)
    >>> est.status, 40 < est.threshold_pct_mso < 55
    ('ok', True)
    """
    crit = float(criterion_uv)
    if not crit > 0:
        raise AnalysisError(f"criterion_uv must be > 0, got {criterion_uv!r}")
    if model not in ("normal", "logistic"):
        raise AnalysisError(f"model must be 'normal' or 'logistic', got {model!r}")
    L.z_crit(ci_level)
    x, a = check_trials(intensity_pct_mso, amplitude_uv, rejected)
    hit = a >= crit
    n, k = int(x.size), int(hit.sum())
    xs = np.unique(x)
    common = dict(criterion_uv=crit, n_trials=n, n_mep=k, n_intensities=int(xs.size),
                  intensity_min_pct_mso=float(x.min()) if n else None,
                  intensity_max_pct_mso=float(x.max()) if n else None,
                  model=model, ci_level=float(ci_level))
    none = dict(threshold_pct_mso=None, ci=None, spread_pct_mso=None,
                amplitude_threshold_pct_mso=None, amplitude_ci=None)
    if n == 0:
        return ThresholdEstimate(**none, **common, status="no_trials",
                                 message="no trials (all rejected or none given)")
    rng_text = intensity_range_text(x)
    if k == 0:
        return ThresholdEstimate(
            **none, **common, status="no_mep", lower_bound_pct_mso=float(x.max()),
            message=f"no MEPs >= {crit:g} µV up to {x.max():g} %MSO ({n} trials at {rng_text})")
    if k == n:
        return ThresholdEstimate(
            **none, **common, status="all_mep", upper_bound_pct_mso=float(x.min()),
            message=f"an MEP >= {crit:g} µV in every trial from {x.min():g} %MSO ({n} trials at "
                    f"{rng_text}): the threshold is below {x.min():g} %MSO")
    if xs.size == 1:
        frac = k / n
        bound = {"upper_bound_pct_mso": float(xs[0])} if frac >= 0.5 else \
            {"lower_bound_pct_mso": float(xs[0])}
        side = "at or below" if frac >= 0.5 else "above"
        return ThresholdEstimate(
            **none, **common, status="single_intensity", **bound,
            message=f"all {n} trials at {xs[0]:g} %MSO ({k} with an MEP >= {crit:g} µV): the "
                    f"threshold is probably {side} {xs[0]:g} %MSO; an estimate needs trials at "
                    f"two or more intensities")
    bm = L.BinaryModel(x, hit, model, s_bounds=SPREAD_BOUNDS_PCT_MSO)
    theta, nll = fit_hit_miss(bm)
    prof, theta, nll = L.profile_intervals(bm, theta, nll, [0], level=ci_level)
    p = prof[0]
    ci = (0.0 if p.lower_open else p.lower, math.inf if p.upper_open else p.upper)
    notes = []
    if x[~hit].max() < x[hit].min():
        notes.append("hits and misses are completely separated: the threshold lies between the "
                     "highest intensity without and the lowest with an MEP")
    t_hat = float(theta[0])
    if t_hat >= bm.upper[0] - 1e-6:
        return ThresholdEstimate(
            **none, **common, status="above_range", lower_bound_pct_mso=float(ci[0]),
            message=f"the likelihood peaks at the 100 %MSO limit: threshold above "
                    f"{ci[0]:.1f} %MSO ({k} of {n} trials with an MEP >= {crit:g} µV)",
            theta=tuple(theta))
    if t_hat > x.max() or t_hat < x.min():
        notes.append(f"extrapolated outside the intensities tested ({rng_text})")
    amp_t = amp_ci = None
    if amplitude_fit:
        amp_t, amp_ci, amp_note = _amplitude_threshold(x, a, crit, floor_uv, ci_level)
        if amp_note:
            notes.append(amp_note)
    return ThresholdEstimate(
        threshold_pct_mso=t_hat, ci=(float(ci[0]), float(ci[1])),
        spread_pct_mso=math.exp(theta[1]), amplitude_threshold_pct_mso=amp_t,
        amplitude_ci=amp_ci, **common, status="ok", notes=tuple(notes),
        theta=tuple(float(v) for v in theta))


def _amplitude_threshold(x, a, crit, floor_uv, ci_level):
    """Threshold from the amplitude fit: (value, ci, note)."""
    floor = float(floor_uv)
    if not 0 < floor < crit:
        return None, None, f"no amplitude fit: floor_uv ({floor:g}) must be within 0 and the " \
                           f"criterion ({crit:g} µV)"
    n_unc = int(np.sum(a >= floor))
    if np.unique(x).size < 3 or n_unc < 3 or x.size < 5:
        return None, None, "no amplitude fit: it needs 5 trials at 3 or more intensities"
    curve = L.CurveModel(x, a, floor)
    th, nll = fit_curve_mle(curve)
    m_max = math.exp(th[0])
    if m_max <= crit * 1.001:
        return None, None, "no amplitude fit: the fitted curve stays below the criterion"
    model = L.CurveModel(x, a, floor, threshold=True, criterion_uv=crit)
    s = math.exp(th[2])
    u = math.log(m_max / crit - 1.0)
    start = np.clip(np.array([th[1] - s * u, th[2], u, th[3]]), model.lower, model.upper)
    tt, f, _, _ = L.minimize(model, start[None], np.ones(x.size))
    prof, tt0, _ = L.profile_intervals(model, tt[0], float(f[0]), [0], level=ci_level)
    p = prof[0]
    if tt0[0] >= model.upper[0] - 1e-6:
        return None, None, "no amplitude fit: its threshold is above 100 %MSO"
    ci = (0.0 if p.lower_open else float(p.lower), math.inf if p.upper_open else float(p.upper))
    return float(tt0[0]), ci, ""


def estimate_thresholds(table, *, by: Sequence[str] = ("hemisphere", "channel", "condition"),
                        criterion_uv: float = CRITERION_UV, model: str = "normal",
                        ci_level: float = 0.95, amplitude_fit: bool = True,
                        floor_uv: float = FLOOR_UV):
    """Thresholds per group of a trial table (default: per hemisphere, channel and condition).

    Parameters
    ----------
    table : pandas.DataFrame
        A trial table (``mepkit.TRIAL_COLUMNS``); rejected trials are left out.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, ``threshold_pct_mso``, ``ci_low``,
        ``ci_high``, ``amplitude_threshold_pct_mso``, ``status``, ``message``, the bounds,
        and the :class:`ThresholdEstimate` in ``estimate``.
    """
    from mepkit.analysis._table import grouped, results_frame

    rows = []
    for key, sub in grouped(table, by):
        est = estimate_threshold(sub["intensity_pct_mso"].to_numpy(float),
                                 sub["amplitude_uv"].to_numpy(float),
                                 rejected=sub["rejected"].to_numpy(bool),
                                 criterion_uv=criterion_uv, model=model, ci_level=ci_level,
                                 amplitude_fit=amplitude_fit, floor_uv=floor_uv)
        rows.append({**dict(zip(by, key)),
                     "threshold_pct_mso": est.threshold_pct_mso,
                     "ci_low": est.ci[0] if est.ci else None,
                     "ci_high": est.ci[1] if est.ci else None,
                     "amplitude_threshold_pct_mso": est.amplitude_threshold_pct_mso,
                     "n_trials": est.n_trials, "n_mep": est.n_mep, "status": est.status,
                     "message": est.message or "; ".join(est.notes),
                     "lower_bound_pct_mso": est.lower_bound_pct_mso,
                     "upper_bound_pct_mso": est.upper_bound_pct_mso, "estimate": est})
    return results_frame(rows, by)
