"""Recruitment (input-output) curve protocol: MEPs at spread intensities, in random blocks.

``RecruitmentProtocol(rmt_pct_mso=48)`` fires every level of ``levels_pct_rmt`` (default
90-150 % of the resting motor threshold in 10 % steps) ``n_per_level`` times, in
``n_per_level`` blocks that each hold every level once in a seeded random order, so slow
drifts of excitability do not line up with intensity. Intensities are rounded to
``resolution_pct_mso`` and bounded to 100 %MSO: levels that would need more are given at
100 %MSO, merged into one level, and `RecruitmentEstimate.note` says so.

The estimate reports per level the trials counted and rejected, the mean, median and SD
of the amplitudes, and how many reached the MEP criterion; ``intensities_pct_mso`` and
``amplitudes_uv`` hold every counted trial for a curve fit (`mepkit.analysis`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mepkit.protocols.base import (
    MAX_PCT_MSO,
    IntensityProtocol,
    ProtocolError,
    check_intensity,
    check_number,
    json_value,
)

__all__ = ["RecruitmentProtocol", "RecruitmentLevel", "RecruitmentEstimate",
           "DEFAULT_LEVELS_PCT_RMT"]

#: 90-150 % RMT in 10 % steps.
DEFAULT_LEVELS_PCT_RMT = (90.0, 100.0, 110.0, 120.0, 130.0, 140.0, 150.0)


@dataclass(frozen=True)
class RecruitmentLevel:
    """One intensity of the curve and what was measured there."""

    intensity_pct_mso: float
    #: The requested levels (% RMT) given at this intensity (several when clipped).
    pct_rmt: tuple[float, ...]
    n: int
    n_rejected: int
    mean_uv: float
    median_uv: float
    sd_uv: float
    n_meps: int

    def as_dict(self) -> dict[str, Any]:
        return {"intensity_pct_mso": self.intensity_pct_mso,
                "pct_rmt": [json_value(p) for p in self.pct_rmt],
                "n": self.n, "n_rejected": self.n_rejected,
                "mean_uv": json_value(self.mean_uv),
                "median_uv": json_value(self.median_uv),
                "sd_uv": json_value(self.sd_uv), "n_meps": self.n_meps}


@dataclass(frozen=True)
class RecruitmentEstimate:
    """Per-level data of a recruitment protocol (valid while it runs too)."""

    rmt_pct_mso: float
    levels: tuple[RecruitmentLevel, ...]
    n_pulses: int
    n_counted: int
    done: bool
    criterion_uv: float
    #: Clipped or merged levels, empty when every level was given as asked.
    note: str
    #: Every counted trial, in the order fired (for a curve fit).
    intensities_pct_mso: tuple[float, ...]
    amplitudes_uv: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"rmt_pct_mso": json_value(self.rmt_pct_mso),
                "levels": [lv.as_dict() for lv in self.levels], "n_pulses": self.n_pulses,
                "n_counted": self.n_counted, "done": self.done,
                "criterion_uv": self.criterion_uv, "note": self.note,
                "intensities_pct_mso": list(self.intensities_pct_mso),
                "amplitudes_uv": list(self.amplitudes_uv)}


class RecruitmentProtocol(IntensityProtocol):
    """MEPs at a spread of intensities in seeded random blocks (an input-output curve).

    Parameters
    ----------
    rmt_pct_mso : float, optional
        Resting motor threshold the levels are relative to. Needed unless
        ``intensities_pct_mso`` is given.
    levels_pct_rmt : sequence of float, optional
        Levels in % of ``rmt_pct_mso`` (default 90-150 in steps of 10).
    intensities_pct_mso : sequence of float, optional
        Levels in %MSO instead (not together with ``levels_pct_rmt``).
    n_per_level : int
        Trials per level (= number of blocks). Default 10.
    seed : int
        Seed of the block orders.
    resolution_pct_mso : float
        Intensities are rounded to multiples of this.
    criterion_uv : float
        Amplitude counted as an MEP in ``n_meps`` (default 50 µV).
    max_pulses : int, optional
        Limit on pulses fired, rejected ones included (default twice the trials
        planned): a session whose trials keep being rejected still ends.
    hemisphere, site, label : str
        Copied into every proposed stimulus.
    """

    name = "recruitment"

    def __init__(self, rmt_pct_mso: float | None = None, *,
                 levels_pct_rmt: tuple[float, ...] | None = None,
                 intensities_pct_mso: tuple[float, ...] | None = None,
                 n_per_level: int = 10, seed: int = 0, resolution_pct_mso: float = 1.0,
                 criterion_uv: float = 50.0, max_pulses: int | None = None,
                 hemisphere: str = "", site: str = "", label: str = "") -> None:
        self.n_per_level = check_number("n_per_level", n_per_level, low=1, integer=True)
        self.seed = check_number("seed", seed, low=0, integer=True)
        self.resolution_pct_mso = check_number("resolution_pct_mso", resolution_pct_mso,
                                               low=0.0, high=10.0, low_open=True)
        self.criterion_uv = check_number("criterion_uv", criterion_uv, low=0.0, low_open=True)
        self.rmt_pct_mso = math.nan if rmt_pct_mso is None else check_number(
            "rmt_pct_mso", rmt_pct_mso, low=0.0, high=MAX_PCT_MSO, low_open=True)
        if intensities_pct_mso is not None and levels_pct_rmt is not None:
            raise ProtocolError("give levels_pct_rmt or intensities_pct_mso, not both")
        r = self.resolution_pct_mso
        notes = []
        if intensities_pct_mso is not None:
            wanted = [check_intensity(x, "intensities_pct_mso") for x in
                      _sequence("intensities_pct_mso", intensities_pct_mso)]
            pct = [100.0 * x / self.rmt_pct_mso for x in wanted]  # NaN without an RMT
            names = [f"{x:g} %MSO" for x in wanted]
        else:
            if math.isnan(self.rmt_pct_mso):
                raise ProtocolError("recruitment needs rmt_pct_mso (the levels are % RMT), "
                                    "or intensities_pct_mso")
            pct = [check_number("levels_pct_rmt", p, low=0.0, low_open=True) for p in
                   _sequence("levels_pct_rmt", DEFAULT_LEVELS_PCT_RMT if levels_pct_rmt
                             is None else levels_pct_rmt)]
            wanted = [self.rmt_pct_mso * p / 100.0 for p in pct]
            names = [f"{p:g} % RMT" for p in pct]
        clipped = [(name, x) for name, x in zip(names, wanted) if x > MAX_PCT_MSO]
        if clipped:
            notes.append(", ".join(f"{name} ({x:.0f} %MSO)" for name, x in clipped)
                         + f" above the stimulator's maximum: given at {MAX_PCT_MSO:g} %MSO")
        levels: dict[float, list[int]] = {}
        for i, x in enumerate(wanted):
            levels.setdefault(float(min(round(x / r) * r, MAX_PCT_MSO)), []).append(i)
        merged = [v for v in levels.values() if len(v) > 1]
        if merged:
            notes.append("; ".join(" and ".join(names[i] for i in v) for v in merged)
                         + " fall on the same intensity: one level each")
        self.note = "; ".join(notes)
        self.intensities = tuple(sorted(levels))
        self._pct = {x: tuple(pct[i] for i in levels[x]) for x in self.intensities}
        rng = np.random.default_rng(self.seed)
        order = [self.intensities[i] for _ in range(self.n_per_level)
                 for i in rng.permutation(len(self.intensities))]
        self.schedule: tuple[float, ...] = tuple(order)
        super().__init__(max_pulses=2 * len(order) if max_pulses is None else max_pulses,
                         hemisphere=hemisphere, site=site, label=label)
        self._amps: list[tuple[float, float]] = []  # counted (intensity, amplitude)

    # ---------------------------------------------------------------- Protocol
    def _next(self) -> float:
        return self.schedule[len(self._amps)]

    def _check_observed(self, intensity: float) -> None:
        if not self._complete() and abs(intensity - self._next()) > 1e-6:
            raise ProtocolError(f"recruitment asks for {self._next():g} %MSO now; a trial at "
                                f"{intensity:g} %MSO does not fit its schedule")

    def _take(self, intensity: float, amplitude_uv: float) -> None:
        self._amps.append((intensity, amplitude_uv))

    def _complete(self) -> bool:
        return len(self._amps) >= len(self.schedule)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "rmt_pct_mso": json_value(self.rmt_pct_mso),
                "intensities_pct_mso": list(self.intensities), "n_per_level": self.n_per_level,
                "seed": self.seed, "resolution_pct_mso": self.resolution_pct_mso,
                "criterion_uv": self.criterion_uv, "note": self.note}

    @property
    def estimate(self) -> RecruitmentEstimate:
        if self.n_pulses == 0:
            raise ProtocolError("recruitment: no estimate yet: no pulse has been observed")
        x = np.array([a[0] for a in self._amps])
        y = np.array([a[1] for a in self._amps])
        rejected: dict[float, int] = {}
        for s in self.steps:
            if not s.counted:
                key = s.stimulus.intensity_pct_mso
                rejected[key] = rejected.get(key, 0) + 1
        levels = []
        for lv in self.intensities:
            a = y[x == lv]
            n = int(a.size)
            levels.append(RecruitmentLevel(
                intensity_pct_mso=lv, pct_rmt=self._pct[lv], n=n,
                n_rejected=rejected.get(lv, 0),
                mean_uv=float(a.mean()) if n else math.nan,
                median_uv=float(np.median(a)) if n else math.nan,
                sd_uv=float(a.std(ddof=1)) if n > 1 else math.nan,
                n_meps=int((a >= self.criterion_uv).sum())))
        return RecruitmentEstimate(
            rmt_pct_mso=self.rmt_pct_mso, levels=tuple(levels), n_pulses=self.n_pulses,
            n_counted=self.n_counted, done=self.done, criterion_uv=self.criterion_uv,
            note=self.note, intensities_pct_mso=tuple(float(v) for v in x),
            amplitudes_uv=tuple(float(v) for v in y))


def _sequence(name: str, value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ProtocolError(f"{name} must be a sequence of numbers, got {value!r}")
    out = list(value)
    if not out:
        raise ProtocolError(f"{name} must not be empty")
    return out
