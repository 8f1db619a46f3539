"""Maximum-likelihood PEST threshold hunting with a fixed relative spread (Awiszus 2003)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtri

from mepkit.protocols.base import (
    MAX_PCT_MSO,
    ProtocolError,
    check_intensity,
    check_number,
)
from mepkit.protocols.hunter import NO_THRESHOLD, AdaptiveHunter

__all__ = ["MLPestHunter"]


class MLPestHunter(AdaptiveHunter):
    """Maximum-likelihood PEST with a fixed relative spread (Awiszus 2003).

    Model: P(MEP >= criterion | I) = Phi((I - t) / (spread * t)), one parameter ``t``.
    The log-likelihood on a 0.05 %MSO grid starts with two assumed trials (an MEP at
    100 %MSO, none at 0 %MSO) so that a maximum exists from the first pulse; every
    pulse goes to the maximum-likelihood threshold, or to the middle of the maximum
    when it is a plateau (a bisection while only MEPs or only failures have been seen).
    The hunt ends after ``n_trials`` counted trials, or after ``ceiling_misses``
    failures in a row at 100 %MSO ("no threshold up to 100 %MSO"). The interval is the
    likelihood-ratio interval at ``ci_level``.
    """

    name = "ml-pest"
    default_max_pulses = 60
    _GRID = np.arange(0.5, 130.0 + 1e-9, 0.05)

    def __init__(self, *, n_trials: int = 20, spread: float = 0.07,
                 start_pct_mso: float | None = None, ceiling_misses: int = 5,
                 **common: Any) -> None:
        super().__init__(**common)
        self.n_trials = check_number("n_trials", n_trials, low=1, integer=True)
        if self.n_trials > self.max_pulses:
            raise ProtocolError(f"n_trials ({self.n_trials}) cannot exceed max_pulses "
                                f"({self.max_pulses})")
        self.spread = check_number("spread", spread, low=0.0, high=1.0, low_open=True)
        self.start_pct_mso = None if start_pct_mso is None else check_intensity(
            start_pct_mso, "start_pct_mso")
        self.ceiling_misses = check_number("ceiling_misses", ceiling_misses, low=1, integer=True)
        t = self._GRID
        self._loglik = self._loglik_of(t, MAX_PCT_MSO, True) + self._loglik_of(t, 0.0, False)
        self._n_hits = 0
        self._ceiling_run = 0

    def options(self) -> dict[str, Any]:
        return {**super().options(), "n_trials": self.n_trials, "spread": self.spread,
                "start_pct_mso": self.start_pct_mso, "ceiling_misses": self.ceiling_misses}

    def _loglik_of(self, t: np.ndarray, x: float, hit: bool) -> np.ndarray:
        z = (x - t) / (self.spread * t)
        return log_ndtr(z if hit else -z)

    def _ml(self) -> float:
        """The maximum-likelihood threshold: the middle of the maximum when it is a plateau."""
        ll = self._loglik
        top = np.flatnonzero(ll >= ll.max() - 1e-6)
        return 0.5 * float(self._GRID[top[0]] + self._GRID[top[-1]])

    def _next(self) -> float:
        if self.n_counted == 0 and self.start_pct_mso is not None:
            return self.start_pct_mso
        return self._round(self._ml())

    def _take(self, intensity: float, amplitude_uv: float) -> None:
        hit = self.is_mep(amplitude_uv)
        self._loglik = self._loglik + self._loglik_of(self._GRID, intensity, hit)
        self._n_hits += hit
        self._ceiling_run = self._ceiling_run + 1 if (intensity >= MAX_PCT_MSO and not hit) else 0

    def _finished(self) -> bool:
        return self.n_counted >= self.n_trials or self._ceiling_run >= self.ceiling_misses

    def _result(self) -> dict[str, Any]:
        est = self._ml()
        ll = self._loglik
        drop = 0.5 * _chi2_1_quantile(self.ci_level)
        inside = np.flatnonzero(ll >= ll.max() - drop)
        t = self._GRID
        lo, hi = float(t[inside[0]]), float(t[inside[-1]])
        found = self._n_hits > 0 and est <= MAX_PCT_MSO and \
            self._ceiling_run < self.ceiling_misses
        msg = ""
        if not found:
            msg = NO_THRESHOLD + (f": no MEP >= {self.criterion_uv:g} µV in "
                                  f"{self.n_counted} counted pulses" if not self._n_hits else "")
        return {"found": found, "threshold": est, "ci_low": lo, "ci_high": hi,
                "ci_level": self.ci_level, "interval": "likelihood", "message": msg,
                "n_meps": self._n_hits}


def _chi2_1_quantile(p: float) -> float:
    """Quantile of chi-square with 1 degree of freedom: the square of a normal quantile."""
    return float(ndtri(0.5 + 0.5 * p)) ** 2
