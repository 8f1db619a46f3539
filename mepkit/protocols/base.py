"""The one shape every protocol has: propose a stimulus, observe its result, done, estimate.

A protocol is a state machine that knows nothing of streams, records or stimulators.
A runner (live: `mepkit.protocols.runner`; offline: a loop over a virtual subject)
asks it for the next `Stimulus`, fires it, measures the trial and feeds the result back
with `Protocol.observe_stimulus`. Every step is kept in `Protocol.steps` so a runner can
store it in the record's protocol tables.

Specialised protocols add the spelling of their own domain on top of this shape:
protocols that vary only the intensity (`IntensityProtocol`: threshold hunters,
recruitment curves) ``next_intensity()`` / ``observe(intensity_pct_mso, amplitude_uv,
rejected=False)`` with a ``max_pulses`` limit; spatial searches ``next_position()`` /
``observe(x_mm, y_mm, amplitude_uv, rejected=False)``. `check_intensity` and
`check_number` validate what they are given with errors that name the value.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mepkit.errors import MepkitError

__all__ = ["Stimulus", "Step", "Protocol", "IntensityProtocol", "ProtocolError", "MAX_PCT_MSO",
           "check_intensity", "check_number", "json_value"]

#: The stimulator's maximum output: every intensity is within 0..MAX_PCT_MSO.
MAX_PCT_MSO = 100.0


class ProtocolError(MepkitError, ValueError):
    """A protocol was given something it cannot use (bad option, bad observation)."""


def check_intensity(value: Any, name: str = "intensity_pct_mso") -> float:
    """``value`` as a float within 0..100 %MSO, or a `ProtocolError` that says what is wrong."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} must be a number of %MSO, got {value!r}") from None
    if not 0.0 <= x <= MAX_PCT_MSO:  # also catches NaN
        raise ProtocolError(f"{name} must be within 0..{MAX_PCT_MSO:g} %MSO, got {value!r}")
    return x


def check_number(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, integer: bool = False) -> Any:
    """A protocol option as a finite number within [low, high] (``(low, high]`` with
    ``low_open``), an int with ``integer``; else a `ProtocolError` naming the option."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x):
        raise ProtocolError(f"{name} must be a finite number, got {value!r}")
    if integer and x != int(x):
        raise ProtocolError(f"{name} must be a whole number, got {value!r}")
    if (x <= low if low_open else x < low) or x > high:
        raise ProtocolError(f"{name} must be within {'(' if low_open else '['}{low:g}, "
                            f"{high:g}], got {value!r}")
    return int(x) if integer else x


def json_value(value: Any) -> Any:
    """``value`` as plain JSON data for an estimate's ``as_dict()``: NaN and infinities
    become None, numpy scalars Python numbers; anything else is returned as it is."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass(frozen=True)
