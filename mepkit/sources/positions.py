"""Neuronavigation: an LSL stream of coil positions, matched to pulse times.

A navigation system (or the virtual subject's amplifier, ``navigation=True``) publishes
the coil position as a numeric LSL stream whose channels include ``x_mm``, ``y_mm`` and
optionally ``z_mm`` (any further channels, e.g. a quaternion ``qw qx qy qz`` or a 4 × 4
pose, are recorded but not interpreted). :class:`PositionInlet` reads it without
blocking; :class:`PositionTrack` keeps the recent samples on the EMG clock and answers
"where was the coil at this pulse": the last sample at or before the pulse time, if it
is at most ``max_age_s`` old. Defaults and their reasoning: docs/methods.md,
"Neuronavigation positions".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mepkit.sources.lsl import StreamFormatError, StreamMeta, _InletBase

__all__ = ["PositionInlet", "PositionTrack", "PositionMatch", "POSITION_MAX_AGE_S",
           "POSITION_HISTORY_S", "POSITION_CHANNELS"]

#: A position sample older than this at the pulse (s) is not the coil's position then:
#: the tracker lags or lost the coil (reasoning: docs/methods.md).
POSITION_MAX_AGE_S = 0.25
#: Position history kept (s); a trial is matched when its measurement completes, a few
#: hundred ms after its pulse at most (late markers: the Pipeline's ``buffer_s``).
POSITION_HISTORY_S = 10.0
#: Channel labels read as the coil position (the first three found, in this order).
POSITION_CHANNELS = ("x_mm", "y_mm", "z_mm")

_NUMERIC = ("float32", "double64", "int8", "int16", "int32", "int64")
_ALIASES = {"x_mm": ("x_mm", "x", "pos_x", "position_x"),
            "y_mm": ("y_mm", "y", "pos_y", "position_y"),
            "z_mm": ("z_mm", "z", "pos_z", "position_z")}


def find_position_channels(meta: StreamMeta) -> tuple[int, int, int | None]:
    """Indices of the x, y (and z, or None) channels of a position stream.

    Labels ``x_mm``/``y_mm``/``z_mm`` (or ``x``/``y``/``z``, ``pos_x``...), case-insensitive.

    Raises
    ------
    StreamFormatError
        When the stream is not numeric or has no x and y channels.
    """
    if meta.channel_format not in _NUMERIC:
        raise StreamFormatError(f"position stream {meta.describe()} has channel format "
                                f"{meta.channel_format}; coil positions must be numeric")
    labels = [c.strip().lower() for c in meta.channel_labels]
    found: dict[str, int | None] = {}
    for key, names in _ALIASES.items():
        found[key] = next((labels.index(n) for n in names if n in labels), None)
    if found["x_mm"] is None or found["y_mm"] is None:
        raise StreamFormatError(f"position stream {meta.describe()} has no x_mm and y_mm "
                                f"channels; its channels are {meta.channel_labels}")
    return found["x_mm"], found["y_mm"], found["z_mm"]  # type: ignore[return-value]


class PositionInlet(_InletBase):
    """Non-blocking reader of a coil-position stream (regular or irregular rate).

    Parameters
    ----------
    info : pylsl.StreamInfo
        From `mepkit.sources.lsl.resolve_stream`.
    max_buflen_s : int
        Seconds liblsl buffers when mepkit falls behind.
    open_timeout_s : float
        Time allowed for the stream's full description.
    """

    def __init__(self, info: Any, *, max_buflen_s: int = 60, open_timeout_s: float = 5.0
                 ) -> None:
        super().__init__(info, max_buflen=max_buflen_s, recover=True,
                         open_timeout_s=open_timeout_s)
        try:
            self.ix, self.iy, self.iz = find_position_channels(self.meta)
        except Exception:
            self.close()
            raise
        self.n_samples = 0

    def pull(self, max_samples: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Samples available now: ``(samples (n, n_channels) float64, timestamps (n,))``
        on the position stream's clock."""
        values, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=max_samples)
        if not ts:
            return np.zeros((0, self.meta.n_channels)), np.zeros(0)
        x = np.asarray(values, dtype=np.float64).reshape(len(ts), self.meta.n_channels)
        self.n_samples += len(ts)
        return x, np.asarray(ts, dtype=np.float64)


@dataclass
class PositionMatch:
    """The coil position matched to one pulse (`PositionTrack.match`).

    ``x_mm``/``y_mm``/``z_mm`` are NaN when there is none; then ``problem`` says why
    (no sample yet, or the newest one before the pulse is ``age_s`` old).
    """

    x_mm: float
    y_mm: float
    z_mm: float
    age_s: float
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


class PositionTrack:
    """Recent coil positions on the EMG clock, for matching to pulses.

    Parameters
    ----------
    ix, iy : int
        Channels holding x and y (mm).
    iz : int or None
        Channel holding z (mm), if any.
    history_s : float
        Samples older than this before the newest one are dropped.
    """

    def __init__(self, ix: int, iy: int, iz: int | None = None,
                 history_s: float = POSITION_HISTORY_S) -> None:
        self.ix, self.iy, self.iz = ix, iy, iz
        self.history_s = float(history_s)
        self._t = np.zeros(0)
        self._xyz = np.zeros((0, 3))

    def add(self, samples: np.ndarray, times_s: np.ndarray) -> None:
        """Append samples ``(n, n_channels)`` with their times on the EMG clock."""
        if times_s.shape[0] == 0:
            return
        z = samples[:, self.iz] if self.iz is not None else np.full(times_s.shape[0], np.nan)
        xyz = np.column_stack([samples[:, self.ix], samples[:, self.iy], z])
        t = np.concatenate([self._t, times_s])
        xyz = np.concatenate([self._xyz, xyz])
        if t.shape[0] > 1 and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            t, xyz = t[order], xyz[order]
        keep = t >= t[-1] - self.history_s
        self._t, self._xyz = t[keep], xyz[keep]

    @property
    def newest_s(self) -> float:
        """Time of the newest sample (EMG clock), -inf before any."""
        return float(self._t[-1]) if self._t.shape[0] else -math.inf

    def match(self, time_s: float, max_age_s: float = POSITION_MAX_AGE_S) -> PositionMatch:
        """The last sample at or before ``time_s`` if at most ``max_age_s`` old.

        A sample with a NaN x or y (a tracker that lost the coil) counts as no sample.
        """
        i = int(np.searchsorted(self._t, time_s, side="right")) - 1
        while i >= 0 and not (math.isfinite(self._xyz[i, 0]) and math.isfinite(self._xyz[i, 1])):
            i -= 1
        if i < 0:
            return PositionMatch(math.nan, math.nan, math.nan, math.inf,
                                 "no position sample at or before the pulse")
        age = float(time_s - self._t[i])
        if not age <= max_age_s:
            return PositionMatch(math.nan, math.nan, math.nan, age,
                                 f"newest position before the pulse is {age * 1e3:.0f} ms old "
                                 f"(max {max_age_s * 1e3:.0f} ms)")
        x, y, z = (float(v) for v in self._xyz[i])
        return PositionMatch(x, y, z, age)
