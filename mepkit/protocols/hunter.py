"""What every threshold hunter shares: the criterion, the bounds, the estimate.

The methods are in `mepkit.protocols.staircase`, `mepkit.protocols.mlpest` and
`mepkit.protocols.bayes`; `mepkit.protocols.threshold.make_hunter` picks one by name.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from mepkit.protocols.base import (
    MAX_PCT_MSO,
    IntensityProtocol,
    ProtocolError,
    Stimulus,
    check_number,
    json_value,
)

__all__ = ["REST_CRITERION_UV", "ACTIVE_CRITERION_UV", "NO_THRESHOLD", "ThresholdEstimate",
           "ThresholdHunter", "AdaptiveHunter"]

#: Peak-to-peak criterion of the resting motor threshold (Rossini et al. 1994, 2015).
REST_CRITERION_UV = 50.0
#: Criterion of the active motor threshold during a slight contraction (Rossini et al.
#: 2015; Groppa et al. 2012: about 200 µV).
ACTIVE_CRITERION_UV = 200.0
NO_THRESHOLD = f"no threshold up to {MAX_PCT_MSO:g} %MSO"


# --------------------------------------------------------------------------- estimate
@dataclass(frozen=True)
class ThresholdEstimate:
    """The result of a hunt (valid while it runs too).

    Attributes
    ----------
    method : str
    threshold_pct_mso : float
        The threshold; NaN when none was found (``found`` False).
    ci_low_pct_mso, ci_high_pct_mso : float
        Its interval; NaN when there is none (and when no threshold was found).
    ci_level : float or None
        Probability of the interval (0.90: a 90 % credible or likelihood interval).
        None for a ``'bracket'``: the tested levels the threshold was placed between,
        which is not a probability statement.
    interval : str
        ``'credible'``, ``'likelihood'``, ``'bracket'`` or ``'none'``.
    n_pulses : int
        Pulses fired, rejected ones included.
    n_counted : int
        Pulses that counted (not rejected, amplitude measurable).
    found : bool
        A threshold within 0..100 %MSO was determined.
    done : bool
        The hunt has ended (its own stopping rule or ``max_pulses``).
    criterion_uv : float
    message : str
        One line for the operator ("threshold 47.3 %MSO (90 % CI 46.0-48.9) after 8
        pulses", "no threshold up to 100 %MSO", ...).
    details : mapping
        Method-specific numbers (slope, lower and upper threshold, ...).
    """

    method: str
    threshold_pct_mso: float
    ci_low_pct_mso: float
    ci_high_pct_mso: float
    ci_level: float | None
    interval: str
    n_pulses: int
    n_counted: int
    found: bool
    done: bool
    criterion_uv: float
    message: str
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: non-finite numbers become None, ``details`` are merged in."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            if key != "details":
                out[key] = json_value(getattr(self, key))
        for key, value in self.details.items():
            out.setdefault(key, json_value(value))
        return out


def _fmt(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "n/a"


# --------------------------------------------------------------------------- base
class ThresholdHunter(IntensityProtocol):
    """Base class of the hunters: the criterion, the interval level, the estimate.

    Subclasses implement `_next` (the next intensity), `_take` (one counted trial),
    `_finished` (the method's own stopping rule, checked after each counted trial) and
    `_result` (the fields of the estimate).

    Parameters (every hunter)
    -------------------------
    criterion_uv : float, optional
        Peak-to-peak amplitude that counts as an MEP. Default 50 µV, or 200 µV with
        ``active=True``.
    active : bool
        Hunt the active motor threshold (slight contraction of the target muscle).
    max_pulses : int, optional
        Hard limit on pulses fired (rejected ones included); the hunt ends there.
    ci_level : float
        Probability of the reported interval (methods with a probability interval).
    hemisphere, site, label : str
        Copied into every proposed `Stimulus` (for the runner and the record).
    """

    name = "threshold"
    #: Default ``max_pulses`` of this method.
    default_max_pulses = 100

    def __init__(self, *, criterion_uv: float | None = None, active: bool = False,
                 max_pulses: int | None = None, ci_level: float = 0.90,
                 hemisphere: str = "", site: str = "", label: str = "") -> None:
        super().__init__(max_pulses=self.default_max_pulses if max_pulses is None
                         else max_pulses, hemisphere=hemisphere, site=site, label=label)
        if not isinstance(active, (bool, np.bool_)):
            raise ProtocolError(f"active must be True or False, got {active!r}")
        self.active = bool(active)
        default = ACTIVE_CRITERION_UV if self.active else REST_CRITERION_UV
        self.criterion_uv = default if criterion_uv is None else check_number(
            "criterion_uv", criterion_uv, low=0.0, low_open=True)
        self.ci_level = check_number("ci_level", ci_level, low=0.0, high=0.999, low_open=True)
        self._stopped = False  # the method's own stopping rule has fired

    def _complete(self) -> bool:
        return self._stopped

    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        super()._update(stimulus, amplitude_uv)
        if self._finished():
            self._stopped = True

    @property
    def estimate(self) -> ThresholdEstimate:
        if self.n_pulses == 0:
            raise ProtocolError(f"{self.name}: no estimate yet: no pulse has been observed")
        base = dict(method=self.name, n_pulses=self.n_pulses, n_counted=self.n_counted,
                    done=self.done, criterion_uv=self.criterion_uv)
        if self.n_counted == 0:
            return ThresholdEstimate(
                threshold_pct_mso=math.nan, ci_low_pct_mso=math.nan, ci_high_pct_mso=math.nan,
                ci_level=None, interval="none", found=False,
                message=f"no counted trial yet ({self.n_pulses} rejected or not measurable)",
                **base)
        r = self._result()
        found = bool(r.pop("found"))
        thr = float(r.pop("threshold"))
        lo, hi = float(r.pop("ci_low")), float(r.pop("ci_high"))
        level, kind = r.pop("ci_level"), r.pop("interval")
        message = r.pop("message", "")
        if not found:
            thr = lo = hi = math.nan
            message = message or NO_THRESHOLD
        elif not message:
            what = "bracket" if kind == "bracket" else f"{100 * level:g} % CI"
            message = (f"threshold {thr:.1f} %MSO ({what} {_fmt(lo)}-{_fmt(hi)}) "
                       f"after {self.n_pulses} pulses")
        if self.stopped_at_limit:
            message += f"; stopped at max_pulses={self.max_pulses}"
        elif not self.done:
            message += " (hunt in progress)"
        return ThresholdEstimate(threshold_pct_mso=thr, ci_low_pct_mso=lo, ci_high_pct_mso=hi,
                                 ci_level=level, interval=kind, found=found, message=message,
                                 details=r, **base)

    def options(self) -> dict[str, Any]:
        return {"method": self.name, **super().options(), "criterion_uv": self.criterion_uv,
                "active": self.active, "ci_level": self.ci_level}

    def is_mep(self, amplitude_uv: float) -> bool:
        """Whether an amplitude meets the criterion."""
        return amplitude_uv >= self.criterion_uv

    # ---------------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def _finished(self) -> bool:
        """The method's own stopping rule (checked after every counted trial)."""

    @abc.abstractmethod
    def _result(self) -> dict[str, Any]:
        """``found``, ``threshold``, ``ci_low``, ``ci_high``, ``ci_level``, ``interval``,
        optionally ``message``; any other key goes into `ThresholdEstimate.details`."""


class AdaptiveHunter(ThresholdHunter):
    """A hunter that may propose any intensity (not fixed levels): it rounds its choice to
    ``resolution_pct_mso`` (stimulators take whole %MSO) and learns from any intensity
    actually given."""

    def __init__(self, *, resolution_pct_mso: float = 1.0, **common: Any) -> None:
        super().__init__(**common)
        self.resolution_pct_mso = check_number("resolution_pct_mso", resolution_pct_mso,
                                               low=0.0, high=10.0, low_open=True)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "resolution_pct_mso": self.resolution_pct_mso}

    def _round(self, intensity: float) -> float:
        r = self.resolution_pct_mso
        return round(intensity / r) * r
