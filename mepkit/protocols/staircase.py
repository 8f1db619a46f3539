"""Threshold hunting by counting MEPs at fixed levels: Rossini-Rothwell and Mills-Nithi."""

from __future__ import annotations

import abc
import math
from typing import Any

from mepkit.protocols.base import (
    MAX_PCT_MSO,
    ProtocolError,
    check_intensity,
    check_number,
)
from mepkit.protocols.hunter import NO_THRESHOLD, ThresholdHunter

__all__ = ["RossiniRothwellHunter", "MillsNithiHunter"]


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else min(a, b)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else max(a, b)


class _LevelHunter(ThresholdHunter):
    """A hunter that tests one intensity level at a time with up to ``n`` trials.

    A level *passes* when ``k`` of its ``n`` trials reach the criterion; testing stops as
    soon as the outcome is certain (``k`` hits, or ``n - k + 1`` misses), which gives the
    same pass or fail as giving all ``n``. Trials must be given at the proposed level.
    """

    def __init__(self, *, start_pct_mso: float = 30.0, search_step_pct_mso: float = 5.0,
                 step_pct_mso: float = 1.0, trials_per_level: int = 10, **common: Any) -> None:
        super().__init__(**common)
        self.start_pct_mso = check_intensity(start_pct_mso, "start_pct_mso")
        self.search_step_pct_mso = check_number("search_step_pct_mso", search_step_pct_mso,
                                                low=0.0, high=MAX_PCT_MSO, low_open=True)
        self.step_pct_mso = check_number("step_pct_mso", step_pct_mso, low=0.0,
                                         high=MAX_PCT_MSO, low_open=True)
        self.trials_per_level = check_number("trials_per_level", trials_per_level, low=1,
                                             integer=True)
        self._phase = "search"
        self._level = self.start_pct_mso
        self._hits = 0
        self._misses = 0
        self._tested: dict[float, tuple[int, int]] = {}  # level -> (hits, misses), finished
        self._outcome = ""  # why the procedure ended without a threshold

    def options(self) -> dict[str, Any]:
        return {**super().options(), "start_pct_mso": self.start_pct_mso,
                "search_step_pct_mso": self.search_step_pct_mso,
                "step_pct_mso": self.step_pct_mso, "trials_per_level": self.trials_per_level}

    def _next(self) -> float:
        return self._level

    def _check_observed(self, intensity: float) -> None:
        if abs(intensity - self._level) > 1e-6:
            raise ProtocolError(
                f"{self.name} is testing {self._level:g} %MSO; a trial at {intensity:g} %MSO "
                "cannot count for it (fire the intensity next_intensity() gives)")

    def _take(self, intensity: float, amplitude_uv: float) -> None:
        if self.is_mep(amplitude_uv):
            self._hits += 1
        else:
            self._misses += 1
        verdict = self._verdict()
        if verdict is not None:
            self._tested[self._level] = (self._hits, self._misses)
            self._hits = self._misses = 0
            self._advance(verdict)

    def _decide(self, k: int) -> bool | None:
        """Pass (True) / fail (False) of "at least k of n", once certain; None while open."""
        if self._hits >= k:
            return True
        if self._misses >= self.trials_per_level - k + 1:
            return False
        return None

    def _move(self, level: float) -> None:
        self._level = float(min(max(round(level, 6), 0.0), MAX_PCT_MSO))

    def _finished(self) -> bool:
        return self._stopped  # set by _stop as the levels are decided

    def _stop(self, outcome: str = "") -> None:
        self._outcome = outcome
        self._stopped = True

    @abc.abstractmethod
    def _verdict(self) -> bool | None:
        """The current level's pass/fail once decided (None: keep testing it)."""

    @abc.abstractmethod
    def _advance(self, passed: bool) -> None:
        """Move on after the current level was decided."""

    def _levels(self) -> dict[str, Any]:
        return {"levels": {f"{lv:g}": {"hits": h, "misses": m}
                           for lv, (h, m) in sorted(self._tested.items())}}


