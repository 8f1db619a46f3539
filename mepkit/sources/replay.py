"""Replay of mepkit records: a record's raw EMG and markers as a Recording.

Samples are read lazily in chunks by ``analyze_recording`` (an h5py dataset slices like
an array), so an hour of 16-channel EMG never has to fit in memory at once.
"""

from __future__ import annotations

import os

import numpy as np

from mepkit.errors import FileFormatError, StreamNotFoundError
from mepkit.sources.recording import Recording

__all__ = ["recording_from_record", "pick_emg_stream"]


def pick_emg_stream(record, name: str | None = None):
    """The record's EMG stream: by name, else the stream of type EMG, else the only stream."""
    streams = record.streams
    listing = ", ".join(f"{n!r} (type {s.type!r})" for n, s in streams.items()) or "none"
    if name is not None:
        if name not in streams:
            raise StreamNotFoundError(f"{record.path}: no stream named {name!r}; streams are "
                                      f"{listing}")
        return streams[name]
    emg = [s for s in streams.values() if s.type.lower() == "emg"]
    if len(emg) == 1:
        return emg[0]
    if not emg and len(streams) == 1:
        return next(iter(streams.values()))
    if not streams:
        raise FileFormatError(f"{record.path}: the record has no raw stream to analyse")
    raise StreamNotFoundError(f"{record.path}: choose the EMG stream with --emg-stream; streams "
                              f"are {listing}")


def recording_from_record(path: str | os.PathLike, *, emg_stream: str | None = None,
                          record=None) -> Recording:
    """Open a record (finished, live or crashed) for replay through the Pipeline.

    ``Recording.data`` reads row slices from the file on demand, in the stream's stored
    units and dtype; the record stays open as ``Recording.source`` until the Recording is
    closed (``with recording_from_record(path) as rec: ...``).
    """
    from mepkit.records import open_record

    rec = record if record is not None else open_record(path)
    try:
        return _recording(rec, emg_stream)
    except BaseException:
        if record is None:
            rec.close()
        raise


def _recording(rec, emg_stream: str | None) -> Recording:
    stream = pick_emg_stream(rec, emg_stream)
    if stream.n_samples == 0:
        raise FileFormatError(f"{rec.path}: stream {stream.name!r} has no samples")
    if not (np.isfinite(stream.nominal_srate_hz) and stream.nominal_srate_hz > 0):
        raise FileFormatError(f"{rec.path}: stream {stream.name!r} has no regular sampling rate")
    times = np.asarray(rec.markers.times, dtype=np.float64)
    return Recording(
        path=rec.path, sfreq_hz=stream.nominal_srate_hz, data=_LazyRows(stream),
        timestamps=np.asarray(stream.timestamps, dtype=np.float64),
        channel_labels=list(stream.channel_labels), units=list(stream.units),
        marker_times=times, marker_values=[str(v) for v in rec.markers.values],
        emg_stream={"name": stream.name, "type": stream.type, "source_id": stream.source_id,
                    "nominal_srate": stream.nominal_srate_hz,
                    "channel_count": stream.n_channels, "n_samples": stream.n_samples},
        marker_stream={"name": rec.marker_stream} if len(times) else None,
        warnings=list(rec.warnings), params=rec.params, source=rec, clock_rows=stream.clock_rows,
        pulses={k: rec.session[k] for k in ("trigger_channel", "artifact_triggers",
                                             "marker_filter") if rec.session.get(k)},
    )


class _LazyRows:
    """Row slices of a record stream, read from the file on demand."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.shape = (stream.n_samples, stream.n_channels)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            data, _ = self._stream.read(key.start or 0, key.stop)
            return data
        return self._stream.data[key]

    def __array__(self, dtype=None, copy=None):
        arr = self._stream.data
        return arr.astype(dtype) if dtype is not None else arr
