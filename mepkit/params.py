"""Measurement parameters: one frozen, JSON-serialisable object.

Every default is documented with its source in ``docs/methods.md``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Params", "TRIAL_COLUMNS", "TRIAL_COLUMN_KINDS", "LIVE_TRIAL_COLUMN_KINDS",
           "REJECT_REASONS", "ONSET_METHODS"]

#: The trial table (one row per trial and EMG channel): each column, in order, and its kind
#: (``float64``, ``int64``, ``bool`` or ``text``). Tables, records and the row builder
#: (`mepkit.pipeline.trial_columns`) all take their columns from here.
TRIAL_COLUMN_KINDS: dict[str, str] = {
    "file": "text",
    "trial": "int64",
    "channel": "text",
    "stim_time_s": "float64",
    "label": "text",
    "intensity_pct_mso": "float64",
    "x_mm": "float64",
    "y_mm": "float64",
    "z_mm": "float64",
    "site": "text",
    "hemisphere": "text",
    "condition": "text",
    "amplitude_uv": "float64",
    "latency_ms": "float64",
    "onset_ambiguous": "bool",
    "area_uv_ms": "float64",
    "background_rms_uv": "float64",
    "peak_time_ms": "float64",
    "detected": "bool",
    "rejected": "bool",
    "reject_reason": "text",
}
#: Names of the trial-table columns, in order.
TRIAL_COLUMNS: tuple[str, ...] = tuple(TRIAL_COLUMN_KINDS)
#: Columns a live session adds: the timestamp of the last sample a trial's measurement
#: needed and the moment (same clock) its result was available.
LIVE_TRIAL_COLUMN_KINDS: dict[str, str] = {"last_sample_s": "float64", "available_s": "float64"}

#: Values of ``reject_reason`` besides the empty string; a trial's kernel reject code is its
#: reason's index here plus one (0: kept). The first four are decided by the feature kernel,
#: in this order of priority; ``late`` by the Pipeline, for a trial it does not measure.
REJECT_REASONS: tuple[str, ...] = ("invalid", "gap", "clipped", "background", "late")

#: Values of ``Params.onset_method`` (in the order of the kernel's codes).
ONSET_METHODS: tuple[str, ...] = ("threshold", "hodges", "tkeo", "slope")


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
        Onset threshold as a multiple of the background RMS (the crossing every onset
        method starts from).
    onset_method : str
        How the onset latency is found (``docs/methods.md``, "Onset methods"):
        ``"threshold"`` (crossing of ``onset_sd`` x RMS walked back to the start of
        the rise), ``"hodges"`` (Hodges & Bui 1996 sliding window), ``"tkeo"``
        (Teager-Kaiser energy, Li et al. 2007; Solnik et al. 2010) or ``"slope"``
        (tangent at the steepest point of the rise). All four run; an onset where
        they disagree is flagged (``onset_ambiguous``).
    line_freq_hz : float, None or "auto"
        Mains frequency (50 or 60). Removed by a pre-stimulus sinusoid fit from
        each epoch and by a notch on the continuous monitor. ``None`` disables.
        ``"auto"`` (default) decides 50 Hz, 60 Hz or none from the background
        spectrum (``mepkit.dsp.mains``).
    line_harmonics : int
        Number of mains harmonics (including the fundamental) removed.
    lowpass_hz : float or None
        Causal low-pass applied to each epoch (2nd-order Butterworth); skipped
        when at or above 0.45 × the sampling rate.
    monitor_band_hz : (float, float)
        Band-pass of the continuous background monitor (the background EMG RMS that
        ``mepkit record`` shows live in its status line).
    notch_q : float
        Quality factor of the monitor's mains notches.
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
    onset_method: str = "threshold"
    line_freq_hz: float | str | None = "auto"
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
        if self.onset_method not in ONSET_METHODS:
            raise ValueError(f"onset_method must be one of {ONSET_METHODS}, got "
                             f"{self.onset_method!r}")
        if isinstance(self.line_freq_hz, str):
            text = self.line_freq_hz.strip().lower()
            if text not in ("auto", "none"):
                try:
                    text = float(text)
                except ValueError:
                    raise ValueError("line_freq_hz must be a frequency, None or 'auto', got "
                                     f"{self.line_freq_hz!r}") from None
            object.__setattr__(self, "line_freq_hz", None if text == "none" else text)
        if self.line_freq_hz is not None and self.line_freq_hz != "auto":
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
