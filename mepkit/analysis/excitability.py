"""Hemispheric excitability: the balance between the two motor cortices, from their trials.

From a trial table holding both hemispheres' trials (column ``hemisphere``: the hemisphere
stimulated, or for paired pulses the one that received the test pulse), per muscle:

* the resting motor threshold of each side (:func:`~mepkit.analysis.estimate_threshold`)
  and its recruitment curve (:func:`~mepkit.analysis.fit_recruitment`);
* ``rmt_ratio`` = RMT(affected) / RMT(unaffected);
* ``mep_ratio`` = MEP(affected) / MEP(unaffected) at matched intensity: the same %RMT of
  each side (default 120 %) and the same %MSO (default 120 % of the unaffected side's RMT),
  each MEP the median of that side's fitted recruitment curve at that intensity;
* laterality indices: ``mep`` = (U - A) / (U + A) of those MEPs at the same %MSO, and
  ``rmt`` = (A - U) / (A + U) of the thresholds; both are positive when the affected side
  is the less excitable one and lie within -1 … 1;
* ``ihi``: paired-pulse interhemispheric inhibition, the mean conditioned MEP over the mean
  test-alone MEP at the same test intensity (Ferbert et al. 1992), per test hemisphere and
  conditioning label.

Every ratio has a percentile bootstrap interval (trials resampled with replacement within
each side, each replicate refitted; seeded). Where one side has no MEPs the result is a
bound, never a division by zero: "no MEPs on the affected side up to 100 %MSO" and an RMT
ratio above 100 / RMT(unaffected). Definitions and sources: ``docs/methods.md``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from mepkit.analysis import _likelihood as L
from mepkit.analysis._checks import AnalysisError
from mepkit.analysis.recruitment import FLOOR_UV, RecruitmentFit, _json, fit_recruitment
from mepkit.analysis.thresholds import (CRITERION_UV, SPREAD_BOUNDS_PCT_MSO,
                                        ThresholdEstimate, estimate_threshold)

__all__ = ["hemispheric_excitability", "HemisphericExcitability", "Quantity", "split_channel",
           "SINGLE_PULSE_CONDITIONS", "IHI_CONDITION_PATTERN"]

HEMISPHERES = ("left", "right")
_HEMI_ALIASES = {"left": "left", "l": "left", "lh": "left", "right": "right", "r": "right",
                 "rh": "right"}
_HAND_TOKENS = {"r": "R", "rt": "R", "right": "R", "l": "L", "lt": "L", "left": "L"}
_HAND_OF = {"left": "R", "right": "L"}  # a hemisphere drives the opposite hand
#: Condition labels of single-pulse trials (thresholds, recruitment curves, IHI test alone).
SINGLE_PULSE_CONDITIONS = ("", "test", "ts", "single", "unconditioned", "sp", "baseline")
#: Condition labels of conditioned (paired-pulse IHI) trials: matched case-insensitively.
IHI_CONDITION_PATTERN = r"^(?:ihi|cs|paired|conditioned)"


def split_channel(name: str) -> tuple[str, str | None]:
    """Muscle and hand (``'R'``/``'L'``, or None) of a channel label.

    A token ``R``/``L``/``right``/``left`` (also ``rt``/``lt``) separated by ``_``, ``-``,
    ``.`` or a space, at the end or the start, names the hand.

    Examples
    --------
    >>> split_channel("FDI_R"), split_channel("L-APB"), split_channel("EMG1")
    (('FDI', 'R'), ('APB', 'L'), ('EMG1', None))
    """
    tokens = [t for t in re.split(r"[_\-\s.]+", str(name).strip()) if t]
    if len(tokens) >= 2:
        for i in (len(tokens) - 1, 0):
            hand = _HAND_TOKENS.get(tokens[i].lower())
            if hand:
                return "_".join(tokens[:i] + tokens[i + 1:]), hand
    return str(name), None


@dataclass(frozen=True)
class Quantity:
    """One number with its interval, or a bound when the trials allow no value.

    ``value`` and ``ci`` (at the result's level; open ends ``math.inf``/``-inf``), or
    ``lower_bound``/``upper_bound`` (the quantity is above/below it), with ``message``
    saying why.
    """

    value: float | None = None
    ci: tuple[float, float] | None = None
    lower_bound: float | None = None
    upper_bound: float | None = None
    message: str = ""
    n_boot: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, ci_key: str = "ci95") -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, ci_key: self.ci}
        if self.lower_bound is not None:
            out["lower_bound"] = self.lower_bound
        if self.upper_bound is not None:
            out["upper_bound"] = self.upper_bound
        if self.message:
            out["message"] = self.message
        out.update(self.details)
        return _json(out)


@dataclass(frozen=True)
class Side:
    """One hemisphere's measures for one muscle."""

    hemisphere: str
    channel: str
    rmt: ThresholdEstimate
    recruitment: RecruitmentFit
    x: np.ndarray = field(repr=False)
    a: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        r = self.rmt.as_dict()
        ci_key = next(k for k in r if k.startswith("ci"))
        rmt = {"value": r["value"], ci_key: r[ci_key], "status": r["status"]}
        for k in ("message", "lower_bound_pct_mso", "upper_bound_pct_mso", "notes",
                  "amplitude_fit", "spread_pct_mso", "n_trials", "n_mep"):
            if r.get(k) not in (None, "", []):
                rmt[k] = r[k]
        return {"rmt_pct_mso": rmt, "recruitment": self.recruitment.as_dict(),
                "n_trials": int(self.x.size)}


@dataclass(frozen=True)
class HemisphericExcitability:
    """The result of :func:`hemispheric_excitability`.

    Attributes
    ----------
    affected, unaffected : str
        The two roles: ratios are affected / unaffected. Without ``affected`` given,
        ``'left'`` takes the affected role (numerator) and ``'right'`` the other.
    sides : dict
        ``{hemisphere: {channel: Side}}``: RMT and recruitment curve per side and channel.
    muscles : dict
        ``{muscle: {"channels": {hemisphere: channel}, "rmt_ratio": Quantity,
        "mep_ratio": {"same_pct_rmt": Quantity, "same_pct_mso": Quantity},
        "laterality_index": {"mep": Quantity, "rmt": Quantity}}}``.
    ihi : dict
        ``{hemisphere: {channel: {condition: Quantity}}}``: paired-pulse IHI by test side.
    """

    affected: str
    unaffected: str
    affected_given: bool
    sides: dict[str, dict[str, Side]]
    muscles: dict[str, dict[str, Any]]
    ihi: dict[str, dict[str, dict[str, Quantity]]]
    settings: dict[str, Any]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (see ``docs/methods.md`` for every key)."""
        lvl = self.settings["ci_level"]
        ck = "ci95" if abs(lvl - 0.95) < 1e-9 else f"ci{lvl * 100:g}"

        def q(v):
            if isinstance(v, Quantity):
                return v.as_dict(ck)
            if isinstance(v, dict):
                return {k: q(x) for k, x in v.items()}
            return _json(v)

        return {
            "affected": self.affected if self.affected_given else None,
            "numerator": self.affected, "denominator": self.unaffected,
            "hemispheres": {h: {ch: s.as_dict() for ch, s in chans.items()}
                            for h, chans in self.sides.items()},
            "muscles": {m: q(v) for m, v in self.muscles.items()},
            "ihi": q(self.ihi),
            "settings": _json(self.settings),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------- input
def _hemisphere_column(t) -> np.ndarray:
    raw = t["hemisphere"].fillna("").astype(str).str.strip().str.lower()
    out = raw.map(lambda v: _HEMI_ALIASES.get(v, v))
    bad = sorted(set(out[(out != "") & ~out.isin(HEMISPHERES)]))
    if bad:
        raise AnalysisError(f"hemisphere must be 'left' or 'right', got {bad[:5]} in the "
                            f"hemisphere column (marker key 'hemisphere')")
    return out.to_numpy(object)


def _missing_message(mask, t, what: str, key: str) -> str:
    n = int(mask.sum())
    where = ""
    if "file" in t.columns:
        files = sorted(set(t.loc[mask, "file"].astype(str)))
        where = f" in {', '.join(files[:3])}" + (" ..." if len(files) > 3 else "")
    trials = t.loc[mask, "trial"].unique()[:5] if "trial" in t.columns else []
    first = f" (trial {', '.join(str(int(v)) for v in trials)}...)" if len(trials) else ""
    return (f"{n} of {len(t)} trial rows have no {what}{where}{first}: hemispheric excitability "
            f"needs the {what} of every trial (marker key '{key}')")


def _prepare(table):
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise AnalysisError(f"expected a pandas DataFrame trial table, got {type(table).__name__}")
    missing = [c for c in ("intensity_pct_mso", "hemisphere", "channel", "amplitude_uv")
               if c not in table.columns]
    if missing:
        raise AnalysisError(f"the trial table has no column(s) {', '.join(missing)}: "
                            f"hemispheric excitability needs the intensity and hemisphere of "
                            f"every trial (marker keys 'intensity' and 'hemisphere')")
    t = table.copy()
    if "rejected" not in t.columns:
        t["rejected"] = False
    t["rejected"] = t["rejected"].fillna(False).astype(bool)
    if "condition" not in t.columns:
        t["condition"] = ""
    t["condition"] = t["condition"].fillna("").astype(str).str.strip()
    t["channel"] = t["channel"].astype(str)
    if len(t) == 0:
        raise AnalysisError("the trial table is empty: no trials to analyse")
    used = ~t["rejected"].to_numpy(bool)
    no_int = used & ~np.isfinite(t["intensity_pct_mso"].to_numpy(float))
    hemi = _hemisphere_column(t)
    no_hemi = used & (hemi == "")
    if no_int.any() and no_hemi.any():
        raise AnalysisError(_missing_message(no_int | no_hemi, t, "intensity and hemisphere",
                                             "intensity', 'hemisphere"))
    if no_int.any():
        raise AnalysisError(_missing_message(no_int, t, "intensity", "intensity"))
    if no_hemi.any():
        raise AnalysisError(_missing_message(no_hemi, t, "hemisphere", "hemisphere"))
    t["hemisphere"] = hemi
    return t


def _pair_channels(t, channels) -> dict[str, dict[str, str]]:
    if channels is not None:
        out = {}
        for muscle, per in channels.items():
            per = {(_HEMI_ALIASES.get(str(h).lower(), h)): str(c) for h, c in dict(per).items()}
            bad = [h for h in per if h not in HEMISPHERES]
            if bad:
                raise AnalysisError(f"channels[{muscle!r}]: hemispheres must be 'left'/'right', "
                                    f"got {bad}")
            out[str(muscle)] = per
        return out
    present = {h: set(t.loc[t["hemisphere"] == h, "channel"]) for h in HEMISPHERES}
    out: dict[str, dict[str, str]] = {}
    for h in HEMISPHERES:
        for ch in sorted(present[h]):
            muscle, hand = split_channel(ch)
            if hand is None or hand == _HAND_OF[h]:
                out.setdefault(muscle, {})[h] = ch
    return out


# ---------------------------------------------------------------------------- bootstrap
def _boot_weights(rng, n: int, n_boot: int) -> np.ndarray:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def _boot_side(side: Side, rng, n_boot: int, criterion_uv: float, floor_uv: float,
               model: str):
    """Bootstrap replicates of one side: RMT (hit/miss fit) and curve parameters."""
    x, a = side.x, side.a
    n = x.size
    w = _boot_weights(rng, n, n_boot)
    rmt = np.full(n_boot, np.nan)
    if side.rmt.ok and side.rmt.theta is not None:
        hit = a >= criterion_uv
        bm = L.BinaryModel(x, hit, model, s_bounds=SPREAD_BOUNDS_PCT_MSO)
        th, _, _, _ = L.minimize(bm, np.repeat(np.array(side.rmt.theta)[None], n_boot, 0), w)
        k = w @ hit
        valid = (k > 0) & (k < n) & (th[:, 0] < bm.upper[0] - 1e-6)
        rmt = np.where(valid, th[:, 0], np.nan)
    curve = None
    if side.recruitment.ok and side.recruitment.theta is not None:
        cm = L.CurveModel(x, a, floor_uv)
        th, _, _, _ = L.minimize(cm, np.repeat(np.array(side.recruitment.theta)[None], n_boot, 0), w)
        valid = (w @ (~cm.cens)) >= 3
        th[~valid] = np.nan
        curve = (cm, th)
    return rmt, curve


def _median_at(curve, intensity) -> np.ndarray:
    """Replicates' median MEP at ``intensity`` (scalar or (B,) array)."""
    cm, th = curve
    ln_m, i50, ln_s = th[:, 0], th[:, 1], th[:, 2]
    with np.errstate(invalid="ignore"):  # NaN rows: replicates without a fit
        z = (i50 - np.asarray(intensity, float)) / np.exp(ln_s)
        return np.exp(ln_m - np.logaddexp(0.0, z))


def _percentile_ci(samples: np.ndarray, level: float, n_boot: int):
    ok = np.isfinite(samples)
    if ok.sum() < max(20, 0.5 * n_boot):
        return None, int(ok.sum())
    lo, hi = np.percentile(samples[ok], [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi)), int(ok.sum())


# ---------------------------------------------------------------------------- ratios
def _rmt_interval(est: ThresholdEstimate):
    """(point, lower bound, upper bound, message) of one side's RMT."""
    if est.ok:
        return est.threshold_pct_mso, None, None
    return None, est.lower_bound_pct_mso, est.upper_bound_pct_mso


def _rmt_ratio(sa: Side, su: Side, boot, level, n_boot, roles) -> tuple[Quantity, Quantity]:
    a_pt, a_lo, a_hi = _rmt_interval(sa.rmt)
    u_pt, u_lo, u_hi = _rmt_interval(su.rmt)
    ra, ru = roles
    if a_pt is not None and u_pt is not None:
        r = a_pt / u_pt
        ci = _mover_ratio(a_pt, sa.rmt.ci, u_pt, su.rmt.ci)
        li_ci = tuple((c - 1.0) / (c + 1.0) if math.isfinite(c) else 1.0 for c in ci)
        det = {"ci_method": "MOVER from the profile-likelihood intervals of both RMTs"}
        return (Quantity(r, ci, details=det), Quantity((r - 1.0) / (r + 1.0), li_ci, details=det))
    msgs = [m for m in (_side_msg(sa.rmt, ra), _side_msg(su.rmt, ru)) if m]
    lower = upper = None
    ci = None
    u_ci = su.rmt.ci
    a_ci = sa.rmt.ci
    if a_pt is None and u_pt is not None:
        if a_lo is not None:
            lower = a_lo / u_pt
            ci = (a_lo / u_ci[1] if u_ci and math.isfinite(u_ci[1]) else 0.0, math.inf)
        elif a_hi is not None:
            upper = a_hi / u_pt
            ci = (0.0, a_hi / u_ci[0] if u_ci and u_ci[0] > 0 else math.inf)
    elif u_pt is None and a_pt is not None:
        if u_lo is not None:
            upper = a_pt / u_lo
            ci = (0.0, a_ci[1] / u_lo if a_ci else math.inf)
        elif u_hi is not None and u_hi > 0:
            lower = a_pt / u_hi
            ci = (a_ci[0] / u_hi if a_ci else 0.0, math.inf)
    elif a_pt is None and u_pt is None:
        if a_lo is not None and u_hi:
            lower = a_lo / u_hi
        elif a_hi is not None and u_lo:
            upper = a_hi / u_lo
    base = "; ".join(msgs)

    def li(v):
        return None if v is None else (v - 1.0) / (v + 1.0)

    if lower is not None:
        msg, li_msg = (f"{base}: RMT ratio above {lower:.2f}",
                       f"{base}: RMT laterality index above {li(lower):.2f}")
    elif upper is not None:
        msg, li_msg = (f"{base}: RMT ratio below {upper:.2f}",
                       f"{base}: RMT laterality index below {li(upper):.2f}")
    else:
        msg = li_msg = f"{base}: no RMT ratio"
    li_ci = None if ci is None else (li(ci[0]), li(ci[1]) if math.isfinite(ci[1]) else 1.0)
    return (Quantity(None, ci, lower, upper, msg),
            Quantity(None, li_ci, li(lower), li(upper), li_msg))


def _mover_ratio(a, a_ci, u, u_ci) -> tuple[float, float]:
    """Interval of a / u from the intervals of a and u (MOVER on the log scale: Zou & Donner
    2008): each end combines the distances of the two log intervals' ends in quadrature."""
    la, lu = math.log(a), math.log(u)

    def log(v):
        return math.log(v) if v > 0 else -math.inf

    a_lo, a_hi = log(a_ci[0]), log(a_ci[1]) if math.isfinite(a_ci[1]) else math.inf
    u_lo, u_hi = log(u_ci[0]), log(u_ci[1]) if math.isfinite(u_ci[1]) else math.inf
    lo = la - lu - math.hypot(la - a_lo, u_hi - lu)
    hi = la - lu + math.hypot(a_hi - la, lu - u_lo)
    return (math.exp(lo) if math.isfinite(lo) else 0.0,
            math.exp(hi) if math.isfinite(hi) else math.inf)


def _side_msg(est: ThresholdEstimate, role: str) -> str:
    if est.ok:
        return ""
    if est.status == "no_mep":
        return f"no MEPs on the {role} side up to {est.lower_bound_pct_mso:g} %MSO"
    if est.status == "all_mep":
        return f"MEPs on the {role} side at every intensity from {est.upper_bound_pct_mso:g} %MSO"
    return f"{role} side: {est.message}"


def _mep_ratio_mso(sa, su, boot, i0, level, n_boot, floor_uv, roles):
    """MEP ratio and laterality index at the same %MSO ``i0``."""
    ra, ru = roles
    fa, fu = sa.recruitment, su.recruitment
    det = {"intensity_pct_mso": i0}
    if i0 is None:
        msg = "no common intensity: neither side has an RMT and no --matched-pct-mso was given"
        return Quantity(None, message=msg), Quantity(None, message=msg)
    if fa.ok and fu.ok:
        ma, mu = float(fa.predict(i0)), float(fu.predict(i0))
        det.update(affected_uv=ma, unaffected_uv=mu)
        notes = _extrapolation(sa, su, i0, i0, roles)
        if notes:
            det["note"] = notes
        sa_b, su_b = _median_at(boot["curve_a"], i0), _median_at(boot["curve_u"], i0)
        ci, nb = _percentile_ci(sa_b / su_b, level, n_boot)
        li_ci, _ = _percentile_ci((su_b - sa_b) / (su_b + sa_b), level, n_boot)
        return (Quantity(ma / mu, ci, n_boot=nb, details=det),
                Quantity((mu - ma) / (mu + ma), li_ci, n_boot=nb, details=det))
    if fa.status == "no_mep" and fu.ok and i0 <= fa.intensity_max_pct_mso + 1e-9:
        mu = float(fu.predict(i0))
        up = floor_uv / mu
        lo_li = (mu - floor_uv) / (mu + floor_uv)
        msg = (f"no MEPs on the {ra} side up to {fa.intensity_max_pct_mso:g} %MSO (none >= "
               f"{floor_uv:g} µV): MEP ratio at {i0:.1f} %MSO below {up:.3f}")
        det.update(unaffected_uv=mu)
        return (Quantity(None, (0.0, up), upper_bound=up, message=msg, details=det),
                Quantity(None, (lo_li, 1.0), lower_bound=lo_li,
                         message=f"{msg}; laterality index above {lo_li:.3f}", details=det))
    if fu.status == "no_mep" and fa.ok and i0 <= fu.intensity_max_pct_mso + 1e-9:
        ma = float(fa.predict(i0))
        lo = ma / floor_uv
        lo_li = (floor_uv - ma) / (floor_uv + ma)
        msg = (f"no MEPs on the {ru} side up to {fu.intensity_max_pct_mso:g} %MSO: MEP ratio "
               f"at {i0:.1f} %MSO above {lo:.2f}")
        det.update(affected_uv=ma)
        return (Quantity(None, (lo, math.inf), lower_bound=lo, message=msg, details=det),
                Quantity(None, (-1.0, lo_li), upper_bound=lo_li,
                         message=f"{msg}; laterality index below {lo_li:.3f}", details=det))
    msg = "; ".join(f"{role} side: {f.message}" for f, role in ((fa, ra), (fu, ru)) if not f.ok)
    if fa.status == "no_mep" and fu.status == "no_mep":
        msg = f"no MEPs on either side (up to {fa.intensity_max_pct_mso:g} / " \
              f"{fu.intensity_max_pct_mso:g} %MSO)"
    elif not msg:
        msg = f"the matched intensity {i0:.1f} %MSO lies above the intensities tested"
    return Quantity(None, message=msg, details=det), Quantity(None, message=msg, details=det)


def _extrapolation(sa, su, ia, iu, roles) -> str:
    out = []
    for s, i, role in ((sa, ia, roles[0]), (su, iu, roles[1])):
        if i > float(np.max(s.x)) + 1e-9:
            out.append(f"{role} side extrapolated to {i:.1f} %MSO (tested up to "
                       f"{np.max(s.x):g} %MSO)")
    return "; ".join(out)


def _mep_ratio_rmt(sa, su, boot, pct_rmt, level, n_boot, roles):
    ra, ru = roles
    k = pct_rmt / 100.0
    if not (sa.rmt.ok and su.rmt.ok):
        msg = "; ".join(m for m in (_side_msg(sa.rmt, ra), _side_msg(su.rmt, ru)) if m)
        return Quantity(None, message=f"{msg}: no MEP ratio at {pct_rmt:g} % RMT",
                        details={"pct_rmt": pct_rmt})
    ia, iu = k * sa.rmt.threshold_pct_mso, k * su.rmt.threshold_pct_mso
    det = {"pct_rmt": pct_rmt, "affected_pct_mso": ia, "unaffected_pct_mso": iu}
    if not (sa.recruitment.ok and su.recruitment.ok):
        msg = "; ".join(f"{role} side: {f.message}" for f, role in
                        ((sa.recruitment, ra), (su.recruitment, ru)) if not f.ok)
        return Quantity(None, message=f"{msg}: no MEP ratio at {pct_rmt:g} % RMT", details=det)
    ma, mu = float(sa.recruitment.predict(ia)), float(su.recruitment.predict(iu))
    det.update(affected_uv=ma, unaffected_uv=mu)
    note = _extrapolation(sa, su, ia, iu, roles)
    if note:
        det["note"] = note
    sa_b = _median_at(boot["curve_a"], k * boot["rmt_a"])
    su_b = _median_at(boot["curve_u"], k * boot["rmt_u"])
    ci, nb = _percentile_ci(sa_b / su_b, level, n_boot)
    return Quantity(ma / mu, ci, n_boot=nb, details=det)


# ---------------------------------------------------------------------------- IHI
def _matches(conditions, pattern):
    """Conditioned trials: a non-empty condition matching ``pattern``."""
    return conditions.map(lambda v: bool(v) and pattern.search(v) is not None).astype(bool)


def _ihi(t, hemi: str, channel: str, pattern, rng, n_boot: int, level: float,
         floor_uv: float) -> dict[str, Quantity]:
    rows = t[(t["hemisphere"] == hemi) & (t["channel"] == channel) & ~t["rejected"]]
    cond = rows["condition"]
    is_cond = _matches(cond, pattern)
    test = rows[cond.str.lower().isin(SINGLE_PULSE_CONDITIONS)]
    out = {}
    for label, grp in rows[is_cond].groupby("condition", sort=True):
        xc = grp["intensity_pct_mso"].to_numpy(float)
        ac = grp["amplitude_uv"].to_numpy(float)
        xt = test["intensity_pct_mso"].to_numpy(float)
        at = test["amplitude_uv"].to_numpy(float)
        levels = np.unique(np.round(xc, 1))
        det: dict[str, Any] = {"n_conditioned": int(ac.size),
                               "test_intensity_pct_mso": [float(v) for v in levels]}
        groups = []
        for lv in levels:
            sel_t = np.abs(xt - lv) <= 0.5
            n_c = int(np.sum(np.abs(xc - lv) <= 0.5))
            if not sel_t.any():
                msg = (f"no test-alone trials at {lv:g} %MSO to compare the {label!r} trials "
                       f"with")
                out[label] = Quantity(None, message=msg, details=det)
                break
            groups.append((n_c, at[sel_t]))
        else:
            det["n_test"] = int(sum(g.size for _, g in groups))
            w_c = np.array([n for n, _ in groups], float)
            test_mean = float(np.sum(w_c * [g.mean() for _, g in groups]) / w_c.sum())
            cond_mean = float(ac.mean())
            det.update(conditioned_mean_uv=cond_mean, test_mean_uv=test_mean)
            if test_mean < floor_uv:
                out[label] = Quantity(None, message=f"no test MEPs on the {hemi} side (mean "
                                      f"{test_mean:.0f} µV < {floor_uv:g} µV): IHI undefined",
                                      details=det)
                continue
            bc = _boot_weights(rng, ac.size, n_boot) @ ac / ac.size
            bt = np.zeros(n_boot)
            for n_c, g in groups:
                bt += n_c * (_boot_weights(rng, g.size, n_boot) @ g / g.size)
            bt /= w_c.sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                ci, nb = _percentile_ci(np.where(bt > 0, bc / bt, np.nan), level, n_boot)
            out[label] = Quantity(cond_mean / test_mean, ci, n_boot=nb, details=det)
    return out


# ---------------------------------------------------------------------------- main
def hemispheric_excitability(table, *, affected: str | None = None,
                             channels: Mapping[str, Mapping[str, str]] | None = None,
                             criterion_uv: float = CRITERION_UV, floor_uv: float = FLOOR_UV,
                             matched_pct_rmt: float = 120.0,
                             matched_pct_mso: float | None = None,
                             ihi_conditions: str = IHI_CONDITION_PATTERN,
                             n_boot: int = 1000, ci_level: float = 0.95, seed: int = 0,
                             model: str = "normal") -> HemisphericExcitability:
    """Excitability of both hemispheres and the balance between them.

    Parameters
    ----------
    table : pandas.DataFrame
        Trial table (``mepkit.TRIAL_COLUMNS``) with trials from both hemispheres:
        ``intensity_pct_mso`` and ``hemisphere`` ('left'/'right') on every trial that is
        not rejected, ``channel``, ``amplitude_uv``, ``condition``, ``rejected``.
    affected : {'left', 'right'}, optional
        The lesioned hemisphere. Ratios are affected / unaffected; without it, left / right.
    channels : mapping, optional
        ``{muscle: {'left': channel, 'right': channel}}``: the channel recording each
        muscle when each hemisphere is stimulated. Default: from the labels: a channel
        ending or starting in ``R``/``L`` (``FDI_R``) belongs to the hand driven by the
        opposite hemisphere; a label without a hand is used for both hemispheres.
    criterion_uv : float
        MEP criterion of the threshold (50 µV).
    floor_uv : float
        Amplitudes below this are no measurable MEP (30 µV).
    matched_pct_rmt : float
        The %RMT of each side at which MEPs are compared (120 %).
    matched_pct_mso : float, optional
        The %MSO at which both sides' MEPs are compared; default 120 % of the unaffected
        side's RMT (capped at 100 %MSO).
    ihi_conditions : str
        Regular expression (case-insensitive) of the ``condition`` labels of conditioned
        (paired-pulse) trials; single-pulse trials have a condition in
        ``SINGLE_PULSE_CONDITIONS`` (empty, 'test', ...). Other conditions are not used.
    n_boot : int
        Bootstrap replicates of the ratio intervals (1000).
    ci_level : float
        Confidence level (0.95).
    seed : int
        Seed of the bootstrap.
    model : {'normal', 'logistic'}
        Psychometric function of the thresholds.

    Returns
    -------
    HemisphericExcitability

    Raises
    ------
    AnalysisError
        Trials without an intensity or a hemisphere, unknown hemisphere names, bad options.
    """
    if affected is not None:
        a = _HEMI_ALIASES.get(str(affected).strip().lower())
        if a is None:
            raise AnalysisError(f"affected must be 'left' or 'right', got {affected!r}")
        affected = a
    if int(n_boot) < 50:
        raise AnalysisError(f"n_boot must be >= 50, got {n_boot!r}")
    n_boot = int(n_boot)
    L.z_crit(ci_level)
    if not matched_pct_rmt > 0:
        raise AnalysisError(f"matched_pct_rmt must be > 0, got {matched_pct_rmt!r}")
    if matched_pct_mso is not None and not 0 < matched_pct_mso <= 100:
        raise AnalysisError(f"matched_pct_mso must be within 0–100 %MSO, got {matched_pct_mso!r}")
    pattern = re.compile(ihi_conditions, re.IGNORECASE)
    t = _prepare(table)
    roles_h = (affected, "right" if affected == "left" else "left") if affected else ("left", "right")
    role_names = ("affected", "unaffected") if affected else ("left", "right")
    single = t["condition"].str.lower().isin(SINGLE_PULSE_CONDITIONS)
    used = t[single & ~t["rejected"]]
    pairs = _pair_channels(t[~t["rejected"]], channels)
    notes = []
    others = sorted(set(t.loc[~single & ~_matches(t["condition"], pattern), "condition"]))
    if others:
        notes.append(f"trials with condition(s) {others} are neither single-pulse nor "
                     f"conditioned (pattern {ihi_conditions!r}) and were not used")
    for h in HEMISPHERES:
        if not (t["hemisphere"] == h).any():
            notes.append(f"no trials from the {h} hemisphere")
    sides: dict[str, dict[str, Side]] = {h: {} for h in HEMISPHERES}
    for muscle, per in pairs.items():
        for h, ch in per.items():
            sub = used[(used["hemisphere"] == h) & (used["channel"] == ch)]
            x = sub["intensity_pct_mso"].to_numpy(float)
            amp = sub["amplitude_uv"].to_numpy(float)
            ok = np.isfinite(amp)
            x, amp = x[ok], amp[ok]
            est = estimate_threshold(x, amp, criterion_uv=criterion_uv, model=model,
                                     ci_level=ci_level, floor_uv=floor_uv)
            fit = fit_recruitment(x, amp, floor_uv=floor_uv, ci_level=ci_level)
            sides[h][ch] = Side(h, ch, est, fit, x, amp)
    muscles: dict[str, dict[str, Any]] = {}
    for mi, (muscle, per) in enumerate(sorted(pairs.items())):
        entry: dict[str, Any] = {"channels": dict(per)}
        muscles[muscle] = entry
        ha, hu = roles_h
        if ha not in per or hu not in per:
            miss = ha if ha not in per else hu
            msg = f"no {miss}-hemisphere channel for {muscle}: no ratios"
            for k in ("rmt_ratio",):
                entry[k] = Quantity(None, message=msg)
            entry["mep_ratio"] = {"same_pct_rmt": Quantity(None, message=msg),
                                  "same_pct_mso": Quantity(None, message=msg)}
            entry["laterality_index"] = {"mep": Quantity(None, message=msg),
                                         "rmt": Quantity(None, message=msg)}
            continue
        sa, su = sides[ha][per[ha]], sides[hu][per[hu]]
        if sa.x.size == 0 or su.x.size == 0:
            miss = role_names[0] if sa.x.size == 0 else role_names[1]
            msg = f"no single-pulse trials on the {miss} side for {muscle}: no ratios"
            entry["rmt_ratio"] = Quantity(None, message=msg)
            entry["mep_ratio"] = {"same_pct_rmt": Quantity(None, message=msg),
                                  "same_pct_mso": Quantity(None, message=msg)}
            entry["laterality_index"] = {"mep": Quantity(None, message=msg),
                                         "rmt": Quantity(None, message=msg)}
            continue
        rng = np.random.default_rng([int(seed), mi])
        rmt_a, curve_a = _boot_side(sa, rng, n_boot, criterion_uv, floor_uv, model)
        rmt_u, curve_u = _boot_side(su, rng, n_boot, criterion_uv, floor_uv, model)
        boot = {"rmt_a": rmt_a, "rmt_u": rmt_u, "curve_a": curve_a, "curve_u": curve_u}
        rmt_ratio, li_rmt = _rmt_ratio(sa, su, boot, ci_level, n_boot, role_names)
        if matched_pct_mso is not None:
            i0 = float(matched_pct_mso)
        elif su.rmt.ok:
            i0 = min(100.0, matched_pct_rmt / 100.0 * su.rmt.threshold_pct_mso)
        else:
            i0 = float(min(np.max(sa.x), np.max(su.x)))
        mep_mso, li_mep = _mep_ratio_mso(sa, su, boot, i0, ci_level, n_boot, floor_uv, role_names)
        entry["rmt_ratio"] = rmt_ratio
        entry["mep_ratio"] = {
            "same_pct_rmt": _mep_ratio_rmt(sa, su, boot, matched_pct_rmt, ci_level, n_boot,
                                           role_names),
            "same_pct_mso": mep_mso}
        entry["laterality_index"] = {"mep": li_mep, "rmt": li_rmt}
    ihi: dict[str, dict[str, dict[str, Quantity]]] = {}
    if _matches(t["condition"], pattern).any():
        for muscle, per in sorted(pairs.items()):
            for h, ch in per.items():
                rng = np.random.default_rng([int(seed), 1000 + len(ihi)])
                res = _ihi(t, h, ch, pattern, rng, n_boot, ci_level, floor_uv)
                if res:
                    ihi.setdefault(h, {})[ch] = res
    settings = {"criterion_uv": criterion_uv, "floor_uv": floor_uv,
                "matched_pct_rmt": matched_pct_rmt, "matched_pct_mso": matched_pct_mso,
                "ihi_conditions": ihi_conditions, "n_boot": n_boot, "ci_level": ci_level,
                "seed": seed, "model": model, "rmt_ci_method": "profile likelihood",
                "ratio_ci_method": "percentile bootstrap over trials"}
    return HemisphericExcitability(roles_h[0], roles_h[1], affected is not None,
                                   {h: v for h, v in sides.items() if v}, muscles, ihi,
                                   settings, tuple(notes))
