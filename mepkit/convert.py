"""Conversion of LabRecorder XDF files into mepkit records."""

from __future__ import annotations

import logging
import os

import numpy as np

from mepkit.params import Params
from mepkit.sources.recording import channel_index
from mepkit.units import channel_scales

__all__ = ["convert_xdf"]

logger = logging.getLogger("mepkit.convert")


def convert_xdf(xdf_path: str | os.PathLike, record_path: str | os.PathLike, *,
                params: Params | None = None, options=None, overwrite: bool = False,
                subject: dict | None = None, session: dict | None = None,
                chunk_s: float = 10.0) -> dict:
    """Write an XDF recording as a mepkit record, with its trials measured.

    The EMG stream (samples as the file holds them: their dtype and units), the marker
    stream, the parameters, how pulses were found and the trial table (as ``mepkit
    analyze`` gives) are stored, so ``mepkit analyze`` on the record gives that table again.
    Returns a small summary dict.
    """
    from mepkit.analyze import analyze_recording, recording_clock
    from mepkit.batch import AnalyzeOptions
    from mepkit.records import RecordWriter
    from mepkit.sources.xdf import read_xdf

    o = options if options is not None else AnalyzeOptions()
    params = params if params is not None else Params()
    xdf_path = os.fspath(xdf_path)
    rec = read_xdf(xdf_path, emg_stream=o.emg_stream, marker_stream=o.marker_stream,
                   require_markers=o.trigger_channel is None and not o.artifact_triggers)
    clock = recording_clock(rec, params)
    frame = analyze_recording(rec, params, clock=clock, trigger_channel=o.trigger_channel,
                              artifact_triggers=o.artifact_triggers,
                              marker_filter=o.marker_filter, unit=o.unit,
                              file=os.fspath(record_path))
    skip = channel_index(rec.channel_labels, o.trigger_channel)
    _, units, _ = channel_scales(rec.channel_labels, rec.units, unit_override=o.unit,
                                 source=xdf_path, skip=skip)
    session = {"source_file": os.path.abspath(xdf_path), "trigger_channel": o.trigger_channel,
               "artifact_triggers": o.artifact_triggers, "marker_filter": o.marker_filter,
               **(session or {})}
    name = rec.emg_stream.get("name") or "emg"
    name = name.replace("/", "_")
    marker_name = (rec.marker_stream or {}).get("name", "")
    data = np.asarray(rec.data)
    with RecordWriter(record_path, overwrite=overwrite, subject=subject, session=session,
                      params=params, marker_stream=marker_name) as w:
        w.add_stream(name, channel_labels=rec.channel_labels, units=units,
                     nominal_srate_hz=rec.sfreq_hz, stream_type="EMG",
                     source_id=rec.emg_stream.get("source_id", ""),
                     description=rec.description, dtype=data.dtype)
        w.start()
        step = max(1, int(chunk_s * rec.sfreq_hz))
        for a in range(0, len(rec.timestamps), step):
            w.append_samples(name, data[a:a + step], rec.timestamps[a:a + step])
        # the clock fitted over the whole stream: the record's reanalysis times its
        # samples as this conversion did
        w.append_clock(name, clock.rows)
        if len(rec.marker_times):
            w.append_markers(rec.marker_times, rec.marker_values)
        if len(frame):
            w.append_trials(frame)
    return {"samples": len(rec.timestamps), "channels": len(rec.channel_labels),
            "markers": len(rec.marker_times), "rows": len(frame),
            "trials": int(frame["trial"].nunique()) if len(frame) else 0}
