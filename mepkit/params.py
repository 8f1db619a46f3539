"""Measurement parameters: one frozen, JSON-serialisable object.

Every default is documented with its source in ``docs/methods.md``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Params", "TRIAL_COLUMNS", "REJECT_REASONS"]

#: Columns of the trial table (one row per trial and EMG channel), in order.
TRIAL_COLUMNS: tuple[str, ...] = (
    "file",
    "trial",
    "channel",
    "stim_time_s",
    "label",
    "intensity_pct_mso",
    "x_mm",
    "y_mm",
    "site",
    "hemisphere",
    "condition",
    "amplitude_uv",
    "latency_ms",
    "area_uv_ms",
    "background_rms_uv",
    "peak_time_ms",
    "detected",
    "rejected",
    "reject_reason",
)

#: Allowed values of ``reject_reason`` besides the empty string, in priority order.
REJECT_REASONS: tuple[str, ...] = ("invalid", "gap", "clipped", "background")


def _pair(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers (start, stop), got {value!r}") from None
    if not lo < hi:
        raise ValueError(f"{name} must have start < stop, got {value!r}")
    return (lo, hi)


@dataclass(frozen=True)
class Params:
    """How each trial is measured. Times in ms relative to the stimulus.

    Parameters
    ----------
    response_window_ms : (float, float)
        Where the MEP is searched and measured.
    background_window_ms : (float, float)
        Pre-stimulus window for background EMG (RMS) and baseline/line-noise fit.
    artifact_window_ms : (float, float)
        Samples replaced by a straight line to remove the stimulus artifact.
    detection_threshold_uv : float
        Peak-to-peak amplitude at or above which an MEP counts as present.
    background_limit_uv : float
        A trial whose pre-stimulus background RMS exceeds this is rejected.
    onset_sd : float
        Onset threshold as a multiple of the background RMS.
    line_freq_hz : float or None
        Mains frequency (50 or 60). Removed by a pre-stimulus sinusoid fit from
        each epoch and by a notch on the continuous monitor. ``None`` disables.
    line_harmonics : int
        Number of mains harmonics (including the fundamental) removed.
    lowpass_hz : float or None
        Causal low-pass applied to each epoch (2nd-order Butterworth); skipped
        when at or above 0.45 × the sampling rate.
    monitor_band_hz : (float, float)
        Band-pass of the continuous display/background-monitor filter.
    notch_q : float
        Quality factor of the monitor notch.
    gap_tolerance_ms : float
        Stamps later than the stream's fitted clock by more than this (plus half a
        sample), for good, mean samples are missing (a gap; earlier by as much: a clock
        reset); see `mepkit.sources.clock`. On the fitted clock, a step longer than one
        sample period plus this inside an epoch rejects the trial (``gap``).
    clip_run : int
        Consecutive samples stuck at the window's extreme that mark clipping.
    ttl_threshold : float
        Level (raw units of the trigger channel) whose upward crossing is a pulse.
    refractory_ms : float
        Minimum time between two detected pulses (TTL and artifact detection).
    artifact_step_uv : float
        Sample-to-sample jump that marks a stimulus artifact (artifact triggers).
    """

    response_window_ms: tuple[float, float] = (15.0, 50.0)
    background_window_ms: tuple[float, float] = (-105.0, -5.0)
    artifact_window_ms: tuple[float, float] = (-1.0, 6.0)
    detection_threshold_uv: float = 50.0
    background_limit_uv: float = 20.0
    onset_sd: float = 5.0
    line_freq_hz: float | None = 50.0
    line_harmonics: int = 3
    lowpass_hz: float | None = 2000.0
    monitor_band_hz: tuple[float, float] = (20.0, 2000.0)
    notch_q: float = 10.0
    gap_tolerance_ms: float = 2.0
    clip_run: int = 4
    ttl_threshold: float = 0.5
    refractory_ms: float = 100.0
    artifact_step_uv: float = 2000.0

    def __post_init__(self) -> None:
        for name in ("response_window_ms", "background_window_ms", "artifact_window_ms",
                     "monitor_band_hz"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        if self.background_window_ms[1] > 0:
            raise ValueError(
                f"background_window_ms must end at or before the stimulus (0 ms), "
                f"got {self.background_window_ms!r}")
        if self.response_window_ms[0] < 0:
            raise ValueError(
                f"response_window_ms must start after the stimulus, got {self.response_window_ms!r}")
        for name in ("detection_threshold_uv", "background_limit_uv", "onset_sd",
                     "notch_q", "gap_tolerance_ms", "refractory_ms", "artifact_step_uv"):
            value = float(getattr(self, name))
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if self.line_freq_hz is not None:
            object.__setattr__(self, "line_freq_hz", float(self.line_freq_hz))
            if self.line_freq_hz <= 0:
                raise ValueError(f"line_freq_hz must be > 0 or None, got {self.line_freq_hz!r}")
        if self.lowpass_hz is not None:
            object.__setattr__(self, "lowpass_hz", float(self.lowpass_hz))
            if self.lowpass_hz <= 0:
                raise ValueError(f"lowpass_hz must be > 0 or None, got {self.lowpass_hz!r}")
        if int(self.line_harmonics) < 1:
            raise ValueError(f"line_harmonics must be >= 1, got {self.line_harmonics!r}")
        object.__setattr__(self, "line_harmonics", int(self.line_harmonics))
        if int(self.clip_run) < 2:
            raise ValueError(f"clip_run must be >= 2, got {self.clip_run!r}")
        object.__setattr__(self, "clip_run", int(self.clip_run))
        object.__setattr__(self, "ttl_threshold", float(self.ttl_threshold))

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Params":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "Params":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "Params":
        """Return a copy with some fields changed (validated)."""
        return self.from_dict({**self.to_dict(), **changes})

    @property
    def pre_ms(self) -> float:
        """Pre-roll needed before the stimulus for an epoch."""
        return -min(self.background_window_ms[0], self.artifact_window_ms[0], 0.0)

    @property
    def post_ms(self) -> float:
        """Time after the stimulus at which the trial's window is complete."""
        return max(self.response_window_ms[1], self.artifact_window_ms[1])
