"""The one shape every protocol has: propose a stimulus, observe its result, done, estimate.

A protocol is a state machine that knows nothing of streams, records or stimulators.
A runner (live: `mepkit.protocols.runner`; offline: a loop over a virtual subject)
asks it for the next `Stimulus`, fires it, measures the trial and feeds the result back
with `Protocol.observe_stimulus`. Every step is kept in `Protocol.steps` so a runner can
store it in the record's protocol tables.

Specialised protocols add the spelling of their own domain on top of this shape:
threshold hunters ``next_intensity()`` / ``observe(intensity_pct_mso, amplitude_uv,
rejected=False)``; spatial searches ``next_position()`` / ``observe(x_mm, y_mm,
amplitude_uv, rejected=False)``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Stimulus", "Step", "Protocol", "ProtocolError"]


class ProtocolError(ValueError):
    """A protocol was given something it cannot use (bad option, bad observation)."""


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
