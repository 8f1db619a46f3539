"""The type every offline source gives: an EMG stream with its pulse markers.

`mepkit.sources.xdf.read_xdf` and `mepkit.sources.replay.recording_from_record` both
return a :class:`Recording`; `mepkit.analyze.analyze_recording` replays one through the
Pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["Recording", "channel_index"]


@dataclass
class Recording:
    """An EMG stream with its pulse markers, ready to replay through a Pipeline.

    ``data`` is ``(n_samples, n_channels)`` in the stream's own units and dtype: an array,
    or for a record an array-like read from the file in row slices (``data[a:b]``). Close
    the Recording (or use it in a ``with`` block) to release the file it reads from.
    """

    path: str
    sfreq_hz: float
    data: Any
    timestamps: np.ndarray  # (n_samples,), s, EMG clock
    channel_labels: list[str]
    units: list[str]
    marker_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    marker_values: list[str] = field(default_factory=list)
    emg_stream: dict[str, Any] = field(default_factory=dict)
    marker_stream: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    #: Parameters stored with the recording (mepkit records), else None.
    params: Any = None
    #: An open file object the data are read from lazily (mepkit records), else None.
    source: Any = None
    #: How the recording's pulses were found when it was made (mepkit records):
    #: ``trigger_channel``, ``artifact_triggers``, ``marker_filter``; else empty.
    pulses: dict[str, Any] = field(default_factory=dict)
    #: The clock mapping stored with the recording (mepkit records made live), rows of
    #: (sample_index, time_s, rate_hz, timeline); None: fit it from the raw stamps.
    clock_rows: Any = None

    @property
    def duration_s(self) -> float:
        return float(self.timestamps[-1] - self.timestamps[0]) if len(self.timestamps) else 0.0

    @property
    def description(self) -> str:
        """The source stream's description as stored (XML for XDF)."""
        return str(self.emg_stream.get("xml", ""))

    def close(self) -> None:
        """Release the file the samples are read from (records); idempotent."""
        source, self.source = self.source, None
        if source is not None:
            source.close()

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def channel_index(labels: Sequence[str], channel: str | int | None) -> int | None:
    """Index of a channel given by label or by index (a TTL trigger channel).

    A string that is not a label but a whole number is an index, so ``--trigger-channel 2``
    works like ``trigger_channel=2``.

    Raises
    ------
    ValueError
        No such channel; the message lists the channels.
    """
    if channel is None:
        return None
    labels = [str(c) for c in labels]
    if isinstance(channel, str) and channel in labels:
        return labels.index(channel)
    try:
        index = int(channel) if not isinstance(channel, (bool, float)) else None
    except (TypeError, ValueError):
        index = None
    if index is not None and 0 <= index < len(labels):
        return index
    where = (f"index {channel} out of range 0..{len(labels) - 1}" if index is not None
             else f"{channel!r} not found")
    raise ValueError(f"trigger channel {where}; channels are {', '.join(labels)}")