class RossiniRothwellHunter(_LevelHunter):
    """IFCN relative-frequency method: >= criterion in at least 5 of 10 trials.

    Search: one pulse per level from ``start_pct_mso`` upwards in ``search_step_pct_mso``
    steps until a pulse reaches the criterion; that level is tested fully (at least
    ``min_hits`` of ``trials_per_level``), going up by the search step while it fails.
    Descent: from the first passing level down in ``step_pct_mso`` steps until a level
    fails. With a step above 1 %MSO, the 1 %MSO level just above the failing one is
    tested last. The threshold is the lowest passing level; the bracket is
    [highest failing level, threshold].
    """

    name = "rossini-rothwell"
    default_max_pulses = 200

    def __init__(self, *, min_hits: int = 5, **options: Any) -> None:
        super().__init__(**options)
        self.min_hits = check_number("min_hits", min_hits, low=1, high=self.trials_per_level,
                                     integer=True)
        # phases: search -> confirm -> descend [-> refine]
        self._lowest_pass = math.nan
        self._highest_fail = math.nan

    def options(self) -> dict[str, Any]:
        return {**super().options(), "min_hits": self.min_hits}

    def _verdict(self) -> bool | None:
        if self._phase == "search":
            if self._hits or self._level >= MAX_PCT_MSO:
                # the first MEP (its trial counts), or the ceiling: test this level fully
                self._phase = "confirm"
            else:
                return False
        return self._decide(self.min_hits)

    def _advance(self, passed: bool) -> None:
        level = self._level
        if self._phase == "search":  # one pulse without an MEP: a step up
            del self._tested[level]  # a single pulse is not a test of the level
            self._move(level + self.search_step_pct_mso)
            return
        while True:
            if passed:
                self._lowest_pass = _nanmin(self._lowest_pass, level)
                nxt = level - self.step_pct_mso
                if self._phase == "refine" or nxt < 0:
                    return self._stop("")
                self._phase = "descend"
            else:
                self._highest_fail = _nanmax(self._highest_fail, level)
                if self._phase == "confirm":  # no passing level yet: full tests upwards
                    if level >= MAX_PCT_MSO:
                        return self._stop("none")
                    self._move(level + self.search_step_pct_mso)
                    return
                nxt = level + 1.0
                if not (self._phase == "descend" and self.step_pct_mso > 1.0
                        and nxt < self._lowest_pass):
                    return self._stop("")
                self._phase = "refine"
            self._move(nxt)
            known = self._tested.get(self._level)
            if known is None:
                return
            # a level already tested (a failed confirmation below the first pass): reuse it
            level, passed = self._level, known[0] >= self.min_hits

    def _result(self) -> dict[str, Any]:
        found = self._stopped and self._outcome != "none" and math.isfinite(self._lowest_pass)
        msg = ""
        if self._outcome == "none":
            msg = (f"{NO_THRESHOLD}: fewer than {self.min_hits} of {self.trials_per_level} "
                   f"MEPs >= {self.criterion_uv:g} µV at {MAX_PCT_MSO:g} %MSO")
        elif not self._stopped:
            msg = ("procedure not finished" + (
                f" (lowest level passing so far {self._lowest_pass:g} %MSO)"
                if math.isfinite(self._lowest_pass) else ""))
        return {"found": found, "threshold": self._lowest_pass, "ci_low": self._highest_fail,
                "ci_high": self._lowest_pass, "ci_level": None, "interval": "bracket",
                "message": msg, **self._levels()}


class MillsNithiHunter(_LevelHunter):
    """Two-threshold method (Mills & Nithi 1997).

    Search: one pulse per level from ``start_pct_mso`` upwards in ``search_step_pct_mso``
    steps until a pulse reaches the criterion. Lower threshold: from there down in
    ``step_pct_mso`` steps; a level with any MEP is left at once, the first level with
    no MEP in ``trials_per_level`` trials is the lower threshold. Upper threshold: from
    the lower threshold up in ``step_pct_mso`` steps; a level with any trial below the
    criterion is left at once, the first with all ``trials_per_level`` MEPs is the upper
    threshold. Threshold = (lower + upper) / 2; the bracket is [lower, upper].
    """

    name = "mills-nithi"
    default_max_pulses = 200

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # phases: search -> lower -> upper
        self.lower_pct_mso = math.nan
        self.upper_pct_mso = math.nan

    def _verdict(self) -> bool | None:
        if self._phase == "search":
            if self._hits:
                return True
            if self._level < MAX_PCT_MSO:
                return False
            self._phase = "lower"  # the ceiling without an MEP yet: test it fully
        if self._phase == "lower":  # "has an MEP" (pass) once one is seen
            return self._decide(1)
        return self._decide(self.trials_per_level)  # upper: all n, fails at the first miss

    def _advance(self, passed: bool) -> None:
        level = self._level
        if self._phase == "search":  # one pulse
            del self._tested[level]
            if passed:  # the first MEP: look for the lower threshold below it
                self._phase = "lower"
                if level - self.step_pct_mso < 0:
                    self.lower_pct_mso = 0.0
                    return self._start_upper(0.0)
                self._move(level - self.step_pct_mso)
            else:
                self._move(level + self.search_step_pct_mso)
            return
        if self._phase == "lower":
            if not passed:  # no MEP in n trials
                if level >= MAX_PCT_MSO:
                    return self._stop("none")
                self.lower_pct_mso = level
                return self._start_upper(level)
            if level - self.step_pct_mso < 0:
                self.lower_pct_mso = 0.0
                return self._start_upper(0.0)
            self._move(level - self.step_pct_mso)
            return
        # upper
        if passed:
            self.upper_pct_mso = level
            self._stop()
        elif level >= MAX_PCT_MSO:
            self._stop("upper")
        else:
            self._move(level + self.step_pct_mso)

    def _start_upper(self, lower: float) -> None:
        self._phase = "upper"
        self._move(min(lower + self.step_pct_mso, MAX_PCT_MSO))

    def _result(self) -> dict[str, Any]:
        lo, hi = self.lower_pct_mso, self.upper_pct_mso
        found = math.isfinite(lo) and math.isfinite(hi)
        msg = ""
        if self._outcome == "none":
            msg = f"{NO_THRESHOLD}: no MEP >= {self.criterion_uv:g} µV in " \
                  f"{self.trials_per_level} pulses at {MAX_PCT_MSO:g} %MSO"
        elif self._outcome == "upper":
            msg = (f"{NO_THRESHOLD}: the upper threshold ({self.trials_per_level} of "
                   f"{self.trials_per_level} MEPs) is above {MAX_PCT_MSO:g} %MSO "
                   f"(lower threshold {lo:g} %MSO)")
        elif not found:
            msg = "procedure not finished" + (
                f" (lower threshold {lo:g} %MSO)" if math.isfinite(lo) else "")
        return {"found": found, "threshold": 0.5 * (lo + hi), "ci_low": lo, "ci_high": hi,
                "ci_level": None, "interval": "bracket",
                "message": msg, "lower_threshold_pct_mso": lo, "upper_threshold_pct_mso": hi,
                **self._levels()}