class Stimulus:
    """What a protocol asks to be fired next.

    Fields left at their defaults are not part of the request (NaN position: the coil
    stays where it is).
    """

    intensity_pct_mso: float
    x_mm: float = math.nan
    y_mm: float = math.nan
    z_mm: float = math.nan
    hemisphere: str = ""
    site: str = ""
    condition: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "intensity_pct_mso", check_intensity(self.intensity_pct_mso))

    def marker_fields(self) -> dict[str, Any]:
        """The JSON marker keys (see `mepkit.markers`) of this stimulus, unset ones left out."""
        out: dict[str, Any] = {"intensity": float(self.intensity_pct_mso)}
        for key in ("x_mm", "y_mm", "z_mm"):
            value = getattr(self, key)
            if math.isfinite(value):
                out[key] = float(value)
        for key in ("hemisphere", "site", "condition", "label"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


@dataclass(frozen=True)
class Step:
    """One observed stimulus: what was asked, what was measured, and whether it counted."""

    index: int
    stimulus: Stimulus
    amplitude_uv: float
    rejected: bool
    counted: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = {"step": self.index, **asdict(self.stimulus), "amplitude_uv": self.amplitude_uv,
             "rejected": self.rejected, "counted": self.counted, "note": self.note}
        return d


class Protocol(abc.ABC):
    """Base class of every protocol (threshold hunters, recruitment, mapping, hotspot).

    Subclasses implement `propose`, `_update`, `done` and `estimate`. The base class
    keeps the history (`steps`), refuses observations after `done`, and makes a rejected
    trial not count (the same stimulus is proposed again).
    """

    #: Short name used in records and reports (for example ``"ml-pest"``).
    name: str = "protocol"

    def __init__(self) -> None:
        self.steps: list[Step] = []

    @abc.abstractmethod
    def propose(self) -> Stimulus:
        """The next stimulus to fire. Raises `ProtocolError` when `done`."""

    @property
    @abc.abstractmethod
    def done(self) -> bool:
        """True when the protocol needs no more stimuli."""

    @property
    @abc.abstractmethod
    def estimate(self) -> Any:
        """The current result (an object with ``as_dict()``); valid before `done` too,
        raising `ProtocolError` when nothing has been observed yet."""

    @abc.abstractmethod
    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        """Take one counted observation (amplitude is finite, trial not rejected)."""

    def options(self) -> dict[str, Any]:
        """The protocol's settings, for the record."""
        return {}

    @property
    def n_pulses(self) -> int:
        """Pulses fired so far, rejected ones included."""
        return len(self.steps)

    @property
    def n_counted(self) -> int:
        return sum(s.counted for s in self.steps)

    def observe_stimulus(self, stimulus: Stimulus, amplitude_uv: float, *,
                         rejected: bool = False) -> Step:
        """Feed back the measured result of ``stimulus``.

        A rejected trial, or one whose amplitude is not a finite number (NaN: not
        measurable), is kept in `steps` but does not count: the same stimulus is
        proposed again.
        """
        if self.done:
            raise ProtocolError(f"{self.name}: observation after the protocol is done")
        try:
            amp = float(amplitude_uv)
        except (TypeError, ValueError):
            raise ProtocolError(f"{self.name}: amplitude_uv must be a number, "
                                f"got {amplitude_uv!r}") from None
        counted = not rejected and math.isfinite(amp)
        note = "" if counted else ("rejected" if rejected else "amplitude is not finite")
        if counted and amp < 0:
            raise ProtocolError(f"{self.name}: amplitude_uv must be >= 0 (peak-to-peak), got {amp}")
        step = Step(len(self.steps), stimulus, amp, bool(rejected), counted, note)
        self.steps.append(step)
        if counted:
            self._update(stimulus, amp)
        return step


class IntensityProtocol(Protocol):
    """A protocol that varies only the intensity at one site (threshold hunts, recruitment).

    It adds the spelling ``next_intensity()`` / ``observe(intensity_pct_mso, amplitude_uv,
    rejected=False)`` and a hard limit ``max_pulses`` on pulses fired (rejected ones
    included), so a session whose trials keep being rejected still ends. Subclasses
    implement `_next` (the next intensity, %MSO), `_take` (one counted trial),
    `_complete` (the protocol's own end) and `estimate`; `_check_observed` may refuse an
    observation at an intensity the protocol cannot use.
    """

    def __init__(self, *, max_pulses: int, hemisphere: str = "", site: str = "",
                 label: str = "") -> None:
        super().__init__()
        self.max_pulses = check_number("max_pulses", max_pulses, low=1, integer=True)
        for key, value in (("hemisphere", hemisphere), ("site", site), ("label", label)):
            if not isinstance(value, str):
                raise ProtocolError(f"{key} must be a string, got {value!r}")
        self.hemisphere, self.site, self.label = hemisphere, site, label

    def next_intensity(self) -> float:
        """The intensity (%MSO, within 0..100) to fire next."""
        return self.propose().intensity_pct_mso

    def observe(self, intensity_pct_mso: float, amplitude_uv: float,
                rejected: bool = False) -> Step:
        """Take the measured peak-to-peak amplitude (µV) of a pulse at ``intensity_pct_mso``.

        A rejected trial, or a NaN amplitude (not measurable), does not count: the same
        intensity is offered again. Returns the `Step` kept in `steps`.
        """
        intensity = check_intensity(intensity_pct_mso)
        if self.done:  # said before _check_observed can object to the intensity
            raise ProtocolError(f"{self.name}: observation after the protocol is done")
        self._check_observed(intensity)
        return self.observe_stimulus(self._stimulus(intensity), amplitude_uv, rejected=rejected)

    def propose(self) -> Stimulus:
        if self.done:
            raise ProtocolError(f"{self.name}: the protocol is done; read .estimate")
        return self._stimulus(min(max(float(self._next()), 0.0), MAX_PCT_MSO))

    @property
    def done(self) -> bool:
        return self._complete() or self.n_pulses >= self.max_pulses

    @property
    def stopped_at_limit(self) -> bool:
        """Ended by ``max_pulses`` before its own end."""
        return self.n_pulses >= self.max_pulses and not self._complete()

    def options(self) -> dict[str, Any]:
        return {"max_pulses": self.max_pulses, "hemisphere": self.hemisphere,
                "site": self.site, "label": self.label}

    def _stimulus(self, intensity: float) -> Stimulus:
        return Stimulus(intensity, hemisphere=self.hemisphere, site=self.site, label=self.label)

    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        self._take(stimulus.intensity_pct_mso, amplitude_uv)

    def _check_observed(self, intensity: float) -> None:
        """Refuse an observation at an intensity the protocol cannot use (default: any)."""

    @abc.abstractmethod
    def _next(self) -> float:
        """The next intensity (%MSO); clipped to 0..100 by `propose`."""

    @abc.abstractmethod
    def _take(self, intensity: float, amplitude_uv: float) -> None:
        """One counted trial."""

    @abc.abstractmethod
    def _complete(self) -> bool:
        """The protocol's own end (not counting ``max_pulses``)."""
